//! HTML building blocks for the review pages: escaping (every interpolated value goes
//! through [`esc`]), the page frame with navigation, and small formatting helpers. Pages
//! are plain server-rendered HTML with one stylesheet and two small scripts (review.js,
//! form.js), all served by drscreen itself, so the UI works offline and needs no build step.

use std::fmt::Write;

use crate::grading::ExamOutcome;
use crate::store::{Role, Session};

/// Escapes text for HTML element content and double-quoted attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a query-string value (unreserved characters pass through).
pub fn urlenc(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A hidden CSRF field for a form.
pub fn csrf_field(session: &Session) -> String {
    format!(r#"<input type="hidden" name="csrf" value="{}">"#, esc(&session.csrf))
}

/// A whole page: navigation for the signed-in user, then `body`.
pub fn page(title: &str, session: Option<&Session>, body: &str) -> String {
    let mut nav = String::new();
    if let Some(s) = session {
        let _ = write!(
            nav,
            r#"<nav><a href="/review" accesskey="w">Worklist</a><a href="/review/agreement">Agreement monitor</a>{audit}
<span class="who">key {id} ({role})</span>
<form method="post" action="/review/logout" class="inline">{csrf}<button type="submit">Sign out</button></form></nav>"#,
            audit = if s.key.role == Role::Admin { r#"<a href="/review/audit">Audit log</a>"# } else { "" },
            id = esc(&s.key.id),
            role = s.key.role.as_str(),
            csrf = csrf_field(s),
        );
    }
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · drscreen review</title>
<link rel="stylesheet" href="/review/static/review.css"><script src="/review/static/review.js" defer></script>
<script src="/review/static/form.js" defer></script></head>
<body><header><span class="brand">drscreen</span> review{nav}</header>
<main>{body}</main>
<footer>drscreen {version}. Model results are decision support; the signed clinician review is the clinical record.</footer>
</body></html>"#,
        title = esc(title),
        version = env!("CARGO_PKG_VERSION"),
    )
}

/// A percentage with one decimal, or an en dash.
pub fn pct(v: Option<f64>) -> String {
    v.filter(|x| x.is_finite()).map_or_else(|| "–".into(), |x| format!("{:.1}%", 100.0 * x))
}

/// A number with three decimals, or an en dash.
pub fn num3(v: Option<f64>) -> String {
    v.filter(|x| x.is_finite()).map_or_else(|| "–".into(), |x| format!("{x:.3}"))
}

/// Human label of an outcome; "not chosen yet" for a partial draft's missing one
/// (`impl Into<Option<_>>` so callers pass an outcome or a draft's optional one alike).
pub fn outcome_label(outcome: impl Into<Option<ExamOutcome>>) -> &'static str {
    match outcome.into() {
        Some(ExamOutcome::UrgentReferral) => "Urgent referral",
        Some(ExamOutcome::Referral) => "Referral",
        Some(ExamOutcome::Ungradable) => "Ungradable",
        Some(ExamOutcome::Rescreen) => "Rescreen",
        None => "not chosen yet",
    }
}

/// A coloured outcome badge (its class is the outcome's wire name).
pub fn outcome_badge(outcome: ExamOutcome) -> String {
    format!(r#"<span class="badge {cls}">{label}</span>"#, cls = outcome.as_str(), label = outcome_label(outcome))
}

/// A grade as text ("2 · Moderate non-proliferative DR"), or "ungradable".
pub fn grade_text(grade: Option<u8>) -> String {
    match grade {
        Some(g) if g < 5 => format!("{g} · {}", crate::grading::rules::ICDR_LABELS[usize::from(g)]),
        Some(g) => format!("{g}"),
        None => "ungradable".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(esc(r#"<script>alert("x")</script>&'"#), "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;");
    }

    #[test]
    fn url_encodes_query_values() {
        assert_eq!(urlenc("review.sign"), "review.sign");
        assert_eq!(urlenc("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
    }

    #[test]
    fn formats() {
        assert_eq!(pct(Some(0.9234)), "92.3%");
        assert_eq!(pct(Some(f64::NAN)), "–");
        assert_eq!(grade_text(Some(2)), "2 · Moderate non-proliferative DR");
        assert_eq!(grade_text(None), "ungradable");
    }
}
