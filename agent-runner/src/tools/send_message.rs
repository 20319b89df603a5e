//! The `send_message` tool: sends a chat message now, to the origin chat or to a named
//! destination from `inbound.db`'s `destinations`, as one `messages_out` row.
//!
//! Key type: [`SendMessage`]; [`resolve_destination`] and [`check_text`] are shared with the
//! other messaging tools. The host re-validates every destination before delivery; the
//! check here only gives the model a clear error (listing the valid names) early.

use super::{Tool, ToolContext, ToolDefinition, ToolError, ToolFuture, parse_arguments};
use protocol::content::MAX_TEXT_CHARS;
use protocol::{
    Destination, DestinationType, MessageContent, MessageId, NewOutboundRow, OutboundContent,
    OutboundKind, SessionRouting,
};

/// Where a message goes: the destination name for the row (`None` = the origin chat) and
/// whether that is the chat this conversation came from.
pub struct Target {
    pub destination: Option<String>,
    pub to_origin: bool,
}

/// Checks `to` against the projected destinations; an empty or absent `to` is the origin.
pub fn resolve_destination(
    context: &ToolContext<'_>,
    to: Option<String>,
) -> Result<Target, ToolError> {
    let Some(name) = to.filter(|name| !name.trim().is_empty()) else {
        return Ok(Target {
            destination: None,
            to_origin: true,
        });
    };
    let Some(destination) = context.destinations.iter().find(|d| d.name == name) else {
        return Err(ToolError::UnknownDestination {
            name,
            valid: context
                .destinations
                .iter()
                .map(|d| d.name.clone())
                .collect(),
        });
    };
    Ok(Target {
        to_origin: is_origin(destination, context.routing),
        destination: Some(name),
    })
}

/// Refuses text over the protocol's cap (`allow_empty` for captions of files).
pub fn check_text(field: &str, text: &str, allow_empty: bool) -> Result<(), ToolError> {
    if !allow_empty && text.trim().is_empty() {
        return Err(ToolError::Refused(format!(
            "`{field}` is empty: nothing to send"
        )));
    }
    let chars = text.chars().count();
    if chars > MAX_TEXT_CHARS {
        return Err(ToolError::Refused(format!(
            "`{field}` is {chars} characters; the limit is {MAX_TEXT_CHARS}: split it into several messages"
        )));
    }
    Ok(())
}
use serde::Deserialize;

pub const NAME: &str = "send_message";

/// Sends a chat message now.
pub struct SendMessage;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Arguments {
    #[serde(default)]
    to: Option<String>,
    text: String,
}

impl Tool for SendMessage {
    fn definition(&self) -> ToolDefinition {
        ToolDefinition {
            name: NAME.into(),
            description: "Send a chat message right away. Without `to` it goes to the chat this \
                conversation came from; with `to` it goes to that named destination. If you send \
                to the origin chat this way, your final answer is not sent as well."
                .into(),
            parameters: serde_json::json!({
                "type": "object",
                "properties": {
                    "to": {
                        "type": "string",
                        "description": "A destination name from the list in your instructions. Omit to send to the chat this conversation came from."
                    },
                    "text": {
                        "type": "string",
                        "description": "The message text."
                    }
                },
                "required": ["text"],
                "additionalProperties": false
            }),
        }
    }

    fn call<'a>(
        &'a self,
        context: &'a mut ToolContext<'_>,
        arguments: serde_json::Value,
    ) -> ToolFuture<'a> {
        Box::pin(async move {
            let arguments: Arguments = parse_arguments(NAME, arguments)?;
            check_text("text", &arguments.text, false)?;
            let target = resolve_destination(context, arguments.to)?;
            let row = NewOutboundRow {
                id: MessageId::generate(),
                in_reply_to: None,
                deliver_after: None,
                kind: OutboundKind::Chat,
                destination: target.destination.clone(),
                thread_id: None,
                content: OutboundContent::Message(MessageContent {
                    text: arguments.text,
                    files: Vec::new(),
                }),
            };
            let seq = context.send(row).await?;
            if target.to_origin {
                context.effects.sent_to_origin = true;
            }
            let to = target.destination;
            tracing::info!(%seq, destination = to.as_deref().unwrap_or("origin"), "message sent");
            Ok(format!("sent (seq {seq})"))
        })
    }
}

/// True when a named destination is the very chat this session came from.
fn is_origin(destination: &Destination, routing: Option<&SessionRouting>) -> bool {
    let Some(routing) = routing else {
        return false;
    };
    match destination.destination_type {
        DestinationType::Channel => {
            destination.channel_type.as_deref() == Some(routing.channel_type.as_str())
                && destination.platform_id.as_deref() == Some(routing.platform_id.as_str())
                && destination.thread_id == routing.thread_id
        }
        DestinationType::Agent => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_matches_the_arguments_struct() {
        let definition = SendMessage.definition();
        let properties = definition.parameters["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect::<Vec<_>>();
        assert_eq!(properties, ["text", "to"]);
        let parsed: Arguments =
            parse_arguments(NAME, serde_json::json!({"to": "a", "text": "b"})).unwrap();
        assert_eq!(
            (parsed.to.as_deref(), parsed.text.as_str()),
            (Some("a"), "b")
        );
        let missing = parse_arguments::<Arguments>(NAME, serde_json::json!({"to": "a"}));
        assert!(
            missing
                .unwrap_err()
                .to_string()
                .contains("missing field `text`")
        );
        let extra = parse_arguments::<Arguments>(NAME, serde_json::json!({"text": "a", "cc": 1}));
        assert!(
            extra
                .unwrap_err()
                .to_string()
                .contains("unknown field `cc`")
        );
        let wrong_type = parse_arguments::<Arguments>(NAME, serde_json::json!({"text": 5}));
        assert!(wrong_type.unwrap_err().to_string().contains("invalid type"));
    }

    #[test]
    fn origin_is_recognised_by_routing() {
        let routing = SessionRouting {
            channel_type: "cli".into(),
            platform_id: "local".into(),
            thread_id: None,
        };
        let mut destination = Destination {
            name: "here".into(),
            display_name: "Here".into(),
            destination_type: DestinationType::Channel,
            channel_type: Some("cli".into()),
            platform_id: Some("local".into()),
            thread_id: None,
            agent_group_id: None,
        };
        assert!(is_origin(&destination, Some(&routing)));
        assert!(!is_origin(&destination, None));
        destination.thread_id = Some("t".into());
        assert!(!is_origin(&destination, Some(&routing)));
    }

    #[tokio::test]
    async fn sends_and_refuses() {
        let mut fixture = crate::tools::testing::Fixture::new().await;
        let sent = fixture
            .ok(
                SendMessage,
                serde_json::json!({"to": "family", "text": "late"}),
            )
            .await;
        assert!(sent.starts_with("sent (seq "), "{sent}");
        assert!(!fixture.effects.sent_to_origin);
        fixture
            .ok(SendMessage, serde_json::json!({"to": "", "text": "here"}))
            .await;
        assert!(fixture.effects.sent_to_origin);
        assert_eq!(fixture.effects.n_messages_sent, 2);
        let rows = fixture.outbound_rows();
        assert_eq!(rows[0].destination.as_deref(), Some("family"));
        assert_eq!(rows[0].in_reply_to.as_ref(), Some(&fixture.in_reply_to));
        assert_eq!(rows[1].destination, None);
        let unknown = fixture
            .error(SendMessage, serde_json::json!({"to": "famly", "text": "x"}))
            .await;
        assert!(unknown.contains("valid destinations: family"), "{unknown}");
        let empty = fixture
            .error(SendMessage, serde_json::json!({"text": " "}))
            .await;
        assert_eq!(empty, "`text` is empty: nothing to send");
        let long = fixture
            .error(
                SendMessage,
                serde_json::json!({"text": "a".repeat(MAX_TEXT_CHARS + 1)}),
            )
            .await;
        assert!(long.contains("split it into several messages"), "{long}");
    }
}
