//! Deciding approvals: who may ([`Decider`]), what a decision does ([`Decision`]), and the
//! chat command an approver types in their DM ([`parse_command`]).
//!
//! Decisions come only from the admin API (the operator, who may decide anything, or on
//! behalf of a named user, who is checked) or from a platform identity the router resolved
//! from a direct message. A decision by anyone outside the approval's approver set (an
//! owner, the top role, may decide any approval), on an approval already decided, or past its
//! expiry is refused and logged in `approval_log`.
//! Approving a sender makes them a member of the agent group; approving a channel wires it
//! to the chosen agent group; in both cases the held messages are then replayed. Approving a
//! `create_agent` request creates the child agent ([`crate::agents::create_child`]). Denying
//! drops the held messages (recorded).

use crate::db::DbError;
use crate::db::central::approvals::{self as approval_db, ApprovalKind, ApprovalStatus};
use crate::db::central::{self, Approval, DropRecord, people, wirings::WiringSettings};
use protocol::AgentGroupId;
use protocol::time::now_ms;
use rusqlite::Connection;
use serde::{Deserialize, Serialize};

/// Who is deciding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "user", rename_all = "lowercase")]
pub enum Decider {
    /// Whoever holds the admin socket: may decide any approval.
    Operator,
    /// A user (a platform identity); must be one of the approval's approvers, or an owner.
    User(String),
}

impl Decider {
    fn name(&self) -> &str {
        match self {
            Decider::Operator => "operator",
            Decider::User(user) => user,
        }
    }
}

/// The decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "lowercase")]
pub enum Decision {
    /// For a channel approval, `agent_group` names the group to wire the chat to.
    Approve {
        agent_group: Option<AgentGroupId>,
    },
    Deny {
        reason: Option<String>,
    },
}

/// Why a decision was not taken.
#[derive(Debug, thiserror::Error)]
pub enum DecideError {
    /// No such approval. Not retryable.
    #[error("approval {0:?} not found")]
    NotFound(String),
    /// The decider may not decide, or the approval is closed. Not retryable.
    #[error("{0}")]
    Refused(String),
    /// The decision is incomplete (e.g. no agent group for a channel). Not retryable as is.
    #[error("{0}")]
    Invalid(String),
    /// The database failed. Retryable when it was busy.
    #[error(transparent)]
    Db(#[from] DbError),
}

/// What a taken decision leaves for the router to do.
#[derive(Clone, Debug)]
pub struct Decided {
    /// The approval as it was before the decision (with its held messages).
    pub approval: Approval,
    pub status: ApprovalStatus,
    /// The agent group whose destinations changed (a channel was wired), to project again.
    pub rewired_group: Option<AgentGroupId>,
    /// The agent an approved `create_agent` request created.
    pub created_agent: Option<crate::agents::CreatedAgent>,
}

/// A chat command deciding an approval: `approve <id> [agent group]` or `deny <id> [reason]`,
/// optionally with a leading `/`.
pub fn parse_command(text: &str) -> Option<(String, Decision)> {
    let text = text.trim();
    let text = text.strip_prefix('/').unwrap_or(text);
    let (verb, rest) = text.split_once(char::is_whitespace)?;
    let rest = rest.trim();
    let (id, tail) = match rest.split_once(char::is_whitespace) {
        Some((id, tail)) => (id, Some(tail.trim()).filter(|t| !t.is_empty())),
        None => (rest, None),
    };
    let looks_like_id =
        id.len() == 13 && id.starts_with("ap-") && id[3..].bytes().all(|b| b.is_ascii_hexdigit());
    if !looks_like_id {
        return None;
    }
    let decision = match verb.to_ascii_lowercase().as_str() {
        "approve" => Decision::Approve {
            agent_group: tail.map(AgentGroupId::new),
        },
        "deny" => Decision::Deny {
            reason: tail.map(str::to_owned),
        },
        _ => return None,
    };
    Some((id.to_owned(), decision))
}

/// Checks and records a decision in one transaction. A refusal is logged and committed too.
pub fn decide(
    conn: &mut Connection,
    id: &str,
    decider: &Decider,
    decision: &Decision,
    groups_dir: &std::path::Path,
) -> Result<Decided, DecideError> {
    let tx = conn.transaction().map_err(DbError::from)?;
    approval_db::expire_due(&tx, now_ms())?;
    let approval = match approval_db::approval(&tx, id) {
        Ok(approval) => approval,
        Err(DbError::NotFound { .. }) => return Err(DecideError::NotFound(id.to_owned())),
        Err(e) => return Err(e.into()),
    };
    let action = match decision {
        Decision::Approve { .. } => "approve",
        Decision::Deny { .. } => "deny",
    };
    let refuse = |tx: rusqlite::Transaction<'_>, why: String| -> Result<Decided, DecideError> {
        approval_db::log(&tx, id, decider.name(), action, &format!("refused: {why}"))?;
        tx.commit().map_err(DbError::from)?;
        tracing::warn!(approval = %id, decider = %decider.name(), %why, "approval decision refused");
        Err(DecideError::Refused(why))
    };
    if approval.status != ApprovalStatus::Pending {
        let why = format!("approval {id} is already {}", approval.status);
        return refuse(tx, why);
    }
    if let Decider::User(user) = decider
        && !approval.approvers.contains(user)
        && !people::is_owner(&tx, user)?
    {
        let who = if approval.approvers.is_empty() {
            "only the operator (crabpot approvals)".to_owned()
        } else {
            approval.approvers.join(", ")
        };
        let why = format!("{user} may not decide approval {id}; it is for {who}");
        return refuse(tx, why);
    }
    let mut created_agent = None;
    let (status, rewired_group) = match (approval.kind, decision) {
        (ApprovalKind::Sender, Decision::Approve { .. }) => {
            let group = approval.agent_group_id.clone().ok_or_else(|| {
                DecideError::Invalid(format!("approval {id} names no agent group"))
            })?;
            people::add_member(&tx, &group, &approval.requester)?;
            (ApprovalStatus::Approved, None)
        }
        (ApprovalKind::CreateAgent, Decision::Approve { .. }) => {
            let creator = approval.agent_group_id.clone().ok_or_else(|| {
                DecideError::Invalid(format!("approval {id} names no agent group"))
            })?;
            let request = crate::agents::request_of(&approval).ok_or_else(|| {
                DecideError::Invalid(format!("approval {id} does not say what to create"))
            })?;
            match crate::agents::create_child(&tx, groups_dir, &creator, &request)? {
                Ok(created) => created_agent = Some(created),
                Err(reason) => {
                    return Err(DecideError::Invalid(format!(
                        "agent {:?} cannot be created: {reason} (deny the approval instead)",
                        request.name
                    )));
                }
            }
            (ApprovalStatus::Approved, Some(creator))
        }
        (ApprovalKind::Channel, Decision::Approve { agent_group }) => {
            let Some(group) = agent_group else {
                return Err(DecideError::Invalid(format!(
                    "approval {id} wires a chat: name the agent group to wire it to"
                )));
            };
            let chat_id = approval
                .messaging_group_id
                .clone()
                .ok_or_else(|| DecideError::Invalid(format!("approval {id} names no chat")))?;
            let chat = central::messaging_group(&tx, &chat_id)?;
            match central::wirings::create_wiring(
                &tx,
                &chat,
                group,
                &WiringSettings::default(),
                None,
            ) {
                Ok(_) => {}
                Err(DbError::NotFound { what, id }) => {
                    return Err(DecideError::Invalid(format!("{what} {id:?} not found")));
                }
                Err(e) => return Err(e.into()),
            }
            (ApprovalStatus::Approved, Some(group.clone()))
        }
        (
            ApprovalKind::Sender | ApprovalKind::Channel | ApprovalKind::CreateAgent,
            Decision::Deny { .. },
        ) => {
            for held in &approval.held {
                crate::metrics::global().router_denied();
                let field = |name: &str| held.get(name).and_then(|v| v.as_str()).map(str::to_owned);
                central::record_drop(
                    &tx,
                    &DropRecord {
                        reason: "denied by an approver".into(),
                        channel_type: field("channel_type"),
                        platform_id: field("platform_id"),
                        sender: held
                            .get("sender")
                            .and_then(|s| s.get("id"))
                            .and_then(|v| v.as_str())
                            .map(str::to_owned),
                        agent_group_id: approval.agent_group_id.clone(),
                        message_id: field("platform_message_id"),
                        ..Default::default()
                    },
                )?;
            }
            (ApprovalStatus::Denied, None)
        }
    };
    let reason = match decision {
        Decision::Deny { reason } => reason.as_deref(),
        Decision::Approve { .. } => None,
    };
    approval_db::set_decided(&tx, id, status, decider.name(), reason)?;
    approval_db::log(
        &tx,
        id,
        decider.name(),
        action,
        &format!("accepted: {status}"),
    )?;
    tx.commit().map_err(DbError::from)?;
    tracing::info!(approval = %id, decider = %decider.name(), %status, "approval decided");
    Ok(Decided {
        approval,
        status,
        rewired_group,
        created_agent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        let approve = |group: Option<&str>| Decision::Approve {
            agent_group: group.map(AgentGroupId::new),
        };
        for (text, want) in [
            (
                "approve ap-0123456789",
                Some(("ap-0123456789", approve(None))),
            ),
            (
                "/approve ap-0123456789 main",
                Some(("ap-0123456789", approve(Some("main")))),
            ),
            (
                "  Approve ap-abcdefabcd  ",
                Some(("ap-abcdefabcd", approve(None))),
            ),
            (
                "deny ap-0123456789 spam, go away",
                Some((
                    "ap-0123456789",
                    Decision::Deny {
                        reason: Some("spam, go away".into()),
                    },
                )),
            ),
            (
                "deny ap-0123456789",
                Some(("ap-0123456789", Decision::Deny { reason: None })),
            ),
            ("approve", None),
            ("approve everything", None),
            ("approve ap-xyz", None),
            ("please approve ap-0123456789", None),
            ("approved ap-0123456789", None),
        ] {
            let got = parse_command(text);
            let want = want.map(|(id, d)| (id.to_owned(), d));
            assert_eq!(got, want, "{text:?}");
        }
    }
}
