//! A fake Discord ([`FakeDiscord`]) that follows Discord's API reference closely enough for
//! the adapter not to know the difference: the REST API under `/api/v10` (every call needs
//! `Authorization: Bot <token>`, 401 otherwise) with the JSON shapes of Message, User,
//! Channel and the interaction callback, `X-RateLimit-*` headers and 429 bodies
//! (`retry_after` in seconds, `global`), `enforce_nonce`, multipart uploads
//! (`payload_json` + `files[n]`); and the Gateway ([`gateway`]) over WebSocket.
//!
//! Tests play the people: [`FakeDiscord::say`] dispatches a MESSAGE_CREATE,
//! [`FakeDiscord::press`] an INTERACTION_CREATE; what the bot posted is kept per channel
//! ([`FakeDiscord::messages`]), every REST call and gateway frame is recorded
//! (`server.recorder`), and rate limits can be armed on a channel's messages route
//! ([`FakeDiscord::limit_next_post`], [`FakeDiscord::exhaust_bucket_on_next_post`]); a call
//! the fake's bucket did not allow is kept in [`FakeDiscord::violations`].

pub mod gateway;
pub mod multipart;
mod rest;

use crate::fake_platform::{Call, FakeServer, Recorder};
use gateway::Outgoing;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;

/// A message the bot posted.
#[derive(Clone, Debug)]
pub struct FakeMessage {
    pub id: String,
    pub channel_id: String,
    pub content: String,
    pub components: Value,
    pub nonce: Option<String>,
    /// (file name, bytes) of each uploaded file.
    pub files: Vec<(String, Vec<u8>)>,
    /// The content after each PATCH, in order.
    pub edits: Vec<String>,
    pub deleted: bool,
    pub reactions: Vec<String>,
}

/// Someone on the fake Discord.
#[derive(Clone, Debug)]
pub struct Person {
    pub id: String,
    pub username: String,
    pub global_name: Option<String>,
}

impl Person {
    pub fn new(id: &str, username: &str, global_name: Option<&str>) -> Self {
        Self {
            id: id.into(),
            username: username.into(),
            global_name: global_name.map(str::to_owned),
        }
    }

    fn json(&self) -> Value {
        json!({"id": self.id, "username": self.username, "global_name": self.global_name,
            "discriminator": "0", "avatar": null, "bot": false})
    }
}

/// The fake's state, shared by the REST handler and the gateway.
pub struct State {
    pub token: String,
    pub bot_id: String,
    pub gateway_url: String,
    api_base: String,
    pub heartbeat_interval_ms: u64,
    /// Whether heartbeats are acknowledged (off: the client sees a zombie connection).
    pub acks: bool,
    /// The gateway refuses every token (close 4004), as for a token revoked after REST
    /// accepted it.
    pub refuse_at_gateway: bool,
    pub session_id: Option<String>,
    /// The session's dispatches (seq, frame), for replay on resume.
    pub log: Vec<(u64, String)>,
    seq: u64,
    /// The identified connection: (its id, its sender).
    pub connection: Option<(String, UnboundedSender<Outgoing>)>,
    next_id: u64,
    messages: Vec<FakeMessage>,
    dms: HashMap<String, String>,
    /// Channels created by the test (threads), by id.
    channels: HashMap<String, Value>,
    files: HashMap<String, Vec<u8>>,
    limit_next_post: HashMap<String, f64>,
    exhaust_next_post: HashMap<String, f64>,
    bucket_until: HashMap<String, Instant>,
    violations: Vec<String>,
    callbacks: Vec<(String, Value)>,
    recorder: Option<Recorder>,
}

impl State {
    /// Sends a dispatch (op 0) with the next `s`, and keeps it for replay.
    pub fn dispatch(&mut self, kind: &str, data: Value) {
        self.seq += 1;
        let frame = json!({"op": 0, "t": kind, "s": self.seq, "d": data}).to_string();
        self.log.push((self.seq, frame.clone()));
        if let Some((_, sender)) = &self.connection {
            let _ = sender.send(Outgoing::Frame(frame));
        }
    }

    /// A new session starts counting from 1.
    pub fn new_session(&mut self) {
        self.seq = 0;
        self.log.clear();
    }

    fn snowflake(&mut self) -> String {
        self.next_id += 1;
        self.next_id.to_string()
    }

    fn bot_json(&self) -> Value {
        json!({"id": self.bot_id, "username": "crabbot", "global_name": null,
            "discriminator": "0", "avatar": null, "bot": true})
    }

    fn message_json(&self, message: &FakeMessage) -> Value {
        let attachments: Vec<Value> = message
            .files
            .iter()
            .enumerate()
            .map(|(index, (name, bytes))| {
                json!({"id": format!("{}{index}", message.id), "filename": name, "size": bytes.len(),
                    "url": format!("{}/files/{}/{name}", self.api_base, message.id)})
            })
            .collect();
        json!({"id": message.id, "channel_id": message.channel_id, "type": 0,
            "content": message.content, "author": self.bot_json(), "attachments": attachments,
            "components": message.components, "nonce": message.nonce, "embeds": [], "mentions": [],
            "timestamp": "2026-01-01T00:00:00.000000+00:00", "edited_timestamp": null,
            "tts": false, "mention_everyone": false, "pinned": false})
    }
}

/// The fake's state behind a lock, cheap to clone.
#[derive(Clone)]
pub struct Shared {
    state: Arc<Mutex<State>>,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a gateway frame as a call.
    pub fn record(&self, call: Call) {
        let recorder = self.lock().recorder.clone();
        if let Some(recorder) = recorder {
            recorder.record(call);
        }
    }
}

/// The fake Discord: REST on a [`FakeServer`], the gateway on a listener of its runtime.
pub struct FakeDiscord {
    pub server: FakeServer,
    shared: Shared,
    pub token: String,
    pub bot_id: String,
}

impl FakeDiscord {
    /// Starts the fake with a fresh token and bot id.
    pub fn start() -> anyhow::Result<FakeDiscord> {
        let token = format!("fake.{}", uuid::Uuid::new_v4().simple());
        let bot_id = "900000000000000001".to_owned();
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let gateway_url = format!("ws://{}", listener.local_addr()?);
        let shared = Shared {
            state: Arc::new(Mutex::new(State {
                token: token.clone(),
                bot_id: bot_id.clone(),
                gateway_url,
                api_base: String::new(),
                heartbeat_interval_ms: 2000,
                acks: true,
                refuse_at_gateway: false,
                session_id: None,
                log: Vec::new(),
                seq: 0,
                connection: None,
                next_id: 1_200_000_000_000_000_000,
                messages: Vec::new(),
                dms: HashMap::new(),
                channels: HashMap::new(),
                files: HashMap::new(),
                limit_next_post: HashMap::new(),
                exhaust_next_post: HashMap::new(),
                bucket_until: HashMap::new(),
                violations: Vec::new(),
                callbacks: Vec::new(),
                recorder: None,
            })),
        };
        let routes = axum::Router::new()
            .fallback(rest::rest)
            .with_state(shared.clone());
        // `FakeServer::start` blocks on a runtime of its own, which a test's runtime thread
        // may not do: start it from a plain thread.
        let server = std::thread::spawn(move || FakeServer::start(routes))
            .join()
            .map_err(|_| anyhow::anyhow!("starting the fake Discord panicked"))??;
        {
            let mut state = shared.lock();
            state.recorder = Some(server.recorder.clone());
            state.api_base = server.url();
        }
        let gateway_shared = shared.clone();
        let stop = server.shutdown();
        server.runtime().spawn(async move {
            if let Ok(listener) = tokio::net::TcpListener::from_std(listener) {
                tokio::select! {
                    _ = gateway::serve(listener, gateway_shared) => {}
                    _ = stop.cancelled() => {}
                }
            }
        });
        Ok(FakeDiscord {
            server,
            shared,
            token,
            bot_id,
        })
    }

    /// `CRABPOT_DISCORD_API_URL` for the host.
    pub fn api_url(&self) -> String {
        format!("{}/api/v10", self.server.url())
    }

    pub fn recorder(&self) -> &Recorder {
        &self.server.recorder
    }

    /// `person` says `content` in `channel_id` (of `guild_id`, or a DM), with files served
    /// by the fake as attachments; returns the message id.
    pub fn say(
        &self,
        channel_id: &str,
        guild_id: Option<&str>,
        person: &Person,
        content: &str,
        files: &[(&str, &[u8])],
    ) -> String {
        let mut state = self.shared.lock();
        let id = state.snowflake();
        let attachments: Vec<Value> = files
            .iter()
            .enumerate()
            .map(|(index, (name, bytes))| {
                state.files.insert(format!("{id}/{name}"), bytes.to_vec());
                json!({"id": format!("{id}{index}"), "filename": name, "size": bytes.len(),
                    "url": format!("{}/files/{id}/{name}", state.api_base),
                    "proxy_url": format!("{}/files/{id}/{name}", state.api_base),
                    "content_type": "text/plain"})
            })
            .collect();
        let mentions: Vec<Value> = if content.contains(&format!("<@{}>", state.bot_id)) {
            vec![state.bot_json()]
        } else {
            Vec::new()
        };
        let mut message = json!({"id": id, "channel_id": channel_id, "type": 0, "content": content,
            "author": person.json(), "attachments": attachments, "embeds": [], "mentions": mentions,
            "mention_roles": [], "mention_everyone": false, "tts": false, "pinned": false,
            "timestamp": "2026-01-01T00:00:00.000000+00:00", "edited_timestamp": null});
        if let Some(guild_id) = guild_id {
            message["guild_id"] = json!(guild_id);
            message["member"] =
                json!({"nick": null, "roles": [], "joined_at": "2026-01-01T00:00:00.000000+00:00"});
        }
        state.dispatch("MESSAGE_CREATE", message);
        id
    }

    /// Someone opens a thread under `parent_id` (THREAD_CREATE); returns its channel id.
    pub fn create_thread(&self, parent_id: &str, guild_id: &str, name: &str) -> String {
        let mut state = self.shared.lock();
        let id = state.snowflake();
        let thread = json!({"id": id, "type": 11, "guild_id": guild_id, "parent_id": parent_id,
            "name": name, "owner_id": "500000000000000001", "message_count": 0,
            "thread_metadata": {"archived": false, "auto_archive_duration": 1440, "locked": false}});
        state.channels.insert(id.clone(), thread.clone());
        let mut created = thread;
        created["newly_created"] = json!(true);
        state.dispatch("THREAD_CREATE", created);
        id
    }

    /// `person` presses the button `custom_id` of the bot's message `message_id`; returns
    /// the interaction id.
    pub fn press(
        &self,
        channel_id: &str,
        guild_id: Option<&str>,
        person: &Person,
        message_id: &str,
        custom_id: &str,
    ) -> String {
        let mut state = self.shared.lock();
        let id = state.snowflake();
        let message = state
            .messages
            .iter()
            .find(|m| m.id == message_id)
            .cloned()
            .map(|m| state.message_json(&m))
            .unwrap_or(Value::Null);
        let mut interaction = json!({"id": id, "application_id": state.bot_id, "type": 3,
            "token": format!("itoken-{id}"), "version": 1, "channel_id": channel_id,
            "message": message, "data": {"custom_id": custom_id, "component_type": 2},
            "locale": "en-US"});
        if let Some(guild_id) = guild_id {
            interaction["guild_id"] = json!(guild_id);
            interaction["member"] = json!({"user": person.json(), "nick": null, "roles": []});
        } else {
            interaction["user"] = person.json();
        }
        state.dispatch("INTERACTION_CREATE", interaction);
        id
    }

    /// The bot's messages in `channel_id`, in order.
    pub fn messages(&self, channel_id: &str) -> Vec<FakeMessage> {
        self.shared
            .lock()
            .messages
            .iter()
            .filter(|m| m.channel_id == channel_id)
            .cloned()
            .collect()
    }

    /// Polls until a message of `channel_id` passes `check`, or fails after `timeout`.
    pub async fn wait_for_message(
        &self,
        what: &str,
        channel_id: &str,
        timeout: Duration,
        check: impl Fn(&FakeMessage) -> bool,
    ) -> anyhow::Result<FakeMessage> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = self.messages(channel_id).into_iter().find(|m| check(m)) {
                return Ok(found);
            }
            if Instant::now() > deadline {
                anyhow::bail!(
                    "waited {timeout:?} for {what}; channel {channel_id} has {:#?}",
                    self.messages(channel_id)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every gateway frame the client sent, in order.
    pub fn frames(&self) -> Vec<Value> {
        self.server
            .recorder
            .calls()
            .iter()
            .filter(|call| call.method == "WS")
            .map(Call::json)
            .collect()
    }

    /// Waits until `count` frames with opcode `op` were sent.
    pub async fn wait_for_op(
        &self,
        op: u64,
        count: usize,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        self.server
            .recorder
            .wait_for(
                &format!("{count} gateway frames of op {op}"),
                timeout,
                |calls| {
                    (calls
                        .iter()
                        .filter(|c| c.method == "WS" && c.json()["op"] == op)
                        .count()
                        >= count)
                        .then_some(())
                },
            )
            .await
    }

    /// Whether a client is identified or resumed on the gateway now.
    pub fn is_connected(&self) -> bool {
        self.shared.lock().connection.is_some()
    }

    /// Polls until a client is connected (or not, with `false`).
    pub async fn wait_connected(&self, connected: bool, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        while self.is_connected() != connected {
            if Instant::now() > deadline {
                anyhow::bail!("the gateway connection never became connected={connected}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Drops the gateway connection without a close frame, as a network failure would.
    pub fn drop_connection(&self) {
        if let Some((_, sender)) = self.shared.lock().connection.take() {
            let _ = sender.send(Outgoing::Drop);
        }
    }

    /// Asks the client to reconnect (op 7).
    pub fn request_reconnect(&self) {
        let state = self.shared.lock();
        if let Some((_, sender)) = &state.connection {
            let _ = sender.send(Outgoing::Frame(json!({"op": 7, "d": null}).to_string()));
        }
    }

    /// Makes the gateway refuse the token (close 4004 Authentication failed).
    pub fn refuse_at_gateway(&self) {
        self.shared.lock().refuse_at_gateway = true;
    }

    /// Whether heartbeats are acknowledged (off: the connection looks like a zombie).
    pub fn set_acks(&self, acks: bool) {
        self.shared.lock().acks = acks;
    }

    /// The next POST to `channel_id`'s messages gets a 429 with `retry_after` seconds.
    pub fn limit_next_post(&self, channel_id: &str, retry_after: f64) {
        self.shared
            .lock()
            .limit_next_post
            .insert(channel_id.to_owned(), retry_after);
    }

    /// The next successful POST to `channel_id` says `Remaining: 0`, `Reset-After:
    /// reset_after`; a POST before that is a violation.
    pub fn exhaust_bucket_on_next_post(&self, channel_id: &str, reset_after: f64) {
        self.shared
            .lock()
            .exhaust_next_post
            .insert(channel_id.to_owned(), reset_after);
    }

    /// Calls made while the fake's bucket said to wait.
    pub fn violations(&self) -> Vec<String> {
        self.shared.lock().violations.clone()
    }

    /// The interaction callbacks received: (interaction id, body).
    pub fn callbacks(&self) -> Vec<(String, Value)> {
        self.shared.lock().callbacks.clone()
    }
}
