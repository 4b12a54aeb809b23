//! The agreement monitor page: the model against the clinicians' signed reviews over the
//! last N reviews: kappa, exact agreement, referable sensitivity/specificity with 95%
//! intervals, the confusion matrix, and a weekly trend as a table and an SVG chart
//! (drawn here, no script), so a clinic can see the model drift.

use std::fmt::Write;

use axum::extract::State;
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use super::html::{num3, page, pct};
use super::{PageQuery, ReviewSession};
use crate::http::AppState;
use crate::http::reviews::agreement;
use crate::report::agreement::{AgreementStats, WeekRow};
use crate::report::metrics::Proportion;

#[derive(Deserialize)]
pub struct AgreementQuery {
    last: Option<u32>,
}

fn proportion(p: &Option<Proportion>) -> String {
    match p {
        Some(p) => format!("{} ({}/{}; 95% CI {}–{})", pct(Some(p.value)), p.successes, p.n, pct(Some(p.ci95[0])), pct(Some(p.ci95[1]))),
        None => "–".into(),
    }
}

fn stats_rows(b: &mut String, s: &AgreementStats) {
    let _ = write!(
        b,
        "<tr><th>Eyes read by both</th><td>{}</td></tr><tr><th>Graded by both</th><td>{}</td></tr>\
         <tr><th>Gradability disagreements</th><td>{}</td></tr><tr><th>Quadratic weighted kappa</th><td id=\"qwk\">{}</td></tr>\
         <tr><th>Exact grade agreement</th><td>{}</td></tr><tr><th>Referable sensitivity (vs clinicians)</th><td id=\"sensitivity\">{}</td></tr>\
         <tr><th>Referable specificity (vs clinicians)</th><td id=\"specificity\">{}</td></tr>",
        s.eyes,
        s.graded_by_both,
        s.gradability_disagreements,
        num3(s.quadratic_weighted_kappa),
        proportion(&s.exact_grade_agreement),
        proportion(&s.referable_sensitivity),
        proportion(&s.referable_specificity),
    );
}

/// Weekly kappa (blue) and exact agreement (orange) on a 0..1 axis.
fn trend_svg(weeks: &[WeekRow]) -> String {
    let (w, h, left, bottom, top) = (640.0, 240.0, 40.0, 40.0, 10.0);
    let plot_w = w - left - 10.0;
    let plot_h = h - bottom - top;
    let n = weeks.len().max(1);
    let x = |i: usize| left + if n == 1 { plot_w / 2.0 } else { plot_w * i as f64 / (n - 1) as f64 };
    let y = |v: f64| top + plot_h * (1.0 - v.clamp(-1.0, 1.0).max(0.0));
    let mut s =
        format!(r#"<svg class="trend" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="weekly agreement trend">"#);
    for tick in [0.0, 0.25, 0.5, 0.75, 1.0] {
        let _ = write!(
            s,
            r##"<line x1="{left}" x2="{}" y1="{y}" y2="{y}" stroke="#ddd"/><text x="4" y="{}" font-size="11">{tick:.2}</text>"##,
            w - 10.0,
            y(tick) + 4.0,
            y = y(tick)
        );
    }
    for (series, colour) in [(0usize, "#1f6fb4"), (1, "#e07b00")] {
        let points: Vec<(f64, f64)> = weeks
            .iter()
            .enumerate()
            .filter_map(|(i, wk)| {
                let v = if series == 0 { wk.stats.quadratic_weighted_kappa } else { wk.stats.exact_grade_agreement.map(|p| p.value) };
                v.filter(|v| v.is_finite()).map(|v| (x(i), y(v)))
            })
            .collect();
        if points.len() > 1 {
            let path: Vec<String> = points.iter().map(|(px, py)| format!("{px:.1},{py:.1}")).collect();
            let _ = write!(s, r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#, path.join(" "));
        }
        for (px, py) in points {
            let _ = write!(s, r#"<circle cx="{px:.1}" cy="{py:.1}" r="3.5" fill="{colour}"/>"#);
        }
    }
    for (i, wk) in weeks.iter().enumerate() {
        let _ = write!(s, r#"<text x="{:.1}" y="{}" font-size="11" text-anchor="middle">{}</text>"#, x(i), h - 22.0, wk.week);
    }
    let _ = write!(
        s,
        r##"<text x="{left}" y="{}" font-size="12" fill="#1f6fb4">● kappa</text><text x="{}" y="{}" font-size="12" fill="#e07b00">● exact agreement</text></svg>"##,
        h - 4.0,
        left + 80.0,
        h - 4.0
    );
    s
}

/// `GET /review/agreement?last=N`.
pub async fn show(State(state): State<AppState>, user: ReviewSession, PageQuery(q): PageQuery<AgreementQuery>) -> Response {
    let report = match agreement(&state, q.last).await {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let window = q.last.unwrap_or(state.review.agreement_window);
    let mut b = format!(
        r#"<h1>Agreement monitor</h1><p>Model against clinicians over the last <b>{}</b> signed reviews (window {window}; latest signed version of each exam, per eye). Clinicians are the reference.</p>
<form method="get" action="/review/agreement" class="filters"><label>Last <input type="number" name="last" min="1" max="10000" value="{window}"></label><button type="submit">Update</button></form>"#,
        report.reviews
    );
    b.push_str(r#"<table class="summary" id="agreement-summary">"#);
    stats_rows(&mut b, &report.overall);
    b.push_str("</table><h2>Confusion matrix (rows: clinician grade, columns: model grade)</h2><table class=\"confusion\" id=\"confusion\"><tr><th></th>");
    for g in 0..5 {
        let _ = write!(b, "<th>model {g}</th>");
    }
    b.push_str("</tr>");
    for (g, row) in report.overall.confusion.iter().enumerate() {
        let _ = write!(b, "<tr><th>clinician {g}</th>");
        for (m, c) in row.iter().enumerate() {
            let _ = write!(b, r#"<td class="{}">{c}</td>"#, if g == m { "diag" } else { "off" });
        }
        b.push_str("</tr>");
    }
    b.push_str("</table><h2>Trend per ISO week</h2>");
    if report.weeks.is_empty() {
        b.push_str(r#"<p class="empty">No signed reviews yet.</p>"#);
    } else {
        b.push_str(&trend_svg(&report.weeks));
        b.push_str(r#"<table id="weeks"><thead><tr><th>Week</th><th>Eyes</th><th>Kappa</th><th>Exact agreement</th><th>Referable sensitivity</th><th>Referable specificity</th></tr></thead><tbody>"#);
        for wk in &report.weeks {
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                wk.week,
                wk.stats.graded_by_both,
                num3(wk.stats.quadratic_weighted_kappa),
                pct(wk.stats.exact_grade_agreement.map(|p| p.value)),
                pct(wk.stats.referable_sensitivity.map(|p| p.value)),
                pct(wk.stats.referable_specificity.map(|p| p.value)),
            );
        }
        b.push_str("</tbody></table>");
    }
    Html(page("Agreement monitor", Some(&user.session), &b)).into_response()
}
