//! Logging the bot in ([`log_in`]): with an access token (checked with `/account/whoami`)
//! or with a password (`m.login.password`), reusing the device of the last password login
//! ([`StoredLogin`]) so a restart does not add a device each time and the homeserver's
//! per-device transaction ids still dedup a resend.
//!
//! A refusal is [`LoginError::Refused`], naming the variable to check; anything else is
//! [`LoginError::Retry`].

use super::api::{Api, ApiError};
use super::mapping;
use super::state::{LOGIN_KEY, State, StoredLogin};
use crate::config::ApiKey;
use crate::config::matrix::{MatrixAuth, MatrixConfig};
use crate::edge::ChannelError;
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

/// Why the bot is not logged in.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// The credentials were refused. Not retryable: every later try would be refused too.
    #[error("matrix: {0}")]
    Refused(String),
    /// The homeserver is unreachable or failing. Retryable.
    #[error(transparent)]
    Retry(ChannelError),
}

#[derive(Deserialize)]
struct WhoAmI {
    user_id: String,
}

#[derive(Deserialize)]
struct LoggedIn {
    user_id: String,
    access_token: String,
    #[serde(default)]
    device_id: Option<String>,
}

/// Whether `user_id` is the configured `user` (a full id, or its localpart).
pub fn is_configured_user(user: &str, user_id: &str) -> bool {
    if user.starts_with('@') {
        user == user_id
    } else {
        mapping::localpart(user_id) == user
    }
}

async fn who_am_i(api: &Api) -> Result<String, ApiError> {
    let answer: WhoAmI = api
        .get(
            "whoami",
            &["_matrix", "client", "v3", "account", "whoami"],
            &[],
            crate::channels::http::CALL_TIMEOUT,
        )
        .await?;
    Ok(answer.user_id)
}

/// Logs in; returns the bot's user id. The access token is set on `api`.
pub async fn log_in(api: &Api, config: &MatrixConfig, state: &State) -> Result<String, LoginError> {
    match &config.auth {
        MatrixAuth::AccessToken(token) => {
            api.set_token(token.clone());
            let user_id = who_am_i(api).await.map_err(|e| match e {
                ApiError::Unauthorized(why) => LoginError::Refused(format!(
                    "the homeserver refused the access token ({why}); check CRABPOT_MATRIX_ACCESS_TOKEN"
                )),
                ApiError::Channel(e) => LoginError::Retry(e),
            })?;
            if !is_configured_user(&config.user, &user_id) {
                return Err(LoginError::Refused(format!(
                    "the access token is {user_id}'s, not CRABPOT_MATRIX_USER's ({})",
                    config.user
                )));
            }
            Ok(user_id)
        }
        MatrixAuth::Password(password) => {
            let stored = match state.get(LOGIN_KEY.to_owned()).await {
                Ok(value) => value.and_then(|json| serde_json::from_str::<StoredLogin>(&json).ok()),
                Err(e) => return Err(LoginError::Retry(ChannelError::Unavailable(e.to_string()))),
            };
            let stored = stored.filter(|login| {
                login.homeserver == config.homeserver
                    && is_configured_user(&config.user, &login.user_id)
            });
            if let Some(login) = &stored {
                api.set_token(ApiKey::new(login.access_token.clone()));
                match who_am_i(api).await {
                    Ok(user_id) if user_id == login.user_id => return Ok(user_id),
                    Ok(_) | Err(ApiError::Unauthorized(_)) => {
                        tracing::info!("matrix: the stored access token is gone; logging in again");
                    }
                    Err(ApiError::Channel(e)) => return Err(LoginError::Retry(e)),
                }
            }
            api.clear_token();
            let mut body = json!({
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": config.user},
                "password": password.expose_secret(),
                "initial_device_display_name": "crabpot",
            });
            if let Some(login) = &stored {
                body["device_id"] = json!(login.device_id);
            }
            let logged_in: LoggedIn = api
                .send_json("login", Method::POST, &["_matrix", "client", "v3", "login"], body)
                .await
                .map_err(|e| match e {
                    ApiError::Unauthorized(why) | ApiError::Channel(ChannelError::Rejected(why)) => {
                        LoginError::Refused(format!(
                            "the homeserver refused the login of {} ({why}); check CRABPOT_MATRIX_USER and CRABPOT_MATRIX_PASSWORD",
                            config.user
                        ))
                    }
                    ApiError::Channel(e) => LoginError::Retry(e),
                })?;
            api.set_token(ApiKey::new(logged_in.access_token.clone()));
            let login = StoredLogin {
                homeserver: config.homeserver.clone(),
                user_id: logged_in.user_id.clone(),
                device_id: logged_in.device_id.unwrap_or_default(),
                access_token: logged_in.access_token,
            };
            let stored = match serde_json::to_string(&login) {
                Ok(json) => state
                    .put(LOGIN_KEY.to_owned(), json)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = stored {
                // The next start logs in again, with a new device; say so rather than stop.
                tracing::warn!(error = %e, "the matrix login was not stored");
            }
            tracing::info!(user_id = %login.user_id, device_id = %login.device_id, "matrix: logged in with the password");
            Ok(login.user_id)
        }
    }
}
