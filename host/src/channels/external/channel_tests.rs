use super::*;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

fn limits(queue_lines: usize) -> ExternalLimits {
    ExternalLimits {
        queue_lines,
        request_timeout: Duration::from_millis(200),
        ..ExternalLimits::default()
    }
}

fn to() -> ChatAddress {
    ChatAddress {
        channel_type: "ext".into(),
        platform_id: "room".into(),
        thread_id: None,
    }
}

fn message() -> OutgoingMessage {
    OutgoingMessage {
        id: MessageId::new("out-1"),
        text: "hi".into(),
        ..OutgoingMessage::default()
    }
}

fn attach(
    channel: &ExternalChannel,
    generation: u64,
    limits: &ExternalLimits,
) -> (Arc<Link>, mpsc::Receiver<HostLine>) {
    let (link, receiver) = Link::new(generation, limits, CancellationToken::new());
    let old = channel.attach("a", placeholder_capabilities(), Arc::clone(&link));
    if let Some(old) = old {
        old.close(None);
    }
    (link, receiver)
}

fn request_id(line: &HostLine) -> String {
    match line {
        HostLine::Deliver { id, .. } => id.clone(),
        other => panic!("expected a deliver, got {other:?}"),
    }
}

#[tokio::test]
async fn without_a_connection_calls_wait_for_the_adapter() {
    let limits = limits(8);
    let channel = ExternalChannel::new("ext", "a", &limits);
    assert_eq!(channel.health().state, HealthState::Starting);
    let error = channel.deliver(&to(), &message()).await.unwrap_err();
    assert!(matches!(error, ChannelError::NoRecipient(_)), "{error:?}");
    assert!(channel.missed_since(Duration::from_secs(5)));
    // Notices and typing of a platform without an indicator cost nothing.
    channel.turn_complete(&to(), &MessageId::new("m")).await;
    channel.set_typing(&to(), true).await.unwrap();
    assert_eq!(
        channel.edit(&to(), "p", &message()).await,
        Err(ChannelError::Unsupported("edit a message"))
    );
}

#[tokio::test]
async fn a_result_completes_the_call_and_an_error_maps() {
    let limits = limits(8);
    let channel = ExternalChannel::new("ext", "a", &limits);
    let (link, mut receiver) = attach(&channel, 1, &limits);
    let answer = {
        let link = Arc::clone(&link);
        tokio::spawn(async move {
            let first = receiver.recv().await.unwrap();
            link.answered(ResultLine {
                id: request_id(&first),
                ok: true,
                platform_message_id: Some("p-1".into()),
                ..ResultLine::default()
            });
            let second = receiver.recv().await.unwrap();
            link.answered(ResultLine {
                id: request_id(&second),
                ok: false,
                retryable: Some(false),
                error: Some("too long".into()),
                ..ResultLine::default()
            });
            receiver
        })
    };
    assert_eq!(channel.deliver(&to(), &message()).await.unwrap(), "p-1");
    assert_eq!(
        channel.deliver(&to(), &message()).await,
        Err(ChannelError::Rejected("too long".into()))
    );
    answer.await.unwrap();
    assert!(!link.answered(ResultLine {
        id: "h999".into(),
        ..ResultLine::default()
    }));
}

#[tokio::test]
async fn a_dropped_connection_retries_once_on_the_next() {
    let limits = limits(8);
    let channel = ExternalChannel::new("ext", "a", &limits);
    let (first, mut first_queue) = attach(&channel, 1, &limits);
    let call = {
        let channel = Arc::clone(&channel);
        tokio::spawn(async move { channel.deliver(&to(), &message()).await })
    };
    // The adapter got it, then a second connection took over and the first went away.
    let lost = first_queue.recv().await.unwrap();
    let (second, mut second_queue) = attach(&channel, 2, &limits);
    first.close(None);
    let again = second_queue.recv().await.unwrap();
    assert_ne!(request_id(&lost), request_id(&again));
    second.answered(ResultLine {
        id: request_id(&again),
        ok: true,
        ..ResultLine::default()
    });
    assert_eq!(
        call.await.unwrap().unwrap(),
        "out-1:0",
        "the key stands in for a missing id"
    );

    // With no other connection, a drop is NoRecipient and the health says so.
    let call = {
        let channel = Arc::clone(&channel);
        tokio::spawn(async move { channel.deliver(&to(), &message()).await })
    };
    second_queue.recv().await.unwrap();
    second.close(None);
    channel.detach(2, "the adapter closed the connection");
    let error = call.await.unwrap().unwrap_err();
    assert!(matches!(error, ChannelError::NoRecipient(_)), "{error:?}");
    let health = channel.health();
    assert_eq!(health.state, HealthState::Failing);
    assert!(health.last_error.unwrap().contains("closed the connection"));
}

#[tokio::test]
async fn a_stalled_adapter_is_closed_and_the_call_waits() {
    let limits = limits(1);
    let channel = ExternalChannel::new("ext", "a", &limits);
    // Nobody drains the queue: the first request times out, closing the link.
    let (link, _queue) = attach(&channel, 1, &limits);
    let error = channel.deliver(&to(), &message()).await.unwrap_err();
    assert!(
        matches!(&error, ChannelError::NoRecipient(why) if why.contains("within")),
        "{error:?}"
    );
    assert!(link.closed.is_cancelled());
    assert!(
        link.take_farewell()
            .unwrap()
            .contains("closing the connection")
    );
    assert_eq!(channel.health().state, HealthState::Failing);

    // A full queue fails at once, without waiting for the timeout.
    let (link, _queue) = attach(&channel, 2, &limits);
    assert!(link.try_send(HostLine::Error {
        id: None,
        message: "filler".into()
    }));
    let started = Instant::now();
    let error = channel.deliver(&to(), &message()).await.unwrap_err();
    assert!(
        matches!(&error, ChannelError::NoRecipient(why) if why.contains("queue is full")),
        "{error:?}"
    );
    assert!(started.elapsed() < limits.request_timeout);
    assert!(link.closed.is_cancelled());
}

#[tokio::test]
async fn a_removed_adapter_waits_until_added_again() {
    let limits = limits(8);
    let channel = ExternalChannel::new("ext", "a", &limits);
    let (link, _queue) = attach(&channel, 1, &limits);
    let old = channel.revoke().unwrap();
    assert_eq!(old.generation, link.generation);
    assert_eq!(channel.health().state, HealthState::Stopped);
    let error = channel.deliver(&to(), &message()).await.unwrap_err();
    assert!(matches!(&error, ChannelError::NoRecipient(why) if why.contains("removed")));
    channel.restore("b");
    assert_eq!(channel.health().state, HealthState::Starting);
    assert_eq!(channel.adapter(), "b");
}

#[tokio::test]
async fn open_dm_needs_an_address_of_this_channel() {
    let limits = limits(8);
    let channel = ExternalChannel::new("ext", "a", &limits);
    let (link, mut queue) = attach(&channel, 1, &limits);
    for (address, ok) in [
        (Some(to()), true),
        (
            Some(ChatAddress {
                channel_type: "cli".into(),
                ..to()
            }),
            false,
        ),
        (None, false),
    ] {
        let call = {
            let channel = Arc::clone(&channel);
            tokio::spawn(async move { channel.open_dm("ann").await })
        };
        let id = match queue.recv().await.unwrap() {
            HostLine::OpenDm { id, user_id } => {
                assert_eq!(user_id, "ann");
                id
            }
            other => panic!("{other:?}"),
        };
        link.answered(ResultLine {
            id,
            ok: true,
            address,
            ..ResultLine::default()
        });
        assert_eq!(call.await.unwrap().is_ok(), ok);
    }
}
