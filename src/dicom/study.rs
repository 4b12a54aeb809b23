//! Studies: received instances are stored idempotently (one row per SOP Instance UID;
//! blobs are written and fsynced before the row that names them commits, so a failed
//! store leaves nothing half-written), grouped by StudyInstanceUID, and graded by a
//! background task once the study has been quiet for `study_stable_secs`. An instance
//! arriving after grading reopens the study; the regrade makes a new exam that
//! supersedes the previous one (both stay, the audit log says which replaced which).

use std::sync::Arc;
use std::time::Duration;

use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use super::DicomConfig;
use super::object::{self, Instance, ObjectError};
use crate::engine::EngineError;
use crate::grading::Laterality;
use crate::preprocess::DecodeLimits;
use crate::service::{ExamMetadata, IncomingImage, ScreeningService, ServiceError};
use crate::store::{DueStudy, NewInstance, Store, StoreError, link_exam};

/// Why a received object was not stored.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Object(#[from] ObjectError),
    #[error("storage failed: {0}")]
    Store(#[from] StoreError),
}

impl IngestError {
    /// The C-STORE status: the object's own, or 0xA700 (out of resources) for storage.
    pub fn dimse_status(&self) -> u16 {
        match self {
            Self::Object(e) => e.dimse_status(),
            Self::Store(_) => 0xA700,
        }
    }

    /// The STOW-RS FailureReason.
    pub fn failure_reason(&self) -> u16 {
        match self {
            Self::Object(e) => e.failure_reason(),
            Self::Store(_) => 0xA700,
        }
    }
}

/// What happened to a received instance.
#[derive(Debug, Clone)]
pub struct Ingested {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub study_uid: String,
    /// False when the SOP Instance UID was already stored (nothing changed).
    pub new: bool,
}

/// Stores received objects (blocking: call from a DICOM thread or the blocking pool).
#[derive(Clone)]
pub struct Ingest {
    pub store: Store,
    pub limits: DecodeLimits,
}

fn sop_uid(obj: &InMemDicomObject) -> Option<String> {
    obj.get(tags::SOP_INSTANCE_UID).and_then(|e| e.to_str().ok()).map(|s| s.trim_end_matches(['\0', ' ']).to_string())
}

impl Ingest {
    /// A data set received over the network in transfer syntax `ts`.
    pub fn dataset(&self, actor: &str, via: &str, source_ae: &str, bytes: &[u8], ts: &str) -> Result<Ingested, IngestError> {
        let obj = object::read_dataset(bytes, ts)?;
        self.object(actor, via, &obj, ts, || {
            let class = obj.get(tags::SOP_CLASS_UID).and_then(|e| e.to_str().ok()).map(|s| s.trim_end_matches(['\0', ' ']).to_string());
            object::part10(bytes, &class.unwrap_or_default(), &sop_uid(&obj).unwrap_or_default(), ts, source_ae)
        })
    }

    /// A Part 10 file (STOW-RS part), stored as received.
    pub fn part10(&self, actor: &str, via: &str, bytes: &[u8]) -> Result<Ingested, IngestError> {
        let (obj, ts) = object::read_part10(bytes)?;
        self.object(actor, via, &obj, &ts, || Ok(bytes.to_vec()))
    }

    fn object(
        &self,
        actor: &str,
        via: &str,
        obj: &InMemDicomObject,
        ts: &str,
        file: impl FnOnce() -> Result<Vec<u8>, ObjectError>,
    ) -> Result<Ingested, IngestError> {
        // A repeated SOP Instance UID is answered as success without decoding again.
        if let Some(uid) = sop_uid(obj)
            && self.store.dicom_instance_exists(&uid)?
        {
            let class = obj.get(tags::SOP_CLASS_UID).and_then(|e| e.to_str().ok()).map(|s| s.trim_end_matches(['\0', ' ']).to_string());
            let study =
                obj.get(tags::STUDY_INSTANCE_UID).and_then(|e| e.to_str().ok()).map(|s| s.trim_end_matches(['\0', ' ']).to_string());
            return Ok(Ingested {
                sop_class_uid: class.unwrap_or_default(),
                sop_instance_uid: uid,
                study_uid: study.unwrap_or_default(),
                new: false,
            });
        }
        let instance = Instance::from_object(obj, ts, &self.limits)?;
        let part10 = file()?;
        self.persist(actor, via, &instance, &part10)
    }

    fn persist(&self, actor: &str, via: &str, inst: &Instance, part10: &[u8]) -> Result<Ingested, IngestError> {
        let sha256 = self.store.put_blob(part10)?;
        let mut frames = Vec::with_capacity(inst.frames.len());
        for f in &inst.frames {
            frames.push((self.store.put_blob(&f.blob)?, f.media_type.to_string()));
        }
        let new = self.store.record_dicom_instance(
            actor,
            via,
            &NewInstance {
                sop_instance_uid: inst.sop_instance_uid.clone(),
                sop_class_uid: inst.sop_class_uid.clone(),
                study_uid: inst.study_uid.clone(),
                series_uid: inst.series_uid.clone(),
                laterality: inst.laterality.as_str().into(),
                transfer_syntax: inst.transfer_syntax.clone(),
                sha256,
                patient_id: inst.patient_id.clone(),
                patient_name: inst.patient_name.clone(),
                frames,
            },
        )?;
        Ok(Ingested {
            sop_class_uid: inst.sop_class_uid.clone(),
            sop_instance_uid: inst.sop_instance_uid.clone(),
            study_uid: inst.study_uid.clone(),
            new,
        })
    }
}

/// Grades quiet studies until the process ends.
pub async fn run_grader(service: Arc<ScreeningService>, config: DicomConfig) {
    let poll = Duration::from_secs_f64((config.study_stable_secs / 4.0).clamp(0.1, 2.0));
    let destination = config.sr_destination.as_ref().map(|d| format!("{}@{}", d.ae_title, d.address()));
    loop {
        tokio::time::sleep(poll).await;
        if !service.screener.engine.is_ready() {
            continue;
        }
        let store = service.store.clone();
        let stable = config.study_stable_secs;
        let due = match tokio::task::spawn_blocking(move || store.due_studies(stable)).await {
            Ok(Ok(due)) => due,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot list studies to grade");
                continue;
            }
            Err(_) => continue,
        };
        for study in due {
            grade_study(&service, study, destination.clone()).await;
        }
    }
}

async fn grade_study(service: &Arc<ScreeningService>, study: DueStudy, destination: Option<String>) {
    let store = service.store.clone();
    let (uid, upto) = (study.study_uid.clone(), study.last_seq);
    let limits = service.screener.engine.preprocessor().limits;
    let loaded = tokio::task::spawn_blocking(move || -> Result<_, String> {
        let frames = store.study_frames(&uid, upto).map_err(|e| e.to_string())?;
        let mut images = Vec::with_capacity(frames.len());
        // Native frames are graded from the decoded DICOM pixels (the PNG is only the
        // stored copy); each instance is decoded once.
        let mut decoded: Option<(String, Vec<Option<Arc<crate::preprocess::decode::Decoded>>>)> = None;
        for f in &frames {
            let pixels = if f.media_type == "image/png" {
                if decoded.as_ref().is_none_or(|(sha, _)| *sha != f.instance_sha256) {
                    let bytes = store.read_blob(&f.instance_sha256).map_err(|e| e.to_string())?;
                    decoded = Some((f.instance_sha256.clone(), object::native_pixels(&bytes, &limits).map_err(|e| e.to_string())?));
                }
                decoded.as_ref().and_then(|(_, px)| px.get((f.frame - 1).max(0) as usize).cloned().flatten())
            } else {
                None
            };
            images.push(IncomingImage {
                bytes: store.read_blob(&f.sha256).map_err(|e| e.to_string())?.into(),
                media_type: f.media_type.clone(),
                laterality: Laterality::parse(&f.laterality).unwrap_or(Laterality::Unspecified),
                view: None,
                pixels,
            });
        }
        Ok((frames, images))
    })
    .await;
    let (frames, images) = match loaded {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot load a study's images");
            return;
        }
        Err(_) => return,
    };
    let capacity = service.screener.engine.config().queue_capacity;
    if images.is_empty() || images.len() > capacity {
        let reason = format!("{} images; a study is graded in one pass of at most {capacity}", images.len());
        let store = service.store.clone();
        let (uid, seq) = (study.study_uid.clone(), study.last_seq);
        let _ = tokio::task::spawn_blocking(move || store.fail_study(&uid, seq, &reason)).await;
        return;
    }
    let sources: Vec<(String, i64)> = frames.iter().map(|f| (f.sop_instance_uid.clone(), f.frame)).collect();
    let meta = ExamMetadata { external_exam_ref: Some(study.study_uid.clone()), patient_ref: study.patient_id.clone(), views: Vec::new() };
    let actor = study.submitted_by.clone();
    let linked = study.clone();
    let hook: crate::service::CommitHook = Box::new(move |tx, exam_id| link_exam(tx, exam_id, &linked, &sources, destination.as_deref()));
    match service.submit_exam_with(&actor, images, meta, Some(hook)).await {
        Ok((stored, result)) => {
            tracing::info!(exam = %stored.id, outcome = result.outcome.as_str(), images = result.images.len(), regrade = study.previous_exam.is_some(), "DICOM study graded");
        }
        Err(ServiceError::Engine(e @ (EngineError::QueueFull(_) | EngineError::ShuttingDown))) => {
            tracing::warn!(error = %e, "DICOM study grading deferred");
        }
        Err(e) => {
            tracing::warn!(error = %e, "DICOM study could not be graded");
            let store = service.store.clone();
            let (uid, seq, reason) = (study.study_uid.clone(), study.last_seq, e.to_string());
            let _ = tokio::task::spawn_blocking(move || store.fail_study(&uid, seq, &reason)).await;
        }
    }
}
