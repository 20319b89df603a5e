//! `crabpot chats ...`: list, show, create, update (name, group chat, unknown-sender
//! policy), delete. A chat is named by its id or its address `<channel_type>/<platform_id>`.

use super::api::{ChatCreate, ChatUpdate, Id};
use super::{Admin, Reply, parse, to_value, unknown_verb};
use crate::db::central::{approvals, chats, sessions, wirings};
use serde_json::json;

pub(super) async fn handle(admin: &Admin, verb: &str, body: serde_json::Value) -> Reply {
    match verb {
        "list" => to_value(&admin.db(|tx| chats::list_chats(tx)).await?),
        "show" => {
            let request: Id = parse(body)?;
            admin
                .db(move |tx| {
                    let chat = chats::find_chat(tx, &request.id)?;
                    let chat_sessions: Vec<_> = sessions::list_sessions(tx, None)?
                        .into_iter()
                        .filter(|s| s.messaging_group_id.as_deref() == Some(chat.id.as_str()))
                        .collect();
                    Ok(json!({
                        "chat": chat,
                        "address": chat.address(),
                        "wirings": wirings::list_wirings(tx, Some(&chat.id), None)?,
                        "sessions": chat_sessions,
                        "pending_registration": approvals::pending_for_chat(tx, &chat.id)?,
                    }))
                })
                .await
        }
        "create" => {
            let request: ChatCreate = parse(body)?;
            to_value(&admin.db(move |tx| chats::create_chat(tx, &request)).await?)
        }
        "update" => {
            let request: ChatUpdate = parse(body)?;
            to_value(
                &admin
                    .db(move |tx| chats::update_chat(tx, &request.id, &request.changes))
                    .await?,
            )
        }
        "delete" => {
            let request: Id = parse(body)?;
            let chat = admin
                .db(move |tx| chats::delete_chat(tx, &request.id))
                .await?;
            // Destinations naming the chat went with it.
            admin.supervisor.reproject_all().await;
            to_value(&chat)
        }
        _ => Err(unknown_verb("chats", verb)),
    }
}
