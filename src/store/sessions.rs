//! Review-page sessions: a clinician's API key is exchanged once for a random session
//! token (only its SHA-256 is stored) and a CSRF token. A session ends on sign-out,
//! after the configured idle time, or as soon as its key is revoked.

use rusqlite::{OptionalExtension, params};
use sha2::Digest;

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
        let mut conn = self.conn()?;
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO sessions (token_hash, key_id, csrf, created_at, last_seen_unix) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![token_hash(&token), key.id, csrf, now, unix_now()],
        )?;
        append_audit(&tx, &now, &key.id, "session.login", None, Some(key.role.as_str()))?;
        tx.commit()?;
        Ok((token, csrf))
    }

    /// Looks a session up and touches it; `None` when unknown, idle for longer than
    /// `idle_secs` (the row is then removed) or its key was revoked.
    pub fn session(&self, token: &str, idle_secs: u64) -> Result<Option<Session>, StoreError> {
        let hash = token_hash(token);
        let conn = self.conn()?;
        let row: Option<(String, String, i64, String, bool, Option<String>)> = conn
            .query_row(
                "SELECT s.key_id, s.csrf, s.last_seen_unix, k.role, k.revoked, k.name FROM sessions s JOIN api_keys k ON k.id = s.key_id
                 WHERE s.token_hash = ?1",
                [&hash],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)),
            )
            .optional()?;
        let Some((key_id, csrf, last_seen, role, revoked, name)) = row else {
            return Ok(None);
        };
        let now = unix_now();
        let idle = u64::try_from(now.saturating_sub(last_seen)).unwrap_or(0);
        if revoked || idle > idle_secs {
            conn.execute("DELETE FROM sessions WHERE token_hash = ?1", [&hash])?;
            let why = if revoked { "key revoked" } else { "idle timeout" };
            append_audit(&conn, &now_rfc3339(), &key_id, "session.expired", None, Some(why))?;
            return Ok(None);
        }
        conn.execute("UPDATE sessions SET last_seen_unix = ?2 WHERE token_hash = ?1", params![hash, now])?;
        let role = Role::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("unknown role {role}")))?;
        Ok(Some(Session { key: KeyIdentity { id: key_id, role, name }, csrf }))
    }

    /// Ends a session (sign-out).
    pub fn end_session(&self, token: &str) -> Result<(), StoreError> {
        let conn = self.conn()?;
        let key_id: Option<String> =
            conn.query_row("SELECT key_id FROM sessions WHERE token_hash = ?1", [token_hash(token)], |r| r.get(0)).optional()?;
        if let Some(key_id) = key_id {
            conn.execute("DELETE FROM sessions WHERE token_hash = ?1", [token_hash(token)])?;
            append_audit(&conn, &now_rfc3339(), &key_id, "session.logout", None, None)?;
        }
        Ok(())
    }

    /// Revokes an API key (its sessions end at their next request).
    pub fn revoke_key(&self, id: &str, actor: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction()?;
        let changed = tx.execute("UPDATE api_keys SET revoked = 1 WHERE id = ?1 AND revoked = 0", [id])?;
        if changed > 0 {
            append_audit(&tx, &now_rfc3339(), actor, "key.revoke", Some(id), None)?;
        }
        tx.commit()?;
        Ok(changed > 0)
    }
}
