//! The router: turns an [`InboundEvent`] from a channel into `messages_in` rows in the right
//! sessions (DESIGN §4, Inbound), then wakes them.
//!
//! For every wiring of the chat, in priority order, it applies the engage mode, resolves the
//! session by its mode, and writes the row (even seq) in one transaction on the session
//! store's thread. A message that reaches no session is recorded in `dropped_messages`.
//! A platform message id seen twice for the same agent group is stored once.

use crate::db::central::{self, DropRecord, SessionMode, Wiring};
use crate::db::{DbError, DbThread};
use crate::session::{SessionRef, SessionSetup, SessionStore};
use crate::supervisor::Supervisor;
use protocol::{
    InboundContent, MessageId, NewInboundRow, Sender, Seq, SessionConfig, SessionRouting,
};
use rusqlite::Connection;
use std::sync::Arc;

/// A message as a channel adapter reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InboundEvent {
    pub channel_type: String,
    pub platform_id: String,
    pub thread_id: Option<String>,
    pub platform_message_id: String,
    pub sender: Sender,
    pub text: String,
    pub attachments: Vec<String>,
    pub is_mention: bool,
    pub is_group: bool,
    /// A human name for the chat, used when the chat is seen for the first time.
    pub chat_name: Option<String>,
}

/// One row the router wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutedMessage {
    pub session: SessionRef,
    pub message_id: MessageId,
    pub seq: Seq,
}

/// Why routing failed. Retryable when the database was busy; the channel may ask the
/// platform to redeliver.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("storing the message failed: {0}")]
    Db(#[from] DbError),
}

impl RouteError {
    pub fn is_retryable(&self) -> bool {
        match self {
            RouteError::Db(e) => e.is_retryable(),
        }
    }
}

/// A session the message goes to, as decided inside the central DB's transaction.
struct Target {
    session: SessionRef,
    created: bool,
    routing: SessionRouting,
    setup_destinations: Vec<protocol::Destination>,
}

/// Routes inbound events; shared by every channel.
pub struct Router {
    central: Arc<DbThread<Connection>>,
    sessions: Arc<SessionStore>,
    supervisor: Arc<Supervisor>,
    session_config: SessionConfig,
}

impl Router {
    pub fn new(
        central: Arc<DbThread<Connection>>,
        sessions: Arc<SessionStore>,
        supervisor: Arc<Supervisor>,
        session_config: SessionConfig,
    ) -> Arc<Self> {
        Arc::new(Self {
            central,
            sessions,
            supervisor,
            session_config,
        })
    }

    /// Routes one event. Returns the rows written (empty when the message was dropped);
    /// when this returns `Ok`, every row is durable.
    pub async fn route(&self, event: InboundEvent) -> Result<Vec<RoutedMessage>, RouteError> {
        let targets = self.resolve(event.clone()).await?;
        let mut routed = Vec::with_capacity(targets.len());
        for target in targets {
            let message_id = MessageId::generate();
            let content = InboundContent {
                text: event.text.clone(),
                sender: Some(event.sender.clone()),
                attachments: event.attachments.clone(),
            };
            let mut row = NewInboundRow::chat(&content);
            row.id = message_id.clone();
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
            tracing::debug!(session_id = %target.session.id, %seq, "routed");
            self.supervisor.wake(&target.session);
            routed.push(RoutedMessage {
                session: target.session,
                message_id,
                seq,
            });
        }
        Ok(routed)
    }

    /// Decides the target sessions in one central-DB transaction.
    async fn resolve(&self, event: InboundEvent) -> Result<Vec<Target>, DbError> {
        self.central
            .call(move |conn| {
                let tx = conn.transaction()?;
                let name = event.chat_name.clone().unwrap_or_else(|| event.platform_id.clone());
                let (chat, _) =
                    central::ensure_messaging_group(&tx, &event.channel_type, &event.platform_id, &name, event.is_group)?;
                let wirings = central::wirings_for_chat(&tx, &chat.id)?;
                let mut targets = Vec::new();
                let mut reason = if wirings.is_empty() { "chat is not wired to any agent group" } else { "" };
                for wiring in &wirings {
                    if !engages(wiring, &event) {
                        reason = "no wiring engaged";
                        continue;
                    }
                    if !central::first_sighting(
                        &tx,
                        &wiring.agent_group_id,
                        &event.channel_type,
                        &event.platform_id,
                        &event.platform_message_id,
                    )? {
                        tracing::debug!(platform_message_id = %event.platform_message_id, "repeat ignored");
                        continue;
                    }
                    let mode = effective_mode(wiring.session_mode, &event);
                    let key = mode.session_key(&chat.id, event.thread_id.as_deref());
                    let thread = match mode {
                        SessionMode::PerThread => event.thread_id.as_deref(),
                        SessionMode::Shared | SessionMode::AgentShared => None,
                    };
                    let (session, created) =
                        central::resolve_session(&tx, &wiring.agent_group_id, &key, Some(&chat.id), thread)?;
                    let group = central::agent_group(&tx, &wiring.agent_group_id)?;
                    let setup_destinations =
                        if created { central::destinations_for(&tx, &group.id)? } else { Vec::new() };
                    targets.push(Target {
                        session: SessionRef { id: session.id, agent_group: group.id, group_folder: group.folder },
                        created,
                        routing: SessionRouting {
                            channel_type: event.channel_type.clone(),
                            platform_id: event.platform_id.clone(),
                            thread_id: thread.map(str::to_owned),
                        },
                        setup_destinations,
                    });
                }
                if targets.is_empty() && !reason.is_empty() {
                    central::record_drop(
                        &tx,
                        &DropRecord {
                            reason: reason.into(),
                            channel_type: Some(event.channel_type.clone()),
                            platform_id: Some(event.platform_id.clone()),
                            sender: Some(event.sender.id.clone()),
                            message_id: Some(event.platform_message_id.clone()),
                            ..Default::default()
                        },
                    )?;
                }
                tx.commit()?;
                Ok(targets)
            })
            .await
    }
}

/// A threaded message in a group chat gets its own session unless the wiring is agent-shared.
fn effective_mode(mode: SessionMode, event: &InboundEvent) -> SessionMode {
    match mode {
        SessionMode::Shared if event.is_group && event.thread_id.is_some() => {
            SessionMode::PerThread
        }
        SessionMode::Shared | SessionMode::PerThread | SessionMode::AgentShared => mode,
    }
}

/// Whether a wiring's engage mode lets this message wake the agent.
fn engages(wiring: &Wiring, event: &InboundEvent) -> bool {
    match wiring.engage_mode.as_str() {
        "mention" | "mention-sticky" => event.is_mention || !event.is_group,
        // A missing or invalid pattern never matches: wirings are validated when saved.
        _ => wiring
            .engage_pattern
            .as_deref()
            .and_then(|pattern| regex::Regex::new(pattern).ok())
            .is_some_and(|re| re.is_match(&event.text)),
    }
}
