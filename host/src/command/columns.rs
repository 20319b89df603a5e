//! The columns of the admin CLI's tables: for each listing, the header and the field of the
//! listed JSON objects it shows (`a.b` for a nested field). `command::admin` picks one per
//! verb; `command::table` draws it.

pub const GROUPS: &[(&str, &str)] = &[
    ("ID", "id"),
    ("NAME", "name"),
    ("LIMITS", "container_config"),
    ("CREATE AGENTS", "create_agent_policy"),
    ("PARENT", "parent_agent_group_id"),
];
pub const CHATS: &[(&str, &str)] = &[
    ("ID", "id"),
    ("CHANNEL", "channel_type"),
    ("PLATFORM ID", "platform_id"),
    ("NAME", "name"),
    ("GROUP CHAT", "is_group"),
    ("UNKNOWN SENDERS", "unknown_sender_policy"),
];
pub const WIRINGS: &[(&str, &str)] = &[
    ("ID", "id"),
    ("CHAT", "chat_address"),
    ("GROUP", "agent_group_id"),
    ("SESSIONS", "session_mode"),
    ("ENGAGE", "engage_mode"),
    ("PATTERN", "engage_pattern"),
    ("SENDERS", "sender_scope"),
    ("IGNORED", "ignored_message_policy"),
    ("PRIORITY", "priority"),
];
pub const DESTINATIONS: &[(&str, &str)] = &[
    ("GROUP", "agent_group_id"),
    ("NAME", "name"),
    ("TYPE", "target.type"),
    ("TARGET", "chat_address"),
    ("THREAD", "target.thread_id"),
    ("AGENT", "target.agent_group_id"),
    ("DISPLAY NAME", "display_name"),
];
pub const USERS: &[(&str, &str)] = &[("ID", "id"), ("NAME", "name"), ("DMS", "dms")];
pub const ROLES: &[(&str, &str)] = &[
    ("USER", "user_id"),
    ("ROLE", "role"),
    ("GROUP", "agent_group_id"),
];
pub const MEMBERS: &[(&str, &str)] = &[("GROUP", "agent_group_id"), ("USER", "user_id")];
pub const SESSIONS: &[(&str, &str)] = &[
    ("ID", "session.id"),
    ("GROUP", "session.agent_group_id"),
    ("KEY", "session.session_key"),
    ("STATUS", "session.status"),
    ("CONTAINER", "container"),
    ("ASKED BY", "session.source_session_id"),
    ("FAILED", "session.failed_reason"),
];
pub const APPROVALS: &[(&str, &str)] = &[
    ("ID", "id"),
    ("KIND", "kind"),
    ("STATUS", "status"),
    ("GROUP", "agent_group_id"),
    ("REQUESTER", "requester"),
    ("APPROVERS", "approvers"),
    ("SUMMARY", "summary"),
];
pub const DROPPED: &[(&str, &str)] = &[
    ("DIRECTION", "direction"),
    ("REASON", "reason"),
    ("CHAT", "chat"),
    ("SENDER", "sender"),
    ("GROUP", "agent_group_id"),
    ("COUNT", "count"),
    ("LAST SEEN", "last_seen"),
];
pub const CHANNELS: &[(&str, &str)] = &[
    ("CHANNEL", "channel_type"),
    ("HEALTH", "health.state"),
    ("ERROR", "health.last_error"),
];
pub const ADAPTERS: &[(&str, &str)] = &[
    ("NAME", "name"),
    ("CHANNEL", "channel_type"),
    ("CREATED", "created"),
    ("LAST SEEN", "last_seen"),
    ("HEALTH", "health.state"),
    ("ERROR", "health.last_error"),
];
pub const TOKENS: &[(&str, &str)] = &[
    ("ID", "id"),
    ("USER", "user_id"),
    ("SCOPE", "scope"),
    ("CREATED", "created"),
    ("LAST USED", "last_used"),
    ("REVOKED", "revoked"),
];
pub const TASKS: &[(&str, &str)] = &[
    ("ID", "task_id"),
    ("GROUP", "agent_group_id"),
    ("SESSION", "session_id"),
    ("STATUS", "status"),
    ("NEXT RUN", "next_run"),
    ("SCHEDULE", "schedule"),
    ("PROMPT", "prompt"),
];
