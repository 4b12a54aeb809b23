//! PNG plots for the validation report (plotters on an in-memory bitmap, encoded with
//! `image`). Text needs a TrueType font: the first of a few common system fonts is used;
//! without one the plots are drawn without labels rather than failing the report.

use std::path::Path;
use std::sync::OnceLock;

use plotters::prelude::*;

const FONT_CANDIDATES: [&str; 4] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

fn fonts_available() -> bool {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    *REGISTERED.get_or_init(|| {
        FONT_CANDIDATES.iter().any(|path| match std::fs::read(path) {
            Ok(bytes) => plotters::style::register_font("sans-serif", FontStyle::Normal, Box::leak(bytes.into_boxed_slice())).is_ok(),
            Err(_) => false,
        })
    })
}

type PlotResult = Result<(), String>;

fn save(path: &Path, buffer: Vec<u8>, w: u32, h: u32) -> PlotResult {
    image::save_buffer(path, &buffer, w, h, image::ExtendedColorType::Rgb8).map_err(|e| format!("write {}: {e}", path.display()))
}

/// ROC curve with the operating point marked.
pub fn roc_png(path: &Path, curve: &[(f64, f64)], auc: f64, operating_point: Option<(f64, f64)>) -> PlotResult {
    let (w, h) = (640u32, 600u32);
    let mut buffer = vec![255u8; (w * h * 3) as usize];
    let text = fonts_available();
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (w, h)).into_drawing_area();
        let e = |e: plotters::drawing::DrawingAreaErrorKind<_>| e.to_string();
        let mut builder = ChartBuilder::on(&root);
        builder.margin(20);
        if text {
            builder.caption(format!("Referable DR: ROC (AUC {auc:.3})"), ("sans-serif", 22)).x_label_area_size(45).y_label_area_size(55);
        }
        let mut chart = builder.build_cartesian_2d(0.0f64..1.0, 0.0f64..1.0).map_err(e)?;
        if text {
            chart.configure_mesh().x_desc("1 - specificity").y_desc("sensitivity").draw().map_err(e)?;
        }
        chart.draw_series(LineSeries::new([(0.0, 0.0), (1.0, 1.0)], BLACK.mix(0.3))).map_err(e)?;
        chart.draw_series(LineSeries::new(curve.iter().copied(), BLUE.stroke_width(2))).map_err(e)?;
        if let Some(p) = operating_point {
            chart.draw_series(std::iter::once(Circle::new(p, 6, RED.filled()))).map_err(e)?;
        }
        root.present().map_err(e)?;
    }
    save(path, buffer, w, h)
}

/// Confusion matrix as a heat grid, rows = reference, columns = model.
pub fn confusion_png(path: &Path, matrix: &[Vec<u64>], title: &str) -> PlotResult {
    let k = matrix.len();
    let (w, h) = (640u32, 640u32);
    let mut buffer = vec![255u8; (w * h * 3) as usize];
    let text = fonts_available();
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (w, h)).into_drawing_area();
        let e = |e: plotters::drawing::DrawingAreaErrorKind<_>| e.to_string();
        let mut builder = ChartBuilder::on(&root);
        builder.margin(20);
        if text {
            builder.caption(title, ("sans-serif", 22)).x_label_area_size(45).y_label_area_size(55);
        }
        let mut chart = builder.build_cartesian_2d(0i32..k as i32, 0i32..k as i32).map_err(e)?;
        if text {
            chart.configure_mesh().disable_mesh().x_desc("model grade").y_desc("reference grade").draw().map_err(e)?;
        }
        let max = matrix.iter().flatten().copied().max().unwrap_or(1).max(1) as f64;
        for (i, row) in matrix.iter().enumerate() {
            for (j, &count) in row.iter().enumerate() {
                let shade = 1.0 - count as f64 / max;
                let colour = RGBColor((255.0 * shade) as u8, (255.0 * shade) as u8, 255);
                let (x, y) = (j as i32, (k - 1 - i) as i32);
                chart.draw_series(std::iter::once(Rectangle::new([(x, y), (x + 1, y + 1)], colour.filled()))).map_err(e)?;
                if text {
                    let ink = if shade < 0.5 { WHITE } else { BLACK };
                    chart
                        .draw_series(std::iter::once(Text::new(count.to_string(), (x, y + 1), ("sans-serif", 20).into_font().color(&ink))))
                        .map_err(e)?;
                }
            }
        }
        root.present().map_err(e)?;
    }
    save(path, buffer, w, h)
}
