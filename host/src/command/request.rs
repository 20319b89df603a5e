//! The admin API request behind each `crabpot <resource> <verb>` ([`request`]): the
//! resource, the verb, the JSON body built from the command's arguments, and how the answer is
//! shown to people ([`Render`]). `command::admin` sends it and renders the answer.

use super::columns::{
    ADAPTERS, APPROVALS, CHANNELS, CHATS, DESTINATIONS, DROPPED, GROUPS, MEMBERS, ROLES, SESSIONS,
    TASKS, TOKENS, USERS, WIRINGS,
};
use super::table::cell;
use super::{
    AdaptersCommand, ApprovalsCommand, ChannelsCommand, ChatsCommand, Command, DestinationsCommand,
    DroppedCommand, GroupsCommand, LimitArgs, MembersCommand, RolesCommand, SessionsCommand,
    TasksCommand, TokensCommand, UsersCommand, WebCommand, WiringSettingsArgs, WiringsCommand,
};
use serde_json::{Value, json};

/// How an answer is shown to people.
pub(super) enum Render {
    /// A table with these columns, each a field of the listed objects (`a.b` for nested).
    Table(&'static [(&'static str, &'static str)]),
    /// The document as an outline.
    Outline,
    /// One line made from the answer.
    Line(fn(&Value) -> String),
}

/// The API call behind a command: resource, verb, body, and how to show the answer.
pub(super) fn request(command: &Command) -> Option<(&'static str, &'static str, Value, Render)> {
    use Render::{Line, Outline, Table};
    let ok = |_: &Value| "done".to_owned();
    Some(match command {
        Command::Serve(_) | Command::Chat(_) | Command::Status | Command::Service(_) => {
            return None;
        }
        Command::Groups(verb) => match verb {
            GroupsCommand::List => ("groups", "list", json!({}), Table(GROUPS)),
            GroupsCommand::Show { id } => ("groups", "show", json!({ "id": id }), Outline),
            GroupsCommand::Create {
                folder,
                name,
                instructions,
                limits,
            } => {
                let mut body =
                    json!({ "folder": folder, "name": name, "instructions": instructions });
                merge(&mut body, limits_json(limits));
                (
                    "groups",
                    "create",
                    body,
                    Line(|v| {
                        format!(
                            "created agent group {} (folder {}{})",
                            cell(v.pointer("/group/id")),
                            cell(v.get("folder")),
                            if v.get("instructions_written") == Some(&Value::Bool(true)) {
                                ", AGENT.md written"
                            } else {
                                ", existing AGENT.md kept"
                            }
                        )
                    }),
                )
            }
            GroupsCommand::Update {
                id,
                name,
                create_agents,
                limits,
                image,
                git_author,
                allow_egress,
                deny_egress,
            } => {
                let mut body = json!({
                    "id": id,
                    "name": name,
                    "create_agents": create_agents,
                    "image": image,
                    "git_author": git_author,
                    "allow_egress": allow_egress,
                    "deny_egress": deny_egress,
                });
                merge(&mut body, limits_json(limits));
                (
                    "groups",
                    "update",
                    body,
                    Line(|v| format!("updated agent group {}", cell(v.get("id")))),
                )
            }
            GroupsCommand::Delete { id } => (
                "groups",
                "delete",
                json!({ "id": id }),
                Line(|v| {
                    format!(
                        "deleted agent group {} ({} container(s) stopped; its session files stay on disk)",
                        cell(v.pointer("/deleted/id")),
                        cell(v.get("containers_stopped"))
                    )
                }),
            ),
            GroupsCommand::Restart { id } => (
                "groups",
                "restart",
                json!({ "id": id }),
                Line(|v| {
                    format!(
                        "restarted agent group {}: {} container(s) stopped",
                        cell(v.get("group")),
                        cell(v.get("containers_stopped"))
                    )
                }),
            ),
        },
        Command::Chats(verb) => match verb {
            ChatsCommand::List => ("chats", "list", json!({}), Table(CHATS)),
            ChatsCommand::Show { chat } => ("chats", "show", json!({ "id": chat }), Outline),
            ChatsCommand::Create {
                channel_type,
                platform_id,
                name,
                group_chat,
                unknown_senders,
            } => (
                "chats",
                "create",
                json!({
                    "channel_type": channel_type,
                    "platform_id": platform_id,
                    "name": name,
                    "is_group": group_chat,
                    "unknown_sender_policy": unknown_senders,
                }),
                Line(|v| {
                    format!(
                        "created chat {} ({}/{})",
                        cell(v.get("id")),
                        cell(v.get("channel_type")),
                        cell(v.get("platform_id"))
                    )
                }),
            ),
            ChatsCommand::Update {
                chat,
                name,
                group_chat,
                unknown_senders,
            } => (
                "chats",
                "update",
                json!({
                    "id": chat,
                    "name": name,
                    "is_group": group_chat,
                    "unknown_sender_policy": unknown_senders,
                }),
                Line(|v| format!("updated chat {}", cell(v.get("id")))),
            ),
            ChatsCommand::Delete { chat } => (
                "chats",
                "delete",
                json!({ "id": chat }),
                Line(|v| {
                    format!(
                        "deleted chat {} ({}/{})",
                        cell(v.get("id")),
                        cell(v.get("channel_type")),
                        cell(v.get("platform_id"))
                    )
                }),
            ),
        },
        Command::Wirings(verb) => match verb {
            WiringsCommand::List { chat, group } => (
                "wirings",
                "list",
                json!({ "chat": chat, "group": group }),
                Table(WIRINGS),
            ),
            WiringsCommand::Create {
                chat,
                group,
                destination,
                settings,
            } => {
                let mut body = json!({ "chat": chat, "group": group, "destination": destination });
                merge(&mut body, settings_json(settings));
                (
                    "wirings",
                    "create",
                    body,
                    Line(|v| {
                        format!(
                            "created wiring {}: {} -> {} (the group reaches the chat as destination {})",
                            cell(v.pointer("/wiring/id")),
                            cell(v.pointer("/wiring/chat_address")),
                            cell(v.pointer("/wiring/agent_group_id")),
                            cell(v.get("destination"))
                        )
                    }),
                )
            }
            WiringsCommand::Update { id, settings } => {
                let mut body = json!({ "id": id });
                merge(&mut body, settings_json(settings));
                (
                    "wirings",
                    "update",
                    body,
                    Line(|v| format!("updated wiring {}", cell(v.get("id")))),
                )
            }
            WiringsCommand::Delete { id } => (
                "wirings",
                "delete",
                json!({ "id": id }),
                Line(|v| {
                    format!(
                        "deleted wiring {} (the group's destination for the chat stays; see `crabpot destinations`)",
                        cell(v.get("id"))
                    )
                }),
            ),
        },
        Command::Destinations(verb) => match verb {
            DestinationsCommand::List { group } => (
                "destinations",
                "list",
                json!({ "group": group }),
                Table(DESTINATIONS),
            ),
            DestinationsCommand::Add {
                group,
                name,
                chat,
                thread,
                agent,
                webhook,
                display_name,
            } => (
                "destinations",
                "add",
                json!({
                    "group": group, "name": name, "chat": chat, "thread": thread,
                    "agent": agent, "webhook": webhook, "display_name": display_name,
                }),
                Line(|v| {
                    format!(
                        "agent group {} may now send to {}",
                        cell(v.get("agent_group_id")),
                        cell(v.get("name"))
                    )
                }),
            ),
            DestinationsCommand::Remove { group, name } => (
                "destinations",
                "remove",
                json!({ "group": group, "name": name }),
                Line(ok),
            ),
        },
        Command::Users(verb) => match verb {
            UsersCommand::List => ("users", "list", json!({}), Table(USERS)),
            UsersCommand::Create { id, name, dm } => (
                "users",
                "create",
                json!({ "id": id, "name": name, "dm": dm }),
                Line(|v| format!("created user {}", cell(v.get("id")))),
            ),
            UsersCommand::Passwd { name } => (
                "users",
                "passwd",
                // The password is added by `run`, from stdin.
                json!({ "user": name }),
                Line(|v| format!("password set for {}", cell(v.get("user_id")))),
            ),
        },
        Command::Tokens(verb) => match verb {
            TokensCommand::Create { user, scope } => (
                "tokens",
                "create",
                json!({ "user": user, "scope": scope }),
                Line(|v| {
                    format!(
                        "created token {} for {} (scope {}); send it as Authorization: Bearer (shown once, keep it secret):\n{}",
                        cell(v.get("id")),
                        cell(v.get("user_id")),
                        cell(v.get("scope")),
                        cell(v.get("secret"))
                    )
                }),
            ),
            TokensCommand::List => ("tokens", "list", json!({}), Table(TOKENS)),
            TokensCommand::Revoke { id } => (
                "tokens",
                "revoke",
                json!({ "id": id }),
                Line(|v| format!("revoked token {}: it no longer works", cell(v.get("id")))),
            ),
        },
        Command::Web(verb) => match verb {
            WebCommand::LoginLink { user, ttl_minutes } => (
                "web",
                "login-link",
                json!({ "user": user, "ttl_minutes": ttl_minutes }),
                Line(|v| cell(v.get("url"))),
            ),
        },
        Command::Roles(verb) => match verb {
            RolesCommand::List => ("roles", "list", json!({}), Table(ROLES)),
            RolesCommand::Grant { user, role, group } => (
                "roles",
                "grant",
                json!({ "user": user, "role": role, "group": group }),
                Line(ok),
            ),
            RolesCommand::Revoke { user, role, group } => (
                "roles",
                "revoke",
                json!({ "user": user, "role": role, "group": group }),
                Line(ok),
            ),
        },
        Command::Members(verb) => match verb {
            MembersCommand::List { group } => {
                ("members", "list", json!({ "group": group }), Table(MEMBERS))
            }
            MembersCommand::Add { group, user } => (
                "members",
                "add",
                json!({ "group": group, "user": user }),
                Line(ok),
            ),
            MembersCommand::Remove { group, user } => (
                "members",
                "remove",
                json!({ "group": group, "user": user }),
                Line(ok),
            ),
        },
        Command::Sessions(verb) => match verb {
            SessionsCommand::List { group } => (
                "sessions",
                "list",
                json!({ "group": group }),
                Table(SESSIONS),
            ),
            SessionsCommand::Show { id } => ("sessions", "show", json!({ "id": id }), Outline),
            SessionsCommand::Stop { id } => (
                "sessions",
                "stop",
                json!({ "id": id }),
                Line(|v| format!("stopped session {}", cell(v.get("stopped")))),
            ),
            SessionsCommand::Reset { id } => (
                "sessions",
                "reset",
                json!({ "id": id }),
                Line(|v| {
                    format!(
                        "reset session {}: the next message starts a new one",
                        cell(v.get("reset"))
                    )
                }),
            ),
        },
        Command::Approvals(verb) => match verb {
            ApprovalsCommand::List { all } => {
                ("approvals", "list", json!({ "all": all }), Table(APPROVALS))
            }
            ApprovalsCommand::Show { id } => ("approvals", "show", json!({ "id": id }), Outline),
            ApprovalsCommand::Approve { id, group, as_user } => (
                "approvals",
                "approve",
                json!({ "id": id, "group": group, "as_user": as_user }),
                Line(|v| {
                    format!(
                        "approval {} {}; {} held message(s) replayed",
                        cell(v.get("approval")),
                        cell(v.get("status")),
                        cell(v.get("replayed"))
                    )
                }),
            ),
            ApprovalsCommand::Deny {
                id,
                reason,
                as_user,
            } => (
                "approvals",
                "deny",
                json!({ "id": id, "reason": reason, "as_user": as_user }),
                Line(|v| {
                    format!(
                        "approval {} {}",
                        cell(v.get("approval")),
                        cell(v.get("status"))
                    )
                }),
            ),
        },
        Command::Dropped(DroppedCommand::List { limit }) => {
            ("dropped", "list", json!({ "limit": limit }), Table(DROPPED))
        }
        Command::Tasks(verb) => match verb {
            TasksCommand::List { group, all } => (
                "tasks",
                "list",
                json!({ "group": group, "all": all }),
                Table(TASKS),
            ),
            TasksCommand::Pause { id } => task_change("pause", id),
            TasksCommand::Resume { id } => task_change("resume", id),
            TasksCommand::Cancel { id } => task_change("cancel", id),
            TasksCommand::RunNow { id } => task_change("run-now", id),
        },
        Command::Channels(ChannelsCommand::List) => {
            ("channels", "list", json!({}), Table(CHANNELS))
        }
        Command::Webhooks(verb) => super::webhooks::request(verb),
        Command::Egress(verb) => super::egress::request(verb),
        Command::Adapters(verb) => match verb {
            AdaptersCommand::Add { name, channel_type } => (
                "adapters",
                "add",
                json!({ "name": name, "channel_type": channel_type }),
                Line(|v| {
                    format!(
                        "added adapter {} for channel type {}; it connects to {} with this token (shown once, keep it secret):\n{}",
                        cell(v.pointer("/adapter/name")),
                        cell(v.pointer("/adapter/channel_type")),
                        cell(v.get("socket")),
                        cell(v.get("token"))
                    )
                }),
            ),
            AdaptersCommand::List => ("adapters", "list", json!({}), Table(ADAPTERS)),
            AdaptersCommand::Remove { name } => (
                "adapters",
                "remove",
                json!({ "name": name }),
                Line(|v| {
                    format!(
                        "removed adapter {} (channel type {}): its token no longer works",
                        cell(v.get("name")),
                        cell(v.get("channel_type"))
                    )
                }),
            ),
        },
    })
}

/// A task verb naming one task.
fn task_change(verb: &'static str, id: &str) -> (&'static str, &'static str, Value, Render) {
    (
        "tasks",
        verb,
        json!({ "id": id }),
        Render::Line(|v| {
            let next = match v.get("next_run_at") {
                Some(Value::Number(at)) => format!("; next run at {at} (unix ms)"),
                _ => String::new(),
            };
            format!(
                "task {} of session {}: done{next}",
                cell(v.get("task")),
                cell(v.get("session"))
            )
        }),
    )
}

pub(super) fn merge(body: &mut Value, more: Value) {
    if let (Value::Object(body), Value::Object(more)) = (body, more) {
        body.extend(more);
    }
}

fn limits_json(limits: &LimitArgs) -> Value {
    json!({
        "memory_mb": limits.memory_mb,
        "cpus": limits.cpus,
        "pids_limit": limits.pids_limit,
        "disk_quota_mb": limits.disk_quota_mb,
    })
}

fn settings_json(settings: &WiringSettingsArgs) -> Value {
    json!({
        "session_mode": settings.session_mode,
        "engage_mode": settings.engage,
        "engage_pattern": settings.pattern,
        "sender_scope": settings.sender_scope,
        "ignored_message_policy": settings.ignored,
        "priority": settings.priority,
    })
}
