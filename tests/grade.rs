//! The README's promise for `drscreen grade`: every fixture graded with real ONNX Runtime
//! and the committed model lands in its expected band; ungradable fixtures say why;
//! broken inputs get clear errors without stopping the rest.

mod common;

use drscreen::grading::{ExamOutcome, ImageDecision, Laterality};
use drscreen::preprocess::PreprocessError;

/// Bands: ungradable fixtures must be ungradable with reasons (no exception); for
/// gradable ones the screening decision (referable or not) must match the label and the
/// ICDR grade be within 2 of it, allowing at most one decision error among the gradable
/// fixtures (a model with held-out referable specificity ~0.99 may miss one; dr-synth
/// 1.1.0 to 1.4.0 make no decision error on the fixtures, 1.0.0 called grade0_R referable).
#[test]
fn fixtures_grade_into_their_expected_bands() {
    let screener = common::screener();
    let mut failures = Vec::new();
    let mut decision_errors = Vec::new();
    for label in common::labels() {
        let bytes = std::fs::read(common::fixture(&label.path)).unwrap();
        let f = screener.grade_blocking(bytes, Laterality::parse(&label.laterality).unwrap(), None).unwrap();
        assert_eq!(f.model.sha256, common::package().manifest.file.sha256);
        if label.gradable == 0 {
            if f.quality.gradable || f.quality.reasons.is_empty() || f.dr.is_some() {
                failures.push(format!("{}: expected ungradable with reasons, got {:?}", label.path, f.quality));
            }
            continue;
        }
        if !f.quality.gradable {
            failures.push(format!("{}: expected gradable, got {:?}", label.path, f.quality));
            continue;
        }
        let dr = f.dr.as_ref().unwrap();
        let referable = label.grade >= 2 || label.dme == 1;
        if (f.decision == ImageDecision::Referable) != referable {
            decision_errors.push(format!("{}: referable {referable} expected, got {:?} (grade {})", label.path, f.decision, dr.grade));
        }
        if (i32::from(dr.grade) - i32::from(label.grade)).abs() > 2 {
            failures.push(format!("{}: grade {} expected within 2 of {}", label.path, dr.grade, label.grade));
        }
        let p: f32 = dr.probabilities.iter().sum();
        assert!((p - 1.0).abs() < 1e-4);
    }
    if decision_errors.len() > 1 {
        failures.extend(decision_errors);
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn real_photograph_is_gradable_and_low_grade_and_degraded_copies_are_not() {
    // The CC0 photograph of a normal eye (not synthetic): clean -> gradable, grade 0-1;
    // a heavily blurred and a darkened copy of it -> ungradable.
    let screener = common::screener();
    let bytes = std::fs::read(common::fixture("retina_skimage.jpg")).unwrap();
    let clean = screener.grade_blocking(bytes.clone(), Laterality::Left, None).unwrap();
    assert!(clean.quality.gradable, "{:?}", clean.quality);
    assert!(clean.dr.as_ref().unwrap().grade <= 1, "{:?}", clean.dr);
    let image = image::load_from_memory(&bytes).unwrap();
    let encode = |img: image::DynamicImage| {
        let mut out = std::io::Cursor::new(Vec::new());
        img.to_rgb8().write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    };
    let sigma = image.width() as f32 * 0.015;
    let blurred = screener.grade_blocking(encode(image.blur(sigma)), Laterality::Left, None).unwrap();
    assert!(!blurred.quality.gradable, "blurred copy graded: {:?}", blurred.quality);
    let mut dark = image.to_rgb8();
    dark.pixels_mut().for_each(|p| p.0 = p.0.map(|v| v / 4));
    let dark = image::DynamicImage::ImageRgb8(dark);
    let dark = screener.grade_blocking(encode(dark), Laterality::Left, None).unwrap();
    assert!(!dark.quality.gradable, "darkened copy graded: {:?}", dark.quality);
    assert!(!dark.quality.reasons.is_empty());
}

/// The synthetic test set is drawn by the code the model learnt from, so it cannot show that the
/// model reads lesions on a real retina. Here the real photograph carries painted lesions
/// (`models/train/paint_lesions.py`): more lesion load must mean a higher P(referable DR), with
/// microaneurysms alone non-referable and haemorrhages with exudates, or the 4-2-1 pattern, referable.
#[test]
fn lesion_load_painted_on_the_real_photograph_raises_referable_probability() {
    let screener = common::screener();
    let mut previous: Option<(&str, f32)> = None;
    for (name, referable) in [
        ("retina_skimage.jpg", false),
        ("retina_skimage_mild.jpg", false),
        ("retina_skimage_moderate.jpg", true),
        ("retina_skimage_severe.jpg", true),
    ] {
        let bytes = std::fs::read(common::fixture(name)).unwrap();
        let f = screener.grade_blocking(bytes, Laterality::Left, None).unwrap();
        assert!(f.quality.gradable, "{name}: {:?}", f.quality);
        let dr = f.dr.as_ref().unwrap();
        let p_grade_2_plus: f32 = dr.probabilities[2..].iter().sum();
        assert_eq!(f.decision == ImageDecision::Referable, referable, "{name}: {:?} {dr:?}", f.decision);
        if let Some((before, p)) = previous {
            assert!(p_grade_2_plus > p, "{name}: P(grade>=2) {p_grade_2_plus} not above {before}'s {p}");
        }
        previous = Some((name, p_grade_2_plus));
    }
}

#[test]
fn broken_inputs_give_clear_errors() {
    let screener = common::screener();
    let cases = [
        ("broken/empty.jpg", "empty_input"),
        ("broken/truncated.jpg", "corrupt_image"),
        ("broken/bomb.png", "image_too_large"),
        ("broken/not_an_image.jpg", "unsupported_format"),
    ];
    for (name, code) in cases {
        let bytes = std::fs::read(common::fixture(name)).unwrap();
        match screener.grade_blocking(bytes, Laterality::Unspecified, None) {
            Err(e) => assert_eq!(e.code(), code, "{name}: {e}"),
            Ok(f) => panic!("{name} was graded: {f:?}"),
        }
    }
    // The engine is still healthy afterwards.
    assert!(screener.engine.is_ready());
    let ok = std::fs::read(common::fixture("grade0_R.jpg")).unwrap();
    assert!(screener.grade_blocking(ok, Laterality::Right, None).is_ok());
}

#[test]
fn byte_and_pixel_limits_refuse_before_decoding() {
    let screener = common::screener();
    let mut tight = screener.engine.preprocessor().clone();
    tight.limits.max_bytes = 1000;
    let bytes = std::fs::read(common::fixture("grade0_R.jpg")).unwrap();
    assert!(matches!(tight.prepare(&bytes), Err(PreprocessError::TooManyBytes { .. })));
    let mut tight = screener.engine.preprocessor().clone();
    tight.limits.max_pixels = 1000;
    assert!(matches!(tight.prepare(&bytes), Err(PreprocessError::TooManyPixels { .. })));
}

#[test]
fn batched_results_equal_single_image_results() {
    let screener = common::screener();
    let names: Vec<String> = common::labels().into_iter().map(|l| l.path).take(8).collect();
    let singles: Vec<_> =
        names.iter().map(|n| screener.engine.score_blocking(std::fs::read(common::fixture(n)).unwrap()).unwrap()).collect();
    // Submit all at once so the batcher groups them.
    let tickets: Vec<_> = names.iter().map(|n| screener.engine.submit(std::fs::read(common::fixture(n)).unwrap()).unwrap()).collect();
    let batched: Vec<_> = tickets.into_iter().map(|t| t.blocking_recv().unwrap().unwrap()).collect();
    assert!(batched.iter().any(|s| s.timings.batch_size > 1), "no batch formed");
    for ((n, a), b) in names.iter().zip(&singles).zip(&batched) {
        for (x, y) in a.outputs.dr_logits.iter().zip(&b.outputs.dr_logits) {
            assert!((x - y).abs() < 1e-3, "{n}: {x} vs {y}");
        }
        assert!((a.outputs.dme_logit - b.outputs.dme_logit).abs() < 1e-3);
        assert!((a.outputs.gradable_logit - b.outputs.gradable_logit).abs() < 1e-3);
        let cam_diff = a.outputs.cam.iter().zip(&b.outputs.cam).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
        assert!(cam_diff < 1e-3, "{n}: cam differs by {cam_diff}");
        assert!(b.timings.total >= b.timings.preprocess && b.timings.inference > 0.0);
    }
}

#[test]
fn exam_outcomes_follow_the_rules_on_fixtures() {
    let screener = common::screener();
    let grade = |name: &str, lat: Laterality| screener.grade_blocking(std::fs::read(common::fixture(name)).unwrap(), lat, None).unwrap();
    let healthy = screener.exam(vec![grade("grade1_R.jpg", Laterality::Right), grade("grade0_L.jpg", Laterality::Left)]);
    assert_eq!(healthy.outcome, ExamOutcome::Rescreen, "{healthy:#?}");
    assert_eq!(healthy.recall_months, Some(12));
    assert!(!healthy.flagged);
    let urgent = screener.exam(vec![grade("grade3_L.jpg", Laterality::Left), grade("grade1_R.jpg", Laterality::Right)]);
    assert_eq!(urgent.outcome, ExamOutcome::UrgentReferral);
    assert!(urgent.flagged && urgent.recall_months.is_none());
    let missing = screener.exam(vec![grade("grade1_R.jpg", Laterality::Right), grade("ungradable_blur_L.jpg", Laterality::Left)]);
    assert_eq!(missing.outcome, ExamOutcome::Ungradable);
}

#[test]
fn dropped_requests_are_not_computed_but_answered_ones_are() {
    let screener = common::screener();
    let bytes = std::fs::read(common::fixture("grade1_R.jpg")).unwrap();
    let before = screener.engine.stats().pruned.load(std::sync::atomic::Ordering::Relaxed);
    for _ in 0..6 {
        drop(screener.engine.submit(bytes.clone()).unwrap());
    }
    let kept = screener.engine.submit(bytes).unwrap().blocking_recv().unwrap();
    assert!(kept.is_ok());
    // Wait for the abandoned jobs to drain, then check they were pruned.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while screener.engine.in_flight() > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let after = screener.engine.stats().pruned.load(std::sync::atomic::Ordering::Relaxed);
    assert!(after > before, "no abandoned request was pruned");
}

/// The laterality check through the real decode and preprocessing: every labelled fixture
/// sent as its own eye is consistent (ungradable ones undetermined, never a guess), the
/// real photograph is a left eye, and a mirrored copy sent as the same eye contradicts it
/// without the stated eye changing. The model input is the recipe's either way (the
/// reference-image tests hold it to the Python recipe).
#[test]
fn laterality_check_on_every_fixture_and_its_mirror() {
    use drscreen::grading::LateralityVerdict;
    let screener = common::screener();
    let mirrored_jpeg = |bytes: &[u8]| {
        let mut out = Vec::new();
        let flipped = image::load_from_memory(bytes).unwrap().fliph().to_rgb8();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 92).encode_image(&flipped).unwrap();
        out
    };
    let mut labelled: Vec<(String, Laterality, bool)> =
        common::labels().into_iter().map(|l| (l.path.clone(), Laterality::parse(&l.laterality).unwrap(), l.gradable == 1)).collect();
    labelled.push(("retina_skimage.jpg".into(), Laterality::Left, true));
    for (path, stated, gradable) in labelled {
        let bytes = std::fs::read(common::fixture(&path)).unwrap();
        let f = screener.grade_blocking(bytes.clone(), stated, None).unwrap();
        let check = f.laterality_check.unwrap_or_else(|| panic!("{path}: no laterality check"));
        let expected = if gradable { LateralityVerdict::Consistent } else { LateralityVerdict::Undetermined };
        assert_eq!(check.verdict, expected, "{path}: {check:?}");
        if !gradable {
            assert_eq!((check.disc_side, check.suggested), (None, None), "{path}: no side is guessed on an ungradable image");
            continue;
        }
        let m = screener.grade_blocking(mirrored_jpeg(&bytes), stated, None).unwrap();
        let check = m.laterality_check.unwrap();
        assert_eq!(
            (check.verdict, check.stated, m.laterality),
            (LateralityVerdict::Contradicts, stated, stated),
            "{path} mirrored: {check:?}"
        );
    }
}
