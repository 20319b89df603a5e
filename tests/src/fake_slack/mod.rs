//! A fake Slack that follows Slack's API reference, for the Slack adapter's end-to-end tests:
//! [`FakeSlack`].
//!
//! - The Web API ([`web_api`]): `POST /api/<method>` with `Authorization: Bearer <token>`,
//!   JSON or form bodies, answers `{"ok": true, ...}` / `{"ok": false, "error": code}`;
//!   `auth.test`, `users.info`, `chat.postMessage` / `update` / `delete`, `reactions.add`,
//!   `conversations.open`, the external upload flow (`files.getUploadURLExternal`, the
//!   upload URL, `files.completeUploadExternal`), private file downloads, and
//!   `apps.connections.open` for Socket Mode. A method can be made to answer HTTP 429 with
//!   `Retry-After` ([`FakeSlack::rate_limit`]).
//! - What Slack sends ([`outbound`]): Events API `event_callback` bodies and `block_actions`
//!   payloads, signed exactly as Slack signs them (`v0=` HMAC-SHA256 of
//!   `v0:<timestamp>:<body>` under the signing secret), posted to the host's hooks.
//! - Socket Mode ([`socket`]): a WebSocket on the fake's runtime that says `hello` and sends
//!   envelopes; acks are recorded as calls to `/socket/ack`.
//!
//! Every request is recorded ([`crate::fake_platform::Recorder`]).

pub mod outbound;
pub mod socket;
mod web_api;

use crate::fake_platform::{Call, FakeServer, Recorder};
use bytes::Bytes;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// The bot's user id `auth.test` names.
pub const BOT_USER_ID: &str = "UCRABBOT";
/// The bot id on the bot's own messages.
pub const BOT_ID: &str = "BCRAB";
/// The team of every event.
pub const TEAM_ID: &str = "T0CRAB";
/// The bot token the fake accepts.
pub const BOT_TOKEN: &str = "xoxb-fake-crab-token";
/// The app token the fake accepts (Socket Mode).
pub const APP_TOKEN: &str = "xapp-fake-crab-token";
/// The signing secret the tests configure.
pub const SIGNING_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";

/// One message the bot posted, as it stands now.
#[derive(Clone, Debug, PartialEq)]
pub struct PostedMessage {
    pub channel: String,
    pub ts: String,
    pub thread_ts: Option<String>,
    pub text: String,
    pub blocks: Value,
    /// The `metadata` it was posted with (`Null` when none).
    pub metadata: Value,
    /// How often `chat.update` changed it.
    pub updates: u32,
    pub deleted: bool,
}

/// One file uploaded through the external upload flow.
#[derive(Clone, Debug, PartialEq)]
pub struct UploadedFile {
    pub id: String,
    pub filename: String,
    pub length: u64,
    pub bytes: Option<Bytes>,
    /// Set by `files.completeUploadExternal`.
    pub shared_in: Option<String>,
    pub thread_ts: Option<String>,
    pub initial_comment: Option<String>,
}

#[derive(Default)]
pub(crate) struct State {
    next_ts: u64,
    next_file: u64,
    pub(crate) messages: BTreeMap<String, PostedMessage>,
    pub(crate) files: BTreeMap<String, UploadedFile>,
    /// Files people "sent": served at `/files-pri/<id>/<name>` to the bot token.
    pub(crate) private_files: HashMap<String, Bytes>,
    /// Methods that answer 429 the next n times, with their Retry-After.
    pub(crate) rate_limits: HashMap<String, (u32, u64)>,
    pub(crate) users: HashMap<String, String>,
    pub(crate) bot_token: String,
    pub(crate) socket_url: String,
    pub(crate) base_url: String,
}

impl State {
    pub(crate) fn next_ts(&mut self) -> String {
        self.next_ts += 1;
        format!("1700000000.{:06}", self.next_ts)
    }

    pub(crate) fn next_file_id(&mut self) -> String {
        self.next_file += 1;
        format!("F{:08}", self.next_file)
    }
}

pub(crate) type Shared = Arc<Mutex<State>>;

pub(crate) fn lock(state: &Shared) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The fake Slack: its HTTP server, its state, and its Socket Mode endpoint.
pub struct FakeSlack {
    pub server: FakeServer,
    state: Shared,
    socket: socket::SocketServer,
}

impl FakeSlack {
    /// Starts the fake, accepting [`BOT_TOKEN`].
    pub fn start() -> anyhow::Result<FakeSlack> {
        Self::start_with_token(BOT_TOKEN)
    }

    /// Starts the fake, accepting `bot_token` as the bot token (another one gets
    /// `invalid_auth`).
    pub fn start_with_token(bot_token: &str) -> anyhow::Result<FakeSlack> {
        let state: Shared = Arc::new(Mutex::new(State {
            bot_token: bot_token.to_owned(),
            ..State::default()
        }));
        // `FakeServer::start` blocks on a runtime of its own, which a test's runtime thread
        // may not do: it is started from a plain thread.
        let routes = web_api::routes(Arc::clone(&state));
        let server = std::thread::scope(|scope| {
            scope
                .spawn(move || FakeServer::start(routes))
                .join()
                .map_err(|_| anyhow::anyhow!("starting the fake Slack panicked"))
        })??;
        let socket = socket::SocketServer::start(&server)?;
        {
            let mut state = lock(&state);
            state.base_url = server.url();
            state.socket_url = socket.url();
        }
        Ok(FakeSlack {
            server,
            state,
            socket,
        })
    }

    /// `CRABPOT_SLACK_API_URL`: `http://127.0.0.1:<port>/api`.
    pub fn api_url(&self) -> String {
        format!("{}/api", self.server.url())
    }

    pub fn recorder(&self) -> &Recorder {
        &self.server.recorder
    }

    /// The calls of Web API `method` (`chat.postMessage`).
    pub fn calls_of(&self, method: &str) -> Vec<Call> {
        self.server.recorder.calls_to(&format!("/api/{method}"))
    }

    /// The next `times` calls of `method` answer HTTP 429 with `Retry-After: retry_after`.
    pub fn rate_limit(&self, method: &str, times: u32, retry_after: Duration) {
        lock(&self.state)
            .rate_limits
            .insert(method.to_owned(), (times, retry_after.as_secs().max(1)));
    }

    /// A person `users.info` knows.
    pub fn add_user(&self, user_id: &str, display_name: &str) {
        lock(&self.state)
            .users
            .insert(user_id.to_owned(), display_name.to_owned());
    }

    /// A file a person sent, served to the bot token; returns its `url_private_download`.
    pub fn add_private_file(&self, file_id: &str, name: &str, bytes: &[u8]) -> String {
        lock(&self.state)
            .private_files
            .insert(file_id.to_owned(), Bytes::copy_from_slice(bytes));
        format!("{}/files-pri/{TEAM_ID}-{file_id}/{name}", self.server.url())
    }

    /// Every message the bot posted in `channel`, oldest first.
    pub fn messages_in(&self, channel: &str) -> Vec<PostedMessage> {
        lock(&self.state)
            .messages
            .values()
            .filter(|message| message.channel == channel)
            .cloned()
            .collect()
    }

    /// Every uploaded file.
    pub fn files(&self) -> Vec<UploadedFile> {
        lock(&self.state).files.values().cloned().collect()
    }

    /// Polls `check` against the fake until it finds something, for at most `timeout`.
    pub async fn wait_until<T>(
        &self,
        what: &str,
        timeout: Duration,
        check: impl Fn(&FakeSlack) -> Option<T>,
    ) -> anyhow::Result<T> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(found) = check(self) {
                return Ok(found);
            }
            if tokio::time::Instant::now() >= deadline {
                let paths: Vec<String> = self
                    .server
                    .recorder
                    .calls()
                    .iter()
                    .map(|call| format!("{} {}", call.method, call.path))
                    .collect();
                anyhow::bail!("waited {timeout:?} for {what}; the fake received: {paths:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for a (not deleted) message in `channel` whose text contains `fragment`.
    pub async fn wait_message(
        &self,
        channel: &str,
        fragment: &str,
        timeout: Duration,
    ) -> anyhow::Result<PostedMessage> {
        self.wait_until(
            &format!("a message in {channel} containing {fragment:?}"),
            timeout,
            |fake| {
                fake.messages_in(channel)
                    .into_iter()
                    .find(|message| !message.deleted && message.text.contains(fragment))
            },
        )
        .await
    }

    /// The Socket Mode endpoint.
    pub fn socket(&self) -> &socket::SocketServer {
        &self.socket
    }
}
