//! Where the database lives: `sqlite://PATH` (one machine; the default is the data
//! directory's `drscreen.sqlite3`) or `postgres://user:password@host:port/db` (replicas).
//! Parsed once at start-up; its `Display` never shows the password, so it can be logged.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// A parsed `--database-url`. In a config file it is a string; written back (settings
/// shown, config round trips) its password is masked.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DatabaseUrl {
    Sqlite(PathBuf),
    /// The URL as given (the driver parses it; checked here for scheme and host).
    Postgres(String),
}

impl FromStr for DatabaseUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(path) = s.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err("sqlite:// needs a file path, e.g. sqlite:///var/lib/drscreen/drscreen.sqlite3".into());
            }
            return Ok(Self::Sqlite(PathBuf::from(path)));
        }
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            let config: postgres::Config = s.parse().map_err(|e| format!("invalid PostgreSQL URL: {e}"))?;
            if config.get_hosts().is_empty() {
                return Err("the PostgreSQL URL names no host".into());
            }
            if config.get_dbname().is_none() {
                return Err("the PostgreSQL URL names no database (postgres://user:pass@host:port/DB)".into());
            }
            return Ok(Self::Postgres(s.to_string()));
        }
        Err("expected sqlite://PATH or postgres://user:password@host:port/database".into())
    }
}

impl TryFrom<String> for DatabaseUrl {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<DatabaseUrl> for String {
    fn from(u: DatabaseUrl) -> String {
        u.to_string()
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
            Self::Postgres(url) => f.write_str(&redact_password(url)),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// `postgres://user:secret@host/db` -> `postgres://user:***@host/db`.
fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            let masked = if userinfo.contains(':') { format!("{user}:***") } else { user.to_string() };
            // The query string may carry `password=` too.
            let tail = match tail.split_once('?') {
                Some((path, query)) => format!(
                    "{path}?{}",
                    query.split('&').map(|kv| if kv.starts_with("password=") { "password=***" } else { kv }).collect::<Vec<_>>().join("&")
                ),
                None => tail.to_string(),
            };
            format!("{scheme}://{masked}@{host}{tail}")
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_never_show_the_password() {
        let pg: DatabaseUrl = "postgres://drs:s3cret@db.example:5432/drscreen".parse().unwrap();
        assert_eq!(pg.to_string(), "postgres://drs:***@db.example:5432/drscreen");
        assert_eq!(format!("{pg:?}"), "postgres://drs:***@db.example:5432/drscreen");
        let q: DatabaseUrl = "postgres://drs@db/x?password=s3cret&connect_timeout=3".parse().unwrap();
        assert_eq!(q.to_string(), "postgres://drs@db/x?password=***&connect_timeout=3");
        assert_eq!("sqlite:///tmp/x.db".parse::<DatabaseUrl>().unwrap(), DatabaseUrl::Sqlite("/tmp/x.db".into()));
        assert!("mysql://x".parse::<DatabaseUrl>().unwrap_err().contains("expected"));
        assert!("sqlite://".parse::<DatabaseUrl>().is_err());
        assert!("postgres://u:p@host".parse::<DatabaseUrl>().unwrap_err().contains("no database"));
    }
}
