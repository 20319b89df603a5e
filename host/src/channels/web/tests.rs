//! The web channel against a real central DB: conversations are wired chats without a
//! destination, a message the bridge sends twice (a resend after a crash) is stored and
//! shown once, drafts and typing are never stored, and a watcher sees everything in order.

use super::*;
use crate::edge::{Channel, ChatAddress, Draft, OutgoingMessage};
use protocol::{AgentGroupId, MessageId, Seq};

fn channel() -> (tempfile::TempDir, Arc<WebChannel>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crabpot.db");
    let central =
        Arc::new(DbThread::spawn("central", move || crate::db::central::open(&path)).unwrap());
    central
        .call_blocking(|conn| {
            crate::db::central::ensure_agent_group(conn, "main", "Main")?;
            crate::db::central::people::add_member(conn, &AgentGroupId::new("main"), "web:ann")?;
            crate::db::central::people::ensure_user(conn, "web:bob", None)?;
            Ok(())
        })
        .unwrap();
    let uploads = dir.path().join("uploads");
    (dir, WebChannel::new(central, uploads))
}

fn reply(id: &str, text: &str, resend: bool) -> OutgoingMessage {
    OutgoingMessage {
        id: MessageId::new(id),
        seq: Seq(3),
        text: text.into(),
        replaces_draft: Some("m-1".into()),
        resend,
        ..OutgoingMessage::default()
    }
}

#[tokio::test]
async fn a_conversation_is_its_owners_and_keeps_each_message_once() {
    let (_dir, web) = channel();
    let main = AgentGroupId::new("main");
    assert!(matches!(
        web.create_conversation("web:bob", &main, None).await,
        Err(WebChatError::Forbidden(_))
    ));
    let conversation = web
        .create_conversation("web:ann", &main, Some("pots"))
        .await
        .unwrap();
    assert!(conversation.platform_id.starts_with("ann/wc-"));
    assert!(matches!(
        web.owned_conversation("web:bob", &conversation.id).await,
        Err(WebChatError::NotFound(_))
    ));
    // No other session of the group can send into it: it has no destination.
    let chat_id = conversation.messaging_group_id.clone();
    let destinations: i64 = web
        .central
        .call(move |conn| {
            Ok(conn.query_row(
                "SELECT count(*) FROM agent_destinations WHERE messaging_group_id = ?1",
                [chat_id],
                |row| row.get(0),
            )?)
        })
        .await
        .unwrap();
    assert_eq!(destinations, 0);

    let mut watcher = web.subscribe_after(&conversation.id, 0).await;
    let to = ChatAddress {
        channel_type: CHANNEL_TYPE.into(),
        platform_id: conversation.platform_id.clone(),
        thread_id: None,
    };
    web.set_typing(&to, true).await.unwrap();
    let draft = Draft {
        key: "m-1".into(),
        text: "hel".into(),
        appended: None,
    };
    web.draft(&to, &draft).await.unwrap();
    let first = web
        .deliver(&to, &reply("out-1", "hello", false))
        .await
        .unwrap();
    let again = web
        .deliver(&to, &reply("out-1", "hello", true))
        .await
        .unwrap();
    assert_eq!(first, again, "a resend names the message already stored");
    web.turn_complete(&to, &MessageId::new("m-1")).await;

    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(web.next_event(&mut watcher).await.unwrap());
    }
    let kinds: Vec<(&str, Option<i64>)> = seen
        .iter()
        .map(|event| (event.body.kind(), event.event_id))
        .collect();
    assert_eq!(
        kinds,
        [
            ("typing", None),
            ("draft", None),
            ("message", Some(1)),
            ("turn_complete", Some(2)),
        ]
    );
    // The log holds the durable events only, the message once.
    let stored = web.all_events(&conversation.id).await;
    assert_eq!(stored.len(), 2);
    let EventBody::Message(message) = &stored[0].body else {
        panic!("{stored:?}")
    };
    assert_eq!(message.role, Role::Agent);
    assert_eq!(message.replaces_draft.as_deref(), Some("m-1"));
    // A chat no conversation owns is refused, not kept waiting.
    let stray = ChatAddress {
        platform_id: "nobody/wc-x".into(),
        ..to
    };
    assert!(matches!(
        web.deliver(&stray, &reply("out-2", "x", false)).await,
        Err(crate::edge::ChannelError::Rejected(_))
    ));
}

#[tokio::test]
async fn posting_before_the_channel_started_says_so() {
    let (_dir, web) = channel();
    let conversation = web
        .create_conversation("web:ann", &AgentGroupId::new("main"), None)
        .await
        .unwrap();
    assert!(matches!(
        web.post(&conversation, "hi").await,
        Err(WebChatError::NotRunning)
    ));
    assert!(matches!(
        web.post(&conversation, "   ").await,
        Err(WebChatError::Invalid(_))
    ));
}
