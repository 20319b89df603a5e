//! Splicing an allowed tunnel: [`splice`] copies bytes both ways between the container's
//! upgraded `CONNECT` connection and the destination, counting them in [`ByteCounters`], until
//! both sides are done or a bound ends it ([`TunnelLimits`]: idle time and total duration),
//! or the host shuts down. It says how it ended ([`TunnelEnd`]).
//!
//! A half-close is passed on: when one side stops sending, the other side's write half is
//! shut down and the other direction keeps flowing (a TLS client's close_notify, git's
//! request ending while the pack still streams).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long one tunnel may live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TunnelLimits {
    /// With no byte in either direction for this long, the tunnel is closed.
    pub idle_timeout: Duration,
    /// However busy, a tunnel is closed after this long.
    pub max_duration: Duration,
}

impl Default for TunnelLimits {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(5 * 60),
            max_duration: Duration::from_secs(60 * 60),
        }
    }
}

/// Bytes through a tunnel or a forwarded request so far, readable while it is still open.
#[derive(Clone, Debug, Default)]
pub struct ByteCounters {
    /// Container to destination.
    pub up: Arc<AtomicU64>,
    /// Destination to container.
    pub down: Arc<AtomicU64>,
}

impl ByteCounters {
    pub fn up(&self) -> u64 {
        self.up.load(Ordering::Relaxed)
    }

    pub fn down(&self) -> u64 {
        self.down.load(Ordering::Relaxed)
    }
}

/// Why a tunnel ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TunnelEnd {
    /// Both sides finished (or one broke the connection).
    Closed,
    /// Nothing moved for the idle timeout.
    Idle,
    /// The total duration cap was reached.
    MaxDuration,
    /// The host is shutting down.
    Shutdown,
}

impl TunnelEnd {
    pub fn describe(self) -> &'static str {
        match self {
            TunnelEnd::Closed => "closed",
            TunnelEnd::Idle => "closed after the idle timeout",
            TunnelEnd::MaxDuration => "closed at the tunnel duration cap",
            TunnelEnd::Shutdown => "closed at host shutdown",
        }
    }
}

/// The size of each copy buffer (two per tunnel).
const BUFFER_BYTES: usize = 16 * 1024;

/// Copies both ways between `client` and `server` until the tunnel ends.
pub async fn splice<C, S>(
    client: C,
    server: S,
    limits: TunnelLimits,
    counters: &ByteCounters,
    shutdown: &CancellationToken,
) -> TunnelEnd
where
    C: AsyncRead + AsyncWrite + Unpin,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let started = Instant::now();
    // Milliseconds after `started` of the last byte moved, in either direction.
    let last_activity = AtomicU64::new(0);
    let (client_read, client_write) = tokio::io::split(client);
    let (server_read, server_write) = tokio::io::split(server);
    let up = copy(
        client_read,
        server_write,
        &counters.up,
        &last_activity,
        started,
    );
    let down = copy(
        server_read,
        client_write,
        &counters.down,
        &last_activity,
        started,
    );
    let both = async {
        tokio::join!(up, down);
    };
    let mut both = std::pin::pin!(both);
    let deadline = started + limits.max_duration;
    loop {
        let idle_at = started
            + Duration::from_millis(last_activity.load(Ordering::Relaxed))
            + limits.idle_timeout;
        tokio::select! {
            () = both.as_mut() => return TunnelEnd::Closed,
            () = shutdown.cancelled() => return TunnelEnd::Shutdown,
            () = tokio::time::sleep_until(idle_at.min(deadline)) => {
                let now = Instant::now();
                if now >= deadline {
                    return TunnelEnd::MaxDuration;
                }
                let idle_at = started
                    + Duration::from_millis(last_activity.load(Ordering::Relaxed))
                    + limits.idle_timeout;
                if now >= idle_at {
                    return TunnelEnd::Idle;
                }
                // Bytes moved while we slept: wait again from the new last activity.
            }
        }
    }
}

/// One direction: read, write, count, until end of stream or an error; then shut down the
/// writing side so the peer sees the end.
async fn copy<R, W>(
    mut from: R,
    mut to: W,
    counter: &AtomicU64,
    last_activity: &AtomicU64,
    started: Instant,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buffer = vec![0_u8; BUFFER_BYTES];
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if to.write_all(&buffer[..n]).await.is_err() {
            break;
        }
        counter.fetch_add(n as u64, Ordering::Relaxed);
        let elapsed = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        last_activity.store(elapsed, Ordering::Relaxed);
    }
    let _ = to.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bytes_pass_both_ways_and_are_counted() {
        let (client, mut container) = tokio::io::duplex(1024);
        let (server, mut destination) = tokio::io::duplex(1024);
        let counters = ByteCounters::default();
        let shutdown = CancellationToken::new();
        let tunnel = {
            let counters = counters.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                splice(
                    client,
                    server,
                    TunnelLimits::default(),
                    &counters,
                    &shutdown,
                )
                .await
            })
        };
        container.write_all(b"hello").await.unwrap();
        container.shutdown().await.unwrap();
        let mut got = Vec::new();
        destination.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"hello");
        // The other direction still flows after the container's half-close.
        destination.write_all(b"world!").await.unwrap();
        drop(destination);
        let mut back = Vec::new();
        container.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"world!");
        assert_eq!(tunnel.await.unwrap(), TunnelEnd::Closed);
        assert_eq!((counters.up(), counters.down()), (5, 6));
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_tunnel_is_closed() {
        let (client, _container) = tokio::io::duplex(64);
        let (server, _destination) = tokio::io::duplex(64);
        let limits = TunnelLimits {
            idle_timeout: Duration::from_secs(300),
            max_duration: Duration::from_secs(3600),
        };
        let end = splice(
            client,
            server,
            limits,
            &ByteCounters::default(),
            &CancellationToken::new(),
        )
        .await;
        assert_eq!(end, TunnelEnd::Idle);
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_tunnel_is_cut_at_the_duration_cap() {
        let (client, mut container) = tokio::io::duplex(64);
        let (server, mut destination) = tokio::io::duplex(64);
        let limits = TunnelLimits {
            idle_timeout: Duration::from_secs(300),
            max_duration: Duration::from_secs(3600),
        };
        // Keep the tunnel busy: a byte every minute, read on the far side, forever.
        let chatter = tokio::spawn(async move {
            let mut byte = [0_u8; 1];
            loop {
                if container.write_all(b"x").await.is_err() {
                    return;
                }
                if destination.read_exact(&mut byte).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
        });
        let counters = ByteCounters::default();
        let end = splice(client, server, limits, &counters, &CancellationToken::new()).await;
        assert_eq!(end, TunnelEnd::MaxDuration);
        assert!(counters.up() >= 59, "{}", counters.up());
        chatter.abort();
    }
}
