//! `drscreen model inspect`: the manifest, the session's inputs/outputs, the execution
//! provider, and whether the package passes its integrity check.

use std::path::PathBuf;
use std::process::ExitCode;

use drscreen::model::{ModelPackage, ModelSession, runtime};

use crate::cli::GlobalArgs;

pub fn run(global: &GlobalArgs, package: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let config = global.config()?;
    let dir = package.unwrap_or(config.model.clone());
    let package = match ModelPackage::load(&dir) {
        Ok(p) => p,
        Err(e) => {
            println!("package: {}\nintegrity: FAILED\n{e}", dir.display());
            return Ok(ExitCode::from(1));
        }
    };
    let m = &package.manifest;
    println!("package:     {}", dir.display());
    println!("name:        {} {}", m.name, m.version);
    println!("sha256:      {} ({} bytes) - integrity OK", m.file.sha256, m.file.bytes);
    println!("clinical use: {}", if m.clinical_use { "yes" } else { "NO (research/demonstration only)" });
    println!("intended use: {}", m.intended_use);
    println!(
        "input:       {} {} {} {}x{} recipe {} mean {:?} std {:?} scale {}",
        m.input.name,
        m.input.dtype,
        m.input.layout,
        m.input.width,
        m.input.height,
        m.input.recipe,
        m.input.mean,
        m.input.std,
        m.input.scale
    );
    for o in &m.outputs {
        println!("output:      {} ({}) {:?}: {}", o.name, o.role, o.shape, o.meaning);
    }
    let t = &m.thresholds;
    println!("thresholds:  referable_dr {} dme {} gradable {}", t.referable_dr, t.dme, t.gradable);
    let session = ModelSession::new(&package, &config.runtime)?;
    println!(
        "runtime:     ONNX Runtime {} from {}",
        runtime::pinned_version(),
        runtime::resolve_dylib(config.runtime.dylib.as_ref()).display()
    );
    println!("provider:    {}", session.provider.ort_name());
    println!("cam shape:   {:?}", session.cam_shape);
    Ok(ExitCode::SUCCESS)
}
