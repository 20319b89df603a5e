//! Web users' credentials (migration 007): password hashes ([`set_password`]), browser
//! sessions ([`WebSession`]), API tokens ([`ApiToken`], with their [`Scope`]) and one-time
//! login links ([`consume_login_link`]).
//!
//! This file stores and finds what it is given: hashes are made by `web::auth`. Lookups are
//! by the hash of the presented secret, so a secret is never compared in SQL in the clear.

use super::{DbError, constraint, text_enum};
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

text_enum!(
    /// What an API token may do.
    Scope {
        /// Chat as its user: web chat and `/v1/chat/completions`.
        Chat => "chat",
        /// Everything its user's roles allow, the admin API included.
        Admin => "admin",
    }
);

/// The stored password hash (a PHC string) of a user, if one is set.
pub fn password_hash(conn: &Connection, user_id: &str) -> Result<Option<String>, DbError> {
    Ok(conn
        .query_row(
            "SELECT hash FROM web_passwords WHERE user_id = ?1",
            [user_id],
            |row| row.get(0),
        )
        .optional()?)
}

/// Sets (or replaces) a user's password hash. The user must exist.
pub fn set_password(
    conn: &Connection,
    user_id: &str,
    hash: &str,
    now_ms: i64,
) -> Result<(), DbError> {
    super::people::user(conn, user_id)?;
    conn.execute(
        "INSERT INTO web_passwords (user_id, hash, updated_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT (user_id) DO UPDATE SET hash = excluded.hash, updated_at = excluded.updated_at",
        params![user_id, hash, now_ms],
    )?;
    Ok(())
}

/// Ends every session of a user (after a password change); returns how many there were.
pub fn delete_sessions_of(conn: &Connection, user_id: &str) -> Result<usize, DbError> {
    Ok(conn.execute("DELETE FROM web_sessions WHERE user_id = ?1", [user_id])?)
}

/// A logged-in browser, found by the hash of its cookie.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebSession {
    pub id_hash: String,
    pub user_id: String,
    pub csrf_token: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub last_seen_at: i64,
}

fn session_from(row: &Row<'_>) -> rusqlite::Result<WebSession> {
    Ok(WebSession {
        id_hash: row.get(0)?,
        user_id: row.get(1)?,
        csrf_token: row.get(2)?,
        created_at: row.get(3)?,
        expires_at: row.get(4)?,
        last_seen_at: row.get(5)?,
    })
}

/// Records a new session; also drops every expired one, so the table does not grow.
pub fn create_session(conn: &Connection, session: &WebSession) -> Result<(), DbError> {
    conn.execute(
        "DELETE FROM web_sessions WHERE expires_at <= ?1",
        [session.created_at],
    )?;
    conn.execute(
        "INSERT INTO web_sessions (id_hash, user_id, csrf_token, created_at, expires_at, last_seen_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            session.id_hash,
            session.user_id,
            session.csrf_token,
            session.created_at,
            session.expires_at,
            session.last_seen_at
        ],
    )
    .map_err(|e| constraint(e, || "that session id exists already".to_owned()))?;
    Ok(())
}

/// The live (unexpired at `now_ms`) session with this id hash. Marks it seen, at most once
/// a minute, so a busy page does not write on every request.
pub fn live_session(
    conn: &Connection,
    id_hash: &str,
    now_ms: i64,
) -> Result<Option<WebSession>, DbError> {
    let session = conn
        .query_row(
            "SELECT id_hash, user_id, csrf_token, created_at, expires_at, last_seen_at \
             FROM web_sessions WHERE id_hash = ?1 AND expires_at > ?2",
            params![id_hash, now_ms],
            session_from,
        )
        .optional()?;
    if let Some(session) = &session
        && session.last_seen_at < now_ms - 60_000
    {
        conn.execute(
            "UPDATE web_sessions SET last_seen_at = ?2 WHERE id_hash = ?1",
            params![id_hash, now_ms],
        )?;
    }
    Ok(session)
}

/// Ends a session; `Ok(false)` when there was none.
pub fn delete_session(conn: &Connection, id_hash: &str) -> Result<bool, DbError> {
    Ok(conn.execute("DELETE FROM web_sessions WHERE id_hash = ?1", [id_hash])? > 0)
}

/// An API token as listed: never its hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiToken {
    pub id: String,
    pub user_id: String,
    pub scope: Scope,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

const TOKEN_COLUMNS: &str = "id, user_id, scope, created_at, last_used_at, revoked_at";

fn token_from(row: &Row<'_>) -> rusqlite::Result<ApiToken> {
    Ok(ApiToken {
        id: row.get(0)?,
        user_id: row.get(1)?,
        scope: row.get(2)?,
        created_at: row.get(3)?,
        last_used_at: row.get(4)?,
        revoked_at: row.get(5)?,
    })
}

/// Records a new token (by its hash) for an existing user.
pub fn create_token(
    conn: &Connection,
    user_id: &str,
    scope: Scope,
    token_hash: &str,
    now_ms: i64,
) -> Result<ApiToken, DbError> {
    super::people::user(conn, user_id)?;
    let id = super::short_id("tok");
    conn.execute(
        "INSERT INTO api_tokens (id, user_id, scope, token_hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![id, user_id, scope, token_hash, now_ms],
    )
    .map_err(|e| constraint(e, || "that token exists already".to_owned()))?;
    Ok(ApiToken {
        id,
        user_id: user_id.to_owned(),
        scope,
        created_at: now_ms,
        last_used_at: None,
        revoked_at: None,
    })
}

/// The unrevoked token with this hash, marked used (at most once a minute).
pub fn live_token(
    conn: &Connection,
    token_hash: &str,
    now_ms: i64,
) -> Result<Option<ApiToken>, DbError> {
    let token = conn
        .query_row(
            &format!(
                "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE token_hash = ?1 AND revoked_at IS NULL"
            ),
            [token_hash],
            token_from,
        )
        .optional()?;
    if let Some(token) = &token
        && token.last_used_at.is_none_or(|at| at < now_ms - 60_000)
    {
        conn.execute(
            "UPDATE api_tokens SET last_used_at = ?2 WHERE id = ?1",
            params![token.id, now_ms],
        )?;
    }
    Ok(token)
}

/// Every token, revoked ones included, oldest first.
pub fn list_tokens(conn: &Connection) -> Result<Vec<ApiToken>, DbError> {
    let mut statement = conn.prepare(&format!(
        "SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY created_at, id"
    ))?;
    let tokens = statement
        .query_map([], token_from)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(tokens)
}

/// Revokes a token; revoking a revoked one is a conflict, an unknown id "not found".
pub fn revoke_token(conn: &Connection, id: &str, now_ms: i64) -> Result<ApiToken, DbError> {
    let token = conn
        .query_row(
            &format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = ?1"),
            [id],
            token_from,
        )
        .optional()?
        .ok_or_else(|| DbError::NotFound {
            what: "token",
            id: id.to_owned(),
        })?;
    if token.revoked_at.is_some() {
        return Err(DbError::Conflict(format!("token {id} is already revoked")));
    }
    conn.execute(
        "UPDATE api_tokens SET revoked_at = ?2 WHERE id = ?1",
        params![id, now_ms],
    )?;
    Ok(ApiToken {
        revoked_at: Some(now_ms),
        ..token
    })
}

/// Records a one-time login link (by its hash) for an existing user.
pub fn create_login_link(
    conn: &Connection,
    user_id: &str,
    token_hash: &str,
    now_ms: i64,
    expires_at: i64,
) -> Result<(), DbError> {
    super::people::user(conn, user_id)?;
    conn.execute("DELETE FROM login_links WHERE expires_at <= ?1", [now_ms])?;
    conn.execute(
        "INSERT INTO login_links (token_hash, user_id, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
        params![token_hash, user_id, now_ms, expires_at],
    )
    .map_err(|e| constraint(e, || "that login link exists already".to_owned()))?;
    Ok(())
}

/// What became of a presented login link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkUse {
    /// It was good and is now used up: log this user in.
    LoggedIn(String),
    /// No such link.
    Unknown,
    /// It was used before.
    Used,
    /// It expired unused.
    Expired,
}

/// Uses up a login link: the first use logs in, every later one is [`LinkUse::Used`].
pub fn consume_login_link(
    conn: &Connection,
    token_hash: &str,
    now_ms: i64,
) -> Result<LinkUse, DbError> {
    let row: Option<(String, i64, Option<i64>)> = conn
        .query_row(
            "SELECT user_id, expires_at, used_at FROM login_links WHERE token_hash = ?1",
            [token_hash],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .optional()?;
    let Some((user_id, expires_at, used_at)) = row else {
        return Ok(LinkUse::Unknown);
    };
    if used_at.is_some() {
        return Ok(LinkUse::Used);
    }
    if expires_at <= now_ms {
        return Ok(LinkUse::Expired);
    }
    // The `used_at IS NULL` guard keeps two racing uses from both logging in.
    let updated = conn.execute(
        "UPDATE login_links SET used_at = ?2 WHERE token_hash = ?1 AND used_at IS NULL",
        params![token_hash, now_ms],
    )?;
    Ok(if updated == 1 {
        LinkUse::LoggedIn(user_id)
    } else {
        LinkUse::Used
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::central::open;
    use crate::db::central::people::create_user;

    fn db() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir.path().join("c.db")).unwrap();
        create_user(&conn, "web:alice", None, None).unwrap();
        (dir, conn)
    }

    #[test]
    fn passwords_are_set_replaced_and_need_a_user() {
        let (_dir, conn) = db();
        assert_eq!(password_hash(&conn, "web:alice").unwrap(), None);
        set_password(&conn, "web:alice", "h1", 1).unwrap();
        set_password(&conn, "web:alice", "h2", 2).unwrap();
        assert_eq!(
            password_hash(&conn, "web:alice").unwrap().as_deref(),
            Some("h2")
        );
        assert!(matches!(
            set_password(&conn, "web:nobody", "h", 1),
            Err(DbError::NotFound { .. })
        ));
    }

    #[test]
    fn sessions_expire_and_end() {
        let (_dir, conn) = db();
        let session = WebSession {
            id_hash: "s1".into(),
            user_id: "web:alice".into(),
            csrf_token: "c".into(),
            created_at: 1_000,
            expires_at: 100_000,
            last_seen_at: 1_000,
        };
        create_session(&conn, &session).unwrap();
        assert_eq!(
            live_session(&conn, "s1", 2_000).unwrap(),
            Some(session.clone())
        );
        assert_eq!(live_session(&conn, "other", 2_000).unwrap(), None);
        assert_eq!(live_session(&conn, "s1", 100_000).unwrap(), None);
        // Seen again after a minute: last_seen_at moves.
        let seen = live_session(&conn, "s1", 70_000).unwrap().unwrap();
        assert_eq!(seen.last_seen_at, 1_000);
        assert_eq!(
            live_session(&conn, "s1", 70_001)
                .unwrap()
                .unwrap()
                .last_seen_at,
            70_000
        );
        assert!(delete_session(&conn, "s1").unwrap());
        assert!(!delete_session(&conn, "s1").unwrap());
        assert_eq!(live_session(&conn, "s1", 2_000).unwrap(), None);
        for id_hash in ["s2", "s3"] {
            let session = WebSession {
                id_hash: id_hash.into(),
                ..session.clone()
            };
            create_session(&conn, &session).unwrap();
        }
        assert_eq!(delete_sessions_of(&conn, "web:alice").unwrap(), 2);
        assert_eq!(live_session(&conn, "s2", 2_000).unwrap(), None);
    }

    #[test]
    fn revoked_tokens_are_not_live() {
        let (_dir, conn) = db();
        let token = create_token(&conn, "web:alice", Scope::Chat, "t1", 5).unwrap();
        assert!(token.id.starts_with("tok-"));
        let live = live_token(&conn, "t1", 10).unwrap().unwrap();
        assert_eq!(
            (live.id.as_str(), live.scope),
            (token.id.as_str(), Scope::Chat)
        );
        assert_eq!(list_tokens(&conn).unwrap()[0].last_used_at, Some(10));
        assert_eq!(live_token(&conn, "t2", 10).unwrap(), None);
        revoke_token(&conn, &token.id, 20).unwrap();
        assert_eq!(live_token(&conn, "t1", 30).unwrap(), None);
        assert!(matches!(
            revoke_token(&conn, &token.id, 40),
            Err(DbError::Conflict(_))
        ));
        assert!(matches!(
            revoke_token(&conn, "tok-nope", 40),
            Err(DbError::NotFound { .. })
        ));
        assert!(matches!(
            create_token(&conn, "web:nobody", Scope::Admin, "t3", 5),
            Err(DbError::NotFound { .. })
        ));
    }

    #[test]
    fn login_links_work_once_and_expire() {
        let (_dir, conn) = db();
        create_login_link(&conn, "web:alice", "l1", 0, 1_000).unwrap();
        create_login_link(&conn, "web:alice", "l2", 0, 1_000).unwrap();
        let check = |hash: &str, now: i64, want: LinkUse| {
            assert_eq!(
                consume_login_link(&conn, hash, now).unwrap(),
                want,
                "{hash} at {now}"
            );
        };
        check("l1", 500, LinkUse::LoggedIn("web:alice".into()));
        check("l1", 600, LinkUse::Used);
        check("l2", 1_000, LinkUse::Expired);
        check("nope", 10, LinkUse::Unknown);
    }
}
