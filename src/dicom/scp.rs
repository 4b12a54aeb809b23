//! The association loop: a blocking listener thread accepts TCP connections and serves
//! each association on its own thread (decoding stays off the async runtime). It checks
//! the called AE title and the optional calling-AE allow-list, accepts Verification and
//! any storage SOP class (so a non-image class gets a proper C-STORE status instead of a
//! bare presentation-context rejection), but only the transfer syntaxes it can decode.
//! Command and data-set PDVs are reassembled per presentation context, so fragmented
//! commands and data sets split over many P-DATA PDUs both work.
//!
//! Limits against a broken or hostile peer: at most `max_associations` connections in
//! all and `max_connections_per_host` from one address; a connection that sends no
//! A-ASSOCIATE-RQ within `artim_timeout_secs` is closed (PS3.8 9.1.5, the ARTIM timer);
//! at most `max_associations_per_ae` associations per calling AE title.

use std::collections::HashMap;
use std::net::{IpAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_ul::association::server::{AccessControl, ServerAssociationOptions};
use dicom_ul::pdu::{AssociationRJServiceUserReason, PDataValue, PDataValueType, Pdu, UserIdentity};

use super::DicomConfig;
use crate::interop::IMPLICIT_VR_LE;
use crate::interop::object::{self, TRANSFER_SYNTAXES, VERIFICATION};
use crate::service::ScreeningService;

const C_STORE_RQ: u16 = 0x0001;
const C_STORE_RSP: u16 = 0x8001;
const C_ECHO_RQ: u16 = 0x0030;
const C_ECHO_RSP: u16 = 0x8030;
const NO_DATA_SET: u16 = 0x0101;

/// Counts held per key (peer address or calling AE title); a slot is given back when
/// its [`Held`] guard drops, however the association ends.
struct Counter<K: std::hash::Hash + Eq + Clone> {
    counts: Mutex<HashMap<K, usize>>,
}

impl<K: std::hash::Hash + Eq + Clone> Counter<K> {
    fn new() -> Arc<Self> {
        Arc::new(Self { counts: Mutex::new(HashMap::new()) })
    }

    /// Takes a slot for `key` unless `limit` are already held.
    fn acquire(self: &Arc<Self>, key: K, limit: usize) -> Option<Held<K>> {
        let mut counts = self.counts.lock().ok()?;
        let n = counts.entry(key.clone()).or_default();
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(Held { counter: self.clone(), key })
    }
}

struct Held<K: std::hash::Hash + Eq + Clone> {
    counter: Arc<Counter<K>>,
    key: K,
}

impl<K: std::hash::Hash + Eq + Clone> Drop for Held<K> {
    fn drop(&mut self) {
        if let Ok(mut counts) = self.counter.counts.lock()
            && let Some(n) = counts.get_mut(&self.key)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

/// Called-AE check, the optional allow-list of calling AE titles, and the per-AE limit
/// (the slot it takes is kept in `held` for the life of the association).
struct Access {
    allowed: Vec<String>,
    per_ae: Arc<Counter<String>>,
    limit: usize,
    held: Mutex<Option<Held<String>>>,
}

impl AccessControl for Access {
    fn check_access(
        &self,
        this_ae_title: &str,
        calling_ae_title: &str,
        called_ae_title: &str,
        _user_identity: Option<&UserIdentity>,
    ) -> Result<(), AssociationRJServiceUserReason> {
        if this_ae_title.trim() != called_ae_title.trim() {
            return Err(AssociationRJServiceUserReason::CalledAETitleNotRecognized);
        }
        if !self.allowed.is_empty() && !self.allowed.iter().any(|a| a.trim() == calling_ae_title.trim()) {
            return Err(AssociationRJServiceUserReason::CallingAETitleNotRecognized);
        }
        let Some(held) = self.per_ae.acquire(calling_ae_title.trim().to_string(), self.limit) else {
            tracing::warn!(calling_ae = %calling_ae_title.trim(), limit = self.limit, "too many associations from one AE title; rejected");
            return Err(AssociationRJServiceUserReason::NoReasonGiven);
        };
        if let Ok(mut slot) = self.held.lock() {
            *slot = Some(held);
        }
        Ok(())
    }
}

/// What the SCP threads share.
pub struct Scp {
    pub config: DicomConfig,
    pub service: Arc<ScreeningService>,
    active: AtomicUsize,
    per_host: Arc<Counter<IpAddr>>,
    per_ae: Arc<Counter<String>>,
}

impl Scp {
    pub fn new(config: DicomConfig, service: Arc<ScreeningService>) -> Arc<Self> {
        Arc::new(Self { config, service, active: AtomicUsize::new(0), per_host: Counter::new(), per_ae: Counter::new() })
    }
}

/// Accepts connections on `listener` forever, one thread per association.
pub fn spawn(listener: TcpListener, scp: Arc<Scp>) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("drscreen-dicom".into()).spawn(move || {
        for stream in listener.incoming() {
            let stream = match stream {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "DICOM accept failed");
                    continue;
                }
            };
            if scp.active.fetch_add(1, Ordering::AcqRel) >= scp.config.max_associations {
                scp.active.fetch_sub(1, Ordering::AcqRel);
                tracing::warn!(max = scp.config.max_associations, "too many DICOM associations; connection closed");
                continue;
            }
            let host = stream.peer_addr().map(|a| a.ip()).unwrap_or(IpAddr::from([0, 0, 0, 0]));
            let Some(host_slot) = scp.per_host.acquire(host, scp.config.max_connections_per_host) else {
                scp.active.fetch_sub(1, Ordering::AcqRel);
                tracing::warn!(max = scp.config.max_connections_per_host, "too many DICOM connections from one host; connection closed");
                continue;
            };
            let scp2 = scp.clone();
            let spawned = std::thread::Builder::new().name("drscreen-assoc".into()).spawn(move || {
                serve(stream, &scp2);
                drop(host_slot);
                scp2.active.fetch_sub(1, Ordering::AcqRel);
            });
            if let Err(e) = spawned {
                scp.active.fetch_sub(1, Ordering::AcqRel);
                tracing::error!(error = %e, "cannot start an association thread");
            }
        }
    })
}

/// A command waiting for its data set.
struct Pending {
    pc: u8,
    command: InMemDicomObject,
    data: Vec<u8>,
    too_large: bool,
}

fn serve(stream: TcpStream, scp: &Scp) {
    let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    let timeout = Duration::from_secs(scp.config.idle_timeout_secs.max(1));
    // Until the A-ASSOCIATE-RQ has arrived, reads wait at most the ARTIM time.
    let artim = Duration::from_secs(scp.config.artim_timeout_secs.max(1));
    let access = Access {
        allowed: scp.config.allowed_calling_aes.clone(),
        per_ae: scp.per_ae.clone(),
        limit: scp.config.max_associations_per_ae,
        held: Mutex::new(None),
    };
    let mut options = ServerAssociationOptions::new()
        .ae_access_control(access)
        .ae_title(scp.config.ae_title.clone())
        .max_pdu_length(scp.config.max_pdu)
        .promiscuous(true)
        .read_timeout(artim)
        .write_timeout(timeout)
        .with_abstract_syntax(VERIFICATION);
    for (uid, _) in object::IMAGE_SOP_CLASSES {
        options = options.with_abstract_syntax(uid);
    }
    for ts in TRANSFER_SYNTAXES {
        options = options.with_transfer_syntax(ts);
    }
    let mut assoc = match options.establish(stream) {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(%peer, error = %e, "DICOM association refused");
            return;
        }
    };
    if let Err(e) = assoc.inner_stream().set_read_timeout(Some(timeout)) {
        tracing::warn!(%peer, error = %e, "cannot set the association's idle timeout; closing");
        return;
    }
    let calling = dicom_ul::association::Association::peer_ae_title(&assoc).trim().to_string();
    let contexts: Vec<(u8, String, String)> = assoc
        .presentation_contexts()
        .iter()
        .map(|pc| (pc.id, pc.abstract_syntax.trim_end_matches('\0').to_string(), pc.transfer_syntax.trim_end_matches('\0').to_string()))
        .collect();
    tracing::info!(%peer, calling_ae = %calling, contexts = contexts.len(), "DICOM association established");
    let max_bytes = scp.service.screener.engine.preprocessor().limits.max_bytes.saturating_mul(2);
    let mut command_buf: Vec<u8> = Vec::new();
    let mut pending: Option<Pending> = None;
    loop {
        let pdu = match assoc.receive() {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "DICOM association ended with an error");
                return;
            }
        };
        match pdu {
            Pdu::PData { data } => {
                for pdv in data {
                    let outcome = handle_pdv(pdv, &mut command_buf, &mut pending, max_bytes);
                    match outcome {
                        Ok(None) => {}
                        Ok(Some(done)) => {
                            let (pc, response) = dispatch(done, &contexts, &calling, scp);
                            let msg = Pdu::PData {
                                data: vec![PDataValue {
                                    presentation_context_id: pc,
                                    value_type: PDataValueType::Command,
                                    is_last: true,
                                    data: response,
                                }],
                            };
                            if let Err(e) = assoc.send(&msg) {
                                tracing::warn!(%peer, error = %e, "cannot send a DIMSE response");
                                return;
                            }
                        }
                        Err(reason) => {
                            tracing::warn!(%peer, %reason, "protocol error; aborting the association");
                            if let Err(e) = assoc.abort() {
                                tracing::debug!(%peer, error = %e, "abort not delivered");
                            }
                            return;
                        }
                    }
                }
            }
            Pdu::ReleaseRQ => {
                if let Err(e) = assoc.send(&Pdu::ReleaseRP) {
                    // The peer asked to release; if it has already gone, nothing is lost.
                    tracing::debug!(%peer, error = %e, "release response not delivered");
                }
                tracing::info!(%peer, "DICOM association released");
                return;
            }
            Pdu::AbortRQ { .. } => {
                tracing::info!(%peer, "DICOM association aborted by the peer");
                return;
            }
            other => {
                tracing::warn!(%peer, pdu = %other.short_description(), "unexpected PDU; aborting");
                if let Err(e) = assoc.abort() {
                    tracing::debug!(%peer, error = %e, "abort not delivered");
                }
                return;
            }
        }
    }
}

/// A complete message: command, and the data set when one was announced.
struct Message {
    pc: u8,
    command: InMemDicomObject,
    data: Option<Vec<u8>>,
    too_large: bool,
}

fn handle_pdv(
    pdv: PDataValue,
    command_buf: &mut Vec<u8>,
    pending: &mut Option<Pending>,
    max_bytes: usize,
) -> Result<Option<Message>, String> {
    match pdv.value_type {
        PDataValueType::Command => {
            if pending.is_some() {
                return Err("a command arrived before the previous data set ended".into());
            }
            command_buf.extend_from_slice(&pdv.data);
            if command_buf.len() > 64 * 1024 {
                return Err("command set larger than 64 KiB".into());
            }
            if !pdv.is_last {
                return Ok(None);
            }
            let bytes = std::mem::take(command_buf);
            let command = object::read_dataset(&bytes, IMPLICIT_VR_LE).map_err(|e| format!("unreadable command: {e}"))?;
            let has_data =
                command.get(tags::COMMAND_DATA_SET_TYPE).and_then(|e| e.to_int::<u16>().ok()).unwrap_or(NO_DATA_SET) != NO_DATA_SET;
            if has_data {
                *pending = Some(Pending { pc: pdv.presentation_context_id, command, data: Vec::new(), too_large: false });
                Ok(None)
            } else {
                Ok(Some(Message { pc: pdv.presentation_context_id, command, data: None, too_large: false }))
            }
        }
        PDataValueType::Data => {
            let Some(p) = pending.as_mut() else {
                return Err("a data set without a command".into());
            };
            if p.pc != pdv.presentation_context_id {
                return Err(format!("data set on presentation context {} for a command on {}", pdv.presentation_context_id, p.pc));
            }
            if !p.too_large {
                if p.data.len() + pdv.data.len() > max_bytes {
                    p.too_large = true;
                    p.data = Vec::new();
                } else {
                    p.data.extend_from_slice(&pdv.data);
                }
            }
            if !pdv.is_last {
                return Ok(None);
            }
            let Some(p) = pending.take() else {
                return Err("no pending command".into());
            };
            Ok(Some(Message { pc: p.pc, command: p.command, data: Some(p.data), too_large: p.too_large }))
        }
    }
}

fn text(obj: &InMemDicomObject, tag: Tag) -> String {
    obj.get(tag).and_then(|e| e.to_str().ok()).map(|s| s.trim_end_matches(['\0', ' ']).to_string()).unwrap_or_default()
}

/// Runs one DIMSE request; returns the presentation context and the encoded response.
fn dispatch(msg: Message, contexts: &[(u8, String, String)], calling: &str, scp: &Scp) -> (u8, Vec<u8>) {
    let field = msg.command.get(tags::COMMAND_FIELD).and_then(|e| e.to_int::<u16>().ok()).unwrap_or(0);
    let message_id = msg.command.get(tags::MESSAGE_ID).and_then(|e| e.to_int::<u16>().ok()).unwrap_or(0);
    let class = text(&msg.command, tags::AFFECTED_SOP_CLASS_UID);
    let instance = text(&msg.command, tags::AFFECTED_SOP_INSTANCE_UID);
    let context = contexts.iter().find(|(id, _, _)| *id == msg.pc);
    match field {
        C_ECHO_RQ => (msg.pc, response(C_ECHO_RSP, message_id, &class, None, 0x0000, None)),
        C_STORE_RQ => {
            let (status, comment) = match (context, msg.data) {
                (None, _) => (0xC000, Some("unknown presentation context".to_string())),
                (_, _) if msg.too_large => (0xA700, Some("data set larger than this node accepts".to_string())),
                (_, None) => (0xC000, Some("C-STORE without a data set".to_string())),
                (Some((_, _, ts)), Some(data)) => store(scp, calling, &class, &instance, &data, ts),
            };
            (msg.pc, response(C_STORE_RSP, message_id, &class, Some(&instance), status, comment.as_deref()))
        }
        other => {
            // Unrecognised operation (PS3.7 C.4.2): answered on the request's context.
            tracing::warn!(command = other, "unsupported DIMSE command");
            (msg.pc, response(other | 0x8000, message_id, &class, None, 0x0211, Some("unsupported operation")))
        }
    }
}

fn store(scp: &Scp, calling: &str, class: &str, instance: &str, data: &[u8], ts: &str) -> (u16, Option<String>) {
    if !object::is_image_class(class) {
        return (0x0122, Some(format!("SOP class {class} is not an image class this node grades")));
    }
    let actor = format!("dicom:{calling}");
    match scp.service.ingest_dataset(&actor, "c-store", calling, data, ts) {
        Ok(done) if done.sop_instance_uid != instance || done.sop_class_uid != class => {
            (0xA900, Some("the data set's SOP class/instance differ from the command's".into()))
        }
        Ok(done) => {
            tracing::info!(calling_ae = %calling, new = done.new, "C-STORE accepted");
            (0x0000, None)
        }
        Err(e) => {
            tracing::warn!(calling_ae = %calling, error = %e, "C-STORE refused");
            (e.dimse_status(), Some(e.to_string()))
        }
    }
}

/// Encodes a response command set (implicit VR little endian, with its group length).
fn response(field: u16, message_id: u16, class: &str, instance: Option<&str>, status: u16, comment: Option<&str>) -> Vec<u8> {
    let mut obj = InMemDicomObject::new_empty();
    let us = |tag, v: u16| DataElement::new(tag, VR::US, PrimitiveValue::from(v));
    if !class.is_empty() {
        obj.put(DataElement::new(tags::AFFECTED_SOP_CLASS_UID, VR::UI, PrimitiveValue::from(class)));
    }
    obj.put(us(tags::COMMAND_FIELD, field));
    obj.put(us(tags::MESSAGE_ID_BEING_RESPONDED_TO, message_id));
    obj.put(us(tags::COMMAND_DATA_SET_TYPE, NO_DATA_SET));
    obj.put(us(tags::STATUS, status));
    if let Some(c) = comment {
        let c: String = c.chars().filter(|c| c.is_ascii() && !c.is_ascii_control()).take(64).collect();
        obj.put(DataElement::new(tags::ERROR_COMMENT, VR::LO, PrimitiveValue::from(c)));
    }
    if let Some(i) = instance.filter(|i| !i.is_empty()) {
        obj.put(DataElement::new(tags::AFFECTED_SOP_INSTANCE_UID, VR::UI, PrimitiveValue::from(i)));
    }
    encode_command(&obj)
}

/// Writes a command set with its CommandGroupLength element first.
pub fn encode_command(obj: &InMemDicomObject) -> Vec<u8> {
    let mut body = Vec::new();
    if let Some(ts) =
        dicom_encoding::transfer_syntax::TransferSyntaxIndex::get(&dicom_transfer_syntax_registry::TransferSyntaxRegistry, IMPLICIT_VR_LE)
        && obj.write_dataset_with_ts(&mut body, ts).is_err()
    {
        body.clear();
    }
    let mut out = Vec::with_capacity(body.len() + 12);
    out.extend_from_slice(&[0, 0, 0, 0, 4, 0, 0, 0]);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// Reads the status of a response command set (used by the SR sender).
pub fn read_status(bytes: &[u8]) -> Option<u16> {
    let obj = object::read_dataset(bytes, IMPLICIT_VR_LE).ok()?;
    obj.get(tags::STATUS).and_then(|e| e.to_int::<u16>().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pdv(kind: PDataValueType, last: bool, data: &[u8]) -> PDataValue {
        PDataValue { presentation_context_id: 1, value_type: kind, is_last: last, data: data.to_vec() }
    }

    #[test]
    fn fragmented_commands_and_data_reassemble() {
        let mut cmd = InMemDicomObject::new_empty();
        cmd.put(DataElement::new(tags::COMMAND_FIELD, VR::US, PrimitiveValue::from(C_STORE_RQ)));
        cmd.put(DataElement::new(tags::COMMAND_DATA_SET_TYPE, VR::US, PrimitiveValue::from(0x0000_u16)));
        let bytes = encode_command(&cmd);
        let (a, b) = bytes.split_at(7);
        let (mut buf, mut pending) = (Vec::new(), None);
        assert!(handle_pdv(pdv(PDataValueType::Command, false, a), &mut buf, &mut pending, 100).unwrap().is_none());
        assert!(handle_pdv(pdv(PDataValueType::Command, true, b), &mut buf, &mut pending, 100).unwrap().is_none());
        assert!(pending.is_some());
        assert!(handle_pdv(pdv(PDataValueType::Data, false, b"abc"), &mut buf, &mut pending, 100).unwrap().is_none());
        let msg = handle_pdv(pdv(PDataValueType::Data, true, b"def"), &mut buf, &mut pending, 100).unwrap().unwrap();
        assert_eq!(msg.data.as_deref(), Some(&b"abcdef"[..]));
        assert!(!msg.too_large);
        // Data on another presentation context than its command is a protocol error.
        let mut other = pdv(PDataValueType::Data, true, b"x");
        other.presentation_context_id = 3;
        let (mut buf, mut pending) = (Vec::new(), None);
        handle_pdv(pdv(PDataValueType::Command, true, &bytes), &mut buf, &mut pending, 100).unwrap();
        assert!(handle_pdv(other, &mut buf, &mut pending, 100).is_err());
    }

    #[test]
    fn responses_carry_a_group_length_and_status() {
        let r = response(C_STORE_RSP, 7, "1.2.3", Some("1.2.3.4"), 0xA900, Some("mismatch"));
        assert_eq!(u32::from_le_bytes([r[8], r[9], r[10], r[11]]) as usize, r.len() - 12);
        assert_eq!(read_status(&r), Some(0xA900));
    }
}
