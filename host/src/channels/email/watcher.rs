//! [`Watcher`]: the inbound loop. It logs in, selects the mailbox, takes every message after
//! the last UID taken, then waits for more in IDLE (or, where the server has no IDLE, for the
//! poll interval), and does it again; a lost connection is made again after a back-off.
//!
//! The position is `uid:<mailbox>` in `channel_state`: `<UIDVALIDITY>:<last UID taken>`,
//! moved past a message only once [`Inbound::take`] returned `Ok` (the message is durable),
//! so a restart neither loses nor repeats mail. On the first start, and when the mailbox's
//! UIDVALIDITY changed (it was recreated, its UIDs mean nothing now), the watcher starts
//! after the newest message: a new bot does not answer the mailbox's history.

use super::CHANNEL_TYPE;
use super::imap::{Imap, ImapError};
use super::inbound::Inbound;
use crate::config::email::EmailConfig;
use crate::db::DbThread;
use crate::db::central::channel_state;
use crate::edge::{ChannelError, Health, HealthState};
use rusqlite::Connection;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio_rustls::rustls::ClientConfig;
use tokio_util::sync::CancellationToken;

/// The largest message downloaded whole: an attachment at the cap, base64-encoded, and room
/// for the text. Larger ones are taken as their header with a note.
pub const MAX_MESSAGE_BYTES: u64 =
    crate::channels::staging::MAX_STAGED_BYTES / 3 * 4 + 4 * 1024 * 1024;

/// The longest back-off between failed connections.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Where the watcher is in one mailbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    pub uid_validity: u32,
    pub last_uid: u32,
}

impl Position {
    pub fn parse(text: &str) -> Option<Position> {
        let (validity, uid) = text.split_once(':')?;
        Some(Position {
            uid_validity: validity.parse().ok()?,
            last_uid: uid.parse().ok()?,
        })
    }

    pub fn render(self) -> String {
        format!("{}:{}", self.uid_validity, self.last_uid)
    }
}

/// The `channel_state` key of a mailbox's position.
pub fn position_key(mailbox: &str) -> String {
    format!("uid:{mailbox}")
}

pub struct Watcher {
    pub config: EmailConfig,
    pub tls: Arc<ClientConfig>,
    pub inbound: Inbound,
    pub central: Arc<DbThread<Connection>>,
    pub health: Arc<Mutex<Health>>,
}

/// How one connection ended.
enum Ended {
    Shutdown,
    Failed(ImapError),
}

impl Watcher {
    fn set_health(&self, health: Health) {
        *self.health.lock().unwrap_or_else(PoisonError::into_inner) = health;
    }

    async fn stored_position(&self) -> Result<Option<Position>, ImapError> {
        let key = position_key(&self.config.mailbox);
        let read = self
            .central
            .call(move |conn| channel_state::get(conn, CHANNEL_TYPE, &key))
            .await
            .map_err(|e| ImapError::Connection(format!("reading the stored UID failed: {e}")))?;
        // An unreadable value must not read as "new": that would skip mail. Fail instead.
        match read {
            None => Ok(None),
            Some(text) => Position::parse(&text).map(Some).ok_or_else(|| {
                ImapError::Mailbox(
                    self.config.mailbox.clone(),
                    format!("the stored position {text:?} is unreadable"),
                )
            }),
        }
    }

    async fn store_position(&self, position: Position) -> Result<(), ImapError> {
        let key = position_key(&self.config.mailbox);
        let value = position.render();
        self.central
            .call(move |conn| channel_state::put(conn, CHANNEL_TYPE, &key, &value))
            .await
            .map_err(|e| ImapError::Connection(format!("storing the UID failed: {e}")))
    }

    /// Watches until `shutdown`; an `Err` is a failure for good (a refused login).
    pub async fn run(&self, shutdown: CancellationToken) -> Result<(), ChannelError> {
        let mut backoff = Duration::from_secs(1);
        loop {
            let started = std::time::Instant::now();
            match self.connected(&shutdown).await {
                Ended::Shutdown => return Ok(()),
                Ended::Failed(error) if !error.is_retryable() => {
                    let message = format!("email: {error}");
                    tracing::error!(error = %message, "the email adapter stops");
                    self.set_health(Health::failing(message.clone()));
                    return Err(ChannelError::Rejected(message));
                }
                Ended::Failed(error) => {
                    // A connection that lasted is a new outage, not the same one again.
                    if started.elapsed() > MAX_BACKOFF {
                        backoff = Duration::from_secs(1);
                    }
                    tracing::warn!(%error, ?backoff, "the IMAP connection failed");
                    self.set_health(Health {
                        state: HealthState::Degraded,
                        last_error: Some(format!("email: {error}")),
                    });
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// One connection: log in, catch up, wait, catch up, ... until it fails or shutdown.
    async fn connected(&self, shutdown: &CancellationToken) -> Ended {
        let result = tokio::select! {
            () = shutdown.cancelled() => return Ended::Shutdown,
            result = self.open() => result,
        };
        let (mut imap, mut position) = match result {
            Ok(opened) => opened,
            Err(error) => return Ended::Failed(error),
        };
        self.set_health(Health::connected());
        tracing::info!(mailbox = %self.config.mailbox, idle = imap.idle, "email connected");
        loop {
            let caught_up = tokio::select! {
                () = shutdown.cancelled() => return Ended::Shutdown,
                caught_up = self.catch_up(&mut imap, &mut position) => caught_up,
            };
            match caught_up {
                Ok(true) => {}
                Ok(false) => {
                    // A message must be taken again: wait a little, then ask from it.
                    tokio::select! {
                        () = shutdown.cancelled() => return Ended::Shutdown,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                    continue;
                }
                Err(error) => return Ended::Failed(error),
            }
            let waited = tokio::select! {
                // The connection is dropped with the wait: the server sees it close.
                () = shutdown.cancelled() => return Ended::Shutdown,
                waited = self.wait(imap) => waited,
            };
            imap = match waited {
                Ok(imap) => imap,
                Err(error) => return Ended::Failed(error),
            };
        }
    }

    async fn open(&self) -> Result<(Imap, Position), ImapError> {
        let mut imap = Imap::connect(&self.config, Arc::clone(&self.tls)).await?;
        let selected = imap.select(&self.config.mailbox).await?;
        let stored = self.stored_position().await?;
        let position = match stored {
            Some(position) if position.uid_validity == selected.uid_validity => position,
            other => {
                if other.is_some() {
                    tracing::warn!(
                        mailbox = %self.config.mailbox,
                        "the mailbox's UIDVALIDITY changed; mail from now on is taken"
                    );
                }
                let newest = match selected.uid_next {
                    Some(next) if next > 0 => next - 1,
                    _ => imap.highest_uid().await?,
                };
                let position = Position {
                    uid_validity: selected.uid_validity,
                    last_uid: newest,
                };
                self.store_position(position).await?;
                position
            }
        };
        Ok((imap, position))
    }

    /// Takes every message after the position; `Ok(false)` when one must be taken again.
    async fn catch_up(&self, imap: &mut Imap, position: &mut Position) -> Result<bool, ImapError> {
        for uid in imap.uids_after(position.last_uid).await? {
            let fetched = imap.fetch(uid, MAX_MESSAGE_BYTES).await?;
            if let Err(again) = self.inbound.take(position.uid_validity, uid, fetched).await {
                tracing::warn!(%again, "email not taken yet");
                return Ok(false);
            }
            position.last_uid = uid;
            self.store_position(*position).await?;
        }
        Ok(true)
    }

    /// Waits for new mail: IDLE where the server has it, else the poll interval and a NOOP.
    async fn wait(&self, mut imap: Imap) -> Result<Imap, ImapError> {
        if imap.idle {
            imap.idle(self.config.poll_interval).await
        } else {
            tokio::time::sleep(self.config.poll_interval).await;
            imap.noop().await?;
            Ok(imap)
        }
    }
}
