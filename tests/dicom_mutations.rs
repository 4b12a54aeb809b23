//! Damaged and hostile DICOM through the real reader: a real SR (a Part 10 file full of
//! nested sequences) is mutated deterministically (bit flips, 0xFF runs, undefined
//! lengths, truncation, duplicated ranges) and every variant is read on a 2 MiB stack,
//! as tokio's blocking threads have. Each read must return (Ok or a typed error): a
//! panic fails the test, a stack overflow aborts the binary. A smoke run of the
//! coverage-guided fuzzing issue 18 asks for, kept in the suite so a regression fails CI.

mod common;

use drscreen::grading::Laterality;
use drscreen::interop::object::{Instance, read_part10};
use drscreen::interop::sr;
use drscreen::preprocess::DecodeLimits;
use drscreen::store::StoredExam;

use common::mutate::{Rng, mutate};

/// A real SR for a graded fixture: a Part 10 file full of nested sequences.
fn sr_bytes() -> Vec<u8> {
    let screener = common::screener();
    let bytes = std::fs::read(common::fixture("grade2_R.jpg")).unwrap();
    let finding = screener.grade_blocking(bytes, Laterality::Right, None).unwrap();
    let result = screener.exam(vec![finding]);
    let exam = StoredExam {
        id: "mutations".into(),
        created_at: "2026-11-29T12:00:00.000Z".into(),
        submitted_by: "test".into(),
        external_exam_ref: Some("ACC-1".into()),
        patient_ref: Some("P-1".into()),
        outcome: result.outcome,
        flagged: result.flagged,
        reviewed: false,
        image_ids: vec!["i".into()],
        result,
    };
    sr::to_bytes(&sr::build(&exam, &[], None).unwrap()).unwrap()
}

#[test]
fn mutated_dicom_never_panics_or_overflows_the_stack() {
    let seeds = [sr_bytes()];
    let limits = DecodeLimits::default();
    let reader = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
            let (mut parsed, mut refused) = (0, 0);
            // Before the pre-scan read lengths exactly as dicom-rs does (unknown VRs, binary
            // values whose length is no multiple of their size, the meta group), some of
            // these took 0.3-3.6 s and gigabytes each; all 2,000 now take about a second.
            for round in 0..2000 {
                let input = mutate(&seeds[round % seeds.len()], &mut rng);
                match read_part10(&input) {
                    Ok((obj, ts)) => {
                        parsed += 1;
                        // An SR is not an image: the instance check must refuse it cleanly.
                        assert!(Instance::from_object(&obj, &ts, &limits).is_err(), "round {round}");
                    }
                    Err(_) => refused += 1,
                }
            }
            (parsed, refused)
        })
        .unwrap();
    let (parsed, refused) = reader.join().expect("no mutated object may panic the reader");
    eprintln!("{parsed} mutated objects parsed, {refused} refused");
    assert!(parsed > 0 && refused > 0, "the mutations must reach both outcomes ({parsed} parsed, {refused} refused)");
}
