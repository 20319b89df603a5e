//! Delivering rows to chats through their channel adapters, in runs: each row is prepared
//! ([`Delivery::prepare_chat`]: adapter, content checks, files copied out of the outbox into
//! `data/files/`, questions recorded so their answers find the session), then a run of them
//! is sent ([`Delivery::send_run`]): `sending` recorded for the whole run in one transaction
//! before the platform calls (durable before each call, with the outbound id as idempotency
//! key), long text split to the platform's limit, edits, reactions and progress updates
//! pointed at the platform message they change. The results go into the pass's
//! [`Records`]: delivered; retried with backoff; waiting, without counting the attempt, when
//! nobody was there to receive; or after the last attempt `failed`, recorded, and the agent
//! told.

use super::bookkeeping::{Final, Records};
use super::fanout::{FanoutSend, Recipient};
use super::refusal::Refusal;
use super::route::FanoutTarget;
use super::{Delivery, MAX_ATTEMPTS, RowOutcome, Wait};
use crate::bridge::RowSend;
use crate::db::central::DropRecord;
use crate::edge::{Channel, ChannelError, ChatAddress};
use crate::metrics::labels::DeliveryOutcome;
use crate::session::SessionRef;
use protocol::inbound::WaitReason;
use protocol::rows::DeliveryStatus;
use protocol::{MessageId, OutboundContent, OutboundRow, Seq, Writer};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

/// The `error` of a `sending` record written for a resend after a host crash.
pub const RESENT_AFTER_CRASH: &str = "resent after a host crash";

/// A validated, authorised chat row, ready to send.
pub struct ChatSend {
    pub id: MessageId,
    pub seq: Seq,
    channel: Arc<dyn Channel>,
    pub address: ChatAddress,
    content: OutboundContent,
    files: Vec<PathBuf>,
    /// The seq whose platform message this row changes (edit, reaction, progress update).
    target: Option<Seq>,
    /// Platform calls so far.
    attempts: i64,
    /// Whether it named files (its outbox folder goes once it is handled).
    pub names_files: bool,
    /// The inbound row it answers (a reply to the origin takes its turn's draft's place).
    in_reply_to: Option<MessageId>,
    /// Left `sending` by a host that crashed: sent again once, flagged for the platform.
    resend: bool,
    /// When it became due (unix ms: written, or its `deliver_after`; the container's word):
    /// where the delivery latency starts.
    due_at: i64,
    /// The chats a fanned-out reply goes to ([`super::fanout`]); empty for a row to one chat
    /// (`address`).
    fanout: Vec<Recipient>,
}

impl Delivery {
    /// Prepares one validated, authorised row for its chat.
    pub(super) async fn prepare_chat(
        &self,
        session: &SessionRef,
        row: &OutboundRow,
        content: OutboundContent,
        address: ChatAddress,
        attempts: i64,
        resend: bool,
    ) -> RowOutcome {
        let Some(channel) = self.channels.get(&address.channel_type) else {
            return RowOutcome::refused(Refusal::NoAdapter(format!(
                "no channel adapter for {:?}",
                address.channel_type
            )));
        };
        if let Err(reason) = super::operations::check(&content) {
            return RowOutcome::refused(Refusal::BadContent(reason));
        }
        let files = match self.stage_files(session, row, &content).await {
            Ok(files) => files,
            Err(reason) => return RowOutcome::refused(Refusal::Files(reason)),
        };
        if let OutboundContent::Question { .. } = &content
            && let Err(e) = self.record_question(session, &content, &address).await
        {
            tracing::warn!(error = %e, "recording the question failed; will retry");
            return RowOutcome::busy();
        }
        let target = super::operations::target_of(&content, channel.capabilities());
        let names_files = matches!(&content, OutboundContent::Message(m) if !m.files.is_empty());
        RowOutcome::Send(Box::new(ChatSend {
            id: row.id.clone(),
            seq: row.seq,
            channel,
            address,
            content,
            files,
            target,
            attempts,
            names_files,
            in_reply_to: row.in_reply_to.clone(),
            resend,
            due_at: row.created_at.max(row.deliver_after.unwrap_or(i64::MIN)),
            fanout: Vec::new(),
        }))
    }

    /// Prepares the reply of a turn the inbound webhook `hook` started for each of its
    /// group's channel destinations; destinations no adapter serves are left out.
    pub(super) async fn prepare_fanout(
        &self,
        session: &SessionRef,
        row: &OutboundRow,
        content: OutboundContent,
        (hook, targets): (String, Vec<FanoutTarget>),
        attempts: i64,
        resend: bool,
    ) -> RowOutcome {
        if !matches!(content, OutboundContent::Message(_)) {
            return RowOutcome::refused(Refusal::Destination(format!(
                "the reply of webhook {hook}'s turn goes to several destinations, and only plain messages can; name one with send_message(to=...)"
            )));
        }
        let mut recipients = Vec::with_capacity(targets.len());
        for target in targets {
            match self.channels.get(&target.address.channel_type) {
                Some(channel) => recipients.push(Recipient {
                    channel,
                    address: target.address,
                    name: target.name,
                }),
                None => {
                    tracing::warn!(session_id = %session.id, destination = %target.name, channel = %target.address.channel_type, "no channel adapter for a destination of a webhook's reply; left out");
                }
            }
        }
        let Some(first) = recipients.first() else {
            // Recorded, not told: the agent's answer to the note would have nowhere to go
            // either, and each refusal would wake it again.
            return RowOutcome::Refused {
                refusal: Refusal::NoFanoutDestination(format!(
                    "the reply of webhook {hook}'s turn has nowhere to go: agent group {} has no chat or outbound webhook destination served by an adapter (add one with `crabpot destinations add`)",
                    session.agent_group
                )),
                tell: false,
            };
        };
        let address = first.address.clone();
        match self
            .prepare_chat(session, row, content, address, attempts, resend)
            .await
        {
            RowOutcome::Send(mut send) => {
                send.fanout = recipients;
                RowOutcome::Send(send)
            }
            other => other,
        }
    }

    /// Sends a run of prepared rows in order. `platform_ids` holds what this pass delivered
    /// so far (an edit may target a row sent a moment ago). `false` when `sending` could not
    /// be recorded: then nothing was sent and every row waits for a retry.
    pub(super) async fn send_run(
        &self,
        session: &SessionRef,
        run: Vec<ChatSend>,
        platform_ids: &mut HashMap<Seq, String>,
        records: &mut Records,
    ) -> bool {
        if run.is_empty() {
            return true;
        }
        let marks: Vec<(MessageId, Seq, Option<Seq>, bool)> = run
            .iter()
            .map(|send| (send.id.clone(), send.seq, send.target, send.resend))
            .collect();
        let targets = self
            .sessions
            .with_inbound(session, move |tx, _| {
                let mut targets = HashMap::new();
                for (id, seq, target, resend) in marks {
                    // A resend after a crash is marked, so a second crash fails the row
                    // rather than sending it a third time.
                    protocol::inbound::record_delivery(
                        tx,
                        &id,
                        seq,
                        DeliveryStatus::Sending,
                        None,
                        resend.then_some(RESENT_AFTER_CRASH),
                    )?;
                    let platform_id = match target {
                        Some(target) if Writer::Host.owns(target) => {
                            protocol::inbound::inbound_platform_message_id(tx, target)?
                        }
                        Some(target) => protocol::inbound::platform_message_id_of(tx, target)?,
                        None => None,
                    };
                    if let (Some(target), Some(platform_id)) = (target, platform_id) {
                        targets.insert(target, platform_id);
                    }
                }
                Ok(targets)
            })
            .await;
        let targets = match targets {
            Ok(targets) => targets,
            Err(e) => {
                tracing::warn!(session_id = %session.id, error = %e, "recording sending failed; will retry");
                for send in run {
                    records.wait(Wait::busy().of(&send.id, send.seq));
                }
                return false;
            }
        };
        let mut delivered_any = false;
        for send in run {
            let target_platform_message_id = send
                .target
                .and_then(|target| platform_ids.get(&target).or_else(|| targets.get(&target)))
                .cloned();
            let (result, waiting_for) = if send.fanout.is_empty() {
                let result = self
                    .bridge
                    .send(
                        &send.channel,
                        RowSend {
                            session: &session.id,
                            address: &send.address,
                            id: &send.id,
                            seq: send.seq,
                            content: &send.content,
                            files: &send.files,
                            target: target_platform_message_id,
                            in_reply_to: send.in_reply_to.as_ref(),
                            resend: send.resend,
                        },
                    )
                    .await;
                (result, None)
            } else {
                let sent = self
                    .fanouts
                    .send(
                        &self.bridge,
                        FanoutSend {
                            session: &session.id,
                            id: &send.id,
                            seq: send.seq,
                            content: &send.content,
                            files: &send.files,
                            resend: send.resend,
                            recipients: &send.fanout,
                            last_attempt: send.attempts + 1 >= MAX_ATTEMPTS,
                        },
                    )
                    .await;
                (sent.result, sent.waiting_for)
            };
            if let Ok(platform_id) = &result {
                platform_ids.insert(send.seq, platform_id.clone());
                delivered_any = true;
            }
            let address = waiting_for.as_ref().unwrap_or(&send.address);
            self.record_result(session, &send, address, result, records);
            if send.names_files {
                self.clean_outbox(session, send.id.as_str()).await;
            }
        }
        if delivered_any {
            self.supervisor.touch(&session.id);
        }
        true
    }

    /// Records what sending `send` to `address` (its chat, or for a fanned-out row the one
    /// nobody was there to read) came to.
    fn record_result(
        &self,
        session: &SessionRef,
        send: &ChatSend,
        address: &ChatAddress,
        result: Result<String, ChannelError>,
        records: &mut Records,
    ) {
        let attempts = send.attempts + 1;
        let (id, seq) = (send.id.clone(), send.seq);
        let (metrics, channel_type) = (crate::metrics::global(), &address.channel_type);
        match result {
            Ok(platform_id) => {
                metrics.delivered(channel_type, crate::metrics::since_unix_ms(send.due_at));
                records.finish(Final {
                    id,
                    seq,
                    status: DeliveryStatus::Delivered,
                    platform_message_id: Some(platform_id),
                    error: None,
                });
            }
            Err(ChannelError::NoRecipient(why)) => {
                // Nobody heard it: not an attempt. It goes when a recipient arrives.
                tracing::debug!(session_id = %session.id, %seq, %why, "no recipient; the row waits");
                records.undo_attempts.push(id.clone());
                records.chats.insert(
                    id.clone(),
                    (address.channel_type.clone(), address.platform_id.clone()),
                );
                records.wait(
                    Wait {
                        reason: WaitReason::NoRecipient,
                        until: None,
                    }
                    .of(&id, seq),
                );
            }
            Err(e) if e.is_retryable() && attempts < MAX_ATTEMPTS => {
                // A platform's retry-after is honoured when it asks for longer.
                let asked_ms = match &e {
                    ChannelError::RateLimited { retry_after } => {
                        i64::try_from(retry_after.as_millis()).unwrap_or(i64::MAX)
                    }
                    _ => 0,
                };
                let backoff_ms = (500 * (1_i64 << attempts.min(6))).max(asked_ms);
                metrics.delivery(channel_type, DeliveryOutcome::Retried);
                if self
                    .log_gate
                    .should_log(&format!("delivery.retry {}", session.id))
                {
                    tracing::warn!(session_id = %session.id, %seq, error = %e, backoff_ms, "delivery failed; will retry");
                }
                records.wait(
                    Wait {
                        reason: WaitReason::Retry,
                        until: Some(protocol::time::now_ms() + backoff_ms),
                    }
                    .of(&id, seq),
                );
            }
            Err(e) => {
                let error = e.to_string();
                tracing::warn!(session_id = %session.id, %seq, %error, "delivery failed for good");
                metrics.delivery(channel_type, DeliveryOutcome::Failed);
                records.drops.push(DropRecord {
                    outbound: true,
                    reason: format!("delivery failed: {error}"),
                    channel_type: Some(address.channel_type.clone()),
                    platform_id: Some(address.platform_id.clone()),
                    session_id: Some(session.id.clone()),
                    agent_group_id: Some(session.agent_group.clone()),
                    message_id: Some(id.to_string()),
                    ..Default::default()
                });
                records.tells.push(format!(
                    "delivery of your message seq {seq} failed after {attempts} attempt(s): {error}"
                ));
                records.finish(Final {
                    id,
                    seq,
                    status: DeliveryStatus::Failed,
                    platform_message_id: None,
                    error: Some(error),
                });
            }
        }
    }
}
