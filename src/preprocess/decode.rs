//! Decoding with limits: the format is sniffed from magic bytes, the header size is
//! checked against the pixel limit before any pixel is decoded (decompression bombs),
//! large JPEGs are decoded at a reduced DCT scale (1/2, 1/4, 1/8) instead of decoding
//! every pixel and shrinking, and EXIF orientation is applied. Output is always RGB8.
//! JPEG headers and EXIF are always read by the pure-Rust `jpeg-decoder`, so limits,
//! orientation and the set of accepted files do not depend on the pixel decoder, which
//! is a [`JpegBackend`]: libjpeg-turbo's (module `libjpeg`, the default `mozjpeg`
//! feature) or `jpeg-decoder`'s.

use std::io::Cursor;

use image::ImageDecoder;
use image::metadata::Orientation;
use serde::{Deserialize, Serialize};

use super::PreprocessError;
#[cfg(feature = "mozjpeg")]
use super::libjpeg;

/// Limits applied before and during decoding.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DecodeLimits {
    /// Largest accepted encoded size in bytes.
    pub max_bytes: usize,
    /// Largest accepted width * height, read from the header before decoding.
    pub max_pixels: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self { max_bytes: 64 * 1024 * 1024, max_pixels: 50_000_000 }
    }
}

/// Encoded formats the service accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Jpeg,
    Png,
    Tiff,
    /// Native (uncompressed) DICOM pixel data, decoded by the DICOM edge.
    Dicom,
}

impl Format {
    /// Recognises a format from its first bytes.
    pub fn sniff(bytes: &[u8]) -> Option<Self> {
        match bytes {
            [0xFF, 0xD8, 0xFF, ..] => Some(Self::Jpeg),
            [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, ..] => Some(Self::Png),
            [b'I', b'I', 0x2A, 0x00, ..] | [b'M', b'M', 0x00, 0x2A, ..] => Some(Self::Tiff),
            _ => None,
        }
    }
}

/// A decoded RGB8 image (interleaved, row-major) and how it was obtained.
#[derive(Debug, Clone)]
pub struct Decoded {
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<u8>,
    pub source: SourceInfo,
}

/// Facts about the source image, reported with every finding.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct SourceInfo {
    pub format: Format,
    pub width: u32,
    pub height: u32,
    /// 1, 2, 4 or 8: the JPEG DCT scale denominator used.
    pub scale_denominator: u32,
}

/// Which decoder turns JPEG entropy-coded data into pixels. Both are in every build that
/// has them, so the tests hold each to the same recipe in one build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JpegBackend {
    /// libjpeg-turbo's scaled IDCT (the training recipe's decoder, through Pillow), built
    /// from C by `mozjpeg-sys`. For 8-bit Huffman JPEGs in YCbCr, RGB or greyscale; CMYK
    /// and lossless JPEGs still go to `jpeg-decoder`, as libjpeg cannot turn them into RGB.
    #[cfg(feature = "mozjpeg")]
    Libjpeg,
    /// The pure-Rust `jpeg-decoder` (for targets without a C compiler).
    Rust,
}

impl JpegBackend {
    /// Every backend compiled into this build, the default first.
    pub const AVAILABLE: &'static [JpegBackend] = &[
        #[cfg(feature = "mozjpeg")]
        JpegBackend::Libjpeg,
        JpegBackend::Rust,
    ];

    /// A short name for logs and benchmark labels.
    pub fn name(self) -> &'static str {
        match self {
            #[cfg(feature = "mozjpeg")]
            Self::Libjpeg => "libjpeg",
            Self::Rust => "rust",
        }
    }
}

impl Default for JpegBackend {
    /// libjpeg-turbo when compiled in (the `mozjpeg` feature, on by default).
    fn default() -> Self {
        Self::AVAILABLE[0]
    }
}

/// The smallest side, after DCT scaling, that recipe `fov-crop-bilinear-v1` keeps:
/// the field of view usually spans 85-100% of the short side, so 640 leaves it above
/// the 512 model input and the final resize is always a reduction.
pub const MIN_SCALED_SIDE: u32 = 640;

/// The DCT scale denominator for a JPEG of this size (recipe `fov-crop-bilinear-v1`).
pub fn scale_denominator(width: u32, height: u32) -> u32 {
    let short = width.min(height);
    [8, 4, 2].into_iter().find(|d| short / d >= MIN_SCALED_SIDE).unwrap_or(1)
}

/// Decodes `bytes` to RGB8, applying the limits, DCT scaling and EXIF orientation, with
/// the default JPEG backend.
pub fn decode(bytes: &[u8], limits: &DecodeLimits, allow_dct_scaling: bool) -> Result<Decoded, PreprocessError> {
    decode_with(bytes, limits, allow_dct_scaling, JpegBackend::default())
}

/// [`decode`] with the given JPEG backend.
pub fn decode_with(bytes: &[u8], limits: &DecodeLimits, allow_dct_scaling: bool, backend: JpegBackend) -> Result<Decoded, PreprocessError> {
    if bytes.is_empty() {
        return Err(PreprocessError::Empty);
    }
    if bytes.len() > limits.max_bytes {
        return Err(PreprocessError::TooManyBytes { bytes: bytes.len(), limit: limits.max_bytes });
    }
    match Format::sniff(bytes) {
        Some(Format::Jpeg) => decode_jpeg(bytes, limits, allow_dct_scaling, backend),
        Some(format) => decode_other(bytes, format, limits),
        None => Err(PreprocessError::UnsupportedFormat),
    }
}

fn check_pixels(width: u32, height: u32, limits: &DecodeLimits) -> Result<(), PreprocessError> {
    if width == 0 || height == 0 {
        return Err(PreprocessError::Corrupt("image has zero width or height".into()));
    }
    if u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(PreprocessError::TooManyPixels { width, height, limit: limits.max_pixels });
    }
    Ok(())
}

fn decode_jpeg(bytes: &[u8], limits: &DecodeLimits, allow_dct_scaling: bool, backend: JpegBackend) -> Result<Decoded, PreprocessError> {
    let corrupt = |e: jpeg_decoder::Error| PreprocessError::Corrupt(format!("JPEG: {e}"));
    let mut decoder = jpeg_decoder::Decoder::new(Cursor::new(bytes));
    decoder.read_info().map_err(corrupt)?;
    let info = decoder.info().ok_or_else(|| PreprocessError::Corrupt("JPEG header unreadable".into()))?;
    let (width, height) = (u32::from(info.width), u32::from(info.height));
    check_pixels(width, height, limits)?;
    let denominator = if allow_dct_scaling { scale_denominator(width, height) } else { 1 };
    let (out_w, out_h) = if denominator > 1 {
        let (w, h) = decoder.scale(width.div_ceil(denominator) as u16, height.div_ceil(denominator) as u16).map_err(corrupt)?;
        (u32::from(w), u32::from(h))
    } else {
        (width, height)
    };
    let orientation = decoder.exif_data().and_then(Orientation::from_exif_chunk).unwrap_or(Orientation::NoTransforms);
    let source = SourceInfo { format: Format::Jpeg, width, height, scale_denominator: denominator };
    #[cfg(feature = "mozjpeg")]
    if backend == JpegBackend::Libjpeg
        && matches!(info.pixel_format, jpeg_decoder::PixelFormat::RGB24 | jpeg_decoder::PixelFormat::L8)
        && info.coding_process != jpeg_decoder::CodingProcess::Lossless
    {
        let rgb = libjpeg::decode_rgb(bytes, denominator, (width, height), (out_w, out_h))?;
        return orient(out_w, out_h, rgb, orientation, source);
    }
    #[cfg(not(feature = "mozjpeg"))]
    let JpegBackend::Rust = backend;
    let pixels = decoder.decode().map_err(corrupt)?;
    let n = out_w as usize * out_h as usize;
    let rgb = match info.pixel_format {
        jpeg_decoder::PixelFormat::RGB24 => pixels,
        jpeg_decoder::PixelFormat::L8 => pixels.iter().flat_map(|&v| [v, v, v]).collect(),
        jpeg_decoder::PixelFormat::L16 => pixels.chunks_exact(2).flat_map(|v| [v[0], v[0], v[0]]).collect(),
        // Adobe CMYK JPEGs store inverted values.
        jpeg_decoder::PixelFormat::CMYK32 => pixels
            .chunks_exact(4)
            .flat_map(|p| {
                let k = u16::from(p[3]);
                let f = |c: u8| ((u16::from(c) * k) / 255) as u8;
                [f(p[0]), f(p[1]), f(p[2])]
            })
            .collect(),
    };
    if rgb.len() != n * 3 {
        return Err(PreprocessError::Corrupt("JPEG decoded to an unexpected size".into()));
    }
    orient(out_w, out_h, rgb, orientation, source)
}

/// Hands a decoded image's pixels back for this thread's next decode. Only the
/// libjpeg path reuses them (`jpeg-decoder` and `image` allocate their own), so without
/// that feature they are simply dropped rather than held for nothing.
pub fn recycle(rgb: Vec<u8>) {
    #[cfg(feature = "mozjpeg")]
    libjpeg::recycle(rgb);
    #[cfg(not(feature = "mozjpeg"))]
    drop(rgb);
}

fn decode_other(bytes: &[u8], format: Format, limits: &DecodeLimits) -> Result<Decoded, PreprocessError> {
    let corrupt = |e: image::ImageError| PreprocessError::Corrupt(format!("{format:?}: {e}"));
    let image_format = match format {
        Format::Png => image::ImageFormat::Png,
        Format::Tiff => image::ImageFormat::Tiff,
        Format::Jpeg => image::ImageFormat::Jpeg,
        Format::Dicom => return Err(PreprocessError::UnsupportedFormat),
    };
    let mut reader = image::ImageReader::with_format(Cursor::new(bytes), image_format);
    let mut image_limits = image::Limits::default();
    image_limits.max_alloc = Some(limits.max_pixels.saturating_mul(8));
    reader.limits(image_limits);
    let mut decoder = reader.into_decoder().map_err(corrupt)?;
    let (width, height) = decoder.dimensions();
    check_pixels(width, height, limits)?;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let image = image::DynamicImage::from_decoder(decoder).map_err(corrupt)?;
    let rgb = image.into_rgb8().into_raw();
    let source = SourceInfo { format, width, height, scale_denominator: 1 };
    orient(width, height, rgb, orientation, source)
}

fn orient(width: u32, height: u32, rgb: Vec<u8>, orientation: Orientation, source: SourceInfo) -> Result<Decoded, PreprocessError> {
    if orientation == Orientation::NoTransforms {
        return Ok(Decoded { width, height, rgb, source });
    }
    let buffer =
        image::RgbImage::from_raw(width, height, rgb).ok_or_else(|| PreprocessError::Corrupt("pixel buffer size mismatch".into()))?;
    let mut image = image::DynamicImage::ImageRgb8(buffer);
    image.apply_orientation(orientation);
    let rgb = image.into_rgb8();
    Ok(Decoded { width: rgb.width(), height: rgb.height(), rgb: rgb.into_raw(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_denominator_keeps_short_side_above_640() {
        assert_eq!(scale_denominator(4000, 3000), 4);
        assert_eq!(scale_denominator(6000, 5200), 8);
        assert_eq!(scale_denominator(1600, 1200), 1);
        assert_eq!(scale_denominator(2592, 1944), 2);
        assert_eq!(scale_denominator(100, 100), 1);
    }

    #[test]
    fn sniffs_formats_and_rejects_text() {
        assert_eq!(Format::sniff(&[0xFF, 0xD8, 0xFF, 0xE0]), Some(Format::Jpeg));
        assert_eq!(Format::sniff(b"II*\0rest"), Some(Format::Tiff));
        assert_eq!(Format::sniff(b"hello world"), None);
        assert!(matches!(decode(b"", &DecodeLimits::default(), true), Err(PreprocessError::Empty)));
    }
}
