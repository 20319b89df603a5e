//! The agent's `system` rows (`protocol::actions`): read back as hostile input with
//! `Action::from_content`, then carried out — task actions through [`crate::tasks::Tasks`],
//! `create_agent` through the router's policy and approvals. A success needs no answer (the
//! row is recorded `delivered`); a refusal is recorded `dropped` and the agent is told with a
//! `system` row naming the action and the task or agent. A `create_agent` waiting for an
//! approval leaves the agent a context-only note (it does not wake it); the outcome of the
//! decision wakes it later.

use super::refusal::Refusal;
use super::{Delivery, RowOutcome};
use crate::agents::RequestOutcome;
use crate::session::SessionRef;
use crate::tasks::{TaskChange, TaskError};
use protocol::actions::{Action, CreateAgent};
use protocol::rows::DeliveryStatus;
use protocol::{OutboundContent, OutboundRow};

/// The task change an action asks for; `Err` hands back a `create_agent`.
pub fn task_change(action: Action) -> Result<TaskChange, CreateAgent> {
    match action {
        Action::ScheduleTask(task) => Ok(TaskChange::Schedule(task)),
        Action::UpdateTask(update) => Ok(TaskChange::Update(update)),
        Action::PauseTask { task_id } => Ok(TaskChange::Pause(task_id)),
        Action::ResumeTask { task_id } => Ok(TaskChange::Resume(task_id)),
        Action::CancelTask { task_id } => Ok(TaskChange::Cancel(task_id)),
        Action::CreateAgent(create) => Err(create),
    }
}

impl Delivery {
    /// Carries out one `system` row.
    pub(super) async fn run_action(
        &self,
        session: &SessionRef,
        row: &OutboundRow,
        content: &OutboundContent,
    ) -> RowOutcome {
        let action = match Action::from_content(content) {
            Ok(action) => action,
            Err(e) => return RowOutcome::refused(Refusal::Action(e.to_string())),
        };
        let name = action.name();
        let change = match task_change(action) {
            Ok(change) => change,
            Err(create) => return self.create_agent(session, row, &create).await,
        };
        let task_id = change.task_id().to_owned();
        match self.tasks.change(session, change).await {
            Ok(applied) => {
                tracing::info!(session_id = %session.id, action = name, %task_id, next_run_at = ?applied.next_run_at, "task action carried out");
                self.mark_delivered(session, row).await;
                RowOutcome::Delivered
            }
            Err(TaskError::Db(e)) if e.is_retryable() => RowOutcome::busy(),
            Err(e) => RowOutcome::refused(Refusal::Action(format!(
                "{name} {task_id} was refused: {e}"
            ))),
        }
    }

    async fn create_agent(
        &self,
        session: &SessionRef,
        row: &OutboundRow,
        create: &CreateAgent,
    ) -> RowOutcome {
        let name = &create.name;
        match self.router.request_agent(session, create).await {
            Ok(RequestOutcome::Created(created)) => {
                self.mark_delivered(session, row).await;
                let text = crate::router::created_text(&created.name, None);
                self.router.tell(session, text, true).await;
                RowOutcome::Delivered
            }
            Ok(RequestOutcome::Pending { approval, .. }) => {
                self.mark_delivered(session, row).await;
                let text = format!(
                    "create_agent {name:?} awaits approval {} by an admin; you will be told the decision",
                    approval.id
                );
                self.router.tell(session, text, false).await;
                RowOutcome::Delivered
            }
            Ok(RequestOutcome::Refused(reason)) => RowOutcome::refused(Refusal::Action(format!(
                "create_agent {name:?} was refused: {reason}"
            ))),
            Err(e) if e.is_retryable() => RowOutcome::busy(),
            Err(e) => RowOutcome::refused(Refusal::Action(format!(
                "create_agent {name:?} failed: {e}"
            ))),
        }
    }

    /// Records a row as handled for good (`delivered`, no platform id).
    pub(super) async fn mark_delivered(&self, session: &SessionRef, row: &OutboundRow) {
        let (id, seq) = (row.id.clone(), row.seq);
        let recorded = self
            .sessions
            .with_inbound(session, move |tx, _| {
                Ok(protocol::inbound::record_delivery(
                    tx,
                    &id,
                    seq,
                    DeliveryStatus::Delivered,
                    None,
                    None,
                )?)
            })
            .await;
        if let Err(e) = recorded {
            tracing::warn!(session_id = %session.id, error = %e, "recording a handled row failed");
        }
        self.supervisor.touch(&session.id);
    }
}
