//! The hostile-session suite, rows: what a container writes into `messages_out` beyond the
//! content checks of `core_loop` — a 50 MiB id, a row whose seq is below rows already
//! delivered (before and after a host restart), and 10,000 rows at once. The host's memory
//! stays bounded, the delivery cursor holds across restarts, a flood is capped (or drained)
//! with one notice, and another session's replies keep arriving.
//!
//! Rows are written from the host side as the container would (busybox has no sqlite3),
//! with [`arena::OutboundWriter`] on the session's `out/outbound.db`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/arena.rs"]
mod arena;
mod support;

use arena::{Arena, OutboundWriter, delivered_status};
use std::time::Duration;
use tests::docker::require_docker;
use tests::process_usage::{ProcessUsage, mib};

#[tokio::test(flavor = "multi_thread")]
async fn a_huge_id_is_refused_without_loading_it() {
    if !require_docker("a_huge_id_is_refused_without_loading_it").await {
        return;
    }
    let mut arena = Arena::start(|options| options).await;
    let victim = arena.open_chat("victim").await;
    let attacker = arena.open_chat("attacker").await;
    let host = ProcessUsage::new(arena.pid());

    let writer = OutboundWriter::open(&attacker);
    let seq = writer.seq_above_all(0);
    let huge_id = "i".repeat(50 * 1024 * 1024);
    let after = format!("after-huge-{}", uuid::Uuid::new_v4().simple());
    host.reset_peak_rss().unwrap();
    let rss_before = host.rss_bytes().unwrap();
    writer.insert_chat(seq, &huge_id, "from a row with a huge id");
    writer.insert_chat(seq + 2, "after-huge", &after);
    drop(huge_id);

    // The host has dealt with the huge row once the next one is through, or the session
    // is failed for it.
    let deadline = tokio::time::Instant::now() + support::TURN;
    loop {
        if arena
            .platform
            .replies(&attacker.chat)
            .iter()
            .any(|r| r.contains(&after))
            || delivered_status(&attacker, "after-huge").is_some()
            || arena.failure_of(&attacker).await.is_some()
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the host never got past the row with a 50 MiB id; host log:\n{}",
            arena.host.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    arena.round_trip(&victim).await;
    let peak = host.peak_rss_bytes().unwrap();
    assert!(
        peak < rss_before + 60 * 1024 * 1024,
        "host RSS peaked at {:.0} MiB (from {:.0} MiB) on a row with a 50 MiB id",
        mib(peak),
        mib(rss_before)
    );
    assert!(
        !arena
            .platform
            .replies(&attacker.chat)
            .iter()
            .any(|r| r.contains("from a row with a huge id")),
        "the row with a 50 MiB id was delivered"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_row_below_the_delivered_seq_is_refused_also_after_a_restart() {
    if !require_docker("a_row_below_the_delivered_seq_is_refused_also_after_a_restart").await {
        return;
    }
    let mut arena = Arena::start(|options| options).await;
    let attacker = arena.open_chat("attacker").await;
    let marker = uuid::Uuid::new_v4().simple().to_string();
    let (first, lower, second, third) = (
        format!("first-{marker}"),
        format!("lower-{marker}"),
        format!("second-{marker}"),
        format!("third-{marker}"),
    );

    let writer = OutboundWriter::open(&attacker);
    let seq = writer.seq_above_all(4);
    writer.insert_chat(seq, "row-first", &first);
    arena
        .platform
        .reply_containing(&attacker.chat, &first)
        .await;
    // Below what was delivered: refused. The row after it shows the host read past it.
    writer.insert_chat(seq - 2, "row-lower", &lower);
    writer.insert_chat(seq + 2, "row-second", &second);
    arena
        .platform
        .reply_containing(&attacker.chat, &second)
        .await;
    drop(writer);

    // A restart forgets nothing: the cursor is on disk.
    arena.host.restart().await.unwrap();
    arena.platform = support::Platform::connect(&arena.host).await;
    let writer = OutboundWriter::open(&attacker);
    writer.insert_chat(seq + 4, "row-third", &third);
    arena
        .platform
        .reply_containing(&attacker.chat, &third)
        .await;
    arena.round_trip(&attacker).await;

    assert!(
        !arena
            .platform
            .replies(&attacker.chat)
            .iter()
            .any(|r| r.contains(&lower)),
        "the row below the delivered seq was delivered after the restart"
    );
    match delivered_status(&attacker, "row-lower") {
        None => {}
        Some((status, error)) => assert_eq!(
            status, "dropped",
            "the lower row is refused, not delivered ({error:?})"
        ),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_thousand_rows_at_once_are_handled_with_one_notice_and_others_are_served() {
    if !require_docker("ten_thousand_rows_at_once_are_handled_with_one_notice").await {
        return;
    }
    const ROWS: usize = 10_000;
    let mut arena = Arena::start(|options| options).await;
    let victim = arena.open_chat("victim").await;
    let attacker = arena.open_chat("attacker").await;
    let system_before = system_rows(&attacker);
    let log_before = arena.host.log();
    let warnings_before = log_before.lines().filter(|l| l.contains("WARN")).count();

    let mut writer = OutboundWriter::open(&attacker);
    let seq = writer.seq_above_all(0);
    let rows: Vec<(i64, String, String)> = (0..ROWS)
        .map(|i| {
            (
                seq + 2 * i as i64,
                format!("flood-{i}"),
                format!("flood row {i}"),
            )
        })
        .collect();
    writer.insert_many(&rows);
    drop(writer);

    // The other chat is served while the flood is handled.
    arena.round_trip(&victim).await;

    // Every row is handled (delivered, or refused over the caps) in reasonable time.
    let counts = support::eventually(
        "all 10,000 rows to be handled",
        Duration::from_secs(150),
        || {
            let conn = support::read_only(&attacker.inbound_db());
            let handled: i64 = conn
                .query_row(
                    "SELECT count(*) FROM delivered WHERE message_out_id LIKE 'flood-%' \
                     AND status IN ('delivered', 'dropped', 'failed')",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            (handled as usize == ROWS).then(|| flood_counts(&attacker))
        },
    )
    .await;
    eprintln!("the attacker's rows: {counts:?}");
    let delivered: i64 = counts
        .iter()
        .filter(|(status, _)| status == "delivered")
        .map(|(_, n)| *n)
        .sum();
    if (delivered as usize) < ROWS {
        // Capped: the agent is told once (a notice per cap window at most), not per row.
        let notices = system_rows(&attacker) - system_before;
        assert!(
            (1..=3).contains(&notices),
            "{notices} notices to the agent for one capped flood ({counts:?}); the last: {:?}",
            last_system_rows(&attacker, 3)
        );
    }
    // Every delivered row reached the chat, and nothing else of the flood did.
    support::eventually(
        "the delivered rows to reach the chat",
        support::TURN,
        || {
            let received = arena
                .platform
                .replies(&attacker.chat)
                .iter()
                .filter(|reply| reply.starts_with("flood row "))
                .count();
            (received as i64 == delivered).then_some(())
        },
    )
    .await;
    let warnings = arena
        .host
        .log()
        .lines()
        .filter(|l| l.contains("WARN"))
        .count()
        - warnings_before;
    assert!(
        warnings < 100,
        "{warnings} warnings logged for one flood: refusals are coalesced"
    );
    arena.round_trip(&victim).await;
}

/// How many `system` rows the host wrote into a session's `messages_in` (its notices).
fn system_rows(chat: &arena::ArenaChat) -> usize {
    let conn = support::read_only(&chat.inbound_db());
    let n: i64 = conn
        .query_row(
            "SELECT count(*) FROM messages_in WHERE kind = 'system'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    n as usize
}

/// The content and seq of the last `n` `system` rows of a session's `messages_in`.
fn last_system_rows(chat: &arena::ArenaChat, n: usize) -> Vec<(i64, String)> {
    let conn = support::read_only(&chat.inbound_db());
    conn.prepare(
        "SELECT seq, content FROM messages_in WHERE kind = 'system' ORDER BY seq DESC LIMIT ?1",
    )
    .unwrap()
    .query_map([n as i64], |r| Ok((r.get(0)?, r.get(1)?)))
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

/// How many of the flood's rows the session's `delivered` table has with each status.
fn flood_counts(chat: &arena::ArenaChat) -> Vec<(String, i64)> {
    let conn = support::read_only(&chat.inbound_db());
    conn.prepare(
        "SELECT status, count(*) FROM delivered WHERE message_out_id LIKE 'flood-%' \
         GROUP BY status ORDER BY status",
    )
    .unwrap()
    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
    .unwrap()
    .map(Result::unwrap)
    .collect()
}
