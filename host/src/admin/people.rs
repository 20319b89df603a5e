//! `crabpot users ...` (list, create with a DM chat), `crabpot roles ...` (list, grant,
//! revoke: owner globally, admin globally or per agent group) and `crabpot members ...`
//! (list, add, remove).

use super::api::{ListFilter, MemberChange, RoleChange, UserCreate};
use super::{Admin, AdminError, Reply, parse, to_value, unknown_verb};
use crate::db::central::people::{self, Role};
use protocol::AgentGroupId;
use serde_json::json;

pub(super) async fn handle(
    admin: &Admin,
    resource: &str,
    verb: &str,
    body: serde_json::Value,
) -> Reply {
    match (resource, verb) {
        ("users", "list") => to_value(&admin.db(|tx| people::list_users(tx)).await?),
        ("users", "create") => {
            let request: UserCreate = parse(body)?;
            let dm = match &request.dm {
                Some(dm) => Some(split_dm(dm)?),
                None => None,
            };
            to_value(
                &admin
                    .db(move |tx| {
                        people::create_user(
                            tx,
                            &request.id,
                            request.name.as_deref(),
                            dm.as_ref().map(|(c, p)| (c.as_str(), p.as_str())),
                        )
                    })
                    .await?,
            )
        }
        ("roles", "list") => to_value(&admin.db(|tx| people::list_roles(tx)).await?),
        ("roles", "grant" | "revoke") => {
            let request: RoleChange = parse(body)?;
            let role: Role = request.role.parse().map_err(AdminError::Invalid)?;
            let group = request.group.map(AgentGroupId::new);
            let grant = verb == "grant";
            admin
                .db(move |tx| {
                    if grant {
                        people::grant_role(tx, &request.user, role, group.as_ref())?;
                    } else {
                        people::revoke_role(tx, &request.user, role, group.as_ref())?;
                    }
                    Ok(())
                })
                .await?;
            Ok(json!({ "ok": true }))
        }
        ("members", "list") => {
            let filter: ListFilter = parse(body)?;
            let group = filter.group.map(AgentGroupId::new);
            to_value(
                &admin
                    .db(move |tx| {
                        if let Some(group) = &group {
                            crate::db::central::agent_group(tx, group)?;
                        }
                        people::list_members(tx, group.as_ref())
                    })
                    .await?,
            )
        }
        ("members", "add") => {
            let request: MemberChange = parse(body)?;
            let added = admin
                .db(move |tx| {
                    people::add_member(tx, &AgentGroupId::new(request.group), &request.user)
                })
                .await?;
            if !added {
                return Err(AdminError::Conflict("already a member".into()));
            }
            Ok(json!({ "ok": true }))
        }
        ("members", "remove") => {
            let request: MemberChange = parse(body)?;
            admin
                .db(move |tx| {
                    people::remove_member(tx, &AgentGroupId::new(request.group), &request.user)
                })
                .await?;
            Ok(json!({ "ok": true }))
        }
        _ => Err(unknown_verb(resource, verb)),
    }
}

/// `<channel_type>/<platform_id>`.
fn split_dm(dm: &str) -> Result<(String, String), AdminError> {
    match dm.split_once('/') {
        Some((channel, platform)) if !channel.is_empty() && !platform.is_empty() => {
            Ok((channel.to_owned(), platform.to_owned()))
        }
        _ => Err(AdminError::Invalid(format!(
            "DM {dm:?} must be <channel_type>/<platform_id>, e.g. cli/dm:alice"
        ))),
    }
}
