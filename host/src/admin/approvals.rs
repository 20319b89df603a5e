//! `crabpot approvals ...`: list (open ones, or `--all`), show (with its decision log),
//! approve (`--group` for a chat registration), deny (`--reason`). The operator may decide
//! any approval; `--as <user>` decides on a user's behalf and is checked against the
//! approvers like a decision typed in a DM.

use super::api::{ApprovalDecide, Id, ListFilter};
use super::{Admin, AdminError, Reply, parse, to_value, unknown_verb};
use crate::db::central::approvals;
use crate::router::approvals::{Decider, Decision};
use protocol::AgentGroupId;
use protocol::time::now_ms;
use serde_json::json;

pub(super) async fn handle(admin: &Admin, verb: &str, body: serde_json::Value) -> Reply {
    match verb {
        "list" => {
            let filter: ListFilter = parse(body)?;
            to_value(
                &admin
                    .db(move |tx| {
                        approvals::expire_due(tx, now_ms())?;
                        approvals::list_approvals(tx, filter.all)
                    })
                    .await?,
            )
        }
        "show" => {
            let request: Id = parse(body)?;
            admin
                .db(move |tx| {
                    approvals::expire_due(tx, now_ms())?;
                    let approval = approvals::approval(tx, &request.id)?;
                    let log = approvals::log_entries(tx, &request.id)?;
                    Ok(json!({ "approval": approval, "log": log }))
                })
                .await
        }
        "approve" | "deny" => {
            let request: ApprovalDecide = parse(body)?;
            let decider = match request.as_user {
                Some(user) => Decider::User(user),
                None => Decider::Operator,
            };
            let decision = if verb == "approve" {
                if request.reason.is_some() {
                    return Err(AdminError::Invalid("--reason only applies to deny".into()));
                }
                Decision::Approve {
                    agent_group: request.group.map(AgentGroupId::new),
                }
            } else {
                if request.group.is_some() {
                    return Err(AdminError::Invalid(
                        "--group only applies to approve".into(),
                    ));
                }
                Decision::Deny {
                    reason: request.reason,
                }
            };
            let decided = admin.router.decide(&request.id, decider, decision).await?;
            Ok(json!({
                "approval": request.id,
                "status": decided.status,
                "replayed": if verb == "approve" { decided.approval.held.len() } else { 0 },
            }))
        }
        _ => Err(unknown_verb("approvals", verb)),
    }
}
