//! Live replies end to end through a real container, with the fake model streaming slowly:
//! the terminal sees the typing indicator, then drafts that grow, then exactly one reply that
//! takes the drafts' place; and `/stop` cancels a slow turn, keeping what was written.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use host::channels::cli::ServerLine;
use std::time::Duration;
use support::{Platform, Say};
use tests::docker::require_docker;
use tests::fake_model::{FakeModel, Reply};
use tests::host_process::{HostOptions, HostProcess, ModelConfig};

const TURN: Duration = Duration::from_secs(90);

async fn start(fake: &FakeModel) -> HostProcess {
    HostProcess::start(HostOptions::with_model(ModelConfig::openai(fake)))
        .await
        .unwrap()
}

fn drafts(lines: &[ServerLine]) -> Vec<(String, String)> {
    lines
        .iter()
        .filter_map(|line| match line {
            ServerLine::Draft {
                key,
                text,
                platform_id,
                ..
            } if platform_id == "local" => Some((key.clone(), text.clone())),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_reply_grows_then_arrives_once() {
    if !require_docker("a_streamed_reply_grows_then_arrives_once").await {
        return;
    }
    let fake = FakeModel::start().unwrap();
    let text = "The crab builds its pot one stone at a time, and never hurries.";
    fake.push(Reply::text(text).streamed_slowly(6, Duration::from_millis(150)));
    let host = start(&fake).await;
    let mut platform = Platform::connect(&host).await;
    platform.say(&Say::dm("ann", "local"), "tell me").await;
    let (reply, _) = platform.reply_containing("local", "never hurries").await;
    assert_eq!(reply, text);
    let lines = platform.lines();
    let drafts = drafts(&lines);
    assert!(drafts.len() >= 2, "the text grew in drafts: {drafts:?}");
    for pair in drafts.windows(2) {
        assert!(
            pair[1].1.starts_with(&pair[0].1),
            "each draft extends the last: {drafts:?}"
        );
    }
    let replies: Vec<&ServerLine> = lines
        .iter()
        .filter(
            |line| matches!(line, ServerLine::Reply { platform_id, .. } if platform_id == "local"),
        )
        .collect();
    assert_eq!(replies.len(), 1, "exactly one reply: {replies:?}");
    let ServerLine::Reply { replaces_draft, .. } = replies[0] else {
        unreachable!()
    };
    assert_eq!(
        replaces_draft.as_deref(),
        Some(drafts[0].0.as_str()),
        "the reply takes the drafts' place"
    );
    // Typing showed before the first draft.
    let typing = lines
        .iter()
        .position(|line| matches!(line, ServerLine::Typing { on: true, .. }));
    let first_draft = lines
        .iter()
        .position(|line| matches!(line, ServerLine::Draft { .. }));
    assert!(
        typing.is_some() && typing < first_draft,
        "typing before the text: {lines:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_cancels_a_slow_turn() {
    if !require_docker("stop_cancels_a_slow_turn").await {
        return;
    }
    let fake = FakeModel::start().unwrap();
    // Two characters a second: the whole reply would take minutes.
    let long = "slow ".repeat(100);
    fake.push(Reply::text(long).streamed_slowly(1, Duration::from_millis(500)));
    let host = start(&fake).await;
    let mut platform = Platform::connect(&host).await;
    let ann = Say::dm("ann", "local");
    platform.say(&ann, "take your time").await;
    platform
        .wait_for("the first draft", TURN, |lines| {
            (!drafts(lines).is_empty()).then_some(())
        })
        .await;
    platform.say(&ann, "/stop").await;
    let (reply, _) = platform.reply_containing("local", "Stopped").await;
    assert!(
        reply.starts_with('s'),
        "the text written so far is kept: {reply}"
    );
    assert!(
        reply.len() < 100,
        "stopped long before the end of the stream: {reply}"
    );
    // The agent answers the next message as usual.
    platform.say(&ann, "hello again").await;
    platform.reply_containing("local", "hello again").await;
}
