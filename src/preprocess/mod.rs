//! Preprocessing: encoded bytes -> the model's input image, deterministically, under the
//! recipe named in the manifest (`fov-crop-bilinear-v1`): decode with limits (scaled JPEG
//! decoding, EXIF orientation), locate the circular field of view, crop it square,
//! resize to the input size, and measure quality. The result keeps the prepared RGB8
//! image (a quarter of the f32 size) so queued work stays small; the inference thread
//! normalises it straight into its reusable batch buffer. Runs on any thread; callers
//! fan it out across cores.

pub mod decode;
pub mod disc;
pub mod fov;
#[cfg(feature = "mozjpeg")]
mod libjpeg;
pub mod quality;
pub mod tensor;

use std::time::Instant;

pub use decode::{DecodeLimits, Format, JpegBackend, SourceInfo};
pub use fov::FieldOfView;
pub use quality::{QualityLimits, QualityMeasures};
pub use tensor::Normaliser;

/// Why an input could not be turned into a model input. Each has a stable code.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum PreprocessError {
    #[error("the input is empty (0 bytes)")]
    Empty,
    #[error("the input is {bytes} bytes, above the limit of {limit}")]
    TooManyBytes { bytes: usize, limit: usize },
    #[error("the image is {width}x{height} pixels, above the limit of {limit} pixels")]
    TooManyPixels { width: u32, height: u32, limit: u64 },
    #[error("not a JPEG, PNG or TIFF image")]
    UnsupportedFormat,
    #[error("the image data is corrupt or truncated: {0}")]
    Corrupt(String),
}

impl PreprocessError {
    /// Machine-readable reason code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Empty => "empty_input",
            Self::TooManyBytes { .. } => "payload_too_large",
            Self::TooManyPixels { .. } => "image_too_large",
            Self::UnsupportedFormat => "unsupported_format",
            Self::Corrupt(_) => "corrupt_image",
        }
    }
}

/// The preprocessing settings derived from the manifest plus operator limits.
#[derive(Debug, Clone)]
pub struct Preprocessor {
    pub recipe: String,
    pub input_size: u32,
    pub limits: DecodeLimits,
    /// Use the JPEG DCT-domain downscale (the recipe's definition). Off only for
    /// benchmarks comparing against the full decode.
    pub dct_scaling: bool,
    /// The JPEG pixel decoder: the build's default, or another for tests and benchmarks.
    pub jpeg_backend: JpegBackend,
    pub normaliser: Normaliser,
}

/// One image ready for the model.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// input_size x input_size RGB8, interleaved.
    pub rgb: Vec<u8>,
    pub source: SourceInfo,
    pub fov: FieldOfView,
    pub quality: QualityMeasures,
    /// Where the optic disc appears to be (for the laterality check); measured on `rgb`,
    /// which it leaves as it is.
    pub disc: Option<disc::DiscEstimate>,
    pub preprocess_ms: f64,
}

impl Preprocessor {
    pub fn from_manifest(manifest: &crate::model::Manifest, limits: DecodeLimits) -> Self {
        let i = &manifest.input;
        Self {
            recipe: i.recipe.clone(),
            input_size: i.width,
            limits,
            dct_scaling: true,
            jpeg_backend: JpegBackend::default(),
            normaliser: Normaliser::new(i.scale, i.mean, i.std),
        }
    }

    /// Runs the whole recipe on one encoded image.
    pub fn prepare(&self, bytes: &[u8]) -> Result<Prepared, PreprocessError> {
        let start = Instant::now();
        let decoded = decode::decode_with(bytes, &self.limits, self.dct_scaling, self.jpeg_backend)?;
        let prepared = self.prepare_decoded_since(&decoded, start);
        decode::recycle(decoded.rgb);
        prepared
    }

    /// Runs the recipe from field-of-view location on, for pixels an edge decoded itself
    /// (native DICOM pixel data); the same steps as [`Preprocessor::prepare`].
    pub fn prepare_decoded(&self, decoded: &decode::Decoded) -> Result<Prepared, PreprocessError> {
        if u64::from(decoded.width) * u64::from(decoded.height) > self.limits.max_pixels {
            return Err(PreprocessError::TooManyPixels { width: decoded.width, height: decoded.height, limit: self.limits.max_pixels });
        }
        if decoded.rgb.len() != decoded.width as usize * decoded.height as usize * 3 || decoded.width == 0 || decoded.height == 0 {
            return Err(PreprocessError::Corrupt("pixel buffer size mismatch".into()));
        }
        self.prepare_decoded_since(decoded, Instant::now())
    }

    fn prepare_decoded_since(&self, decoded: &decode::Decoded, start: Instant) -> Result<Prepared, PreprocessError> {
        let (w, h) = (decoded.width, decoded.height);
        let fov = fov::locate(w, h, &decoded.rgb);
        let rgb = if fov.inside(w, h) {
            tensor::resize_square(w, h, &decoded.rgb, (fov.x0 as u32, fov.y0 as u32, fov.side), self.input_size)?
        } else {
            let square = fov.padded_square(w, h, &decoded.rgb);
            tensor::resize_square(fov.side, fov.side, &square, (0, 0, fov.side), self.input_size)?
        };
        let quality = QualityMeasures::measure(self.input_size as usize, &rgb);
        let disc = disc::locate(self.input_size as usize, &rgb);
        Ok(Prepared { rgb, source: decoded.source, fov, quality, disc, preprocess_ms: start.elapsed().as_secs_f64() * 1e3 })
    }
}
