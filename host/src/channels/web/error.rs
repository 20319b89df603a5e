//! Why a web chat operation fails ([`WebChatError`]), and the checks of what the owner sends.

use super::{MAX_API_NAME_CHARS, MAX_MESSAGE_BYTES};
use crate::db::DbError;
use crate::edge::{AnswerError, RouteError};

/// Why a web chat operation failed.
#[derive(Debug, thiserror::Error)]
pub enum WebChatError {
    /// No such conversation of this user, or no such agent group. Not retryable.
    #[error("{0}")]
    NotFound(String),
    /// The user may not talk to this agent group. Not retryable.
    #[error("{0}")]
    Forbidden(String),
    /// The request was refused as it is. Not retryable.
    #[error("{0}")]
    Invalid(String),
    /// The conversation exists with other settings (another owner or group). Not retryable.
    #[error("{0}")]
    Conflict(String),
    /// The message was stored nowhere (why, per wiring). Not retryable.
    #[error("the message reached no agent: {0}")]
    NotRouted(String),
    /// The channel has not started yet, or has stopped. Retryable.
    #[error("the web channel is not running")]
    NotRunning,
    /// Retryable when the database was busy.
    #[error("the database failed: {0}")]
    Db(DbError),
    /// Retryable when the database was busy.
    #[error(transparent)]
    Route(#[from] RouteError),
    #[error(transparent)]
    Answer(#[from] AnswerError),
}

impl From<DbError> for WebChatError {
    fn from(error: DbError) -> Self {
        match error {
            DbError::NotFound { .. } => WebChatError::NotFound(error.to_string()),
            DbError::Invalid(message) => WebChatError::Invalid(message),
            DbError::Conflict(message) => WebChatError::Conflict(message),
            other => WebChatError::Db(other),
        }
    }
}

/// The handle part of a user id (`alice` of `web:alice`).
pub fn user_handle(user_id: &str) -> &str {
    user_id
        .split_once(':')
        .map_or(user_id, |(_, handle)| handle)
}

/// Checks an API conversation's name (the request's `user` field): printable, no `/`, at
/// most [`MAX_API_NAME_CHARS`].
pub fn check_api_name(name: &str) -> Result<(), WebChatError> {
    let ok = !name.is_empty()
        && name.chars().count() <= MAX_API_NAME_CHARS
        && !name.chars().any(|c| c.is_control() || c == '/');
    if ok {
        Ok(())
    } else {
        Err(WebChatError::Invalid(format!(
            "`user` must be 1 to {MAX_API_NAME_CHARS} printable characters without `/`"
        )))
    }
}

/// Checks a message's text: not blank, at most [`MAX_MESSAGE_BYTES`].
pub fn check_text(text: &str) -> Result<(), WebChatError> {
    if text.trim().is_empty() {
        return Err(WebChatError::Invalid("the message is empty".into()));
    }
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(WebChatError::Invalid(format!(
            "the message is {} bytes, more than the {MAX_MESSAGE_BYTES} allowed",
            text.len()
        )));
    }
    Ok(())
}
