//! The cli channel over a real socket, with a fake [`Inbox`] in place of the router: the line
//! cap, subscriptions, and delivery only to subscribed terminals.

use super::*;
use crate::edge::{Channel, OutgoingMessage};
use protocol::Seq;
use std::sync::Mutex;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::unix::OwnedReadHalf;

/// A deadline for things that should happen at once; never a wait for something to happen.
const DEADLINE: Duration = Duration::from_secs(20);

/// Holds every message for an approval, and records what the channel reports.
#[derive(Default)]
struct FakeInbox {
    pushed: Mutex<Vec<InboundEvent>>,
    arrived: Mutex<Vec<ChatAddress>>,
}

impl Inbox for FakeInbox {
    fn push(&self, event: InboundEvent) -> BoxFuture<'_, Result<RouteOutcome, RouteError>> {
        self.pushed.lock().unwrap().push(event);
        Box::pin(async {
            Ok(RouteOutcome {
                held: vec!["ap-test".into()],
                ..RouteOutcome::default()
            })
        })
    }

    fn answer(&self, _answer: QuestionAnswer) -> BoxFuture<'_, Result<Answered, AnswerError>> {
        Box::pin(async { Err(AnswerError::Empty) })
    }

    fn recipient_arrived(&self, address: ChatAddress) {
        self.arrived.lock().unwrap().push(address);
    }
}

struct Running {
    channel: Arc<CliChannel>,
    inbox: Arc<FakeInbox>,
    socket: std::path::PathBuf,
    shutdown: CancellationToken,
    _folder: tempfile::TempDir,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn start(limits: CliLimits) -> Running {
    let folder = tempfile::tempdir().unwrap();
    let socket = folder.path().join("cli.sock");
    let listener = CliChannel::bind(&socket).unwrap();
    let channel = CliChannel::new_with(limits, FdBudget::unlimited());
    let inbox = Arc::new(FakeInbox::default());
    let shutdown = CancellationToken::new();
    tokio::spawn(Arc::clone(&channel).serve_inbox(
        listener,
        Arc::clone(&inbox) as Arc<dyn Inbox>,
        TaskTracker::new(),
        shutdown.clone(),
    ));
    Running {
        channel,
        inbox,
        socket,
        shutdown,
        _folder: folder,
    }
}

struct Client {
    lines: tokio::io::Lines<BufReader<OwnedReadHalf>>,
    write: OwnedWriteHalf,
}

impl Client {
    async fn connect(running: &Running) -> Client {
        let (read, write) = UnixStream::connect(&running.socket)
            .await
            .unwrap()
            .into_split();
        Client {
            lines: BufReader::new(read).lines(),
            write,
        }
    }

    async fn send(&mut self, line: serde_json::Value) {
        let mut text = line.to_string();
        text.push('\n');
        self.write.write_all(text.as_bytes()).await.unwrap();
    }

    async fn next(&mut self) -> Option<ServerLine> {
        next_line(&mut self.lines).await
    }
}

/// The next line from the host; `None` when it closed the connection (a reset counts: a
/// unix socket closed with unread data resets its peer after the data already sent).
async fn next_line(lines: &mut tokio::io::Lines<BufReader<OwnedReadHalf>>) -> Option<ServerLine> {
    let line = tokio::time::timeout(DEADLINE, lines.next_line())
        .await
        .expect("no line from the host in time")
        .ok()??;
    Some(serde_json::from_str(&line).unwrap())
}

fn address(platform_id: &str) -> ChatAddress {
    ChatAddress {
        channel_type: CHANNEL_TYPE.into(),
        platform_id: platform_id.into(),
        thread_id: None,
    }
}

fn reply(text: &str) -> OutgoingMessage {
    OutgoingMessage {
        id: protocol::MessageId::generate(),
        seq: Seq(7),
        text: text.into(),
        ..OutgoingMessage::default()
    }
}

fn message(text: &str, chat: &str) -> serde_json::Value {
    serde_json::json!({"type": "message", "text": text, "user": "ann", "chat": chat})
}

#[tokio::test]
async fn an_over_long_line_gets_one_error_and_the_next_client_still_works() {
    let running = start(CliLimits::default()).await;
    let (read, mut write) = UnixStream::connect(&running.socket)
        .await
        .unwrap()
        .into_split();
    // 2 MiB without a newline; the host stops reading at the cap, so later writes may fail.
    let writer = tokio::spawn(async move {
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..32 {
            if write.write_all(&chunk).await.is_err() {
                break;
            }
        }
    });
    let mut flooder = BufReader::new(read).lines();
    match next_line(&mut flooder).await {
        Some(ServerLine::Error { message }) => {
            assert!(message.contains("limit of 1048576 bytes"), "{message}");
        }
        other => panic!("expected an error line, got {other:?}"),
    }
    assert_eq!(
        next_line(&mut flooder).await,
        None,
        "the connection is closed"
    );
    tokio::time::timeout(DEADLINE, writer)
        .await
        .unwrap()
        .unwrap();
    drop(flooder);

    let mut next = Client::connect(&running).await;
    next.send(message("hello", "room")).await;
    match next.next().await {
        Some(ServerLine::Accepted { held, .. }) => assert_eq!(held, ["ap-test"]),
        other => panic!("expected accepted, got {other:?}"),
    }
    assert_eq!(running.inbox.pushed.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_reply_waits_until_a_terminal_of_its_chat_subscribes() {
    let running = start(CliLimits::default()).await;
    let local = address(PLATFORM_ID);
    let error = running
        .channel
        .deliver(&local, &reply("early"))
        .await
        .unwrap_err();
    assert!(matches!(error, ChannelError::NoRecipient(_)), "{error:?}");
    assert!(error.is_retryable());

    // A terminal connected to another chat is no recipient for this one.
    let mut other = Client::connect(&running).await;
    other
        .send(serde_json::json!({"type": "subscribe", "chat": "elsewhere"}))
        .await;
    assert_eq!(
        other.next().await,
        Some(ServerLine::Subscribed {
            platform_id: Some("elsewhere".into()),
            all_chats: false
        })
    );
    assert!(matches!(
        running.channel.deliver(&local, &reply("still early")).await,
        Err(ChannelError::NoRecipient(_))
    ));
    assert!(running.inbox.arrived.lock().unwrap().is_empty());

    // The chat's terminal subscribes: delivery is told, and the reply gets through.
    let mut terminal = Client::connect(&running).await;
    terminal
        .send(serde_json::json!({"type": "subscribe", "chat": null, "thread": null}))
        .await;
    assert_eq!(
        terminal.next().await,
        Some(ServerLine::Subscribed {
            platform_id: Some(PLATFORM_ID.into()),
            all_chats: false
        })
    );
    assert_eq!(
        *running.inbox.arrived.lock().unwrap(),
        std::slice::from_ref(&local)
    );
    let outgoing = reply("now");
    running.channel.deliver(&local, &outgoing).await.unwrap();
    match terminal.next().await {
        Some(ServerLine::Reply {
            id,
            text,
            platform_id,
            ..
        }) => {
            assert_eq!(id, outgoing.id.to_string());
            assert_eq!(text, "now");
            assert_eq!(platform_id, PLATFORM_ID);
        }
        other => panic!("expected the reply, got {other:?}"),
    }

    // Once the terminal is gone, the chat has no recipient again.
    drop(terminal);
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while running.channel.subscribers.n_clients() > 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the terminal stayed registered"
        );
        tokio::task::yield_now().await;
    }
    assert!(matches!(
        running.channel.deliver(&local, &reply("late")).await,
        Err(ChannelError::NoRecipient(_))
    ));
}

#[tokio::test]
async fn a_message_subscribes_its_connection_to_its_chat() {
    let running = start(CliLimits::default()).await;
    let mut platform = Client::connect(&running).await;
    platform.send(message("hi", "room")).await;
    assert!(matches!(
        platform.next().await,
        Some(ServerLine::Accepted { .. })
    ));
    let room = address("room");
    running
        .channel
        .deliver(&room, &reply("hello room"))
        .await
        .unwrap();
    running
        .channel
        .turn_complete(&room, &protocol::MessageId::generate())
        .await;
    assert!(
        matches!(platform.next().await, Some(ServerLine::Reply { text, .. }) if text == "hello room")
    );
    assert!(matches!(
        platform.next().await,
        Some(ServerLine::TurnComplete { platform_id, .. }) if platform_id == "room"
    ));
    // Nothing waited, so nothing was reported; another chat still has no recipient.
    assert!(running.inbox.arrived.lock().unwrap().is_empty());
    assert!(matches!(
        running
            .channel
            .deliver(&address("other"), &reply("x"))
            .await,
        Err(ChannelError::NoRecipient(_))
    ));
}

#[tokio::test]
async fn all_chats_receives_every_chat_and_reports_the_waiting_ones() {
    let running = start(CliLimits::default()).await;
    for chat in ["a", "b"] {
        assert!(
            running
                .channel
                .deliver(&address(chat), &reply("x"))
                .await
                .is_err()
        );
    }
    let mut platform = Client::connect(&running).await;
    platform
        .send(serde_json::json!({"type": "subscribe", "all_chats": true}))
        .await;
    assert_eq!(
        platform.next().await,
        Some(ServerLine::Subscribed {
            platform_id: None,
            all_chats: true
        })
    );
    let mut arrived: Vec<String> = running
        .inbox
        .arrived
        .lock()
        .unwrap()
        .iter()
        .map(|a| a.platform_id.clone())
        .collect();
    arrived.sort();
    assert_eq!(arrived, ["a", "b"]);
    running
        .channel
        .deliver(&address("z"), &reply("zed"))
        .await
        .unwrap();
    assert!(matches!(platform.next().await, Some(ServerLine::Reply { text, .. }) if text == "zed"));
}

#[tokio::test]
async fn bad_lines_get_an_error_and_the_connection_stays() {
    let running = start(CliLimits::default()).await;
    let mut client = Client::connect(&running).await;
    client.write.write_all(b"not json\n\n   \n").await.unwrap();
    match client.next().await {
        Some(ServerLine::Error { message }) => {
            assert!(message.contains("not a valid cli message"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    client.send(message("after", "room")).await;
    assert!(matches!(
        client.next().await,
        Some(ServerLine::Accepted { .. })
    ));
}

#[tokio::test]
async fn clients_past_the_cap_wait_for_a_free_slot() {
    let running = start(CliLimits {
        max_clients: 1,
        ..CliLimits::default()
    })
    .await;
    let mut first = Client::connect(&running).await;
    first.send(message("one", "room")).await;
    assert!(first.next().await.is_some());
    let mut second = Client::connect(&running).await;
    second.send(message("two", "room")).await;
    let early = tokio::time::timeout(Duration::from_millis(200), second.lines.next_line()).await;
    assert!(
        early.is_err(),
        "a client past the cap was served: {early:?}"
    );
    drop(first);
    assert!(matches!(
        second.next().await,
        Some(ServerLine::Accepted { .. })
    ));
}
