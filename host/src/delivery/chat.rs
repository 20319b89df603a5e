//! Delivering a row to a chat through its channel adapter: long text split to the
//! platform's limit, files copied out of the outbox into `data/files/` for the adapter,
//! questions recorded so their answers find the session, edits, reactions and progress
//! updates pointed at the platform message they change, `sending` recorded before the
//! platform call, retries with backoff, and after the last attempt `failed`, recorded, and
//! the agent told.

use super::{Delivery, MAX_ATTEMPTS, RowOutcome};
use crate::channels::{ChatAddress, OutgoingMessage};
use crate::db::central::{self, DropRecord};
use crate::session::SessionRef;
use protocol::rows::DeliveryStatus;
use protocol::{OutboundContent, OutboundRow, Writer};
use std::time::{Duration, Instant};

impl Delivery {
    /// Sends one validated, authorised row to a chat.
    pub(super) async fn deliver_to_chat(
        &self,
        session: &SessionRef,
        row: &OutboundRow,
        content: &OutboundContent,
        address: ChatAddress,
        attempts: i64,
    ) -> RowOutcome {
        let Some(channel) = self.channels.get(&address.channel_type).cloned() else {
            return RowOutcome::refused(format!(
                "no channel adapter for {:?}",
                address.channel_type
            ));
        };
        if let Err(reason) = super::operations::check(content) {
            return RowOutcome::refused(reason);
        }
        let files = match self.stage_files(session, row, content).await {
            Ok(files) => files,
            Err(reason) => return RowOutcome::refused(reason),
        };
        if let OutboundContent::Question { .. } = content
            && let Err(e) = self.record_question(session, content, &address).await
        {
            tracing::warn!(error = %e, "recording the question failed; will retry");
            return RowOutcome::Deferred;
        }
        let target = super::operations::target_of(content, channel.capabilities());
        let (id, seq) = (row.id.clone(), row.seq);
        let target_platform_message_id = self
            .sessions
            .with_inbound(session, move |tx, _| {
                protocol::inbound::record_delivery(
                    tx,
                    &id,
                    seq,
                    DeliveryStatus::Sending,
                    None,
                    None,
                )?;
                Ok(match target {
                    Some(target) if Writer::Host.owns(target) => {
                        protocol::inbound::inbound_platform_message_id(tx, target)?
                    }
                    Some(target) => protocol::inbound::platform_message_id_of(tx, target)?,
                    None => None,
                })
            })
            .await;
        let target_platform_message_id = match target_platform_message_id {
            Ok(value) => value,
            Err(e) => {
                tracing::warn!(error = %e, "recording sending failed");
                return RowOutcome::Deferred;
            }
        };
        let pieces = match content {
            OutboundContent::Message(m) => {
                crate::channels::split_text(&m.text, channel.capabilities().max_text_chars)
            }
            _ => vec![String::new()],
        };
        let mut result = Ok(String::new());
        for (index, piece) in pieces.iter().enumerate() {
            let piece_content = match content {
                OutboundContent::Message(m) => OutboundContent::Message(protocol::MessageContent {
                    text: piece.clone(),
                    files: if index == 0 {
                        m.files.clone()
                    } else {
                        Vec::new()
                    },
                }),
                other => other.clone(),
            };
            let message = OutgoingMessage {
                id: row.id.clone(),
                seq: row.seq,
                content: piece_content,
                files: if index == 0 {
                    files.clone()
                } else {
                    Vec::new()
                },
                target_platform_message_id: target_platform_message_id.clone(),
            };
            result = channel.deliver(&address, &message).await;
            if result.is_err() {
                break;
            }
        }
        let attempts = attempts + 1;
        let (id, seq) = (row.id.clone(), row.seq);
        match result {
            Ok(platform_id) => {
                let _ = self
                    .sessions
                    .with_inbound(session, move |tx, _| {
                        Ok(protocol::inbound::record_delivery(
                            tx,
                            &id,
                            seq,
                            DeliveryStatus::Delivered,
                            Some(&platform_id),
                            None,
                        )?)
                    })
                    .await;
                self.supervisor.touch(&session.id);
                RowOutcome::Delivered
            }
            Err(e) if e.is_retryable() && attempts < MAX_ATTEMPTS => {
                let backoff = Duration::from_millis(500 * (1 << attempts.min(6)));
                tracing::warn!(session_id = %session.id, %seq, error = %e, ?backoff, "delivery failed; will retry");
                let mut cursors = self
                    .cursors
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                cursors
                    .entry(session.id.clone())
                    .or_default()
                    .retry_at
                    .insert(row.id.clone(), Instant::now() + backoff);
                RowOutcome::Deferred
            }
            Err(e) => {
                let error = e.to_string();
                tracing::warn!(session_id = %session.id, %seq, %error, "delivery failed for good");
                let text = format!(
                    "delivery of your message seq {seq} failed after {attempts} attempt(s): {error}"
                );
                let _ = self
                    .central
                    .call({
                        let drop = DropRecord {
                            outbound: true,
                            reason: format!("delivery failed: {error}"),
                            channel_type: Some(address.channel_type.clone()),
                            platform_id: Some(address.platform_id.clone()),
                            session_id: Some(session.id.clone()),
                            agent_group_id: Some(session.agent_group.clone()),
                            message_id: Some(row.id.to_string()),
                            ..Default::default()
                        };
                        move |conn| central::record_drop(conn, &drop)
                    })
                    .await;
                let _ = self
                    .sessions
                    .with_inbound(session, move |tx, _| {
                        protocol::inbound::record_delivery(
                            tx,
                            &id,
                            seq,
                            DeliveryStatus::Failed,
                            None,
                            Some(&error),
                        )?;
                        Ok(())
                    })
                    .await;
                self.tell_agent(session, text).await;
                RowOutcome::Delivered
            }
        }
    }
}
