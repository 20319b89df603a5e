//! Agent-to-agent delivery (DESIGN §4): a row sent to an agent destination becomes a `chat`
//! row in the target agent group's session for the sending session (keyed
//! `a2a:<sender session>`, created on first use), with `source_session_id` = the sender, so
//! the target's answer (a row with no destination) comes back as a `chat` row into the very
//! session that asked. Files travel from the sender's `out/outbox/<row id>/` to the target's
//! `in/inbox/<message id>/`, opened without following links and checked to stay inside the
//! sender's `out/` (see [`super::outbox`]).
//!
//! [`LoopGuard`] caps messages per (sending session, target agent group) and per sending
//! session in a sliding window ([`A2aLimits`]). The excess is dropped and recorded, and the
//! sender is told — once per window, so a model that answers every refusal by sending again
//! cannot turn the refusals themselves into a loop.

use super::refusal::Refusal;
use super::{Delivery, RowOutcome};
use crate::db::DbError;
use crate::db::central::{self, sessions as session_db};
use crate::session::SessionRef;
use protocol::rows::DeliveryStatus;
use protocol::{
    AgentGroupId, InboundContent, MessageContent, MessageId, NewInboundRow, OutboundRow, Sender,
    SessionId,
};
use std::collections::{HashMap, VecDeque};
use std::time::Instant;

pub use crate::config::A2aLimits;

/// A refused send: why, and whether to tell the sender (once per window).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapHit {
    pub reason: String,
    pub tell: bool,
}

/// Sliding-window counters of agent-to-agent sends.
#[derive(Debug, Default)]
pub struct LoopGuard {
    limits: A2aLimits,
    pairs: HashMap<(SessionId, AgentGroupId), VecDeque<Instant>>,
    sessions: HashMap<SessionId, VecDeque<Instant>>,
    told: HashMap<SessionId, Instant>,
}

impl LoopGuard {
    pub fn new(limits: A2aLimits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    /// Counts one send from `from` to `to` at `now`, or refuses it over a cap.
    pub fn admit(
        &mut self,
        from: &SessionId,
        to: &AgentGroupId,
        now: Instant,
    ) -> Result<(), CapHit> {
        let window = self.limits.window;
        let prune = |times: &mut VecDeque<Instant>| {
            while times
                .front()
                .is_some_and(|t| now.duration_since(*t) >= window)
            {
                times.pop_front();
            }
        };
        let pair = self.pairs.entry((from.clone(), to.clone())).or_default();
        prune(pair);
        let pair_full = pair.len() >= self.limits.per_pair;
        let session = self.sessions.entry(from.clone()).or_default();
        prune(session);
        let session_full = session.len() >= self.limits.per_session;
        let reason = if pair_full {
            format!(
                "agent-to-agent loop cap: more than {} messages to agent group {to} within {} s",
                self.limits.per_pair,
                window.as_secs()
            )
        } else if session_full {
            format!(
                "agent-to-agent loop cap: more than {} messages to other agents within {} s",
                self.limits.per_session,
                window.as_secs()
            )
        } else {
            pair.push_back(now);
            session.push_back(now);
            return Ok(());
        };
        let tell = self
            .told
            .get(from)
            .is_none_or(|at| now.duration_since(*at) >= window);
        if tell {
            self.told.insert(from.clone(), now);
        }
        if self.pairs.len() > 100_000 {
            // Forget idle counters rather than grow without bound.
            self.pairs.retain(|_, times| !times.is_empty());
            self.sessions.retain(|_, times| !times.is_empty());
        }
        Err(CapHit { reason, tell })
    }
}

/// Where an agent-to-agent row lands.
struct Landing {
    target: SessionRef,
    sender_name: String,
}

impl Delivery {
    /// Delivers a message row to another agent's session (`to_group`, through a destination)
    /// or back to the session that asked (`return_to`).
    pub(super) async fn send_to_agent(
        &self,
        session: &SessionRef,
        row: &OutboundRow,
        message: &MessageContent,
        to_group: Option<AgentGroupId>,
        return_to: Option<SessionId>,
    ) -> RowOutcome {
        let target_id = format!("{}.{}", session.id, row.id);
        if !protocol::ids::is_safe_folder_name(&target_id) {
            return RowOutcome::refused(Refusal::ToAgent(format!(
                "message id {:?} is not a plain name: it cannot carry files to another agent",
                row.id.as_str()
            )));
        }
        let target_id = MessageId::new(target_id);
        let landing = match self.landing(session, to_group, return_to).await {
            Ok(Ok(landing)) => landing,
            Ok(Err(reason)) => return RowOutcome::refused(Refusal::Destination(reason)),
            Err(e) => {
                tracing::warn!(error = %e, "resolving the agent-to-agent target failed");
                return RowOutcome::busy();
            }
        };
        let admitted = self
            .loop_guard
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .admit(&session.id, &landing.target.agent_group, Instant::now());
        if let Err(hit) = admitted {
            return RowOutcome::Refused {
                refusal: Refusal::OverLimit(hit.reason),
                tell: hit.tell,
            };
        }

        // Files first, into the target's inbox; the row that names them comes after.
        let already = {
            let id = target_id.clone();
            self.sessions
                .with_inbound(&landing.target, move |tx, _| {
                    Ok(protocol::inbound::get(tx, &id)?.is_some())
                })
                .await
        };
        let already = match already {
            Ok(already) => already,
            Err(e) => {
                tracing::warn!(error = %e, "opening the target session failed");
                return RowOutcome::busy();
            }
        };
        if !already {
            let sender_paths = self.sessions.paths(session);
            let target_paths = self.sessions.paths(&landing.target);
            let (out_dir, outbox) = (sender_paths.out_dir(), sender_paths.outbox(row.id.as_str()));
            let inbox = target_paths.inbox(target_id.as_str());
            let names = message.files.clone();
            let copied = tokio::task::spawn_blocking(move || {
                super::outbox::copy_files(&out_dir, &outbox, &names, &inbox)
            })
            .await;
            match copied {
                Ok(Ok(())) => {}
                Ok(Err(reason)) => return RowOutcome::refused(Refusal::Files(reason)),
                Err(e) => {
                    tracing::error!(error = %e, "copying files failed");
                    return RowOutcome::busy();
                }
            }
            let content = InboundContent {
                text: message.text.clone(),
                sender: Some(Sender {
                    id: format!("agent:{}", session.agent_group),
                    name: Some(landing.sender_name.clone()),
                }),
                attachments: message.files.clone(),
                ..InboundContent::default()
            };
            let mut inbound = NewInboundRow::chat(&content);
            inbound.id = target_id.clone();
            inbound.source_session_id = Some(session.id.clone());
            let written = self
                .sessions
                .with_inbound(&landing.target, move |tx, _| {
                    if protocol::inbound::get(tx, &inbound.id)?.is_none() {
                        protocol::inbound::insert(tx, &inbound, None)?;
                    }
                    Ok(())
                })
                .await;
            if let Err(e) = written {
                tracing::warn!(error = %e, "writing into the target session failed");
                return RowOutcome::busy();
            }
        }
        tracing::info!(from = %session.id, to = %landing.target.id, group = %landing.target.agent_group, "agent-to-agent message");
        self.supervisor.wake(&landing.target);
        let (id, seq, platform_id) = (row.id.clone(), row.seq, target_id.to_string());
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

    /// The target session: the target group's session for this sender, or the asking session.
    async fn landing(
        &self,
        session: &SessionRef,
        to_group: Option<AgentGroupId>,
        return_to: Option<SessionId>,
    ) -> Result<Result<Landing, String>, DbError> {
        let sender = session.clone();
        self.central
            .call(move |conn| {
                let sender_group = central::agent_group(conn, &sender.agent_group)?;
                let target = match (to_group, return_to) {
                    (Some(group), _) => {
                        let tx = conn.transaction()?;
                        let found = central::agent_group(&tx, &group).and_then(|target_group| {
                            let (target, _) =
                                session_db::resolve_a2a_session(&tx, &group, &sender.id)?;
                            Ok((target, target_group))
                        });
                        tx.commit()?;
                        match found {
                            Ok(found) => found,
                            Err(DbError::NotFound { .. }) => {
                                return Ok(Err(format!("agent group {group} no longer exists")));
                            }
                            Err(e) => return Err(e),
                        }
                    }
                    (None, Some(asking)) => {
                        let target = match central::session(conn, &asking) {
                            Ok(target) => target,
                            Err(DbError::NotFound { .. }) => {
                                return Ok(Err(format!(
                                    "the session that asked ({asking}) no longer exists"
                                )));
                            }
                            Err(e) => return Err(e),
                        };
                        let group = central::agent_group(conn, &target.agent_group_id)?;
                        (target, group)
                    }
                    (None, None) => return Ok(Err("no agent to deliver to".into())),
                };
                let (target, target_group) = target;
                Ok(Ok(Landing {
                    target: SessionRef {
                        id: target.id,
                        agent_group: target_group.id,
                        group_folder: target_group.folder,
                    },
                    sender_name: sender_group.name,
                }))
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn loop_guard_caps_per_pair_and_session_and_tells_once_per_window() {
        let mut guard = LoopGuard::new(A2aLimits {
            per_pair: 2,
            per_session: 3,
            window: Duration::from_secs(10),
        });
        let (a, b, c) = (
            SessionId::new("a"),
            AgentGroupId::new("b"),
            AgentGroupId::new("c"),
        );
        let t0 = Instant::now();
        assert!(guard.admit(&a, &b, t0).is_ok());
        assert!(guard.admit(&a, &b, t0).is_ok());
        let hit = guard.admit(&a, &b, t0).unwrap_err();
        assert!(hit.tell && hit.reason.contains("agent group b"), "{hit:?}");
        assert!(
            !guard.admit(&a, &b, t0).unwrap_err().tell,
            "told once per window"
        );
        assert!(guard.admit(&a, &c, t0).is_ok());
        let hit = guard.admit(&a, &c, t0).unwrap_err();
        assert!(hit.reason.contains("to other agents"), "{hit:?}");
        // Another session has its own counters.
        assert!(guard.admit(&SessionId::new("z"), &b, t0).is_ok());
        // The window slides.
        let later = t0 + Duration::from_secs(11);
        assert!(guard.admit(&a, &b, later).is_ok());
        assert!(guard.admit(&a, &b, later).is_ok());
        assert!(guard.admit(&a, &b, later).unwrap_err().tell);
    }
}
