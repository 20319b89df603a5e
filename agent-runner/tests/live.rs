//! Live drafts and `/stop` through whole turns: the fake proxy records the runner's live
//! posts (parsed with the host's own parser) while a fake model streams slowly, stalls, or
//! calls tools; the test plays the host and sends `/stop` as a chat row.

// Test helpers: a failed step should fail the test on the spot.
#![allow(clippy::unwrap_used)]

mod support;

use agent_runner::stop::{NOTHING_RUNNING_REPLY, STOP_REFUSED_REPLY, STOPPED_LINE};
use agent_runner::transcript::{Entry, Transcript};
use agent_runner::{Runner, TurnOutcome};
use protocol::live::LiveEvent;
use protocol::rows::AckStatus;
use protocol::{InboundContent, MessageId, NewInboundRow, ProviderKind, Sender};
use std::time::{Duration, Instant};
use support::{
    Canned, FakeModel, LiveScript, Session, chat_row, config, openai_events, openai_stream,
    wait_for,
};

/// A chat row from someone other than Ann (who sends `chat_row`), with an optional role.
fn chat_from(sender: &str, text: &str, role: Option<&str>) -> NewInboundRow {
    NewInboundRow::chat(&InboundContent {
        text: text.into(),
        sender: Some(Sender {
            id: sender.into(),
            name: None,
        }),
        sender_role: role.map(str::to_owned),
        ..InboundContent::default()
    })
}

/// The drafts among `events`, as `(offset, text)`.
fn drafts(events: &[LiveEvent]) -> Vec<(u32, String)> {
    events
        .iter()
        .filter_map(|event| match event {
            LiveEvent::Draft { offset, text, .. } => Some((*offset, text.clone())),
            LiveEvent::TurnStarted { .. } | LiveEvent::DraftReset { .. } => None,
        })
        .collect()
}

/// Checks that `drafts` append to one draft without gaps or overlaps and returns its text.
fn joined(drafts: &[(u32, String)]) -> String {
    let mut text = String::new();
    for (offset, piece) in drafts {
        assert_eq!(*offset as usize, text.chars().count(), "{drafts:?}");
        text.push_str(piece);
    }
    text
}

fn is_reset(event: &LiveEvent) -> bool {
    matches!(event, LiveEvent::DraftReset { .. })
}

#[tokio::test]
async fn drafts_are_posted_in_order_one_at_a_time_and_coalesced() {
    let session = Session::new(config(ProviderKind::OpenAi));
    let (asked, _) = session.chat("count to twenty");
    let pieces: Vec<String> = (1..=20).map(|n| format!("{n} ")).collect();
    let pieces: Vec<&str> = pieces.iter().map(String::as_str).collect();
    let full = pieces.concat();
    // The host takes 30 ms per post while the model writes a piece every 5 ms.
    let live = LiveScript {
        delay: Duration::from_millis(30),
        answers: Vec::new(),
    };
    let model = FakeModel::serve_with(
        &session,
        vec![Canned::Paced(
            openai_events(&pieces, &[]),
            Duration::from_millis(5),
        )],
        live,
    );
    let mut runner = Runner::open(session.options()).await.unwrap();
    let summary = runner.process_pending().await.unwrap().unwrap();
    runner.close().await;
    assert_eq!(summary.outcome, TurnOutcome::Answered);
    let rows = session.outbound_rows();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        Session::text(&rows[0]),
        full,
        "the final row is the whole reply"
    );

    let events = model.live_events();
    assert_eq!(
        events.first(),
        Some(&LiveEvent::TurnStarted {
            in_reply_to: asked.clone()
        })
    );
    assert!(events.iter().all(|event| event.in_reply_to() == &asked));
    assert!(!events.iter().any(is_reset), "{events:?}");
    let drafts = drafts(&events);
    let drafted = joined(&drafts);
    assert!(!drafted.is_empty(), "{events:?}");
    assert!(
        full.starts_with(&drafted),
        "{drafted:?} is not a prefix of {full:?}"
    );
    assert!(
        drafts.len() < pieces.len(),
        "{} posts for {} pieces: nothing was coalesced",
        drafts.len(),
        pieces.len()
    );
    assert!(
        drafts.iter().any(|(_, text)| text.split(' ').count() > 2),
        "{drafts:?}"
    );
    assert_eq!(model.max_live_in_flight(), 1);
}

#[tokio::test]
async fn a_tool_call_takes_the_draft_back_and_the_next_answer_starts_at_zero() {
    let session = Session::new(config(ProviderKind::OpenAi));
    session.chat("what is in the folder?");
    let pace = Duration::from_millis(20);
    let model = FakeModel::serve(
        &session,
        vec![
            Canned::Paced(
                openai_events(
                    &["Let me ", "look."],
                    &[("c1", "bash", r#"{"command":"echo notes.txt"}"#)],
                ),
                pace,
            ),
            Canned::Paced(openai_events(&["There is ", "notes.txt."], &[]), pace),
        ],
    );
    let mut runner = Runner::open(session.options()).await.unwrap();
    let summary = runner.process_pending().await.unwrap().unwrap();
    runner.close().await;
    assert_eq!(summary.outcome, TurnOutcome::Answered);
    assert_eq!(
        Session::text(&session.outbound_rows()[0]),
        "There is notes.txt."
    );
    let events = model.live_events();
    let resets: Vec<usize> = (0..events.len())
        .filter(|&i| is_reset(&events[i]))
        .collect();
    assert_eq!(resets.len(), 1, "{events:?}");
    let (before, after) = events.split_at(resets[0]);
    let first = joined(&drafts(before));
    assert!(
        !first.is_empty() && "Let me look.".starts_with(&first),
        "{events:?}"
    );
    let second = joined(&drafts(after));
    assert!("There is notes.txt.".starts_with(&second), "{events:?}");
}

#[tokio::test]
async fn no_drafts_once_a_tool_sent_to_the_origin() {
    let session = Session::new(config(ProviderKind::OpenAi));
    session.chat("tell me when it is done");
    let pace = Duration::from_millis(20);
    let model = FakeModel::serve(
        &session,
        vec![
            Canned::Paced(
                openai_events(
                    &["Sending ", "it now."],
                    &[("c1", "send_message", r#"{"text":"It is done."}"#)],
                ),
                pace,
            ),
            Canned::Paced(openai_events(&["I told ", "you."], &[]), pace),
        ],
    );
    let mut runner = Runner::open(session.options()).await.unwrap();
    runner.process_pending().await.unwrap().unwrap();
    runner.close().await;
    let texts: Vec<String> = session.outbound_rows().iter().map(Session::text).collect();
    assert_eq!(texts, ["It is done."], "the final text is not sent as well");
    let events = model.live_events();
    let reset = events.iter().position(is_reset).unwrap();
    assert!(
        drafts(&events[reset..]).is_empty(),
        "nothing drafted after the origin got a message: {events:?}"
    );
}

#[tokio::test]
async fn a_conflict_resends_from_where_the_host_is() {
    let session = Session::new(config(ProviderKind::OpenAi));
    session.chat("spell it");
    // TurnStarted is taken; the first draft is answered "I hold nothing".
    let live = LiveScript {
        delay: Duration::ZERO,
        answers: vec![(204, String::new()), (409, r#"{"have":0}"#.into())],
    };
    let model = FakeModel::serve_with(
        &session,
        vec![Canned::Paced(
            openai_events(&["a", "b", "c"], &[]),
            Duration::from_millis(30),
        )],
        live,
    );
    let mut runner = Runner::open(session.options()).await.unwrap();
    runner.process_pending().await.unwrap().unwrap();
    runner.close().await;
    let drafts = drafts(&model.live_events());
    assert!(drafts.len() >= 2, "{drafts:?}");
    assert_eq!(drafts[0].0, 0);
    assert_eq!(drafts[1].0, 0, "resent from the host's offset: {drafts:?}");
    joined(&drafts[1..]);
}

#[tokio::test]
async fn stop_cancels_a_stalled_model_stream_and_keeps_the_text_shown() {
    let session = Session::new(config(ProviderKind::OpenAi));
    let model = FakeModel::serve(
        &session,
        vec![Canned::Stalled(
            openai_events(&["Once upon ", "a time"], &[])[..3].to_vec(),
        )],
    );
    let runner = Runner::open(session.options()).await.unwrap();
    let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = runner.run_until(async {
        let _ = stopped.await;
    });
    let test = async {
        let (story, _) = session.chat("tell me a story");
        wait_for("the draft", || {
            joined(&drafts(&model.live_events())) == "Once upon a time"
        })
        .await;
        let stop = chat_row("/stop");
        session.insert(&stop);
        let sent_at = Instant::now();
        wait_for("the stopped reply", || !session.outbound_rows().is_empty()).await;
        let took = sent_at.elapsed();
        let _ = shutdown.send(());
        (story, stop.id, took)
    };
    let (result, (story, stop, took)) = tokio::time::timeout(Duration::from_secs(30), async {
        tokio::join!(running, test)
    })
    .await
    .unwrap();
    result.unwrap();
    // Not a timing assertion (the bench measures those): the stream never ends, so only
    // the stop can have produced the reply.
    eprintln!("/stop answered after {took:?}");
    let rows = session.outbound_rows();
    assert_eq!(rows.len(), 1);
    let reply = format!("Once upon a time\n\n{STOPPED_LINE}");
    assert_eq!(Session::text(&rows[0]), reply);
    assert_eq!(rows[0].in_reply_to.as_ref(), Some(&story));
    assert_eq!(session.ack(&story), Some(AckStatus::Completed));
    assert_eq!(session.ack(&stop), Some(AckStatus::Completed));
    assert_eq!(
        model.requests().len(),
        1,
        "the /stop never reaches the model"
    );
    let transcript = Transcript::load(&session.paths.transcript()).unwrap();
    match transcript.entries() {
        [
            Entry::User { text: asked, .. },
            Entry::Assistant { text, tool_calls },
        ] => {
            assert!(asked.contains("tell me a story") && !asked.contains("/stop"));
            assert_eq!(text, &reply);
            assert!(tool_calls.is_empty());
        }
        entries => panic!("unexpected transcript: {entries:?}"),
    }
}

#[tokio::test]
async fn stop_during_a_tool_cuts_it_and_tells_the_model_later() {
    let session = Session::new(config(ProviderKind::OpenAi));
    let (asked, _) = session.chat("run the long job");
    let model = FakeModel::serve(
        &session,
        vec![
            Canned::Sse(openai_stream(
                "",
                &[("c1", "bash", r#"{"command":"touch started; sleep 30"}"#)],
            )),
            Canned::Sse(openai_stream("Stopped it, as you asked.", &[])),
        ],
    );
    let mut runner = Runner::open(session.options()).await.unwrap();
    let started = session.paths.work_dir().join("started");
    let stop = chat_from("u9", "/stop", Some("admin"));
    let (summary, ()) = tokio::join!(runner.process_pending(), async {
        wait_for("the job to start", || started.exists()).await;
        session.insert(&stop);
    });
    let summary = summary.unwrap().unwrap();
    assert_eq!(summary.outcome, TurnOutcome::Stopped);
    assert_eq!(summary.rows, [asked.clone(), stop.id.clone()]);
    assert_eq!(Session::text(&session.outbound_rows()[0]), STOPPED_LINE);
    assert_eq!(session.ack(&stop.id), Some(AckStatus::Completed));
    // The next turn shows the model the cut-off call and the stopped reply.
    session.chat("what happened?");
    runner.process_pending().await.unwrap().unwrap();
    runner.close().await;
    let messages = model.requests()[1].body["messages"].clone();
    let tool = messages
        .as_array()
        .unwrap()
        .iter()
        .find(|message| message["role"] == "tool")
        .unwrap();
    assert!(
        tool["content"]
            .as_str()
            .unwrap()
            .contains("stopped this turn"),
        "{tool}"
    );
    assert!(messages.to_string().contains(STOPPED_LINE));
}

#[tokio::test]
async fn stop_from_someone_else_is_refused_and_the_turn_goes_on() {
    let session = Session::new(config(ProviderKind::OpenAi));
    let (asked, _) = session.chat("take your time");
    let (release, held) = tokio::sync::oneshot::channel();
    let model = FakeModel::serve(
        &session,
        vec![Canned::Held(
            held,
            Box::new(Canned::Sse(openai_stream("Done thinking.", &[]))),
        )],
    );
    let mut runner = Runner::open(session.options()).await.unwrap();
    let stop = chat_from("u2", "/stop", None);
    let (summary, ()) = tokio::join!(runner.process_pending(), async {
        wait_for("the model call", || !model.requests().is_empty()).await;
        session.insert(&stop);
        wait_for("the refusal", || !session.outbound_rows().is_empty()).await;
        let _ = release.send(());
    });
    let summary = summary.unwrap().unwrap();
    assert_eq!(summary.outcome, TurnOutcome::Answered);
    let texts: Vec<String> = session.outbound_rows().iter().map(Session::text).collect();
    assert_eq!(texts, [STOP_REFUSED_REPLY, "Done thinking."]);
    assert_eq!(session.ack(&stop.id), Some(AckStatus::Completed));
    assert_eq!(session.ack(&asked), Some(AckStatus::Completed));
    // With nothing running, /stop says so.
    let late: MessageId = session.chat("/stop").0;
    let summary = runner.process_pending().await.unwrap().unwrap();
    runner.close().await;
    assert_eq!(summary.outcome, TurnOutcome::NothingToStop);
    assert_eq!(
        Session::text(session.outbound_rows().last().unwrap()),
        NOTHING_RUNNING_REPLY
    );
    assert_eq!(session.ack(&late), Some(AckStatus::Completed));
    assert_eq!(model.requests().len(), 1);
}

#[tokio::test]
async fn stop_sent_with_the_turns_rows_stops_it_before_the_model_is_called() {
    let session = Session::new(config(ProviderKind::OpenAi));
    let (essay, _) = session.chat("write me an essay");
    let (stop, _) = session.chat("/stop");
    let (later, _) = session.chat("actually, a poem");
    let model = FakeModel::serve(&session, vec![Canned::Sse(openai_stream("A poem.", &[]))]);
    let mut runner = Runner::open(session.options()).await.unwrap();
    let summary = runner.process_pending().await.unwrap().unwrap();
    assert_eq!(summary.outcome, TurnOutcome::Stopped);
    assert_eq!(summary.model_calls, 0);
    assert_eq!(summary.rows, [essay.clone(), stop.clone()]);
    assert_eq!(
        session.ack(&later),
        None,
        "rows after the /stop are the next turn's"
    );
    let summary = runner.process_pending().await.unwrap().unwrap();
    runner.close().await;
    assert_eq!(summary.outcome, TurnOutcome::Answered);
    let texts: Vec<String> = session.outbound_rows().iter().map(Session::text).collect();
    assert_eq!(texts, [STOPPED_LINE, "A poem."]);
    let user = model.requests()[0].body["messages"].to_string();
    assert!(
        user.contains("write me an essay") && !user.contains("/stop"),
        "{user}"
    );
}
