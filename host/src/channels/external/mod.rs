//! Out-of-process channel adapters: a platform adapter written in any language connects to
//! `data/adapters.sock` (mode 0600), authenticates with the token `crabpot adapters add NAME`
//! printed, and speaks the JSON-lines protocol of docs/adapter-protocol.md (`wire`).
//!
//! - [`ExternalAdapters`] is the hub: the socket's accept loop, the handshake and one task per
//!   connection (`connection`), and one [`ExternalChannel`] per registered adapter, put in
//!   `Channels` at the host's start (or at `adapters add`) whether or not the adapter is
//!   connected, so rows for an adapter that is away wait instead of being refused.
//! - [`ExternalChannel`] (`channel`) turns each `Channel` call into a request line and waits
//!   for its result; an adapter that is away, drops or stalls makes the call
//!   `NoRecipient`, and its next hello brings the waiting rows back (`channel_arrived`).
//! - `token` makes and checks tokens; the central DB keeps their SHA-256 only
//!   (`db::central::adapters`).
//!
//! Bounds ([`ExternalLimits`]): connections (each with a permit of the host's
//! [`FdBudget`]), line length, time to say hello, requests outstanding and lines queued per
//! adapter, bad lines before a disconnect, and a write timeout: an adapter that stops reading
//! is closed and holds up nothing else. Repeated warnings go through a [`LogGate`].

mod capabilities;
mod channel;
mod connection;
mod link;
pub mod token;
pub mod wire;

#[cfg(test)]
mod tests;

pub use channel::ExternalChannel;

use crate::channels::Channels;
use crate::channels::cli::MAX_LINE_BYTES;
use crate::db::central::adapters::{self, Adapter};
use crate::db::{DbError, DbThread};
use crate::edge::{ChannelContext, Health};
use crate::fd_budget::{AcceptBackoff, BudgetedListener, FdBudget};
use crate::log_gate::LogGate;
use rusqlite::Connection;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The socket's file name in the data dir.
pub const SOCKET_NAME: &str = "adapters.sock";

/// Channel types an adapter may never take: the host serves them itself (the terminal, the
/// web chat), even before their adapter is registered.
pub const RESERVED_CHANNEL_TYPES: &[&str] = &["cli", "web"];

/// How long repeated identical adapter warnings are coalesced.
const LOG_WINDOW: Duration = Duration::from_secs(30);

/// What adapters may hold of the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExternalLimits {
    /// Connections open at once (said hello or not); past it the socket stops accepting.
    pub max_connections: usize,
    /// The longest line an adapter may send (at most the cli's 1 MiB).
    pub max_line_bytes: usize,
    /// Time from connect to a complete `hello`.
    pub hello_timeout: Duration,
    /// Time for the result of one host request; past it the adapter is stalled and closed.
    pub request_timeout: Duration,
    /// Host requests waiting for their results at once, per adapter; more wait their turn.
    pub max_outstanding: usize,
    /// Lines queued for one adapter; an adapter this far behind is not reading, and closed.
    pub queue_lines: usize,
    /// Inbound events and answers queued for the router, per connection; past it the host
    /// stops reading from that adapter until the router catches up.
    pub inbound_queue: usize,
    /// Lines that are not valid JSON of a known type before the connection is closed.
    pub max_bad_lines: usize,
    /// Time one line may take to go into the adapter's socket.
    pub write_timeout: Duration,
}

impl Default for ExternalLimits {
    fn default() -> Self {
        Self {
            max_connections: 64,
            max_line_bytes: MAX_LINE_BYTES,
            hello_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            max_outstanding: 64,
            queue_lines: 256,
            inbound_queue: 64,
            max_bad_lines: 5,
            write_timeout: Duration::from_secs(5),
        }
    }
}

/// Why a change to the registered adapters was refused.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    /// The host serves this channel type itself. Not retryable.
    #[error("channel type {0:?} is served by the host itself; choose another")]
    Reserved(String),
    /// Not retryable.
    #[error(transparent)]
    Token(#[from] token::TokenError),
    /// Retryable when the database was busy.
    #[error(transparent)]
    Db(#[from] DbError),
}

/// A new adapter and its token, shown once.
#[derive(Clone, Debug)]
pub struct NewAdapter {
    pub adapter: Adapter,
    pub token: String,
}

/// The out-of-process adapters: the socket and one [`ExternalChannel`] per adapter.
pub struct ExternalAdapters {
    central: Arc<DbThread<Connection>>,
    channels: Arc<Channels>,
    by_type: Mutex<HashMap<String, Arc<ExternalChannel>>>,
    listener: Mutex<Option<UnixListener>>,
    /// Where the socket is, once bound (for `adapters add` to tell).
    socket: Mutex<Option<PathBuf>>,
    fd_budget: Arc<FdBudget>,
    limits: ExternalLimits,
    log_gate: Arc<LogGate>,
    next_generation: AtomicU64,
}

impl ExternalAdapters {
    pub fn new(
        central: Arc<DbThread<Connection>>,
        channels: Arc<Channels>,
        fd_budget: Arc<FdBudget>,
        limits: ExternalLimits,
    ) -> Arc<Self> {
        let limits = ExternalLimits {
            max_line_bytes: limits.max_line_bytes.clamp(1, MAX_LINE_BYTES),
            ..limits
        };
        Arc::new(Self {
            central,
            channels,
            by_type: Mutex::new(HashMap::new()),
            listener: Mutex::new(None),
            socket: Mutex::new(None),
            fd_budget,
            limits,
            log_gate: Arc::new(LogGate::new(LOG_WINDOW)),
            next_generation: AtomicU64::new(1),
        })
    }

    /// `<data dir>/adapters.sock`.
    pub fn socket_path(data_dir: &Path) -> PathBuf {
        data_dir.join(SOCKET_NAME)
    }

    /// Binds the socket with mode 0600, replacing a stale socket file.
    pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
        // One binder for every private socket of the host: a stale socket is replaced, any
        // other file there is refused, the mode is 0600.
        crate::proxy::bind_session_socket(path, None).map_err(std::io::Error::other)
    }

    /// Gives the hub the socket [`ExternalAdapters::serve`] serves.
    pub fn listen(&self, listener: UnixListener) {
        let path = listener
            .local_addr()
            .ok()
            .and_then(|address| address.as_pathname().map(Path::to_owned));
        *self.socket.lock().unwrap_or_else(PoisonError::into_inner) = path;
        *self.listener.lock().unwrap_or_else(PoisonError::into_inner) = Some(listener);
    }

    /// The socket adapters connect to, once bound.
    pub fn socket(&self) -> Option<PathBuf> {
        self.socket
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The gate its repeated warnings go through (`serve` runs its flusher).
    pub fn log_gate(&self) -> Arc<LogGate> {
        Arc::clone(&self.log_gate)
    }

    /// Registers a channel for every adapter in the central DB, connected or not. Call it
    /// before delivery starts, so no row for an adapter finds its channel missing. Returns
    /// how many were registered.
    pub async fn load(&self) -> Result<usize, DbError> {
        let registered = self
            .central
            .call(|conn| adapters::list_adapters(conn))
            .await?;
        let mut count = 0;
        for adapter in &registered {
            if self.reserved(&adapter.channel_type) {
                tracing::warn!(adapter = %adapter.name, channel = %adapter.channel_type,
                    "the host serves this channel type itself; the adapter is ignored");
                continue;
            }
            self.channel_for(adapter);
            count += 1;
        }
        Ok(count)
    }

    /// Whether `channel_type` is served by the host itself (not by an adapter).
    pub fn reserved(&self, channel_type: &str) -> bool {
        RESERVED_CHANNEL_TYPES.contains(&channel_type)
            || (self.channels.get(channel_type).is_some() && !self.owns(channel_type))
    }

    fn owns(&self, channel_type: &str) -> bool {
        self.by_type
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(channel_type)
    }

    /// The channel of `adapter`, made and registered in `Channels` if it is new.
    fn channel_for(&self, adapter: &Adapter) -> Arc<ExternalChannel> {
        let mut by_type = self.by_type.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(channel) = by_type.get(&adapter.channel_type) {
            channel.restore(&adapter.name);
            return Arc::clone(channel);
        }
        let channel = ExternalChannel::new(&adapter.channel_type, &adapter.name, &self.limits);
        by_type.insert(adapter.channel_type.clone(), Arc::clone(&channel));
        self.channels.register(channel.clone());
        channel
    }

    fn channel(&self, channel_type: &str) -> Option<Arc<ExternalChannel>> {
        self.by_type
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(channel_type)
            .cloned()
    }

    /// `crabpot adapters add`: a new adapter for `channel_type` with a fresh token, whose
    /// channel is registered at once (so its rows wait for it).
    pub async fn add(&self, name: &str, channel_type: &str) -> Result<NewAdapter, AdapterError> {
        if self.reserved(channel_type) {
            return Err(AdapterError::Reserved(channel_type.to_owned()));
        }
        let token = token::generate()?;
        let hash = token::hash(&token);
        let (name_owned, type_owned) = (name.to_owned(), channel_type.to_owned());
        let adapter = self
            .central
            .call(move |conn| {
                adapters::create_adapter(
                    conn,
                    &name_owned,
                    &type_owned,
                    &hash,
                    protocol::time::now_ms(),
                )
            })
            .await?;
        self.channel_for(&adapter);
        tracing::info!(adapter = %adapter.name, channel = %adapter.channel_type, "adapter added");
        Ok(NewAdapter { adapter, token })
    }

    /// `crabpot adapters remove`: the token stops working and the live connection is
    /// closed. The channel stays registered until the host restarts, and its rows wait (an
    /// adapter added again for the type gets them).
    pub async fn remove(&self, name: &str) -> Result<Adapter, AdapterError> {
        let name_owned = name.to_owned();
        let adapter = self
            .central
            .call(move |conn| adapters::remove_adapter(conn, &name_owned))
            .await?;
        if let Some(channel) = self.channel(&adapter.channel_type)
            && let Some(link) = channel.revoke()
        {
            link.close(Some(
                "the adapter was removed (crabpot adapters remove)".into(),
            ));
        }
        tracing::info!(adapter = %adapter.name, channel = %adapter.channel_type, "adapter removed");
        Ok(adapter)
    }

    /// Every adapter with its health, by name.
    pub async fn list(&self) -> Result<Vec<(Adapter, Health)>, DbError> {
        let registered = self
            .central
            .call(|conn| adapters::list_adapters(conn))
            .await?;
        Ok(registered
            .into_iter()
            .map(|adapter| {
                let health = match self.channel(&adapter.channel_type) {
                    Some(channel) => crate::edge::Channel::health(channel.as_ref()),
                    None => Health {
                        state: crate::edge::HealthState::Stopped,
                        last_error: Some(
                            "the host serves this channel type itself; the adapter is ignored"
                                .into(),
                        ),
                    },
                };
                (adapter, health)
            })
            .collect())
    }

    /// Accepts adapters until `shutdown`, pushing what they send through `context`.
    pub async fn serve(
        self: Arc<Self>,
        context: ChannelContext,
        tasks: TaskTracker,
        shutdown: CancellationToken,
    ) {
        let Some(listener) = self
            .listener
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
            tracing::error!("the adapters' socket was never bound (or served twice)");
            return;
        };
        let listener = BudgetedListener::new(
            listener,
            Arc::clone(&self.fd_budget),
            self.limits.max_connections,
        );
        let mut backoff = AcceptBackoff::new();
        loop {
            let accepted = tokio::select! {
                () = shutdown.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, permit)) => {
                    backoff.succeeded();
                    let this = Arc::clone(&self);
                    let context = context.clone();
                    let shutdown = shutdown.clone();
                    tasks.spawn(async move {
                        this.connection(stream, context, shutdown).await;
                        // Freed only once the connection (and so its descriptor) is gone.
                        drop(permit);
                    });
                }
                Err(error) => {
                    let pause = backoff.failed();
                    if self.log_gate.should_log("adapters.accept") {
                        tracing::warn!(%error, pause_ms = pause.as_millis(), "adapter accept failed");
                    }
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(pause) => {}
                    }
                }
            }
        }
    }
}
