//! The router's side of agents that create agents: [`Router::request_agent`] runs an agent's
//! `create_agent` through its group's policy (asking the approvers of a new approval, or
//! projecting the destinations of an agent created at once), and after a decision on a
//! `create_agent` approval the creator is told what became of it. [`Router::tell`] writes
//! the host's `system` rows into a session.

use super::Router;
use super::approvals::Decided;
use crate::agents::{self, CreatedAgent, RequestOutcome};
use crate::db::DbError;
use crate::db::central::{self, ApprovalStatus};
use crate::session::SessionRef;
use protocol::actions::CreateAgent;
use protocol::{InboundContent, InboundKind, NewInboundRow, SessionId};

impl Router {
    /// Handles an agent's `create_agent` under its group's policy.
    pub async fn request_agent(
        &self,
        creator: &SessionRef,
        create: &CreateAgent,
    ) -> Result<RequestOutcome, DbError> {
        let (session_id, group) = (creator.id.clone(), creator.agent_group.clone());
        let (create, groups_dir) = (create.clone(), self.groups_dir.clone());
        let ttl = self.settings.approval_ttl_ms;
        let (outcome, requests) = self
            .central
            .call(move |conn| {
                let outcome =
                    agents::request(conn, &session_id, &group, &create, &groups_dir, ttl)?;
                let requests = match &outcome {
                    RequestOutcome::Pending {
                        approval,
                        new: true,
                    } => {
                        let platform = agents::creator_platform(conn, &session_id)?;
                        super::plan::approval_requests(conn, approval, &platform)?
                    }
                    RequestOutcome::Pending { new: false, .. }
                    | RequestOutcome::Created(_)
                    | RequestOutcome::Refused(_) => Vec::new(),
                };
                Ok((outcome, requests))
            })
            .await?;
        for request in requests {
            let _ = self.host_messages.send(request);
        }
        if let RequestOutcome::Created(created) = &outcome {
            self.project_created(created).await;
        }
        Ok(outcome)
    }

    async fn project_created(&self, created: &CreatedAgent) {
        self.supervisor.reproject_group(&created.creator).await;
        self.supervisor.reproject_group(&created.child).await;
    }

    /// After a decision on a `create_agent` approval: the agent exists (destinations are
    /// projected) or was denied, and the creator is told either way.
    pub(super) async fn after_agent_decision(&self, decided: &Decided, reason: Option<String>) {
        let Some(request) = agents::request_of(&decided.approval) else {
            return;
        };
        let id = &decided.approval.id;
        let text = match (&decided.created_agent, decided.status) {
            (Some(created), _) => {
                self.project_created(created).await;
                created_text(&created.name, Some(id))
            }
            (None, ApprovalStatus::Denied) => format!(
                "create_agent {:?} was denied (approval {id}){}",
                request.name,
                reason.map(|r| format!(": {r}")).unwrap_or_default()
            ),
            (
                None,
                ApprovalStatus::Approved | ApprovalStatus::Pending | ApprovalStatus::Expired,
            ) => {
                return;
            }
        };
        match self.session_ref(&request.session_id).await {
            Ok(session) => self.tell(&session, text, true).await,
            Err(e) => tracing::warn!(error = %e, "the agent that asked for an agent is gone"),
        }
    }

    /// A session and its group folder, from the central DB.
    pub async fn session_ref(&self, id: &SessionId) -> Result<SessionRef, DbError> {
        let id = id.clone();
        self.central
            .call(move |conn| {
                let stored = central::session(conn, &id)?;
                let group = central::agent_group(conn, &stored.agent_group_id)?;
                Ok(SessionRef {
                    id: stored.id,
                    agent_group: group.id,
                    group_folder: group.folder,
                })
            })
            .await
    }

    /// Writes a `system` row from the host into a session; `trigger` wakes the agent, else it
    /// rides along with the next turn.
    pub async fn tell(&self, session: &SessionRef, text: String, trigger: bool) {
        let mut row = NewInboundRow::chat(&InboundContent {
            text,
            ..InboundContent::default()
        });
        row.kind = InboundKind::System;
        row.trigger = trigger;
        let written = self
            .sessions
            .with_inbound(session, move |tx, _| {
                Ok(protocol::inbound::insert(tx, &row, None)?)
            })
            .await;
        match written {
            Ok(_) if trigger => self.supervisor.wake(session),
            Ok(_) => {}
            Err(e) => tracing::warn!(session_id = %session.id, error = %e, "cannot tell the agent"),
        }
    }
}

/// What the creator is told once its child exists.
pub fn created_text(name: &str, approval: Option<&str>) -> String {
    let approved = approval
        .map(|id| format!(" (approval {id} was granted)"))
        .unwrap_or_default();
    format!(
        "agent {name:?} now exists{approved}: send_message(to: {name:?}) reaches it, and it reaches you as `parent`."
    )
}
