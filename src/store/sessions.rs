//! Review-page sessions: a clinician's API key is exchanged once for a random session
//! token (only its SHA-256 is stored) and a CSRF token. A session ends on sign-out,
//! after the configured idle time, or as soon as its key is revoked.

use sha2::Digest;

use super::sql::args;
use super::{KeyIdentity, Role, Store, StoreError, append_audit, now_rfc3339, random_hex};

/// A live session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub key: KeyIdentity,
    pub csrf: String,
}

fn token_hash(token: &str) -> String {
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

impl Store {
    /// Opens a session for an authenticated key; returns (session token, CSRF token).
    pub fn create_session(&self, key: &KeyIdentity) -> Result<(String, String), StoreError> {
        let token = random_hex(32)?;
        let csrf = random_hex(32)?;
        let now = now_rfc3339();
        self.db.write(|tx| {
            tx.execute(
                "INSERT INTO sessions (token_hash, key_id, csrf, created_at, last_seen_unix) VALUES (?1, ?2, ?3, ?4, ?5)",
                args![token_hash(&token), &key.id, &csrf, &now, unix_now()],
            )?;
            append_audit(tx, &now, &key.id, "session.login", None, Some(key.role.as_str()))
        })?;
        Ok((token, csrf))
    }

    /// Looks a session up and touches it; `None` when unknown, idle for longer than
    /// `idle_secs` (the row is then removed) or its key was revoked.
    pub fn session(&self, token: &str, idle_secs: u64) -> Result<Option<Session>, StoreError> {
        let hash = token_hash(token);
        self.db.write(|tx| {
            let row = tx.query_opt(
                "SELECT s.key_id, s.csrf, s.last_seen_unix, k.role, k.revoked, k.name FROM sessions s JOIN api_keys k ON k.id = s.key_id
                 WHERE s.token_hash = ?1",
                args![&hash],
            )?;
            let Some(row) = row else {
                return Ok(None);
            };
            let (key_id, csrf, last_seen, role, revoked, name): (String, String, i64, String, bool, Option<String>) =
                (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?);
            let now = unix_now();
            let idle = u64::try_from(now.saturating_sub(last_seen)).unwrap_or(0);
            if revoked || idle > idle_secs {
                // Two replicas may expire the same session at once: only the one that
                // removed the row records the event.
                if tx.execute("DELETE FROM sessions WHERE token_hash = ?1", args![&hash])? > 0 {
                    let why = if revoked { "key revoked" } else { "idle timeout" };
                    append_audit(tx, &now_rfc3339(), &key_id, "session.expired", None, Some(why))?;
                }
                return Ok(None);
            }
            tx.execute("UPDATE sessions SET last_seen_unix = ?2 WHERE token_hash = ?1", args![&hash, now])?;
            let role = Role::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("unknown role {role}")))?;
            Ok(Some(Session { key: KeyIdentity { id: key_id, role, name }, csrf }))
        })
    }

    /// Ends a session (sign-out).
    pub fn end_session(&self, token: &str) -> Result<(), StoreError> {
        let hash = token_hash(token);
        self.db.write(|tx| {
            let row = tx.query_opt("DELETE FROM sessions WHERE token_hash = ?1 RETURNING key_id", args![&hash])?;
            if let Some(row) = row {
                append_audit(tx, &now_rfc3339(), &row.get::<String>(0)?, "session.logout", None, None)?;
            }
            Ok(())
        })
    }

    /// Revokes an API key (its sessions end at their next request).
    pub fn revoke_key(&self, id: &str, actor: &str) -> Result<bool, StoreError> {
        self.db.write(|tx| {
            let changed = tx.execute("UPDATE api_keys SET revoked = 1 WHERE id = ?1 AND revoked = 0", args![id])?;
            if changed > 0 {
                append_audit(tx, &now_rfc3339(), actor, "key.revoke", Some(id), None)?;
            }
            Ok(changed > 0)
        })
    }
}
