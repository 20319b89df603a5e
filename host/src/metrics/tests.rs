//! The registry's unit tests: what is recorded shows in the text, every family is there with
//! its help and type, label values are escaped, and router drops map to codes.

use super::labels::{self, ContainerExit, DeliveryOutcome, DropStage};
use super::{ContainerCounts, Metrics, Snapshot};
use crate::channels::ChannelStatus;
use crate::edge::{Health, HealthState};
use std::time::Duration;

fn render(metrics: &Metrics) -> String {
    metrics.render(&Snapshot::default())
}

/// The value of the sample line that starts with `series` (name and labels, exactly).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok()).flatten()
        })
}

#[test]
fn counters_move_when_recorded() {
    let metrics = Metrics::new();
    let series = "crabpot_messages_routed_total{channel=\"cli\"}";
    assert_eq!(sample(&render(&metrics), series), None);
    metrics.message_routed("cli");
    assert_eq!(sample(&render(&metrics), series), Some(1.0));
    metrics.message_routed("cli");
    metrics.message_routed("web");
    let text = render(&metrics);
    assert_eq!(sample(&text, series), Some(2.0));
    assert_eq!(
        sample(&text, "crabpot_messages_routed_total{channel=\"web\"}"),
        Some(1.0)
    );
}

/// Metrics with one event in every family (a family with no series yet is left out of the
/// text).
fn one_of_everything() -> Metrics {
    let metrics = Metrics::new();
    metrics.message_routed("cli");
    metrics.router_decided("cli", 1, &["chat is not wired to any agent group".into()]);
    metrics.delivered("cli", Duration::from_millis(5));
    metrics.turn_completed("cli", Duration::from_secs(1));
    metrics.container_exited(ContainerExit::Crashed);
    metrics.proxy_request(&usage("main", 1, 1));
    metrics
}

fn usage(group: &str, input_tokens: u64, output_tokens: u64) -> crate::proxy::UsageRecord {
    crate::proxy::UsageRecord {
        session_id: protocol::SessionId::new("s1"),
        agent_group_id: protocol::AgentGroupId::new(group),
        provider: protocol::ProviderKind::OpenAi,
        model: "m".into(),
        status: 200,
        input_tokens,
        output_tokens,
        estimated: false,
        completed: true,
        at_ms: 0,
    }
}

#[test]
fn every_family_is_described() {
    let metrics = one_of_everything();
    let snapshot = Snapshot {
        containers: Some(ContainerCounts {
            running: 2,
            starting: 1,
            queued: 3,
            max: 4,
            disk_free_bytes: Some(1024),
        }),
        adapters: vec![ChannelStatus {
            channel_type: "cli".into(),
            health: Health::connected(),
        }],
    };
    let text = metrics.render(&snapshot);
    let families = [
        ("crabpot_messages_routed_total", "counter"),
        ("crabpot_messages_held_total", "counter"),
        ("crabpot_messages_dropped_total", "counter"),
        ("crabpot_deliveries_total", "counter"),
        ("crabpot_delivery_latency_seconds", "histogram"),
        ("crabpot_turn_duration_seconds", "histogram"),
        ("crabpot_containers_started_total", "counter"),
        ("crabpot_container_start_failures_total", "counter"),
        ("crabpot_containers_exited_total", "counter"),
        ("crabpot_proxy_requests_total", "counter"),
        ("crabpot_proxy_tokens_total", "counter"),
        ("crabpot_containers_running", "gauge"),
        ("crabpot_containers_starting", "gauge"),
        ("crabpot_containers_queued", "gauge"),
        ("crabpot_containers_max", "gauge"),
        ("crabpot_data_disk_free_bytes", "gauge"),
        ("crabpot_adapter_up", "gauge"),
        ("crabpot_adapter_state", "gauge"),
    ];
    for (family, kind) in families {
        assert!(
            text.contains(&format!("\n# TYPE {family} {kind}\n")),
            "{family} {kind} missing:\n{text}"
        );
        assert!(
            text.contains(&format!("# HELP {family} ")),
            "{family} has no help"
        );
    }
    assert_eq!(sample(&text, "crabpot_containers_running"), Some(2.0));
    assert_eq!(sample(&text, "crabpot_containers_queued"), Some(3.0));
    assert_eq!(sample(&text, "crabpot_data_disk_free_bytes"), Some(1024.0));
}

#[test]
fn without_a_supervisor_the_container_gauges_are_left_out() {
    let text = render(&Metrics::new());
    assert!(!text.contains("crabpot_containers_running"), "{text}");
    assert!(text.contains("# TYPE crabpot_containers_started_total counter"));
}

#[test]
fn adapter_health_is_up_and_one_state() {
    let check = |state: HealthState, up: f64| {
        let snapshot = Snapshot {
            containers: None,
            adapters: vec![ChannelStatus {
                channel_type: "telegram".into(),
                health: Health {
                    state,
                    last_error: Some("token \"revoked\"\nat 12:00".into()),
                },
            }],
        };
        let text = Metrics::new().render(&snapshot);
        assert_eq!(
            sample(&text, "crabpot_adapter_up{channel=\"telegram\"}"),
            Some(up),
            "{state:?}"
        );
        let current: Vec<&str> = text
            .lines()
            .filter(|line| line.starts_with("crabpot_adapter_state{") && line.ends_with(" 1"))
            .collect();
        assert_eq!(current.len(), 1, "{state:?}: {text}");
        // The error text is never a label value.
        assert!(!text.contains("revoked"), "{text}");
    };
    check(HealthState::Connected, 1.0);
    check(HealthState::Degraded, 1.0);
    check(HealthState::Starting, 0.0);
    check(HealthState::Failing, 0.0);
    check(HealthState::Stopped, 0.0);
}

#[test]
fn label_values_are_escaped() {
    let metrics = Metrics::new();
    metrics.message_routed("we\"ird\\chan\nnel");
    let text = render(&metrics);
    assert_eq!(
        sample(
            &text,
            "crabpot_messages_routed_total{channel=\"we\\\"ird\\\\chan\\nnel\"}"
        ),
        Some(1.0),
        "{text}"
    );
    // No sample line was split by the newline.
    assert!(
        text.lines()
            .all(|line| line.starts_with('#') || line.starts_with("crabpot_") || line.is_empty()),
        "{text}"
    );
}

#[test]
fn deliveries_count_by_channel_and_outcome_and_time_the_delivered() {
    let metrics = Metrics::new();
    metrics.delivered("cli", Duration::from_millis(30));
    metrics.delivery("cli", DeliveryOutcome::Retried);
    metrics.delivery("cli", DeliveryOutcome::Failed);
    metrics.row_refused("bad_content");
    metrics.turn_completed("cli", Duration::from_secs(2));
    let text = render(&metrics);
    for (outcome, channel) in [
        ("delivered", "cli"),
        ("retried", "cli"),
        ("failed", "cli"),
        ("refused", "none"),
    ] {
        assert_eq!(
            sample(
                &text,
                &format!("crabpot_deliveries_total{{channel=\"{channel}\",outcome=\"{outcome}\"}}")
            ),
            Some(1.0),
            "{outcome}: {text}"
        );
    }
    assert_eq!(
        sample(
            &text,
            "crabpot_messages_dropped_total{stage=\"delivery\",reason=\"bad_content\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "crabpot_delivery_latency_seconds_bucket{le=\"0.05\",channel=\"cli\"}"
        )
        .or_else(|| sample(
            &text,
            "crabpot_delivery_latency_seconds_bucket{channel=\"cli\",le=\"0.05\"}"
        )),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "crabpot_delivery_latency_seconds_count{channel=\"cli\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "crabpot_turn_duration_seconds_sum{channel=\"cli\"}"),
        Some(2.0)
    );
}

#[test]
fn containers_and_proxy_usage_are_counted() {
    let metrics = Metrics::new();
    metrics.container_started();
    metrics.container_start_failed();
    metrics.container_exited(ContainerExit::Idle);
    metrics.container_exited(ContainerExit::StaleHeartbeat);
    metrics.proxy_request(&usage("main", 12, 5));
    let text = render(&metrics);
    let expected = [
        ("crabpot_containers_started_total", 1.0),
        ("crabpot_container_start_failures_total", 1.0),
        ("crabpot_containers_exited_total{cause=\"idle\"}", 1.0),
        (
            "crabpot_containers_exited_total{cause=\"stale_heartbeat\"}",
            1.0,
        ),
        ("crabpot_proxy_requests_total{agent_group=\"main\"}", 1.0),
        (
            "crabpot_proxy_tokens_total{agent_group=\"main\",direction=\"input\"}",
            12.0,
        ),
        (
            "crabpot_proxy_tokens_total{agent_group=\"main\",direction=\"output\"}",
            5.0,
        ),
    ];
    for (series, value) in expected {
        assert_eq!(sample(&text, series), Some(value), "{series}: {text}");
    }
}

#[test]
fn router_drops_map_to_codes() {
    let check = |dropped: &str, code: &str| {
        assert_eq!(labels::router_drop_code(dropped), code, "{dropped}");
    };
    check("chat is not wired to any agent group", "unwired_chat");
    check("main: did not engage", "not_engaged");
    check(
        "main: unknown sender (chat policy strict)",
        "unknown_sender",
    );
    check(
        "main: unknown sender (wiring accepts known senders only)",
        "unknown_sender",
    );
    check(
        "main: unknown sender (did not engage, so no approval was asked)",
        "unknown_sender",
    );
    check("main: sender was denied by an approver", "sender_denied");
    check(
        "main: too many messages await the same approval",
        "approval_full",
    );
    check("something new", "other");
    let metrics = Metrics::new();
    metrics.router_decided(
        "cli",
        2,
        &["main: did not engage".into(), "main: did not engage".into()],
    );
    metrics.message_dropped(DropStage::Router, labels::ROUTER_DENIED);
    let text = render(&metrics);
    assert_eq!(
        sample(
            &text,
            "crabpot_messages_dropped_total{stage=\"router\",reason=\"not_engaged\"}"
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(&text, "crabpot_messages_held_total{channel=\"cli\"}"),
        Some(2.0)
    );
}

#[test]
fn the_global_registry_is_one() {
    assert!(std::ptr::eq(super::global(), super::global()));
    assert!(
        super::render(&Snapshot::default())
            .contains("# TYPE crabpot_containers_started_total counter")
    );
}
