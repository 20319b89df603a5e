//! The router's decision, taken in one central-DB transaction: for one [`InboundEvent`],
//! which sessions get a row (and whether it wakes the agent), which messages are held for an
//! approval, and what is dropped and why. [`plan`] is pure database work, so the table-driven
//! tests in `tests.rs` check it without containers.
//!
//! Per wiring, in priority order: **access** ([`access`]: known senders pass; otherwise the
//! chat's unknown-sender policy and the wiring's sender scope decide), then **engage**
//! (`engages`: pattern, mention, mention-sticky), then the session by its mode
//! ([`effective_mode`]: a threaded message in a group chat gets a per-thread session unless
//! the wiring is agent-shared). A message that does not engage is dropped, or stored as
//! context (trigger 0) when the wiring accumulates. Every drop is recorded.

use super::InboundEvent;
use crate::db::DbError;
use crate::db::central::approvals::{self as approval_db, ApprovalKind, NewApproval};
use crate::db::central::{
    self, DropRecord, EngageMode, IgnoredMessagePolicy, MessagingGroup, SenderScope, SessionMode,
    UnknownSenderPolicy, Wiring, people,
};
use crate::edge::{Button, ChatAddress, HostMessage};
use crate::session::SessionRef;
use protocol::{AgentGroupId, Destination, SessionRouting};
use rusqlite::Connection;
use std::collections::HashMap;

/// How long an approval stays open by default: a week.
pub const DEFAULT_APPROVAL_TTL_MS: i64 = 7 * 24 * 3600 * 1000;
/// Longest excerpt of a held message shown to an approver.
const EXCERPT_CHARS: usize = 200;

/// A session a message goes to, as decided inside the transaction.
#[derive(Clone, Debug)]
pub struct Target {
    pub session: SessionRef,
    pub created: bool,
    pub routing: SessionRouting,
    /// The group's destinations, for a session created by this message.
    pub setup_destinations: Vec<Destination>,
    /// Whether the row wakes the agent (false: context only, rides along with the next turn).
    pub trigger: bool,
    /// The sender's role for this agent group (`owner` / `admin`), if any.
    pub sender_role: Option<String>,
}

/// Everything the router decided about one event.
#[derive(Debug, Default)]
pub struct Plan {
    pub targets: Vec<Target>,
    /// Approvals now holding this message.
    pub held: Vec<String>,
    /// Messages to approvers about new approvals.
    pub notifications: Vec<HostMessage>,
    /// Why the message reached no agent (recorded in `dropped_messages`).
    pub dropped: Vec<String>,
}

/// Compiled engage patterns, kept across events (the same few patterns match every message).
#[derive(Default)]
pub struct PatternCache {
    compiled: HashMap<String, Option<regex::Regex>>,
}

impl PatternCache {
    /// Whether `pattern` matches `text`; an invalid pattern never matches.
    fn is_match(&mut self, pattern: &str, text: &str) -> bool {
        if self.compiled.len() > 4096 {
            self.compiled.clear();
        }
        self.compiled
            .entry(pattern.to_owned())
            .or_insert_with(|| central::wirings::compile_pattern(pattern).ok())
            .as_ref()
            .is_some_and(|re| re.is_match(text))
    }
}

/// Settings of the decision.
#[derive(Clone, Copy, Debug)]
pub struct PlanSettings {
    pub approval_ttl_ms: i64,
}

impl Default for PlanSettings {
    fn default() -> Self {
        Self {
            approval_ttl_ms: DEFAULT_APPROVAL_TTL_MS,
        }
    }
}

/// What a wiring's access rules say about a sender.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access {
    Allow,
    Deny(&'static str),
    AskApproval,
}

/// Known senders pass; unknown ones meet the chat's policy, then the wiring's scope.
pub fn access(known: bool, policy: UnknownSenderPolicy, scope: SenderScope) -> Access {
    if known {
        return Access::Allow;
    }
    match (policy, scope) {
        (UnknownSenderPolicy::Strict, _) => Access::Deny("unknown sender (chat policy strict)"),
        (UnknownSenderPolicy::RequestApproval, _) => Access::AskApproval,
        (UnknownSenderPolicy::Public, SenderScope::All) => Access::Allow,
        (UnknownSenderPolicy::Public, SenderScope::Known) => {
            Access::Deny("unknown sender (wiring accepts known senders only)")
        }
    }
}

/// A threaded message in a group chat gets its own session unless the wiring is agent-shared.
pub fn effective_mode(mode: SessionMode, event: &InboundEvent) -> SessionMode {
    match mode {
        SessionMode::Shared if event.is_group && event.thread_id.is_some() => {
            SessionMode::PerThread
        }
        SessionMode::Shared | SessionMode::PerThread | SessionMode::AgentShared => mode,
    }
}

/// Whether a wiring's engage mode lets this message wake the agent. In a direct chat every
/// message counts as a mention.
fn engages(
    conn: &Connection,
    wiring: &Wiring,
    event: &InboundEvent,
    patterns: &mut PatternCache,
) -> Result<bool, DbError> {
    let mentioned = event.is_mention || !event.is_group;
    Ok(match wiring.engage_mode {
        EngageMode::Mention => mentioned,
        EngageMode::MentionSticky => {
            mentioned
                || match &event.thread_id {
                    Some(thread) => central::wirings::is_sticky(conn, &wiring.id, thread)?,
                    None => false,
                }
        }
        // A missing or invalid pattern never matches: wirings are validated when saved.
        EngageMode::Pattern => wiring
            .engage_pattern
            .as_deref()
            .is_some_and(|pattern| patterns.is_match(pattern, &event.text)),
    })
}

/// Decides where `event` goes, in one transaction.
pub fn plan(
    conn: &mut Connection,
    event: &InboundEvent,
    settings: PlanSettings,
    patterns: &mut PatternCache,
) -> Result<Plan, DbError> {
    let tx = conn.transaction()?;
    let name = event
        .chat_name
        .clone()
        .unwrap_or_else(|| event.platform_id.clone());
    let (chat, _) = central::ensure_messaging_group(
        &tx,
        &event.channel_type,
        &event.platform_id,
        &name,
        event.is_group,
    )?;
    // A platform user becomes a crabpot user with their display name, and their direct chat
    // their DM. Web conversations are chats with one agent group, not a person's DM.
    let dm = (!event.is_group && event.channel_type != "web").then_some(event.platform_id.as_str());
    people::note_sender(&tx, &event.channel_type, &event.sender, dm)?;
    let wirings = central::wirings_for_chat(&tx, &chat.id)?;
    let mut plan = Plan::default();
    if wirings.is_empty() {
        if event.is_mention || !event.is_group {
            hold_for_registration(&tx, &chat, event, settings, &mut plan)?;
        } else {
            drop(
                &tx,
                event,
                None,
                "chat is not wired to any agent group",
                &mut plan,
            )?;
        }
        tx.commit()?;
        return Ok(plan);
    }
    for wiring in &wirings {
        let group = &wiring.agent_group_id;
        let known = people::is_known(&tx, &event.sender.id, group)?;
        let engaged = engages(&tx, wiring, event, patterns)?;
        match (
            access(known, chat.unknown_sender_policy, wiring.sender_scope),
            engaged,
        ) {
            (Access::Allow, true) => push_target(&tx, &chat, wiring, event, true, &mut plan)?,
            (Access::Allow, false) => match wiring.ignored_message_policy {
                IgnoredMessagePolicy::Accumulate => {
                    push_target(&tx, &chat, wiring, event, false, &mut plan)?;
                }
                IgnoredMessagePolicy::Drop => {
                    drop(&tx, event, Some(group), "did not engage", &mut plan)?;
                }
            },
            (Access::Deny(reason), _) => drop(&tx, event, Some(group), reason, &mut plan)?,
            (Access::AskApproval, true) => {
                hold_for_sender(&tx, &chat, group, event, settings, &mut plan)?;
            }
            (Access::AskApproval, false) => drop(
                &tx,
                event,
                Some(group),
                "unknown sender (did not engage, so no approval was asked)",
                &mut plan,
            )?,
        }
    }
    tx.commit()?;
    Ok(plan)
}

fn push_target(
    tx: &Connection,
    chat: &MessagingGroup,
    wiring: &Wiring,
    event: &InboundEvent,
    trigger: bool,
    plan: &mut Plan,
) -> Result<(), DbError> {
    let group = &wiring.agent_group_id;
    if !central::first_sighting(
        tx,
        group,
        &event.channel_type,
        &event.platform_id,
        &event.platform_message_id,
    )? {
        tracing::debug!(platform_message_id = %event.platform_message_id, %group, "repeat ignored");
        return Ok(());
    }
    if trigger
        && wiring.engage_mode == EngageMode::MentionSticky
        && event.is_mention
        && let Some(thread) = &event.thread_id
    {
        central::wirings::mark_sticky(tx, &wiring.id, thread)?;
    }
    let mode = effective_mode(wiring.session_mode, event);
    let key = mode.session_key(&chat.id, event.thread_id.as_deref());
    let thread = match mode {
        SessionMode::PerThread => event.thread_id.as_deref(),
        SessionMode::Shared | SessionMode::AgentShared => None,
    };
    let (session, created) = central::resolve_session(tx, group, &key, Some(&chat.id), thread)?;
    let agent_group = central::agent_group(tx, group)?;
    let setup_destinations = if created {
        central::destinations_for(tx, group)?
    } else {
        Vec::new()
    };
    plan.targets.push(Target {
        session: SessionRef {
            id: session.id,
            agent_group: agent_group.id,
            group_folder: agent_group.folder,
        },
        created,
        routing: SessionRouting {
            channel_type: event.channel_type.clone(),
            platform_id: event.platform_id.clone(),
            thread_id: thread.map(str::to_owned),
        },
        setup_destinations,
        trigger,
        sender_role: sender_role(tx, &event.sender.id, group)?,
    });
    Ok(())
}

/// `owner` or `admin` when the sender holds that role for the group (global or its own).
fn sender_role(
    tx: &Connection,
    user: &str,
    group: &AgentGroupId,
) -> Result<Option<String>, DbError> {
    Ok(people::role_for(tx, user, group)?.map(|role| match role {
        people::Role::Owner => protocol::content::ROLE_OWNER.to_owned(),
        people::Role::Admin => protocol::content::ROLE_ADMIN.to_owned(),
    }))
}

fn drop(
    tx: &Connection,
    event: &InboundEvent,
    group: Option<&AgentGroupId>,
    reason: &str,
    plan: &mut Plan,
) -> Result<(), DbError> {
    central::record_drop(
        tx,
        &DropRecord {
            reason: reason.into(),
            channel_type: Some(event.channel_type.clone()),
            platform_id: Some(event.platform_id.clone()),
            sender: Some(event.sender.id.clone()),
            agent_group_id: group.cloned(),
            message_id: Some(event.platform_message_id.clone()),
            ..Default::default()
        },
    )?;
    plan.dropped.push(match group {
        Some(group) => format!("{group}: {reason}"),
        None => reason.to_owned(),
    });
    Ok(())
}

/// Holds a message from an unknown sender until an approver decides.
fn hold_for_sender(
    tx: &Connection,
    chat: &MessagingGroup,
    group: &AgentGroupId,
    event: &InboundEvent,
    settings: PlanSettings,
    plan: &mut Plan,
) -> Result<(), DbError> {
    let sender = &event.sender.id;
    if approval_db::sender_denied(tx, group, sender)? {
        return drop(
            tx,
            event,
            Some(group),
            "sender was denied by an approver",
            plan,
        );
    }
    if let Some(open) = approval_db::pending_for_sender(tx, group, sender)? {
        return hold_in(tx, &open, event, Some(group), plan);
    }
    let summary = format!(
        "{} wants to talk to agent group {group} in {}: {:?}",
        who(event),
        chat.address(),
        excerpt(&event.text)
    );
    let approval = approval_db::create_approval(
        tx,
        &NewApproval {
            kind: ApprovalKind::Sender,
            agent_group_id: Some(group.clone()),
            messaging_group_id: Some(chat.id.clone()),
            requester: sender.clone(),
            summary,
            approvers: people::choose_approvers(tx, Some(group), &event.channel_type)?,
            held: Some(held_json(event)),
            payload: None,
            ttl_ms: settings.approval_ttl_ms,
        },
    )?;
    tracing::info!(approval = %approval.id, %sender, %group, "sender awaits approval");
    notify_approvers(tx, &approval, &event.channel_type, plan)?;
    plan.held.push(approval.id);
    Ok(())
}

/// Holds a mention (or DM) in an unwired chat until an approver wires it to an agent group.
fn hold_for_registration(
    tx: &Connection,
    chat: &MessagingGroup,
    event: &InboundEvent,
    settings: PlanSettings,
    plan: &mut Plan,
) -> Result<(), DbError> {
    if let Some(open) = approval_db::pending_for_chat(tx, &chat.id)? {
        return hold_in(tx, &open, event, None, plan);
    }
    let summary = format!(
        "{} wrote in {}, which is not wired to any agent group: {:?}; approve with an agent group to wire it",
        who(event),
        chat.address(),
        excerpt(&event.text)
    );
    let approval = approval_db::create_approval(
        tx,
        &NewApproval {
            kind: ApprovalKind::Channel,
            agent_group_id: None,
            messaging_group_id: Some(chat.id.clone()),
            requester: event.sender.id.clone(),
            summary,
            approvers: people::choose_approvers(tx, None, &event.channel_type)?,
            held: Some(held_json(event)),
            payload: None,
            ttl_ms: settings.approval_ttl_ms,
        },
    )?;
    tracing::info!(approval = %approval.id, chat = %chat.address(), "unwired chat awaits registration");
    notify_approvers(tx, &approval, &event.channel_type, plan)?;
    plan.held.push(approval.id);
    Ok(())
}

/// Adds the message to an open approval, once per platform message id.
fn hold_in(
    tx: &Connection,
    open: &central::Approval,
    event: &InboundEvent,
    group: Option<&AgentGroupId>,
    plan: &mut Plan,
) -> Result<(), DbError> {
    let already = open.held.iter().any(|held| {
        held.get("platform_message_id").and_then(|v| v.as_str())
            == Some(event.platform_message_id.as_str())
    });
    if !already && !approval_db::append_held(tx, &open.id, &held_json(event))? {
        return drop(
            tx,
            event,
            group,
            "too many messages await the same approval",
            plan,
        );
    }
    plan.held.push(open.id.clone());
    Ok(())
}

fn held_json(event: &InboundEvent) -> serde_json::Value {
    serde_json::to_value(event).unwrap_or(serde_json::Value::Null)
}

fn who(event: &InboundEvent) -> String {
    match &event.sender.name {
        Some(name) if name != &event.sender.id => format!("{} ({name})", event.sender.id),
        _ => event.sender.id.clone(),
    }
}

fn excerpt(text: &str) -> String {
    let mut excerpt: String = text.chars().take(EXCERPT_CHARS).collect();
    if text.chars().count() > EXCERPT_CHARS {
        excerpt.push('…');
    }
    excerpt
}

/// Asks each approver in their DM: the one on the requester's platform, else any they have.
fn notify_approvers(
    tx: &Connection,
    approval: &central::Approval,
    platform: &str,
    plan: &mut Plan,
) -> Result<(), DbError> {
    plan.notifications
        .extend(approval_requests(tx, approval, platform)?);
    Ok(())
}

/// The messages asking an approval's approvers to decide, one per approver with a DM: the
/// one on `platform` (the requester's), else any they have.
pub fn approval_requests(
    tx: &Connection,
    approval: &central::Approval,
    platform: &str,
) -> Result<Vec<HostMessage>, DbError> {
    let how = match approval.kind {
        ApprovalKind::Sender | ApprovalKind::CreateAgent => format!(
            "Reply `approve {id}` or `deny {id} [reason]`, or run `crabpot approvals approve {id}`.",
            id = approval.id
        ),
        ApprovalKind::Channel => format!(
            "Reply `approve {id} <agent group>` or `deny {id} [reason]`, or run `crabpot approvals approve {id} --group <agent group>`.",
            id = approval.id
        ),
    };
    let text = format!(
        "crabpot approval {}: {}\n{how}",
        approval.id, approval.summary
    );
    let buttons = approval_buttons(tx, approval)?;
    let mut messages = Vec::new();
    for approver in &approval.approvers {
        let dms = people::dms_of(tx, approver)?;
        let dm = dms
            .iter()
            .find(|(channel, _)| channel == platform)
            .or_else(|| dms.first());
        if let Some((channel_type, platform_id)) = dm {
            messages.push(HostMessage {
                to: ChatAddress {
                    channel_type: channel_type.clone(),
                    platform_id: platform_id.clone(),
                    thread_id: None,
                },
                text: text.clone(),
                buttons: buttons.clone(),
            });
        }
    }
    Ok(messages)
}

/// The most agent groups offered as buttons on a chat's registration.
const MAX_GROUP_BUTTONS: usize = 5;

/// Buttons for the replies an approval request asks for: approve (for a chat's
/// registration, once per agent group, the first few) and deny.
fn approval_buttons(tx: &Connection, approval: &central::Approval) -> Result<Vec<Button>, DbError> {
    let id = &approval.id;
    let mut buttons = match approval.kind {
        ApprovalKind::Sender | ApprovalKind::CreateAgent => vec![Button {
            label: "Approve".into(),
            answer: format!("approve {id}"),
        }],
        ApprovalKind::Channel => central::groups::list_agent_groups(tx)?
            .into_iter()
            .take(MAX_GROUP_BUTTONS)
            .map(|group| Button {
                label: format!("Wire to {}", group.id),
                answer: format!("approve {id} {}", group.id),
            })
            .collect(),
    };
    buttons.push(Button {
        label: "Deny".into(),
        answer: format!("deny {id}"),
    });
    Ok(buttons)
}
