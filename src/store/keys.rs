//! API keys' display names (issue 16, "who and what"): a key may carry a person's name
//! ("Dr Kari Nordmann") so the review pages, the review history, the audit log page and
//! the JSON reviews say who acted instead of a bare key id. The name is checked once, at
//! creation ([`KeyName::parse`]), like the clinic-supplied references: it is shown to
//! clinicians and printed on terminals, so control characters and bidirectional
//! overrides are refused. Also the key listing behind `drscreen keys list`.

use std::collections::{BTreeSet, HashMap};

use sha2::Digest;

use super::sql::{Tx, args};
use super::{Role, Store, StoreError, append_audit, now_rfc3339, random_hex};
use crate::review::Review;

/// Longest key display name accepted, in characters.
pub const MAX_KEY_NAME_CHARS: usize = 100;

/// A checked key display name: trimmed, non-empty, at most [`MAX_KEY_NAME_CHARS`]
/// characters, no control characters or bidirectional overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyName(String);

impl KeyName {
    /// Checks a display name; the error says what is wrong, in words.
    pub fn parse(text: &str) -> Result<Self, String> {
        let name = text.trim();
        if name.is_empty() {
            return Err("the key name is empty".into());
        }
        let chars = name.chars().count();
        if chars > MAX_KEY_NAME_CHARS {
            return Err(format!("the key name is {chars} characters; the limit is {MAX_KEY_NAME_CHARS}"));
        }
        // The same characters `service::check_reference` refuses in patient and exam
        // references: C0/C1 controls (terminal escapes) and the ones that reorder text.
        if let Some(c) = name.chars().find(|c| c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')) {
            return Err(format!("the key name contains the control character U+{:04X}", u32::from(c)));
        }
        Ok(Self(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One API key as `drscreen keys list` shows it (never its secret or hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub id: String,
    pub role: String,
    pub name: Option<String>,
    pub created_at: String,
    pub revoked: bool,
}

/// The display name of each of `ids` that has one (one lookup per distinct id).
pub(crate) fn names_of<'a>(tx: &mut dyn Tx, ids: impl IntoIterator<Item = &'a str>) -> Result<HashMap<String, String>, StoreError> {
    let mut out = HashMap::new();
    for id in ids.into_iter().collect::<BTreeSet<_>>() {
        if let Some(row) = tx.query_opt("SELECT name FROM api_keys WHERE id = ?1 AND name IS NOT NULL", args![id])? {
            out.insert(id.to_string(), row.get(0)?);
        }
    }
    Ok(out)
}

/// Sets each review's `reviewer_name` from its reviewer's key.
pub(crate) fn fill_reviewer_names(tx: &mut dyn Tx, reviews: &mut [Review]) -> Result<(), StoreError> {
    let names = names_of(tx, reviews.iter().map(|r| r.reviewer.as_str()))?;
    for r in reviews {
        r.reviewer_name = names.get(&r.reviewer).cloned();
    }
    Ok(())
}

impl Store {
    /// Creates an API key with an optional display name; returns (key id, the full
    /// secret key, shown once). The audit event names the key, not its secret.
    pub fn create_named_key(&self, role: Role, name: Option<&KeyName>, actor: &str) -> Result<(String, String), StoreError> {
        let id = random_hex(6)?;
        let secret = format!("drs_{id}_{}", random_hex(24)?);
        let hash = hex::encode(sha2::Sha256::digest(secret.as_bytes()));
        let now = now_rfc3339();
        let detail = match name {
            Some(n) => format!("{}, name {}", role.as_str(), n.as_str()),
            None => role.as_str().to_string(),
        };
        self.db.write(|tx| {
            tx.execute(
                "INSERT INTO api_keys (id, role, hash, created_at, revoked, name) VALUES (?1, ?2, ?3, ?4, 0, ?5)",
                args![&id, role.as_str(), &hash, &now, name.map(KeyName::as_str)],
            )?;
            append_audit(tx, &now, actor, "key.create", Some(&id), Some(&detail))
        })?;
        Ok((id, secret))
    }

    /// Every API key, oldest first.
    pub fn list_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        let rows = self.db.read(|tx| tx.query("SELECT id, role, name, created_at, revoked FROM api_keys ORDER BY created_at, id", &[]))?;
        rows.iter()
            .map(|r| Ok(KeyRecord { id: r.get(0)?, role: r.get(1)?, name: r.get(2)?, created_at: r.get(3)?, revoked: r.get(4)? }))
            .collect()
    }

    /// The display names of the given key ids (those that have one).
    pub fn key_names<'a>(&self, ids: impl IntoIterator<Item = &'a str>) -> Result<HashMap<String, String>, StoreError> {
        self.db.read(|tx| names_of(tx, ids))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names_are_checked() {
        assert_eq!(KeyName::parse("  Dr Kari Nordmann ").map(|n| n.as_str().to_string()), Ok("Dr Kari Nordmann".into()));
        assert!(KeyName::parse("   ").is_err());
        assert!(KeyName::parse(&"x".repeat(MAX_KEY_NAME_CHARS + 1)).unwrap_err().contains("limit is 100"));
        assert!(KeyName::parse(&"é".repeat(MAX_KEY_NAME_CHARS)).is_ok(), "the limit counts characters, not bytes");
        assert!(KeyName::parse("Dr \u{1b}[31mX").unwrap_err().contains("U+001B"));
        assert!(KeyName::parse("Dr \u{202E}X").unwrap_err().contains("U+202E"));
    }

    #[test]
    fn named_keys_are_stored_listed_and_verified_with_their_name() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let name = KeyName::parse("Dr Kari Nordmann").unwrap();
        let (id, secret) = store.create_named_key(Role::Clinician, Some(&name), "test").unwrap();
        let (plain, _) = store.create_key(Role::Device, "test").unwrap();
        let who = store.verify_key(&secret).unwrap().unwrap();
        assert_eq!(who.name.as_deref(), Some("Dr Kari Nordmann"));
        let keys = store.list_keys().unwrap();
        let named = keys.iter().find(|k| k.id == id).unwrap();
        assert_eq!((named.role.as_str(), named.name.as_deref()), ("clinician", Some("Dr Kari Nordmann")));
        assert_eq!(keys.iter().find(|k| k.id == plain).unwrap().name, None);
        let names = store.key_names([id.as_str(), plain.as_str(), "nope"]).unwrap();
        assert_eq!(names.len(), 1);
        assert_eq!(names.get(&id).map(String::as_str), Some("Dr Kari Nordmann"));
    }
}
