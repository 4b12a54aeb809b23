//! Build script: makes sure an ONNX Runtime shared library is available for `ort`'s
//! `load-dynamic` mode, and tells the binary where it is.
//!
//! ort cannot download its own binaries here, so the library is taken from the
//! official `onnxruntime` Python wheel: `pip download` fetches that exact version, the
//! wheel's sha256 is checked against the pinned value below, and `libonnxruntime.so.*`
//! is extracted into `.ort/` (git-ignored). The step is idempotent: when the library is
//! already there, nothing is fetched. Setting `ORT_DYLIB_PATH` skips it entirely.
//! A failure here is a build warning, not an error, so that `cargo check`/`clippy` work
//! offline; the binary then reports a one-line error telling the user what to do.

use std::path::{Path, PathBuf};
use std::process::Command;

const ORT_VERSION: &str = "1.31.1";
const WHEEL: &str = "onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl";
const WHEEL_SHA256: &str = "5752bd508126ae7c49894d3b9d2e83f0c3d487319246d04c444b393308d7ad7f";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=ORT_DYLIB_PATH");
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let dir = manifest_dir.join(".ort").join(ORT_VERSION);
    let lib = dir.join(format!("libonnxruntime.so.{ORT_VERSION}"));
    println!("cargo:rustc-env=DRSCREEN_ORT_DYLIB={}", lib.display());
    println!("cargo:rustc-env=DRSCREEN_ORT_VERSION={ORT_VERSION}");
    println!("cargo:rerun-if-changed={}", lib.display());
    if std::env::var_os("ORT_DYLIB_PATH").is_some() || lib.is_file() {
        return;
    }
    if let Err(e) = fetch(&dir, &lib) {
        println!("cargo:warning=could not provide ONNX Runtime {ORT_VERSION}: {e}; set ORT_DYLIB_PATH to a libonnxruntime.so >= 1.31");
    }
}

fn fetch(dir: &Path, lib: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let req = dir.join("requirements.txt");
    std::fs::write(&req, format!("onnxruntime=={ORT_VERSION} --hash=sha256:{WHEEL_SHA256}\n")).map_err(|e| e.to_string())?;
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let status = Command::new(&python)
        .args(["-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:"])
        .args(["--platform", "manylinux_2_28_x86_64", "--python-version", "3.11", "--implementation", "cp"])
        .arg("--require-hashes")
        .arg("-r")
        .arg(&req)
        .arg("-d")
        .arg(dir)
        .status()
        .map_err(|e| format!("run {python} -m pip: {e}"))?;
    if !status.success() {
        return Err(format!("pip download failed ({status})"));
    }
    let wheel = dir.join(WHEEL);
    let bytes = std::fs::read(&wheel).map_err(|e| format!("read {}: {e}", wheel.display()))?;
    let digest = sha256_hex(&bytes);
    if digest != WHEEL_SHA256 {
        let _ = std::fs::remove_file(&wheel);
        return Err(format!("wheel sha256 {digest} does not match the pinned {WHEEL_SHA256}"));
    }
    let member = format!("onnxruntime/capi/libonnxruntime.so.{ORT_VERSION}");
    let script = "import sys, zipfile, shutil\nz = zipfile.ZipFile(sys.argv[1])\nwith z.open(sys.argv[2]) as src, open(sys.argv[3] + '.part', 'wb') as dst:\n    shutil.copyfileobj(src, dst)\n";
    let status =
        Command::new(&python).args(["-c", script]).arg(&wheel).arg(&member).arg(lib).status().map_err(|e| format!("extract: {e}"))?;
    if !status.success() {
        return Err("extracting the library from the wheel failed".into());
    }
    let part = PathBuf::from(format!("{}.part", lib.display()));
    std::fs::rename(&part, lib).map_err(|e| format!("rename: {e}"))?;
    let _ = std::fs::remove_file(&wheel);
    Ok(())
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
