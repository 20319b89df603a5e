//! [`MatrixUser`]: a person's small Matrix client for the tests, over
//! [`crate::http_client`]: rooms (direct, group, encrypted), messages, threads, reactions,
//! media up and down, and waits on a room's events with a deadline.

use super::encode;
use crate::http_client::{HttpResponse, send_tcp};
use anyhow::{Context, bail};
use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A person on the homeserver, with their access token.
pub struct MatrixUser {
    pub user_id: String,
    pub token: String,
    synapse_addr: SocketAddr,
    txn: AtomicU64,
}

impl MatrixUser {
    pub(super) fn new(user_id: &str, token: &str, synapse_addr: SocketAddr) -> Self {
        Self {
            user_id: user_id.to_owned(),
            token: token.to_owned(),
            synapse_addr,
            txn: AtomicU64::new(0),
        }
    }

    /// A call as this user; fails on a non-2xx answer, naming it.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, Bytes)>,
    ) -> anyhow::Result<HttpResponse> {
        let mut builder = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(http::header::HOST, self.synapse_addr.to_string())
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", self.token),
            );
        let body = match body {
            Some((content_type, bytes)) => {
                builder = builder.header(http::header::CONTENT_TYPE, content_type);
                bytes
            }
            None => Bytes::new(),
        };
        let answer = send_tcp(self.synapse_addr, builder.body(Full::new(body))?).await?;
        if !answer.status.is_success() {
            bail!(
                "{method} {path} as {}: {} {}",
                self.user_id,
                answer.status,
                answer.text()
            );
        }
        Ok(answer)
    }

    pub async fn json(&self, method: Method, path: &str, body: &Value) -> anyhow::Result<Value> {
        let bytes = Bytes::from(body.to_string());
        self.call(method, path, Some(("application/json", bytes)))
            .await?
            .json()
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(Method::GET, path, None).await?.json()
    }

    /// Creates a room inviting `invite`; a direct chat when `is_direct`.
    pub async fn create_room(&self, invite: &[&str], is_direct: bool) -> anyhow::Result<String> {
        let preset = if is_direct {
            "trusted_private_chat"
        } else {
            "private_chat"
        };
        let answer = self
            .json(
                Method::POST,
                "/_matrix/client/v3/createRoom",
                &json!({"invite": invite, "is_direct": is_direct, "preset": preset}),
            )
            .await?;
        Ok(answer["room_id"].as_str().context("no room_id")?.to_owned())
    }

    /// Creates an end-to-end encrypted room inviting `invite`.
    pub async fn create_encrypted_room(&self, invite: &[&str]) -> anyhow::Result<String> {
        let answer = self
            .json(
                Method::POST,
                "/_matrix/client/v3/createRoom",
                &json!({
                    "invite": invite, "preset": "private_chat",
                    "initial_state": [{
                        "type": "m.room.encryption", "state_key": "",
                        "content": {"algorithm": "m.megolm.v1.aes-sha2"},
                    }],
                }),
            )
            .await?;
        Ok(answer["room_id"].as_str().context("no room_id")?.to_owned())
    }

    pub async fn join(&self, room_id: &str) -> anyhow::Result<()> {
        self.json(
            Method::POST,
            &format!("/_matrix/client/v3/join/{}", encode(room_id)),
            &json!({}),
        )
        .await?;
        Ok(())
    }

    /// Sends an event of `kind` with `content`; returns its event id.
    pub async fn send(&self, room_id: &str, kind: &str, content: &Value) -> anyhow::Result<String> {
        let txn = self.txn.fetch_add(1, Ordering::Relaxed);
        let path = format!(
            "/_matrix/client/v3/rooms/{}/send/{}/t{}-{txn}",
            encode(room_id),
            encode(kind),
            uuid::Uuid::new_v4().simple()
        );
        let answer = self.json(Method::PUT, &path, content).await?;
        Ok(answer["event_id"]
            .as_str()
            .context("no event_id")?
            .to_owned())
    }

    /// Sends a plain text message.
    pub async fn say(&self, room_id: &str, text: &str) -> anyhow::Result<String> {
        self.send(
            room_id,
            "m.room.message",
            &json!({"msgtype": "m.text", "body": text}),
        )
        .await
    }

    /// Sends a text message in the thread of `root`.
    pub async fn say_in_thread(
        &self,
        room_id: &str,
        root: &str,
        text: &str,
    ) -> anyhow::Result<String> {
        self.send(
            room_id,
            "m.room.message",
            &json!({
                "msgtype": "m.text", "body": text,
                "m.relates_to": {"rel_type": "m.thread", "event_id": root,
                    "is_falling_back": true, "m.in_reply_to": {"event_id": root}},
            }),
        )
        .await
    }

    /// Reacts to `event_id` with `key`.
    pub async fn react(&self, room_id: &str, event_id: &str, key: &str) -> anyhow::Result<String> {
        self.send(
            room_id,
            "m.reaction",
            &json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": event_id, "key": key}}),
        )
        .await
    }

    /// Uploads `bytes` to the media repository; returns the `mxc://` URI.
    pub async fn upload(&self, name: &str, bytes: &[u8]) -> anyhow::Result<String> {
        let path = format!("/_matrix/media/v3/upload?filename={}", encode(name));
        let answer = self
            .call(
                Method::POST,
                &path,
                Some(("application/octet-stream", Bytes::copy_from_slice(bytes))),
            )
            .await?
            .json()?;
        Ok(answer["content_uri"]
            .as_str()
            .context("no content_uri")?
            .to_owned())
    }

    /// Uploads a file and sends it as `m.file`.
    pub async fn send_file(
        &self,
        room_id: &str,
        name: &str,
        bytes: &[u8],
    ) -> anyhow::Result<String> {
        let uri = self.upload(name, bytes).await?;
        self.send(
            room_id,
            "m.room.message",
            &json!({"msgtype": "m.file", "body": name, "url": uri,
                "info": {"size": bytes.len(), "mimetype": "text/plain"}}),
        )
        .await
    }

    /// Downloads the media of an `mxc://` URI (authenticated media).
    pub async fn download(&self, uri: &str) -> anyhow::Result<Bytes> {
        let rest = uri.strip_prefix("mxc://").context("not an mxc URI")?;
        let (server, media_id) = rest.split_once('/').context("not an mxc URI")?;
        let path = format!(
            "/_matrix/client/v1/media/download/{}/{}",
            encode(server),
            encode(media_id)
        );
        Ok(self.call(Method::GET, &path, None).await?.body)
    }

    /// The room's events, oldest first (the last 500).
    pub async fn events(&self, room_id: &str) -> anyhow::Result<Vec<Value>> {
        let path = format!(
            "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=500",
            encode(room_id)
        );
        let answer = self.get(&path).await?;
        let mut events = answer["chunk"].as_array().cloned().unwrap_or_default();
        events.reverse();
        Ok(events)
    }

    /// The membership of `user_id` in `room_id` (`join`, `invite`, `leave`, ...), as this
    /// user sees it.
    pub async fn membership(&self, room_id: &str, user_id: &str) -> anyhow::Result<String> {
        let path = format!(
            "/_matrix/client/v3/rooms/{}/state/m.room.member/{}",
            encode(room_id),
            encode(user_id)
        );
        Ok(self.get(&path).await?["membership"]
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    /// The user ids of the room's joined members.
    pub async fn joined_members(&self, room_id: &str) -> anyhow::Result<Vec<String>> {
        let path = format!(
            "/_matrix/client/v3/rooms/{}/joined_members",
            encode(room_id)
        );
        let answer = self.get(&path).await?;
        Ok(answer["joined"]
            .as_object()
            .map(|joined| joined.keys().cloned().collect())
            .unwrap_or_default())
    }

    /// Waits until `check` finds what it looks for in the room's events, for at most
    /// `timeout`; the error lists the events seen.
    pub async fn wait_events<T>(
        &self,
        room_id: &str,
        what: &str,
        timeout: Duration,
        check: impl Fn(&[Value]) -> Option<T>,
    ) -> anyhow::Result<T> {
        let started = Instant::now();
        loop {
            let events = self.events(room_id).await?;
            if let Some(found) = check(&events) {
                return Ok(found);
            }
            if started.elapsed() > timeout {
                let seen: Vec<String> = events
                    .iter()
                    .map(|event| {
                        format!("{} {} {}", event["type"], event["sender"], event["content"])
                    })
                    .collect();
                bail!("waited {timeout:?} for {what} in {room_id}; events: {seen:#?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until `user_id` has joined `room_id`.
    pub async fn wait_joined(
        &self,
        room_id: &str,
        user_id: &str,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            if self
                .joined_members(room_id)
                .await?
                .iter()
                .any(|id| id == user_id)
            {
                return Ok(());
            }
            if started.elapsed() > timeout {
                bail!("{user_id} did not join {room_id} within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
