//! The `system` rows of `messages_out`: actions the agent asks the host to carry out, typed.
//!
//! Every action travels as [`OutboundContent::System`] — on the wire one JSON object,
//! `{"action": "<name>", ...arguments}` — in a row of kind `system`. [`Action`] is the typed
//! form: [`Action::to_content`] writes it, [`Action::from_content`] (or [`Action::parse`])
//! reads it back as hostile input, refusing unknown actions, unknown or missing fields and
//! values out of range with an [`ActionError`] that names the problem.
//!
//! | action | arguments | the host |
//! |---|---|---|
//! | `schedule_task` | `task_id`, `prompt`, `at` (unix ms) or `cron` (+ optional `timezone`) | writes a `task` row into `messages_in` |
//! | `update_task` | `task_id`, optional `prompt`, optional `at` or `cron` (+ `timezone`) | rewrites the series' pending/paused rows |
//! | `pause_task` / `resume_task` / `cancel_task` | `task_id` | sets the series' rows `paused` / `pending` / `cancelled` |
//! | `create_agent` | `name`, `instructions` | creates the agent group, its folder and both destinations, if policy (by default an admin's approval) allows |
//!
//! **Tasks.** A task is a series of `messages_in` rows of kind `task` sharing a `series_id`,
//! which is the `task_id` the runner chose (`t-` and hex digits, see [`is_valid_task_id`]).
//! The pending (or paused) row of a series is its next run: `process_after` is when (unix
//! ms), `recurrence` the cron schedule stored with [`Recurrence::to_column`] (empty for a
//! one-off task), `content` an [`crate::InboundContent`] whose `text` is the prompt, and
//! `trigger = 1`: when it comes due it starts a turn like a chat message. The runner lists
//! tasks itself from those rows ([`crate::schedule::ScheduledTask::from_row`]) and from its
//! own task actions the host has not handled yet (no `delivered` row): there is no
//! `list_tasks` action and no answer row to wait for. A successful action needs no reply; a
//! refused or failed one is reported to the agent as an inbound `system` row naming the
//! action and task id, and its `delivered` row is `failed` or `dropped`.
//!
//! **Agents.** After `create_agent` succeeds the host projects the new destination (the
//! creator reaches the child by `name`; the child reaches the creator as `parent`) and tells
//! the creator with an inbound `system` row; a refusal is reported the same way.
//!
//! **Not actions.** Questions (`OutboundContent::Question`) and progress lists are chat
//! rows; `/clear` is handled by the runner alone (see [`crate::content::CLEAR_COMMAND`]).

use crate::content::{MAX_TEXT_CHARS, OutboundContent};
use crate::schedule::{
    MAX_TASK_ID_BYTES, Recurrence, Schedule, is_valid_task_id, validate_cron, validate_timezone,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub const SCHEDULE_TASK: &str = "schedule_task";
pub const UPDATE_TASK: &str = "update_task";
pub const PAUSE_TASK: &str = "pause_task";
pub const RESUME_TASK: &str = "resume_task";
pub const CANCEL_TASK: &str = "cancel_task";
pub const CREATE_AGENT: &str = "create_agent";

/// Every action name, in the order of the table above.
pub const ALL_ACTIONS: &[&str] = &[
    SCHEDULE_TASK,
    UPDATE_TASK,
    PAUSE_TASK,
    RESUME_TASK,
    CANCEL_TASK,
    CREATE_AGENT,
];

/// Longest agent name, in bytes.
pub const MAX_AGENT_NAME_BYTES: usize = 48;
/// The destination name under which a created agent reaches its creator.
pub const PARENT_DESTINATION: &str = "parent";

/// Why a `system` row was refused. Never retryable: the row is bad as written.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ActionError {
    #[error("unknown system action {0:?}; known actions: {known}", known = ALL_ACTIONS.join(", "))]
    UnknownAction(String),
    #[error("the `system` row is not an action: {0}")]
    NotSystem(&'static str),
    #[error("{action}: {reason}")]
    BadArguments {
        action: &'static str,
        reason: String,
    },
    #[error("{action}: `{field}` {reason}")]
    Invalid {
        action: &'static str,
        field: &'static str,
        reason: String,
    },
}

/// `schedule_task`: run `prompt` as a `task` row on `schedule`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleTask {
    /// Chosen by the runner; becomes the rows' `series_id`.
    pub task_id: String,
    pub prompt: String,
    pub schedule: Schedule,
}

/// `update_task`: change the prompt, the schedule, or both, of an existing task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpdateTask {
    pub task_id: String,
    pub prompt: Option<String>,
    pub schedule: Option<Schedule>,
}

/// `create_agent`: a new agent group, a child of the creating one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateAgent {
    /// The child's destination name for the creator ([`is_valid_agent_name`]).
    pub name: String,
    /// The child's `AGENT.md`.
    pub instructions: String,
}

/// A typed `system` action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    ScheduleTask(ScheduleTask),
    UpdateTask(UpdateTask),
    PauseTask { task_id: String },
    ResumeTask { task_id: String },
    CancelTask { task_id: String },
    CreateAgent(CreateAgent),
}

/// The wire shape of the task actions' arguments (without `action`).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskArguments {
    task_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cron: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    timezone: Option<String>,
}

impl TaskArguments {
    fn with_schedule(mut self, schedule: &Schedule) -> Self {
        match schedule {
            Schedule::At(at) => self.at = Some(*at),
            Schedule::Cron(recurrence) => {
                self.cron = Some(recurrence.cron.clone());
                self.timezone = recurrence.timezone.clone();
            }
        }
        self
    }

    /// The schedule the arguments name, if any, checked.
    fn schedule(&self, action: &'static str) -> Result<Option<Schedule>, ActionError> {
        let invalid = |field, reason: &str| ActionError::Invalid {
            action,
            field,
            reason: reason.to_owned(),
        };
        match (self.at, &self.cron) {
            (Some(_), Some(_)) => Err(invalid("at", "and `cron` are exclusive: give one")),
            (Some(_), None) if self.timezone.is_some() => Err(invalid(
                "timezone",
                "applies to `cron` only (`at` is an absolute time)",
            )),
            (Some(at), None) if at <= 0 => Err(invalid("at", "must be a positive unix time in ms")),
            (Some(at), None) => Ok(Some(Schedule::At(at))),
            (None, Some(cron)) => {
                validate_cron(cron).map_err(|reason| invalid("cron", &reason))?;
                if let Some(timezone) = &self.timezone {
                    validate_timezone(timezone).map_err(|reason| invalid("timezone", &reason))?;
                }
                Ok(Some(Schedule::Cron(Recurrence {
                    cron: cron.trim().to_owned(),
                    timezone: self.timezone.clone(),
                })))
            }
            (None, None) if self.timezone.is_some() => {
                Err(invalid("timezone", "needs a `cron` schedule"))
            }
            (None, None) => Ok(None),
        }
    }
}

impl Action {
    /// The `action` name on the wire.
    pub fn name(&self) -> &'static str {
        match self {
            Action::ScheduleTask(_) => SCHEDULE_TASK,
            Action::UpdateTask(_) => UPDATE_TASK,
            Action::PauseTask { .. } => PAUSE_TASK,
            Action::ResumeTask { .. } => RESUME_TASK,
            Action::CancelTask { .. } => CANCEL_TASK,
            Action::CreateAgent(_) => CREATE_AGENT,
        }
    }

    /// The task the action is about, if it is a task action.
    pub fn task_id(&self) -> Option<&str> {
        match self {
            Action::ScheduleTask(ScheduleTask { task_id, .. })
            | Action::UpdateTask(UpdateTask { task_id, .. })
            | Action::PauseTask { task_id }
            | Action::ResumeTask { task_id }
            | Action::CancelTask { task_id } => Some(task_id),
            Action::CreateAgent(_) => None,
        }
    }

    /// The content of the `system` row that carries this action.
    pub fn to_content(&self) -> OutboundContent {
        let arguments = match self {
            Action::ScheduleTask(task) => serde_json::to_value(
                TaskArguments {
                    task_id: task.task_id.clone(),
                    prompt: Some(task.prompt.clone()),
                    ..TaskArguments::default()
                }
                .with_schedule(&task.schedule),
            ),
            Action::UpdateTask(update) => {
                let arguments = TaskArguments {
                    task_id: update.task_id.clone(),
                    prompt: update.prompt.clone(),
                    ..TaskArguments::default()
                };
                serde_json::to_value(match &update.schedule {
                    Some(schedule) => arguments.with_schedule(schedule),
                    None => arguments,
                })
            }
            Action::PauseTask { task_id }
            | Action::ResumeTask { task_id }
            | Action::CancelTask { task_id } => serde_json::to_value(TaskArguments {
                task_id: task_id.clone(),
                ..TaskArguments::default()
            }),
            Action::CreateAgent(create) => serde_json::to_value(create),
        };
        // These plain structs always serialise to an object (string keys only).
        let args = match arguments {
            Ok(Value::Object(map)) => map,
            Ok(_) | Err(_) => Map::new(),
        };
        OutboundContent::System {
            action: self.name().to_owned(),
            args,
        }
    }

    /// Reads an action back from a parsed outbound row's content.
    pub fn from_content(content: &OutboundContent) -> Result<Self, ActionError> {
        match content {
            OutboundContent::System { action, args } => Self::parse(action, args),
            OutboundContent::Message(_)
            | OutboundContent::Edit { .. }
            | OutboundContent::Reaction { .. }
            | OutboundContent::Question { .. }
            | OutboundContent::Progress { .. } => Err(ActionError::NotSystem(
                "the content is a chat operation, not a system action",
            )),
        }
    }

    /// Reads an action from its name and arguments, checking every field.
    pub fn parse(action: &str, args: &Map<String, Value>) -> Result<Self, ActionError> {
        let Some(name) = ALL_ACTIONS.iter().copied().find(|known| *known == action) else {
            return Err(ActionError::UnknownAction(truncate(action, 64)));
        };
        let value = Value::Object(args.clone());
        let bad = |error: serde_json::Error| ActionError::BadArguments {
            action: name,
            reason: error.to_string(),
        };
        if name == CREATE_AGENT {
            let create: CreateAgent = serde_json::from_value(value).map_err(bad)?;
            check_agent_name(name, &create.name)?;
            check_text(name, "instructions", &create.instructions)?;
            return Ok(Action::CreateAgent(create));
        }
        let arguments: TaskArguments = serde_json::from_value(value).map_err(bad)?;
        check_task_id(name, &arguments.task_id)?;
        if let Some(prompt) = &arguments.prompt {
            check_text(name, "prompt", prompt)?;
        }
        let schedule = arguments.schedule(name)?;
        let invalid = |field, reason: &str| ActionError::Invalid {
            action: name,
            field,
            reason: reason.to_owned(),
        };
        let task_id = arguments.task_id.clone();
        let only_id = || -> Result<String, ActionError> {
            if arguments.prompt.is_some() || schedule.is_some() {
                return Err(invalid(
                    "task_id",
                    "is the only argument of this action; use update_task to change a task",
                ));
            }
            Ok(task_id.clone())
        };
        Ok(match name {
            SCHEDULE_TASK => {
                let prompt = arguments
                    .prompt
                    .clone()
                    .ok_or_else(|| invalid("prompt", "is missing"))?;
                let schedule =
                    schedule.ok_or_else(|| invalid("at", "or `cron` is required: give one"))?;
                Action::ScheduleTask(ScheduleTask {
                    task_id,
                    prompt,
                    schedule,
                })
            }
            UPDATE_TASK => {
                if arguments.prompt.is_none() && schedule.is_none() {
                    return Err(invalid(
                        "prompt",
                        "or a new schedule (`at` or `cron`) is required: nothing to update",
                    ));
                }
                Action::UpdateTask(UpdateTask {
                    task_id,
                    prompt: arguments.prompt.clone(),
                    schedule,
                })
            }
            PAUSE_TASK => Action::PauseTask {
                task_id: only_id()?,
            },
            RESUME_TASK => Action::ResumeTask {
                task_id: only_id()?,
            },
            CANCEL_TASK => Action::CancelTask {
                task_id: only_id()?,
            },
            // `name` came from ALL_ACTIONS and CREATE_AGENT returned above.
            _ => return Err(ActionError::UnknownAction(name.to_owned())),
        })
    }
}

/// True for an agent name: 1 to [`MAX_AGENT_NAME_BYTES`] lowercase ASCII letters, digits
/// and `-`, starting with a letter, not ending with `-`, and not [`PARENT_DESTINATION`].
pub fn is_valid_agent_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_AGENT_NAME_BYTES
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name != PARENT_DESTINATION
}

fn check_task_id(action: &'static str, task_id: &str) -> Result<(), ActionError> {
    if is_valid_task_id(task_id) {
        Ok(())
    } else {
        Err(ActionError::Invalid {
            action,
            field: "task_id",
            reason: format!(
                "{:?} is not a plain id (letters, digits, `-`, `_`, `.`; at most {MAX_TASK_ID_BYTES} bytes)",
                truncate(task_id, 80)
            ),
        })
    }
}

fn check_agent_name(action: &'static str, name: &str) -> Result<(), ActionError> {
    if is_valid_agent_name(name) {
        Ok(())
    } else {
        Err(ActionError::Invalid {
            action,
            field: "name",
            reason: format!(
                "{:?} is not an agent name (lowercase letters, digits and `-`, starting with a letter, at most {MAX_AGENT_NAME_BYTES} bytes, not `{PARENT_DESTINATION}`)",
                truncate(name, 80)
            ),
        })
    }
}

fn check_text(action: &'static str, field: &'static str, text: &str) -> Result<(), ActionError> {
    let invalid = |reason: String| ActionError::Invalid {
        action,
        field,
        reason,
    };
    if text.trim().is_empty() {
        return Err(invalid("is empty".into()));
    }
    let chars = text.chars().count();
    if chars > MAX_TEXT_CHARS {
        return Err(invalid(format!(
            "is {chars} characters, over the cap of {MAX_TEXT_CHARS}"
        )));
    }
    Ok(())
}

/// At most `max` characters of `text`, for quoting hostile values in errors.
fn truncate(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rows::OutboundKind;
    use proptest::prelude::*;

    /// Parses `json` as a `system` row's content and then as an action.
    fn parse_json(json: &str) -> Result<Action, String> {
        let content =
            OutboundContent::parse(OutboundKind::System, json).map_err(|e| e.to_string())?;
        Action::from_content(&content).map_err(|e| e.to_string())
    }

    fn check(json: &str, expected: Result<Action, &str>) {
        match (parse_json(json), expected) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "{json}"),
            (Err(got), Err(fragment)) => {
                assert!(got.contains(fragment), "{json}: {got:?} lacks {fragment:?}")
            }
            (got, want) => panic!("{json}: got {got:?}, want {want:?}"),
        }
    }

    fn cron(cron: &str, timezone: Option<&str>) -> Schedule {
        Schedule::Cron(Recurrence {
            cron: cron.into(),
            timezone: timezone.map(str::to_owned),
        })
    }

    #[test]
    fn parse_table() {
        check(
            r#"{"action":"schedule_task","task_id":"t-1","prompt":"water","at":1700000000000}"#,
            Ok(Action::ScheduleTask(ScheduleTask {
                task_id: "t-1".into(),
                prompt: "water".into(),
                schedule: Schedule::At(1_700_000_000_000),
            })),
        );
        check(
            r#"{"action":"schedule_task","task_id":"t-1","prompt":"p","cron":"0 9 * * mon-fri","timezone":"Europe/Paris"}"#,
            Ok(Action::ScheduleTask(ScheduleTask {
                task_id: "t-1".into(),
                prompt: "p".into(),
                schedule: cron("0 9 * * mon-fri", Some("Europe/Paris")),
            })),
        );
        check(
            r#"{"action":"schedule_task","task_id":"t-1","prompt":"p"}"#,
            Err("`at` or `cron` is required"),
        );
        check(
            r#"{"action":"schedule_task","task_id":"t-1","prompt":"p","at":5,"cron":"* * * * *"}"#,
            Err("exclusive"),
        );
        check(
            r#"{"action":"schedule_task","task_id":"t-1","prompt":"p","at":5,"timezone":"UTC"}"#,
            Err("applies to `cron` only"),
        );
        check(
            r#"{"action":"schedule_task","task_id":"t-1","prompt":"p","at":-5}"#,
            Err("positive unix time"),
        );
        check(
            r#"{"action":"schedule_task","task_id":"t-1","prompt":"p","cron":"61 * * * *"}"#,
            Err("minute 61 is outside 0-59"),
        );
        check(
            r#"{"action":"schedule_task","task_id":"t-1","prompt":"p","cron":"* * * * *","timezone":"../etc"}"#,
            Err("not a timezone name"),
        );
        check(
            r#"{"action":"schedule_task","task_id":"../x","prompt":"p","at":5}"#,
            Err("`task_id` \"../x\" is not a plain id"),
        );
        check(
            r#"{"action":"schedule_task","task_id":"t-1","prompt":"  ","at":5}"#,
            Err("`prompt` is empty"),
        );
        check(
            r#"{"action":"schedule_task","task_id":"t-1","prompt":"p","at":5,"extra":1}"#,
            Err("unknown field `extra`"),
        );
        check(
            r#"{"action":"schedule_task","task_id":1,"prompt":"p","at":5}"#,
            Err("invalid type"),
        );
        check(
            r#"{"action":"update_task","task_id":"t-1","prompt":"new"}"#,
            Ok(Action::UpdateTask(UpdateTask {
                task_id: "t-1".into(),
                prompt: Some("new".into()),
                schedule: None,
            })),
        );
        check(
            r#"{"action":"update_task","task_id":"t-1","cron":"@daily"}"#,
            Ok(Action::UpdateTask(UpdateTask {
                task_id: "t-1".into(),
                prompt: None,
                schedule: Some(cron("@daily", None)),
            })),
        );
        check(
            r#"{"action":"update_task","task_id":"t-1"}"#,
            Err("nothing to update"),
        );
        check(
            r#"{"action":"pause_task","task_id":"t-1"}"#,
            Ok(Action::PauseTask {
                task_id: "t-1".into(),
            }),
        );
        check(
            r#"{"action":"cancel_task","task_id":"t-1","prompt":"x"}"#,
            Err("is the only argument"),
        );
        check(
            r#"{"action":"resume_task"}"#,
            Err("missing field `task_id`"),
        );
        check(
            r#"{"action":"create_agent","name":"researcher","instructions":"Find things."}"#,
            Ok(Action::CreateAgent(CreateAgent {
                name: "researcher".into(),
                instructions: "Find things.".into(),
            })),
        );
        check(
            r#"{"action":"create_agent","name":"parent","instructions":"x"}"#,
            Err("is not an agent name"),
        );
        check(
            r#"{"action":"create_agent","name":"Bad Name","instructions":"x"}"#,
            Err("is not an agent name"),
        );
        check(
            r#"{"action":"create_agent","name":"ok","instructions":""}"#,
            Err("`instructions` is empty"),
        );
        check(
            r#"{"action":"launch_rockets"}"#,
            Err("unknown system action \"launch_rockets\"; known actions: schedule_task"),
        );
        check(r#"{"action":"list_tasks"}"#, Err("unknown system action"));
    }

    #[test]
    fn chat_content_is_not_an_action() {
        let content = OutboundContent::Message(crate::MessageContent {
            text: "hi".into(),
            files: vec![],
        });
        assert!(matches!(
            Action::from_content(&content),
            Err(ActionError::NotSystem(_))
        ));
    }

    #[test]
    fn agent_names() {
        for (name, ok) in [
            ("researcher", true),
            ("web-2", true),
            ("a", true),
            ("", false),
            ("2fast", false),
            ("trailing-", false),
            ("UPPER", false),
            ("dot.name", false),
            ("parent", false),
        ] {
            assert_eq!(is_valid_agent_name(name), ok, "{name:?}");
        }
        assert!(!is_valid_agent_name(&"a".repeat(MAX_AGENT_NAME_BYTES + 1)));
    }

    fn arb_schedule() -> impl Strategy<Value = Schedule> {
        prop_oneof![
            (1i64..i64::MAX).prop_map(Schedule::At),
            (
                prop_oneof![
                    Just("* * * * *"),
                    Just("*/5 1-3 * jan mon"),
                    Just("@hourly")
                ],
                proptest::option::of(prop_oneof![Just("UTC"), Just("Asia/Tokyo")]),
            )
                .prop_map(|(c, z)| cron(c, z)),
        ]
    }

    fn arb_action() -> impl Strategy<Value = Action> {
        let id = "t-[0-9a-f]{1,12}";
        let text = "[a-zA-Z0-9 \"\\\\\n\u{e9}]{0,20}[a-z]";
        prop_oneof![
            (id, text, arb_schedule()).prop_map(|(task_id, prompt, schedule)| {
                Action::ScheduleTask(ScheduleTask {
                    task_id,
                    prompt,
                    schedule,
                })
            }),
            (
                id,
                proptest::option::of(text),
                proptest::option::of(arb_schedule())
            )
                .prop_filter("something to update", |(_, p, s)| p.is_some()
                    || s.is_some())
                .prop_map(|(task_id, prompt, schedule)| {
                    Action::UpdateTask(UpdateTask {
                        task_id,
                        prompt,
                        schedule,
                    })
                }),
            id.prop_map(|task_id| Action::PauseTask { task_id }),
            id.prop_map(|task_id| Action::ResumeTask { task_id }),
            id.prop_map(|task_id| Action::CancelTask { task_id }),
            ("[a-z][a-z0-9-]{0,10}[a-z]", text)
                .prop_filter("not parent", |(name, _)| name != PARENT_DESTINATION)
                .prop_map(|(name, instructions)| Action::CreateAgent(CreateAgent {
                    name,
                    instructions
                })),
        ]
    }

    proptest! {
        /// Every action survives the trip through a `system` row's JSON.
        #[test]
        fn round_trip(action in arb_action()) {
            let json = action.to_content().to_json();
            prop_assert_eq!(parse_json(&json), Ok(action));
        }

        /// Arbitrary arguments never panic the parser.
        #[test]
        fn parse_never_panics(name in prop_oneof![Just("schedule_task".to_owned()), Just("create_agent".to_owned()), ".{0,12}"], json in ".{0,120}") {
            if let Ok(Value::Object(args)) = serde_json::from_str::<Value>(&json) {
                let _ = Action::parse(&name, &args);
            }
            let _ = validate_cron(&json);
            let _ = validate_timezone(&json);
        }
    }
}
