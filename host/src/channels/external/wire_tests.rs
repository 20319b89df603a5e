use super::*;
use crate::channels::cli::MAX_LINE_BYTES;
use crate::edge::Markup;

fn parse(line: &str) -> Result<AdapterLine, String> {
    parse_adapter_line(line.as_bytes(), MAX_LINE_BYTES).map_err(|e| e.to_string())
}

#[test]
fn every_kind_of_adapter_line_parses() {
    fn check(line: &str, expected: Result<AdapterLine, &str>) {
        let parsed = parse(line);
        match expected {
            Ok(expected) => assert_eq!(parsed.unwrap(), expected, "{line}"),
            Err(fragment) => {
                let error = parsed.unwrap_err();
                assert!(error.contains(fragment), "{line}: {error}");
            }
        }
    }
    check(
        r#"{"type":"hello","version":1,"token":"cpa_x","channel_type":"tg"}"#,
        Ok(AdapterLine::Hello {
            version: 1,
            token: Secret("cpa_x".into()),
            channel_type: "tg".into(),
            capabilities: DeclaredCapabilities::default(),
        }),
    );
    check(
        r#"{"type":"hello","version":1,"token":"t","channel_type":"tg","capabilities":{"edits":true,"max_text_chars":4096,"markup":"telegram_html","future_field":1}}"#,
        Ok(AdapterLine::Hello {
            version: 1,
            token: Secret("t".into()),
            channel_type: "tg".into(),
            capabilities: DeclaredCapabilities {
                edits: Some(true),
                max_text_chars: Some(4096),
                markup: Some(Markup::TelegramHtml),
                ..DeclaredCapabilities::default()
            },
        }),
    );
    check(
        r#"{"type":"inbound","id":"a1","event":{"platform_id":"room","platform_message_id":"m1","sender":{"id":"ann"},"text":"hi"}}"#,
        Ok(AdapterLine::Inbound {
            id: "a1".into(),
            event: InboundWire {
                channel_type: None,
                platform_id: "room".into(),
                thread_id: None,
                platform_message_id: "m1".into(),
                sender: Sender {
                    id: "ann".into(),
                    name: None,
                },
                text: "hi".into(),
                attachments: Vec::new(),
                is_mention: false,
                is_group: false,
                chat_name: None,
            },
        }),
    );
    check(
        r#"{"type":"result","id":"h1","ok":true,"platform_message_id":"p9"}"#,
        Ok(AdapterLine::Result(ResultLine {
            id: "h1".into(),
            ok: true,
            platform_message_id: Some("p9".into()),
            ..ResultLine::default()
        })),
    );
    check(
        r#"{"type":"health","state":"degraded","error":"slow"}"#,
        Ok(AdapterLine::Health {
            state: AdapterHealth::Degraded,
            error: Some("slow".into()),
        }),
    );
    check("  ", Err("empty"));
    check(r#"{"type":"shout"}"#, Err("not a valid adapter line"));
    check(
        r#"{"type":"health","state":"starting"}"#,
        Err("not a valid"),
    );
    check(
        r#"{"type":"inbound","id":"a"}"#,
        Err("missing field `event`"),
    );
    check("\u{0}\u{1}", Err("not a valid adapter line"));
    check(r#"[1,2]"#, Err("not a valid adapter line"));
    assert_eq!(
        parse_adapter_line(b"{\"type\":\"hello\"}", 5),
        Err(WireError::TooLong { max: 5 })
    );
    assert!(matches!(
        parse_adapter_line(b"{\"type\":\"inbound\",\"id\":\"\xff\"}", 100),
        Err(WireError::Invalid(_))
    ));
}

#[test]
fn a_token_never_shows_in_debug_output() {
    let line =
        parse(r#"{"type":"hello","version":1,"token":"cpa_secret","channel_type":"t"}"#).unwrap();
    assert!(!format!("{line:?}").contains("cpa_secret"));
}

fn event(json: &str) -> InboundWire {
    serde_json::from_str(json).unwrap()
}

#[test]
fn inbound_events_are_pinned_to_the_adapters_channel() {
    let base =
        r#"{"platform_id":"room","platform_message_id":"m1","sender":{"id":"ann","name":"Ann"}}"#;
    let made = event(base).into_event("tg").unwrap();
    assert_eq!(made.channel_type, "tg");
    assert_eq!(made.sender.id, "tg:ann");
    assert_eq!(made.sender.name.as_deref(), Some("Ann"));

    // Already scoped: kept; another channel's scope is just part of the handle.
    let scoped = event(r#"{"platform_id":"r","platform_message_id":"m","sender":{"id":"tg:ann"}}"#);
    assert_eq!(scoped.into_event("tg").unwrap().sender.id, "tg:ann");
    let foreign =
        event(r#"{"platform_id":"r","platform_message_id":"m","sender":{"id":"cli:owner"}}"#);
    assert_eq!(foreign.into_event("tg").unwrap().sender.id, "tg:cli:owner");

    fn refused(json: &str, expected: WireError) {
        assert_eq!(
            event(json).into_event("tg").unwrap_err(),
            expected,
            "{json}"
        );
    }
    refused(
        r#"{"channel_type":"cli","platform_id":"r","platform_message_id":"m","sender":{"id":"a"}}"#,
        WireError::WrongChannel {
            ours: "tg".into(),
            theirs: "cli".into(),
        },
    );
    refused(
        r#"{"platform_id":"","platform_message_id":"m","sender":{"id":"a"}}"#,
        WireError::BadId {
            field: "platform_id",
        },
    );
    refused(
        r#"{"platform_id":"r","platform_message_id":"m\n","sender":{"id":"a"}}"#,
        WireError::BadId {
            field: "platform_message_id",
        },
    );
    refused(
        r#"{"platform_id":"r","platform_message_id":"m","sender":{"id":""}}"#,
        WireError::BadId { field: "sender.id" },
    );
    refused(
        r#"{"platform_id":"r","thread_id":"","platform_message_id":"m","sender":{"id":"a"}}"#,
        WireError::BadId { field: "thread_id" },
    );
    let long = format!(
        r#"{{"platform_id":"{}","platform_message_id":"m","sender":{{"id":"a"}}}}"#,
        "x".repeat(MAX_ID_CHARS + 1)
    );
    refused(
        &long,
        WireError::BadId {
            field: "platform_id",
        },
    );
    let many = format!(
        r#"{{"platform_id":"r","platform_message_id":"m","sender":{{"id":"a"}},"attachments":{}}}"#,
        serde_json::to_string(&vec!["a"; 33]).unwrap()
    );
    refused(&many, WireError::BadAttachments);
}

#[test]
fn answers_are_scoped_and_named() {
    let answer: AnswerWire = serde_json::from_str(
        r#"{"platform_id":"room","question_id":"q-1","answer":"2","sender":{"id":"ann"}}"#,
    )
    .unwrap();
    let answer = answer.into_answer("tg", || "fresh".into()).unwrap();
    assert_eq!(answer.sender.id, "tg:ann");
    assert_eq!(answer.platform_message_id, "fresh");
    assert_eq!(answer.question_id.as_deref(), Some("q-1"));
}

#[test]
fn results_map_to_channel_errors() {
    fn check(json: &str, expected: Result<(), ChannelError>) {
        let line: ResultLine = serde_json::from_str(json).unwrap();
        assert_eq!(
            line.outcome("edit a message").map(|_| ()),
            expected,
            "{json}"
        );
    }
    check(r#"{"id":"h","ok":true}"#, Ok(()));
    check(
        r#"{"id":"h","ok":false,"error":"down"}"#,
        Err(ChannelError::Unavailable("down".into())),
    );
    check(
        r#"{"id":"h","ok":false,"error":"no","retryable":false}"#,
        Err(ChannelError::Rejected("no".into())),
    );
    check(
        r#"{"id":"h","ok":false,"retry_after_ms":1500}"#,
        Err(ChannelError::RateLimited {
            retry_after: Duration::from_millis(1500),
        }),
    );
    check(
        r#"{"id":"h","ok":false,"retry_after_ms":18446744073709551615}"#,
        Err(ChannelError::RateLimited {
            retry_after: MAX_RETRY_AFTER,
        }),
    );
    check(
        r#"{"id":"h","ok":false,"unsupported":true}"#,
        Err(ChannelError::Unsupported("edit a message")),
    );
}

#[test]
fn host_lines_are_the_documented_json() {
    let message = OutgoingMessage {
        id: protocol::MessageId::new("out-1"),
        seq: protocol::Seq(7),
        text: "hello".into(),
        ..OutgoingMessage::default()
    };
    let line = HostLine::Deliver {
        id: "h1".into(),
        to: ChatAddress {
            channel_type: "tg".into(),
            platform_id: "room".into(),
            thread_id: None,
        },
        message: MessageWire::from(&message),
    };
    assert_eq!(
        serde_json::to_value(&line).unwrap(),
        serde_json::json!({
            "type": "deliver", "id": "h1",
            "to": {"channel_type": "tg", "platform_id": "room", "thread_id": null},
            "message": {"id": "out-1", "seq": 7, "piece": 0, "text": "hello"},
        })
    );
    let ack = HostLine::Ack(Ack {
        id: "a1".into(),
        ok: true,
        message_ids: vec!["m".into()],
        ..Ack::default()
    });
    assert_eq!(
        serde_json::to_value(&ack).unwrap(),
        serde_json::json!({"type": "ack", "id": "a1", "ok": true, "message_ids": ["m"]})
    );
}
