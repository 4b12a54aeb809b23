//! A linear pre-scan of a DICOM data set's nesting, run before dicom-rs parses it.
//! dicom-rs recurses once per nested sequence and item, so a crafted object of a few
//! hundred kilobytes (thousands of nested sequences) would overflow a thread's stack
//! and abort the whole process, whichever edge received it. This scan reads element
//! headers only (no allocation beyond a small stack of open containers, no recursion)
//! and refuses a data set whose sequences and items nest deeper than [`MAX_DEPTH`], or
//! whose element claims more bytes than the data holds (dicom-rs would allocate the
//! claimed length first: a 5 KB object declaring 4 GB took seconds and gigabytes).
//! It understands the little-endian encodings drscreen accepts; the transfer syntax
//! check that follows refuses anything else. A header it cannot read (truncated data)
//! ends the scan: dicom-rs then reports the truncation itself.

use dicom_core::Tag;
use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_dictionary_std::StandardDataDictionary;

/// Open sequences plus open items allowed at once. A fundus photograph's data set nests
/// a handful of levels (code sequences inside request attributes); 64 leaves ample room
/// while keeping dicom-rs's recursion far from any thread's stack limit.
pub const MAX_DEPTH: usize = 64;

const UNDEFINED: u32 = 0xFFFF_FFFF;
const ITEM: u16 = 0xE000;
const ITEM_END: u16 = 0xE00D;
const SEQUENCE_END: u16 = 0xE0DD;
const PIXEL_DATA: (u16, u16) = (0x7FE0, 0x0010);

/// How element headers are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    ExplicitLittle,
    ImplicitLittle,
}

/// One open sequence or item: where it ends (None = undefined length, closed by a
/// delimiter) and whether its items are pixel data fragments (raw bytes, not data sets).
struct Open {
    end: Option<usize>,
    fragments: bool,
}

/// Explicit VRs whose length field is the 2 bytes after the VR (PS3.5 7.1.2); every
/// other VR, and any unknown one (which dicom-rs reads as UN), has 2 reserved bytes and
/// a 4-byte length. The scan must read lengths exactly as dicom-rs will, or a mutated VR
/// lets a huge claimed length past it (fuzzing found a 5 KB object taking 3.5 s).
fn short_vr(vr: &[u8]) -> bool {
    matches!(
        vr,
        b"AE"
            | b"AS"
            | b"AT"
            | b"CS"
            | b"DA"
            | b"DS"
            | b"DT"
            | b"FL"
            | b"FD"
            | b"IS"
            | b"LO"
            | b"LT"
            | b"PN"
            | b"SH"
            | b"SL"
            | b"SS"
            | b"ST"
            | b"TM"
            | b"UI"
            | b"UL"
            | b"US"
    )
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Refuses a defined length that runs past the end of the data.
fn within(bytes: &[u8], pos: usize, length: u32) -> Result<(), ScanError> {
    let remaining = bytes.len().saturating_sub(pos);
    if length != UNDEFINED && length as usize > remaining {
        return Err(ScanError::LengthBeyondEnd { at: pos, length, remaining });
    }
    Ok(())
}

/// The VR the standard dictionary gives `tag` (implicit VR carries none), as its two
/// characters; `UN` for unknown and ambiguous tags, as dicom-rs reads them.
fn dictionary_vr(group: u16, element: u16) -> [u8; 2] {
    let vr = StandardDataDictionary.by_tag(Tag(group, element)).and_then(|e| e.vr().exact()).unwrap_or(dicom_core::VR::UN);
    let name = vr.to_string().as_bytes();
    [name[0], name[1]]
}

/// The size of one value of a binary numeric VR (1 for text and bytes). dicom-rs reads
/// `length / size` values but counts `length` bytes as read, so a length that is not a
/// multiple of the size silently shifts every later header (PS3.5 6.2 requires the
/// multiple anyway): one bit flipped in a VR (SH to SL) turned a 5 KB object into an
/// 800 ms, gigabyte-sized read.
fn value_size(vr: &[u8]) -> u32 {
    match vr {
        b"SS" | b"US" | b"OW" => 2,
        b"AT" | b"FL" | b"SL" | b"UL" | b"OF" | b"OL" => 4,
        b"FD" | b"OD" | b"SV" | b"UV" | b"OV" => 8,
        _ => 1,
    }
}

/// Why a data set was refused before parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    #[error("sequences nested deeper than {0} levels")]
    TooDeep(usize),
    #[error("an element at byte {at} claims {length} bytes; only {remaining} remain")]
    LengthBeyondEnd { at: usize, length: u32, remaining: usize },
    #[error("an element at byte {at} has length {length}, not a multiple of its {vr} value size {size}")]
    LengthNotMultiple { at: usize, length: u32, vr: &'static str, size: u32 },
}

/// An explicit-VR element header at `pos` (not an item or delimiter): its VR, length and
/// header size, read as dicom-rs reads it; None when the data ends inside it.
fn explicit_header(bytes: &[u8], pos: usize) -> Option<([u8; 2], u32, usize)> {
    let &[a, b] = bytes.get(pos + 4..pos + 6)? else { return None };
    let vr = [a, b];
    if short_vr(&vr) { Some((vr, u32::from(u16_at(bytes, pos + 6)?), 8)) } else { Some((vr, u32_at(bytes, pos + 8)?, 12)) }
}

/// Checks a Part 10 file's meta group (`bytes` starts after the `DICM` magic): flat,
/// explicit VR little endian, as long as its (0002,0000) group length says. dicom-rs's
/// meta reader also allocates each claimed length before reading it.
pub fn check_meta(bytes: &[u8]) -> Result<(), ScanError> {
    let Some(group_length) = u32_at(bytes, 8) else { return Ok(()) };
    let end = 12usize.saturating_add(group_length as usize);
    let mut pos = 12;
    while pos < end {
        let (Some(group), Some(_)) = (u16_at(bytes, pos), u16_at(bytes, pos + 2)) else { break };
        let (length, header) = if group == 0xFFFE {
            let Some(length) = u32_at(bytes, pos + 4) else { break };
            (length, 8)
        } else {
            let Some((_, length, header)) = explicit_header(bytes, pos) else { break };
            (length, header)
        };
        pos += header;
        within(bytes, pos, length)?;
        pos = pos.saturating_add(length as usize);
    }
    Ok(())
}

/// Refuses a data set nested deeper than `max_depth` or claiming more bytes than it has;
/// returns the deepest nesting seen.
pub fn check(bytes: &[u8], encoding: Encoding, max_depth: usize) -> Result<usize, ScanError> {
    let mut open: Vec<Open> = Vec::new();
    let mut deepest = 0;
    let mut pos = 0usize;
    while let (Some(group), Some(element)) = (u16_at(bytes, pos), u16_at(bytes, pos + 2)) {
        while open.last().is_some_and(|o| o.end.is_some_and(|end| pos >= end)) {
            open.pop();
        }
        if group == 0xFFFE {
            let Some(length) = u32_at(bytes, pos + 4) else { break };
            pos += 8;
            within(bytes, pos, length)?;
            match element {
                ITEM if open.last().is_some_and(|o| o.fragments) => pos = pos.saturating_add(length as usize),
                ITEM => open.push(Open { end: (length != UNDEFINED).then(|| pos.saturating_add(length as usize)), fragments: false }),
                ITEM_END | SEQUENCE_END => {
                    open.pop();
                }
                // Any other tag in the item group is read by dicom-rs as a UN value.
                _ if length != UNDEFINED => pos = pos.saturating_add(length as usize),
                _ => open.push(Open { end: None, fragments: false }),
            }
        } else {
            let (vr, length, header) = match encoding {
                Encoding::ExplicitLittle => {
                    let Some(explicit) = explicit_header(bytes, pos) else { break };
                    explicit
                }
                Encoding::ImplicitLittle => {
                    let Some(length) = u32_at(bytes, pos + 4) else { break };
                    (dictionary_vr(group, element), length, 8)
                }
            };
            let sequence = &vr == b"SQ";
            let size = value_size(&vr);
            if length != UNDEFINED && length % size != 0 {
                let vr = dicom_core::VR::from_binary(vr).map_or("UN", |v| v.to_string());
                return Err(ScanError::LengthNotMultiple { at: pos, length, vr, size });
            }
            pos += header;
            within(bytes, pos, length)?;
            if length == UNDEFINED {
                // An undefined length is a sequence (or UN read as one) or encapsulated pixel data.
                open.push(Open { end: None, fragments: (group, element) == PIXEL_DATA });
            } else if sequence {
                open.push(Open { end: Some(pos.saturating_add(length as usize)), fragments: false });
            } else {
                pos = pos.saturating_add(length as usize);
            }
        }
        deepest = deepest.max(open.len());
        if open.len() > max_depth {
            return Err(ScanError::TooDeep(max_depth));
        }
    }
    Ok(deepest)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// `levels` sequences, each holding one item holding the next: undefined lengths in
    /// explicit VR little endian, as the crafted objects that crashed the process.
    pub(crate) fn nested_undefined(levels: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for _ in 0..levels {
            out.extend_from_slice(&[0x08, 0x00, 0x15, 0x11, b'S', b'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF]);
            out.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
        }
        for _ in 0..levels {
            out.extend_from_slice(&[0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0]);
            out.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        }
        out
    }

    /// The same with defined lengths in implicit VR (the dictionary says (0008,1115) is SQ).
    fn nested_defined_implicit(levels: usize) -> Vec<u8> {
        let mut inner: Vec<u8> = Vec::new();
        for _ in 0..levels {
            let mut item = vec![0xFE, 0xFF, 0x00, 0xE0];
            item.extend_from_slice(&(inner.len() as u32).to_le_bytes());
            item.extend_from_slice(&inner);
            let mut seq = vec![0x08, 0x00, 0x15, 0x11];
            seq.extend_from_slice(&(item.len() as u32).to_le_bytes());
            seq.extend_from_slice(&item);
            inner = seq;
        }
        inner
    }

    #[test]
    fn deep_nesting_is_refused_and_shallow_nesting_passes() {
        assert_eq!(check(&nested_undefined(3), Encoding::ExplicitLittle, MAX_DEPTH), Ok(6));
        assert_eq!(check(&nested_undefined(2000), Encoding::ExplicitLittle, MAX_DEPTH), Err(ScanError::TooDeep(MAX_DEPTH)));
        assert_eq!(check(&nested_defined_implicit(3), Encoding::ImplicitLittle, MAX_DEPTH), Ok(6));
        assert!(check(&nested_defined_implicit(1000), Encoding::ImplicitLittle, MAX_DEPTH).is_err());
        // A header cut short ends the scan without a verdict of its own.
        assert!(check(&nested_undefined(2000)[..7], Encoding::ExplicitLittle, MAX_DEPTH).is_ok());
        // A length past the end is refused before anything would allocate it.
        let claim = [0x10, 0x00, 0x10, 0x00, b'U', b'T', 0, 0, 0x00, 0x00, 0x00, 0xF0, b'x'];
        assert!(matches!(check(&claim, Encoding::ExplicitLittle, MAX_DEPTH), Err(ScanError::LengthBeyondEnd { .. })));
        assert!(check(b"\x10\x00\x10\x00\x00\x00\x00\x40", Encoding::ImplicitLittle, MAX_DEPTH).is_err());
        // An unknown VR is read as dicom-rs reads it (UN: reserved bytes, 4-byte length),
        // so its claim is seen too.
        let unknown_vr = [0x10, 0x00, 0x10, 0x00, 0xFF, 0x00, 0, 0, 0x00, 0x00, 0x00, 0xF0, b'x'];
        assert!(matches!(check(&unknown_vr, Encoding::ExplicitLittle, MAX_DEPTH), Err(ScanError::LengthBeyondEnd { .. })));
        // A binary value whose length is not a multiple of its value size is refused:
        // dicom-rs would read fewer bytes than it counts and misread every later header.
        let odd_sl = [0x08, 0x00, 0x00, 0x01, b'S', b'L', 6, 0, 1, 2, 3, 4, 5, 6];
        assert!(matches!(check(&odd_sl, Encoding::ExplicitLittle, MAX_DEPTH), Err(ScanError::LengthNotMultiple { size: 4, .. })));
        // (0028,0010) Rows is US in the dictionary: 3 bytes in implicit VR is refused too.
        let odd_rows = [0x28, 0x00, 0x10, 0x00, 3, 0, 0, 0, 1, 2, 3];
        assert!(matches!(check(&odd_rows, Encoding::ImplicitLittle, MAX_DEPTH), Err(ScanError::LengthNotMultiple { size: 2, .. })));
    }

    #[test]
    fn the_meta_group_is_checked_for_claims_past_the_end() {
        // (0002,0000) UL 4 = 28, then (0002,0010) UI claiming 40,000 bytes.
        let mut meta = vec![0x02, 0x00, 0x00, 0x00, b'U', b'L', 4, 0, 28, 0, 0, 0];
        meta.extend_from_slice(&[0x02, 0x00, 0x10, 0x00, b'U', b'I', 0x40, 0x9C]);
        meta.extend_from_slice(b"1.2.840.10008.1.2.1\0");
        assert!(matches!(check_meta(&meta), Err(ScanError::LengthBeyondEnd { length: 40_000, .. })));
        // The same with its true length passes.
        meta[18] = 20;
        meta[19] = 0;
        assert_eq!(check_meta(&meta), Ok(()));
    }

    #[test]
    fn pixel_data_fragments_are_skipped_not_parsed() {
        // (7FE0,0010) OB undefined length, an empty offset table, one fragment whose bytes
        // look like thousands of nested items, then the sequence delimiter.
        let mut out = vec![0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF];
        out.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0, 0, 0, 0]);
        let fragment = nested_undefined(500);
        out.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0]);
        out.extend_from_slice(&(fragment.len() as u32).to_le_bytes());
        out.extend_from_slice(&fragment);
        out.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        assert_eq!(check(&out, Encoding::ExplicitLittle, MAX_DEPTH), Ok(1));
    }
}
