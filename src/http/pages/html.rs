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
<span class="who">{who}</span>
<form method="post" action="/review/logout" class="inline">{csrf}<button type="submit">Sign out</button></form></nav>"#,
            audit = if s.key.role == Role::Admin {
                r#"<a href="/review/audit">Audit log</a><a href="/review/deliveries">Deliveries</a>"#
            } else {
                ""
            },
            who = match &s.key.name {
                Some(name) => format!(r#"<span title="key {}">{}</span> · {}"#, esc(&s.key.id), esc(name), s.key.role.as_str()),
                None => format!("key {} ({})", esc(&s.key.id), s.key.role.as_str()),
            },
            csrf = csrf_field(s),
        );
    }
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · drscreen review</title>
<link rel="stylesheet" href="/review/static/review.css"><script src="/review/static/review.js" defer></script>
<script src="/review/static/form.js" defer></script></head>
<body>{notice}<header><span class="brand">drscreen</span> review{nav}</header>
<main>{body}</main>
<footer>drscreen {version}. Model results are decision support; the signed clinician review is the clinical record.</footer>
</body></html>"#,
        title = esc(title),
        version = env!("CARGO_PKG_VERSION"),
        notice = model_notice(),
    )
}

/// The banner every page opens with when the model is not for clinical use.
fn model_notice() -> String {
    super::context::PageContext::current()
        .model_notice
        .map(|n| format!(r#"<p class="model-notice" id="model-notice" role="note">{}</p>"#, esc(&n)))
        .unwrap_or_default()
}

/// A stored RFC 3339 timestamp in the one format every page uses, "2026-11-30 14:05 UTC",
/// as a `<time>` element carrying the exact instant; text that does not parse is shown
/// as it is (escaped).
pub fn when(rfc3339: &str) -> String {
    use time::format_description::well_known::Rfc3339;
    let shown = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    match time::OffsetDateTime::parse(rfc3339, &Rfc3339).map(|t| t.to_offset(time::UtcOffset::UTC).format(&shown)) {
        Ok(Ok(text)) => format!(r#"<time datetime="{}">{}</time>"#, esc(rfc3339), esc(&text)),
        _ => esc(rfc3339),
    }
}

/// Who acted, for tables: the key's display name with the key id as secondary text, or
/// the bare key id for keys without a name.
pub fn person(key_id: &str, name: Option<&str>) -> String {
    match name {
        Some(n) => {
            format!(r#"<span class="person" title="key {id}">{n}</span> <span class="key-id">{id}</span>"#, n = esc(n), id = esc(key_id))
        }
        None => esc(key_id),
    }
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

/// A coloured outcome badge (its class is the outcome's wire name); a draft without an
/// outcome (signed reviews always have one) shows as plain text.
pub fn outcome_badge(outcome: impl Into<Option<ExamOutcome>>) -> String {
    match outcome.into() {
        Some(o) => format!(r#"<span class="badge {cls}">{label}</span>"#, cls = o.as_str(), label = outcome_label(o)),
        None => outcome_label(None).to_string(),
    }
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

    #[test]
    fn times_in_one_format_with_the_zone() {
        assert_eq!(when("2026-11-30T14:05:59.123Z"), r#"<time datetime="2026-11-30T14:05:59.123Z">2026-11-30 14:05 UTC</time>"#);
        assert_eq!(
            when("2026-11-30T14:05:07.123456789Z"),
            r#"<time datetime="2026-11-30T14:05:07.123456789Z">2026-11-30 14:05 UTC</time>"#
        );
        // Another offset is shown in UTC, like every stored time.
        assert!(when("2026-11-30T15:05:00+01:00").contains(">2026-11-30 14:05 UTC<"));
        assert_eq!(when("<not a time>"), "&lt;not a time&gt;");
    }

    #[test]
    fn the_model_notice_comes_from_the_request_context() {
        assert!(!page("x", None, "").contains("model-notice"), "no notice outside a request");
        let ctx = super::super::context::PageContext {
            model_notice: Some(super::super::context::notice("dr-synth", "1.4.0<")),
            quality_limits: Default::default(),
            gradable_threshold: None,
        };
        let html = super::super::context::with(ctx, || page("x", None, ""));
        assert!(
            html.contains(r#"<p class="model-notice" id="model-notice" role="note">This model (dr-synth 1.4.0&lt;) was trained on synthetic images only and must not be used for patients.</p>"#),
            "{html}"
        );
    }
}
