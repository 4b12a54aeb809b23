//! The model's heatmap: its referable-DR activation map, bilinearly upsampled over the
//! prepared (cropped) field of view and blended in a blue-to-red colour ramp where the
//! activation is high. Drawn on demand from the stored map; nothing is re-inferred.

/// Renders an RGB8 overlay of `side` x `side` from the prepared image and the map.
pub fn overlay(side: usize, rgb: &[u8], cam: &[f32], cam_shape: (usize, usize)) -> Vec<u8> {
    let (ch, cw) = cam_shape;
    let mut out = rgb.to_vec();
    if ch == 0 || cw == 0 || cam.len() != ch * cw || rgb.len() != side * side * 3 {
        return out;
    }
    let sample = |y: f32, x: f32| {
        let fy = (y * ch as f32 - 0.5).clamp(0.0, (ch - 1) as f32);
        let fx = (x * cw as f32 - 0.5).clamp(0.0, (cw - 1) as f32);
        let (y0, x0) = (fy.floor() as usize, fx.floor() as usize);
        let (y1, x1) = ((y0 + 1).min(ch - 1), (x0 + 1).min(cw - 1));
        let (ty, tx) = (fy - y0 as f32, fx - x0 as f32);
        let top = cam[y0 * cw + x0] * (1.0 - tx) + cam[y0 * cw + x1] * tx;
        let bottom = cam[y1 * cw + x0] * (1.0 - tx) + cam[y1 * cw + x1] * tx;
        (top * (1.0 - ty) + bottom * ty).clamp(0.0, 1.0)
    };
    for y in 0..side {
        for x in 0..side {
            let v = sample((y as f32 + 0.5) / side as f32, (x as f32 + 0.5) / side as f32);
            let i = (y * side + x) * 3;
            // Blue (low) -> yellow -> red (high), opacity growing with the activation.
            let colour =
                [255.0 * (2.0 * v).min(1.0), 255.0 * (2.0 - 2.0 * v).min(1.0) * (v * 2.0).min(1.0), 255.0 * (1.0 - 2.0 * v).max(0.0)];
            let alpha = 0.15 + 0.5 * v;
            for c in 0..3 {
                out[i + c] = (f32::from(rgb[i + c]) * (1.0 - alpha) + colour[c] * alpha).round() as u8;
            }
        }
    }
    out
}

/// Encodes an RGB8 image as PNG.
pub fn png(side: usize, rgb: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let encoder = image::codecs::png::PngEncoder::new(&mut out);
    image::ImageEncoder::write_image(encoder, rgb, side as u32, side as u32, image::ExtendedColorType::Rgb8).map_err(|e| e.to_string())?;
    Ok(out)
}

/// Width of the review viewer's heatmap layer ([`layer`]); the map is coarse, so the
/// browser's smooth scaling of 512 pixels looks the same at any zoom.
pub const LAYER_WIDTH: u32 = 512;

/// The map's value at a point of the unit square, bilinear between cells.
fn sample(cam: &[f32], (ch, cw): (usize, usize), y: f32, x: f32) -> f32 {
    let fy = (y * ch as f32 - 0.5).clamp(0.0, (ch - 1) as f32);
    let fx = (x * cw as f32 - 0.5).clamp(0.0, (cw - 1) as f32);
    let (y0, x0) = (fy.floor() as usize, fx.floor() as usize);
    let (y1, x1) = ((y0 + 1).min(ch - 1), (x0 + 1).min(cw - 1));
    let (ty, tx) = (fy - y0 as f32, fx - x0 as f32);
    let top = cam[y0 * cw + x0] * (1.0 - tx) + cam[y0 * cw + x1] * tx;
    let bottom = cam[y1 * cw + x0] * (1.0 - tx) + cam[y1 * cw + x1] * tx;
    (top * (1.0 - ty) + bottom * ty).clamp(0.0, 1.0)
}

/// The map alone as an RGBA8 layer of `width` x `height`, for laying over the original
/// photograph: `square` is (x0, y0, side) of the preprocessing's crop in layer pixels,
/// and outside it the layer is transparent. The colour ramp is [`overlay`]'s (blue low,
/// yellow, red high); the alpha grows with the activation from almost nothing, so low
/// activation does not tint the whole photograph and the viewer's opacity slider scales
/// what is left.
pub fn layer(width: usize, height: usize, square: (f32, f32, f32), cam: &[f32], cam_shape: (usize, usize)) -> Vec<u8> {
    let mut out = vec![0u8; width * height * 4];
    let (ch, cw) = cam_shape;
    let (sx, sy, side) = square;
    if ch == 0 || cw == 0 || cam.len() != ch * cw || side <= 0.0 {
        return out;
    }
    for y in 0..height {
        let v = (y as f32 + 0.5 - sy) / side;
        if !(0.0..1.0).contains(&v) {
            continue;
        }
        for x in 0..width {
            let u = (x as f32 + 0.5 - sx) / side;
            if !(0.0..1.0).contains(&u) {
                continue;
            }
            let a = sample(cam, cam_shape, v, u);
            let i = (y * width + x) * 4;
            out[i] = (255.0 * (2.0 * a).min(1.0)).round() as u8;
            out[i + 1] = (255.0 * (2.0 - 2.0 * a).min(1.0) * (a * 2.0).min(1.0)).round() as u8;
            out[i + 2] = (255.0 * (1.0 - 2.0 * a).max(0.0)).round() as u8;
            out[i + 3] = (255.0 * (0.05 + 0.75 * a)).round() as u8;
        }
    }
    out
}

/// Encodes an RGBA8 image as PNG.
pub fn png_rgba(width: u32, height: u32, rgba: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let encoder = image::codecs::png::PngEncoder::new(&mut out);
    image::ImageEncoder::write_image(encoder, rgba, width, height, image::ExtendedColorType::Rgba8).map_err(|e| e.to_string())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn hot_cell_turns_its_region_red() {
        let rgb = vec![100u8; 64 * 64 * 3];
        let mut cam = vec![0.0f32; 4];
        cam[3] = 1.0; // bottom-right
        let out = super::overlay(64, &rgb, &cam, (2, 2));
        let px = |x: usize, y: usize| &out[(y * 64 + x) * 3..(y * 64 + x) * 3 + 3];
        assert!(px(60, 60)[0] > 180 && px(60, 60)[2] < 80, "{:?}", px(60, 60));
        assert!(px(3, 3)[2] > px(3, 3)[0], "{:?}", px(3, 3));
    }

    #[test]
    fn layer_places_the_map_on_the_crop_and_is_clear_elsewhere() {
        let mut cam = vec![0.0f32; 4];
        cam[3] = 1.0; // bottom-right of the crop
        // A 100 x 50 layer whose crop is the square (25, 0, 50).
        let out = super::layer(100, 50, (25.0, 0.0, 50.0), &cam, (2, 2));
        let px = |x: usize, y: usize| &out[(y * 100 + x) * 4..(y * 100 + x) * 4 + 4];
        assert_eq!(px(5, 25)[3], 0, "left of the crop: transparent");
        assert_eq!(px(95, 25)[3], 0, "right of the crop: transparent");
        assert!(px(72, 47)[0] > 200 && px(72, 47)[3] > 150, "hot cell red and strong: {:?}", px(72, 47));
        assert!(px(27, 2)[2] > 200 && px(27, 2)[3] < 30, "cold cell blue and faint: {:?}", px(27, 2));
    }
}
