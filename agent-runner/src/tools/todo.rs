//! The `todo_write` tool ([`TodoWrite`]): the agent's plan as a list of items with statuses
//! (`pending`, `in_progress`, `done`, `failed`, `cancelled`; at most one in progress),
//! delivered to the origin chat as a `progress` row.
//!
//! The first call of a turn starts a progress message; later calls in the same turn write
//! `progress` rows whose `target_seq` names that first row, and the host edits it in place
//! where the channel can edit (and sends the list anew where it cannot).

use super::{Tool, ToolContext, ToolDefinition, ToolError, ToolFuture, parse_arguments};
use protocol::content::{MAX_PROGRESS_ITEMS, PROGRESS_STATUSES};
use protocol::{MessageId, NewOutboundRow, OutboundContent, OutboundKind, ProgressItem};
use serde::Deserialize;

pub const NAME: &str = "todo_write";

/// Longest item text, in characters.
const MAX_ITEM_CHARS: usize = 500;

/// Shows and updates the agent's plan.
pub struct TodoWrite;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Arguments {
    items: Vec<Item>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Item {
    text: String,
    status: String,
}

impl Tool for TodoWrite {
    fn definition(&self) -> ToolDefinition {
        ToolDefinition {
            name: NAME.into(),
            description: "Show your plan for a multi-step job to the chat and keep it up to \
                date: send the whole list each time, every item with its status. Keep exactly \
                one item in_progress while you work on it. The first call of a turn posts the \
                plan; later calls update that same message."
                .into(),
            parameters: serde_json::json!({
                "type": "object",
                "properties": {
                    "items": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": 100,
                        "items": {
                            "type": "object",
                            "properties": {
                                "text": {"type": "string", "description": "What the step is."},
                                "status": {"type": "string", "enum": PROGRESS_STATUSES}
                            },
                            "required": ["text", "status"],
                            "additionalProperties": false
                        }
                    }
                },
                "required": ["items"],
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
            let items = check(arguments.items)?;
            let summary = summarize(&items);
            let target_seq = context.effects.progress_seq;
            let seq = context
                .send(NewOutboundRow {
                    id: MessageId::generate(),
                    in_reply_to: None,
                    deliver_after: None,
                    kind: OutboundKind::Chat,
                    destination: None,
                    thread_id: None,
                    content: OutboundContent::Progress { items, target_seq },
                })
                .await?;
            Ok(match target_seq {
                Some(first) => format!("plan updated in place (seq {first}): {summary}"),
                None => {
                    context.effects.progress_seq = Some(seq);
                    format!("plan posted (seq {seq}): {summary}")
                }
            })
        })
    }
}

fn check(items: Vec<Item>) -> Result<Vec<ProgressItem>, ToolError> {
    let refuse = |reason: String| Err(ToolError::Refused(reason));
    if items.is_empty() {
        return refuse("`items` is empty: give the whole plan".into());
    }
    if items.len() > MAX_PROGRESS_ITEMS {
        return refuse(format!(
            "{} items; a plan holds at most {MAX_PROGRESS_ITEMS}",
            items.len()
        ));
    }
    let mut checked = Vec::with_capacity(items.len());
    for item in items {
        let status = item
            .status
            .trim()
            .to_ascii_lowercase()
            .replace([' ', '-'], "_");
        if !PROGRESS_STATUSES.contains(&status.as_str()) {
            return refuse(format!(
                "status {:?} of {:?} is not one of {}",
                item.status,
                item.text,
                PROGRESS_STATUSES.join(", ")
            ));
        }
        if item.text.trim().is_empty() || item.text.chars().count() > MAX_ITEM_CHARS {
            return refuse(format!(
                "every item needs a text of 1 to {MAX_ITEM_CHARS} characters"
            ));
        }
        checked.push(ProgressItem {
            text: item.text,
            status,
        });
    }
    let n_in_progress = checked
        .iter()
        .filter(|item| item.status == "in_progress")
        .count();
    if n_in_progress > 1 {
        return refuse(format!(
            "{n_in_progress} items are in_progress; keep exactly one in progress at a time"
        ));
    }
    Ok(checked)
}

/// `3 items: 1 pending, 1 in_progress, 1 done`, statuses in the order of
/// `PROGRESS_STATUSES`.
fn summarize(items: &[ProgressItem]) -> String {
    let counts: Vec<String> = PROGRESS_STATUSES
        .iter()
        .filter_map(|status| {
            let n = items.iter().filter(|item| item.status == *status).count();
            (n > 0).then(|| format!("{n} {status}"))
        })
        .collect();
    let noun = if items.len() == 1 { "item" } else { "items" };
    format!("{} {noun}: {}", items.len(), counts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::testing::Fixture;
    use serde_json::json;

    #[tokio::test]
    async fn first_call_posts_later_calls_edit_in_place() {
        let mut fixture = Fixture::new().await;
        let first = fixture
            .ok(
                TodoWrite,
                json!({"items": [
                    {"text": "fetch", "status": "in_progress"},
                    {"text": "sum", "status": "pending"}
                ]}),
            )
            .await;
        assert!(first.starts_with("plan posted (seq "), "{first}");
        let second = fixture
            .ok(
                TodoWrite,
                json!({"items": [
                    {"text": "fetch", "status": "done"},
                    {"text": "sum", "status": "In Progress"}
                ]}),
            )
            .await;
        let rows = fixture.outbound_rows();
        assert_eq!(rows.len(), 2);
        let first_seq = rows[0].seq.0;
        assert_eq!(
            second,
            format!("plan updated in place (seq {first_seq}): 2 items: 1 in_progress, 1 done")
        );
        let content = |index: usize| -> serde_json::Value {
            serde_json::from_str(&rows[index].content).unwrap()
        };
        assert_eq!(
            content(0),
            json!({"operation": "progress", "items": [
                {"text": "fetch", "status": "in_progress"},
                {"text": "sum", "status": "pending"}
            ]})
        );
        assert_eq!(
            content(1),
            json!({"operation": "progress", "target_seq": first_seq, "items": [
                {"text": "fetch", "status": "done"},
                {"text": "sum", "status": "in_progress"}
            ]})
        );
        assert!(!fixture.effects.sent_to_origin, "a plan is not an answer");
    }

    #[tokio::test]
    async fn bad_plans_are_refused() {
        let mut fixture = Fixture::new().await;
        for (items, fragment) in [
            (json!([]), "`items` is empty"),
            (
                json!([{"text": "a", "status": "maybe"}]),
                "is not one of pending, in_progress",
            ),
            (
                json!([{"text": "a", "status": "in_progress"}, {"text": "b", "status": "in_progress"}]),
                "2 items are in_progress",
            ),
            (json!([{"text": " ", "status": "done"}]), "needs a text"),
            (json!([{"text": "a"}]), "missing field `status`"),
        ] {
            let error = fixture.error(TodoWrite, json!({"items": items})).await;
            assert!(error.contains(fragment), "{error} lacks {fragment}");
        }
        assert!(fixture.outbound_rows().is_empty());
    }
}
