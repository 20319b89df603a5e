//! The loop caps of agent-to-agent messages ([`A2aLimits`]), set in the configuration and
//! enforced by `delivery::a2a`.

use std::time::Duration;

/// The loop caps of agent-to-agent messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct A2aLimits {
    /// Most messages from one session to one agent group per window.
    pub per_pair: usize,
    /// Most agent-to-agent messages from one session per window.
    pub per_session: usize,
    pub window: Duration,
}

impl Default for A2aLimits {
    fn default() -> Self {
        Self {
            per_pair: 20,
            per_session: 60,
            window: Duration::from_secs(600),
        }
    }
}
