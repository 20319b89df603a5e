//! `crabpot destinations ...`: list, add (a chat, a thread of it, or another agent group),
//! remove. Every change is projected at once into the group's sessions' `inbound.db`.

use super::api::{DestinationAdd, DestinationRemove, ListFilter};
use super::{Admin, AdminError, Reply, parse, to_value, unknown_verb};
use crate::db::central::chats;
use crate::db::central::destinations::{self, Target};
use protocol::AgentGroupId;

pub(super) async fn handle(admin: &Admin, verb: &str, body: serde_json::Value) -> Reply {
    match verb {
        "list" => {
            let filter: ListFilter = parse(body)?;
            let group = filter.group.map(AgentGroupId::new);
            to_value(
                &admin
                    .db(move |tx| {
                        if let Some(group) = &group {
                            crate::db::central::agent_group(tx, group)?;
                        }
                        destinations::list_destinations(tx, group.as_ref())
                    })
                    .await?,
            )
        }
        "add" => {
            let request: DestinationAdd = parse(body)?;
            let group = AgentGroupId::new(request.group.clone());
            if request.chat.is_some() == request.agent.is_some() {
                return Err(AdminError::Invalid(
                    "a destination is either a chat (--chat) or an agent group (--agent)".into(),
                ));
            }
            if request.agent.is_some() && request.thread.is_some() {
                return Err(AdminError::Invalid(
                    "--thread only applies to a chat destination".into(),
                ));
            }
            let added_to = group.clone();
            let row = admin
                .db(move |tx| {
                    let target = match (&request.chat, &request.agent) {
                        (Some(chat), _) => Target::Channel {
                            messaging_group_id: chats::find_chat(tx, chat)?.id,
                            thread_id: request.thread.clone(),
                        },
                        (None, Some(agent)) => Target::Agent {
                            agent_group_id: AgentGroupId::new(agent.clone()),
                        },
                        (None, None) => {
                            return Err(crate::db::DbError::Invalid("no target".into()));
                        }
                    };
                    destinations::add_destination(
                        tx,
                        &added_to,
                        &request.name,
                        request.display_name.as_deref(),
                        &target,
                    )
                })
                .await?;
            admin.supervisor.reproject_group(&group).await;
            to_value(&row)
        }
        "remove" => {
            let request: DestinationRemove = parse(body)?;
            let group = AgentGroupId::new(request.group.clone());
            let removed_from = group.clone();
            admin
                .db(move |tx| {
                    crate::db::central::agent_group(tx, &removed_from)?;
                    destinations::remove_destination(tx, &removed_from, &request.name)
                })
                .await?;
            admin.supervisor.reproject_group(&group).await;
            Ok(serde_json::json!({ "removed": true }))
        }
        _ => Err(unknown_verb("destinations", verb)),
    }
}
