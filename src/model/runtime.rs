//! ONNX Runtime loading and execution providers. The shared library is loaded at run
//! time (`ort`'s `load-dynamic`): `ORT_DYLIB_PATH` wins, then the configured path, then
//! the copy the build script extracted from the pinned `onnxruntime` wheel into `.ort/`.
//! A missing or incompatible library becomes one `ModelError::Runtime` line telling the
//! user what to do; `ort` is never allowed to panic on it.

use std::path::PathBuf;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use super::ModelError;

/// Which execution provider the session should use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ExecutionProvider {
    /// ONNX Runtime's default CPU provider.
    #[default]
    Cpu,
    /// NVIDIA CUDA (needs the `cuda` cargo feature and a CUDA build of ONNX Runtime).
    Cuda,
    /// NVIDIA TensorRT, falling back to nothing: registration errors are fatal.
    Tensorrt,
}

impl ExecutionProvider {
    /// Every provider, in the order `--help` lists them.
    pub const ALL: [Self; 3] = [Self::Cpu, Self::Cuda, Self::Tensorrt];

    /// The name used in the config file and on the command line (as serde writes it).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Cuda => "cuda",
            Self::Tensorrt => "tensorrt",
        }
    }

    /// The provider's name as ONNX Runtime reports it.
    pub fn ort_name(self) -> &'static str {
        match self {
            Self::Cpu => "CPUExecutionProvider",
            Self::Cuda => "CUDAExecutionProvider",
            Self::Tensorrt => "TensorrtExecutionProvider",
        }
    }
}

impl std::str::FromStr for ExecutionProvider {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL.into_iter().find(|p| p.as_str() == s).ok_or_else(|| format!("unknown execution provider '{s}' (cpu, cuda or tensorrt)"))
    }
}

/// How to create sessions.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeOptions {
    /// Path to `libonnxruntime.so`; `None` uses `ORT_DYLIB_PATH` or the bundled copy.
    pub dylib: Option<PathBuf>,
    pub provider: ExecutionProvider,
    /// Threads ONNX Runtime uses inside one operator (0 = ORT's default).
    pub intra_threads: usize,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        Self { dylib: None, provider: ExecutionProvider::Cpu, intra_threads: 1 }
    }
}

static ENVIRONMENT: OnceLock<Result<ort::environment::Environment, String>> = OnceLock::new();

/// The library path that will be loaded, in order of precedence.
pub fn resolve_dylib(configured: Option<&PathBuf>) -> PathBuf {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        return PathBuf::from(p);
    }
    if let Some(p) = configured {
        return p.clone();
    }
    PathBuf::from(env!("DRSCREEN_ORT_DYLIB"))
}

/// The version of ONNX Runtime the build pins.
pub fn pinned_version() -> &'static str {
    env!("DRSCREEN_ORT_VERSION")
}

/// Loads ONNX Runtime once per process and returns its environment.
pub fn environment(options: &RuntimeOptions) -> Result<&'static ort::environment::Environment, ModelError> {
    let env = ENVIRONMENT.get_or_init(|| {
        let path = resolve_dylib(options.dylib.as_ref());
        if !path.is_file() {
            return Err(format!(
                "ONNX Runtime library not found at {}: run `cargo build` once with access to the Python \
                 package registry (it fetches onnxruntime {} via pip), or set ORT_DYLIB_PATH to a \
                 libonnxruntime.so of that version",
                path.display(),
                pinned_version()
            ));
        }
        // A library that is not ONNX Runtime, or an old one, is reported by init_from;
        // catch_unwind is a second fence in case the loader panics on a malformed file.
        let loaded = std::panic::catch_unwind(|| ort::init_from(&path).map(|b| b.with_name("drscreen").build()));
        match loaded {
            Ok(Ok(Ok(env))) => Ok(env),
            Ok(Ok(Err(e))) => Err(format!("ONNX Runtime at {} failed to start: {e}", path.display())),
            Ok(Err(e)) => Err(format!(
                "cannot load ONNX Runtime from {}: {e}; set ORT_DYLIB_PATH to libonnxruntime.so {}",
                path.display(),
                pinned_version()
            )),
            Err(_) => Err(format!("loading ONNX Runtime from {} panicked; the file is not a usable library", path.display())),
        }
    });
    env.as_ref().map_err(|e| ModelError::Runtime(e.clone()))
}

/// The execution providers to register for `provider`, each failing loudly.
pub fn execution_providers(provider: ExecutionProvider) -> Result<Vec<ort::ep::ExecutionProviderDispatch>, ModelError> {
    match provider {
        ExecutionProvider::Cpu => Ok(Vec::new()),
        #[cfg(feature = "cuda")]
        ExecutionProvider::Cuda => Ok(vec![ort::ep::CUDA::default().build().error_on_failure()]),
        #[cfg(feature = "cuda")]
        ExecutionProvider::Tensorrt => {
            Ok(vec![ort::ep::TensorRT::default().build().error_on_failure(), ort::ep::CUDA::default().build().error_on_failure()])
        }
        #[cfg(not(feature = "cuda"))]
        other => Err(ModelError::Runtime(format!(
            "execution provider '{}' needs a build with `--features cuda` and a GPU build of ONNX Runtime",
            other.ort_name()
        ))),
    }
}
