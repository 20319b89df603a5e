//! What delivery says besides the agent's rows: `system` rows telling an agent what happened
//! to its messages ([`Delivery::tell_agent`]), host notices to a session's origin
//! ([`Delivery::notify`]), the host's own messages to chats ([`Delivery::send_host_message`]),
//! and turn completion ([`Delivery::sync_acks`]).

use super::Delivery;
use super::route::Route;
use crate::edge::{ChatAddress, HostMessage};
use crate::session::SessionRef;
use crate::supervisor::Notice;
use protocol::{AckStatus, InboundContent, InboundStatus, MessageId, NewInboundRow};
use std::collections::HashSet;

impl Delivery {
    /// Writes a `system` row into the session, which wakes the agent.
    pub(super) async fn tell_agent(&self, session: &SessionRef, text: String) {
        let mut row = NewInboundRow::chat(&InboundContent {
            text,
            ..InboundContent::default()
        });
        row.kind = protocol::InboundKind::System;
        let written = self
            .sessions
            .with_inbound(session, move |tx, _| {
                Ok(protocol::inbound::insert(tx, &row, None)?)
            })
            .await;
        match written {
            Ok(_) => self.supervisor.wake(session),
            Err(e) => tracing::warn!(error = %e, "cannot tell the agent"),
        }
    }

    /// Copies finished acks into `messages_in` and tells the channel the turn is complete.
    /// `Err` when `inbound.db` could not be written (then the acks are tried again).
    pub(super) async fn sync_acks(
        &self,
        session: &SessionRef,
        acks: Vec<protocol::Ack>,
    ) -> Result<(), crate::db::DbError> {
        let finished: Vec<(MessageId, InboundStatus)> = acks
            .into_iter()
            .filter_map(|ack| match ack.status {
                AckStatus::Completed => Some((ack.message_id, InboundStatus::Completed)),
                AckStatus::Failed => Some((ack.message_id, InboundStatus::Failed)),
                AckStatus::Processing => None,
            })
            .collect();
        if finished.is_empty() {
            return Ok(());
        }
        let now = protocol::time::now_ms();
        let (changed, earliest) = self
            .sessions
            .with_inbound(session, move |tx, _| {
                let mut changed = Vec::new();
                let mut tasks_ran = false;
                for (id, status) in finished {
                    let Some(row) = protocol::inbound::get(tx, &id)? else {
                        continue;
                    };
                    if row.status == InboundStatus::Pending {
                        protocol::inbound::set_status(tx, &id, status)?;
                        if row.kind == protocol::InboundKind::Task {
                            tasks_ran = true;
                            crate::schedule::follow_up(tx, &row, now)?;
                        }
                        changed.push(row);
                    }
                }
                let earliest = if tasks_ran {
                    Some(protocol::series::earliest_scheduled(tx)?)
                } else {
                    None
                };
                Ok((changed, earliest))
            })
            .await?;
        if let Some(earliest) = earliest {
            self.tasks.mirror_due(&session.id, earliest).await;
        }
        self.complete_turns(session, changed).await;
        Ok(())
    }

    async fn complete_turns(&self, session: &SessionRef, rows: Vec<protocol::InboundRow>) {
        // A draft no reply took (a stopped turn, a reply sent elsewhere) leaves the chat.
        let ids: Vec<MessageId> = rows.iter().map(|row| row.id.clone()).collect();
        self.bridge.streams().finish(&session.id, &ids).await;
        let mut seen = HashSet::new();
        for row in rows {
            let (Some(channel_type), Some(platform_id)) =
                (row.channel_type.clone(), row.platform_id.clone())
            else {
                continue;
            };
            if !seen.insert(row.id.clone()) {
                continue;
            }
            crate::metrics::global()
                .turn_completed(&channel_type, crate::metrics::since_unix_ms(row.created_at));
            if let Some(channel) = self.channels.get(&channel_type) {
                let address = ChatAddress {
                    channel_type,
                    platform_id,
                    thread_id: row.thread_id.clone(),
                };
                channel.turn_complete(&address, &row.id).await;
            }
        }
    }

    /// Delivers a host notice to the session's origin (for a session another agent started,
    /// the asking agent is told), then completes the turns of any rows the notice finished.
    pub(super) async fn notify(&self, notice: Notice) {
        match self.route(&notice.session, None, None).await {
            Ok(Route::Chat(address)) => {
                self.send_host_message(HostMessage {
                    to: address,
                    text: notice.text.clone(),
                    buttons: Vec::new(),
                })
                .await;
            }
            Ok(Route::Return { session }) => {
                let asking = self
                    .central
                    .call(move |conn| {
                        let stored = crate::db::central::session(conn, &session)?;
                        let group = crate::db::central::agent_group(conn, &stored.agent_group_id)?;
                        Ok(SessionRef {
                            id: stored.id,
                            agent_group: group.id,
                            group_folder: group.folder,
                        })
                    })
                    .await;
                match asking {
                    Ok(asking) => {
                        let text = format!(
                            "agent group {} could not answer: {}",
                            notice.session.agent_group, notice.text
                        );
                        self.tell_agent(&asking, text).await;
                    }
                    Err(e) => tracing::warn!(error = %e, "the asking session is gone"),
                }
            }
            Ok(Route::Fanout { targets, .. }) => {
                // Nobody reads an inbound webhook's chat: the group's destinations are told.
                for target in targets {
                    self.send_host_message(HostMessage {
                        to: target.address,
                        text: notice.text.clone(),
                        buttons: Vec::new(),
                    })
                    .await;
                }
            }
            Ok(Route::Agent { .. }) => {}
            Err(e) => tracing::warn!(error = %e, "notice has no chat"),
        }
        let ids = notice.finished;
        let rows = self
            .sessions
            .with_inbound(&notice.session, move |tx, _| {
                let mut rows = Vec::new();
                for id in ids {
                    if let Some(row) = protocol::inbound::get(tx, &id)? {
                        rows.push(row);
                    }
                }
                Ok(rows)
            })
            .await
            .unwrap_or_default();
        self.complete_turns(&notice.session, rows).await;
    }

    /// Sends a message from the host itself to a chat (best effort: logged when it fails).
    pub(super) async fn send_host_message(&self, message: HostMessage) {
        let Some(channel) = self.channels.get(&message.to.channel_type) else {
            tracing::warn!(channel = %message.to.channel_type, "no channel adapter for a host message");
            return;
        };
        if let Err(e) = self.bridge.host_message(&channel, &message).await {
            tracing::warn!(error = %e, "host message not delivered");
        }
    }
}
