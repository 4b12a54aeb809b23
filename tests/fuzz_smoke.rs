//! A smoke run of every fuzz target, so a regression fails CI without a fuzzing
//! toolchain: the committed seeds (`fuzz/seeds/<target>/`), the regression inputs of
//! past findings (`fuzz/regressions/<target>/`: issue 18's crashes, scaled down) and a
//! few hundred deterministic mutations of the seeds, each through the same target body
//! the coverage-guided fuzzer runs (`fuzz/targets.rs`), on a 2 MiB stack as tokio's
//! blocking threads have. A panic fails the test; a stack overflow aborts the binary.

mod common;

#[path = "../fuzz/targets.rs"]
mod targets;

use std::path::{Path, PathBuf};

use common::mutate::{Rng, mutate};

fn inputs(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files.into_iter().map(|p| (p.clone(), std::fs::read(&p).unwrap())).collect()
}

fn fuzz_dir(kind: &str, target: &str) -> PathBuf {
    common::root().join("fuzz").join(kind).join(target)
}

/// Runs `target` on `input` on a thread with a 2 MiB stack; Err names what panicked.
fn run(target: targets::Target, input: Vec<u8>) -> Result<(), String> {
    std::thread::Builder::new().stack_size(2 << 20).spawn(move || target(&input)).map_err(|e| e.to_string())?.join().map_err(|panic| {
        panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default()
    })
}

#[test]
fn every_seed_and_regression_input_is_handled() {
    let mut failures = Vec::new();
    for (name, target) in targets::TARGETS {
        let seeds = inputs(&fuzz_dir("seeds", name));
        let regressions = inputs(&fuzz_dir("regressions", name));
        assert!(!seeds.is_empty(), "target {name} has no seeds");
        assert!(!regressions.is_empty(), "target {name} has no regression inputs");
        for (path, bytes) in seeds.into_iter().chain(regressions) {
            if let Err(panic) = run(target, bytes) {
                failures.push(format!("{name}: {}: {panic}", path.display()));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn mutated_seeds_are_handled() {
    const ROUNDS: usize = 500;
    let mut failures = Vec::new();
    for (t, (name, target)) in targets::TARGETS.into_iter().enumerate() {
        let seeds = inputs(&fuzz_dir("seeds", name));
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ t as u64);
        for round in 0..ROUNDS {
            let (path, seed) = &seeds[round % seeds.len()];
            let input = mutate(seed, &mut rng);
            if let Err(panic) = run(target, input.clone()) {
                let saved = std::env::temp_dir().join(format!("drscreen-fuzz-{name}-{round}.bin"));
                let _ = std::fs::write(&saved, &input);
                failures.push(format!("{name}: round {round} from {} (input saved to {}): {panic}", path.display(), saved.display()));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
