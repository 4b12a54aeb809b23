//! Every JPEG pixel decoder this build has (libjpeg-turbo through the default `mozjpeg`
//! feature, and the pure-Rust `jpeg-decoder`) on the same awkward inputs: progressive,
//! greyscale, CMYK, EXIF-rotated, arithmetic-coded, truncated and corrupt JPEGs
//! (`fixtures/jpeg/`, written by `fixtures/jpeg/generate.py`) and `fixtures/broken/`.
//! Each backend must give the same sizes and orientation, near-identical pixels and the
//! same error codes, and must never panic or abort. (The recipe itself, on the real
//! fixtures, is held to the training references per backend in tests/preprocess_skew.rs.)

use drscreen::preprocess::decode::{DecodeLimits, Decoded, JpegBackend, decode_with};
use drscreen::preprocess::{PreprocessError, Preprocessor};

fn read(name: &str) -> Vec<u8> {
    std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(name)).unwrap()
}

fn decode(name: &str, backend: JpegBackend) -> Result<Decoded, PreprocessError> {
    decode_with(&read(name), &DecodeLimits::default(), true, backend)
}

fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| f64::from(x.abs_diff(*y))).sum::<f64>() / a.len() as f64
}

#[test]
fn the_default_backend_is_libjpeg_when_built_in() {
    assert_eq!(JpegBackend::default(), JpegBackend::AVAILABLE[0]);
    assert_eq!(JpegBackend::AVAILABLE.last(), Some(&JpegBackend::Rust), "the pure-Rust decoder is always built");
    #[cfg(feature = "mozjpeg")]
    assert_eq!(JpegBackend::default(), JpegBackend::Libjpeg);
}

#[test]
fn progressive_greyscale_and_rotated_jpegs_decode_alike_on_every_backend() {
    for &backend in JpegBackend::AVAILABLE {
        let name = backend.name();
        let baseline = decode("jpeg/baseline.jpg", backend).unwrap();
        assert_eq!((baseline.width, baseline.height), (400, 300), "{name}");
        // Pillow wrote the progressive file with the baseline's quantised coefficients, so
        // a decoder must reproduce the baseline exactly.
        let progressive = decode("jpeg/progressive.jpg", backend).unwrap();
        assert_eq!((progressive.width, progressive.height), (400, 300), "{name}");
        assert!(progressive.rgb == baseline.rgb, "{name}: progressive differs from baseline");
        // The same coefficients again, with EXIF orientation 6: shown rotated 90 degrees
        // clockwise, so output row y, column x is the baseline's row 299 - x, column y.
        let rotated = decode("jpeg/orientation6.jpg", backend).unwrap();
        assert_eq!((rotated.width, rotated.height), (300, 400), "{name}");
        assert_eq!((rotated.source.width, rotated.source.height), (400, 300), "{name}");
        for (y, x) in [(0usize, 0usize), (10, 250), (399, 299), (200, 150)] {
            let out = &rotated.rgb[(y * 300 + x) * 3..][..3];
            let src = &baseline.rgb[((299 - x) * 400 + y) * 3..][..3];
            assert_eq!(out, src, "{name}: rotated pixel ({x},{y})");
        }
        let grey = decode("jpeg/grey.jpg", backend).unwrap();
        assert_eq!((grey.width, grey.height), (400, 300), "{name}");
        assert!(grey.rgb.chunks_exact(3).all(|p| p[0] == p[1] && p[1] == p[2]), "{name}: grey is not grey");
        assert!(grey.rgb.iter().any(|&v| v > 60), "{name}: grey decoded black");
    }
}

#[test]
fn backends_agree_on_pixels() {
    for file in ["jpeg/baseline.jpg", "jpeg/grey.jpg", "jpeg/cmyk.jpg", "grade0_R.jpg", "grade4_R_12mp.jpg"] {
        let reference = decode(file, JpegBackend::Rust).unwrap();
        for &backend in JpegBackend::AVAILABLE {
            let other = decode(file, backend).unwrap();
            assert_eq!((other.width, other.height, other.source), (reference.width, reference.height, reference.source), "{file}");
            // The IDCTs and chroma upsamplers round differently: at most about a grey
            // level on average (see tests/preprocess_skew.rs for the recipe's tolerance).
            let mean = mean_abs_diff(&other.rgb, &reference.rgb);
            assert!(mean <= 1.0, "{file}: {} differs from jpeg-decoder by {mean:.3} on average", backend.name());
            // CMYK is decoded by jpeg-decoder on every backend, so it is bit-identical.
            if file.contains("cmyk") {
                assert!(other.rgb == reference.rgb, "{file}: CMYK differs on {}", backend.name());
            }
        }
    }
}

#[test]
fn broken_jpegs_get_the_same_error_codes_on_every_backend() {
    let cases = [
        // jpeg-decoder reads every header and does not implement arithmetic coding, so
        // such a file is refused before any backend sees it, as it always was.
        ("jpeg/arithmetic.jpg", "corrupt_image"),
        ("jpeg/progressive_truncated.jpg", "corrupt_image"),
        ("broken/truncated.jpg", "corrupt_image"),
        ("broken/empty.jpg", "empty_input"),
        ("broken/not_an_image.jpg", "unsupported_format"),
    ];
    for &backend in JpegBackend::AVAILABLE {
        for (file, code) in cases {
            match decode(file, backend) {
                Err(e) => assert_eq!(e.code(), code, "{file} on {}: {e}", backend.name()),
                Ok(d) => panic!("{file} decoded on {}: {}x{}", backend.name(), d.width, d.height),
            }
        }
    }
}

/// Garbage written into the entropy-coded data (as valid `FF 00` byte stuffing, so only
/// Huffman decoding can notice). The decoders disagree here: jpeg-decoder refuses the
/// invalid Huffman codes, while libjpeg-turbo's fast Huffman path decodes them as zero
/// without a warning (so did TurboJPEG in the old `turbojpeg` build, and Pillow in
/// training). Neither may panic, and an error must be `corrupt_image`.
#[test]
fn garbage_in_the_entropy_coded_data_is_handled_by_every_backend() {
    for &backend in JpegBackend::AVAILABLE {
        match decode("jpeg/corrupt_data.jpg", backend) {
            Ok(d) => eprintln!("{}: decoded {}x{}", backend.name(), d.width, d.height),
            Err(e) => {
                eprintln!("{}: {e}", backend.name());
                assert_eq!(e.code(), "corrupt_image", "{}", backend.name());
            }
        }
    }
}

#[test]
fn limits_apply_before_any_backend_decodes() {
    let bytes = read("grade4_R_12mp.jpg");
    for &backend in JpegBackend::AVAILABLE {
        let pixels = DecodeLimits { max_pixels: 4000 * 3000 - 1, ..DecodeLimits::default() };
        let e = decode_with(&bytes, &pixels, true, backend).unwrap_err();
        assert_eq!(e.code(), "image_too_large", "{}", backend.name());
        let size = DecodeLimits { max_bytes: bytes.len() - 1, ..DecodeLimits::default() };
        let e = decode_with(&bytes, &size, true, backend).unwrap_err();
        assert_eq!(e.code(), "payload_too_large", "{}", backend.name());
    }
}

/// Damage anywhere in a JPEG (header, tables, entropy-coded data) gives a decoded image
/// or a `corrupt_image` error: never a panic, an abort (libjpeg's default error handler
/// calls exit()) or another code. Deterministic damage: byte overwrites and cuts at
/// positions spread over both a baseline and a progressive file.
#[test]
fn damaged_jpegs_never_panic_or_abort() {
    let limits = DecodeLimits::default();
    for file in ["jpeg/baseline.jpg", "jpeg/progressive.jpg"] {
        let original = read(file);
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let (mut errors, mut cut_errors) = (0, 0);
        for i in 0..300 {
            let mut bytes = original.clone();
            let at = 2 + (next() as usize) % (bytes.len() - 2);
            if i % 3 == 0 {
                bytes.truncate(at);
            } else {
                for j in 0..1 + i % 4 {
                    if let Some(b) = bytes.get_mut(at + j) {
                        *b = next() as u8;
                    }
                }
            }
            for &backend in JpegBackend::AVAILABLE {
                match std::panic::catch_unwind(|| decode_with(&bytes, &limits, true, backend)) {
                    Ok(Ok(d)) => assert_eq!(d.rgb.len(), d.width as usize * d.height as usize * 3),
                    Ok(Err(e)) => {
                        assert_eq!(e.code(), "corrupt_image", "{file} #{i} on {}: {e}", backend.name());
                        errors += 1;
                        cut_errors += usize::from(i % 3 == 0);
                    }
                    Err(_) => panic!("{file} #{i}: {} panicked", backend.name()),
                }
            }
        }
        eprintln!("{file}: {errors} errors, {cut_errors} of them cuts (of 100 per backend)");
        assert!(cut_errors >= 95 * JpegBackend::AVAILABLE.len(), "{file}: only {cut_errors} of the cuts noticed");
    }
}

#[test]
fn the_preprocessor_uses_the_backend_it_is_given() {
    let manifest =
        drscreen::model::ModelPackage::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/dr-synth")).unwrap().manifest;
    let mut pre = Preprocessor::from_manifest(&manifest, DecodeLimits::default());
    assert_eq!(pre.jpeg_backend, JpegBackend::default());
    let bytes = read("grade0_R.jpg");
    let mut outputs = Vec::new();
    for &backend in JpegBackend::AVAILABLE {
        pre.jpeg_backend = backend;
        outputs.push(pre.prepare(&bytes).unwrap().rgb);
        assert_eq!(pre.prepare(&read("broken/truncated.jpg")).unwrap_err().code(), "corrupt_image");
    }
    // Two different decoders never round a whole photograph identically.
    if outputs.len() == 2 {
        assert!(outputs[0] != outputs[1], "both backends gave identical pixels: is the backend ignored?");
    }
}
