//! The schedule tools: `schedule_task` ([`ScheduleTask`]), `list_tasks` ([`ListTasks`]),
//! `update_task` ([`UpdateTask`]) and `pause_task` / `resume_task` / `cancel_task`
//! ([`ChangeTask`]). Each change is a `system` row carrying a `protocol::actions::Action`,
//! which the host carries out in `messages_in`.
//!
//! `list_tasks` needs no round trip: the tasks are the `task` rows of `inbound.db`
//! (read-only here), and the actions this runner wrote that the host has not handled yet
//! are listed after them. Times are shown in UTC; `at` must carry `Z` or an offset.

use super::{Tool, ToolContext, ToolDefinition, ToolError, ToolFuture, parse_arguments, short_id};
use crate::clock::{format_minutes, parse_rfc3339};
use crate::store::TaskList;
use protocol::actions::{Action, ScheduleTask as ScheduleAction, UpdateTask as UpdateAction};
use protocol::schedule::{Recurrence, Schedule, ScheduledTask, validate_cron, validate_timezone};
use serde::Deserialize;
use std::fmt::Write;

pub const SCHEDULE_TASK: &str = "schedule_task";
pub const LIST_TASKS: &str = "list_tasks";
pub const UPDATE_TASK: &str = "update_task";

/// How far in the past an `at` may lie (clock skew, a slow model) before it is refused.
const PAST_TOLERANCE_MS: i64 = 5 * 60_000;
/// Most characters of a prompt `list_tasks` shows.
const MAX_LISTED_PROMPT_CHARS: usize = 200;

/// Schedules a prompt to run later, once or on a cron schedule.
pub struct ScheduleTask;
/// Lists the scheduled tasks.
pub struct ListTasks;
/// Changes a task's prompt or schedule.
pub struct UpdateTask;

/// Pauses, resumes or cancels a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeTask {
    Pause,
    Resume,
    Cancel,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleArguments {
    prompt: String,
    #[serde(default)]
    at: Option<String>,
    #[serde(default)]
    cron: Option<String>,
    #[serde(default)]
    timezone: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateArguments {
    task_id: String,
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    at: Option<String>,
    #[serde(default)]
    cron: Option<String>,
    #[serde(default)]
    timezone: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskIdArguments {
    task_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoArguments {}

fn schedule_properties() -> serde_json::Value {
    serde_json::json!({
        "at": {"type": "string", "description": "Run once at this time, RFC 3339 with `Z` or an offset, e.g. 2025-06-01T09:00:00+02:00."},
        "cron": {"type": "string", "description": "Run repeatedly on this five-field cron schedule (minute hour day-of-month month day-of-week), e.g. `0 9 * * mon-fri`."},
        "timezone": {"type": "string", "description": "IANA timezone the cron schedule is read in, e.g. Europe/Paris (default UTC)."}
    })
}

impl Tool for ScheduleTask {
    fn definition(&self) -> ToolDefinition {
        let mut properties = schedule_properties();
        properties["prompt"] = serde_json::json!({"type": "string", "description": "What you will be told to do when the task runs."});
        ToolDefinition {
            name: SCHEDULE_TASK.into(),
            description: "Schedule a task: at the given time (`at`) or on a cron schedule \
                (`cron`, optionally in a `timezone`), `prompt` reaches you as a `task` message \
                and starts a turn, as if someone had asked. Give exactly one of `at` and \
                `cron`. Returns the task id for update_task, pause_task, resume_task and \
                cancel_task."
                .into(),
            parameters: serde_json::json!({
                "type": "object",
                "properties": properties,
                "required": ["prompt"],
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
            let arguments: ScheduleArguments = parse_arguments(SCHEDULE_TASK, arguments)?;
            let schedule = parse_schedule(arguments.at, arguments.cron, arguments.timezone)?
                .ok_or_else(|| {
                    ToolError::Refused("give `at` (one run) or `cron` (repeating)".into())
                })?;
            let task_id = short_id("t");
            let when = describe_schedule(&schedule);
            let action = Action::ScheduleTask(ScheduleAction {
                task_id: task_id.clone(),
                prompt: arguments.prompt,
                schedule,
            });
            let seq = context.send_action(&action).await?;
            Ok(format!(
                "task {task_id} scheduled {when} (seq {seq}). If the host cannot schedule it, a system message will say so."
            ))
        })
    }
}

impl Tool for ListTasks {
    fn definition(&self) -> ToolDefinition {
        ToolDefinition {
            name: LIST_TASKS.into(),
            description: "List your scheduled tasks: id, next run (UTC), schedule, whether \
                paused, and the prompt; then any changes you asked for that the host has not \
                applied yet."
                .into(),
            parameters: serde_json::json!({
                "type": "object",
                "properties": {},
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
            let NoArguments {} = parse_arguments(LIST_TASKS, arguments)?;
            let list = context.store.call(|store| store.task_list()).await?;
            Ok(render_list(&list))
        })
    }
}

impl Tool for UpdateTask {
    fn definition(&self) -> ToolDefinition {
        let mut properties = schedule_properties();
        properties["task_id"] =
            serde_json::json!({"type": "string", "description": "The task's id."});
        properties["prompt"] =
            serde_json::json!({"type": "string", "description": "The new prompt."});
        ToolDefinition {
            name: UPDATE_TASK.into(),
            description: "Change a scheduled task: its prompt, its schedule (`at` or `cron`, \
                optionally with `timezone`), or both."
                .into(),
            parameters: serde_json::json!({
                "type": "object",
                "properties": properties,
                "required": ["task_id"],
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
            let arguments: UpdateArguments = parse_arguments(UPDATE_TASK, arguments)?;
            let schedule = parse_schedule(arguments.at, arguments.cron, arguments.timezone)?;
            if arguments.prompt.is_none() && schedule.is_none() {
                return Err(ToolError::Refused(
                    "nothing to change: give a new `prompt`, `at` or `cron`".into(),
                ));
            }
            check_known(context, &arguments.task_id).await?;
            let action = Action::UpdateTask(UpdateAction {
                task_id: arguments.task_id.clone(),
                prompt: arguments.prompt,
                schedule,
            });
            let seq = context.send_action(&action).await?;
            Ok(format!(
                "asked the host to update task {} (seq {seq})",
                arguments.task_id
            ))
        })
    }
}

impl ChangeTask {
    fn name(self) -> &'static str {
        match self {
            ChangeTask::Pause => "pause_task",
            ChangeTask::Resume => "resume_task",
            ChangeTask::Cancel => "cancel_task",
        }
    }
}

impl Tool for ChangeTask {
    fn definition(&self) -> ToolDefinition {
        let description = match self {
            ChangeTask::Pause => {
                "Pause a scheduled task: it does not run until resume_task. Its schedule is kept."
            }
            ChangeTask::Resume => "Resume a paused task: it runs again on its schedule.",
            ChangeTask::Cancel => "Cancel a scheduled task for good; it will not run again.",
        };
        ToolDefinition {
            name: self.name().into(),
            description: description.into(),
            parameters: serde_json::json!({
                "type": "object",
                "properties": {"task_id": {"type": "string", "description": "The task's id, from schedule_task or list_tasks."}},
                "required": ["task_id"],
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
            let TaskIdArguments { task_id } = parse_arguments(self.name(), arguments)?;
            check_known(context, &task_id).await?;
            let action = match self {
                ChangeTask::Pause => Action::PauseTask {
                    task_id: task_id.clone(),
                },
                ChangeTask::Resume => Action::ResumeTask {
                    task_id: task_id.clone(),
                },
                ChangeTask::Cancel => Action::CancelTask {
                    task_id: task_id.clone(),
                },
            };
            let seq = context.send_action(&action).await?;
            let verb = match self {
                ChangeTask::Pause => "pause",
                ChangeTask::Resume => "resume",
                ChangeTask::Cancel => "cancel",
            };
            Ok(format!(
                "asked the host to {verb} task {task_id} (seq {seq})"
            ))
        })
    }
}

/// The schedule named by `at` / `cron` / `timezone`, checked; `None` when none is given.
fn parse_schedule(
    at: Option<String>,
    cron: Option<String>,
    timezone: Option<String>,
) -> Result<Option<Schedule>, ToolError> {
    let refuse = |reason: String| Err(ToolError::Refused(reason));
    let timezone = timezone.filter(|zone| !zone.trim().is_empty());
    match (
        at.filter(|at| !at.trim().is_empty()),
        cron.filter(|cron| !cron.trim().is_empty()),
    ) {
        (Some(_), Some(_)) => refuse("give `at` or `cron`, not both".into()),
        (Some(_), None) if timezone.is_some() => refuse(
            "`timezone` is for `cron`; write `at` with its UTC offset instead (e.g. +02:00)".into(),
        ),
        (Some(at), None) => {
            let at =
                parse_rfc3339(&at).map_err(|error| ToolError::Refused(format!("`at`: {error}")))?;
            let now = protocol::time::now_ms();
            if at < now - PAST_TOLERANCE_MS {
                return refuse(format!(
                    "`at` ({}) is in the past; it is now {}",
                    format_minutes(at),
                    format_minutes(now)
                ));
            }
            Ok(Some(Schedule::At(at)))
        }
        (None, Some(cron)) => {
            validate_cron(&cron)
                .map_err(|reason| ToolError::Refused(format!("`cron` {reason}")))?;
            if let Some(zone) = &timezone {
                validate_timezone(zone)
                    .map_err(|reason| ToolError::Refused(format!("`timezone` {reason}")))?;
            }
            Ok(Some(Schedule::Cron(Recurrence {
                cron: cron.trim().to_owned(),
                timezone,
            })))
        }
        (None, None) if timezone.is_some() => refuse("`timezone` needs a `cron` schedule".into()),
        (None, None) => Ok(None),
    }
}

/// Refuses a task id that is neither scheduled nor being scheduled, listing the known ones.
async fn check_known(context: &ToolContext<'_>, task_id: &str) -> Result<(), ToolError> {
    let list = context.store.call(|store| store.task_list()).await?;
    let known: Vec<&str> = list
        .tasks
        .iter()
        .map(|task| task.task_id.as_str())
        .chain(
            list.pending
                .iter()
                .filter_map(|(_, action)| action.task_id()),
        )
        .collect();
    if known.contains(&task_id) {
        return Ok(());
    }
    let mut unique = known.clone();
    unique.sort_unstable();
    unique.dedup();
    Err(ToolError::Refused(if unique.is_empty() {
        format!(
            "there is no task {task_id:?}: no task is scheduled (a one-off task that already ran is gone)"
        )
    } else {
        format!(
            "there is no task {task_id:?} (a one-off task that already ran is gone); scheduled tasks: {}",
            unique.join(", ")
        )
    }))
}

fn describe_schedule(schedule: &Schedule) -> String {
    match schedule {
        Schedule::At(at) => format!("for {}", format_minutes(*at)),
        Schedule::Cron(recurrence) => describe_recurrence(recurrence),
    }
}

fn describe_recurrence(recurrence: &Recurrence) -> String {
    format!(
        "on `{}` ({})",
        recurrence.cron,
        recurrence.timezone.as_deref().unwrap_or("UTC")
    )
}

/// The `list_tasks` text.
fn render_list(list: &TaskList) -> String {
    let mut out = String::new();
    if list.tasks.is_empty() {
        out.push_str("no scheduled tasks\n");
    }
    for task in &list.tasks {
        render_task(&mut out, task);
    }
    if !list.pending.is_empty() {
        out.push_str("requested, not yet applied by the host:\n");
        for (seq, action) in &list.pending {
            let detail = match action {
                Action::ScheduleTask(task) => format!(
                    " {}: {}",
                    describe_schedule(&task.schedule),
                    shorten(&task.prompt)
                ),
                Action::UpdateTask(_)
                | Action::PauseTask { .. }
                | Action::ResumeTask { .. }
                | Action::CancelTask { .. }
                | Action::CreateAgent(_) => String::new(),
            };
            let _ = writeln!(
                out,
                "- {} {} (seq {seq}){detail}",
                action.name(),
                action.task_id().unwrap_or("")
            );
        }
    }
    out
}

fn render_task(out: &mut String, task: &ScheduledTask) {
    let next = task
        .next_run_at
        .map_or_else(|| "as soon as possible".to_owned(), format_minutes);
    let repeat = task
        .recurrence
        .as_ref()
        .map_or_else(|| "once".to_owned(), describe_recurrence);
    let paused = if task.paused { ", paused" } else { "" };
    let _ = writeln!(
        out,
        "- {}: next {next}, {repeat}{paused}: {}",
        task.task_id,
        shorten(&task.prompt)
    );
}

fn shorten(text: &str) -> String {
    let mut short: String = text.chars().take(MAX_LISTED_PROMPT_CHARS).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    short.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::testing::Fixture;
    use protocol::rows::{DeliveryStatus, InboundStatus};
    use protocol::{NewInboundRow, OutboundContent, OutboundKind, inbound};
    use serde_json::json;

    /// The actions of the `system` rows written so far.
    fn actions(fixture: &Fixture) -> Vec<Action> {
        fixture
            .outbound_rows()
            .into_iter()
            .filter(|row| row.kind == "system")
            .map(|row| {
                let content = OutboundContent::parse(OutboundKind::System, &row.content).unwrap();
                Action::from_content(&content).unwrap()
            })
            .collect()
    }

    #[tokio::test]
    async fn schedule_writes_a_checked_action() {
        let mut fixture = Fixture::new().await;
        let text = fixture
            .ok(
                ScheduleTask,
                json!({"prompt": "water the plants", "at": "2999-01-01T10:30:00+02:00"}),
            )
            .await;
        assert!(text.starts_with("task t-"), "{text}");
        assert!(
            text.contains("scheduled for 2999-01-01 08:30 UTC"),
            "{text}"
        );
        fixture
            .ok(
                ScheduleTask,
                json!({"prompt": "standup", "cron": "0 9 * * mon-fri", "timezone": "Europe/Paris"}),
            )
            .await;
        let written = actions(&fixture);
        let Action::ScheduleTask(once) = &written[0] else {
            panic!("{written:?}")
        };
        assert_eq!(once.schedule, Schedule::At(32_472_174_600_000));
        assert!(text.starts_with(&format!("task {}", once.task_id)));
        let Action::ScheduleTask(repeating) = &written[1] else {
            panic!("{written:?}")
        };
        assert_eq!(
            repeating.schedule,
            Schedule::Cron(Recurrence {
                cron: "0 9 * * mon-fri".into(),
                timezone: Some("Europe/Paris".into()),
            })
        );
        for (arguments, fragment) in [
            (json!({"prompt": "p"}), "give `at` (one run) or `cron`"),
            (
                json!({"prompt": "p", "at": "2999-01-01T00:00:00Z", "cron": "* * * * *"}),
                "not both",
            ),
            (
                json!({"prompt": "p", "at": "2000-01-01T00:00:00Z"}),
                "is in the past; it is now",
            ),
            (
                json!({"prompt": "p", "at": "2999-01-01T00:00:00"}),
                "no UTC offset",
            ),
            (
                json!({"prompt": "p", "at": "2999-01-01T00:00:00Z", "timezone": "UTC"}),
                "`timezone` is for `cron`",
            ),
            (
                json!({"prompt": "p", "cron": "0 25 * * *"}),
                "`cron` hour 25 is outside 0-23",
            ),
            (
                json!({"prompt": "p", "cron": "@daily", "timezone": "Mars Base"}),
                "not a timezone name",
            ),
            (
                json!({"prompt": " ", "cron": "@daily"}),
                "`prompt` is empty",
            ),
        ] {
            let error = fixture.error(ScheduleTask, arguments).await;
            assert!(error.contains(fragment), "{error} lacks {fragment}");
        }
        assert_eq!(actions(&fixture).len(), 2, "refusals write nothing");
    }

    #[tokio::test]
    async fn list_shows_host_rows_then_unapplied_requests() {
        let mut fixture = Fixture::new().await;
        assert_eq!(
            fixture.ok(ListTasks, json!({})).await,
            "no scheduled tasks\n"
        );
        let daily = Recurrence {
            cron: "0 9 * * *".into(),
            timezone: Some("Europe/Paris".into()),
        };
        let morning = NewInboundRow::task(
            "t-daily",
            "say good morning",
            1_748_768_400_000,
            Some(&daily),
        );
        inbound::insert(&fixture.host, &morning, None).unwrap();
        let paused = NewInboundRow::task("t-once", "call\nmum", 1_748_768_400_000, None);
        inbound::insert(&fixture.host, &paused, None).unwrap();
        inbound::set_status(&fixture.host, &paused.id, InboundStatus::Paused).unwrap();
        fixture
            .ok(
                ScheduleTask,
                json!({"prompt": "new one", "cron": "@hourly"}),
            )
            .await;
        fixture
            .ok(ChangeTask::Cancel, json!({"task_id": "t-daily"}))
            .await;
        let listed = fixture.ok(ListTasks, json!({})).await;
        let lines: Vec<&str> = listed.lines().collect();
        assert_eq!(
            lines[..3],
            [
                "- t-daily: next 2025-06-01 09:00 UTC, on `0 9 * * *` (Europe/Paris): say good morning",
                "- t-once: next 2025-06-01 09:00 UTC, once, paused: call mum",
                "requested, not yet applied by the host:",
            ]
        );
        assert!(lines[3].starts_with("- schedule_task t-"), "{listed}");
        assert!(
            lines[3].ends_with("on `@hourly` (UTC): new one"),
            "{listed}"
        );
        assert!(
            lines[4].starts_with("- cancel_task t-daily (seq "),
            "{listed}"
        );

        // Once the host has handled the rows, they are no longer pending.
        for row in fixture.outbound_rows() {
            inbound::record_delivery(
                &fixture.host,
                &row.id,
                row.seq,
                DeliveryStatus::Delivered,
                None,
                None,
            )
            .unwrap();
        }
        let listed = fixture.ok(ListTasks, json!({})).await;
        assert!(!listed.contains("requested"), "{listed}");
    }

    #[tokio::test]
    async fn changes_need_a_known_task() {
        let mut fixture = Fixture::new().await;
        let none = fixture
            .error(ChangeTask::Pause, json!({"task_id": "t-nope"}))
            .await;
        assert!(none.contains("no task is scheduled"), "{none}");
        inbound::insert(
            &fixture.host,
            &NewInboundRow::task("t-1", "p", 0, None),
            None,
        )
        .unwrap();
        let unknown = fixture
            .error(ChangeTask::Resume, json!({"task_id": "t-2"}))
            .await;
        assert!(unknown.ends_with("scheduled tasks: t-1"), "{unknown}");
        assert_eq!(
            fixture
                .ok(ChangeTask::Pause, json!({"task_id": "t-1"}))
                .await
                .split(" (seq")
                .next(),
            Some("asked the host to pause task t-1")
        );
        fixture
            .ok(
                UpdateTask,
                json!({"task_id": "t-1", "prompt": "new prompt", "cron": "*/5 * * * *"}),
            )
            .await;
        let nothing = fixture.error(UpdateTask, json!({"task_id": "t-1"})).await;
        assert!(nothing.contains("nothing to change"), "{nothing}");
        assert_eq!(
            actions(&fixture),
            [
                Action::PauseTask {
                    task_id: "t-1".into()
                },
                Action::UpdateTask(UpdateAction {
                    task_id: "t-1".into(),
                    prompt: Some("new prompt".into()),
                    schedule: Some(Schedule::Cron(Recurrence {
                        cron: "*/5 * * * *".into(),
                        timezone: None
                    })),
                }),
            ]
        );
    }
}
