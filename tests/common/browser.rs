//! Running the browser scripts under tests/browser: Debian's Chromium driven by
//! playwright-core with node, against a real `drscreen serve`. One place checks the tools
//! are there, empties the screenshot folder, runs the script, fails with its output, and
//! checks every named screenshot is a real PNG.

use std::path::PathBuf;

use super::root;

/// What a finished browser script left behind.
pub struct BrowserRun {
    /// The screenshot folder (`target/test-artifacts/<artifacts>`), passed as `DRS_SHOTS`.
    pub shots: PathBuf,
    pub stdout: String,
}

/// Runs `tests/browser/<script>` with `env`, its screenshots into
/// `target/test-artifacts/<artifacts>`; panics (with the script's output) unless it
/// succeeds and wrote each of `screenshots` (`<name>.png`) as a real PNG.
pub fn run_script(script: &str, artifacts: &str, env: &[(&str, &str)], screenshots: &[&str]) -> BrowserRun {
    let modules = root().join("tests/browser/node_modules");
    for package in ["playwright-core", "axe-core"] {
        assert!(modules.join(package).is_dir(), "{package} is not installed: run `npm ci --prefix tests/browser` (tests/run.sh does)");
    }
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists() || std::env::var_os("CHROMIUM").is_some(),
        "Chromium is missing: apt-get install chromium (.ci/run does)"
    );
    let shots = root().join("target/test-artifacts").join(artifacts);
    let _ = std::fs::remove_dir_all(&shots);
    let out = std::process::Command::new("node")
        .arg(root().join("tests/browser").join(script))
        .envs(env.iter().copied())
        .env("DRS_SHOTS", &shots)
        .output()
        .expect("node runs (Node.js is needed for the browser tests)");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{script} failed (screenshots in {}):\n{stdout}\n{}",
        shots.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    for name in screenshots {
        let png = std::fs::read(shots.join(format!("{name}.png"))).unwrap_or_else(|e| panic!("{name}.png: {e}"));
        assert!(png.starts_with(b"\x89PNG") && png.len() > 5_000, "{name}.png is a real screenshot");
    }
    BrowserRun { shots, stdout }
}
