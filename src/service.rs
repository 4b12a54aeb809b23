//! Screening service functions shared by every network edge (HTTP now, DICOM later):
//! grade one image, grade and durably store an exam, and draw a stored image's heatmap.
//! Edges translate their protocol into these calls; they never call each other.

use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;

use crate::engine::{EngineError, Scored};
use crate::grading::{ExamResult, ImageFinding, Laterality};
use crate::pipeline::Screener;
use crate::preprocess::decode::Decoded;
use crate::report::heatmap;
use crate::store::{NewExam, NewImage, Store, StoreError, StoredExam};

/// Why a service call failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("image {index}: {source}")]
    Image { index: usize, source: EngineError },
    #[error("{0}")]
    Invalid(String),
    #[error("background task failed: {0}")]
    Join(String),
}

/// One uploaded image.
#[derive(Debug, Clone)]
pub struct IncomingImage {
    pub bytes: Bytes,
    pub media_type: String,
    pub laterality: Laterality,
    /// "macula" or "disc" centred, when the clinic says.
    pub view: Option<String>,
    /// Pixels the edge already decoded (native DICOM frames); `bytes` is then only the
    /// stored copy, and the engine grades these pixels without decoding `bytes` again.
    pub pixels: Option<Arc<Decoded>>,
}

/// Extra writes an edge commits in the same transaction as the exam (the DICOM edge links
/// the exam to its study and source instances); gets the new exam id.
pub type CommitHook = Box<dyn FnOnce(&rusqlite::Transaction<'_>, &str) -> Result<(), StoreError> + Send>;

/// Clinic-supplied references for an exam (stored, never logged).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExamMetadata {
    pub external_exam_ref: Option<String>,
    pub patient_ref: Option<String>,
    /// Per-image view, in upload order: "macula" | "disc".
    #[serde(default)]
    pub views: Vec<Option<String>>,
}

/// The service: the screening pipeline plus the store.
#[derive(Clone)]
pub struct ScreeningService {
    pub screener: Screener,
    pub store: Store,
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, ServiceError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ServiceError::Join(e.to_string()))
}

impl ScreeningService {
    pub fn new(screener: Screener, store: Store) -> Arc<Self> {
        Arc::new(Self { screener, store })
    }

    /// Whether the engine would refuse new work right now (used to answer 503 before
    /// reading a large body).
    pub fn saturated(&self) -> bool {
        self.screener.engine.in_flight() >= self.screener.engine.config().queue_capacity
    }

    /// Grades one image (not stored).
    pub async fn grade(&self, bytes: Bytes, laterality: Laterality) -> Result<(ImageFinding, Scored), ServiceError> {
        let ticket = self.screener.submit(bytes)?;
        let scored = ticket.await.map_err(|_| EngineError::ShuttingDown)??;
        Ok((self.screener.finding(&scored, laterality, None), scored))
    }

    /// Grades pixels an edge decoded itself (not stored).
    pub async fn grade_pixels(&self, pixels: Arc<Decoded>, laterality: Laterality) -> Result<(ImageFinding, Scored), ServiceError> {
        let ticket = self.screener.engine.submit_decoded(pixels)?;
        let scored = ticket.await.map_err(|_| EngineError::ShuttingDown)??;
        Ok((self.screener.finding(&scored, laterality, None), scored))
    }

    /// Grades every image of an exam, then stores originals, findings and the exam in one
    /// commit. Any unreadable image rejects the whole exam: nothing is half-written.
    pub async fn submit_exam(
        &self,
        actor: &str,
        images: Vec<IncomingImage>,
        meta: ExamMetadata,
    ) -> Result<(StoredExam, ExamResult), ServiceError> {
        self.submit_exam_with(actor, images, meta, None).await
    }

    /// [`ScreeningService::submit_exam`], plus `hook` committed in the exam's transaction.
    pub async fn submit_exam_with(
        &self,
        actor: &str,
        images: Vec<IncomingImage>,
        meta: ExamMetadata,
        hook: Option<CommitHook>,
    ) -> Result<(StoredExam, ExamResult), ServiceError> {
        if images.is_empty() {
            return Err(ServiceError::Invalid("an exam needs at least one image".into()));
        }
        let mut tickets = Vec::with_capacity(images.len());
        for (index, image) in images.iter().enumerate() {
            let submitted = match &image.pixels {
                Some(pixels) => self.screener.engine.submit_decoded(pixels.clone()),
                None => self.screener.submit(image.bytes.clone()),
            };
            tickets.push(submitted.map_err(|source| match source {
                e @ (EngineError::QueueFull(_) | EngineError::ShuttingDown) => ServiceError::Engine(e),
                source => ServiceError::Image { index, source },
            })?);
        }
        let mut findings = Vec::with_capacity(images.len());
        let mut cams = Vec::with_capacity(images.len());
        for (index, (ticket, image)) in tickets.into_iter().zip(&images).enumerate() {
            let scored = ticket
                .await
                .map_err(|_| ServiceError::Engine(EngineError::ShuttingDown))?
                .map_err(|source| ServiceError::Image { index, source })?;
            findings.push(self.screener.finding(&scored, image.laterality, None));
            cams.push((scored.outputs.cam, scored.outputs.cam_shape));
        }
        let result = self.screener.exam(findings);
        let store = self.store.clone();
        let actor = actor.to_string();
        let result_json = serde_json::to_value(&result).map_err(|e| ServiceError::Invalid(e.to_string()))?;
        let stored = blocking(move || -> Result<StoredExam, ServiceError> {
            let mut new_images = Vec::with_capacity(images.len());
            for (i, (image, (cam, cam_shape))) in images.iter().zip(cams).enumerate() {
                let sha = store.put_blob(&image.bytes)?;
                new_images.push(NewImage {
                    bytes_sha256: sha,
                    media_type: image.media_type.clone(),
                    laterality: image.laterality.as_str().into(),
                    view: image.view.clone().or_else(|| meta.views.get(i).cloned().flatten()),
                    finding: result_json["images"][i].clone(),
                    cam,
                    cam_shape,
                });
            }
            let exam = NewExam {
                submitted_by: actor,
                external_exam_ref: meta.external_exam_ref,
                patient_ref: meta.patient_ref,
                outcome: result_json["outcome"].as_str().unwrap_or_default().to_string(),
                flagged: result_json["flagged"].as_bool().unwrap_or(true),
                model_sha256: result_json["model"]["sha256"].as_str().unwrap_or_default().to_string(),
                result: result_json,
                images: new_images,
            };
            Ok(store.insert_exam_with(&exam, hook)?)
        })
        .await??;
        Ok((stored, result))
    }

    /// The heatmap PNG of a stored image: re-runs the deterministic preprocessing on the
    /// stored original to get the cropped field, then overlays the stored activation map.
    pub async fn heatmap_png(&self, sha256: String, cam: Vec<f32>, cam_shape: (usize, usize)) -> Result<Vec<u8>, ServiceError> {
        self.field_png(sha256, Some((cam, cam_shape))).await
    }

    /// The cropped field of view the model saw, as PNG, with the heatmap overlaid when
    /// `overlay` is given (same geometry either way, so the two can be toggled).
    pub async fn field_png(&self, sha256: String, overlay: Option<(Vec<f32>, (usize, usize))>) -> Result<Vec<u8>, ServiceError> {
        let store = self.store.clone();
        let pre = self.screener.engine.preprocessor().clone();
        blocking(move || -> Result<Vec<u8>, ServiceError> {
            let bytes = store.read_blob(&sha256)?;
            let prepared = pre.prepare(&bytes).map_err(|e| ServiceError::Engine(e.into()))?;
            let side = pre.input_size as usize;
            match overlay {
                Some((cam, cam_shape)) => heatmap::png(side, &heatmap::overlay(side, &prepared.rgb, &cam, cam_shape)),
                None => heatmap::png(side, &prepared.rgb),
            }
            .map_err(ServiceError::Invalid)
        })
        .await?
    }

    /// A stored original in a form every browser shows: JPEG and PNG as stored, anything
    /// else (TIFF) re-encoded losslessly as PNG. Returns (media type, bytes).
    pub async fn viewable_original(&self, sha256: String, media_type: String) -> Result<(String, Vec<u8>), ServiceError> {
        let store = self.store.clone();
        blocking(move || -> Result<(String, Vec<u8>), ServiceError> {
            let bytes = store.read_blob(&sha256)?;
            if matches!(media_type.as_str(), "image/jpeg" | "image/jpg" | "image/png") {
                return Ok((media_type, bytes));
            }
            let image = image::load_from_memory(&bytes).map_err(|e| ServiceError::Invalid(format!("stored image cannot be shown: {e}")))?;
            let mut out = std::io::Cursor::new(Vec::new());
            image.write_to(&mut out, image::ImageFormat::Png).map_err(|e| ServiceError::Invalid(e.to_string()))?;
            Ok(("image/png".into(), out.into_inner()))
        })
        .await?
    }
}
