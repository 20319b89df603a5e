//! The host's file-descriptor budget: [`FdBudget`], and [`BudgetedListener`], the accept side
//! that spends it.
//!
//! Why: every connection a session opens on its `in/proxy.sock`, and every `crabpot chat` on
//! `cli.sock`, costs the host one descriptor. Left unbounded, one session holding thousands of
//! connections runs the host out of descriptors, and then delivery, the central DB, session
//! files and Docker calls fail for every session. So connections are *optional* users of
//! descriptors: each holds an [`FdPermit`], and the budget keeps a reserve that permits never
//! reach, for everything else the host must keep doing.
//!
//! At start, [`FdBudget::from_process`] raises the soft `RLIMIT_NOFILE` to the hard limit and
//! sizes the budget from it. A [`BudgetedListener`] takes a permit (and one of its own
//! connection slots, for a per-listener cap) *before* it calls `accept`: when the budget or
//! the cap is exhausted it simply stops accepting, so further connections wait in the
//! kernel's backlog and cost the host nothing, instead of being accepted and closed in a loop.
//! [`AcceptBackoff`] paces an accept loop after errors.

use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The smallest reserve [`FdBudget::from_process`] keeps for the host's own use.
pub const MIN_RESERVE: usize = 512;

/// Used when the hard limit is "unlimited": far above what any connection count needs.
const UNLIMITED_NOFILE: u64 = 1 << 20;

/// Shares the host's descriptors between optional connections and a reserve. Cheap to share
/// as an `Arc<FdBudget>`: every proxy and the cli channel take permits from one budget.
#[derive(Debug)]
pub struct FdBudget {
    permits: Arc<Semaphore>,
    limit: usize,
    reserve: usize,
}

/// One descriptor's worth of the budget, held for as long as a connection is open.
#[derive(Debug)]
pub struct FdPermit {
    _permit: OwnedSemaphorePermit,
}

impl FdBudget {
    /// A budget of `limit` descriptors of which `reserve` are never handed out: up to
    /// `limit - reserve` permits (none when the reserve covers the whole limit).
    pub fn new(limit: usize, reserve: usize) -> Arc<Self> {
        let permits = limit.saturating_sub(reserve).min(Semaphore::MAX_PERMITS);
        Arc::new(Self {
            permits: Arc::new(Semaphore::new(permits)),
            limit,
            reserve,
        })
    }

    /// A budget with no practical limit: what the old constructors use, so code that does not
    /// pass a budget behaves as before.
    pub fn unlimited() -> Arc<Self> {
        Self::new(Semaphore::MAX_PERMITS, 0)
    }

    /// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns a budget over it, with a
    /// reserve of a quarter of the limit, at least [`MIN_RESERVE`], at most half of it (so
    /// a low limit still leaves connections some room). If the soft limit cannot be raised,
    /// the budget is sized from the soft limit as it is, and the failure is logged.
    pub fn from_process() -> Arc<Self> {
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
        let current = getrlimit(Resource::Nofile);
        let hard = current
            .maximum
            .unwrap_or(UNLIMITED_NOFILE)
            .min(UNLIMITED_NOFILE);
        let soft = current
            .current
            .unwrap_or(UNLIMITED_NOFILE)
            .min(UNLIMITED_NOFILE);
        let limit = if soft < hard {
            let raised = Rlimit {
                current: Some(hard),
                maximum: current.maximum,
            };
            match setrlimit(Resource::Nofile, raised) {
                Ok(()) => hard,
                Err(error) => {
                    tracing::warn!(%error, soft, hard, "cannot raise the open-file limit; keeping the soft limit");
                    soft
                }
            }
        } else {
            soft
        };
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let reserve = Self::reserve_for(limit);
        tracing::debug!(limit, reserve, "file-descriptor budget");
        Self::new(limit, reserve)
    }

    /// The reserve [`FdBudget::from_process`] keeps out of `limit`.
    pub fn reserve_for(limit: usize) -> usize {
        (limit / 4).max(MIN_RESERVE).min(limit / 2)
    }

    /// The descriptor limit this budget was sized from.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The descriptors permits never reach.
    pub fn reserve(&self) -> usize {
        self.reserve
    }

    /// Permits free right now.
    pub fn available(&self) -> usize {
        self.permits.available_permits()
    }

    /// Waits for a permit.
    pub async fn acquire(&self) -> FdPermit {
        // The semaphore is never closed: it lives as long as the budget and nothing calls
        // `close` on it, so acquiring can only wait, never fail.
        match Arc::clone(&self.permits).acquire_owned().await {
            Ok(permit) => FdPermit { _permit: permit },
            Err(_closed) => std::future::pending().await,
        }
    }

    /// A permit if one is free now.
    pub fn try_acquire(&self) -> Option<FdPermit> {
        Arc::clone(&self.permits)
            .try_acquire_owned()
            .ok()
            .map(|permit| FdPermit { _permit: permit })
    }
}

/// What an accepted connection holds while it is open: its slot under the listener's cap and
/// its descriptor permit. Dropping it (after the stream) frees both.
#[derive(Debug)]
pub struct ConnectionPermit {
    _slot: OwnedSemaphorePermit,
    _descriptor: FdPermit,
}

/// A unix listener that accepts only when it holds a connection slot (at most
/// `max_connections` open at once) and a permit from the [`FdBudget`]. While either is
/// missing it does not call `accept` at all.
///
/// The permits are taken before `accept` is called, so a listener waiting for a connection
/// holds the permit of its next one: the budget counts at most one descriptor per listener
/// ahead, which errs on the side of the reserve. (Waiting for readiness without accepting
/// would need an `AsyncFd` over the raw socket, which tokio only offers as `unsafe`.)
#[derive(Debug)]
pub struct BudgetedListener {
    listener: UnixListener,
    budget: Arc<FdBudget>,
    slots: Arc<Semaphore>,
}

impl BudgetedListener {
    /// Wraps a bound listener.
    pub fn new(listener: UnixListener, budget: Arc<FdBudget>, max_connections: usize) -> Self {
        let slots = max_connections.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            listener,
            budget,
            slots: Arc::new(Semaphore::new(slots)),
        }
    }

    /// Connection slots free right now.
    pub fn free_slots(&self) -> usize {
        self.slots.available_permits()
    }

    /// Waits for a free slot and a descriptor permit, in that order, then accepts one
    /// connection. An error (out of descriptors, a connection reset before it was accepted)
    /// is returned as is: the caller backs off with [`AcceptBackoff`].
    ///
    /// Cancel-safe: dropping the future before it returns accepts nothing and frees what it
    /// held.
    pub async fn accept(&self) -> io::Result<(UnixStream, ConnectionPermit)> {
        // Never closed (see `FdBudget::acquire`).
        let slot = match Arc::clone(&self.slots).acquire_owned().await {
            Ok(slot) => slot,
            Err(_closed) => std::future::pending().await,
        };
        let descriptor = self.budget.acquire().await;
        let (stream, _address) = self.listener.accept().await?;
        let permit = ConnectionPermit {
            _slot: slot,
            _descriptor: descriptor,
        };
        Ok((stream, permit))
    }
}

/// Exponential pause after failed accepts: 10 ms doubling to 1 s, back to the start after a
/// success. Without it an accept loop out of descriptors spins and floods the log.
#[derive(Debug)]
pub struct AcceptBackoff {
    next: Duration,
}

impl AcceptBackoff {
    pub const FIRST: Duration = Duration::from_millis(10);
    pub const MAX: Duration = Duration::from_secs(1);

    pub fn new() -> Self {
        Self { next: Self::FIRST }
    }

    /// An accept failed: how long to pause before the next try.
    pub fn failed(&mut self) -> Duration {
        let pause = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        pause
    }

    /// An accept succeeded.
    pub fn succeeded(&mut self) {
        self.next = Self::FIRST;
    }
}

impl Default for AcceptBackoff {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEADLINE: Duration = Duration::from_secs(20);

    #[test]
    fn the_reserve_is_a_quarter_at_least_512_at_most_half() {
        for (limit, reserve) in [
            (1_048_576, 262_144),
            (4096, 1024),
            (1024, 512),
            (600, 300),
            (0, 0),
        ] {
            assert_eq!(FdBudget::reserve_for(limit), reserve, "limit {limit}");
        }
    }

    #[test]
    fn permits_stop_at_the_reserve() {
        let budget = FdBudget::new(10, 8);
        let first = budget.try_acquire().unwrap();
        let _second = budget.try_acquire().unwrap();
        assert!(budget.try_acquire().is_none());
        drop(first);
        assert!(budget.try_acquire().is_some());
        assert_eq!(FdBudget::new(4, 8).available(), 0);
    }

    #[test]
    fn from_process_raises_the_soft_limit_to_the_hard_one() {
        use rustix::process::{Resource, getrlimit};
        let budget = FdBudget::from_process();
        let after = getrlimit(Resource::Nofile);
        let hard = after
            .maximum
            .unwrap_or(UNLIMITED_NOFILE)
            .min(UNLIMITED_NOFILE);
        assert_eq!(
            after.current.map(|soft| soft.min(UNLIMITED_NOFILE)),
            Some(hard)
        );
        assert_eq!(budget.limit() as u64, hard);
        assert_eq!(budget.reserve(), FdBudget::reserve_for(budget.limit()));
        assert_eq!(budget.available(), budget.limit() - budget.reserve());
    }

    #[test]
    fn backoff_doubles_to_a_second_and_resets() {
        let mut backoff = AcceptBackoff::new();
        let pauses: Vec<u128> = (0..9).map(|_| backoff.failed().as_millis()).collect();
        assert_eq!(pauses, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        backoff.succeeded();
        assert_eq!(backoff.failed(), AcceptBackoff::FIRST);
    }

    /// Gives `accept` a fair chance to (wrongly) finish; it must still be waiting.
    async fn assert_still_waiting<F: std::future::Future + Unpin>(accept: &mut F) {
        let finished = tokio::time::timeout(Duration::from_millis(200), accept).await;
        assert!(finished.is_err(), "accepted without a slot or a permit");
    }

    async fn accept_within_deadline(listener: &BudgetedListener) -> (UnixStream, ConnectionPermit) {
        tokio::time::timeout(DEADLINE, listener.accept())
            .await
            .unwrap()
            .unwrap()
    }

    #[tokio::test]
    async fn no_accept_without_a_permit() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("test.sock");
        let budget = FdBudget::new(1, 0);
        let listener =
            BudgetedListener::new(UnixListener::bind(&path).unwrap(), Arc::clone(&budget), 8);
        let _first_client = UnixStream::connect(&path).await.unwrap();
        let (_first, permit) = accept_within_deadline(&listener).await;
        assert_eq!(budget.available(), 0);

        // The second connection waits in the backlog: accept does not finish while the only
        // permit is held, and finishes once it is freed.
        let _second_client = UnixStream::connect(&path).await.unwrap();
        let mut second = Box::pin(listener.accept());
        assert_still_waiting(&mut second).await;
        drop(permit);
        tokio::time::timeout(DEADLINE, second)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn the_listener_cap_holds_while_the_budget_has_room() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("test.sock");
        let listener =
            BudgetedListener::new(UnixListener::bind(&path).unwrap(), FdBudget::unlimited(), 1);
        let _clients = [
            UnixStream::connect(&path).await.unwrap(),
            UnixStream::connect(&path).await.unwrap(),
        ];
        let (_first, permit) = accept_within_deadline(&listener).await;
        assert_eq!(listener.free_slots(), 0);
        let mut second = Box::pin(listener.accept());
        assert_still_waiting(&mut second).await;
        drop(permit);
        tokio::time::timeout(DEADLINE, second)
            .await
            .unwrap()
            .unwrap();
    }
}
