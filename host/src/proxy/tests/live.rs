//! Tests of `POST /crabpot/v1/live` over a real session socket: what reaches the sink, how
//! the sink's refusals are answered, hostile bodies, and the per-session rate cap.

use super::*;
use protocol::MessageId;
use protocol::live::{LIVE_PATH, LiveEvent, MAX_LIVE_BODY_BYTES};

/// A sink that records what it is given and answers with `answers` in order (then `Ok`).
#[derive(Default)]
struct RecordingSink {
    events: Mutex<Vec<(SessionId, LiveEvent)>>,
    answers: Mutex<VecDeque<Result<(), LiveRefusal>>>,
}

impl LiveSink for RecordingSink {
    fn live(&self, session: &SessionLabel, event: LiveEvent) -> Result<(), LiveRefusal> {
        self.events
            .lock()
            .unwrap()
            .push((session.session_id.clone(), event));
        self.answers.lock().unwrap().pop_front().unwrap_or(Ok(()))
    }
}

impl RecordingSink {
    fn events(&self) -> Vec<LiveEvent> {
        let events = self.events.lock().unwrap();
        events.iter().map(|(_, event)| event.clone()).collect()
    }
}

/// A proxy with no model configured, `sink` set, and at most `per_second` live events.
async fn live_proxy(sink: Option<Arc<RecordingSink>>, per_second: u32) -> RunningProxy {
    RunningProxy::start_configured(None, |proxy| {
        proxy.live.events_per_second = per_second;
        if let Some(sink) = sink {
            proxy.set_live_sink(sink);
        }
    })
    .await
}

/// Posts `body` to the live path; the status and the body as text.
async fn post_live(socket: &Path, body: impl Into<Bytes>) -> (StatusCode, String) {
    let response = call(socket, post(LIVE_PATH, &[], body)).await;
    let status = response.status();
    let bytes = tokio::time::timeout(DEADLINE, response.into_body().collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

fn draft(offset: u32, text: &str) -> LiveEvent {
    LiveEvent::Draft {
        in_reply_to: MessageId::new("m-1"),
        offset,
        text: text.into(),
    }
}

fn body(event: &LiveEvent) -> Vec<u8> {
    event.to_body().unwrap()
}

#[tokio::test]
async fn accepted_events_reach_the_sink_and_nothing_else() {
    let mut upstream = fake_upstream(Vec::new()).await;
    let sink = Arc::new(RecordingSink::default());
    let config = upstream_config(ProviderKind::OpenAi, format!("{}/v1", upstream.root), None);
    let mut proxy = RunningProxy::start_configured(Some(config), |proxy| {
        proxy.set_live_sink(sink.clone());
    })
    .await;
    let started = LiveEvent::TurnStarted {
        in_reply_to: MessageId::new("m-1"),
    };
    let events = [started, draft(0, "Hel"), draft(3, "lo")];
    for event in &events {
        let (status, text) = post_live(&proxy.socket, body(event)).await;
        assert_eq!((status, text.as_str()), (StatusCode::NO_CONTENT, ""));
    }
    assert_eq!(sink.events(), events);
    let sessions: Vec<SessionId> = sink
        .events
        .lock()
        .unwrap()
        .iter()
        .map(|e| e.0.clone())
        .collect();
    assert!(sessions.iter().all(|id| id == &label().session_id));
    assert!(upstream.seen.try_recv().is_err(), "nothing was forwarded");
    assert!(proxy.usage.try_recv().is_err(), "live events are not usage");
}

#[tokio::test]
async fn refusals_of_the_sink_are_409_with_the_offset_or_204() {
    let sink = Arc::new(RecordingSink::default());
    sink.answers.lock().unwrap().extend([
        Err(LiveRefusal::OffsetMismatch { have: 7 }),
        Err(LiveRefusal::NotStreaming),
    ]);
    let proxy = live_proxy(Some(sink.clone()), 100).await;
    let (status, text) = post_live(&proxy.socket, body(&draft(3, "x"))).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        json!({"have": 7})
    );
    let (status, _) = post_live(&proxy.socket, body(&draft(7, "x"))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(sink.events().len(), 2);
}

#[tokio::test]
async fn without_a_sink_events_are_dropped_with_204() {
    let proxy = live_proxy(None, 100).await;
    let (status, _) = post_live(&proxy.socket, body(&draft(0, "x"))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // Still checked: a bad body is refused even when nobody listens.
    let (status, _) = post_live(&proxy.socket, "nope").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn hostile_bodies_are_refused_naming_the_reason() {
    let sink = Arc::new(RecordingSink::default());
    let proxy = live_proxy(Some(sink.clone()), 1000).await;
    let cases: Vec<(Vec<u8>, StatusCode, &str)> = vec![
        (b"not json".to_vec(), StatusCode::BAD_REQUEST, "live_bad_shape"),
        (b"{}".to_vec(), StatusCode::BAD_REQUEST, "live_bad_shape"),
        (
            br#"{"event":"draft","in_reply_to":"m-1","offset":0,"text":"x","destination":"family"}"#
                .to_vec(),
            StatusCode::BAD_REQUEST,
            "live_bad_shape",
        ),
        (
            br#"{"event":"draft_reset","in_reply_to":"../etc"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "live_bad_reply_id",
        ),
        (
            br#"{"event":"draft","in_reply_to":"m-1","offset":4294967295,"text":"x"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "live_draft_too_long",
        ),
        (
            vec![b' '; MAX_LIVE_BODY_BYTES + 1],
            StatusCode::PAYLOAD_TOO_LARGE,
            "request_too_large",
        ),
    ];
    for (bytes, want_status, want_type) in cases {
        let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(80)]).into_owned();
        let (status, text) = post_live(&proxy.socket, bytes).await;
        assert_eq!(status, want_status, "{shown}");
        let error: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(error["error"]["type"], want_type, "{shown}: {error}");
        assert!(
            error["error"]["message"].as_str().unwrap().len() > 10,
            "{error}"
        );
    }
    assert!(sink.events().is_empty(), "nothing bad reached the sink");
}

#[tokio::test]
async fn a_session_past_the_rate_cap_gets_429_and_its_events_are_dropped() {
    let sink = Arc::new(RecordingSink::default());
    let proxy = live_proxy(Some(sink.clone()), 5).await;
    let mut statuses = Vec::new();
    for n in 0..8 {
        let (status, text) = post_live(&proxy.socket, body(&draft(n, "x"))).await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            let error: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(error["error"]["type"], "live_rate_limited");
        }
        statuses.push(status);
    }
    let admitted = statuses
        .iter()
        .filter(|status| **status == StatusCode::NO_CONTENT)
        .count();
    // Five in the burst, and maybe one more refilled while the eight were sent.
    assert!((5..=6).contains(&admitted), "{statuses:?}");
    assert!(
        statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    assert_eq!(sink.events().len(), admitted);
}
