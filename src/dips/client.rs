//! The HTTP client for DIPS: one pooled `reqwest` client (TLS by rustls with the
//! platform's trust store), the configured credential header on every request, a time
//! limit on every request and a size limit on every answer read.

use std::time::Duration;

use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderName, HeaderValue};
use serde_json::Value;

use super::DipsConfig;

/// Largest `$retina-by-date` Bundle read, bytes.
pub const MAX_BUNDLE_BYTES: usize = 16 << 20;
/// Largest answer to an append read (an OperationOutcome), bytes.
pub const MAX_ANSWER_BYTES: usize = 1 << 20;
/// FHIR media type for requests and answers.
const FHIR_JSON: &str = "application/fhir+json";

/// Why a call to DIPS did not get an answer it could use.
#[derive(Debug, thiserror::Error)]
pub enum DipsError {
    #[error("bad DIPS settings: {0}")]
    Settings(String),
    /// No answer (connection refused, DNS, TLS, timeout): worth retrying.
    #[error("DIPS did not answer: {0}")]
    Transport(String),
    #[error("DIPS answered {status}: {detail}")]
    Status { status: u16, detail: String },
    #[error("DIPS's answer is larger than {0} bytes")]
    TooLarge(usize),
    #[error("DIPS's answer is not FHIR JSON: {0}")]
    Body(String),
    #[error("'{0}' is not a FHIR resource id")]
    BadId(String),
}

/// An answer to an append: its status and body (an OperationOutcome, or empty).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

/// The configured connection to DIPS.
pub struct DipsClient {
    http: reqwest::Client,
    base: String,
    auth: Option<(HeaderName, HeaderValue)>,
}

/// A FHIR logical id: `[A-Za-z0-9\-\.]{1,64}` (FHIR R4 `id` datatype). Checked before an
/// id from DIPS goes into a URL path.
pub fn is_fhir_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

impl DipsClient {
    pub fn new(config: &DipsConfig) -> Result<Self, DipsError> {
        let base = config.base_url.clone().ok_or_else(|| DipsError::Settings("no dips.base_url".into()))?;
        let timeout = Duration::from_secs_f64(config.timeout_secs);
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| DipsError::Settings(e.to_string()))?;
        let auth = match &config.auth_value {
            Some(value) => {
                let name = HeaderName::from_bytes(config.auth_header.as_bytes()).map_err(|e| DipsError::Settings(e.to_string()))?;
                let mut value = HeaderValue::from_str(value).map_err(|e| DipsError::Settings(e.to_string()))?;
                value.set_sensitive(true);
                Some((name, value))
            }
            None => None,
        };
        Ok(Self { http, base: base.trim_end_matches('/').to_string(), auth })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.with_auth(self.http.request(method, format!("{}/{path}", self.base)))
    }

    fn with_auth(&self, builder: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let mut builder = builder.header(ACCEPT, FHIR_JSON);
        if let Some((name, value)) = &self.auth {
            builder = builder.header(name.clone(), value.clone());
        }
        builder
    }

    /// `GET [base]/DiagnosticReport/$retina-by-date?start=&end=&pendingAI=true&_include=DiagnosticReport:result`:
    /// the examinations between `start` and `end` (FHIR dates) still waiting for an AI result.
    pub async fn pending(&self, start: &str, end: &str) -> Result<Value, DipsError> {
        let mut url = reqwest::Url::parse(&format!("{}/DiagnosticReport/$retina-by-date", self.base))
            .map_err(|e| DipsError::Settings(e.to_string()))?;
        url.query_pairs_mut()
            .append_pair("start", start)
            .append_pair("end", end)
            .append_pair("pendingAI", "true")
            .append_pair("_include", "DiagnosticReport:result");
        let response = self.with_auth(self.http.get(url)).send().await.map_err(transport)?;
        let status = response.status().as_u16();
        let body = read_limited(response, MAX_BUNDLE_BYTES).await?;
        if !(200..300).contains(&status) {
            return Err(DipsError::Status { status, detail: outcome_summary(&body) });
        }
        serde_json::from_str(&body).map_err(|e| DipsError::Body(e.to_string()))
    }

    /// `POST [base]/DiagnosticReport/[report_id]/$append-retina-ai-result` with `parameters`.
    /// Any HTTP answer is returned (the caller decides what a status means); only a
    /// missing answer is an error.
    pub async fn append(&self, report_id: &str, parameters: &Value) -> Result<Answer, DipsError> {
        if !is_fhir_id(report_id) {
            return Err(DipsError::BadId(report_id.to_string()));
        }
        let body = serde_json::to_vec(parameters).map_err(|e| DipsError::Body(e.to_string()))?;
        let response = self
            .request(reqwest::Method::POST, &format!("DiagnosticReport/{report_id}/$append-retina-ai-result"))
            .header(CONTENT_TYPE, FHIR_JSON)
            .body(body)
            .send()
            .await
            .map_err(transport)?;
        let status = response.status().as_u16();
        let body = read_limited(response, MAX_ANSWER_BYTES).await?;
        Ok(Answer { status, body })
    }
}

fn transport(e: reqwest::Error) -> DipsError {
    // reqwest's Display names the URL (no credentials: they travel in a header).
    DipsError::Transport(if e.is_timeout() { format!("timed out: {e}") } else { e.to_string() })
}

async fn read_limited(mut response: reqwest::Response, max: usize) -> Result<String, DipsError> {
    if response.content_length().is_some_and(|n| n > max as u64) {
        return Err(DipsError::TooLarge(max));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport)? {
        if body.len() + chunk.len() > max {
            return Err(DipsError::TooLarge(max));
        }
        body.extend_from_slice(&chunk);
    }
    String::from_utf8(body).map_err(|e| DipsError::Body(e.to_string()))
}

/// An OperationOutcome's issues in words (`severity code: diagnostics`), or the body's
/// first characters when it is not one; at most 1000 characters.
pub fn outcome_summary(body: &str) -> String {
    let text = match serde_json::from_str::<Value>(body) {
        Ok(v) if v["resourceType"] == "OperationOutcome" => {
            let issues: Vec<String> = v["issue"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|i| {
                    let said = i["diagnostics"].as_str().or_else(|| i["details"]["text"].as_str()).unwrap_or("");
                    format!("{} {}: {said}", i["severity"].as_str().unwrap_or("?"), i["code"].as_str().unwrap_or("?"))
                })
                .collect();
            if issues.is_empty() { "OperationOutcome without issues".to_string() } else { issues.join("; ") }
        }
        _ if body.trim().is_empty() => "no body".to_string(),
        _ => body.chars().filter(|c| !c.is_control()).take(300).collect(),
    };
    text.chars().take(1000).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fhir_ids_are_checked_before_they_reach_a_path() {
        assert!(is_fhir_id("a1b2-c3.d4"));
        assert!(!is_fhir_id(""));
        assert!(!is_fhir_id("../admin"));
        assert!(!is_fhir_id("x/y"));
        assert!(!is_fhir_id(&"a".repeat(65)));
    }

    #[test]
    fn outcomes_are_summarised() {
        let body =
            r#"{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"business-rule","diagnostics":"already graded"}]}"#;
        assert_eq!(outcome_summary(body), "error business-rule: already graded");
        assert_eq!(outcome_summary(""), "no body");
        assert_eq!(outcome_summary("<html>oops</html>"), "<html>oops</html>");
    }
}
