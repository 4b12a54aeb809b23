//! The operations every edge calls, and the work that spans the core and the store:
//! grade one image, grade and durably store an exam, ingest a DICOM instance and grade
//! quiet studies (`dicom`), build an exam's SR and FHIR documents and its PDF report
//! (`report`, also as an Encapsulated PDF DICOM instance), draw a stored image's heatmap.
//! Metrics (`metrics`) are recorded here, where the work happens, so an exam is counted
//! whichever edge it came through, and every stored exam runs in a tracing span carrying
//! its id (never a patient reference). Edges translate their protocol into these calls;
//! they never call each other.

mod dicom;
mod dips;
pub mod metrics;
mod report;

pub use dicom::{IngestError, Ingested};
pub use metrics::{Channel, ServiceMetrics};

use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use crate::engine::{EngineError, Scored};
use crate::grading::{ExamResult, ImageFinding, Laterality};
use crate::interop::object::ObjectError;
use crate::interop::pdf::PdfError;
use crate::interop::sr::SrError;
use crate::pipeline::Screener;
use crate::preprocess::decode::Decoded;
use crate::report::heatmap;
use crate::store::{CommitHook, NewExam, NewImage, Store, StoreError, StoredExam};

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
    #[error("{got} images; an exam holds at most {max}")]
    TooManyImages { got: usize, max: usize },
    #[error("{0}")]
    Metadata(String),
    #[error(transparent)]
    Dicom(#[from] ObjectError),
    #[error(transparent)]
    Sr(#[from] SrError),
    #[error(transparent)]
    Pdf(#[from] PdfError),
    #[error("cannot draw the image: {0}")]
    Render(String),
    #[error("background task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
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

/// Clinic-supplied references for an exam (stored, never logged).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExamMetadata {
    pub external_exam_ref: Option<String>,
    pub patient_ref: Option<String>,
    /// Per-image view, in upload order: "macula" | "disc".
    #[serde(default)]
    pub views: Vec<Option<String>>,
    /// The study id the EHR matches results by (see `store::NewExam::sectra_study_id`);
    /// set by the service from the channel's rule, never by the client directly.
    #[serde(skip)]
    pub sectra_study_id: Option<String>,
}

/// `[exams]`: what one exam may hold, whichever edge it arrives through.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExamLimits {
    /// Images in one exam (a screening exam has one to a few per eye).
    pub max_images_per_exam: usize,
    /// Characters in `external_exam_ref`, `patient_ref` and a view name.
    pub max_reference_chars: usize,
    /// DICOM instances in one STOW-RS request.
    pub max_instances_per_request: usize,
}

impl Default for ExamLimits {
    fn default() -> Self {
        Self { max_images_per_exam: 16, max_reference_chars: 256, max_instances_per_request: 64 }
    }
}

/// Why a clinic-supplied reference was refused: too long, or holding characters that
/// would corrupt a log, a page or a report (control characters, bidirectional overrides).
pub fn check_reference(field: &str, value: &str, max_chars: usize) -> Result<(), String> {
    let chars = value.chars().count();
    if chars > max_chars {
        return Err(format!("{field} is {chars} characters; the limit is {max_chars}"));
    }
    // C0/C1 controls include NUL and ESC (terminal escapes); U+202A-U+202E and
    // U+2066-U+2069 reorder the text a clinician reads.
    if let Some(c) = value.chars().find(|c| c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')) {
        return Err(format!("{field} contains the control character U+{:04X}", u32::from(c)));
    }
    Ok(())
}

impl ExamMetadata {
    /// Applies [`ExamLimits`] to the references and views.
    pub fn check(&self, limits: &ExamLimits) -> Result<(), String> {
        let max = limits.max_reference_chars;
        for (field, value) in [("external_exam_ref", &self.external_exam_ref), ("patient_ref", &self.patient_ref)] {
            if let Some(v) = value {
                check_reference(field, v, max)?;
            }
        }
        if self.views.len() > limits.max_images_per_exam {
            return Err(format!("views lists {} images; an exam holds at most {}", self.views.len(), limits.max_images_per_exam));
        }
        self.views.iter().flatten().try_for_each(|v| check_reference("view", v, max))
    }
}

/// The service: the screening pipeline, the store and the metrics of both.
#[derive(Clone)]
pub struct ScreeningService {
    pub screener: Screener,
    pub store: Store,
    pub metrics: Arc<ServiceMetrics>,
    pub limits: ExamLimits,
}

/// Runs blocking work (SQLite, files, DICOM parsing) on tokio's blocking pool.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, ServiceError> {
    Ok(tokio::task::spawn_blocking(f).await?)
}

impl ScreeningService {
    pub fn new(screener: Screener, store: Store, limits: ExamLimits) -> Arc<Self> {
        Arc::new(Self { screener, store, metrics: Arc::new(ServiceMetrics::default()), limits })
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
        Ok(self.graded(scored, laterality))
    }

    /// The finding of a scored image, counted in the metrics.
    fn graded(&self, scored: Scored, laterality: Laterality) -> (ImageFinding, Scored) {
        let finding = self.screener.finding(&scored, laterality, None);
        self.metrics.observe_image(&finding.timings_ms, finding.quality.gradable);
        (finding, scored)
    }

    /// Grades pixels an edge decoded itself (not stored).
    pub async fn grade_pixels(&self, pixels: Arc<Decoded>, laterality: Laterality) -> Result<(ImageFinding, Scored), ServiceError> {
        let ticket = self.screener.engine.submit_decoded(pixels)?;
        let scored = ticket.await.map_err(|_| EngineError::ShuttingDown)??;
        Ok(self.graded(scored, laterality))
    }

    /// Grades every image of an exam, then stores originals, findings and the exam in one
    /// commit. Any unreadable image rejects the whole exam: nothing is half-written.
    pub async fn submit_exam(
        &self,
        actor: &str,
        images: Vec<IncomingImage>,
        meta: ExamMetadata,
    ) -> Result<(StoredExam, ExamResult), ServiceError> {
        // An HTTP exam's Sectra study id is the clinic's own exam reference.
        let meta = ExamMetadata { sectra_study_id: meta.external_exam_ref.clone(), ..meta };
        self.submit_exam_with(Channel::Http, actor, images, meta, None).await
    }

    /// [`ScreeningService::submit_exam`] for an exam that arrived through `channel`, plus
    /// `hook` committed in the exam's transaction. The whole call runs in one span
    /// carrying the new exam's id.
    async fn submit_exam_with(
        &self,
        channel: Channel,
        actor: &str,
        images: Vec<IncomingImage>,
        meta: ExamMetadata,
        hook: Option<CommitHook>,
    ) -> Result<(StoredExam, ExamResult), ServiceError> {
        let id = crate::store::random_hex(16)?;
        let span = tracing::info_span!("exam", id = %id, channel = channel.as_str());
        let (stored, result) = self.grade_and_store(id, actor, images, meta, hook).instrument(span.clone()).await?;
        self.metrics.observe_exam(channel, &result);
        span.in_scope(|| tracing::info!(outcome = result.outcome.as_str(), images = result.images.len(), "exam stored"));
        Ok((stored, result))
    }

    async fn grade_and_store(
        &self,
        id: String,
        actor: &str,
        images: Vec<IncomingImage>,
        meta: ExamMetadata,
        hook: Option<CommitHook>,
    ) -> Result<(StoredExam, ExamResult), ServiceError> {
        if images.is_empty() {
            return Err(ServiceError::Invalid("an exam needs at least one image".into()));
        }
        if images.len() > self.limits.max_images_per_exam {
            return Err(ServiceError::TooManyImages { got: images.len(), max: self.limits.max_images_per_exam });
        }
        meta.check(&self.limits).map_err(ServiceError::Metadata)?;
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
        let exam_result = result.clone();
        let stored = blocking(move || -> Result<StoredExam, ServiceError> {
            let mut new_images = Vec::with_capacity(images.len());
            for (i, (image, (cam, cam_shape))) in images.iter().zip(cams).enumerate() {
                let sha = store.put_blob(&image.bytes)?;
                new_images.push(NewImage {
                    bytes_sha256: sha,
                    media_type: image.media_type.clone(),
                    laterality: image.laterality,
                    view: image.view.clone().or_else(|| meta.views.get(i).cloned().flatten()),
                    finding: exam_result.images[i].clone(),
                    cam,
                    cam_shape,
                });
            }
            let exam = NewExam {
                id,
                submitted_by: actor,
                external_exam_ref: meta.external_exam_ref,
                patient_ref: meta.patient_ref,
                sectra_study_id: meta.sectra_study_id,
                result: exam_result,
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
            .map_err(ServiceError::Render)
        })
        .await?
    }

    /// A display-sized rendition of a stored original for the review image viewer: the
    /// original decoded (EXIF orientation applied, the decoder's pixel limit enforced) and
    /// scaled down to `width` pixels wide, as JPEG. `width` must be one of `allowed` or
    /// the original's own width; a width above the original's is served at the
    /// original's (never upscaled). Runs on the blocking pool.
    pub async fn view_rendition(&self, sha256: String, width: u32, allowed: &'static [u32]) -> Result<Vec<u8>, ServiceError> {
        let store = self.store.clone();
        let limits = self.screener.engine.preprocessor().limits;
        blocking(move || -> Result<Vec<u8>, ServiceError> {
            let bytes = store.read_blob(&sha256)?;
            let decoded = crate::preprocess::decode::decode(&bytes, &limits, false).map_err(|e| ServiceError::Engine(e.into()))?;
            let (w, h) = (decoded.width, decoded.height);
            if !allowed.contains(&width) && width != w {
                let sizes = allowed.iter().map(u32::to_string).collect::<Vec<_>>().join(", ");
                return Err(ServiceError::Invalid(format!("w={width}: the width must be one of {sizes} or the original's width, {w}")));
            }
            let out_w = width.min(w).max(1);
            let out_h = ((u64::from(h) * u64::from(out_w)).div_ceil(u64::from(w)) as u32).max(1);
            let rgb = image::RgbImage::from_raw(w, h, decoded.rgb)
                .ok_or_else(|| ServiceError::Render("decoded pixel buffer has the wrong size".into()))?;
            let scaled = if out_w == w { rgb } else { image::imageops::resize(&rgb, out_w, out_h, image::imageops::FilterType::Triangle) };
            let mut out = Vec::new();
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
                .encode_image(&scaled)
                .map_err(|e| ServiceError::Render(e.to_string()))?;
            Ok(out)
        })
        .await?
    }

    /// The heatmap as a transparent layer in the original photograph's geometry (512
    /// pixels wide, the original's aspect ratio), so the viewer can lay it over the
    /// photograph at any zoom: the stored activation map is placed on the square the
    /// preprocessing cropped (re-located on the stored original, exactly as at grading).
    pub async fn heatmap_layer_png(&self, sha256: String, cam: Vec<f32>, cam_shape: (usize, usize)) -> Result<Vec<u8>, ServiceError> {
        let store = self.store.clone();
        let pre = self.screener.engine.preprocessor().clone();
        blocking(move || -> Result<Vec<u8>, ServiceError> {
            let bytes = store.read_blob(&sha256)?;
            let engine_error = |e: crate::preprocess::PreprocessError| ServiceError::Engine(e.into());
            let decoded =
                crate::preprocess::decode::decode_with(&bytes, &pre.limits, pre.dct_scaling, pre.jpeg_backend).map_err(engine_error)?;
            let prepared = pre.prepare_decoded(&decoded).map_err(engine_error)?;
            let (w, h) = (decoded.width, decoded.height);
            let out_w = heatmap::LAYER_WIDTH;
            let out_h = ((u64::from(h) * u64::from(out_w)).div_ceil(u64::from(w.max(1))) as u32).max(1);
            let s = out_w as f32 / w.max(1) as f32;
            let fov = prepared.fov;
            let square = (fov.x0 as f32 * s, fov.y0 as f32 * s, fov.side as f32 * s);
            let rgba = heatmap::layer(out_w as usize, out_h as usize, square, &cam, cam_shape);
            heatmap::png_rgba(out_w, out_h, &rgba).map_err(ServiceError::Render)
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
            let image = image::load_from_memory(&bytes).map_err(|e| ServiceError::Render(format!("stored image cannot be shown: {e}")))?;
            let mut out = std::io::Cursor::new(Vec::new());
            image.write_to(&mut out, image::ImageFormat::Png).map_err(|e| ServiceError::Render(e.to_string()))?;
            Ok(("image/png".into(), out.into_inner()))
        })
        .await?
    }
}
