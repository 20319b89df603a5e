//! `crabpot tasks ...`: list (scheduled tasks of every session, or of one `--group`; `--all`
//! includes finished ones), pause, resume, cancel, run-now (one extra run now; a one-off task
//! is moved to now). Each change goes through `crate::tasks`, exactly as the agent's own
//! task actions do; the agent sees it in its `list_tasks`.

use super::api::{Id, ListFilter};
use super::{Admin, AdminError, Reply, parse, to_value, unknown_verb};
use crate::tasks::{TaskChange, TaskError};
use protocol::AgentGroupId;
use serde_json::json;

impl From<TaskError> for AdminError {
    fn from(error: TaskError) -> Self {
        match error {
            TaskError::NotFound(_) => AdminError::NotFound(error.to_string()),
            TaskError::Exists(_) => AdminError::Conflict(error.to_string()),
            TaskError::Schedule(_) => AdminError::Invalid(error.to_string()),
            TaskError::Ambiguous(_) => AdminError::Conflict(error.to_string()),
            TaskError::Db(e) => e.into(),
        }
    }
}

pub(super) async fn handle(admin: &Admin, verb: &str, body: serde_json::Value) -> Reply {
    let change: fn(String) -> TaskChange = match verb {
        "list" => {
            let filter: ListFilter = parse(body)?;
            let tasks = admin
                .tasks
                .list(filter.group.map(AgentGroupId::new), filter.all)
                .await?;
            return to_value(&tasks);
        }
        "pause" => TaskChange::Pause,
        "resume" => TaskChange::Resume,
        "cancel" => TaskChange::Cancel,
        "run-now" => TaskChange::RunNow,
        _ => return Err(unknown_verb("tasks", verb)),
    };
    let request: Id = parse(body)?;
    let session = admin.tasks.find(&request.id).await?;
    let applied = admin
        .tasks
        .change(&session, change(request.id.clone()))
        .await?;
    Ok(json!({
        "task": request.id,
        "session": session.id,
        "group": session.agent_group,
        "next_run_at": applied.next_run_at,
        "due_now": applied.due_now,
    }))
}
