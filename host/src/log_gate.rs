//! [`LogGate`]: coalesces repeated identical warnings, so that a hostile or broken session
//! (or a failing accept loop) costs the log one line per window instead of millions.
//!
//! Each warning site picks a key that names what repeats, for example
//! `"proxy.accept s-123"` or `"delivery.read s-123"`: the site and the session. Per key:
//!
//! - the first occurrence is let through ([`Admission::Log`]) and opens a window;
//! - repeats inside the window are only counted ([`Admission::Suppress`]);
//! - the first occurrence after the window has ended is let through again, and carries the
//!   count of the window before it ([`Admission::Log`] with `repeated: Some(..)`), so the
//!   site logs one summary line "... repeated N times in the last Xs" and then its warning;
//! - [`LogGate::flush`] (call it now and then, or run [`LogGate::run_flusher`]) logs the
//!   summary of every window that has ended with repeats and forgets idle keys, so a warning
//!   that stopped still gets its count and memory stays bounded by the keys seen recently.
//!
//! Usage at a warning site:
//!
//! ```
//! # let gate = host::log_gate::LogGate::new(std::time::Duration::from_secs(60));
//! # let (session_id, error) = ("s-123", "disk I/O error");
//! if gate.should_log(&format!("delivery.read {session_id}")) {
//!     tracing::warn!(%session_id, %error, "cannot read outbound.db");
//! }
//! ```
//!
//! [`LogGate::should_log`] logs the summary of the previous window itself (at WARN, naming
//! the key); a site that wants its own summary line matches on [`LogGate::admit`]'s
//! [`Admission`] instead. The `*_at`
//! methods take the time explicitly, which is how the tests drive the gate without sleeping.
//! One `Mutex<HashMap>` holds the state: an admission is one lookup, and a suppressed repeat
//! allocates nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How many distinct keys are tracked at once. Keys name sites and sessions, so this is far
/// above what a host has; past it, new keys share one overflow entry instead of growing the
/// map (a flood of distinct keys is then coalesced as one).
const MAX_KEYS: usize = 10_000;

/// The key that stands in for every key past [`MAX_KEYS`].
const OVERFLOW_KEY: &str = "(other warnings)";

/// What a warning site should do with one occurrence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Log it. `repeated` is the count of the window that just ended, if it had repeats:
    /// log a summary line for it first.
    Log { repeated: Option<Repeated> },
    /// A repeat inside the window: counted, not logged.
    Suppress,
}

/// How often a warning was suppressed in one window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Repeated {
    pub count: u64,
    /// From the window's first occurrence to its end (or to now, when cut short).
    pub over: Duration,
}

impl Admission {
    /// Whether to log this occurrence; logs the summary of the previous window for `key`
    /// first when it had repeats.
    pub fn should_log_for(&self, key: &str) -> bool {
        match self {
            Admission::Log { repeated } => {
                if let Some(repeated) = repeated {
                    log_summary(key, repeated);
                }
                true
            }
            Admission::Suppress => false,
        }
    }
}

/// A summary of a window that ended with repeats, from [`LogGate::flush_at`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    pub key: String,
    pub repeated: Repeated,
}

#[derive(Debug)]
struct Window {
    started: Instant,
    suppressed: u64,
}

/// Coalesces repeated warnings per key; see the module documentation. Share it as an
/// `Arc<LogGate>` or a field: every method takes `&self`.
#[derive(Debug)]
pub struct LogGate {
    window: Duration,
    windows: Mutex<HashMap<String, Window>>,
}

impl LogGate {
    /// A gate whose windows last `window` (at least 1 ms).
    pub fn new(window: Duration) -> Self {
        Self {
            window: window.max(Duration::from_millis(1)),
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// The window length.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// One occurrence of the warning `key`, now.
    pub fn admit(&self, key: &str) -> Admission {
        self.admit_at(key, Instant::now())
    }

    /// One occurrence of `key`, now; true when it should be logged (a summary of the
    /// previous window is logged first, see [`Admission::should_log_for`]).
    pub fn should_log(&self, key: &str) -> bool {
        self.admit(key).should_log_for(key)
    }

    /// One occurrence of the warning `key` at `now`.
    pub fn admit_at(&self, key: &str, now: Instant) -> Admission {
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        let key = if windows.contains_key(key) || windows.len() < MAX_KEYS {
            key
        } else {
            OVERFLOW_KEY
        };
        match windows.get_mut(key) {
            Some(window) if now.saturating_duration_since(window.started) < self.window => {
                window.suppressed += 1;
                Admission::Suppress
            }
            Some(window) => {
                let repeated = (window.suppressed > 0).then(|| Repeated {
                    count: window.suppressed,
                    over: now.saturating_duration_since(window.started),
                });
                *window = Window {
                    started: now,
                    suppressed: 0,
                };
                Admission::Log { repeated }
            }
            None => {
                windows.insert(
                    key.to_owned(),
                    Window {
                        started: now,
                        suppressed: 0,
                    },
                );
                Admission::Log { repeated: None }
            }
        }
    }

    /// Ends every window that is over at `now`: returns the summaries of those that had
    /// repeats, and forgets their keys (the next occurrence is a first one again).
    pub fn flush_at(&self, now: Instant) -> Vec<Summary> {
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        let mut summaries = Vec::new();
        windows.retain(|key, window| {
            let age = now.saturating_duration_since(window.started);
            if age < self.window {
                return true;
            }
            if window.suppressed > 0 {
                summaries.push(Summary {
                    key: key.clone(),
                    repeated: Repeated {
                        count: window.suppressed,
                        over: self.window,
                    },
                });
            }
            false
        });
        summaries
    }

    /// [`LogGate::flush_at`] now, logging each summary at WARN.
    pub fn flush(&self) {
        for summary in self.flush_at(Instant::now()) {
            log_summary(&summary.key, &summary.repeated);
        }
    }

    /// Flushes once per window until `shutdown`, so the count of a warning that stopped is
    /// logged within a window of its last occurrence. Spawn it once per gate.
    pub async fn run_flusher(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.window);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = tick.tick() => self.flush(),
            }
        }
        self.flush();
    }

    /// How many keys have an open window (for tests and status).
    pub fn n_keys(&self) -> usize {
        self.windows
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

fn log_summary(key: &str, repeated: &Repeated) {
    tracing::warn!(
        key,
        count = repeated.count,
        "{key}: repeated {} times in the last {:.0}s",
        repeated.count,
        repeated.over.as_secs_f64().ceil()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(10);

    fn at(start: Instant, seconds: u64) -> Instant {
        start + Duration::from_secs(seconds)
    }

    #[test]
    fn the_first_is_logged_and_repeats_are_counted() {
        let gate = LogGate::new(WINDOW);
        let start = Instant::now();
        assert_eq!(gate.admit_at("k", start), Admission::Log { repeated: None });
        for second in 1..10 {
            assert_eq!(gate.admit_at("k", at(start, second)), Admission::Suppress);
        }
        // The next one after the window carries the count of the window before it.
        assert_eq!(
            gate.admit_at("k", at(start, 12)),
            Admission::Log {
                repeated: Some(Repeated {
                    count: 9,
                    over: Duration::from_secs(12)
                })
            }
        );
        // A new window started at 12 s.
        assert_eq!(gate.admit_at("k", at(start, 13)), Admission::Suppress);
    }

    #[test]
    fn a_lone_warning_after_the_window_has_no_summary() {
        let gate = LogGate::new(WINDOW);
        let start = Instant::now();
        gate.admit_at("k", start);
        assert_eq!(
            gate.admit_at("k", at(start, 30)),
            Admission::Log { repeated: None }
        );
    }

    #[test]
    fn keys_are_independent() {
        let gate = LogGate::new(WINDOW);
        let start = Instant::now();
        assert!(matches!(
            gate.admit_at("a s-1", start),
            Admission::Log { .. }
        ));
        assert!(matches!(
            gate.admit_at("a s-2", start),
            Admission::Log { .. }
        ));
        assert_eq!(gate.admit_at("a s-1", at(start, 1)), Admission::Suppress);
        assert!(matches!(
            gate.admit_at("b s-1", at(start, 1)),
            Admission::Log { .. }
        ));
    }

    #[test]
    fn flush_reports_ended_windows_and_forgets_them() {
        let gate = LogGate::new(WINDOW);
        let start = Instant::now();
        gate.admit_at("noisy", start);
        gate.admit_at("noisy", at(start, 1));
        gate.admit_at("noisy", at(start, 2));
        gate.admit_at("quiet", start);
        gate.admit_at("late", at(start, 5));
        gate.admit_at("late", at(start, 6));
        assert!(
            gate.flush_at(at(start, 9)).is_empty(),
            "no window is over yet"
        );
        let summaries = gate.flush_at(at(start, 11));
        assert_eq!(
            summaries,
            [Summary {
                key: "noisy".into(),
                repeated: Repeated {
                    count: 2,
                    over: WINDOW
                }
            }]
        );
        // "noisy" and "quiet" are forgotten; "late" is still in its window.
        assert_eq!(gate.n_keys(), 1);
        assert_eq!(
            gate.admit_at("noisy", at(start, 12)),
            Admission::Log { repeated: None }
        );
        assert_eq!(
            gate.flush_at(at(start, 16))[0],
            Summary {
                key: "late".into(),
                repeated: Repeated {
                    count: 1,
                    over: WINDOW
                }
            }
        );
    }

    #[test]
    fn keys_past_the_cap_share_one_entry() {
        let gate = LogGate::new(WINDOW);
        let start = Instant::now();
        for n in 0..MAX_KEYS {
            gate.admit_at(&format!("k{n}"), start);
        }
        assert!(matches!(
            gate.admit_at("one more", start),
            Admission::Log { .. }
        ));
        assert_eq!(gate.admit_at("and another", start), Admission::Suppress);
        assert_eq!(gate.n_keys(), MAX_KEYS + 1);
    }

    #[test]
    fn should_log_matches_the_admission() {
        let gate = LogGate::new(WINDOW);
        assert!(gate.should_log("k"));
        assert!(!gate.should_log("k"));
        assert!(gate.should_log("other"));
    }
}
