//! The `ask_user_question` tool ([`AskUserQuestion`]): writes a `question` row to the origin
//! chat and blocks until the host delivers the answer — an inbound row whose content carries
//! the same `question_id` — or the timeout passes.
//!
//! The wait watches `in/` for file events (the poll is only the fallback), so an answer is
//! seen within milliseconds. The answer row is consumed: it is completed with the turn and
//! not shown to the model again. On timeout the tool says so plainly (not as an error); the
//! question's `expires_at` tells the host to store a late answer with `trigger = 0`, so it
//! does not wake an idle container and reaches the model with the next turn instead.

use super::{
    Tool, ToolContext, ToolDefinition, ToolError, ToolFuture, ToolLimits, clamp_timeout,
    parse_arguments, seconds_text, short_id,
};
use crate::wake::Wake;
use protocol::content::{MAX_QUESTION_OPTIONS, MAX_TEXT_CHARS};
use protocol::{InboundContent, MessageId, NewOutboundRow, OutboundContent, OutboundKind, Seq};
use serde::Deserialize;
use std::collections::HashSet;
use std::time::Duration;

pub const NAME: &str = "ask_user_question";

/// Longest option or title, in characters.
const MAX_OPTION_CHARS: usize = 200;
/// The slowest the fallback poll runs while waiting for an answer.
const MAX_POLL_WHILE_WAITING: Duration = Duration::from_secs(1);

/// Asks the person in the origin chat and waits for the answer.
pub struct AskUserQuestion;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Arguments {
    question: String,
    #[serde(default)]
    options: Vec<String>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    timeout_seconds: Option<f64>,
}

impl Tool for AskUserQuestion {
    fn definition(&self) -> ToolDefinition {
        ToolDefinition {
            name: NAME.into(),
            description: "Ask the person in the chat this conversation came from a question and \
                wait for the answer, which this tool returns. Offer `options` to choose from \
                (shown as buttons or a numbered list), or none for a free answer. The wait \
                ends after `timeout_seconds` (default 300, at most 3600); a later answer \
                reaches you as a new message."
                .into(),
            parameters: serde_json::json!({
                "type": "object",
                "properties": {
                    "question": {"type": "string", "description": "The question."},
                    "options": {
                        "type": "array",
                        "items": {"type": "string"},
                        "maxItems": 16,
                        "description": "The answers to choose from; empty for a free answer."
                    },
                    "title": {"type": "string", "description": "A short heading (default \"Question\")."},
                    "timeout_seconds": {
                        "type": "number",
                        "minimum": 1,
                        "maximum": 3600,
                        "default": 300,
                        "description": "How long to wait for the answer."
                    }
                },
                "required": ["question"],
                "additionalProperties": false
            }),
        }
    }

    fn declared_timeout(
        &self,
        arguments: &serde_json::Value,
        limits: &ToolLimits,
    ) -> Option<Duration> {
        let seconds = arguments
            .get("timeout_seconds")
            .and_then(serde_json::Value::as_f64);
        Some(
            clamp_timeout(
                seconds,
                limits.question_default_timeout,
                limits.question_max_timeout,
            )
            .0,
        )
    }

    fn call<'a>(
        &'a self,
        context: &'a mut ToolContext<'_>,
        arguments: serde_json::Value,
    ) -> ToolFuture<'a> {
        Box::pin(async move {
            let arguments: Arguments = parse_arguments(NAME, arguments)?;
            check(&arguments)?;
            let (timeout, _) = clamp_timeout(
                arguments.timeout_seconds,
                context.tool_limits.question_default_timeout,
                context.tool_limits.question_max_timeout,
            );
            let question_id = short_id("q");
            // Watch before writing the question, so no answer can slip between the two.
            let mut wake = Wake::new(
                &context.paths.in_dir(),
                context.limits.poll_interval.min(MAX_POLL_WHILE_WAITING),
                context.limits.config.watch_files,
            );
            let asked_after = context
                .store
                .call(|store| store.max_inbound_seq())
                .await?
                .unwrap_or(Seq(-1));
            let expires_at = protocol::time::now_ms()
                .saturating_add(i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX));
            let seq = context
                .send(NewOutboundRow {
                    id: MessageId::generate(),
                    in_reply_to: None,
                    deliver_after: None,
                    kind: OutboundKind::Chat,
                    destination: None,
                    thread_id: None,
                    content: OutboundContent::Question {
                        question_id: question_id.clone(),
                        title: arguments
                            .title
                            .filter(|title| !title.trim().is_empty())
                            .unwrap_or_else(|| "Question".to_owned()),
                        question: arguments.question,
                        options: arguments.options,
                        expires_at: Some(expires_at),
                    },
                })
                .await?;
            tracing::info!(%seq, %question_id, ?timeout, "asked the user; waiting for the answer");
            let deadline = tokio::time::Instant::now() + timeout;
            loop {
                let id = question_id.clone();
                let answer = context
                    .store
                    .call(move |store| store.answer_to(&id, asked_after))
                    .await?;
                if let Some(row) = answer {
                    context.effects.consumed_rows.push(row.id.clone());
                    return Ok(describe_answer(&row.content));
                }
                if tokio::time::Instant::now() >= deadline {
                    return Ok(format!(
                        "no answer within {}. The question ({question_id}) stays open in the chat: a later answer reaches you as a new message.",
                        seconds_text(timeout)
                    ));
                }
                tokio::select! {
                    _ = wake.next() => {}
                    () = tokio::time::sleep_until(deadline) => {}
                }
            }
        })
    }
}

fn check(arguments: &Arguments) -> Result<(), ToolError> {
    let refuse = |reason: String| Err(ToolError::Refused(reason));
    if arguments.question.trim().is_empty() {
        return refuse("`question` is empty".into());
    }
    if arguments.question.chars().count() > MAX_TEXT_CHARS {
        return refuse(format!("`question` is over {MAX_TEXT_CHARS} characters"));
    }
    if arguments.options.len() > MAX_QUESTION_OPTIONS {
        return refuse(format!(
            "{} options; offer at most {MAX_QUESTION_OPTIONS}",
            arguments.options.len()
        ));
    }
    let mut seen = HashSet::new();
    for option in &arguments.options {
        if option.trim().is_empty() || option.chars().count() > MAX_OPTION_CHARS {
            return refuse(format!(
                "every option must be 1 to {MAX_OPTION_CHARS} characters"
            ));
        }
        if !seen.insert(option.trim()) {
            return refuse(format!("the option {option:?} is given twice"));
        }
    }
    if arguments
        .title
        .as_ref()
        .is_some_and(|title| title.chars().count() > MAX_OPTION_CHARS)
    {
        return refuse(format!("`title` is over {MAX_OPTION_CHARS} characters"));
    }
    Ok(())
}

/// `Ann answered: Blue`, from the answer row's content.
fn describe_answer(content: &str) -> String {
    let content: InboundContent =
        serde_json::from_str(content).unwrap_or_else(|_| InboundContent {
            text: content.to_owned(),
            ..InboundContent::default()
        });
    let answer = content.answer_text().unwrap_or(&content.text).to_owned();
    match content.sender {
        Some(sender) => format!("{} answered: {answer}", sender.name.unwrap_or(sender.id)),
        None => format!("the answer: {answer}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::testing::{Fixture, wait_until};
    use protocol::{NewInboundRow, Sender, inbound};
    use serde_json::json;

    #[tokio::test]
    async fn the_answer_row_unblocks_the_tool() {
        let mut fixture = Fixture::new().await;
        let paths = fixture.paths.clone();
        let host = protocol::schema::open_inbound_writer(&paths.inbound_db()).unwrap();
        let question = || {
            fixture_rows(&paths)
                .into_iter()
                .find(|(_, content)| content.contains("\"operation\":\"question\""))
        };
        let (text, answer_id) = tokio::join!(
            fixture.ok(
                AskUserQuestion,
                json!({"question": "Which colour?", "options": ["Red", "Blue"], "timeout_seconds": 60})
            ),
            async {
                wait_until("the question row", || question().is_some()).await;
                let (_, content) = question().unwrap();
                let sent: serde_json::Value = serde_json::from_str(&content).unwrap();
                assert_eq!(sent["title"], "Question");
                assert_eq!(sent["options"], json!(["Red", "Blue"]));
                assert!(sent["expires_at"].as_i64().unwrap() > protocol::time::now_ms());
                // An unrelated message first: it must not count as the answer.
                inbound::insert(&host, &NewInboundRow::chat(&InboundContent {
                    text: "Blue?".into(),
                    ..Default::default()
                }), None).unwrap();
                let answer = NewInboundRow::chat(&InboundContent {
                    text: "the blue one".into(),
                    sender: Some(Sender { id: "u1".into(), name: Some("Ann".into()) }),
                    question_id: sent["question_id"].as_str().map(str::to_owned),
                    answer: Some("Blue".into()),
                    ..Default::default()
                });
                inbound::insert(&host, &answer, None).unwrap();
                answer.id
            }
        );
        assert_eq!(text, "Ann answered: Blue");
        assert_eq!(fixture.effects.consumed_rows, [answer_id]);
        assert_eq!(fixture.container_state(), (None, None));
    }

    #[tokio::test]
    async fn a_timeout_is_a_plain_result() {
        let mut fixture = Fixture::new().await;
        fixture.tool_limits.question_default_timeout = Duration::from_millis(100);
        let text = fixture
            .ok(AskUserQuestion, json!({"question": "Anyone there?"}))
            .await;
        assert!(
            text.starts_with("no answer within 0.1 s. The question (q-"),
            "{text}"
        );
        assert!(fixture.effects.consumed_rows.is_empty());
        let rows = fixture.outbound_rows();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].destination, None, "questions go to the origin chat");
    }

    #[tokio::test]
    async fn bad_questions_are_refused() {
        let mut fixture = Fixture::new().await;
        for (arguments, fragment) in [
            (json!({"question": " "}), "`question` is empty"),
            (
                json!({"question": "q", "options": ["a", "a"]}),
                "given twice",
            ),
            (
                json!({"question": "q", "options": [""]}),
                "every option must be",
            ),
            (
                json!({"question": "q", "options": vec!["o"; 17].iter().enumerate().map(|(i, _)| i.to_string()).collect::<Vec<_>>()}),
                "offer at most 16",
            ),
            (json!({"options": ["a"]}), "missing field `question`"),
        ] {
            let error = fixture.error(AskUserQuestion, arguments).await;
            assert!(error.contains(fragment), "{error} lacks {fragment}");
        }
        assert!(fixture.outbound_rows().is_empty());
    }

    #[test]
    fn answers_are_described() {
        assert_eq!(
            describe_answer(r#"{"text":"yes","question_id":"q-1","sender":{"id":"u9"}}"#),
            "u9 answered: yes"
        );
        assert_eq!(describe_answer("not json"), "the answer: not json");
    }

    fn fixture_rows(paths: &protocol::SessionPaths) -> Vec<(i64, String)> {
        let reader = protocol::schema::open_outbound_reader(&paths.outbound_db()).unwrap();
        protocol::outbound::read_after(&reader, Seq(-1), 100, 1 << 20)
            .unwrap()
            .into_iter()
            .map(|row| {
                let row = row.unwrap();
                (row.seq.0, row.content)
            })
            .collect()
    }
}
