//! The fake's Socket Mode endpoint ([`SocketServer`]): a WebSocket listener on the fake's
//! runtime (`tokio_tungstenite::accept_async`) at the URL `apps.connections.open` names. A
//! connection gets `{"type": "hello"}`, then whatever envelopes the test sends
//! ([`SocketServer::send_envelope`]); every frame the adapter sends back (its acks) is
//! recorded as a `WS /socket/ack` call, a new connection as `WS /socket/connected`.

use crate::fake_platform::{Call, FakeServer, Recorder};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

type Outbox = Arc<Mutex<Option<mpsc::UnboundedSender<String>>>>;

/// The fake's Socket Mode WebSocket listener (see the module docs).
pub struct SocketServer {
    addr: std::net::SocketAddr,
    outbox: Outbox,
}

fn record(recorder: &Recorder, path: &str, body: String) {
    recorder.record(Call {
        method: "WS".into(),
        path: path.into(),
        query: String::new(),
        headers: http::HeaderMap::new(),
        body: Bytes::from(body),
        at: Instant::now(),
    });
}

impl SocketServer {
    /// Binds a port on `server`'s runtime and serves WebSocket connections there.
    pub fn start(server: &FakeServer) -> anyhow::Result<SocketServer> {
        let runtime = server.runtime().clone();
        // Bound here (not on the runtime, which a test's own runtime may not block on), served
        // there.
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let outbox: Outbox = Arc::new(Mutex::new(None));
        let recorder = server.recorder.clone();
        let shutdown = server.shutdown();
        let current = Arc::clone(&outbox);
        runtime.spawn(async move {
            let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                return;
            };
            loop {
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    () = shutdown.cancelled() => return,
                };
                let Ok((stream, _)) = accepted else { continue };
                let recorder = recorder.clone();
                let current = Arc::clone(&current);
                tokio::spawn(async move {
                    let Ok(mut socket) = tokio_tungstenite::accept_async(stream).await else {
                        return;
                    };
                    let (sender, mut envelopes) = mpsc::unbounded_channel::<String>();
                    *current.lock().unwrap_or_else(PoisonError::into_inner) = Some(sender);
                    let hello = json!({"type": "hello", "num_connections": 1,
                        "connection_info": {"app_id": "A0CRAB"}});
                    if socket
                        .send(Message::Text(hello.to_string().into()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    record(&recorder, "/socket/connected", String::new());
                    loop {
                        tokio::select! {
                            envelope = envelopes.recv() => {
                                let Some(envelope) = envelope else { return };
                                if socket.send(Message::Text(envelope.into())).await.is_err() {
                                    return;
                                }
                            }
                            frame = socket.next() => match frame {
                                Some(Ok(Message::Text(text))) => {
                                    record(&recorder, "/socket/ack", text.to_string());
                                }
                                Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                                Some(Ok(_)) => {}
                            },
                        }
                    }
                });
            }
        });
        Ok(SocketServer { addr, outbox })
    }

    /// `ws://127.0.0.1:<port>/link`.
    pub fn url(&self) -> String {
        format!("ws://{}/link", self.addr)
    }

    /// Sends `{envelope_id, type, payload}` on the newest connection; false when none is
    /// open.
    pub fn send_envelope(&self, envelope_id: &str, kind: &str, payload: &Value) -> bool {
        let envelope = json!({
            "envelope_id": envelope_id,
            "type": kind,
            "payload": payload,
            "accepts_response_payload": false,
            "retry_attempt": 0,
            "retry_reason": "",
        });
        self.send_raw(envelope.to_string())
    }

    /// Asks the adapter to reconnect, as Slack does every few hours.
    pub fn send_disconnect(&self) -> bool {
        self.send_raw(json!({"type": "disconnect", "reason": "refresh_requested"}).to_string())
    }

    fn send_raw(&self, text: String) -> bool {
        self.outbox
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|sender| sender.send(text).is_ok())
    }
}
