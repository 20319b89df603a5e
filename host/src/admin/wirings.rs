//! `crabpot wirings ...`: list, create (with the group's destination for the chat), update,
//! delete. Engage patterns are validated here, when the wiring is saved.

use super::api::{Id, ListFilter, WiringCreate, WiringUpdate};
use super::{Admin, AdminError, Reply, parse, to_value, unknown_verb};
use crate::db::central::{chats, wirings};
use protocol::AgentGroupId;
use serde_json::json;

pub(super) async fn handle(admin: &Admin, verb: &str, body: serde_json::Value) -> Reply {
    match verb {
        "list" => {
            let filter: ListFilter = parse(body)?;
            let listed = admin
                .db(move |tx| {
                    let chat = match &filter.chat {
                        Some(reference) => Some(chats::find_chat(tx, reference)?.id),
                        None => None,
                    };
                    let group = filter.group.map(AgentGroupId::new);
                    if let Some(group) = &group {
                        crate::db::central::agent_group(tx, group)?;
                    }
                    let mut listed = Vec::new();
                    for wiring in wirings::list_wirings(tx, chat.as_deref(), group.as_ref())? {
                        let address =
                            chats::messaging_group(tx, &wiring.messaging_group_id)?.address();
                        listed.push((wiring, address));
                    }
                    Ok(listed)
                })
                .await?;
            let rows: Result<Vec<serde_json::Value>, AdminError> = listed
                .into_iter()
                .map(|(wiring, address)| with_chat(&wiring, address))
                .collect();
            Ok(serde_json::Value::Array(rows?))
        }
        "create" => {
            let request: WiringCreate = parse(body)?;
            let group = AgentGroupId::new(request.group.clone());
            let (wiring, destination, address) = admin
                .db(move |tx| {
                    let chat = chats::find_chat(tx, &request.chat)?;
                    let (wiring, destination) = wirings::create_wiring(
                        tx,
                        &chat,
                        &AgentGroupId::new(request.group),
                        &request.settings,
                        request.destination.as_deref(),
                    )?;
                    Ok((wiring, destination, chat.address()))
                })
                .await?;
            admin.supervisor.reproject_group(&group).await;
            Ok(json!({ "wiring": with_chat(&wiring, address)?, "destination": destination }))
        }
        "update" => {
            let request: WiringUpdate = parse(body)?;
            to_value(
                &admin
                    .db(move |tx| wirings::update_wiring(tx, &request.id, &request.settings))
                    .await?,
            )
        }
        "delete" => {
            let request: Id = parse(body)?;
            to_value(
                &admin
                    .db(move |tx| wirings::delete_wiring(tx, &request.id))
                    .await?,
            )
        }
        _ => Err(unknown_verb("wirings", verb)),
    }
}

/// A wiring with its chat's address (`chat_address`), for people.
fn with_chat(wiring: &wirings::Wiring, address: String) -> Result<serde_json::Value, AdminError> {
    let mut value = to_value(wiring)?;
    if let serde_json::Value::Object(map) = &mut value {
        map.insert("chat_address".into(), serde_json::Value::String(address));
    }
    Ok(value)
}
