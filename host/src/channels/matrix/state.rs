//! [`State`]: what the Matrix adapter keeps across restarts, in the central DB's
//! `channel_state` under channel type `matrix`:
//!
//! - `login`: the access token, device id and user id a password login got, so a restart
//!   reuses the device (and its transaction ids) instead of making a new one;
//! - `since`: the `/sync` token up to which every event is durable;
//! - `direct:<room id>`: the room is a direct chat (its invite said `is_direct`, or the bot
//!   opened it as one);
//! - `e2ee_notice:<room id>`: the room was told the bot cannot read encrypted messages;
//! - `question:<event id>`: the question that event asks (its id, its option count, its
//!   thread), so a keycap reaction on it answers it.

use crate::db::central::channel_state;
use crate::db::{DbError, DbThread};
use rusqlite::Connection;
use std::sync::Arc;

use super::mapping::CHANNEL_TYPE;

pub const LOGIN_KEY: &str = "login";
pub const SINCE_KEY: &str = "since";

pub fn direct_key(room_id: &str) -> String {
    format!("direct:{room_id}")
}

pub fn notice_key(room_id: &str) -> String {
    format!("e2ee_notice:{room_id}")
}

pub fn question_key(event_id: &str) -> String {
    format!("question:{event_id}")
}

/// A password login kept for the next start.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct StoredLogin {
    pub homeserver: String,
    pub user_id: String,
    pub device_id: String,
    pub access_token: String,
}

/// A question the bot asked, by the event that asks it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredQuestion {
    pub question_id: String,
    pub options: usize,
    pub thread_id: Option<String>,
}

/// The Matrix rows of `channel_state`.
#[derive(Clone)]
pub struct State {
    pub central: Arc<DbThread<Connection>>,
}

impl State {
    pub async fn get(&self, key: String) -> Result<Option<String>, DbError> {
        self.central
            .call(move |conn| channel_state::get(conn, CHANNEL_TYPE, &key))
            .await
    }

    pub async fn put(&self, key: String, value: String) -> Result<(), DbError> {
        self.central
            .call(move |conn| channel_state::put(conn, CHANNEL_TYPE, &key, &value))
            .await
    }

    pub async fn delete(&self, key: String) -> Result<(), DbError> {
        self.central
            .call(move |conn| channel_state::delete(conn, CHANNEL_TYPE, &key))
            .await
    }

    /// Whether `user_id` (`matrix:@...`) is a known crabpot user, or `room_id` is already a
    /// chat: the `known` invite policy.
    pub async fn knows(&self, user_id: String, room_id: String) -> Result<bool, DbError> {
        self.central
            .call(move |conn| {
                let user = crate::db::central::people::user(conn, &user_id);
                let known_user = match user {
                    Ok(_) => true,
                    Err(DbError::NotFound { .. }) => false,
                    Err(other) => return Err(other),
                };
                if known_user {
                    return Ok(true);
                }
                match crate::db::central::chats::find_chat(
                    conn,
                    &format!("{CHANNEL_TYPE}/{room_id}"),
                ) {
                    Ok(_) => Ok(true),
                    Err(DbError::NotFound { .. }) => Ok(false),
                    Err(other) => Err(other),
                }
            })
            .await
    }
}
