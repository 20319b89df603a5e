//! Discord's Gateway, the WebSocket that brings messages and button presses ([`run`]).
//!
//! One connection at a time (`?v=10&encoding=json`): op 10 Hello names the heartbeat
//! interval; the first op 1 Heartbeat goes after a random share of it, the next ones every
//! interval, and a heartbeat still not acknowledged (op 11) when the next is due means a
//! zombie connection: it is dropped and resumed. A new session identifies (op 2) with the
//! intents the adapter needs ([`INTENTS`]); READY names the session, the URL to resume at
//! and the bot's user. Dispatches (op 0) carry a sequence number `s`: after each one is
//! handled (a message pushed durably, a press answered), `s` is stored in `channel_state`
//! ([`SEQ_KEY`]) beside the session ([`SESSION_KEY`]), so a dropped connection, an op 7
//! Reconnect or a host restart resumes (op 6) from the last event taken in and the gateway
//! replays what came after: nothing lost, nothing taken twice. An op 9 Invalid Session
//! that cannot be resumed starts a new session. Close codes that no retry can fix (4004
//! authentication failed, 4010-4014) fail the adapter with a message naming the setting.

use super::DiscordChannel;
use crate::db::central::channel_state;
use crate::edge::{BoxFuture, ChannelContext, ChannelError};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::CancellationToken;

/// GUILDS (1 << 0) | GUILD_MESSAGES (1 << 9) | DIRECT_MESSAGES (1 << 12) |
/// MESSAGE_CONTENT (1 << 15).
pub const INTENTS: u64 = (1 << 0) | (1 << 9) | (1 << 12) | (1 << 15);

/// `channel_state` key of the session (`{"session_id", "resume_gateway_url"}`).
pub const SESSION_KEY: &str = "gateway_session";
/// `channel_state` key of the sequence number of the last event taken in.
pub const SEQ_KEY: &str = "gateway_seq";

/// How long the gateway may take to say Hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(20);
/// After this many failed connections in a row, a session is given up for a new one.
const MAX_RESUME_FAILURES: u32 = 6;
/// At most this many dispatches wait to be taken in; past it the connection is resumed.
const MAX_QUEUED: usize = 10_000;
/// The largest gateway frame read (Discord's payloads are far smaller).
const MAX_FRAME_BYTES: usize = 8 * 1024 * 1024;

/// A gateway session that can be resumed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Session {
    pub session_id: String,
    pub resume_gateway_url: String,
    #[serde(skip)]
    pub seq: Option<u64>,
}

/// How one connection ended.
#[derive(Debug)]
enum End {
    Shutdown,
    /// Connect again and resume the session (a drop, a zombie, op 7, a resumable op 9).
    Resume(String),
    /// Start a new session (op 9 `false`, 4007, 4009).
    Identify(String),
    /// Nothing will work until the setting is fixed.
    Fatal(String),
}

/// `url` with the version and encoding the adapter speaks.
pub fn with_query(url: &str) -> String {
    if url.contains('?') {
        url.to_owned()
    } else {
        format!("{}/?v=10&encoding=json", url.trim_end_matches('/'))
    }
}

/// What a close code means for the next connection.
fn closed(code: u16, reason: &str) -> End {
    match code {
        4004 => End::Fatal(
            "discord: the gateway refused the bot token (close 4004 Authentication failed); check CRABPOT_DISCORD_BOT_TOKEN"
                .into(),
        ),
        4010..=4014 => End::Fatal(format!(
            "discord: the gateway closed the connection for good ({code} {reason}); check the bot's intents (MESSAGE_CONTENT must be enabled for the bot in the Developer Portal) and CRABPOT_DISCORD_BOT_TOKEN"
        )),
        4007 | 4009 => End::Identify(format!("the gateway ended the session ({code} {reason})")),
        _ => End::Resume(format!("the gateway closed the connection ({code} {reason})")),
    }
}

/// A random share of `interval`, for the first heartbeat (so reconnecting bots spread out).
fn jittered(interval: Duration) -> Duration {
    let random = uuid::Uuid::new_v4().as_u128() % 1000;
    interval.mul_f64(random as f64 / 1000.0)
}

/// The stored session and sequence, if any.
async fn load(channel: &DiscordChannel) -> Option<Session> {
    let stored = channel
        .parts
        .central
        .call(|conn| {
            Ok((
                channel_state::get(conn, super::CHANNEL_TYPE, SESSION_KEY)?,
                channel_state::get(conn, super::CHANNEL_TYPE, SEQ_KEY)?,
            ))
        })
        .await;
    match stored {
        Ok((Some(session), seq)) => match serde_json::from_str::<Session>(&session) {
            Ok(mut session) => {
                session.seq = seq.and_then(|seq| seq.parse().ok());
                Some(session)
            }
            Err(e) => {
                tracing::warn!(error = %e, "the stored discord gateway session is unreadable; identifying anew");
                None
            }
        },
        Ok((None, _)) => None,
        Err(e) => {
            tracing::warn!(error = %e, "reading the discord gateway session failed; identifying anew");
            None
        }
    }
}

async fn store_seq(channel: &DiscordChannel, seq: u64) -> Result<(), String> {
    channel
        .parts
        .central
        .call(move |conn| channel_state::put(conn, super::CHANNEL_TYPE, SEQ_KEY, &seq.to_string()))
        .await
        .map_err(|e| format!("storing the gateway sequence failed: {e}"))
}

async fn store_session(channel: &DiscordChannel, session: Option<&Session>) {
    let value = session.and_then(|session| serde_json::to_string(session).ok());
    let result = channel
        .parts
        .central
        .call(move |conn| match value {
            Some(value) => channel_state::put(conn, super::CHANNEL_TYPE, SESSION_KEY, &value),
            None => {
                channel_state::delete(conn, super::CHANNEL_TYPE, SESSION_KEY)?;
                channel_state::delete(conn, super::CHANNEL_TYPE, SEQ_KEY)
            }
        })
        .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "storing the discord gateway session failed");
    }
}

/// Runs the gateway until `shutdown`; `Err` only for a failure no retry fixes.
pub async fn run(
    channel: Arc<DiscordChannel>,
    context: ChannelContext,
    shutdown: CancellationToken,
    gateway_url: String,
) -> Result<(), ChannelError> {
    let mut session = load(&channel).await;
    let mut failures: u32 = 0;
    loop {
        let url = with_query(session.as_ref().map_or(gateway_url.as_str(), |session| {
            session.resume_gateway_url.as_str()
        }));
        let end = tokio::select! {
            _ = shutdown.cancelled() => End::Shutdown,
            end = connection(&channel, &context, &shutdown, &url, &mut session) => end,
        };
        // A connection that got as far as READY or RESUMED starts the back-off afresh.
        if channel.is_connected() {
            failures = 0;
        }
        let wait = match end {
            End::Shutdown => return Ok(()),
            End::Fatal(message) => {
                tracing::error!("{message}");
                channel.set_failing(&message);
                return Err(ChannelError::Rejected(message));
            }
            End::Resume(reason) => {
                failures += 1;
                tracing::info!(reason = %reason, "discord gateway: reconnecting to resume");
                channel.set_degraded(&reason);
                if failures >= MAX_RESUME_FAILURES && session.is_some() {
                    // The resume URL may be gone for good: start over at the gateway.
                    tracing::warn!(
                        "discord gateway: resuming keeps failing; starting a new session"
                    );
                    session = None;
                    store_session(&channel, None).await;
                }
                Duration::from_millis(250 * u64::from(failures.min(40)).pow(2))
                    .min(Duration::from_secs(60))
            }
            End::Identify(reason) => {
                failures += 1;
                tracing::info!(reason = %reason, "discord gateway: starting a new session");
                channel.set_degraded(&reason);
                session = None;
                store_session(&channel, None).await;
                // Discord asks for 1-5 s before identifying again.
                Duration::from_secs(1) + jittered(Duration::from_secs(2))
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

#[derive(serde::Deserialize)]
struct Frame {
    op: u8,
    #[serde(default)]
    d: Value,
    #[serde(default)]
    s: Option<u64>,
    #[serde(default)]
    t: Option<String>,
}

/// One connection, from connect to its end.
async fn connection(
    channel: &Arc<DiscordChannel>,
    context: &ChannelContext,
    shutdown: &CancellationToken,
    url: &str,
    session: &mut Option<Session>,
) -> End {
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(MAX_FRAME_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES));
    let connected = tokio_tungstenite::connect_async_with_config(url, Some(config), false).await;
    let mut socket = match connected {
        Ok((socket, _)) => socket,
        Err(e) => return End::Resume(format!("connecting to the gateway failed: {e}")),
    };
    let hello = match tokio::time::timeout(HELLO_TIMEOUT, socket.next()).await {
        Ok(Some(Ok(Message::Text(text)))) => serde_json::from_str::<Frame>(&text).ok(),
        Ok(Some(Ok(Message::Close(frame)))) => {
            return frame.map_or(End::Resume("closed before Hello".into()), |frame| {
                closed(frame.code.into(), &frame.reason)
            });
        }
        _ => None,
    };
    let Some(interval) = hello
        .filter(|frame| frame.op == 10)
        .and_then(|frame| frame.d.get("heartbeat_interval").and_then(Value::as_u64))
        .map(|ms| Duration::from_millis(ms.clamp(100, 600_000)))
    else {
        return End::Resume("the gateway did not say Hello".into());
    };
    let token = channel.config.bot_token.expose_secret();
    let opening = match session.as_ref() {
        Some(session) => json!({"op": 6, "d": {
            "token": token, "session_id": session.session_id, "seq": session.seq,
        }}),
        None => json!({"op": 2, "d": {
            "token": token, "intents": INTENTS,
            "properties": {"os": std::env::consts::OS, "browser": "crabpot", "device": "crabpot"},
        }}),
    };
    if let Err(e) = socket.send(Message::text(opening.to_string())).await {
        return End::Resume(format!("sending identify/resume failed: {e}"));
    }
    let mut last_seq = session.as_ref().and_then(|session| session.seq);
    let mut next_beat = Instant::now() + jittered(interval);
    let mut acked = true;
    // Dispatches are taken in one at a time, in order, while the socket keeps being read
    // and heartbeats keep going (a slow download must not make the connection a zombie).
    let mut queue: VecDeque<Frame> = VecDeque::new();
    let mut running: Option<(Option<u64>, BoxFuture<'static, Handled>)> = None;
    loop {
        if running.is_none()
            && let Some(frame) = queue.pop_front()
        {
            let seq = frame.s;
            running = Some((
                seq,
                Box::pin(dispatch(Arc::clone(channel), context.clone(), frame)),
            ));
        }
        let step = tokio::select! {
            _ = shutdown.cancelled() => Step::Shutdown,
            _ = tokio::time::sleep_until(next_beat) => Step::Beat,
            handled = async {
                match running.as_mut() {
                    Some((_, handling)) => handling.await,
                    None => std::future::pending().await,
                }
            } => Step::Handled(handled),
            message = socket.next() => Step::Message(message),
        };
        let message = match step {
            Step::Shutdown => {
                // Not 1000/1001: those end the session, and a restart must resume it.
                let close = CloseFrame {
                    code: CloseCode::from(4000),
                    reason: "restarting".into(),
                };
                let _ =
                    tokio::time::timeout(Duration::from_secs(2), socket.close(Some(close))).await;
                return End::Shutdown;
            }
            Step::Beat => {
                if !acked {
                    return End::Resume("no heartbeat ack came (zombie connection)".into());
                }
                acked = false;
                next_beat = Instant::now() + interval;
                let beat = json!({"op": 1, "d": last_seq}).to_string();
                if let Err(e) = socket.send(Message::text(beat)).await {
                    return End::Resume(format!("sending a heartbeat failed: {e}"));
                }
                continue;
            }
            Step::Handled(handled) => {
                let seq = running.take().and_then(|(seq, _)| seq);
                match handled {
                    Err(reason) => return End::Resume(reason),
                    Ok(Some(ready)) => *session = Some(ready),
                    Ok(None) => {}
                }
                if let Some(seq) = seq {
                    if let Some(session) = session.as_mut() {
                        session.seq = Some(seq);
                    }
                    if let Err(reason) = store_seq(channel, seq).await {
                        return End::Resume(reason);
                    }
                }
                continue;
            }
            Step::Message(message) => message,
        };
        let text = match message {
            None => return End::Resume("the gateway connection ended".into()),
            Some(Err(e)) => return End::Resume(format!("the gateway connection failed: {e}")),
            Some(Ok(Message::Close(frame))) => {
                return frame.map_or(End::Resume("closed without a code".into()), |frame| {
                    closed(frame.code.into(), &frame.reason)
                });
            }
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(_)) => continue,
        };
        let frame = match serde_json::from_str::<Frame>(&text) {
            Ok(frame) => frame,
            Err(e) => {
                tracing::warn!(error = %e, "discord gateway: an unreadable frame was skipped");
                continue;
            }
        };
        match frame.op {
            0 => {
                if frame.s.is_some() {
                    last_seq = frame.s;
                }
                if queue.len() >= MAX_QUEUED {
                    // Dropped here, replayed after the resume: nothing is lost.
                    return End::Resume("too many dispatches waiting".into());
                }
                queue.push_back(frame);
            }
            1 => {
                let beat = json!({"op": 1, "d": last_seq}).to_string();
                if let Err(e) = socket.send(Message::text(beat)).await {
                    return End::Resume(format!("sending a heartbeat failed: {e}"));
                }
            }
            7 => return End::Resume("the gateway asked to reconnect (op 7)".into()),
            9 => {
                return if frame.d.as_bool() == Some(true) {
                    End::Resume("the session was invalidated, resumable (op 9)".into())
                } else {
                    End::Identify("the session was invalidated (op 9)".into())
                };
            }
            11 => acked = true,
            _ => {}
        }
    }
}

/// What the connection loop waits on.
enum Step {
    Shutdown,
    Beat,
    Handled(Handled),
    Message(Option<Result<Message, tokio_tungstenite::tungstenite::Error>>),
}

/// A dispatch taken in (with the new session, for READY), or why not: then the connection
/// is resumed and Discord replays it.
type Handled = Result<Option<Session>, String>;

/// Handles one dispatch.
async fn dispatch(channel: Arc<DiscordChannel>, context: ChannelContext, frame: Frame) -> Handled {
    match frame.t.as_deref() {
        Some("READY") => {
            let session_id = frame.d.get("session_id").and_then(Value::as_str);
            let resume = frame.d.get("resume_gateway_url").and_then(Value::as_str);
            if let Some(bot_id) = frame.d.pointer("/user/id").and_then(Value::as_str) {
                channel.set_bot_id(bot_id);
            }
            tracing::info!("discord gateway: ready");
            channel.set_connected();
            context.channel_arrived(super::CHANNEL_TYPE);
            match (session_id, resume) {
                (Some(session_id), Some(resume)) => {
                    let ready = Session {
                        session_id: session_id.to_owned(),
                        resume_gateway_url: resume.to_owned(),
                        seq: frame.s,
                    };
                    store_session(&channel, Some(&ready)).await;
                    Ok(Some(ready))
                }
                _ => {
                    tracing::warn!("discord READY named no session; a drop will identify anew");
                    Ok(None)
                }
            }
        }
        Some("RESUMED") => {
            tracing::info!("discord gateway: resumed");
            channel.set_connected();
            Ok(None)
        }
        Some("GUILD_CREATE") => {
            channel.threads.learn_guild(&frame.d);
            Ok(None)
        }
        Some("THREAD_CREATE" | "THREAD_UPDATE" | "CHANNEL_CREATE") => {
            channel.threads.learn(&frame.d);
            Ok(None)
        }
        Some("MESSAGE_CREATE") => channel
            .receive_message(&context, &frame.d)
            .await
            .map(|()| None),
        Some("INTERACTION_CREATE") => channel
            .receive_press(&context, &frame.d)
            .await
            .map(|()| None),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intents_are_the_four_the_adapter_needs() {
        assert_eq!(INTENTS, 1 + 512 + 4096 + 32768);
    }

    #[test]
    fn urls_get_version_and_encoding() {
        assert_eq!(
            with_query("wss://gateway.discord.gg"),
            "wss://gateway.discord.gg/?v=10&encoding=json"
        );
        assert_eq!(
            with_query("ws://127.0.0.1:5/?v=10"),
            "ws://127.0.0.1:5/?v=10"
        );
    }

    #[test]
    fn close_codes_decide_what_comes_next() {
        assert!(
            matches!(closed(4004, ""), End::Fatal(m) if m.contains("CRABPOT_DISCORD_BOT_TOKEN"))
        );
        assert!(matches!(
            closed(4014, "Disallowed intent(s)"),
            End::Fatal(_)
        ));
        assert!(matches!(closed(4009, ""), End::Identify(_)));
        assert!(matches!(closed(4000, ""), End::Resume(_)));
        assert!(matches!(closed(1006, ""), End::Resume(_)));
    }
}
