//! DICOM work of the service, shared by the DICOM listener and STOW-RS: received objects
//! are stored idempotently (one row per SOP Instance UID; blobs are written and fsynced
//! before the row that names them commits, so a failed store leaves nothing half-written)
//! and grouped by StudyInstanceUID; quiet studies are graded into exams (a study graded
//! again after a late instance makes a new exam that supersedes the previous one; both
//! stay, the audit log says which replaced which); an exam's SR and FHIR report are
//! built from the stored exam and its source instances.

use std::sync::Arc;

use dicom_dictionary_std::tags;
use dicom_object::{FileDicomObject, InMemDicomObject};

use super::{Channel, ExamMetadata, IncomingImage, ScreeningService, ServiceError, blocking};
use crate::engine::EngineError;
use crate::grading::{ImageFinding, Laterality};
use crate::interop::object::{self, Instance, ObjectError};
use crate::interop::{fhir, sr};
use crate::preprocess::decode::Decoded;
use crate::store::{CommitHook, DueStudy, NewInstance, Recorded, StoreError, StoredExam, StudyFrame, link_exam};

/// Why a received object was not stored.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Object(#[from] ObjectError),
    #[error("storage failed: {0}")]
    Store(#[from] StoreError),
    #[error("refused: {0}")]
    StudyConflict(&'static str),
    #[error("{0}")]
    Attribute(String),
}

impl IngestError {
    /// The C-STORE status: the object's own, or 0xA700 (out of resources) for storage.
    pub fn dimse_status(&self) -> u16 {
        match self {
            Self::Object(e) => e.dimse_status(),
            Self::Store(_) => 0xA700,
            // The data set does not belong where it says it does, or breaks its VRs' rules.
            Self::StudyConflict(_) | Self::Attribute(_) => 0xA900,
        }
    }

    /// The STOW-RS FailureReason.
    pub fn failure_reason(&self) -> u16 {
        match self {
            Self::Object(e) => e.failure_reason(),
            Self::Store(_) => 0xA700,
            Self::StudyConflict(_) | Self::Attribute(_) => 0xA900,
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

/// A study's images as the engine grades them, and the frames they came from.
type LoadedStudy = (Vec<StudyFrame>, Vec<IncomingImage>);

impl ScreeningService {
    /// Stores a data set received over the network in transfer syntax `ts` (blocking:
    /// call from a DICOM thread or the blocking pool).
    pub fn ingest_dataset(&self, actor: &str, via: &str, source_ae: &str, bytes: &[u8], ts: &str) -> Result<Ingested, IngestError> {
        let obj = object::read_dataset(bytes, ts)?;
        self.ingest_object(actor, via, &obj, ts, || {
            let class = object::text(&obj, tags::SOP_CLASS_UID).unwrap_or_default();
            let uid = object::text(&obj, tags::SOP_INSTANCE_UID).unwrap_or_default();
            object::part10(bytes, &class, &uid, ts, source_ae)
        })
    }

    /// Stores a Part 10 file (a STOW-RS part) as received (blocking).
    pub fn ingest_part10(&self, actor: &str, via: &str, bytes: &[u8]) -> Result<Ingested, IngestError> {
        let (obj, ts) = object::read_part10(bytes)?;
        self.ingest_object(actor, via, &obj, &ts, || Ok(bytes.to_vec()))
    }

    fn ingest_object(
        &self,
        actor: &str,
        via: &str,
        obj: &InMemDicomObject,
        ts: &str,
        file: impl FnOnce() -> Result<Vec<u8>, ObjectError>,
    ) -> Result<Ingested, IngestError> {
        // A repeated SOP Instance UID is answered as success without decoding again.
        if let Some(uid) = object::text(obj, tags::SOP_INSTANCE_UID)
            && self.store.dicom_instance_exists(&uid)?
        {
            return Ok(Ingested {
                sop_class_uid: object::text(obj, tags::SOP_CLASS_UID).unwrap_or_default(),
                sop_instance_uid: uid,
                study_uid: object::text(obj, tags::STUDY_INSTANCE_UID).unwrap_or_default(),
                new: false,
            });
        }
        let limits = self.screener.engine.preprocessor().limits;
        let instance = Instance::from_object(obj, ts, &limits)?;
        let part10 = file()?;
        self.persist_instance(actor, via, &instance, &part10)
    }

    fn persist_instance(&self, actor: &str, via: &str, inst: &Instance, part10: &[u8]) -> Result<Ingested, IngestError> {
        // PatientID (LO) and PatientName (PN) hold at most 64 characters per the standard;
        // they are stored and shown to clinicians, so control characters are refused too.
        for (field, value) in [("PatientID", &inst.patient_id), ("PatientName", &inst.patient_name)] {
            if let Some(v) = value {
                super::check_reference(field, v, 64.min(self.limits.max_reference_chars)).map_err(IngestError::Attribute)?;
            }
        }
        let sha256 = self.store.put_blob(part10)?;
        let mut frames = Vec::with_capacity(inst.frames.len());
        for f in &inst.frames {
            frames.push((self.store.put_blob(&f.blob)?, f.media_type.to_string()));
        }
        let recorded = self.store.record_dicom_instance(
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
                accession_number: inst.accession_number.clone(),
                frames,
            },
        )?;
        let new = match recorded {
            Recorded::New => true,
            Recorded::Duplicate => false,
            Recorded::Conflict(reason) => return Err(IngestError::StudyConflict(reason)),
        };
        Ok(Ingested {
            sop_class_uid: inst.sop_class_uid.clone(),
            sop_instance_uid: inst.sop_instance_uid.clone(),
            study_uid: inst.study_uid.clone(),
            new,
        })
    }

    /// Grades one DICOM Part 10 object's first frame (not stored); laterality from the
    /// caller when given, else from the object.
    pub async fn grade_dicom(
        &self,
        bytes: bytes::Bytes,
        laterality: Option<Laterality>,
    ) -> Result<(ImageFinding, crate::engine::Scored), ServiceError> {
        let limits = self.screener.engine.preprocessor().limits;
        let instance = blocking(move || -> Result<Instance, ObjectError> {
            let (obj, ts) = object::read_part10(&bytes)?;
            Instance::from_object(&obj, &ts, &limits)
        })
        .await??;
        let laterality = laterality.filter(|l| *l != Laterality::Unspecified).unwrap_or(instance.laterality);
        let frame = instance.frames.into_iter().next().ok_or(ObjectError::Missing("frames"))?;
        match frame.pixels {
            Some(pixels) => self.grade_pixels(pixels, laterality).await,
            None => self.grade(frame.blob, laterality).await,
        }
    }

    /// Grades every study that has been quiet for `stable_secs`; a study graded from
    /// DICOM queues its SR for `sr_destination` (`AE@host:port`) in the same commit.
    /// Returns how many studies were looked at.
    pub async fn grade_due_studies(&self, stable_secs: f64, sr_destination: Option<&str>) -> Result<usize, ServiceError> {
        if !self.screener.engine.is_ready() {
            return Ok(0);
        }
        let store = self.store.clone();
        let due = blocking(move || store.due_studies(stable_secs)).await??;
        let count = due.len();
        for study in due {
            self.grade_study(study, sr_destination.map(str::to_string)).await?;
        }
        Ok(count)
    }

    async fn grade_study(&self, study: DueStudy, destination: Option<String>) -> Result<(), ServiceError> {
        let (frames, images) = match self.load_study(&study).await {
            Ok(loaded) => loaded,
            Err(e) => {
                // Storage trouble, not the study's fault: it stays due and is retried (by
                // any replica: the claim is given back).
                tracing::error!(error = %e, "cannot load a study's images");
                self.release_study(&study).await;
                return Ok(());
            }
        };
        let capacity = self.screener.engine.config().queue_capacity;
        if images.is_empty() || images.len() > capacity {
            let reason = format!("{} images; a study is graded in one pass of at most {capacity}", images.len());
            return self.fail_study(&study, reason).await;
        }
        let channel = if frames.iter().all(|f| f.received_via == "stow-rs") { Channel::Stow } else { Channel::Dicom };
        let sources: Vec<(String, i64)> = frames.iter().map(|f| (f.sop_instance_uid.clone(), f.frame)).collect();
        let meta = ExamMetadata {
            external_exam_ref: Some(study.study_uid.clone()),
            patient_ref: study.patient_id.clone(),
            views: Vec::new(),
            // A DICOM exam's Sectra study id is its study's AccessionNumber.
            sectra_study_id: study.accession_number.clone(),
        };
        let linked = study.clone();
        let hook: CommitHook = Box::new(move |tx, exam_id| link_exam(tx, exam_id, &linked, &sources, destination.as_deref()));
        match self.submit_exam_with(channel, &study.submitted_by, images, meta, Some(hook)).await {
            Ok(_) => Ok(()),
            Err(ServiceError::Engine(e @ (EngineError::QueueFull(_) | EngineError::ShuttingDown))) => {
                // Not the study's fault: it stays due and is tried again on the next pass.
                tracing::warn!(error = %e, "DICOM study grading deferred");
                self.release_study(&study).await;
                Ok(())
            }
            Err(ServiceError::Store(StoreError::LeaseLost(why))) => {
                // Another replica took the study over after this one's lease ran out: its
                // grading stands; this one's was rolled back whole.
                tracing::warn!(%why, "DICOM study graded by another replica; this grading was discarded");
                Ok(())
            }
            Err(e) => {
                tracing::warn!(error = %e, "DICOM study could not be graded");
                self.fail_study(&study, e.to_string()).await
            }
        }
    }

    /// Gives a claimed study back so the next pass of any replica can take it.
    async fn release_study(&self, study: &DueStudy) {
        let store = self.store.clone();
        let study = study.clone();
        if let Ok(Err(e)) = blocking(move || store.release_study(&study)).await {
            tracing::warn!(error = %e, "cannot release a study's lease; it expires by itself");
        }
    }

    /// Marks a study as failed (audited) so it is not retried until a new instance arrives.
    async fn fail_study(&self, study: &DueStudy, reason: String) -> Result<(), ServiceError> {
        let store = self.store.clone();
        let study = study.clone();
        match blocking(move || store.fail_study(&study, &reason)).await? {
            Err(StoreError::LeaseLost(why)) => {
                tracing::warn!(%why, "study taken over by another replica; its failure is not recorded here");
                Ok(())
            }
            other => Ok(other?),
        }
    }

    /// Reads a study's frames and their images. Native frames are graded from the decoded
    /// DICOM pixels (the stored PNG is only the copy for display); each instance is
    /// decoded once.
    async fn load_study(&self, study: &DueStudy) -> Result<LoadedStudy, ServiceError> {
        let store = self.store.clone();
        let (uid, upto) = (study.study_uid.clone(), study.last_seq);
        let limits = self.screener.engine.preprocessor().limits;
        blocking(move || -> Result<LoadedStudy, ServiceError> {
            let frames = store.study_frames(&uid, upto)?;
            let mut images = Vec::with_capacity(frames.len());
            let mut decoded: Option<(String, Vec<Option<Arc<Decoded>>>)> = None;
            // Each instance's view (ViewCodeSequence), read once per instance.
            let mut views: std::collections::HashMap<String, Option<String>> = std::collections::HashMap::new();
            for f in &frames {
                let view = match views.get(&f.instance_sha256) {
                    Some(v) => v.clone(),
                    None => {
                        let v = object::read_part10(&store.read_blob(&f.instance_sha256)?)?.0;
                        let v = object::view(&v);
                        views.insert(f.instance_sha256.clone(), v.clone());
                        v
                    }
                };
                let pixels = if f.media_type == "image/png" {
                    if decoded.as_ref().is_none_or(|(sha, _)| *sha != f.instance_sha256) {
                        let bytes = store.read_blob(&f.instance_sha256)?;
                        decoded = Some((f.instance_sha256.clone(), object::native_pixels(&bytes, &limits)?));
                    }
                    decoded.as_ref().and_then(|(_, px)| px.get((f.frame - 1).max(0) as usize).cloned().flatten())
                } else {
                    None
                };
                images.push(IncomingImage {
                    bytes: store.read_blob(&f.sha256)?.into(),
                    media_type: f.media_type.clone(),
                    laterality: Laterality::parse(&f.laterality).unwrap_or(Laterality::Unspecified),
                    view,
                    pixels,
                });
            }
            Ok((frames, images))
        })
        .await?
    }

    /// The SR of a stored exam, with patient and study attributes copied from its first
    /// DICOM source instance when it has one (blocking).
    pub fn exam_sr(&self, exam: &StoredExam) -> Result<FileDicomObject<InMemDicomObject>, ServiceError> {
        let sources = self.store.exam_sources(&exam.id)?;
        let source_study = match sources.first() {
            Some(s) => Some(object::read_part10(&self.store.read_blob(&s.instance_sha256)?)?.0),
            None => None,
        };
        let views: Vec<Option<String>> = self.store.exam_images(&exam.id)?.into_iter().map(|i| i.view).collect();
        // The parameters actually used are known only while the exam's model is loaded.
        let model = self.screener.engine.model();
        let current = model.identity.sha256 == exam.result.model.sha256;
        let context = sr::SrContext {
            policy: current.then_some(&self.screener.policy),
            grade_rule: current.then_some(model.manifest.grading.grade_rule.as_str()),
            views: &views,
        };
        Ok(sr::build_with(exam, &sources, source_study.as_ref(), &context)?)
    }

    /// The SR of a stored exam as Part 10 bytes.
    pub async fn exam_sr_bytes(self: &Arc<Self>, exam: StoredExam) -> Result<Vec<u8>, ServiceError> {
        let service = self.clone();
        blocking(move || -> Result<Vec<u8>, ServiceError> { Ok(sr::to_bytes(&service.exam_sr(&exam)?)?) }).await?
    }

    /// The exam as a FHIR R4 DiagnosticReport.
    pub async fn exam_fhir(&self, exam: StoredExam) -> Result<serde_json::Value, ServiceError> {
        let store = self.store.clone();
        let exam_id = exam.id.clone();
        let sources = blocking(move || store.exam_sources(&exam_id)).await??;
        let mut report = fhir::diagnostic_report(&exam, &sources);
        let pdf = self.exam_report_pdf(exam.clone()).await?;
        let title = format!("drscreen screening report, exam {}", exam.id);
        fhir::attach_presented_form(&mut report, &pdf, &title, &crate::store::now_rfc3339());
        Ok(report)
    }
}
