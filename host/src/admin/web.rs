//! The web verbs: `users passwd` (an argon2id password for `web:<name>`), `tokens create |
//! list | revoke` (API tokens, shown once, kept hashed) and `web login-link` (a one-time
//! link). The secrets are made by `web::auth`; the rows are `db::central::web`'s.

use super::api::{Id, LoginLinkCreate, LoginLinkCreated, PasswordSet, TokenCreate, TokenCreated};
use super::{Admin, AdminError, Reply, parse, to_value, unknown_verb};
use crate::db::central::{people, web as web_db};
use crate::web::auth::{passwords, secrets};

/// The default lifetime of a login link, in minutes.
pub const DEFAULT_LINK_MINUTES: u32 = 15;

/// The longest lifetime of a login link: a week.
pub const MAX_LINK_MINUTES: u32 = 7 * 24 * 60;

/// `alice` or `web:alice` → `web:alice`; another channel's id is refused.
fn web_user(name: &str) -> Result<String, AdminError> {
    let name = name.trim();
    let handle = name.strip_prefix("web:").unwrap_or(name);
    if handle.is_empty() || handle.contains(':') || handle.chars().any(char::is_whitespace) {
        return Err(AdminError::Invalid(format!(
            "{name:?} is not a web user name: give NAME (for web:NAME), without spaces or ':'"
        )));
    }
    let user_id = format!("web:{handle}");
    people::check_user_id(&user_id)?;
    Ok(user_id)
}

/// `alice` → `web:alice`; `cli:alice` stays itself.
fn any_user(name: &str) -> Result<String, AdminError> {
    let name = name.trim();
    if name.contains(':') {
        people::check_user_id(name)?;
        Ok(name.to_owned())
    } else {
        web_user(name)
    }
}

/// `users passwd`.
pub(super) async fn passwd(admin: &Admin, body: serde_json::Value) -> Reply {
    let request: PasswordSet = parse(body)?;
    let user_id = web_user(&request.user)?;
    let password = request.password;
    let hash = tokio::task::spawn_blocking(move || passwords::hash(&password))
        .await
        .map_err(|e| AdminError::Internal(format!("the password hasher failed: {e}")))?
        .map_err(|e| match e {
            passwords::PasswordError::TooShort(_) | passwords::PasswordError::TooLong => {
                AdminError::Invalid(e.to_string())
            }
            passwords::PasswordError::Hash(_) => AdminError::Internal(e.to_string()),
        })?;
    let now = protocol::time::now_ms();
    let id = user_id.clone();
    // A new password ends the user's sessions: whoever knew the old one is logged out.
    let ended = admin
        .db(move |tx| {
            people::ensure_user(tx, &id, None)?;
            web_db::set_password(tx, &id, &hash, now)?;
            web_db::delete_sessions_of(tx, &id)
        })
        .await?;
    tracing::info!(user = %user_id, sessions_ended = ended, "web password set");
    Ok(serde_json::json!({ "user_id": user_id, "sessions_ended": ended }))
}

/// `tokens create | list | revoke`.
pub(super) async fn tokens(admin: &Admin, verb: &str, body: serde_json::Value) -> Reply {
    match verb {
        "create" => {
            let request: TokenCreate = parse(body)?;
            let user_id = any_user(&request.user)?;
            let secret = secrets::generate(secrets::TOKEN_PREFIX)
                .map_err(|e| AdminError::Internal(e.to_string()))?;
            let hash = secrets::hash(&secret);
            let now = protocol::time::now_ms();
            let scope = request.scope;
            let token = admin
                .db(move |tx| web_db::create_token(tx, &user_id, scope, &hash, now))
                .await?;
            tracing::info!(token = %token.id, user = %token.user_id, %scope, "API token created");
            to_value(&TokenCreated { token, secret })
        }
        "list" => {
            let tokens = admin.db(|tx| web_db::list_tokens(tx)).await?;
            let listed: Vec<serde_json::Value> = tokens
                .iter()
                .map(|token| {
                    let mut value = to_value(token)?;
                    if let serde_json::Value::Object(fields) = &mut value {
                        let at = |ms: Option<i64>| ms.map(rfc3339);
                        fields.insert("created".into(), rfc3339(token.created_at).into());
                        fields.insert("last_used".into(), at(token.last_used_at).into());
                        fields.insert("revoked".into(), at(token.revoked_at).into());
                    }
                    Ok(value)
                })
                .collect::<Result<_, AdminError>>()?;
            to_value(&listed)
        }
        "revoke" => {
            let request: Id = parse(body)?;
            let now = protocol::time::now_ms();
            let token = admin
                .db(move |tx| web_db::revoke_token(tx, &request.id, now))
                .await?;
            tracing::info!(token = %token.id, "API token revoked");
            to_value(&token)
        }
        _ => Err(unknown_verb("tokens", verb)),
    }
}

/// `web login-link`.
pub(super) async fn handle(admin: &Admin, verb: &str, body: serde_json::Value) -> Reply {
    match verb {
        "login-link" => {
            let request: LoginLinkCreate = parse(body)?;
            let Some(base_url) = admin.web_base_url.clone() else {
                return Err(AdminError::Invalid(
                    "the web server is off (web_listen = off): a login link would lead nowhere"
                        .into(),
                ));
            };
            let user_id = web_user(&request.user)?;
            let minutes = request.ttl_minutes.unwrap_or(DEFAULT_LINK_MINUTES);
            if minutes == 0 || minutes > MAX_LINK_MINUTES {
                return Err(AdminError::Invalid(format!(
                    "--ttl-minutes must be 1 to {MAX_LINK_MINUTES} (a week), not {minutes}"
                )));
            }
            let secret = secrets::generate(secrets::LINK_PREFIX)
                .map_err(|e| AdminError::Internal(e.to_string()))?;
            let hash = secrets::hash(&secret);
            let now = protocol::time::now_ms();
            let expires_at = now + i64::from(minutes) * 60_000;
            let id = user_id.clone();
            admin
                .db(move |tx| {
                    people::ensure_user(tx, &id, None)?;
                    web_db::create_login_link(tx, &id, &hash, now, expires_at)
                })
                .await?;
            tracing::info!(user = %user_id, minutes, "login link created");
            to_value(&LoginLinkCreated {
                user_id,
                url: format!("{base_url}/login/link/{secret}"),
                expires_at,
            })
        }
        _ => Err(unknown_verb("web", verb)),
    }
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || ms.to_string(),
        |at| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_map_to_web_users() {
        assert_eq!(web_user("alice").unwrap(), "web:alice");
        assert_eq!(web_user(" web:alice ").unwrap(), "web:alice");
        assert_eq!(any_user("cli:alice").unwrap(), "cli:alice");
        assert_eq!(any_user("alice").unwrap(), "web:alice");
        for bad in ["", "web:", "cli:alice", "a b", "web:a:b"] {
            assert!(web_user(bad).is_err(), "{bad:?}");
        }
    }
}
