//! Holding platform calls to the rates a platform documents ([`RateLimits`]), and to the
//! retry-after it answers with when we went too fast anyway.
//!
//! [`RateLimiter`] keeps one window per platform (`channel_type`) and one per chat
//! (`channel_type` + `platform_id`; threads of a chat share it). Each window is a sliding log
//! of the last `burst` send times: a send is allowed at `t` only when fewer than `burst` sends
//! happened in `(t - per, t]`, that is when the `burst`-th latest send is at least `per` old.
//! That is exact, never over-sends, and costs `burst` instants per window (rates are small:
//! tens per second or minute). A call waits for both its platform's and its chat's window, but
//! takes a slot in neither until both allow it, so a chat held back by its own limit never
//! holds back another chat.
//!
//! The limiter is shared by every session's sends (behind an `Arc`); its state sits behind a
//! `std::sync::Mutex` that is held for a few map look-ups and never across an `.await`.
//! Chat windows that no longer hold anything back are pruned, so memory follows the chats
//! active in the last window, not every chat ever seen.

use crate::edge::{ChatAddress, Rate, RateLimits};
use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// Which window a platform's retry-after holds back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every chat of the platform (`channel_type`).
    Platform,
    /// One chat.
    Chat,
}

impl Scope {
    /// The window a retry-after holds back on a platform with `limits`: the chat's where the
    /// platform limits chats, else the whole platform's.
    pub fn of(limits: &RateLimits) -> Scope {
        if limits.per_chat.is_some() {
            Scope::Chat
        } else {
            Scope::Platform
        }
    }
}

/// The first retry's delay in [`RateLimiter::backoff`].
const BACKOFF_BASE: Duration = Duration::from_millis(250);
/// The longest delay [`RateLimiter::backoff`] returns.
const BACKOFF_CAP: Duration = Duration::from_secs(30);
/// Chat windows kept before pruning is considered; pruning then runs again only once the map
/// has doubled, so it costs O(1) per call on average.
const PRUNE_AT_LEAST: usize = 64;
/// Pruning also runs when the last sweep is this old, so a quiet limiter shrinks too.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Waits platform calls into their platform's and chat's rate. See the module docs.
#[derive(Debug)]
pub struct RateLimiter {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    platforms: HashMap<String, Window>,
    chats: HashMap<ChatKey, Window>,
    /// Prune the chat windows once there are this many.
    prune_at: usize,
    last_prune: Instant,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ChatKey {
    channel_type: String,
    platform_id: String,
}

impl ChatKey {
    fn of(to: &ChatAddress) -> Self {
        Self {
            channel_type: to.channel_type.clone(),
            platform_id: to.platform_id.clone(),
        }
    }
}

/// One scope's recent sends and retry-after.
#[derive(Debug, Default)]
struct Window {
    /// The latest sends, oldest first; at most as many as the largest burst seen.
    sends: VecDeque<Instant>,
    /// A platform's retry-after: nothing is sent before it.
    blocked_until: Option<Instant>,
    /// When this window stops holding anything back: its latest send plus the window's
    /// length, or the end of its retry-after. Past it, the window is as good as empty.
    idle_at: Option<Instant>,
}

/// A burst of 0 would forbid every send forever; a platform that documents one is taken to
/// mean one message per window.
fn burst(rate: Rate) -> usize {
    usize::try_from(rate.burst.max(1)).unwrap_or(usize::MAX)
}

impl Window {
    /// The earliest instant at or after `now` this window allows a send under `rate`.
    fn ready_at(&self, rate: Option<Rate>, now: Instant) -> Instant {
        let mut ready = now;
        if let Some(blocked_until) = self.blocked_until {
            ready = ready.max(blocked_until);
        }
        if let Some(rate) = rate {
            let burst = burst(rate);
            if self.sends.len() >= burst {
                // The burst-th latest send: the next one must be a whole window after it.
                let oldest = self.sends[self.sends.len() - burst];
                ready = ready.max(oldest + rate.per);
            }
        }
        ready
    }

    fn record(&mut self, rate: Option<Rate>, now: Instant) {
        let Some(rate) = rate else {
            return;
        };
        self.sends.push_back(now);
        while self.sends.len() > burst(rate) {
            self.sends.pop_front();
        }
        let window_end = now + rate.per;
        self.idle_at = Some(self.idle_at.map_or(window_end, |idle| idle.max(window_end)));
    }

    fn block_until(&mut self, until: Instant) {
        let until = self
            .blocked_until
            .map_or(until, |blocked| blocked.max(until));
        self.blocked_until = Some(until);
        self.idle_at = Some(self.idle_at.map_or(until, |idle| idle.max(until)));
    }

    fn is_idle(&self, now: Instant) -> bool {
        self.idle_at.is_none_or(|idle| idle <= now)
    }
}

impl Default for RateLimiter {
    fn default() -> Self {
        Self::new()
    }
}

impl RateLimiter {
    pub fn new() -> Self {
        Self {
            state: Mutex::new(State {
                platforms: HashMap::new(),
                chats: HashMap::new(),
                prune_at: PRUNE_AT_LEAST,
                last_prune: Instant::now(),
            }),
        }
    }

    /// Waits until both `limits` allow a send to `to`, then takes the slot. Dropping the
    /// future while it waits takes nothing.
    pub async fn acquire(&self, to: &ChatAddress, limits: &RateLimits) {
        let chat = ChatKey::of(to);
        loop {
            let ready = {
                let mut state = self.lock();
                let now = Instant::now();
                state.prune(now);
                let platform_ready = state
                    .platforms
                    .get(&to.channel_type)
                    .map_or(now, |window| window.ready_at(limits.per_platform, now));
                let chat_ready = state
                    .chats
                    .get(&chat)
                    .map_or(now, |window| window.ready_at(limits.per_chat, now));
                let ready = platform_ready.max(chat_ready);
                if ready <= now {
                    state.record(to, &chat, limits, now);
                    return;
                }
                ready
            };
            // Another caller may take the slot first; then this one waits again.
            tokio::time::sleep_until(ready).await;
        }
    }

    /// Records a platform's retry-after: every later [`acquire`](Self::acquire) for the
    /// scope waits until `wait` from now has passed.
    pub fn retry_after(&self, to: &ChatAddress, scope: Scope, wait: Duration) {
        let mut state = self.lock();
        let until = Instant::now() + wait;
        let window = match scope {
            Scope::Platform => state.platforms.entry(to.channel_type.clone()).or_default(),
            Scope::Chat => state.chats.entry(ChatKey::of(to)).or_default(),
        };
        window.block_until(until);
    }

    /// How long to wait before retry number `attempt` (from 0) of a failed call: 250 ms
    /// doubling per attempt up to 30 s, less up to 10% jitter so that callers which failed
    /// together do not retry together. The jitter comes from the clock's nanoseconds, which
    /// is plenty for spreading retries and needs no random number generator.
    pub fn backoff(attempt: u32) -> Duration {
        let factor = 1u32 << attempt.min(16);
        let delay = BACKOFF_BASE.saturating_mul(factor).min(BACKOFF_CAP);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.subsec_nanos());
        // nanos % 1001 is 0..=1000 thousandths of the 10% band.
        delay - delay / 10 * (nanos % 1001) / 1000
    }

    /// The state is only ever left consistent (every update is a few assignments that cannot
    /// panic halfway), so a poisoned lock is still safe to use.
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    fn record(&mut self, to: &ChatAddress, chat: &ChatKey, limits: &RateLimits, now: Instant) {
        if limits.per_platform.is_some() {
            self.platforms
                .entry(to.channel_type.clone())
                .or_default()
                .record(limits.per_platform, now);
        }
        if limits.per_chat.is_some() {
            self.chats
                .entry(chat.clone())
                .or_default()
                .record(limits.per_chat, now);
        }
    }

    /// Drops the chat windows that no longer hold anything back, when there are many or
    /// the last sweep is old.
    fn prune(&mut self, now: Instant) {
        if self.chats.len() < self.prune_at && now.duration_since(self.last_prune) < PRUNE_EVERY {
            return;
        }
        self.chats.retain(|_, window| !window.is_idle(now));
        self.prune_at = (self.chats.len() * 2).max(PRUNE_AT_LEAST);
        self.last_prune = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn chat(platform_id: &str) -> ChatAddress {
        ChatAddress {
            channel_type: "telegram".to_owned(),
            platform_id: platform_id.to_owned(),
            thread_id: None,
        }
    }

    fn rate(burst: u32, per_ms: u64) -> Option<Rate> {
        Some(Rate {
            burst,
            per: Duration::from_millis(per_ms),
        })
    }

    /// Acquires for `to` and returns how long after `start` that was.
    async fn acquire_at(
        limiter: &RateLimiter,
        to: &ChatAddress,
        limits: &RateLimits,
        start: Instant,
    ) -> Duration {
        limiter.acquire(to, limits).await;
        start.elapsed()
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_goes_at_once_then_each_send_waits_for_the_window() {
        let limiter = RateLimiter::new();
        let limits = RateLimits {
            per_platform: None,
            per_chat: rate(3, 1000),
        };
        let start = Instant::now();
        let mut times = Vec::new();
        for _ in 0..7 {
            times.push(acquire_at(&limiter, &chat("1"), &limits, start).await);
        }
        let ms = |ms| Duration::from_millis(ms);
        assert_eq!(
            times,
            [ms(0), ms(0), ms(0), ms(1000), ms(1000), ms(1000), ms(2000)]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_window_slides_from_each_send() {
        let limiter = RateLimiter::new();
        let limits = RateLimits {
            per_platform: None,
            per_chat: rate(2, 1000),
        };
        let start = Instant::now();
        assert_eq!(
            acquire_at(&limiter, &chat("1"), &limits, start).await,
            Duration::ZERO
        );
        tokio::time::sleep(Duration::from_millis(400)).await;
        let second = acquire_at(&limiter, &chat("1"), &limits, start).await;
        // The third send is due a window after the first, the fourth a window after the
        // second: at most two in any second.
        let third = acquire_at(&limiter, &chat("1"), &limits, start).await;
        let fourth = acquire_at(&limiter, &chat("1"), &limits, start).await;
        let ms = |ms| Duration::from_millis(ms);
        assert_eq!([second, third, fourth], [ms(400), ms(1000), ms(1400)]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_chat_at_its_limit_does_not_hold_back_another_chat() {
        let limiter = Arc::new(RateLimiter::new());
        let limits = RateLimits {
            per_platform: rate(30, 1000),
            per_chat: rate(1, 3_600_000),
        };
        let start = Instant::now();
        limiter.acquire(&chat("a"), &limits).await;
        let waiting = tokio::spawn({
            let limiter = Arc::clone(&limiter);
            async move { acquire_at(&limiter, &chat("a"), &limits, start).await }
        });
        tokio::task::yield_now().await;
        assert_eq!(
            acquire_at(&limiter, &chat("b"), &limits, start).await,
            Duration::ZERO
        );
        assert!(!waiting.is_finished());
        assert_eq!(waiting.await.ok(), Some(Duration::from_secs(3600)));
    }

    #[tokio::test(start_paused = true)]
    async fn the_platform_limit_is_shared_by_every_chat() {
        let limiter = RateLimiter::new();
        let limits = RateLimits {
            per_platform: rate(2, 1000),
            per_chat: None,
        };
        let start = Instant::now();
        limiter.acquire(&chat("a"), &limits).await;
        limiter.acquire(&chat("b"), &limits).await;
        assert_eq!(
            acquire_at(&limiter, &chat("c"), &limits, start).await,
            Duration::from_secs(1)
        );
        // Another platform has its own window.
        let other = ChatAddress {
            channel_type: "slack".to_owned(),
            ..chat("c")
        };
        assert_eq!(
            acquire_at(&limiter, &other, &limits, start).await,
            Duration::from_secs(1)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_after_holds_back_its_scope_only() {
        let limiter = RateLimiter::new();
        let limits = RateLimits::default();
        let start = Instant::now();
        limiter.retry_after(&chat("a"), Scope::Chat, Duration::from_secs(5));
        assert_eq!(
            acquire_at(&limiter, &chat("b"), &limits, start).await,
            Duration::ZERO
        );
        assert_eq!(
            acquire_at(&limiter, &chat("a"), &limits, start).await,
            Duration::from_secs(5)
        );
        limiter.retry_after(&chat("a"), Scope::Platform, Duration::from_secs(3));
        assert_eq!(
            acquire_at(&limiter, &chat("b"), &limits, start).await,
            Duration::from_secs(8)
        );
        // A shorter retry-after never shortens a longer one.
        limiter.retry_after(&chat("a"), Scope::Chat, Duration::from_secs(10));
        limiter.retry_after(&chat("a"), Scope::Chat, Duration::from_secs(1));
        assert_eq!(
            acquire_at(&limiter, &chat("a"), &limits, start).await,
            Duration::from_secs(18)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn idle_chat_windows_are_pruned() {
        let limiter = RateLimiter::new();
        let limits = RateLimits {
            per_platform: None,
            per_chat: rate(1, 1000),
        };
        for id in 0..1000 {
            limiter.acquire(&chat(&id.to_string()), &limits).await;
        }
        // All of them are within their window yet, so all are kept.
        assert_eq!(limiter.lock().chats.len(), 1000);
        tokio::time::sleep(Duration::from_secs(2)).await;
        for id in 1000..1100 {
            limiter.acquire(&chat(&id.to_string()), &limits).await;
        }
        let state = limiter.lock();
        assert!(
            state.chats.len() <= 200,
            "{} windows kept",
            state.chats.len()
        );
        // A window that still holds a chat back is kept.
        assert!(state.chats.contains_key(&ChatKey::of(&chat("1099"))));
    }

    #[tokio::test(start_paused = true)]
    async fn pruning_keeps_the_windows_that_still_count() {
        let limiter = RateLimiter::new();
        let limits = RateLimits {
            per_platform: None,
            per_chat: rate(1, 10_000),
        };
        let start = Instant::now();
        for id in 0..PRUNE_AT_LEAST * 3 {
            limiter.acquire(&chat(&id.to_string()), &limits).await;
        }
        // Every window is within its ten seconds: none may be dropped, so chat 0 still waits.
        assert_eq!(limiter.lock().chats.len(), PRUNE_AT_LEAST * 3);
        assert_eq!(
            acquire_at(&limiter, &chat("0"), &limits, start).await,
            Duration::from_secs(10)
        );
    }

    #[test]
    fn backoff_doubles_from_250_ms_to_30_s_with_at_most_10_percent_jitter() {
        let within = |attempt: u32, full: Duration| {
            let delay = RateLimiter::backoff(attempt);
            assert!(
                delay <= full && delay >= full - full / 10,
                "attempt {attempt}: {delay:?} not within 10% under {full:?}"
            );
        };
        within(0, Duration::from_millis(250));
        within(1, Duration::from_millis(500));
        within(2, Duration::from_secs(1));
        within(6, Duration::from_secs(16));
        within(7, Duration::from_secs(30));
        within(u32::MAX, Duration::from_secs(30));
    }
}
