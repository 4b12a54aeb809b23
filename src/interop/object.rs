//! DICOM objects to fundus images. Reads a data set (received in a negotiated transfer
//! syntax, or a Part 10 file), checks it is an image class this node grades, and turns
//! every frame into an image: encapsulated JPEG frames stay the camera's own JPEG bytes
//! (the decoder the rest of drscreen uses reads baseline, extended and lossless JPEG);
//! native pixel data (8-bit RGB, YBR_FULL or monochrome, either planar configuration)
//! becomes RGB8 handed to the engine as decoded pixels, plus a lossless PNG kept as the
//! stored image for display and heatmaps. JPEG 2000 is not offered: this build has no
//! decoder for it, and offering a syntax we cannot decode would turn stores into 0xC000.

use bytes::Bytes;
use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_object::InMemDicomObject;
use dicom_object::meta::FileMetaTableBuilder;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use super::{EXPLICIT_VR_LE, IMPLEMENTATION_CLASS_UID, IMPLICIT_VR_LE, bounded, nesting};
use crate::grading::Laterality;
use crate::preprocess::decode::{self, Decoded};
use crate::preprocess::{DecodeLimits, Format, PreprocessError, SourceInfo};

/// Storage SOP classes graded here (PS3.4 Annex B.5).
pub const IMAGE_SOP_CLASSES: [(&str, &str); 5] = [
    ("1.2.840.10008.5.1.4.1.1.77.1.5.1", "Ophthalmic Photography 8 Bit Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.77.1.4", "VL Photographic Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.7", "Secondary Capture Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.7.2", "Multi-frame Grayscale Byte Secondary Capture Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.7.4", "Multi-frame True Color Secondary Capture Image Storage"),
];

/// Verification SOP class (C-ECHO).
pub const VERIFICATION: &str = "1.2.840.10008.1.1";

/// Transfer syntaxes accepted, in order of preference: only those whose pixel data this
/// build decodes (uncompressed little endian and the JPEG processes jpeg-decoder reads).
pub const TRANSFER_SYNTAXES: [&str; 6] = [
    EXPLICIT_VR_LE,
    IMPLICIT_VR_LE,
    "1.2.840.10008.1.2.4.50", // JPEG Baseline (Process 1)
    "1.2.840.10008.1.2.4.51", // JPEG Extended (Process 2 & 4), 8-bit
    "1.2.840.10008.1.2.4.57", // JPEG Lossless, Non-Hierarchical (Process 14)
    "1.2.840.10008.1.2.4.70", // JPEG Lossless, Non-Hierarchical, First-Order Prediction
];

pub fn is_image_class(uid: &str) -> bool {
    IMAGE_SOP_CLASSES.iter().any(|(u, _)| *u == uid)
}

/// Why an object was not accepted; each maps to a DIMSE status and a STOW-RS reason.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("not a readable DICOM data set: {0}")]
    Unreadable(String),
    #[error("missing or invalid {0}")]
    Missing(&'static str),
    #[error("SOP class {0} is not an image class this node grades")]
    NotImage(String),
    #[error("transfer syntax {0} is not supported")]
    TransferSyntax(String),
    #[error("the data set does not match its SOP class: {0}")]
    Mismatch(String),
    #[error("pixel data: {0}")]
    Pixels(String),
    #[error(transparent)]
    Decode(#[from] PreprocessError),
}

impl ObjectError {
    /// The C-STORE status (PS3.4 Annex B.2.3; 0x0122 from PS3.7 Annex C).
    pub fn dimse_status(&self) -> u16 {
        match self {
            Self::NotImage(_) => 0x0122,
            Self::Mismatch(_) | Self::Missing(_) => 0xA900,
            Self::Decode(PreprocessError::TooManyBytes { .. } | PreprocessError::TooManyPixels { .. }) => 0xA700,
            _ => 0xC000,
        }
    }

    /// The STOW-RS FailureReason (PS3.18 Table I.2-1 uses the same status values).
    pub fn failure_reason(&self) -> u16 {
        match self {
            Self::NotImage(_) => 0x0122,
            Self::TransferSyntax(_) => 0xC122,
            other => other.dimse_status(),
        }
    }
}

/// One frame, ready to store and grade.
#[derive(Debug, Clone)]
pub struct Frame {
    /// The stored image: the JPEG frame as received, or a lossless PNG of native pixels.
    pub blob: Bytes,
    pub media_type: &'static str,
    /// Decoded pixels for native frames (handed straight to the engine).
    pub pixels: Option<std::sync::Arc<Decoded>>,
}

/// A received image instance.
#[derive(Debug, Clone)]
pub struct Instance {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub study_uid: String,
    pub series_uid: String,
    pub transfer_syntax: String,
    /// Stored with the study, never logged.
    pub patient_id: Option<String>,
    /// Stored with the study, never logged.
    pub patient_name: Option<String>,
    /// AccessionNumber (0008,0050): the RIS/PACS order number, which a Sectra PACS
    /// reports to DIPS as the study id.
    pub accession_number: Option<String>,
    pub laterality: Laterality,
    pub frames: Vec<Frame>,
}

/// A text attribute without DICOM's padding; None when absent or blank.
pub fn text(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    obj.get(tag).and_then(|e| e.to_str().ok()).map(|s| s.trim_end_matches(['\0', ' ']).trim().to_string()).filter(|s| !s.is_empty())
}

fn required(obj: &InMemDicomObject, tag: Tag, name: &'static str) -> Result<String, ObjectError> {
    text(obj, tag).ok_or(ObjectError::Missing(name))
}

fn int(obj: &InMemDicomObject, tag: Tag) -> Option<u32> {
    obj.get(tag).and_then(|e| e.to_int::<u32>().ok())
}

/// How a transfer syntax encodes element headers, for the nesting pre-scan. Only the
/// little-endian, non-deflated syntaxes are read at all: big endian and deflate are
/// never negotiated here, and a file in one is refused before parsing.
fn header_encoding(ts_uid: &str) -> Result<nesting::Encoding, ObjectError> {
    match ts_uid {
        IMPLICIT_VR_LE => Ok(nesting::Encoding::ImplicitLittle),
        "1.2.840.10008.1.2.2" | "1.2.840.10008.1.2.1.99" => Err(ObjectError::TransferSyntax(ts_uid.to_string())),
        uid if uid.starts_with("1.2.840.10008.1.2") => Ok(nesting::Encoding::ExplicitLittle),
        uid => Err(ObjectError::TransferSyntax(uid.to_string())),
    }
}

/// Refuses a data set nested too deeply, or claiming more bytes than it holds, before the
/// parser reads it (see `nesting`).
fn check_nesting(dataset: &[u8], ts_uid: &str) -> Result<(), ObjectError> {
    nesting::check(dataset, header_encoding(ts_uid)?, nesting::MAX_DEPTH).map(|_| ()).map_err(|e| ObjectError::Unreadable(e.to_string()))
}

/// Reads a data set encoded in `ts_uid` (as received over the network).
pub fn read_dataset(bytes: &[u8], ts_uid: &str) -> Result<InMemDicomObject, ObjectError> {
    let uid = ts_uid.trim_end_matches(['\0', ' ']);
    let ts = TransferSyntaxRegistry.get(uid).ok_or_else(|| ObjectError::TransferSyntax(uid.to_string()))?;
    check_nesting(bytes, uid)?;
    read_bounded(bytes, ts)
}

/// Parses a data set with dicom-rs through the [`bounded::Bounded`] decoder, without the
/// nesting pre-scan: [`read_dataset`] is the entry point; this one is public so a test can
/// hold the decoder alone to its allocation bound.
#[doc(hidden)]
pub fn read_bounded(bytes: &[u8], ts: &dicom_encoding::TransferSyntax) -> Result<InMemDicomObject, ObjectError> {
    let unreadable = |e: &dyn std::fmt::Display| ObjectError::Unreadable(e.to_string());
    let decoder = dicom_parser::StatefulDecoder::new_with_ts(bytes, ts, 0).map_err(|e| unreadable(&e))?;
    InMemDicomObject::read_dataset(bounded::Bounded::new(decoder, bytes.len() as u64)).map_err(|e| unreadable(&e))
}

/// Reads a Part 10 file (with or without the 128-byte preamble); returns the data set
/// and its transfer syntax UID.
pub fn read_part10(bytes: &[u8]) -> Result<(InMemDicomObject, String), ObjectError> {
    let body = if bytes.len() >= 132 && &bytes[128..132] == b"DICM" {
        &bytes[128..]
    } else if bytes.starts_with(b"DICM") {
        bytes
    } else {
        return Err(ObjectError::Unreadable("no DICM prefix: not a DICOM Part 10 file".into()));
    };
    // The file meta group is flat; read it first to learn where the data set starts and
    // how it is encoded, and scan the data set's nesting before dicom-rs recurses into it.
    nesting::check_meta(body.get(4..).unwrap_or_default()).map_err(|e| ObjectError::Unreadable(e.to_string()))?;
    let mut cursor = std::io::Cursor::new(body);
    let meta = dicom_object::meta::FileMetaTable::from_reader(&mut cursor).map_err(|e| ObjectError::Unreadable(e.to_string()))?;
    let dataset = body.get(cursor.position() as usize..).unwrap_or_default();
    let ts_uid = meta.transfer_syntax().trim_end_matches(['\0', ' ']).to_string();
    check_nesting(dataset, &ts_uid)?;
    let ts = TransferSyntaxRegistry.get(&ts_uid).ok_or_else(|| ObjectError::TransferSyntax(ts_uid.clone()))?;
    Ok((read_bounded(dataset, ts)?, ts_uid))
}

/// Wraps a received data set (bytes in `ts_uid`) as a Part 10 file without re-encoding it.
pub fn part10(dataset: &[u8], sop_class: &str, sop_instance: &str, ts_uid: &str, source_ae: &str) -> Result<Vec<u8>, ObjectError> {
    let meta = FileMetaTableBuilder::new()
        .transfer_syntax(ts_uid)
        .media_storage_sop_class_uid(sop_class)
        .media_storage_sop_instance_uid(sop_instance)
        .implementation_class_uid(IMPLEMENTATION_CLASS_UID)
        .implementation_version_name("DRSCREEN")
        .source_application_entity_title(source_ae)
        .build()
        .map_err(|e| ObjectError::Unreadable(e.to_string()))?;
    let mut out = Vec::with_capacity(dataset.len() + 512);
    out.extend_from_slice(&[0u8; 128]);
    out.extend_from_slice(b"DICM");
    meta.write(&mut out).map_err(|e| ObjectError::Unreadable(e.to_string()))?;
    out.extend_from_slice(dataset);
    Ok(out)
}

impl Instance {
    /// Validates an object and decodes every frame (so a store that cannot be graded
    /// fails at once with the right status instead of later).
    pub fn from_object(obj: &InMemDicomObject, ts_uid: &str, limits: &DecodeLimits) -> Result<Self, ObjectError> {
        let sop_class_uid = required(obj, tags::SOP_CLASS_UID, "SOPClassUID")?;
        if !is_image_class(&sop_class_uid) {
            return Err(ObjectError::NotImage(sop_class_uid));
        }
        let ts_uid = ts_uid.trim_end_matches(['\0', ' ']).to_string();
        if !TRANSFER_SYNTAXES.contains(&ts_uid.as_str()) {
            return Err(ObjectError::TransferSyntax(ts_uid));
        }
        let sop_instance_uid = required(obj, tags::SOP_INSTANCE_UID, "SOPInstanceUID")?;
        let study_uid = required(obj, tags::STUDY_INSTANCE_UID, "StudyInstanceUID")?;
        let series_uid = required(obj, tags::SERIES_INSTANCE_UID, "SeriesInstanceUID")?;
        let laterality = text(obj, tags::IMAGE_LATERALITY)
            .or_else(|| text(obj, tags::LATERALITY))
            .and_then(|l| Laterality::parse(&l))
            .unwrap_or(Laterality::Unspecified);
        let frames = frames(obj, &ts_uid, limits, true)?;
        Ok(Self {
            sop_class_uid,
            sop_instance_uid,
            study_uid,
            series_uid,
            transfer_syntax: ts_uid,
            patient_id: text(obj, tags::PATIENT_ID),
            patient_name: text(obj, tags::PATIENT_NAME),
            accession_number: text(obj, tags::ACCESSION_NUMBER),
            laterality,
            frames,
        })
    }
}

/// The image's view from its ViewCodeSequence: "macula" for DCM 111900 (Macula centered),
/// "disc" for DCM 111901 (Disc centered), the fundus positions of PS3.16 CID 4207, named
/// as the HTTP upload names them; None for any other or no view.
pub fn view(obj: &InMemDicomObject) -> Option<String> {
    let items = obj.get(tags::VIEW_CODE_SEQUENCE)?.items()?;
    let code = items.first()?;
    let (value, scheme) = (text(code, tags::CODE_VALUE)?, text(code, tags::CODING_SCHEME_DESIGNATOR)?);
    match (value.as_str(), scheme.as_str()) {
        ("111900", "DCM") => Some("macula".into()),
        ("111901", "DCM") => Some("disc".into()),
        _ => None,
    }
}

/// The decoded pixels of each native frame of a stored instance (None for JPEG frames,
/// which the engine decodes itself); used when grading, without making PNG copies again.
pub fn native_pixels(bytes: &[u8], limits: &DecodeLimits) -> Result<Vec<Option<std::sync::Arc<Decoded>>>, ObjectError> {
    let (obj, ts) = read_part10(bytes)?;
    Ok(frames(&obj, &ts, limits, false)?.into_iter().map(|f| f.pixels).collect())
}

fn frames(obj: &InMemDicomObject, ts_uid: &str, limits: &DecodeLimits, stored_copy: bool) -> Result<Vec<Frame>, ObjectError> {
    let pixel = obj.get(tags::PIXEL_DATA).ok_or_else(|| ObjectError::Mismatch("an image SOP class without Pixel Data".into()))?;
    let rows = int(obj, tags::ROWS).ok_or(ObjectError::Missing("Rows"))?;
    let cols = int(obj, tags::COLUMNS).ok_or(ObjectError::Missing("Columns"))?;
    if u64::from(rows) * u64::from(cols) > limits.max_pixels {
        return Err(PreprocessError::TooManyPixels { width: cols, height: rows, limit: limits.max_pixels }.into());
    }
    let count = int(obj, tags::NUMBER_OF_FRAMES).unwrap_or(1).max(1) as usize;
    if let Some(fragments) = pixel.value().fragments() {
        let jpegs = jpeg_frames(fragments, count)?;
        return jpegs
            .into_iter()
            .map(|bytes| {
                // Decoded here only to reject what the engine could not read (scaled, cheap).
                if stored_copy {
                    decode::decode(&bytes, limits, true)?;
                }
                Ok(Frame { blob: Bytes::from(bytes), media_type: "image/jpeg", pixels: None })
            })
            .collect();
    }
    if ts_uid != EXPLICIT_VR_LE && ts_uid != IMPLICIT_VR_LE {
        return Err(ObjectError::Pixels("native pixel data in an encapsulated transfer syntax".into()));
    }
    let data = pixel.to_bytes().map_err(|e| ObjectError::Pixels(e.to_string()))?;
    let spp = int(obj, tags::SAMPLES_PER_PIXEL).unwrap_or(1) as usize;
    let bits = int(obj, tags::BITS_ALLOCATED).unwrap_or(8);
    let photometric = text(obj, tags::PHOTOMETRIC_INTERPRETATION).unwrap_or_else(|| "MONOCHROME2".into());
    let planar = int(obj, tags::PLANAR_CONFIGURATION).unwrap_or(0) == 1;
    if bits != 8 || !(spp == 1 || spp == 3) {
        return Err(ObjectError::Pixels(format!("{bits}-bit, {spp} samples per pixel is not supported (8-bit gray or colour only)")));
    }
    let (w, h) = (cols as usize, rows as usize);
    let frame_len = w * h * spp;
    if data.len() < frame_len * count {
        return Err(ObjectError::Pixels(format!("{} bytes of pixel data for {count} frame(s) of {frame_len}", data.len())));
    }
    (0..count)
        .map(|i| {
            let raw = &data[i * frame_len..(i + 1) * frame_len];
            let rgb = to_rgb(raw, w * h, spp, planar, &photometric)?;
            let decoded = Decoded {
                width: cols,
                height: rows,
                rgb,
                source: SourceInfo { format: Format::Dicom, width: cols, height: rows, scale_denominator: 1 },
            };
            let png = if stored_copy { Bytes::from(png_fast(&decoded)?) } else { Bytes::new() };
            Ok(Frame { blob: png, media_type: "image/png", pixels: Some(std::sync::Arc::new(decoded)) })
        })
        .collect()
}

/// Splits encapsulated pixel data into one JPEG per frame: one fragment per frame when
/// the counts agree, otherwise fragments are joined and split at each start-of-image.
fn jpeg_frames(fragments: &[Vec<u8>], count: usize) -> Result<Vec<Vec<u8>>, ObjectError> {
    if fragments.is_empty() {
        return Err(ObjectError::Pixels("no fragments".into()));
    }
    if count == 1 {
        return Ok(vec![fragments.concat()]);
    }
    if fragments.len() == count {
        return Ok(fragments.to_vec());
    }
    let mut frames: Vec<Vec<u8>> = Vec::new();
    for f in fragments {
        if f.starts_with(&[0xFF, 0xD8]) || frames.is_empty() {
            frames.push(f.clone());
        } else if let Some(last) = frames.last_mut() {
            last.extend_from_slice(f);
        }
    }
    if frames.len() != count {
        return Err(ObjectError::Pixels(format!("found {} JPEG frames, NumberOfFrames says {count}", frames.len())));
    }
    Ok(frames)
}

fn to_rgb(raw: &[u8], n: usize, spp: usize, planar: bool, photometric: &str) -> Result<Vec<u8>, ObjectError> {
    if spp == 1 {
        return match photometric {
            "MONOCHROME2" => Ok(raw.iter().flat_map(|&v| [v, v, v]).collect()),
            "MONOCHROME1" => Ok(raw.iter().flat_map(|&v| [255 - v, 255 - v, 255 - v]).collect()),
            other => Err(ObjectError::Pixels(format!("photometric interpretation {other} with one sample"))),
        };
    }
    let mut rgb = if planar {
        let (a, rest) = raw.split_at(n);
        let (b, c) = rest.split_at(n);
        (0..n).flat_map(|i| [a[i], b[i], c[i]]).collect()
    } else {
        raw[..n * 3].to_vec()
    };
    match photometric {
        "RGB" => {}
        "YBR_FULL" => ybr_full_to_rgb(&mut rgb),
        other => return Err(ObjectError::Pixels(format!("photometric interpretation {other} is not supported for native data"))),
    }
    Ok(rgb)
}

/// YBR_FULL to RGB (PS3.3 C.7.6.3.1.2, ITU-R BT.601 full range).
pub fn ybr_full_to_rgb(pixels: &mut [u8]) {
    for p in pixels.chunks_exact_mut(3) {
        let (y, cb, cr) = (f32::from(p[0]), f32::from(p[1]) - 128.0, f32::from(p[2]) - 128.0);
        let c = |v: f32| v.round().clamp(0.0, 255.0) as u8;
        p[0] = c(y + 1.402 * cr);
        p[1] = c(y - 0.344_136 * cb - 0.714_136 * cr);
        p[2] = c(y + 1.772 * cb);
    }
}

/// Lossless PNG at the fastest compression (the stored copy of a native frame).
fn png_fast(d: &Decoded) -> Result<Vec<u8>, ObjectError> {
    use image::ImageEncoder;
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new_with_quality(
        &mut out,
        image::codecs::png::CompressionType::Fast,
        image::codecs::png::FilterType::Sub,
    )
    .write_image(&d.rgb, d.width, d.height, image::ExtendedColorType::Rgb8)
    .map_err(|e| ObjectError::Pixels(format!("PNG: {e}")))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ybr_grey_stays_grey_and_planes_interleave() {
        let mut p = [100u8, 128, 128];
        ybr_full_to_rgb(&mut p);
        assert_eq!(p, [100, 100, 100]);
        let planar = [1u8, 2, 10, 20, 100, 200];
        assert_eq!(to_rgb(&planar, 2, 3, true, "RGB").unwrap(), vec![1, 10, 100, 2, 20, 200]);
        assert!(to_rgb(&planar, 2, 3, false, "PALETTE COLOR").is_err());
    }

    /// A Part 10 file whose data set nests `levels` undefined-length sequences.
    fn deeply_nested_part10(levels: usize) -> Vec<u8> {
        let meta = FileMetaTableBuilder::new()
            .media_storage_sop_class_uid(IMAGE_SOP_CLASSES[0].0)
            .media_storage_sop_instance_uid("1.2.3.4")
            .transfer_syntax(EXPLICIT_VR_LE)
            .build()
            .unwrap();
        let mut out = vec![0u8; 128];
        out.extend_from_slice(b"DICM");
        meta.write(&mut out).unwrap();
        out.extend_from_slice(&nesting::tests::nested_undefined(levels));
        out
    }

    #[test]
    fn deeply_nested_objects_are_refused_without_exhausting_the_stack() {
        // A 2 MiB stack, as tokio's blocking threads have: before the pre-scan, 2,000
        // levels overflowed it and aborted the process.
        let refused = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(|| {
                let file = deeply_nested_part10(2000);
                let dataset = nesting::tests::nested_undefined(2000);
                (read_part10(&file).map(|_| ()), read_dataset(&dataset, EXPLICIT_VR_LE).map(|_| ()))
            })
            .unwrap()
            .join()
            .unwrap();
        for result in [refused.0, refused.1] {
            let err = result.unwrap_err();
            assert!(err.to_string().contains("nested deeper"), "{err}");
            assert_eq!(err.dimse_status(), 0xC000);
        }
        assert!(read_part10(&deeply_nested_part10(10)).is_ok());
        let big_endian = FileMetaTableBuilder::new()
            .media_storage_sop_class_uid(IMAGE_SOP_CLASSES[0].0)
            .media_storage_sop_instance_uid("1.2.3.4")
            .transfer_syntax("1.2.840.10008.1.2.2")
            .build()
            .unwrap();
        let mut file = vec![0u8; 128];
        file.extend_from_slice(b"DICM");
        big_endian.write(&mut file).unwrap();
        assert!(matches!(read_part10(&file), Err(ObjectError::TransferSyntax(_))));
    }

    #[test]
    fn fragments_split_into_frames() {
        let f = vec![vec![0xFF, 0xD8, 1], vec![2], vec![0xFF, 0xD8, 3]];
        assert_eq!(jpeg_frames(&f, 2).unwrap(), vec![vec![0xFF, 0xD8, 1, 2], vec![0xFF, 0xD8, 3]]);
        assert_eq!(jpeg_frames(&f, 1).unwrap().len(), 1);
        assert!(jpeg_frames(&f, 5).is_err());
    }
}
