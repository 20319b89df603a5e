//! The command line of `crabpot`: [`Cli`] and its subcommands (clap derive). `serve`, `chat`
//! and `status`, and the admin resources, each `crabpot <resource> <verb>`: groups, chats,
//! wirings, destinations, users, roles, members, sessions, approvals, dropped, tasks, adapters,
//! tokens, web, webhooks. Parsing lives
//! here; [`admin`] runs the admin verbs against the host and renders their answers ([`table`]
//! for people, `--json` for scripts).

pub mod admin;
pub mod columns;
pub mod egress;
pub mod password;
mod request;
pub mod service;
pub mod table;
pub mod webhooks;

use crate::db::central::groups::CreateAgentPolicy;
use crate::db::central::{
    EngageMode, IgnoredMessagePolicy, SenderScope, SessionMode, UnknownSenderPolicy,
};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

pub const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  error (the message says what failed)
  2  bad command-line arguments
  3  the host is not running (no socket to connect to)
  4  no reply within --timeout
  5  not found (an unknown id or name)
  6  invalid input (e.g. a bad regex, a bad value)
  7  conflict (e.g. a name already taken, already wired)
  8  refused (e.g. not an approver, the approval is closed)";

/// crabpot: one sandboxed AI agent per conversation.
#[derive(Debug, Parser)]
#[command(name = "crabpot", version, after_help = EXIT_CODES)]
pub struct Cli {
    /// Where runtime state lives (central DB, sessions, sockets).
    #[arg(long, global = true, env = "CRABPOT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// A crabpot.toml to read (default: ./crabpot.toml when it exists).
    #[arg(long, global = true, env = "CRABPOT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Print one JSON document on stdout instead of text for people.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the host daemon.
    Serve(ServeArgs),
    /// Chat with an agent from this terminal (default: the `main` agent in cli/local).
    Chat(ChatArgs),
    /// Show the running host: Docker, containers, queue, open approvals.
    Status,
    /// Agent groups: each has a folder under groups/ with its AGENT.md.
    #[command(subcommand, after_help = EXIT_CODES)]
    Groups(GroupsCommand),
    /// Chats (messaging groups), named by id or CHANNEL/PLATFORM_ID.
    #[command(subcommand, after_help = EXIT_CODES)]
    Chats(ChatsCommand),
    /// Wirings: which chats reach which agent groups, and how.
    #[command(subcommand, after_help = EXIT_CODES)]
    Wirings(WiringsCommand),
    /// Destinations: where an agent group may send, by name (chats or other agents).
    #[command(subcommand, after_help = EXIT_CODES)]
    Destinations(DestinationsCommand),
    /// Users: platform identities, CHANNEL:HANDLE (e.g. cli:alice).
    #[command(subcommand, after_help = EXIT_CODES)]
    Users(UsersCommand),
    /// Roles: owner (global) and admin (global or of one agent group).
    #[command(subcommand, after_help = EXIT_CODES)]
    Roles(RolesCommand),
    /// Members: who an agent group knows.
    #[command(subcommand, after_help = EXIT_CODES)]
    Members(MembersCommand),
    /// Sessions: one conversation each, with its own container.
    #[command(subcommand, after_help = EXIT_CODES)]
    Sessions(SessionsCommand),
    /// Approvals: unknown senders and unwired chats waiting for a decision.
    #[command(subcommand, after_help = EXIT_CODES)]
    Approvals(ApprovalsCommand),
    /// Dropped messages: what was not delivered, and why.
    #[command(subcommand, after_help = EXIT_CODES)]
    Dropped(DroppedCommand),
    /// Scheduled tasks the agents set up (schedule_task), by task id.
    #[command(subcommand, after_help = EXIT_CODES)]
    Tasks(TasksCommand),
    /// Channel adapters (cli, web, telegram, slack, discord and out-of-process ones) and
    /// their health.
    #[command(subcommand, after_help = EXIT_CODES)]
    Channels(ChannelsCommand),
    /// Out-of-process channel adapters: programs in any language that connect to
    /// data/adapters.sock with a token (docs/adapter-protocol.md).
    #[command(subcommand, after_help = EXIT_CODES)]
    Adapters(AdaptersCommand),
    /// API tokens for the web server (Authorization: Bearer cpt_...), scope chat or admin.
    #[command(subcommand, after_help = EXIT_CODES)]
    Tokens(TokensCommand),
    /// The web server: one-time login links for web users.
    #[command(subcommand, after_help = EXIT_CODES)]
    Web(WebCommand),
    /// Webhooks: signed requests from other systems that start turns (inbound), and URLs
    /// agents' messages are POSTed to, signed (outbound).
    #[command(subcommand, after_help = EXIT_CODES)]
    Webhooks(webhooks::WebhooksCommand),
    /// Egress: what agents' containers reached outside, or tried to (allowlists are set with
    /// `groups update G --allow-egress HOST:PORTS`).
    #[command(subcommand, after_help = EXIT_CODES)]
    Egress(egress::EgressCommand),
    /// Run the host as a systemd service: `service install` writes the unit (system unit as
    /// root, else a user unit), `service uninstall` removes it.
    #[command(subcommand)]
    Service(service::ServiceCommand),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Stop and remove this install's containers when the host exits (by default they keep
    /// running and the next start adopts them).
    #[arg(long)]
    pub stop_containers_on_exit: bool,
    /// Most containers running at once.
    #[arg(long)]
    pub max_containers: Option<usize>,
    /// The agent image.
    #[arg(long)]
    pub image: Option<String>,
    /// The folder holding agent group folders.
    #[arg(long)]
    pub groups_dir: Option<PathBuf>,
    /// The web server's address (default 127.0.0.1:7878), or `off`.
    #[arg(long, value_name = "ADDR|off")]
    pub web_listen: Option<String>,
}

#[derive(Debug, Args)]
pub struct ChatArgs {
    /// Send this message, print the replies of that turn, and exit.
    #[arg(long, short)]
    pub message: Option<String>,
    /// With --message: seconds to wait for the turn to finish.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
    /// With --message: the message answers this question of the agent (the id shown with
    /// it, e.g. q-3f9a0c1d2e; `latest` = the chat's newest open question). Give an option's
    /// number, an option's text, or your own words. Interactively, the line typed after a
    /// question answers it.
    #[arg(long, value_name = "QUESTION_ID", requires = "message")]
    pub answer: Option<String>,
    /// Who you are in the chat (default: $USER); your sender id is cli:USER.
    #[arg(long)]
    pub user: Option<String>,
    /// The chat's platform id under channel `cli` (default: local, the terminal).
    #[arg(long)]
    pub chat: Option<String>,
    /// A thread of the chat.
    #[arg(long)]
    pub thread: Option<String>,
    /// Speak as in a group chat (only mentions engage mention wirings).
    #[arg(long)]
    pub group_chat: bool,
    /// With --group-chat: the message does not mention the agent.
    #[arg(long)]
    pub no_mention: bool,
}

#[derive(Debug, Args, Clone, Default)]
pub struct LimitArgs {
    /// Memory limit of the group's containers, in MB.
    #[arg(long)]
    pub memory_mb: Option<i64>,
    /// CPUs of the group's containers.
    #[arg(long)]
    pub cpus: Option<f64>,
    /// Most processes in one of the group's containers.
    #[arg(long)]
    pub pids_limit: Option<i64>,
    /// Disk quota of each of the group's sessions (out/ and work/), in MiB; applies to
    /// sessions whose disk is made after the change.
    #[arg(long)]
    pub disk_quota_mb: Option<u64>,
}

#[derive(Debug, Subcommand)]
pub enum GroupsCommand {
    /// List agent groups.
    List,
    /// Show a group with its wirings, destinations, members and sessions.
    Show { id: String },
    /// Create a group and its folder groups/FOLDER/ (with an AGENT.md unless one exists).
    Create {
        /// The folder under groups/, which is also the group's id.
        folder: String,
        #[arg(long)]
        name: Option<String>,
        /// The group's instructions, written to AGENT.md.
        #[arg(long)]
        instructions: Option<String>,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Rename a group; change its container limits, image, commit author or egress
    /// allowlist; or say whether its agents may create agents (create_agent).
    Update {
        id: String,
        #[arg(long)]
        name: Option<String>,
        /// approval (an admin decides each request; the default), allow, or deny.
        #[arg(long, value_name = "POLICY")]
        create_agents: Option<CreateAgentPolicy>,
        #[command(flatten)]
        limits: LimitArgs,
        /// The agent image: default (busybox) or toolbox (git, Python, Node.js, Chromium;
        /// `make image-toolbox`). Applies to containers started after the change.
        #[arg(long, value_name = "IMAGE")]
        image: Option<String>,
        /// The author of the commits the group's agents make, "Name <email>".
        #[arg(long, value_name = "AUTHOR")]
        git_author: Option<String>,
        /// Let the group's containers reach HOST[:PORTS] through the egress proxy
        /// (github.com:443, *.pypi.org, 127.0.0.1:8443, 10.0.0.0/8:*; ports default to 443).
        /// Repeatable. Private addresses are reachable only through a rule naming the address.
        #[arg(long, value_name = "HOST[:PORTS]")]
        allow_egress: Vec<String>,
        /// Take HOST[:PORTS] off the allowlist (denied explicitly when a broader rule still
        /// covers it). Repeatable.
        #[arg(long, value_name = "HOST[:PORTS]")]
        deny_egress: Vec<String>,
    },
    /// Delete a group with its wirings, destinations and sessions (its files stay on disk).
    Delete { id: String },
    /// Stop the group's running containers; they start again, fresh, when needed.
    Restart { id: String },
}

#[derive(Debug, Subcommand)]
pub enum ChatsCommand {
    /// List chats.
    List,
    /// Show a chat with its wirings and sessions.
    Show { chat: String },
    /// Register a chat ahead of its first message.
    Create {
        channel_type: String,
        platform_id: String,
        #[arg(long)]
        name: Option<String>,
        /// A group chat (not a direct chat).
        #[arg(long)]
        group_chat: bool,
        /// What happens to senders the agent group does not know: strict, request_approval, public.
        #[arg(long)]
        unknown_senders: Option<UnknownSenderPolicy>,
    },
    /// Change a chat's name, kind or unknown-sender policy.
    Update {
        chat: String,
        #[arg(long)]
        name: Option<String>,
        /// true for a group chat, false for a direct chat.
        #[arg(long)]
        group_chat: Option<bool>,
        /// strict, request_approval or public.
        #[arg(long)]
        unknown_senders: Option<UnknownSenderPolicy>,
    },
    /// Delete a chat with its wirings and the destinations naming it.
    Delete { chat: String },
}

#[derive(Debug, Args, Clone, Default)]
pub struct WiringSettingsArgs {
    /// shared (one session per chat), per-thread, or agent-shared (one for the group).
    #[arg(long)]
    pub session_mode: Option<SessionMode>,
    /// pattern, mention (default) or mention-sticky.
    #[arg(long)]
    pub engage: Option<EngageMode>,
    /// The regex of engage mode pattern ('.*' engages on every message).
    #[arg(long)]
    pub pattern: Option<String>,
    /// all (default) or known senders only.
    #[arg(long)]
    pub sender_scope: Option<SenderScope>,
    /// What happens to messages that do not engage: drop (default) or accumulate (kept as
    /// context for the next turn).
    #[arg(long)]
    pub ignored: Option<IgnoredMessagePolicy>,
    /// Higher goes first when a message fans out to several groups.
    #[arg(long, allow_negative_numbers = true)]
    pub priority: Option<i64>,
}

#[derive(Debug, Subcommand)]
pub enum WiringsCommand {
    /// List wirings, optionally of one chat or group.
    List {
        #[arg(long)]
        chat: Option<String>,
        #[arg(long)]
        group: Option<String>,
    },
    /// Wire a chat to an agent group (and give the group a destination for the chat).
    Create {
        chat: String,
        group: String,
        /// The destination name the group uses for the chat (default: from the chat's name).
        #[arg(long)]
        destination: Option<String>,
        #[command(flatten)]
        settings: WiringSettingsArgs,
    },
    /// Change a wiring's settings.
    Update {
        id: String,
        #[command(flatten)]
        settings: WiringSettingsArgs,
    },
    /// Unwire (the group's destination for the chat stays; remove it separately).
    Delete { id: String },
}

#[derive(Debug, Subcommand)]
pub enum DestinationsCommand {
    /// List destinations, optionally of one group.
    List {
        #[arg(long)]
        group: Option<String>,
    },
    /// Let GROUP send to a chat (--chat, optionally --thread), another group (--agent) or an
    /// outbound webhook (--webhook) as NAME.
    Add {
        group: String,
        name: String,
        #[arg(long, conflicts_with_all = ["agent", "webhook"])]
        chat: Option<String>,
        #[arg(long, requires = "chat")]
        thread: Option<String>,
        #[arg(long, conflicts_with = "webhook")]
        agent: Option<String>,
        /// An outbound webhook (`crabpot webhooks create HOOK --url URL`).
        #[arg(long, value_name = "HOOK")]
        webhook: Option<String>,
        #[arg(long)]
        display_name: Option<String>,
    },
    /// Take a destination away.
    Remove { group: String, name: String },
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// List users.
    List,
    /// Create a user, e.g. `crabpot users create cli:alice --dm cli/dm:alice`.
    Create {
        id: String,
        #[arg(long)]
        name: Option<String>,
        /// Where approvals reach the user: CHANNEL/PLATFORM_ID.
        #[arg(long)]
        dm: Option<String>,
    },
    /// Set the web password of web:NAME (the user is created if needed). The password is
    /// read from stdin, one line (asked twice, without echo, on a terminal); at least 8
    /// characters.
    Passwd {
        /// The web user's name: `alice` for web:alice.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Create an API token and print it (shown once; the host keeps only its hash).
    Create {
        /// The user it acts as: NAME for web:NAME, or a full id like cli:alice.
        #[arg(long)]
        user: String,
        /// chat (web chat and /v1/chat/completions) or admin (also the admin API, for
        /// owners and global admins).
        #[arg(long)]
        scope: crate::db::central::web::Scope,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token by id: it stops working at once.
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
pub enum WebCommand {
    /// Print a one-time login link for web:NAME (the user is created if needed).
    LoginLink {
        /// The web user's name: `alice` for web:alice.
        #[arg(long)]
        user: String,
        /// How long the link works.
        #[arg(long, default_value_t = 15)]
        ttl_minutes: u32,
    },
}

#[derive(Debug, Subcommand)]
pub enum RolesCommand {
    /// List role grants.
    List,
    /// Grant owner (global) or admin (global, or --group).
    Grant {
        user: String,
        role: String,
        #[arg(long)]
        group: Option<String>,
    },
    /// Revoke a role.
    Revoke {
        user: String,
        role: String,
        #[arg(long)]
        group: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum MembersCommand {
    /// List members, optionally of one group.
    List {
        #[arg(long)]
        group: Option<String>,
    },
    /// Make a user a member of a group (the user is created if needed).
    Add { group: String, user: String },
    /// Remove a member.
    Remove { group: String, user: String },
}

#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// List sessions, optionally of one group.
    List {
        #[arg(long)]
        group: Option<String>,
    },
    /// Show a session with its container state and usage.
    Show { id: String },
    /// Stop the session's container (the next message starts a fresh one).
    Stop { id: String },
    /// Forget the conversation: container, files and session go.
    Reset { id: String },
}

#[derive(Debug, Subcommand)]
pub enum ApprovalsCommand {
    /// List open approvals (--all: decided and expired ones too).
    List {
        #[arg(long)]
        all: bool,
    },
    /// Show an approval with its decision log.
    Show { id: String },
    /// Approve: a sender becomes a member; a chat is wired to --group. Held messages replay.
    Approve {
        id: String,
        /// For a chat registration: the agent group to wire the chat to.
        #[arg(long)]
        group: Option<String>,
        /// Decide as this user (checked against the approvers) instead of as the operator.
        #[arg(long = "as", value_name = "USER")]
        as_user: Option<String>,
    },
    /// Deny: the held messages are dropped.
    Deny {
        id: String,
        #[arg(long)]
        reason: Option<String>,
        /// Decide as this user (checked against the approvers) instead of as the operator.
        #[arg(long = "as", value_name = "USER")]
        as_user: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TasksCommand {
    /// List scheduled tasks (--all: finished and cancelled ones too).
    List {
        #[arg(long)]
        group: Option<String>,
        #[arg(long)]
        all: bool,
    },
    /// Pause a task: it does not run until resumed.
    Pause { id: String },
    /// Resume a paused task (a run that came due meanwhile runs once, now).
    Resume { id: String },
    /// Cancel a task for good.
    Cancel { id: String },
    /// Run a task once now (a recurring task keeps its schedule; a one-off task runs now
    /// instead of later).
    RunNow { id: String },
}

#[derive(Debug, Subcommand)]
pub enum ChannelsCommand {
    /// Every adapter of the running host with its health (connected, degraded, failing with
    /// its last error).
    List,
}

#[derive(Debug, Subcommand)]
pub enum AdaptersCommand {
    /// Register an adapter and print its token (shown once; the host keeps only its hash).
    Add {
        /// The adapter's name (a-z, 0-9, '-', '_').
        name: String,
        /// The channel type it serves, as in chat addresses TYPE/PLATFORM_ID (default: NAME).
        #[arg(long)]
        channel_type: Option<String>,
    },
    /// List adapters with their health in the running host.
    List,
    /// Remove an adapter: its token stops working and its connection is closed.
    Remove { name: String },
}

#[derive(Debug, Subcommand)]
pub enum DroppedCommand {
    /// The most recent drops first.
    List {
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
}
