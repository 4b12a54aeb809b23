//! Pushing SRs to the PACS. Grading an exam queues a row in the `sr_outbox` table in the
//! same transaction as the exam, so a push is never lost to a crash; this task sends due
//! rows by C-STORE (a fresh association each), marks them sent, or records the error and
//! the next attempt with exponential back-off capped at `sr_retry_max_secs`. Rows are
//! never dropped: every failure is logged (without patient data) and audited.

use std::sync::Arc;
use std::time::Duration;

use dicom_dictionary_std::tags;
use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use dicom_ul::association::client::ClientAssociationOptions;
use dicom_ul::pdu::{PDataValue, PDataValueType, Pdu, PresentationContextResultReason};

use super::object::{EXPLICIT_VR_LE, IMPLICIT_VR_LE, read_part10};
use super::{DicomConfig, SrDestination, scp, sr};
use crate::service::ScreeningService;
use crate::store::{DueOutbox, Store, StoredExam};

/// Builds the SR of a stored exam, copying patient and study attributes from its first
/// DICOM source instance when it has one.
pub fn sr_for_exam(store: &Store, exam: &StoredExam) -> Result<dicom_object::FileDicomObject<InMemDicomObject>, String> {
    let sources = store.exam_sources(&exam.id).map_err(|e| e.to_string())?;
    let source_study = match sources.first() {
        Some(s) => {
            let bytes = store.read_blob(&s.instance_sha256).map_err(|e| e.to_string())?;
            Some(read_part10(&bytes).map_err(|e| e.to_string())?.0)
        }
        None => None,
    };
    sr::build(exam, &sources, source_study.as_ref()).map_err(|e| e.to_string())
}

/// The retry delay after `attempts` failures.
pub fn backoff(config: &DicomConfig, attempts: i64) -> f64 {
    let factor = 2f64.powi(attempts.clamp(0, 30) as i32);
    (config.sr_retry_initial_secs * factor).min(config.sr_retry_max_secs).max(0.0)
}

/// Sends due SRs until the process ends.
pub async fn run_sender(service: Arc<ScreeningService>, config: DicomConfig) {
    let poll = Duration::from_secs_f64(config.sr_retry_initial_secs.clamp(0.2, 2.0));
    loop {
        tokio::time::sleep(poll).await;
        let store = service.store.clone();
        let due = match tokio::task::spawn_blocking(move || store.due_outbox()).await {
            Ok(Ok(d)) => d,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot read the SR outbox");
                continue;
            }
            Err(_) => continue,
        };
        for item in due {
            let store = service.store.clone();
            let cfg = config.clone();
            let _ = tokio::task::spawn_blocking(move || {
                let outcome = push(&store, &item, &cfg.ae_title);
                let recorded = match &outcome {
                    Ok(uid) => {
                        tracing::info!(exam = %item.exam_id, destination = %item.destination, "SR stored at the PACS");
                        store.outbox_sent(&item, uid)
                    }
                    Err(e) => {
                        let delay = backoff(&cfg, item.attempts);
                        tracing::warn!(exam = %item.exam_id, destination = %item.destination, attempt = item.attempts + 1, retry_in_s = delay, error = %e, "SR push failed; queued for retry");
                        store.outbox_failed(&item, delay, e)
                    }
                };
                if let Err(e) = recorded {
                    tracing::error!(error = %e, "cannot record an SR push outcome");
                }
            })
            .await;
        }
    }
}

fn push(store: &Store, item: &DueOutbox, calling_ae: &str) -> Result<String, String> {
    let exam = store.get_exam(&item.exam_id).map_err(|e| e.to_string())?.ok_or("the exam no longer exists")?;
    let file = sr_for_exam(store, &exam)?;
    let dest = SrDestination::parse(&item.destination)?;
    let mut assoc = ClientAssociationOptions::new()
        .calling_ae_title(calling_ae)
        .called_ae_title(dest.ae_title.as_str())
        .with_presentation_context(sr::COMPREHENSIVE_3D_SR, vec![EXPLICIT_VR_LE, IMPLICIT_VR_LE])
        .connection_timeout(Duration::from_secs(10))
        .read_timeout(Duration::from_secs(30))
        .establish(dest.address())
        .map_err(|e| format!("association: {e}"))?;
    let pc = assoc
        .presentation_contexts()
        .iter()
        .find(|pc| pc.reason == PresentationContextResultReason::Acceptance)
        .cloned()
        .ok_or("the PACS accepted no presentation context for Comprehensive 3D SR")?;
    let ts = TransferSyntaxRegistry.get(pc.transfer_syntax.trim_end_matches('\0')).ok_or("unknown transfer syntax")?;
    let mut data = Vec::new();
    file.write_dataset_with_ts(&mut data, ts).map_err(|e| e.to_string())?;
    let sop = file.meta().media_storage_sop_instance_uid().trim_end_matches('\0').to_string();
    let mut cmd = InMemDicomObject::new_empty();
    use dicom_core::{DataElement, PrimitiveValue, VR};
    cmd.put(DataElement::new(tags::AFFECTED_SOP_CLASS_UID, VR::UI, PrimitiveValue::from(sr::COMPREHENSIVE_3D_SR)));
    cmd.put(DataElement::new(tags::COMMAND_FIELD, VR::US, PrimitiveValue::from(0x0001_u16)));
    cmd.put(DataElement::new(tags::MESSAGE_ID, VR::US, PrimitiveValue::from(1_u16)));
    cmd.put(DataElement::new(tags::PRIORITY, VR::US, PrimitiveValue::from(0_u16)));
    cmd.put(DataElement::new(tags::COMMAND_DATA_SET_TYPE, VR::US, PrimitiveValue::from(0_u16)));
    cmd.put(DataElement::new(tags::AFFECTED_SOP_INSTANCE_UID, VR::UI, PrimitiveValue::from(sop.as_str())));
    let command = scp::encode_command(&cmd);
    assoc
        .send(&Pdu::PData {
            data: vec![PDataValue { presentation_context_id: pc.id, value_type: PDataValueType::Command, is_last: true, data: command }],
        })
        .map_err(|e| e.to_string())?;
    {
        use std::io::Write;
        let mut writer = assoc.send_pdata(pc.id);
        writer.write_all(&data).map_err(|e| e.to_string())?;
        writer.finish().map_err(|e| e.to_string())?;
    }
    let mut response = Vec::new();
    let status = loop {
        match assoc.receive().map_err(|e| e.to_string())? {
            Pdu::PData { data } => {
                let mut done = false;
                for pdv in data {
                    if pdv.value_type == PDataValueType::Command {
                        response.extend_from_slice(&pdv.data);
                        done |= pdv.is_last;
                    }
                }
                if done {
                    break scp::read_status(&response).ok_or("unreadable C-STORE response")?;
                }
            }
            other => return Err(format!("unexpected PDU {}", other.short_description())),
        }
    };
    let _ = assoc.release();
    // Success, or a warning (0xB000, 0xB007, 0xB006): the instance is stored.
    if status == 0x0000 || (status & 0xF000) == 0xB000 { Ok(sop) } else { Err(format!("the PACS answered status 0x{status:04X}")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let c = DicomConfig { sr_retry_initial_secs: 2.0, sr_retry_max_secs: 10.0, ..Default::default() };
        assert_eq!(backoff(&c, 0), 2.0);
        assert_eq!(backoff(&c, 2), 8.0);
        assert_eq!(backoff(&c, 9), 10.0);
    }
}
