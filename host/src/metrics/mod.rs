//! The host's metrics, rendered in the Prometheus text format at `/metrics`.
//!
//! [`global`] is the process-wide [`Metrics`]: the router, delivery, the supervisor and the
//! model proxy record into it with one call each (`crate::metrics::global().message_routed(..)`)
//! instead of carrying a handle through every constructor. Counters and histograms live
//! here; what is a state rather than an event (containers running and queued, adapters' health)
//! is read at render time from a [`Snapshot`] the caller takes, so it can never drift.
//! [`render`] produces the text, built on the `prometheus-client` crate.
//!
//! Every family is prefixed `crabpot_`, durations are in seconds, and every label value is
//! bounded ([`labels`]).

pub mod labels;
mod render;
#[cfg(test)]
mod tests;

pub use labels::ContainerExit;
use labels::{
    ChannelLabels, DeliveryLabels, DeliveryOutcome, DropLabels, DropStage, ExitLabels, GroupLabels,
    TokenLabels,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
pub use render::{CONTENT_TYPE, ContainerCounts, Snapshot};
use std::sync::OnceLock;
use std::time::Duration;

/// A histogram per label set, every one with the same buckets.
type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Seconds from an agent's row to its platform: a few ms when warm, seconds with retries.
fn latency_histogram() -> Histogram {
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    ])
}

/// Seconds from a message routed to its turn complete: a container start plus a model's
/// answer, from a second to many minutes of tool use.
fn turn_histogram() -> Histogram {
    Histogram::new([
        0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
    ])
}

/// The host's counters and histograms. Cheap to record into from any thread: each family is a
/// map behind a read-write lock, each series an atomic.
pub struct Metrics {
    messages_routed: Family<ChannelLabels, Counter>,
    messages_held: Family<ChannelLabels, Counter>,
    messages_dropped: Family<DropLabels, Counter>,
    deliveries: Family<DeliveryLabels, Counter>,
    delivery_latency: Histograms<ChannelLabels>,
    turn_duration: Histograms<ChannelLabels>,
    containers_started: Counter,
    container_start_failures: Counter,
    containers_exited: Family<ExitLabels, Counter>,
    proxy_requests: Family<GroupLabels, Counter>,
    proxy_tokens: Family<TokenLabels, Counter>,
}

/// The process-wide metrics.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// The process's metrics as Prometheus text (see [`CONTENT_TYPE`]), with the states of
/// `snapshot`.
pub fn render(snapshot: &Snapshot) -> String {
    global().render(snapshot)
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Empty metrics (the process has [`global`]; tests make their own).
    pub fn new() -> Self {
        Metrics {
            messages_routed: Family::default(),
            messages_held: Family::default(),
            messages_dropped: Family::default(),
            deliveries: Family::default(),
            delivery_latency: Family::new_with_constructor(latency_histogram),
            turn_duration: Family::new_with_constructor(turn_histogram),
            containers_started: Counter::default(),
            container_start_failures: Counter::default(),
            containers_exited: Family::default(),
            proxy_requests: Family::default(),
            proxy_tokens: Family::default(),
        }
    }

    /// An inbound message was written into a session (once per session it went to).
    pub fn message_routed(&self, channel_type: &str) {
        self.messages_routed
            .get_or_create(&channel(channel_type))
            .inc();
    }

    /// What the router decided besides routing: messages held for an approval and drops
    /// (`dropped` as the router words them, mapped to codes by [`labels::router_drop_code`]).
    pub fn router_decided(&self, channel_type: &str, held: usize, dropped: &[String]) {
        if held > 0 {
            self.messages_held
                .get_or_create(&channel(channel_type))
                .inc_by(u64::try_from(held).unwrap_or(u64::MAX));
        }
        for reason in dropped {
            self.message_dropped(DropStage::Router, labels::router_drop_code(reason));
        }
    }

    /// An approver denied a held message.
    pub fn router_denied(&self) {
        self.message_dropped(DropStage::Router, labels::ROUTER_DENIED);
    }

    /// A message was dropped; `reason` is a stable code (a refusal's, or the router's).
    pub fn message_dropped(&self, stage: DropStage, reason: &'static str) {
        self.messages_dropped
            .get_or_create(&DropLabels {
                stage: stage.code(),
                reason,
            })
            .inc();
    }

    /// Delivery refused an agent's row (`code` = [`crate::delivery::refusal::Refusal::code`]).
    pub fn row_refused(&self, code: &'static str) {
        self.message_dropped(DropStage::Delivery, code);
        self.delivery(labels::NO_CHANNEL, DeliveryOutcome::Refused);
    }

    /// One attempt to deliver a row to a chat of `channel_type`.
    pub fn delivery(&self, channel_type: &str, outcome: DeliveryOutcome) {
        self.deliveries
            .get_or_create(&DeliveryLabels {
                channel: channel_type.to_owned(),
                outcome: outcome.code(),
            })
            .inc();
    }

    /// A row reached its platform `elapsed` after the agent wrote it.
    pub fn delivered(&self, channel_type: &str, elapsed: Duration) {
        self.delivery(channel_type, DeliveryOutcome::Delivered);
        self.delivery_latency
            .get_or_create(&channel(channel_type))
            .observe(elapsed.as_secs_f64());
    }

    /// A turn completed `elapsed` after its message was routed.
    pub fn turn_completed(&self, channel_type: &str, elapsed: Duration) {
        self.turn_duration
            .get_or_create(&channel(channel_type))
            .observe(elapsed.as_secs_f64());
    }

    /// A session's container started.
    pub fn container_started(&self) {
        self.containers_started.inc();
    }

    /// A session's container could not be started.
    pub fn container_start_failed(&self) {
        self.container_start_failures.inc();
    }

    /// A session's container went away.
    pub fn container_exited(&self, cause: ContainerExit) {
        self.containers_exited
            .get_or_create(&ExitLabels {
                cause: cause.code(),
            })
            .inc();
    }

    /// The model proxy forwarded a request for `record`'s agent group and counted its tokens.
    pub fn proxy_request(&self, record: &crate::proxy::UsageRecord) {
        let agent_group = record.agent_group_id.to_string();
        self.proxy_requests
            .get_or_create(&GroupLabels {
                agent_group: agent_group.clone(),
            })
            .inc();
        for (direction, tokens) in [
            ("input", record.input_tokens),
            ("output", record.output_tokens),
        ] {
            self.proxy_tokens
                .get_or_create(&TokenLabels {
                    agent_group: agent_group.clone(),
                    direction,
                })
                .inc_by(tokens);
        }
    }
}

fn channel(channel_type: &str) -> ChannelLabels {
    ChannelLabels {
        channel: channel_type.to_owned(),
    }
}

/// The time since `unix_ms` (a row's `created_at`), zero when that lies in the future (a
/// clock step, or a container writing nonsense: its rows are hostile input).
pub fn since_unix_ms(unix_ms: i64) -> Duration {
    let elapsed = protocol::time::now_ms().saturating_sub(unix_ms);
    Duration::from_millis(u64::try_from(elapsed).unwrap_or(0))
}
