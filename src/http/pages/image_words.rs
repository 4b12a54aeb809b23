//! An image's finding in words for the case page's captions: each quality reason as a
//! sentence with the measured value and the limit it crossed, the quality measures with
//! their units and limits, and the laterality warning when the optic disc contradicts
//! the stated eye. The limits are the running service's (`context::PageContext`), the
//! same the grading applies. Everything returned is HTML with its values escaped.

use std::fmt::Write;

use super::context::PageContext;
use super::html::esc;
use crate::grading::{ImageFinding, LateralityVerdict, Quality};
use crate::preprocess::quality::{
    REASON_BRIGHT, REASON_CLIPPED, REASON_CONTRAST, REASON_DARK, REASON_FOCUS, REASON_FOV, REASON_MODEL, REASON_NO_FIELD,
};
use crate::preprocess::{QualityLimits, QualityMeasures};

fn percent(share: f32) -> String {
    format!("{:.1}%", 100.0 * share)
}

/// Which limit a value is judged against: the hard one when it fails it, else the
/// advisory one (a reason found only by the advisory limits explains the model's call).
fn which(fails_hard: bool, hard: String, advisory: String) -> String {
    if fails_hard { format!("the {hard} limit") } else { format!("the {advisory} advisory limit") }
}

/// One reason code as a sentence.
pub fn reason_sentence(code: &str, q: &Quality, limits: &QualityLimits, gradable_threshold: Option<f32>) -> String {
    let m = &q.measures;
    match code {
        REASON_FOV => format!(
            "Field of view incomplete: {} of the field is visible, below {}.",
            percent(m.fov_coverage),
            which(m.fov_coverage < limits.min_fov_coverage, percent(limits.min_fov_coverage), percent(limits.warn_fov_coverage))
        ),
        REASON_DARK => format!(
            "Underexposed: brightness {:.1} (mean luma, 0–255) is below {}.",
            m.brightness,
            which(
                m.brightness < limits.min_brightness,
                format!("{:.0}", limits.min_brightness),
                format!("{:.0}", limits.warn_min_brightness)
            )
        ),
        REASON_BRIGHT => format!(
            "Overexposed: brightness {:.1} (mean luma, 0–255) is above {}.",
            m.brightness,
            which(
                m.brightness > limits.max_brightness,
                format!("{:.0}", limits.max_brightness),
                format!("{:.0}", limits.warn_max_brightness)
            )
        ),
        REASON_CLIPPED => format!(
            "Highlights clipped: {} of the field is washed out, above the {} limit.",
            percent(m.clipped_fraction),
            percent(limits.max_clipped_fraction)
        ),
        REASON_CONTRAST => format!(
            "Low contrast: green-channel contrast {:.1} (standard deviation, 0–255) is below {}.",
            m.contrast,
            which(m.contrast < limits.min_contrast, format!("{:.1}", limits.min_contrast), format!("{:.1}", limits.warn_contrast))
        ),
        REASON_FOCUS => format!(
            "Out of focus: sharpness {:.3} is below {}.",
            m.focus,
            which(m.focus < limits.min_focus, format!("{:.3}", limits.min_focus), format!("{:.3}", limits.warn_focus))
        ),
        REASON_MODEL => match gradable_threshold {
            Some(t) => format!("The model judged the image ungradable: P(gradable) {:.3} is below its {t:.3} threshold.", q.score),
            None => format!("The model judged the image ungradable: P(gradable) {:.3}.", q.score),
        },
        REASON_NO_FIELD => {
            "No field of view found: no round fundus field stood out from a dark surround, so the whole frame was used.".into()
        }
        other => format!("{other}."),
    }
}

/// The reasons an image is ungradable, one sentence each (empty when it is gradable).
pub fn reasons(q: &Quality, context: &PageContext) -> String {
    if q.reasons.is_empty() {
        return String::new();
    }
    let mut b = String::from(r#"<ul class="quality-reasons">"#);
    for code in &q.reasons {
        let sentence = reason_sentence(code, q, &context.quality_limits, context.gradable_threshold);
        let _ = write!(b, r#"<li data-reason="{}">{}</li>"#, esc(code), esc(&sentence));
    }
    b.push_str("</ul>");
    b
}

/// The measures with their units and limits; a row beyond its limit is marked
/// `beyond`, one beyond only its advisory limit `advisory`.
pub fn measures(m: &QualityMeasures, limits: &QualityLimits) -> String {
    let l = limits;
    let f1 = |x: f32| format!("{x:.1}");
    let f3 = |x: f32| format!("{x:.3}");
    // (label, value, limit in words, beyond the limit, beyond the advisory limit)
    let rows = [
        (
            "Visible field",
            percent(m.fov_coverage),
            format!("at least {} (advisory {})", percent(l.min_fov_coverage), percent(l.warn_fov_coverage)),
            m.fov_coverage < l.min_fov_coverage,
            m.fov_coverage < l.warn_fov_coverage,
        ),
        (
            "Brightness (mean luma, 0–255)",
            f1(m.brightness),
            format!(
                "{:.0} to {:.0} (advisory {:.0} to {:.0})",
                l.min_brightness, l.max_brightness, l.warn_min_brightness, l.warn_max_brightness
            ),
            m.brightness < l.min_brightness || m.brightness > l.max_brightness,
            m.brightness < l.warn_min_brightness || m.brightness > l.warn_max_brightness,
        ),
        (
            "Clipped highlights (share of the field)",
            percent(m.clipped_fraction),
            format!("at most {}", percent(l.max_clipped_fraction)),
            m.clipped_fraction > l.max_clipped_fraction,
            false,
        ),
        (
            "Contrast (green-channel standard deviation, 0–255)",
            f1(m.contrast),
            format!("at least {} (advisory {})", f1(l.min_contrast), f1(l.warn_contrast)),
            m.contrast < l.min_contrast,
            m.contrast < l.warn_contrast,
        ),
        (
            "Sharpness (vessel-scale edge energy per unit of contrast)",
            f3(m.focus),
            format!("at least {} (advisory {})", f3(l.min_focus), f3(l.warn_focus)),
            m.focus < l.min_focus,
            m.focus < l.warn_focus,
        ),
    ];
    let mut b = String::from(
        r#"<details><summary>Quality measures and limits</summary><table class="measures"><thead><tr><th>Measure</th><th>Value</th><th>Limit</th></tr></thead><tbody>"#,
    );
    for (label, value, limit, beyond, advisory) in rows {
        let class = if beyond {
            r#" class="beyond""#
        } else if advisory {
            r#" class="advisory""#
        } else {
            ""
        };
        let _ = write!(b, "<tr{class}><th>{}</th><td>{}</td><td>{}</td></tr>", esc(label), esc(&value), esc(&limit));
    }
    b.push_str("</tbody></table></details>");
    b
}

/// The warning shown on an image whose disc position contradicts its stated eye (empty
/// otherwise). The stated eye stays the eye of record: the clinician decides.
pub fn laterality_warning(f: &ImageFinding) -> String {
    let Some(check) = f.laterality_check.filter(|c| c.verdict == LateralityVerdict::Contradicts) else {
        return String::new();
    };
    let suggested = check.suggested.map_or_else(|| "different".to_string(), |l| l.as_str().to_uppercase());
    format!(
        r#"<p class="laterality-warning" data-suggested="{s}">Disc position suggests a {s} eye, but this image was sent as the {stated} eye: check before signing.</p>"#,
        s = esc(&suggested),
        stated = esc(check.stated.as_str()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quality(reasons: &[&str], measures: QualityMeasures) -> Quality {
        Quality { gradable: reasons.is_empty(), score: 0.2, reasons: reasons.iter().map(|r| r.to_string()).collect(), measures }
    }

    const FINE: QualityMeasures =
        QualityMeasures { fov_coverage: 0.98, brightness: 110.0, clipped_fraction: 0.01, contrast: 20.0, focus: 0.8 };

    #[test]
    fn reasons_are_sentences_with_the_value_and_the_limit_crossed() {
        let limits = QualityLimits::default();
        let blurred = QualityMeasures { focus: 0.012, ..FINE };
        let q = quality(&[REASON_FOCUS, REASON_MODEL], blurred);
        assert_eq!(reason_sentence(REASON_FOCUS, &q, &limits, Some(0.5)), "Out of focus: sharpness 0.012 is below the 0.050 limit.");
        assert_eq!(
            reason_sentence(REASON_MODEL, &q, &limits, Some(0.5)),
            "The model judged the image ungradable: P(gradable) 0.200 is below its 0.500 threshold."
        );
        // Only past the advisory limit: that limit is named as advisory.
        let soft = quality(&[REASON_FOCUS], QualityMeasures { focus: 0.2, ..FINE });
        assert_eq!(reason_sentence(REASON_FOCUS, &soft, &limits, None), "Out of focus: sharpness 0.200 is below the 0.300 advisory limit.");
        let dark = quality(&[REASON_DARK], QualityMeasures { brightness: 12.34, ..FINE });
        assert_eq!(
            reason_sentence(REASON_DARK, &dark, &limits, None),
            "Underexposed: brightness 12.3 (mean luma, 0–255) is below the 20 limit."
        );
        let clipped = quality(&[REASON_FOV], QualityMeasures { fov_coverage: 0.6, ..FINE });
        assert_eq!(
            reason_sentence(REASON_FOV, &clipped, &limits, None),
            "Field of view incomplete: 60.0% of the field is visible, below the 75.0% limit."
        );
        // Every code the grading emits has its own sentence, none shows a bare code.
        for code in [REASON_FOV, REASON_DARK, REASON_BRIGHT, REASON_CLIPPED, REASON_CONTRAST, REASON_FOCUS, REASON_MODEL, REASON_NO_FIELD] {
            let s = reason_sentence(code, &q, &limits, Some(0.5));
            assert!(!s.contains(code) && s.ends_with('.'), "{code}: {s}");
        }
        let html = reasons(&quality(&["<odd>"], FINE), &PageContext::current());
        assert!(html.contains("&lt;odd&gt;.") && !html.contains("<odd>"), "{html}");
    }

    #[test]
    fn measures_have_units_limits_and_marks() {
        let html = measures(&QualityMeasures { focus: 0.012, contrast: 8.0, ..FINE }, &QualityLimits::default());
        assert!(html.contains("<tr><th>Visible field</th><td>98.0%</td><td>at least 75.0% (advisory 85.0%)</td></tr>"), "{html}");
        assert!(html.contains(r#"<tr class="beyond"><th>Sharpness"#), "{html}");
        assert!(html.contains(r#"<tr class="advisory"><th>Contrast"#), "{html}");
        assert!(html.contains("<td>0.012</td><td>at least 0.050 (advisory 0.300)</td>"), "{html}");
    }
}
