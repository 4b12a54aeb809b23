//! Pushing each exam's SR and PDF report (Encapsulated PDF) to the PACS. Grading an exam queues a `dicom` delivery in the outbox in the
//! same transaction as the exam, so a push is never lost to a crash; this task sends due
//! rows by C-STORE (a fresh association each), marks them sent, or records the error and
//! the next attempt with exponential back-off capped at `sr_retry_max_secs`. Rows are
//! never dropped: every failure is logged (without patient data) and audited.

use std::sync::Arc;
use std::time::Duration;

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use dicom_ul::association::client::{ClientAssociation, ClientAssociationOptions};
use dicom_ul::pdu::{PDataValue, PDataValueType, Pdu, PresentationContextResultReason};

use super::{DicomConfig, SrDestination, poll_forever, scp};
use crate::interop::encapsulated_pdf::ENCAPSULATED_PDF;
use crate::interop::sr::COMPREHENSIVE_3D_SR;
use crate::interop::{EXPLICIT_VR_LE, IMPLICIT_VR_LE};
use crate::service::{ScreeningService, ServiceError};
use crate::store::{Delivery, DeliveryKind};

/// Why one SR push failed (recorded on the outbox row and retried).
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("the exam no longer exists")]
    ExamGone,
    #[error("cannot build the SR: {0}")]
    Build(#[from] ServiceError),
    #[error("bad destination: {0}")]
    Destination(String),
    #[error("association: {0}")]
    Association(#[from] dicom_ul::association::Error),
    #[error("the PACS accepted no presentation context for SOP class {0}")]
    NoContext(&'static str),
    #[error("the PACS chose an unknown transfer syntax {0}")]
    TransferSyntax(String),
    #[error("cannot encode the SR: {0}")]
    Encode(String),
    #[error("sending: {0}")]
    Io(#[from] std::io::Error),
    #[error("unexpected PDU {0}")]
    UnexpectedPdu(String),
    #[error("unreadable C-STORE response")]
    UnreadableResponse,
    #[error("the PACS answered status 0x{0:04X}")]
    Status(u16),
}

/// The retry delay after `attempts` failures.
pub fn backoff(config: &DicomConfig, attempts: i64) -> f64 {
    let factor = 2f64.powi(attempts.clamp(0, 30) as i32);
    (config.sr_retry_initial_secs * factor).min(config.sr_retry_max_secs).max(0.0)
}

/// Sends due SRs until the process ends.
pub async fn run_sender(service: Arc<ScreeningService>, config: DicomConfig) {
    let poll = Duration::from_secs_f64(config.sr_retry_initial_secs.clamp(0.2, 2.0));
    poll_forever("SR sender", poll, || {
        let (service, config) = (service.clone(), config.clone());
        async move {
            let store = service.store.clone();
            let due = tokio::task::spawn_blocking(move || store.claim_deliveries(DeliveryKind::Dicom)).await??;
            for item in due {
                let (service, config) = (service.clone(), config.clone());
                tokio::task::spawn_blocking(move || send_and_record(&service, &item, &config)).await??;
            }
            Ok(())
        }
    })
    .await
}

/// Pushes one SR and records the outcome on its outbox row (blocking).
fn send_and_record(service: &ScreeningService, item: &Delivery, config: &DicomConfig) -> Result<(), ServiceError> {
    match push(service, item, &config.ae_title) {
        Ok(uids) => {
            tracing::info!(exam = %item.exam_id, destination = %item.destination, "SR and PDF report stored at the PACS");
            let stored = uids.join(", ");
            service.store.delivery_delivered(
                item,
                "dicom.sr.sent",
                &format!("SR and PDF {stored} to {}", item.destination),
                Some(&stored),
            )?;
        }
        Err(e) => {
            let delay = backoff(config, item.attempts);
            tracing::warn!(exam = %item.exam_id, destination = %item.destination, attempt = item.attempts + 1, retry_in_s = delay, error = %e, "SR push failed; queued for retry");
            service.store.delivery_retry(item, "dicom.sr.failed", delay, &e.to_string())?;
        }
    }
    Ok(())
}

/// Builds the exam's SR and its PDF report (an Encapsulated PDF instance) and stores
/// both at the destination by C-STORE on one association; returns their SOP Instance
/// UIDs. The delivery counts only when the PACS has both: a failure of either is retried
/// whole (both UIDs are deterministic, so a resend overwrites rather than duplicates).
fn push(service: &ScreeningService, item: &Delivery, calling_ae: &str) -> Result<Vec<String>, PushError> {
    let exam = service.store.get_exam(&item.exam_id).map_err(ServiceError::from)?.ok_or(PushError::ExamGone)?;
    let objects = [(COMPREHENSIVE_3D_SR, service.exam_sr(&exam)?), (ENCAPSULATED_PDF, service.exam_pdf_dicom(&exam)?)];
    let dest = SrDestination::parse(&item.destination).map_err(PushError::Destination)?;
    let mut options = ClientAssociationOptions::new()
        .calling_ae_title(calling_ae)
        .called_ae_title(dest.ae_title.as_str())
        .connection_timeout(Duration::from_secs(10))
        .read_timeout(Duration::from_secs(30));
    for (sop_class, _) in &objects {
        options = options.with_presentation_context(*sop_class, vec![EXPLICIT_VR_LE, IMPLICIT_VR_LE]);
    }
    let mut assoc = options.establish(dest.address())?;
    let mut stored = Vec::with_capacity(objects.len());
    for (message_id, (sop_class, file)) in (1u16..).zip(&objects) {
        let pc = assoc
            .presentation_contexts()
            .iter()
            .find(|pc| pc.reason == PresentationContextResultReason::Acceptance && pc.abstract_syntax.trim_end_matches('\0') == *sop_class)
            .cloned()
            .ok_or(PushError::NoContext(sop_class))?;
        let ts_uid = pc.transfer_syntax.trim_end_matches('\0');
        let ts = TransferSyntaxRegistry.get(ts_uid).ok_or_else(|| PushError::TransferSyntax(ts_uid.to_string()))?;
        let mut data = Vec::new();
        file.write_dataset_with_ts(&mut data, ts).map_err(|e| PushError::Encode(e.to_string()))?;
        let sop = file.meta().media_storage_sop_instance_uid().trim_end_matches('\0').to_string();
        let status = c_store(&mut assoc, pc.id, message_id, sop_class, &sop, &data)?;
        // Success, or a warning (0xB000, 0xB007, 0xB006): the instance is stored.
        if !(status == 0x0000 || (status & 0xF000) == 0xB000) {
            let _ = assoc.abort();
            return Err(PushError::Status(status));
        }
        stored.push(sop);
    }
    if let Err(e) = assoc.release() {
        // The PACS answered; a failed release does not undo the stores.
        tracing::debug!(error = %e, "association release failed after C-STORE");
    }
    Ok(stored)
}

/// Sends one C-STORE request (command, then data set) and returns the response status.
fn c_store(
    assoc: &mut ClientAssociation<std::net::TcpStream>,
    pc_id: u8,
    message_id: u16,
    sop_class: &str,
    sop: &str,
    data: &[u8],
) -> Result<u16, PushError> {
    let mut cmd = InMemDicomObject::new_empty();
    cmd.put(DataElement::new(tags::AFFECTED_SOP_CLASS_UID, VR::UI, PrimitiveValue::from(sop_class)));
    cmd.put(DataElement::new(tags::COMMAND_FIELD, VR::US, PrimitiveValue::from(0x0001_u16)));
    cmd.put(DataElement::new(tags::MESSAGE_ID, VR::US, PrimitiveValue::from(message_id)));
    cmd.put(DataElement::new(tags::PRIORITY, VR::US, PrimitiveValue::from(0_u16)));
    cmd.put(DataElement::new(tags::COMMAND_DATA_SET_TYPE, VR::US, PrimitiveValue::from(0_u16)));
    cmd.put(DataElement::new(tags::AFFECTED_SOP_INSTANCE_UID, VR::UI, PrimitiveValue::from(sop)));
    let command = scp::encode_command(&cmd);
    assoc.send(&Pdu::PData {
        data: vec![PDataValue { presentation_context_id: pc_id, value_type: PDataValueType::Command, is_last: true, data: command }],
    })?;
    {
        use std::io::Write;
        let mut writer = assoc.send_pdata(pc_id);
        writer.write_all(data)?;
        writer.finish()?;
    }
    let mut response = Vec::new();
    loop {
        match assoc.receive()? {
            Pdu::PData { data } => {
                let mut done = false;
                for pdv in data {
                    if pdv.value_type == PDataValueType::Command {
                        response.extend_from_slice(&pdv.data);
                        done |= pdv.is_last;
                    }
                }
                if done {
                    return scp::read_status(&response).ok_or(PushError::UnreadableResponse);
                }
            }
            other => return Err(PushError::UnexpectedPdu(other.short_description().to_string())),
        }
    }
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
