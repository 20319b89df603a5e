//! Rendering [`Metrics`] as Prometheus text (format 0.0.4, [`CONTENT_TYPE`]): every family
//! with its help text, plus the states of a [`Snapshot`] taken by the caller (containers
//! running, starting and queued; each adapter's health).
//!
//! A scrape builds a small registry of its own: the recorded families are shared (`Arc`
//! inside), the snapshot's gauges are new each time, so an adapter that went away or a
//! container count that changed is never left behind as a stale series.

use super::Metrics;
use super::labels::{AdapterStateLabels, ChannelLabels};
use crate::channels::ChannelStatus;
use crate::edge::HealthState;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

/// The `Content-Type` of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// What is a state rather than an event, read when the metrics are rendered.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// The supervisor's slots; `None` = no supervisor in this process (those gauges are left
    /// out rather than reported as zero).
    pub containers: Option<ContainerCounts>,
    /// Every adapter's health (`Channels::status`).
    pub adapters: Vec<ChannelStatus>,
}

/// The supervisor's slots at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ContainerCounts {
    pub running: usize,
    pub starting: usize,
    pub queued: usize,
    pub max: usize,
    /// Free bytes on the data dir's filesystem, when measured.
    pub disk_free_bytes: Option<u64>,
}

impl ContainerCounts {
    /// The counts of a supervisor's status.
    pub fn of(status: &crate::supervisor::SupervisorStatus) -> Self {
        ContainerCounts {
            running: status.running.len(),
            starting: status.starting,
            queued: status.queued.len(),
            max: status.max_containers,
            disk_free_bytes: status.disk.free_mb.map(|mb| mb.saturating_mul(1024 * 1024)),
        }
    }
}

/// Every health state, with its label value.
const HEALTH_STATES: [(HealthState, &str); 5] = [
    (HealthState::Starting, "starting"),
    (HealthState::Connected, "connected"),
    (HealthState::Degraded, "degraded"),
    (HealthState::Failing, "failing"),
    (HealthState::Stopped, "stopped"),
];

/// Whether an adapter in `state` carries messages (degraded: with trouble, but it does).
fn is_up(state: HealthState) -> bool {
    match state {
        HealthState::Connected | HealthState::Degraded => true,
        HealthState::Starting | HealthState::Failing | HealthState::Stopped => false,
    }
}

fn gauge(value: u64) -> Gauge {
    let gauge = Gauge::default();
    gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
    gauge
}

impl Metrics {
    /// The metrics as Prometheus text, with the states of `snapshot`.
    pub fn render(&self, snapshot: &Snapshot) -> String {
        let mut registry = Registry::with_prefix("crabpot");
        self.register(&mut registry);
        register_snapshot(&mut registry, snapshot);
        let mut text = String::new();
        if let Err(e) = prometheus_text::encode(&mut text, &registry) {
            // Writing into a String does not fail; if the encoder ever does, say so in the
            // text rather than serve half a scrape as if it were whole.
            tracing::error!(error = %e, "encoding the metrics failed");
            return format!("# encoding the metrics failed: {e}\n");
        }
        text
    }

    /// The recorded families (shared with `self`: a clone is a handle).
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "messages_routed",
            "Inbound messages written into a session, by channel type (one per session a message went to)",
            self.messages_routed.clone(),
        );
        registry.register(
            "messages_held",
            "Inbound messages held for an approval (unknown sender, unwired chat), by channel type",
            self.messages_held.clone(),
        );
        registry.register(
            "messages_dropped",
            "Messages dropped, by stage (router: inbound that reached no agent; delivery: an agent's row refused) and reason code",
            self.messages_dropped.clone(),
        );
        registry.register(
            "deliveries",
            "Attempts to deliver agents' rows to chats, by channel type and outcome (delivered, retried, failed, refused; a refused row has channel none)",
            self.deliveries.clone(),
        );
        registry.register_with_unit(
            "delivery_latency",
            "Time from an agent writing a row to its platform taking it, by channel type",
            Unit::Seconds,
            self.delivery_latency.clone(),
        );
        registry.register_with_unit(
            "turn_duration",
            "Time from a message routed into a session to the agent's turn on it complete, by channel type",
            Unit::Seconds,
            self.turn_duration.clone(),
        );
        registry.register(
            "containers_started",
            "Session containers started",
            self.containers_started.clone(),
        );
        registry.register(
            "container_start_failures",
            "Session containers that could not be started",
            self.container_start_failures.clone(),
        );
        registry.register(
            "containers_exited",
            "Session containers taken away, by cause (crashed, stale_heartbeat, idle, restarted, stopped, failed, shutdown)",
            self.containers_exited.clone(),
        );
        registry.register(
            "proxy_requests",
            "Model requests forwarded by the proxy, by agent group",
            self.proxy_requests.clone(),
        );
        registry.register(
            "proxy_tokens",
            "Model tokens the upstream reported, by agent group and direction (input, output)",
            self.proxy_tokens.clone(),
        );
    }
}

/// The gauges of a snapshot, new for this scrape.
fn register_snapshot(registry: &mut Registry, snapshot: &Snapshot) {
    if let Some(counts) = snapshot.containers {
        let count = |n: usize| gauge(u64::try_from(n).unwrap_or(u64::MAX));
        registry.register(
            "containers_running",
            "Session containers running",
            count(counts.running),
        );
        registry.register(
            "containers_starting",
            "Session containers being started",
            count(counts.starting),
        );
        registry.register(
            "containers_queued",
            "Sessions waiting for a container slot (at the cap)",
            count(counts.queued),
        );
        registry.register(
            "containers_max",
            "The cap on session containers (max_containers)",
            count(counts.max),
        );
        if let Some(free) = counts.disk_free_bytes {
            registry.register_with_unit(
                "data_disk_free",
                "Free space on the data dir's filesystem",
                Unit::Bytes,
                gauge(free),
            );
        }
    }
    let up: Family<ChannelLabels, Gauge> = Family::default();
    let states: Family<AdapterStateLabels, Gauge> = Family::default();
    for adapter in &snapshot.adapters {
        let channel = adapter.channel_type.clone();
        up.get_or_create(&ChannelLabels {
            channel: channel.clone(),
        })
        .set(i64::from(is_up(adapter.health.state)));
        for (state, name) in HEALTH_STATES {
            states
                .get_or_create(&AdapterStateLabels {
                    channel: channel.clone(),
                    state: name,
                })
                .set(i64::from(adapter.health.state == state));
        }
    }
    registry.register(
        "adapter_up",
        "Whether a channel adapter carries messages (1: connected or degraded), by channel type",
        up,
    );
    registry.register(
        "adapter_state",
        "A channel adapter's health state (1 for the current one), by channel type and state",
        states,
    );
}
