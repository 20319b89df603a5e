//! The router: turns an [`InboundEvent`] from a channel into `messages_in` rows in the right
//! sessions (DESIGN §4, Inbound), then wakes them.
//!
//! The decision is taken in one central-DB transaction ([`plan`]): wirings in priority
//! order, sender access (the chat's unknown-sender policy, the wiring's sender scope), engage
//! mode, session by mode, accumulate or drop, approvals for unknown senders and unwired
//! chats, and a record of every drop. Then each row is written (even seq, durable) through the
//! session store and trigger rows wake their session. A platform message id seen twice for
//! the same agent group is stored once.
//!
//! A direct message `approve <id>` / `deny <id>` is a decision by the sender's platform
//! identity ([`approvals`]); [`Router::decide`] is also what the admin API calls. Approving
//! replays the held messages through the same path.
//!
//! The router also takes the answers to questions agents asked ([`Router::answer_question`],
//! in `answers`) and agents' requests for child agents ([`Router::request_agent`], in
//! `agents`), since both end in rows written into a session and approvals.

mod agents;
mod answers;
pub mod approvals;
pub mod plan;
#[cfg(test)]
mod tests;

use crate::db::DbThread;
use crate::edge::{
    ChatAddress, HostMessage, InboundEvent, RouteError, RouteOutcome, RoutedMessage,
};
use crate::session::{SessionSetup, SessionStore};
use crate::supervisor::Supervisor;
use approvals::{DecideError, Decided, Decider, Decision};
use plan::{PatternCache, PlanSettings, Target};
use protocol::{InboundContent, MessageId, NewInboundRow, SessionConfig};
use rusqlite::Connection;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

pub use crate::session::SessionRef;
pub use agents::created_text;
pub use answers::resolve_option;

/// The router is where every adapter's events go.
impl crate::edge::InboundSink for Router {
    fn push(
        &self,
        event: InboundEvent,
    ) -> crate::edge::BoxFuture<'_, Result<RouteOutcome, RouteError>> {
        Box::pin(self.route_event(event))
    }

    fn answer(
        &self,
        answer: crate::edge::QuestionAnswer,
    ) -> crate::edge::BoxFuture<'_, Result<crate::edge::Answered, crate::edge::AnswerError>> {
        Box::pin(self.answer_question(answer))
    }
}

/// Routes inbound events; shared by every channel and the admin API.
pub struct Router {
    central: Arc<DbThread<Connection>>,
    sessions: Arc<SessionStore>,
    supervisor: Arc<Supervisor>,
    session_config: SessionConfig,
    host_messages: mpsc::UnboundedSender<HostMessage>,
    /// The other end of `host_messages`, until the daemon hands it to delivery.
    host_messages_out: Mutex<Option<mpsc::UnboundedReceiver<HostMessage>>>,
    settings: PlanSettings,
    patterns: Arc<Mutex<PatternCache>>,
    /// Where agent group folders live (agents created by agents get theirs here).
    groups_dir: PathBuf,
}

/// What a router needs.
pub struct RouterParts {
    pub central: Arc<DbThread<Connection>>,
    pub sessions: Arc<SessionStore>,
    pub supervisor: Arc<Supervisor>,
    pub session_config: SessionConfig,
    pub settings: PlanSettings,
    /// Absolute path of `groups/`.
    pub groups_dir: PathBuf,
}

impl Router {
    /// A router with the default settings.
    pub fn new(
        central: Arc<DbThread<Connection>>,
        sessions: Arc<SessionStore>,
        supervisor: Arc<Supervisor>,
        session_config: SessionConfig,
    ) -> Arc<Self> {
        Self::with_parts(RouterParts {
            central,
            sessions,
            supervisor,
            session_config,
            settings: PlanSettings::default(),
            groups_dir: PathBuf::from("groups"),
        })
    }

    pub fn with_parts(parts: RouterParts) -> Arc<Self> {
        let (host_messages, host_messages_out) = mpsc::unbounded_channel();
        Arc::new(Self {
            central: parts.central,
            sessions: parts.sessions,
            supervisor: parts.supervisor,
            session_config: parts.session_config,
            host_messages,
            host_messages_out: Mutex::new(Some(host_messages_out)),
            settings: parts.settings,
            patterns: Arc::default(),
            groups_dir: parts.groups_dir,
        })
    }

    /// The host's own messages to chats (approval requests, answers to decisions), for
    /// delivery to send. `None` after the first call; until it is taken they wait in memory.
    pub fn take_host_messages(&self) -> Option<mpsc::UnboundedReceiver<HostMessage>> {
        self.host_messages_out
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    /// Routes one event and returns the rows written (empty when the message was dropped or
    /// held); when this returns `Ok`, every row is durable. See [`Router::route_event`].
    pub async fn route(&self, event: InboundEvent) -> Result<Vec<RoutedMessage>, RouteError> {
        Ok(self.route_event(event).await?.routed)
    }

    /// Routes one event from a channel and says what became of it. When this returns `Ok`,
    /// every row is durable.
    pub async fn route_event(&self, event: InboundEvent) -> Result<RouteOutcome, RouteError> {
        if !event.is_group
            && let Some((id, decision)) = approvals::parse_command(&event.text)
        {
            return Ok(self.decide_from_chat(&event, &id, decision).await);
        }
        self.deliver(event).await
    }

    /// An approval decision typed in a DM: decided as the sender, answered in the same chat.
    async fn decide_from_chat(
        &self,
        event: &InboundEvent,
        id: &str,
        decision: Decision,
    ) -> RouteOutcome {
        let decider = Decider::User(event.sender.id.clone());
        let answer = match self.decide(id, decider, decision).await {
            Ok(decided) => format!("approval {id}: {}", decided.status),
            Err(e) => format!("approval {id} not decided: {e}"),
        };
        let _ = self.host_messages.send(HostMessage {
            to: ChatAddress {
                channel_type: event.channel_type.clone(),
                platform_id: event.platform_id.clone(),
                thread_id: event.thread_id.clone(),
            },
            text: answer.clone(),
            buttons: Vec::new(),
        });
        RouteOutcome {
            decision: Some(answer),
            ..RouteOutcome::default()
        }
    }

    /// Decides an approval, then replays what it held (approve) and projects changed
    /// destinations.
    pub async fn decide(
        &self,
        id: &str,
        decider: Decider,
        decision: Decision,
    ) -> Result<Decided, DecideError> {
        let approval_id = id.to_owned();
        let groups_dir = self.groups_dir.clone();
        let reason = match &decision {
            Decision::Deny { reason } => reason.clone(),
            Decision::Approve { .. } => None,
        };
        let decided = self
            .central
            .call(move |conn| {
                Ok(approvals::decide(
                    conn,
                    &approval_id,
                    &decider,
                    &decision,
                    &groups_dir,
                ))
            })
            .await??;
        if let Some(group) = &decided.rewired_group {
            self.supervisor.reproject_group(group).await;
        }
        if decided.approval.kind == crate::db::central::ApprovalKind::CreateAgent {
            self.after_agent_decision(&decided, reason).await;
        }
        if decided.status == crate::db::central::ApprovalStatus::Approved {
            for held in &decided.approval.held {
                let event: InboundEvent = match serde_json::from_value(held.clone()) {
                    Ok(event) => event,
                    Err(e) => {
                        tracing::warn!(approval = %id, error = %e, "a held message cannot be read back");
                        continue;
                    }
                };
                match self.deliver(event).await {
                    Ok(outcome) => {
                        tracing::info!(approval = %id, rows = outcome.routed.len(), "held message replayed");
                    }
                    Err(e) => {
                        tracing::warn!(approval = %id, error = %e, "replaying a held message failed")
                    }
                }
            }
        }
        Ok(decided)
    }

    /// Plans the event, writes its rows, wakes their sessions, and notifies approvers.
    async fn deliver(&self, event: InboundEvent) -> Result<RouteOutcome, RouteError> {
        let settings = self.settings;
        let patterns = Arc::clone(&self.patterns);
        let planned_event = event.clone();
        let plan = self
            .central
            .call(move |conn| {
                let mut patterns = patterns
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                plan::plan(conn, &planned_event, settings, &mut patterns)
            })
            .await?;
        crate::metrics::global().router_decided(
            &event.channel_type,
            plan.held.len(),
            &plan.dropped,
        );
        for notification in plan.notifications {
            let _ = self.host_messages.send(notification);
        }
        let mut routed = Vec::with_capacity(plan.targets.len());
        for target in plan.targets {
            routed.push(self.write(&event, target).await?);
        }
        Ok(RouteOutcome {
            routed,
            held: plan.held,
            dropped: plan.dropped,
            decision: None,
        })
    }

    /// Writes one row (and, for a new session, its routing, config and destinations).
    async fn write(
        &self,
        event: &InboundEvent,
        target: Target,
    ) -> Result<RoutedMessage, RouteError> {
        let message_id = MessageId::generate();
        // Uploads go into the inbox before the row that names them, as agent-to-agent files do.
        let mut attachments = event.attachments.clone();
        if !event.uploads.is_empty() {
            // The session's folder is the store's to create, with its modes and group: a
            // first message of a new session opens it before anything is put in its inbox.
            self.sessions
                .with_inbound(&target.session, |_, _| Ok(()))
                .await?;
            let inbox = self
                .sessions
                .paths(&target.session)
                .inbox(message_id.as_str());
            let uploads = event.uploads.clone();
            tokio::task::spawn_blocking(move || copy_uploads(&uploads, &inbox))
                .await
                .map_err(|e| RouteError::Upload {
                    name: String::new(),
                    reason: e.to_string(),
                })??;
            attachments.extend(event.uploads.iter().map(|upload| upload.name.clone()));
        }
        let content = InboundContent {
            text: event.text.clone(),
            sender: Some(event.sender.clone()),
            attachments,
            sender_role: target.sender_role.clone(),
            platform_message_id: Some(event.platform_message_id.clone()),
            ..InboundContent::default()
        };
        let mut row = NewInboundRow::chat(&content);
        if event.channel_type == crate::edge::WEBHOOK_CHANNEL_TYPE {
            row.kind = protocol::InboundKind::Webhook;
        }
        row.id = message_id.clone();
        row.trigger = target.trigger;
        row.channel_type = Some(event.channel_type.clone());
        row.platform_id = Some(event.platform_id.clone());
        row.thread_id = event.thread_id.clone();
        let setup = target.created.then(|| SessionSetup {
            routing: Some(target.routing.clone()),
            config: self.session_config.clone(),
            destinations: target.setup_destinations.clone(),
        });
        let seq = self
            .sessions
            .with_inbound(&target.session, move |tx, _| {
                if let Some(setup) = setup {
                    if let Some(routing) = &setup.routing {
                        protocol::inbound::set_routing(tx, routing)?;
                    }
                    protocol::inbound::set_config(tx, &setup.config)?;
                    protocol::inbound::set_destinations(tx, &setup.destinations)?;
                }
                Ok(protocol::inbound::insert(tx, &row, None)?)
            })
            .await?;
        tracing::debug!(session_id = %target.session.id, %seq, trigger = target.trigger, "routed");
        crate::metrics::global().message_routed(&event.channel_type);
        if target.trigger {
            self.supervisor.wake(&target.session);
        }
        Ok(RoutedMessage {
            session: target.session,
            message_id,
            seq,
            trigger: target.trigger,
        })
    }
}

/// Copies a channel's staged uploads into a session's inbox folder (host-owned; the setgid
/// `in/` gives the copies the session's group).
fn copy_uploads(
    uploads: &[crate::edge::Upload],
    inbox: &std::path::Path,
) -> Result<(), RouteError> {
    let failed = |name: &str, reason: String| RouteError::Upload {
        name: name.to_owned(),
        reason,
    };
    std::fs::create_dir_all(inbox).map_err(|e| failed("", format!("creating the inbox: {e}")))?;
    for upload in uploads {
        if !crate::edge::Upload::is_valid_name(&upload.name) {
            return Err(failed(&upload.name, "not a plain file name".into()));
        }
        std::fs::copy(&upload.path, inbox.join(&upload.name))
            .map_err(|e| failed(&upload.name, e.to_string()))?;
    }
    Ok(())
}
