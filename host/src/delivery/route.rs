//! Where an outbound row goes, decided from the central DB alone ([`Delivery::route`]),
//! never from routing the container wrote: a [`Route`].
//!
//! A named destination must be a row of the agent group's `agent_destinations`. No name
//! means the origin: for a session another agent started, the session that asked; otherwise
//! the chat of the message being answered (when that chat is the session's own or wired to
//! its agent group — what an agent-shared session needs), else the session's own chat. When
//! that chat is an inbound webhook's (`webhook/<name>`), nobody reads it: the reply fans out
//! to the agent group's channel destinations ([`Route::Fanout`]), outbound webhooks included.

use super::Delivery;
use crate::db::DbError;
use crate::db::central::{self, destinations};
use crate::edge::ChatAddress;
use crate::session::SessionRef;
use protocol::{AgentGroupId, DestinationType, MessageId, SessionId};
use std::collections::HashMap;

/// Where a row goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// A chat on a platform.
    Chat(ChatAddress),
    /// Another agent group, through a named destination.
    Agent { agent_group: AgentGroupId },
    /// Back to the session that asked (this session was started by another agent).
    Return { session: SessionId },
    /// The reply of a turn the inbound webhook `hook` started: to each of the agent group's
    /// channel destinations (none: the row is refused, see [`super::fanout`]).
    Fanout {
        hook: String,
        targets: Vec<FanoutTarget>,
    },
}

/// One destination a fanned-out reply goes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FanoutTarget {
    /// The destination's name in the agent group.
    pub name: String,
    pub address: ChatAddress,
}

/// The chat of an inbound row, as the host wrote it.
pub type RowChat = Option<(String, String, Option<String>)>;

/// Routes resolved within one pass, and the chats of the rows its rows answer (read from
/// `inbound.db` with the batch's delivery states): a batch of replies to one chat costs one
/// central lookup, not one per row.
#[derive(Default)]
pub struct RouteCache {
    pub answered: HashMap<MessageId, RowChat>,
    resolved: HashMap<(Option<String>, RowChat), Result<Route, String>>,
}

impl RouteCache {
    /// Resolves a row's destination; `Err` says why it is not allowed.
    pub async fn route(
        &mut self,
        delivery: &Delivery,
        session: &SessionRef,
        destination: Option<&str>,
        in_reply_to: Option<&MessageId>,
    ) -> Result<Route, String> {
        let answered = match (destination, in_reply_to) {
            (None, Some(id)) => match self.answered.get(id) {
                Some(chat) => chat.clone(),
                None => {
                    let chat = delivery.answered_chat(session, id).await;
                    self.answered.insert(id.clone(), chat.clone());
                    chat
                }
            },
            _ => None,
        };
        let key = (destination.map(str::to_owned), answered.clone());
        if let Some(route) = self.resolved.get(&key) {
            return route.clone();
        }
        let route = delivery.resolve(session, destination, answered).await;
        self.resolved.insert(key, route.clone());
        route
    }
}

/// The chat of the inbound row `id`, as the host wrote it (for a reply to it).
pub fn answered_chat(tx: &rusqlite::Connection, id: &MessageId) -> rusqlite::Result<RowChat> {
    Ok(protocol::inbound::get(tx, id)?.and_then(|row| {
        row.channel_type
            .zip(row.platform_id)
            .map(|(c, p)| (c, p, row.thread_id))
    }))
}

impl Delivery {
    /// Resolves a row's destination; `Err` says why it is not allowed.
    pub(super) async fn route(
        &self,
        session: &SessionRef,
        destination: Option<&str>,
        in_reply_to: Option<&MessageId>,
    ) -> Result<Route, String> {
        let answered = match (destination, in_reply_to) {
            (None, Some(id)) => self.answered_chat(session, id).await,
            _ => None,
        };
        self.resolve(session, destination, answered).await
    }

    async fn answered_chat(&self, session: &SessionRef, id: &MessageId) -> RowChat {
        let id = id.clone();
        self.sessions
            .with_inbound(session, move |tx, _| Ok(answered_chat(tx, &id)?))
            .await
            .unwrap_or_else(|e| {
                // Without the answered chat the reply goes to the session's own chat.
                tracing::warn!(session_id = %session.id, error = %e, "cannot read the answered row");
                None
            })
    }

    /// The central part of routing: a named destination, or the origin.
    async fn resolve(
        &self,
        session: &SessionRef,
        destination: Option<&str>,
        answered: RowChat,
    ) -> Result<Route, String> {
        let session_id = session.id.clone();
        let group = session.agent_group.clone();
        let name = destination.map(str::to_owned);
        let resolved = self
            .central
            .call(move |conn| -> Result<Result<Route, String>, DbError> {
                match name {
                    None => origin(conn, &session_id, &group, answered),
                    Some(name) => named(conn, &group, &name),
                }
            })
            .await;
        match resolved {
            Ok(result) => result,
            Err(e) => Err(format!("checking the destination failed: {e}")),
        }
    }
}

fn origin(
    conn: &rusqlite::Connection,
    session_id: &SessionId,
    group: &AgentGroupId,
    answered: RowChat,
) -> Result<Result<Route, String>, DbError> {
    let stored = central::session(conn, session_id)?;
    if let Some(source) = stored.source_session_id {
        return Ok(Ok(Route::Return { session: source }));
    }
    if let Some((channel_type, platform_id, thread_id)) = answered
        && let Ok(chat) = central::chats::find_chat(conn, &format!("{channel_type}/{platform_id}"))
        && (stored.messaging_group_id.as_deref() == Some(chat.id.as_str())
            || !central::wirings::list_wirings(conn, Some(&chat.id), Some(group))?.is_empty())
    {
        return chat_or_fanout(
            conn,
            group,
            ChatAddress {
                channel_type: chat.channel_type,
                platform_id: chat.platform_id,
                thread_id,
            },
        );
    }
    let Some(chat_id) = stored.messaging_group_id else {
        return Ok(Err("the session has no origin chat".into()));
    };
    let chat = central::messaging_group(conn, &chat_id)?;
    chat_or_fanout(
        conn,
        group,
        ChatAddress {
            channel_type: chat.channel_type,
            platform_id: chat.platform_id,
            thread_id: stored.thread_id,
        },
    )
}

/// The origin chat, unless it is an inbound webhook's: then the group's channel
/// destinations (the hook's and other inbound hooks' chats left out: nobody reads them).
fn chat_or_fanout(
    conn: &rusqlite::Connection,
    group: &AgentGroupId,
    address: ChatAddress,
) -> Result<Result<Route, String>, DbError> {
    if address.channel_type != crate::edge::WEBHOOK_CHANNEL_TYPE
        || !central::webhooks::is_inbound(conn, &address.platform_id)?
    {
        return Ok(Ok(Route::Chat(address)));
    }
    let mut targets = Vec::new();
    for destination in destinations::destinations_for(conn, group)? {
        let (DestinationType::Channel, Some(channel_type), Some(platform_id)) = (
            destination.destination_type,
            destination.channel_type,
            destination.platform_id,
        ) else {
            continue;
        };
        if channel_type == crate::edge::WEBHOOK_CHANNEL_TYPE
            && central::webhooks::is_inbound(conn, &platform_id)?
        {
            continue;
        }
        targets.push(FanoutTarget {
            name: destination.name,
            address: ChatAddress {
                channel_type,
                platform_id,
                thread_id: destination.thread_id,
            },
        });
    }
    Ok(Ok(Route::Fanout {
        hook: address.platform_id,
        targets,
    }))
}

fn named(
    conn: &rusqlite::Connection,
    group: &AgentGroupId,
    name: &str,
) -> Result<Result<Route, String>, DbError> {
    let Some(destination) = destinations::destination(conn, group, name)? else {
        return Ok(Err(format!(
            "destination {name:?} is not one of this agent group's destinations"
        )));
    };
    Ok(match destination.destination_type {
        DestinationType::Channel => match (destination.channel_type, destination.platform_id) {
            (Some(channel_type), Some(platform_id)) => Ok(Route::Chat(ChatAddress {
                channel_type,
                platform_id,
                thread_id: destination.thread_id,
            })),
            _ => Err(format!("destination {name:?} has no chat")),
        },
        DestinationType::Agent => match destination.agent_group_id {
            Some(agent_group) => Ok(Route::Agent { agent_group }),
            None => Err(format!("destination {name:?} names no agent group")),
        },
    })
}
