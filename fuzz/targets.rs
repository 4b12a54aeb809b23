//! The fuzz targets' bodies, shared by the coverage-guided fuzzer (`fuzz/fuzz_targets/*`,
//! run with `cargo fuzz`) and by the test suite's smoke run (`tests/fuzz_smoke.rs`
//! includes this file), so the suite replays exactly what the fuzzer explores.
//!
//! Each target feeds arbitrary bytes to one parser that faces the network, through the
//! real limits, and checks what the parser promises: it returns (a value or a typed
//! error), never panics, never overflows the stack, and anything it accepts is within
//! the limits. A panic or abort here is a finding.

#![allow(dead_code)]

use axum::http::{HeaderMap, HeaderValue};
use drscreen::grading::Laterality;
use drscreen::http::dicomweb::{MAX_BOUNDARY, split_multipart};
use drscreen::http::kserve::{InferLimits, parse_infer};
use drscreen::interop::object::{Instance, read_dataset, read_part10};
use drscreen::interop::{EXPLICIT_VR_LE, IMPLICIT_VR_LE};
use drscreen::preprocess::{DecodeLimits, JpegBackend, decode};
use drscreen::review::{ReviewInput, plan, validate};

/// Image decoders (JPEG with every compiled backend, PNG, TIFF; EXIF orientation) under
/// the service's decode limits, with the pixel limit lowered to 1 MP: the same checks,
/// but the fuzzer spends its time parsing rather than decoding large valid images (at
/// the default 50 MP it managed 140 inputs/s). The recipe after decoding (field of
/// view, crop, resize, quality) parses nothing and is left to the unit tests.
pub fn image(data: &[u8]) {
    let limits = DecodeLimits { max_pixels: 1 << 20, ..DecodeLimits::default() };
    for &backend in JpegBackend::AVAILABLE {
        if let Ok(decoded) = decode::decode_with(data, &limits, true, backend) {
            let pixels = u64::from(decoded.source.width) * u64::from(decoded.source.height);
            assert!(pixels <= limits.max_pixels, "accepted an image over the pixel limit");
            assert_eq!(decoded.rgb.len(), decoded.width as usize * decoded.height as usize * 3, "RGB buffer matches the size");
            assert!(decoded.width > 0 && decoded.height > 0, "accepted an empty image");
        }
    }
}

/// The DICOM object reader as C-STORE (a bare data set in either little-endian transfer
/// syntax) and STOW-RS / `POST /v1/grade` (a Part 10 file) use it, then the instance
/// checks and frame decoding. The first byte chooses the entry point.
pub fn dicom_object(data: &[u8]) {
    let Some((&selector, bytes)) = data.split_first() else { return };
    let limits = DecodeLimits::default();
    let read = match selector % 3 {
        0 => read_part10(bytes),
        1 => read_dataset(bytes, IMPLICIT_VR_LE).map(|o| (o, IMPLICIT_VR_LE.to_string())),
        _ => read_dataset(bytes, EXPLICIT_VR_LE).map(|o| (o, EXPLICIT_VR_LE.to_string())),
    };
    if let Ok((object, ts)) = read
        && let Ok(instance) = Instance::from_object(&object, &ts, &limits)
    {
        assert!(!instance.frames.is_empty(), "an accepted instance has pixels");
    }
}

/// The STOW-RS multipart/related splitter. The first byte is the boundary's length, the
/// boundary follows, then the body.
pub fn stow_multipart(data: &[u8]) {
    let Some((&n, rest)) = data.split_first() else { return };
    let n = usize::from(n).min(rest.len());
    let (boundary, body) = rest.split_at(n);
    let boundary = String::from_utf8_lossy(boundary);
    const MAX_PARTS: usize = 64;
    if let Ok(parts) = split_multipart(body, &boundary, MAX_PARTS) {
        assert!(!boundary.is_empty() && boundary.len() <= MAX_BOUNDARY, "accepted a boundary outside RFC 2046's 1..=70");
        assert!(parts.len() <= MAX_PARTS, "more parts than the limit");
        let total: usize = parts.iter().map(|(_, bytes)| bytes.len()).sum();
        assert!(total <= body.len(), "parts hold more bytes than the body");
    }
}

/// The KServe v2 request parser (JSON and Triton's binary tensor extension). The first
/// byte says whether `Inference-Header-Content-Length` is sent; the next two give it.
pub fn kserve_infer(data: &[u8]) {
    let [flags, hi, lo, body @ ..] = data else { return };
    let mut headers = HeaderMap::new();
    if flags & 1 == 1 {
        let length = u16::from_be_bytes([*hi, *lo]);
        headers.insert("inference-header-content-length", HeaderValue::from(length));
    }
    // A small model side keeps whole FP32 tensors reachable; the parser's logic does not
    // depend on it. The other limits are the server's defaults.
    let limits = InferLimits { side: 2, max_image_bytes: 64 * 1024, capacity: 64 };
    if let Ok(parsed) = parse_infer(&headers, body, limits) {
        assert!((1..=limits.capacity).contains(&parsed.images()), "accepted a batch of {} images", parsed.images());
    }
}

/// The review form (urlencoded, as the review pages post it) and the JSON review body,
/// each through the review rules for an exam with both eyes.
pub fn review_form(data: &[u8]) {
    let eyes = [Laterality::Right, Laterality::Left];
    if let Ok(form) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(data)
        && let Ok(input) = drscreen::http::pages::form_to_input(&form)
    {
        check_review(&input, &eyes);
    }
    if let Ok(input) = serde_json::from_slice::<ReviewInput>(data) {
        check_review(&input, &eyes);
    }
}

fn check_review(input: &ReviewInput, eyes: &[Laterality]) {
    if validate(input, eyes).is_ok() {
        for (eye, reading) in &input.eyes {
            assert!(eyes.iter().any(|l| l.as_str() == eye), "accepted a grade for an eye the exam does not have");
            assert!(reading.grade.is_none_or(|g| g <= 4), "accepted an ICDR grade above 4");
        }
        if input.sign {
            // Partial drafts are allowed; a sign-off never is.
            assert!(drscreen::grading::ExamOutcome::parse(&input.outcome).is_some(), "signed without an outcome");
            assert!(
                eyes.iter().all(|l| input.eyes.get(l.as_str()).is_some_and(|r| r.grade.is_none() || r.dme.is_some())),
                "signed with an eye not fully read"
            );
        }
        if input.sign
            && let Some(outcome) = drscreen::grading::ExamOutcome::parse(&input.outcome)
            && outcome.less_urgent_than(drscreen::review::outcome_by_rule(&input.eyes))
        {
            assert!(
                drscreen::review::outcome_reason(input).is_some(),
                "signed a less urgent outcome than the grades imply without a reason"
            );
        }
    }
    let _ = plan(None, input);
}

/// A target's body.
pub type Target = fn(&[u8]);

/// Every target by name, for the smoke run.
pub const TARGETS: [(&str, Target); 5] = [
    ("image", image),
    ("dicom_object", dicom_object),
    ("stow_multipart", stow_multipart),
    ("kserve_infer", kserve_infer),
    ("review_form", review_form),
];
