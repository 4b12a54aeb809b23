//! The review pages as a signed-in user sees them, without a browser: a cookie-carrying
//! client that signs in through the login form (double-submit CSRF) and keeps the session.

use reqwest::StatusCode;

/// A cookie-carrying client for the pages (redirects not followed).
pub struct Pages {
    pub base: String,
    pub client: reqwest::blocking::Client,
    pub cookie: String,
}

impl Pages {
    pub fn sign_in(base: &str, key: &str) -> Self {
        let client = reqwest::blocking::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let login = client.get(format!("{base}/review/login")).send().unwrap();
        let csrf_cookie = login
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
            .collect::<Vec<_>>()
            .join("; ");
        let html = login.text().unwrap();
        let marker = r#"name="csrf" value=""#;
        let token = html[html.find(marker).unwrap() + marker.len()..].split('"').next().unwrap().to_string();
        let r = client
            .post(format!("{base}/review/login"))
            .header("cookie", &csrf_cookie)
            .form(&[("csrf", token.as_str()), ("key", key)])
            .send()
            .unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let session = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
            .find(|c| c.starts_with("drs_session=") && c.len() > "drs_session=".len())
            .expect("session cookie");
        Self { base: base.into(), client, cookie: session }
    }

    pub fn get(&self, path: &str) -> (StatusCode, String) {
        let r = self.client.get(format!("{}{path}", self.base)).header("cookie", &self.cookie).send().unwrap();
        (r.status(), r.text().unwrap())
    }
}

impl Pages {
    /// The session's CSRF token, read from a page's hidden form field.
    pub fn csrf(html: &str) -> String {
        let marker = r#"name="csrf" value=""#;
        html[html.find(marker).expect("a form with a csrf field") + marker.len()..].split('"').next().unwrap().to_string()
    }

    /// Posts a form as the signed-in user.
    pub fn post_form(&self, path: &str, form: &[(&str, &str)]) -> (StatusCode, String) {
        let r = self.client.post(format!("{}{path}", self.base)).header("cookie", &self.cookie).form(form).send().unwrap();
        (r.status(), r.text().unwrap())
    }
}
