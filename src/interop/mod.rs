//! What the edges produce or parse, shared by HTTP and DICOM: DICOM objects turned into
//! fundus images (`object`), the per-exam DICOM Structured Report (`sr`), the FHIR R4
//! report (`fhir`), the DIPS RetinaIntegration operations (`dips`), the printable PDF
//! report (`pdf`) and that PDF as a DICOM Encapsulated PDF instance
//! (`encapsulated_pdf`), and the two guards every DICOM read goes through: the nesting pre-scan
//! (`nesting`) and the decoder that allocates no more than the data holds (`bounded`).
//! Pure translation: no network, no database, no clock of its own;
//! callers (the service, the edges) load what a document needs and pass it in.
//! Constants both DICOM readers and writers need live here.

pub mod bounded;
pub mod dips;
pub mod encapsulated_pdf;
pub mod fhir;
pub mod nesting;
pub mod object;
pub mod pdf;
pub mod sr;

/// Implicit VR Little Endian, the default transfer syntax (PS3.5 A.1).
pub const IMPLICIT_VR_LE: &str = "1.2.840.10008.1.2";
/// Explicit VR Little Endian (PS3.5 A.2).
pub const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";
/// drscreen's implementation class UID (a fixed 2.25 UUID-derived value), written in the
/// file meta of every Part 10 object drscreen creates.
pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.302506398318137962153431455127939151251";

/// A UID under the `2.25` root (ITU-T X.667: a UUID as one decimal integer) from 16 bytes.
pub fn uid_from_bytes(bytes: [u8; 16]) -> String {
    format!("2.25.{}", u128::from_be_bytes(bytes))
}

/// A deterministic UID derived from a name (sha256, first 16 bytes; version bits set as a
/// name-based UUID so it is a valid X.667 value).
pub fn uid_from_name(name: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(name.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    uid_from_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_are_valid_and_deterministic() {
        let uid = uid_from_name("exam-1");
        assert!(uid.len() <= 64 && uid.starts_with("2.25.") && uid == uid_from_name("exam-1"));
        assert!(uid[5..].chars().all(|c| c.is_ascii_digit()) && !uid[5..].starts_with('0'));
    }
}
