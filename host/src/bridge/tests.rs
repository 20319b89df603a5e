//! The bridge against a recording adapter: rates and retry-after, long rows in pieces that
//! are not sent twice on a retry, and live drafts that end as exactly one message.

use super::remembered::{DraftLog, ShownDraft};
use super::*;
use crate::edge::{Capabilities, Draft, Markup, Rate, RateLimits};
use protocol::MessageContent;
use std::sync::atomic::{AtomicU32, Ordering};
use tokio::time::Instant;

/// Records every call with the (paused) time it came; answers as scripted.
struct Recorder {
    capabilities: Capabilities,
    calls: Mutex<Vec<(Instant, String)>>,
    /// Answer the next N delivers with a retry-after of this long.
    rate_limited: Mutex<Option<(u32, Duration)>>,
    /// Fail delivers of this piece number once.
    fail_piece: Mutex<Option<u32>>,
    next_id: AtomicU32,
}

impl Recorder {
    fn new(capabilities: Capabilities) -> Arc<Self> {
        Arc::new(Self {
            capabilities,
            calls: Mutex::new(Vec::new()),
            rate_limited: Mutex::new(None),
            fail_piece: Mutex::new(None),
            next_id: AtomicU32::new(1),
        })
    }

    fn record(&self, call: String) {
        self.calls.lock().unwrap().push((Instant::now(), call));
    }

    fn calls(&self) -> Vec<String> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .map(|(_, c)| c.clone())
            .collect()
    }

    fn times(&self) -> Vec<Instant> {
        self.calls.lock().unwrap().iter().map(|(t, _)| *t).collect()
    }
}

impl Channel for Recorder {
    fn channel_type(&self) -> &str {
        "rec"
    }

    fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    fn deliver<'a>(
        &'a self,
        _to: &'a ChatAddress,
        message: &'a OutgoingMessage,
    ) -> crate::edge::BoxFuture<'a, Result<String, ChannelError>> {
        Box::pin(async move {
            let limited = *self.rate_limited.lock().unwrap();
            if let Some((left, wait)) = limited
                && left > 0
            {
                *self.rate_limited.lock().unwrap() = Some((left - 1, wait));
                self.record("429".into());
                return Err(ChannelError::RateLimited { retry_after: wait });
            }
            let fail_piece = *self.fail_piece.lock().unwrap();
            if fail_piece == Some(message.piece) {
                *self.fail_piece.lock().unwrap() = None;
                self.record(format!("fail piece {}", message.piece));
                return Err(ChannelError::Unavailable("down".into()));
            }
            let id = self.next_id.fetch_add(1, Ordering::SeqCst);
            let replaces = message
                .replaces_draft
                .as_deref()
                .map(|key| format!(" replacing {key}"))
                .unwrap_or_default();
            let buttons: Vec<&str> = message.buttons.iter().map(|b| b.answer.as_str()).collect();
            let buttons = if buttons.is_empty() {
                String::new()
            } else {
                format!(" buttons {buttons:?}")
            };
            self.record(format!(
                "deliver m{id}: {}{replaces}{buttons}",
                message.text
            ));
            Ok(format!("m{id}"))
        })
    }

    fn edit<'a>(
        &'a self,
        _to: &'a ChatAddress,
        platform_message_id: &'a str,
        message: &'a OutgoingMessage,
    ) -> crate::edge::BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async move {
            self.record(format!("edit {platform_message_id}: {}", message.text));
            Ok(())
        })
    }

    fn draft<'a>(
        &'a self,
        _to: &'a ChatAddress,
        draft: &'a Draft,
    ) -> crate::edge::BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async move {
            self.record(format!("draft {}: {}", draft.key, draft.text));
            Ok(())
        })
    }

    fn set_typing<'a>(
        &'a self,
        _to: &'a ChatAddress,
        on: bool,
    ) -> crate::edge::BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async move {
            self.record(format!("typing {on}"));
            Ok(())
        })
    }
}

fn address() -> ChatAddress {
    ChatAddress {
        channel_type: "rec".into(),
        platform_id: "c1".into(),
        thread_id: None,
    }
}

fn setup(capabilities: Capabilities) -> (Arc<Bridge>, Arc<Recorder>, Arc<dyn Channel>) {
    let channels = Arc::new(Channels::default());
    let recorder = Recorder::new(capabilities);
    channels.register(recorder.clone());
    let channel: Arc<dyn Channel> = recorder.clone();
    (Bridge::new(channels), recorder, channel)
}

async fn send_text(
    bridge: &Bridge,
    channel: &Arc<dyn Channel>,
    id: &str,
    text: &str,
    in_reply_to: Option<&MessageId>,
) -> Result<String, ChannelError> {
    let content = OutboundContent::Message(MessageContent {
        text: text.into(),
        files: Vec::new(),
    });
    bridge
        .send(
            channel,
            RowSend {
                session: &SessionId::new("s1"),
                address: &address(),
                id: &MessageId::new(id),
                seq: Seq(1),
                content: &content,
                files: &[],
                target: None,
                in_reply_to,
                resend: false,
            },
        )
        .await
}

#[tokio::test(start_paused = true)]
async fn sends_keep_the_chats_rate() {
    let capabilities = Capabilities {
        rate: RateLimits {
            per_platform: None,
            per_chat: Some(Rate {
                burst: 1,
                per: Duration::from_secs(1),
            }),
        },
        ..Capabilities::text_only(1000, Markup::Markdown)
    };
    let (bridge, recorder, channel) = setup(capabilities);
    for i in 0..3 {
        send_text(&bridge, &channel, &format!("r{i}"), "hello", None)
            .await
            .unwrap();
    }
    let times = recorder.times();
    assert_eq!(times.len(), 3);
    for pair in times.windows(2) {
        assert!(pair[1] - pair[0] >= Duration::from_secs(1), "{times:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_is_honoured_and_the_send_tried_again() {
    let (bridge, recorder, channel) = setup(Capabilities::text_only(1000, Markup::Markdown));
    *recorder.rate_limited.lock().unwrap() = Some((1, Duration::from_secs(5)));
    let start = Instant::now();
    let sent = send_text(&bridge, &channel, "r1", "hello", None)
        .await
        .unwrap();
    assert_eq!(sent, "m1");
    assert_eq!(recorder.calls(), ["429", "deliver m1: hello"]);
    assert!(recorder.times()[1] - start >= Duration::from_secs(5));
}

#[tokio::test(start_paused = true)]
async fn a_long_row_retried_after_a_failed_piece_sends_no_piece_twice() {
    let (bridge, recorder, channel) = setup(Capabilities::text_only(40, Markup::Markdown));
    let text = "First paragraph, short.\n\nSecond paragraph, short.\n\nThird paragraph, short.";
    *recorder.fail_piece.lock().unwrap() = Some(1);
    let failed = send_text(&bridge, &channel, "long", text, None).await;
    assert!(failed.is_err());
    let first = send_text(&bridge, &channel, "long", text, None)
        .await
        .unwrap();
    let delivered: Vec<String> = recorder
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("deliver"))
        .collect();
    assert_eq!(first, "m1");
    assert_eq!(delivered.len(), 3, "{delivered:?}");
    assert!(delivered[0].contains("First"), "{delivered:?}");
    assert!(delivered[1].contains("Second"), "{delivered:?}");
    assert!(delivered[2].contains("Third"), "{delivered:?}");
}

/// Waits until the recorder has a call starting with `prefix`.
async fn call_like(recorder: &Recorder, prefix: &str) {
    for _ in 0..2000 {
        if recorder.calls().iter().any(|c| c.starts_with(prefix)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("no call like {prefix:?} in {:?}", recorder.calls());
}

#[tokio::test(start_paused = true)]
async fn an_editing_platform_shows_one_message_edited_in_place() {
    let capabilities = Capabilities {
        edits: true,
        min_edit_interval: Duration::from_secs(1),
        typing_renew: Some(Duration::from_secs(5)),
        ..Capabilities::text_only(1000, Markup::Markdown)
    };
    let (bridge, recorder, channel) = setup(capabilities);
    let session = SessionId::new("s1");
    let streams = bridge.streams();
    streams.begin(&session, "in1", async { Some(address()) });
    call_like(&recorder, "typing true").await;
    streams.append(&session, "in1", 0, "Hel").unwrap();
    call_like(&recorder, "deliver m1: Hel").await;
    streams.append(&session, "in1", 3, "lo").unwrap();
    assert_eq!(
        streams.append(&session, "in1", 3, "x"),
        Err(live::Refusal::OffsetMismatch { have: 5 })
    );
    call_like(&recorder, "edit m1: Hello").await;
    let sent = send_text(
        &bridge,
        &channel,
        "final",
        "Hello, world",
        Some(&MessageId::new("in1")),
    )
    .await
    .unwrap();
    assert_eq!(sent, "m1", "the reply is the draft's message");
    let calls = recorder.calls();
    assert_eq!(
        calls.iter().filter(|c| c.starts_with("deliver")).count(),
        1,
        "{calls:?}"
    );
    assert_eq!(
        calls.last().map(String::as_str),
        Some("edit m1: Hello, world")
    );
    // The edits kept the platform's edit rate.
    let edits: Vec<Instant> = recorder
        .calls
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, c)| c.starts_with("edit") || c.starts_with("deliver"))
        .map(|(t, _)| *t)
        .collect();
    for pair in edits.windows(2) {
        assert!(pair[1] - pair[0] >= Duration::from_secs(1), "{calls:?}");
    }
    // After the reply took its place, a late draft is refused.
    assert_eq!(
        streams.append(&session, "in1", 12, "!"),
        Err(live::Refusal::NotStreaming)
    );
}

#[tokio::test(start_paused = true)]
async fn a_draft_answered_429_holds_the_chat_for_the_retry_after() {
    let capabilities = Capabilities {
        edits: true,
        min_edit_interval: Duration::from_secs(1),
        ..Capabilities::text_only(1000, Markup::Markdown)
    };
    let (bridge, recorder, channel) = setup(capabilities);
    *recorder.rate_limited.lock().unwrap() = Some((1, Duration::from_secs(5)));
    let session = SessionId::new("s1");
    let streams = bridge.streams();
    streams.begin(&session, "in1", async { Some(address()) });
    streams.append(&session, "in1", 0, "Hel").unwrap();
    call_like(&recorder, "429").await;
    streams.append(&session, "in1", 3, "lo").unwrap();
    send_text(
        &bridge,
        &channel,
        "final",
        "Hello",
        Some(&MessageId::new("in1")),
    )
    .await
    .unwrap();
    let calls = recorder.calls.lock().unwrap().clone();
    let limited_at = calls
        .iter()
        .find(|(_, c)| c == "429")
        .map(|(t, _)| *t)
        .unwrap();
    // Nothing reached the chat in the 5 s the platform asked for: not the next draft, not
    // the reply.
    for (at, call) in &calls {
        if call.starts_with("deliver") || call.starts_with("edit") {
            assert!(*at - limited_at >= Duration::from_secs(5), "{calls:?}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_live_platform_sees_drafts_and_one_reply_that_replaces_them() {
    let capabilities = Capabilities {
        live_drafts: true,
        ..Capabilities::text_only(1000, Markup::Markdown)
    };
    let (bridge, recorder, channel) = setup(capabilities);
    let session = SessionId::new("s1");
    let streams = bridge.streams();
    streams.begin(&session, "in1", async { Some(address()) });
    streams.append(&session, "in1", 0, "Hi").unwrap();
    call_like(&recorder, "draft in1: Hi").await;
    streams.append(&session, "in1", 2, " there").unwrap();
    call_like(&recorder, "draft in1: Hi there").await;
    send_text(
        &bridge,
        &channel,
        "final",
        "Hi there.",
        Some(&MessageId::new("in1")),
    )
    .await
    .unwrap();
    assert_eq!(
        recorder.calls().last().map(String::as_str),
        Some("deliver m1: Hi there. replacing in1")
    );
}

#[tokio::test(start_paused = true)]
async fn a_turn_without_a_reply_removes_its_draft() {
    let capabilities = Capabilities {
        live_drafts: true,
        ..Capabilities::text_only(1000, Markup::Markdown)
    };
    let (bridge, recorder, _channel) = setup(capabilities);
    let session = SessionId::new("s1");
    let streams = bridge.streams();
    streams.begin(&session, "in1", async { Some(address()) });
    streams.append(&session, "in1", 0, "thinking").unwrap();
    call_like(&recorder, "draft in1: thinking").await;
    streams.finish(&session, &[MessageId::new("in1")]).await;
    assert_eq!(
        recorder.calls().last().map(String::as_str),
        Some("draft in1: ")
    );
}

#[tokio::test]
async fn a_host_message_has_its_buttons_on_its_last_piece_where_there_are_buttons() {
    let message = crate::edge::HostMessage {
        to: address(),
        text: "first paragraph\n\nsecond paragraph".into(),
        buttons: vec![crate::edge::Button {
            label: "Approve".into(),
            answer: "approve ap-1".into(),
        }],
    };
    let with_buttons = Capabilities {
        buttons: true,
        ..Capabilities::text_only(20, Markup::Markdown)
    };
    let (bridge, recorder, channel) = setup(with_buttons);
    bridge.host_message(&channel, &message).await.unwrap();
    assert_eq!(
        recorder.calls(),
        [
            "deliver m1: first paragraph",
            "deliver m2: second paragraph buttons [\"approve ap-1\"]"
        ]
    );
    let (bridge, recorder, channel) = setup(Capabilities::text_only(1000, Markup::Markdown));
    bridge.host_message(&channel, &message).await.unwrap();
    assert_eq!(
        recorder.calls(),
        ["deliver m1: first paragraph\n\nsecond paragraph"]
    );
}

/// Drafts written down, as the central DB keeps them in the daemon.
#[derive(Default)]
struct MemoryLog {
    shown: Mutex<Vec<ShownDraft>>,
    gone: Mutex<Vec<String>>,
}

impl DraftLog for MemoryLog {
    fn shown(&self, draft: ShownDraft) -> crate::edge::BoxFuture<'_, ()> {
        self.shown.lock().unwrap().push(draft);
        Box::pin(async {})
    }

    fn gone(&self, _session: SessionId, key: String) -> crate::edge::BoxFuture<'_, ()> {
        self.gone.lock().unwrap().push(key);
        Box::pin(async {})
    }
}

/// A bridge as a restarted host has it: the drafts the earlier run wrote down are taken up.
fn restarted(
    capabilities: Capabilities,
    found: &[ShownDraft],
) -> (Arc<Bridge>, Arc<Recorder>, Arc<dyn Channel>, Arc<MemoryLog>) {
    let (bridge, recorder, channel) = setup(capabilities);
    let log = Arc::new(MemoryLog::default());
    bridge.streams().remember(log.clone(), found.to_vec());
    (bridge, recorder, channel, log)
}

#[tokio::test(start_paused = true)]
async fn after_a_restart_the_draft_an_earlier_run_showed_is_edited_not_left_behind() {
    let capabilities = Capabilities {
        edits: true,
        min_edit_interval: Duration::from_secs(1),
        ..Capabilities::text_only(1000, Markup::Markdown)
    };
    let session = SessionId::new("s1");
    // The first run shows a draft, writes its message down, and dies.
    let (bridge, recorder, _channel, log) = restarted(capabilities, &[]);
    bridge
        .streams()
        .begin(&session, "in1", async { Some(address()) });
    bridge.streams().append(&session, "in1", 0, "Hal").unwrap();
    call_like(&recorder, "deliver m1: Hal").await;
    let found = log.shown.lock().unwrap().clone();
    assert_eq!(found.len(), 1);
    assert_eq!(
        (found[0].key.as_str(), found[0].platform_id.as_str()),
        ("in1", "m1")
    );

    // The reply the next run sends edits that message.
    let (bridge, recorder, channel, log) = restarted(capabilities, &found);
    let sent = send_text(
        &bridge,
        &channel,
        "r1",
        "Hello",
        Some(&MessageId::new("in1")),
    )
    .await
    .unwrap();
    assert_eq!(sent, "m1");
    assert_eq!(recorder.calls(), ["edit m1: Hello"]);
    assert_eq!(*log.gone.lock().unwrap(), ["in1"]);

    // Drafts the next run shows for the same turn go on in that message.
    let (bridge, recorder, _channel, _log) = restarted(capabilities, &found);
    bridge
        .streams()
        .begin(&session, "in1", async { Some(address()) });
    bridge
        .streams()
        .append(&session, "in1", 0, "Hello")
        .unwrap();
    call_like(&recorder, "edit m1: Hello").await;
    assert!(!recorder.calls().iter().any(|c| c.starts_with("deliver")));

    // A turn that ends without a reply, or a new turn of the session, takes it away.
    let (bridge, recorder, _channel, log) = restarted(capabilities, &found);
    bridge
        .streams()
        .finish(&session, &[MessageId::new("in1")])
        .await;
    assert_eq!(
        recorder.calls(),
        [format!("edit m1: {}", live::PLACEHOLDER)]
    );
    assert_eq!(*log.gone.lock().unwrap(), ["in1"]);
    let (bridge, recorder, _channel, _log) = restarted(capabilities, &found);
    bridge
        .streams()
        .begin(&session, "in2", async { Some(address()) });
    call_like(&recorder, "edit m1: ").await;

    // A reply to another chat does not edit it: the draft is taken away, the reply is new.
    let elsewhere = ShownDraft {
        address: ChatAddress {
            platform_id: "c2".into(),
            ..address()
        },
        ..found[0].clone()
    };
    let (bridge, recorder, channel, _log) = restarted(capabilities, &[elsewhere]);
    send_text(
        &bridge,
        &channel,
        "r1",
        "Hello",
        Some(&MessageId::new("in1")),
    )
    .await
    .unwrap();
    assert_eq!(
        recorder.calls(),
        [
            format!("edit m1: {}", live::PLACEHOLDER),
            "deliver m1: Hello".into()
        ]
    );
}
