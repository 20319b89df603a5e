//! The adapters' socket end to end with a fake router: the handshake and its refusals, a
//! round trip (inbound ack, deliver and result), an adapter that drops with a delivery
//! outstanding and comes back, a second hello taking over, bad lines, and removal.

use super::*;
use crate::edge::{
    AnswerError, Answered, Arrival, BoxFuture, ChannelError, ChatAddress, HealthState,
    InboundEvent, InboundSink, OutgoingMessage, QuestionAnswer, RouteError, RouteOutcome,
    RoutedMessage,
};
use crate::session::SessionRef;
use protocol::{AgentGroupId, MessageId, Seq, SessionId};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;

/// A deadline for things that should happen at once; never a wait for something to happen.
const DEADLINE: Duration = Duration::from_secs(20);

/// Routes every event to one row, and records it.
#[derive(Default)]
struct FakeRouter {
    pushed: Mutex<Vec<InboundEvent>>,
}

impl InboundSink for FakeRouter {
    fn push(&self, event: InboundEvent) -> BoxFuture<'_, Result<RouteOutcome, RouteError>> {
        self.pushed.lock().unwrap().push(event);
        Box::pin(async {
            Ok(RouteOutcome {
                routed: vec![RoutedMessage {
                    session: SessionRef {
                        id: SessionId::new("s-1"),
                        agent_group: AgentGroupId::new("main"),
                        group_folder: "main".into(),
                    },
                    message_id: MessageId::new("in-1"),
                    seq: Seq(2),
                    trigger: true,
                }],
                ..RouteOutcome::default()
            })
        })
    }

    fn answer(&self, _answer: QuestionAnswer) -> BoxFuture<'_, Result<Answered, AnswerError>> {
        Box::pin(async { Err(AnswerError::NoQuestion("no open question".into())) })
    }
}

struct Running {
    hub: Arc<ExternalAdapters>,
    channels: Arc<Channels>,
    router: Arc<FakeRouter>,
    arrivals: mpsc::UnboundedReceiver<Arrival>,
    socket: PathBuf,
    shutdown: CancellationToken,
    _folder: tempfile::TempDir,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn test_limits() -> ExternalLimits {
    ExternalLimits {
        hello_timeout: Duration::from_millis(300),
        request_timeout: Duration::from_secs(5),
        max_bad_lines: 3,
        ..ExternalLimits::default()
    }
}

async fn start() -> Running {
    let folder = tempfile::tempdir().unwrap();
    let db_path = folder.path().join("crabpot.db");
    let central =
        Arc::new(DbThread::spawn("central", move || crate::db::central::open(&db_path)).unwrap());
    let channels = Arc::new(Channels::default());
    let hub = ExternalAdapters::new(
        central,
        Arc::clone(&channels),
        FdBudget::unlimited(),
        test_limits(),
    );
    let socket = ExternalAdapters::socket_path(folder.path());
    hub.listen(ExternalAdapters::bind(&socket).unwrap());
    let router = Arc::new(FakeRouter::default());
    let (arrival_tx, arrivals) = mpsc::unbounded_channel();
    let context = ChannelContext::new(router.clone(), arrival_tx);
    let shutdown = CancellationToken::new();
    tokio::spawn(Arc::clone(&hub).serve(context, TaskTracker::new(), shutdown.clone()));
    Running {
        hub,
        channels,
        router,
        arrivals,
        socket,
        shutdown,
        _folder: folder,
    }
}

/// An adapter's end of the socket.
struct Client {
    read: tokio::io::Lines<BufReader<OwnedReadHalf>>,
    write: OwnedWriteHalf,
}

impl Client {
    async fn connect(running: &Running) -> Client {
        let stream = UnixStream::connect(&running.socket).await.unwrap();
        let (read, write) = stream.into_split();
        Client {
            read: BufReader::new(read).lines(),
            write,
        }
    }

    async fn say(&mut self, line: &Value) {
        self.raw(&line.to_string()).await;
    }

    async fn raw(&mut self, line: &str) {
        self.write
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
    }

    /// The next line, or `None` once the host closed the connection.
    async fn next(&mut self) -> Option<Value> {
        let line = tokio::time::timeout(DEADLINE, self.read.next_line())
            .await
            .expect("a line from the host in time")
            .ok()??;
        Some(serde_json::from_str(&line).unwrap())
    }

    async fn hello(running: &Running, token: &str, capabilities: Value) -> (Client, Value) {
        let mut client = Client::connect(running).await;
        client
            .say(&json!({
                "type": "hello", "version": 1, "token": token, "channel_type": "ext",
                "capabilities": capabilities,
            }))
            .await;
        let welcome = client.next().await.unwrap();
        (client, welcome)
    }
}

async fn arrival(running: &mut Running) -> Arrival {
    tokio::time::timeout(DEADLINE, running.arrivals.recv())
        .await
        .unwrap()
        .unwrap()
}

fn to() -> ChatAddress {
    ChatAddress {
        channel_type: "ext".into(),
        platform_id: "room".into(),
        thread_id: None,
    }
}

fn message(id: &str) -> OutgoingMessage {
    OutgoingMessage {
        id: MessageId::new(id),
        seq: Seq(3),
        text: "the reply".into(),
        ..OutgoingMessage::default()
    }
}

fn health(running: &Running) -> HealthState {
    running.channels.get("ext").unwrap().health().state
}

#[tokio::test]
async fn a_round_trip_through_the_socket() {
    let mut running = start().await;
    let added = running.hub.add("ext-adapter", "ext").await.unwrap();
    // Registered at once, before it ever connects: its rows wait instead of being refused.
    assert_eq!(health(&running), HealthState::Starting);
    let early = running
        .channels
        .get("ext")
        .unwrap()
        .deliver(&to(), &message("out-0"))
        .await;
    assert!(
        matches!(early, Err(ChannelError::NoRecipient(_))),
        "{early:?}"
    );

    let (mut client, welcome) = Client::hello(
        &running,
        &added.token,
        json!({"edits": true, "max_text_chars": 999999999}),
    )
    .await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    assert_eq!(welcome["adapter"], "ext-adapter");
    assert_eq!(welcome["capabilities"]["max_text_chars"], 100_000);
    assert_eq!(arrival(&mut running).await, Arrival::Channel("ext".into()));
    assert_eq!(health(&running), HealthState::Connected);
    assert!(running.channels.get("ext").unwrap().capabilities().edits);

    // Inbound: acked once routed, with the sender scoped to the channel.
    client
        .say(&json!({"type": "inbound", "id": "a-1", "event": {
            "platform_id": "room", "platform_message_id": "pm-1",
            "sender": {"id": "ann"}, "text": "hello"}}))
        .await;
    let ack = client.next().await.unwrap();
    assert_eq!(
        ack,
        json!({"type": "ack", "id": "a-1", "ok": true, "message_ids": ["in-1"]})
    );
    let pushed = running.router.pushed.lock().unwrap().clone();
    assert_eq!(pushed.len(), 1);
    assert_eq!(
        (
            pushed[0].channel_type.as_str(),
            pushed[0].sender.id.as_str()
        ),
        ("ext", "ext:ann")
    );

    // An event for another channel is refused, and not routed.
    client
        .say(
            &json!({"type": "inbound", "id": "a-2", "event": {"channel_type": "cli",
            "platform_id": "local", "platform_message_id": "pm-2", "sender": {"id": "x"}}}),
        )
        .await;
    let ack = client.next().await.unwrap();
    assert_eq!(
        (ack["ok"].clone(), ack["id"].clone()),
        (json!(false), json!("a-2"))
    );
    assert!(
        ack["error"].as_str().unwrap().contains("not \"cli\""),
        "{ack}"
    );
    assert_eq!(running.router.pushed.lock().unwrap().len(), 1);

    // Outbound: a deliver line, answered with the platform's id.
    let channel = running.channels.get("ext").unwrap();
    let delivery = tokio::spawn(async move { channel.deliver(&to(), &message("out-1")).await });
    let deliver = client.next().await.unwrap();
    assert_eq!(deliver["type"], "deliver");
    assert_eq!(deliver["to"]["platform_id"], "room");
    assert_eq!(deliver["message"]["id"], "out-1");
    assert_eq!(deliver["message"]["text"], "the reply");
    client
        .say(&json!({"type": "result", "id": deliver["id"], "ok": true, "platform_message_id": "p-77"}))
        .await;
    assert_eq!(delivery.await.unwrap().unwrap(), "p-77");

    let listed = running.hub.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].0.name, "ext-adapter");
    assert!(listed[0].0.last_seen_at.is_some());
    assert_eq!(listed[0].1.state, HealthState::Connected);
}

#[tokio::test]
async fn bad_hellos_are_refused_with_a_reason() {
    let running = start().await;
    let added = running.hub.add("ext-adapter", "ext").await.unwrap();
    let hello = |version: u32, token: &str, channel_type: &str| {
        json!({"type": "hello", "version": version, "token": token, "channel_type": channel_type})
            .to_string()
    };
    let cases = [
        (hello(1, "cpa_wrong", "ext"), "token is not valid"),
        (hello(1, &added.token, "other"), "token is not valid"),
        (hello(2, &added.token, "ext"), "version 2 is not supported"),
        (
            json!({"type": "health", "state": "connected"}).to_string(),
            "first line must be a hello",
        ),
        ("{not json".to_owned(), "not a valid adapter line"),
        (String::new(), "no hello within"),
    ];
    for (line, fragment) in cases {
        let mut client = Client::connect(&running).await;
        if !line.is_empty() {
            client.raw(&line).await;
        }
        let answer = client.next().await.unwrap();
        assert_eq!(answer["type"], "error", "{line}: {answer}");
        assert!(
            answer["message"].as_str().unwrap().contains(fragment),
            "{line}: {answer}"
        );
        assert_eq!(
            client.next().await,
            None,
            "{line}: the connection is closed"
        );
    }
    assert_eq!(health(&running), HealthState::Starting);
    // The token never reaches the log of a refusal, and the refused ones changed nothing.
    assert!(running.router.pushed.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_dropped_adapter_gets_its_delivery_when_it_comes_back() {
    let mut running = start().await;
    let added = running.hub.add("ext-adapter", "ext").await.unwrap();
    let (mut client, _) = Client::hello(&running, &added.token, json!({})).await;
    arrival(&mut running).await;

    let channel = running.channels.get("ext").unwrap();
    let delivery = tokio::spawn(async move { channel.deliver(&to(), &message("out-1")).await });
    let deliver = client.next().await.unwrap();
    assert_eq!(deliver["message"]["id"], "out-1");
    drop(client);
    let error = delivery.await.unwrap().unwrap_err();
    assert!(matches!(error, ChannelError::NoRecipient(_)), "{error:?}");
    assert_eq!(health(&running), HealthState::Failing);

    // Back again: the arrival brings the waiting rows back (twice: the drop was a moment ago).
    let (mut client, _) = Client::hello(&running, &added.token, json!({})).await;
    assert_eq!(arrival(&mut running).await, Arrival::Channel("ext".into()));
    assert_eq!(arrival(&mut running).await, Arrival::Channel("ext".into()));
    let channel = running.channels.get("ext").unwrap();
    let delivery = tokio::spawn(async move { channel.deliver(&to(), &message("out-1")).await });
    let deliver = client.next().await.unwrap();
    assert_eq!(deliver["message"]["id"], "out-1");
    client
        .say(&json!({"type": "result", "id": deliver["id"], "ok": false, "retry_after_ms": 250}))
        .await;
    assert_eq!(
        delivery.await.unwrap(),
        Err(ChannelError::RateLimited {
            retry_after: Duration::from_millis(250)
        })
    );
}

#[tokio::test]
async fn a_second_hello_takes_over() {
    let mut running = start().await;
    let added = running.hub.add("ext-adapter", "ext").await.unwrap();
    let (mut first, _) = Client::hello(&running, &added.token, json!({})).await;
    arrival(&mut running).await;
    let (mut second, welcome) = Client::hello(&running, &added.token, json!({})).await;
    assert_eq!(welcome["type"], "welcome");
    let farewell = first.next().await.unwrap();
    assert!(
        farewell["message"].as_str().unwrap().contains("replaced"),
        "{farewell}"
    );
    assert_eq!(first.next().await, None);

    let channel = running.channels.get("ext").unwrap();
    let delivery = tokio::spawn(async move { channel.deliver(&to(), &message("out-2")).await });
    let deliver = second.next().await.unwrap();
    second
        .say(
            &json!({"type": "result", "id": deliver["id"], "ok": true, "platform_message_id": "p"}),
        )
        .await;
    assert_eq!(delivery.await.unwrap().unwrap(), "p");
    assert_eq!(health(&running), HealthState::Connected);
}

#[tokio::test]
async fn bad_lines_are_answered_then_the_adapter_is_closed() {
    let mut running = start().await;
    let added = running.hub.add("ext-adapter", "ext").await.unwrap();
    let (mut client, _) = Client::hello(&running, &added.token, json!({})).await;
    arrival(&mut running).await;
    client.raw("").await;
    client.raw("nonsense").await;
    let answer = client.next().await.unwrap();
    assert_eq!(answer["type"], "error");
    client
        .say(&json!({"type": "health", "state": "degraded", "error": "platform slow"}))
        .await;
    client
        .say(&json!({"type": "hello", "version": 1, "token": added.token, "channel_type": "ext"}))
        .await;
    let answer = client.next().await.unwrap();
    assert!(
        answer["message"].as_str().unwrap().contains("already"),
        "{answer}"
    );
    assert_eq!(health(&running), HealthState::Degraded);
    client.raw("[]").await;
    let answer = client.next().await.unwrap();
    assert!(
        answer["message"].as_str().unwrap().contains("3 bad lines"),
        "{answer}"
    );
    assert_eq!(client.next().await, None);
    assert_eq!(health(&running), HealthState::Failing);
}

#[tokio::test]
async fn removing_an_adapter_closes_it_and_its_token_stops_working() {
    let mut running = start().await;
    assert!(matches!(
        running.hub.add("terminal", "cli").await,
        Err(AdapterError::Reserved(_))
    ));
    let added = running.hub.add("ext-adapter", "ext").await.unwrap();
    assert!(matches!(
        running.hub.add("ext-adapter", "ext2").await,
        Err(AdapterError::Db(DbError::Conflict(_)))
    ));
    let (mut client, _) = Client::hello(&running, &added.token, json!({})).await;
    arrival(&mut running).await;
    running.hub.remove("ext-adapter").await.unwrap();
    let farewell = client.next().await.unwrap();
    assert!(
        farewell["message"].as_str().unwrap().contains("removed"),
        "{farewell}"
    );
    assert_eq!(client.next().await, None);
    assert_eq!(health(&running), HealthState::Stopped);
    let (_, refused) = Client::hello(&running, &added.token, json!({})).await;
    assert_eq!(refused["type"], "error");

    // Added again for the type: the same channel, a new token.
    let again = running.hub.add("ext-adapter", "ext").await.unwrap();
    assert_ne!(again.token, added.token);
    assert_eq!(health(&running), HealthState::Starting);
    let (_, welcome) = Client::hello(&running, &again.token, json!({})).await;
    assert_eq!(welcome["type"], "welcome");
}

#[tokio::test]
async fn registered_adapters_are_loaded_at_start() {
    let running = start().await;
    running.hub.add("a", "alpha").await.unwrap();
    running.hub.add("b", "beta").await.unwrap();
    let channels = Arc::new(Channels::default());
    let restarted = ExternalAdapters::new(
        Arc::clone(&running.hub.central),
        Arc::clone(&channels),
        FdBudget::unlimited(),
        test_limits(),
    );
    assert_eq!(restarted.load().await.unwrap(), 2);
    let types: Vec<String> = channels
        .status()
        .into_iter()
        .map(|status| status.channel_type)
        .collect();
    assert_eq!(types, ["alpha", "beta"]);
}
