//! Login rate limits: [`LoginLimiter`] counts failed logins per account and per client
//! address in a sliding window (by default 5 per account and 20 per address in 15 minutes)
//! and, past either limit, refuses further attempts until the oldest failure leaves the
//! window. Time comes from a [`Clock`], so tests drive it by hand.
//!
//! Failures for accounts that do not exist count too (the answer must not tell them apart),
//! and the tables are bounded: past [`MAX_KEYS`] keys, the stalest are forgotten.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The most accounts or addresses remembered at once, each.
pub const MAX_KEYS: usize = 10_000;

/// Where "now" comes from.
pub trait Clock: Send + Sync {
    fn now(&self) -> Instant;
}

/// The real clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// How many failures are allowed, within what window.
#[derive(Clone, Copy, Debug)]
pub struct LoginLimits {
    pub per_account: usize,
    pub per_address: usize,
    pub window: Duration,
}

impl Default for LoginLimits {
    fn default() -> Self {
        LoginLimits {
            per_account: 5,
            per_address: 20,
            window: Duration::from_secs(15 * 60),
        }
    }
}

/// Failed logins, per account and per address.
pub struct LoginLimiter {
    limits: LoginLimits,
    clock: Arc<dyn Clock>,
    failures: Mutex<Failures>,
}

#[derive(Default)]
struct Failures {
    by_account: HashMap<String, VecDeque<Instant>>,
    by_address: HashMap<IpAddr, VecDeque<Instant>>,
}

impl LoginLimiter {
    pub fn new(limits: LoginLimits, clock: Arc<dyn Clock>) -> LoginLimiter {
        LoginLimiter {
            limits,
            clock,
            failures: Mutex::new(Failures::default()),
        }
    }

    /// `Err(wait)` when this account or address must wait before trying again.
    pub fn check(&self, account: &str, address: IpAddr) -> Result<(), Duration> {
        let now = self.clock.now();
        let window = self.limits.window;
        let mut failures = self.lock();
        let account_wait = failures
            .by_account
            .get_mut(account)
            .and_then(|times| wait(times, now, window, self.limits.per_account));
        let address_wait = failures
            .by_address
            .get_mut(&address)
            .and_then(|times| wait(times, now, window, self.limits.per_address));
        match account_wait.max(address_wait) {
            Some(wait) => Err(wait),
            None => Ok(()),
        }
    }

    /// Counts a failed login.
    pub fn failed(&self, account: &str, address: IpAddr) {
        let now = self.clock.now();
        let window = self.limits.window;
        let mut failures = self.lock();
        record(&mut failures.by_account, account.to_owned(), now, window);
        record(&mut failures.by_address, address, now, window);
    }

    /// A successful login clears its account's failures (not its address's).
    pub fn succeeded(&self, account: &str) {
        self.lock().by_account.remove(account);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Failures> {
        // A panic while holding the lock leaves only counters behind: keep using them.
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Drops failures older than the window; past the limit, how long until the oldest goes.
fn wait(
    times: &mut VecDeque<Instant>,
    now: Instant,
    window: Duration,
    limit: usize,
) -> Option<Duration> {
    while times
        .front()
        .is_some_and(|at| now.saturating_duration_since(*at) >= window)
    {
        times.pop_front();
    }
    if times.len() < limit {
        return None;
    }
    let oldest = times.front()?;
    Some(window.saturating_sub(now.saturating_duration_since(*oldest)))
}

fn record<K: std::hash::Hash + Eq + Clone>(
    table: &mut HashMap<K, VecDeque<Instant>>,
    key: K,
    now: Instant,
    window: Duration,
) {
    if table.len() >= MAX_KEYS && !table.contains_key(&key) {
        // Forget keys with nothing in the window; if none, the one whose last failure is
        // oldest.
        table.retain(|_, times| {
            times
                .back()
                .is_some_and(|at| now.saturating_duration_since(*at) < window)
        });
        if table.len() >= MAX_KEYS {
            let stalest = table
                .iter()
                .min_by_key(|(_, times)| times.back().copied())
                .map(|(key, _)| key.clone());
            if let Some(stalest) = stalest {
                table.remove(&stalest);
            }
        }
    }
    let times = table.entry(key).or_default();
    times.push_back(now);
    // Only the last `limit`-ish entries matter; keep the queue short under a flood.
    while times.len() > 64 {
        times.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct FakeClock(Mutex<Instant>);

    impl FakeClock {
        fn advance(&self, by: Duration) {
            let mut now = self.0.lock().unwrap();
            *now += by;
        }
    }

    impl Clock for FakeClock {
        fn now(&self) -> Instant {
            *self.0.lock().unwrap()
        }
    }

    fn limiter() -> (Arc<FakeClock>, LoginLimiter) {
        let clock = Arc::new(FakeClock(Mutex::new(Instant::now())));
        let limits = LoginLimits {
            per_account: 3,
            per_address: 5,
            window: Duration::from_secs(100),
        };
        (clock.clone(), LoginLimiter::new(limits, clock))
    }

    const HOME: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const AWAY: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn an_account_is_held_after_its_limit_until_the_window_moves() {
        let (clock, limiter) = limiter();
        for _ in 0..3 {
            assert_eq!(limiter.check("alice", HOME), Ok(()));
            limiter.failed("alice", HOME);
            clock.advance(Duration::from_secs(10));
        }
        // From any address: the account is the target.
        assert_eq!(limiter.check("alice", AWAY), Err(Duration::from_secs(70)));
        assert_eq!(limiter.check("bob", AWAY), Ok(()));
        clock.advance(Duration::from_secs(69));
        assert!(limiter.check("alice", HOME).is_err());
        clock.advance(Duration::from_secs(1));
        assert_eq!(limiter.check("alice", HOME), Ok(()));
    }

    #[test]
    fn an_address_is_held_across_accounts() {
        let (_clock, limiter) = limiter();
        for account in ["a", "b", "c", "d", "e"] {
            assert_eq!(limiter.check(account, HOME), Ok(()));
            limiter.failed(account, HOME);
        }
        assert_eq!(limiter.check("f", HOME), Err(Duration::from_secs(100)));
        assert_eq!(limiter.check("f", AWAY), Ok(()));
    }

    #[test]
    fn success_clears_the_account_but_not_the_address() {
        let (_clock, limiter) = limiter();
        limiter.failed("alice", HOME);
        limiter.failed("alice", HOME);
        limiter.succeeded("alice");
        limiter.failed("alice", HOME);
        limiter.failed("alice", HOME);
        assert_eq!(limiter.check("alice", HOME), Ok(()));
        limiter.failed("alice", HOME);
        assert!(
            limiter.check("alice", HOME).is_err(),
            "5 failures from HOME"
        );
        assert!(limiter.check("bob", HOME).is_err());
    }

    #[test]
    fn the_tables_stay_bounded() {
        let (_clock, limiter) = limiter();
        for n in 0..(MAX_KEYS + 10) {
            limiter.failed(&format!("user{n}"), HOME);
        }
        assert!(limiter.lock().by_account.len() <= MAX_KEYS);
    }
}
