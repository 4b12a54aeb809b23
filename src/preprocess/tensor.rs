//! Resizing the square crop to the model input and normalising RGB8 into the NCHW f32
//! layout the model expects. Normalisation is a per-channel lookup table built once
//! from the manifest's scale/mean/std, so filling a batch slot is a table lookup per
//! value rather than a division.

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

use super::PreprocessError;

thread_local! {
    static RESIZER: std::cell::RefCell<Resizer> = std::cell::RefCell::new(Resizer::new());
}

/// Resizes the `crop` region (left, top, side) of an RGB8 image to `out` x `out` with
/// the antialiased bilinear (triangle) filter that Pillow's `BILINEAR` also uses.
pub fn resize_square(width: u32, height: u32, rgb: &[u8], crop: (u32, u32, u32), out: u32) -> Result<Vec<u8>, PreprocessError> {
    let src = ImageRef::new(width, height, rgb, PixelType::U8x3).map_err(|e| PreprocessError::Corrupt(format!("resize source: {e}")))?;
    let mut dst = Image::new(out, out, PixelType::U8x3);
    let (left, top, side) = crop;
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear)).crop(
        f64::from(left),
        f64::from(top),
        f64::from(side),
        f64::from(side),
    );
    RESIZER.with(|r| r.borrow_mut().resize(&src, &mut dst, &options)).map_err(|e| PreprocessError::Corrupt(format!("resize: {e}")))?;
    Ok(dst.into_vec())
}

/// Per-channel lookup from a u8 value to the normalised model input.
#[derive(Debug, Clone)]
pub struct Normaliser {
    lut: [[f32; 256]; 3],
}

impl Normaliser {
    pub fn new(scale: f32, mean: [f32; 3], std: [f32; 3]) -> Self {
        let mut lut = [[0.0; 256]; 3];
        for (c, table) in lut.iter_mut().enumerate() {
            for (v, slot) in table.iter_mut().enumerate() {
                *slot = (v as f32 / scale - mean[c]) / std[c];
            }
        }
        Self { lut }
    }

    /// Writes interleaved RGB8 pixels into one CHW slot of a batch buffer.
    pub fn fill_chw(&self, rgb: &[u8], slot: &mut [f32]) {
        let plane = slot.len() / 3;
        let (r, rest) = slot.split_at_mut(plane);
        let (g, b) = rest.split_at_mut(plane);
        let [lut_r, lut_g, lut_b] = &self.lut;
        for (((px, r), g), b) in rgb.chunks_exact(3).zip(r).zip(g).zip(b) {
            *r = lut_r[usize::from(px[0])];
            *g = lut_g[usize::from(px[1])];
            *b = lut_b[usize::from(px[2])];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normaliser_matches_formula_and_layout() {
        let n = Normaliser::new(255.0, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]);
        let rgb = [255u8, 0, 128, 10, 20, 30];
        let mut slot = vec![0.0f32; 6];
        n.fill_chw(&rgb, &mut slot);
        let expect = |v: u8, c: usize| (v as f32 / 255.0 - [0.485, 0.456, 0.406][c]) / [0.229, 0.224, 0.225][c];
        assert_eq!(slot[0], expect(255, 0));
        assert_eq!(slot[1], expect(10, 0));
        assert_eq!(slot[2], expect(0, 1));
        assert_eq!(slot[5], expect(30, 2));
    }

    #[test]
    fn resize_uniform_image_stays_uniform() {
        let rgb = vec![100u8; 300 * 200 * 3];
        let out = resize_square(300, 200, &rgb, (50, 0, 200), 64).unwrap();
        assert_eq!(out.len(), 64 * 64 * 3);
        assert!(out.iter().all(|&v| v == 100));
    }
}
