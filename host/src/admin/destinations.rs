//! `crabpot destinations ...`: list, add (a chat, a thread of it, another agent group, or an
//! outbound webhook), remove. Every change is projected at once into the group's sessions' `inbound.db`.

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
            let rows = admin
                .db(move |tx| {
                    if let Some(group) = &group {
                        crate::db::central::agent_group(tx, group)?;
                    }
                    destinations::list_destinations(tx, group.as_ref())
                })
                .await?;
            let mut listed = Vec::with_capacity(rows.len());
            for row in &rows {
                listed.push(with_webhook_type(row)?);
            }
            Ok(serde_json::Value::Array(listed))
        }
        "add" => {
            let mut request: DestinationAdd = parse(body)?;
            let group = AgentGroupId::new(request.group.clone());
            let targets = [
                request.chat.is_some(),
                request.agent.is_some(),
                request.webhook.is_some(),
            ];
            if targets.iter().filter(|given| **given).count() != 1 {
                return Err(AdminError::Invalid(
                    "a destination is either a chat (--chat), an agent group (--agent) or an outbound webhook (--webhook)".into(),
                ));
            }
            if let Some(hook) = request.webhook.take() {
                if request.thread.is_some() {
                    return Err(AdminError::Invalid(
                        "--thread only applies to a chat destination".into(),
                    ));
                }
                let lookup = hook.clone();
                let found = admin
                    .db(move |tx| crate::db::central::webhooks::get(tx, &lookup))
                    .await?;
                if found.hook.direction != crate::db::central::webhooks::Direction::Outbound {
                    return Err(AdminError::Invalid(format!(
                        "webhook {hook:?} is inbound; a destination needs an outbound one (`crabpot webhooks create NAME --url URL`)"
                    )));
                }
                request.chat = Some(found.hook.chat_address);
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
            with_webhook_type(&row)
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

/// A destination as the API shows it: one to an outbound webhook's chat (`webhook/<name>`, a
/// channel destination as stored) has the type `webhook` and names its hook.
fn with_webhook_type(row: &destinations::DestinationRow) -> Reply {
    let mut value = to_value(row)?;
    if let Some(hook) = row
        .chat_address
        .as_deref()
        .and_then(|address| address.strip_prefix("webhook/"))
    {
        value["target"]["type"] = "webhook".into();
        value["target"]["webhook"] = hook.into();
    }
    Ok(value)
}
