//! The fake's Gateway: a WebSocket server (`tokio_tungstenite::accept_async`) on a listener
//! bound in the fake's runtime. It speaks Discord's opcodes: op 10 Hello on connect, op 1
//! Heartbeat answered by op 11 ACK, op 2 Identify checked (token, the four intents) and
//! answered with READY, op 6 Resume replaying every dispatch after the given `seq` and then
//! RESUMED, op 9 Invalid Session for a session it does not know, and close 4004 for a wrong
//! token. Dispatches (op 0) carry `s`, and each one is kept in the session's log so a resume
//! replays what the client missed. Every frame a client sent is recorded as a [`Call`] with
//! method `WS` and path `/gateway`.

use super::Shared;
use crate::fake_platform::Call;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::time::Instant;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// What the fake sends down the current connection.
#[derive(Debug)]
pub enum Outgoing {
    Frame(String),
    Close(u16, String),
    /// Drops the TCP connection without a close frame.
    Drop,
}

/// The four intents the adapter must ask for.
pub const REQUIRED_INTENTS: u64 = (1 << 0) | (1 << 9) | (1 << 12) | (1 << 15);

/// Accepts gateway connections until the fake stops.
pub async fn serve(listener: TcpListener, shared: Shared) {
    while let Ok((stream, _)) = listener.accept().await {
        let shared = shared.clone();
        tokio::spawn(async move {
            if let Ok(socket) = tokio_tungstenite::accept_async(stream).await {
                connection(socket, shared).await;
            }
        });
    }
}

async fn connection(
    mut socket: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    shared: Shared,
) {
    let interval = shared.lock().heartbeat_interval_ms;
    let hello = json!({"op": 10, "d": {"heartbeat_interval": interval}, "s": null, "t": null});
    if socket.send(Message::text(hello.to_string())).await.is_err() {
        return;
    }
    let (sender, mut outgoing) = mpsc::unbounded_channel::<Outgoing>();
    let connection_id = uuid::Uuid::new_v4().simple().to_string();
    loop {
        tokio::select! {
            out = outgoing.recv() => match out {
                Some(Outgoing::Frame(text)) => {
                    if socket.send(Message::text(text)).await.is_err() { break; }
                }
                Some(Outgoing::Close(code, reason)) => {
                    let frame = CloseFrame { code: CloseCode::from(code), reason: reason.into() };
                    let _ = socket.close(Some(frame)).await;
                    break;
                }
                Some(Outgoing::Drop) | None => break,
            },
            incoming = socket.next() => {
                let text = match incoming {
                    Some(Ok(Message::Text(text))) => text.to_string(),
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => continue,
                };
                shared.record(Call {
                    method: "WS".into(),
                    path: "/gateway".into(),
                    query: String::new(),
                    headers: http::HeaderMap::new(),
                    body: bytes::Bytes::from(text.clone()),
                    at: Instant::now(),
                });
                let frame: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                if !answer(&frame, &shared, &sender, &connection_id) {
                    break;
                }
            }
        }
    }
    let mut state = shared.lock();
    if state
        .connection
        .as_ref()
        .is_some_and(|(id, _)| *id == connection_id)
    {
        state.connection = None;
    }
}

/// Answers one client frame; false when the connection is to end.
fn answer(
    frame: &Value,
    shared: &Shared,
    sender: &mpsc::UnboundedSender<Outgoing>,
    connection_id: &str,
) -> bool {
    let mut state = shared.lock();
    let token_ok = !state.refuse_at_gateway
        && frame.pointer("/d/token").and_then(Value::as_str) == Some(state.token.as_str());
    match frame["op"].as_u64() {
        Some(1) if state.acks => {
            let _ = sender.send(Outgoing::Frame(json!({"op": 11}).to_string()));
        }
        Some(2) => {
            if !token_ok {
                let _ = sender.send(Outgoing::Close(4004, "Authentication failed.".into()));
                return true;
            }
            let intents = frame
                .pointer("/d/intents")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            if intents & REQUIRED_INTENTS != REQUIRED_INTENTS {
                let _ = sender.send(Outgoing::Close(4014, "Disallowed intent(s).".into()));
                return true;
            }
            let session_id = uuid::Uuid::new_v4().simple().to_string();
            state.session_id = Some(session_id.clone());
            state.new_session();
            state.connection = Some((connection_id.to_owned(), sender.clone()));
            let ready = json!({
                "v": 10,
                "user": {"id": state.bot_id, "username": "crabbot", "global_name": null, "bot": true, "discriminator": "0"},
                "guilds": [],
                "session_id": session_id,
                "resume_gateway_url": state.gateway_url,
                "application": {"id": state.bot_id, "flags": 0},
            });
            state.dispatch("READY", ready);
        }
        Some(6) => {
            let known = frame.pointer("/d/session_id").and_then(Value::as_str)
                == state.session_id.as_deref();
            if !token_ok {
                let _ = sender.send(Outgoing::Close(4004, "Authentication failed.".into()));
                return true;
            }
            if !known {
                let _ = sender.send(Outgoing::Frame(json!({"op": 9, "d": false}).to_string()));
                return true;
            }
            let after = frame.pointer("/d/seq").and_then(Value::as_u64).unwrap_or(0);
            for (seq, text) in &state.log {
                if *seq > after {
                    let _ = sender.send(Outgoing::Frame(text.clone()));
                }
            }
            state.connection = Some((connection_id.to_owned(), sender.clone()));
            state.dispatch("RESUMED", json!({}));
        }
        _ => {}
    }
    true
}
