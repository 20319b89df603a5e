//! The agent-runner: the loop inside each session's container. It waits for inbound rows in
//! `/session/in/inbound.db`, runs the model tool loop through the host's proxy socket, writes
//! replies to `/session/out/outbound.db` and touches the heartbeat (DESIGN §3-§6).
//!
//! Entry points: [`run`] (what the binary calls) and [`Runner`] ([`Runner::open`] then
//! [`Runner::process_pending`] to run a single turn, as tests do). Modules, one noun each:
//! [`config`] (options, tool limits and session limits), [`store`] (the session files, on
//! their own thread), [`wake`] (file events and the fallback poll), [`heartbeat`], [`turn`]
//! (one turn and the final-reply rule), [`commands`] (`/clear`), [`stop`] (`/stop`, which
//! cancels the running turn), [`live`] (live drafts of the reply over the proxy socket),
//! [`prompt`] (system prompt,
//! skills and rendered messages), [`transcript`] (the resumable JSONL conversation),
//! [`compaction`] (summarising older turns near the context limit), [`tools`] (the tool
//! registry and every tool), [`model`] (OpenAI and Anthropic over the proxy, tool schemas
//! rendered per provider), [`clock`] (UTC times for the model), [`http`] (the unix-socket
//! client) and [`sse`] (the event-stream parser).

pub mod browser;
pub mod clock;
pub mod commands;
pub mod compaction;
pub mod config;
pub mod egress;
pub mod heartbeat;
pub mod http;
pub mod image;
pub mod live;
pub mod mcp;
pub mod model;
pub mod prompt;
pub mod runner;
pub mod sse;
pub mod stop;
pub mod store;
pub mod tools;
pub mod transcript;
pub mod turn;
pub mod wake;

pub use config::{RunnerOptions, ToolLimits};
pub use model::RetryPolicy;
pub use runner::{Runner, RunnerError, run};
pub use turn::{TurnOutcome, TurnSummary};

/// Exit code: stopped cleanly (SIGTERM or Ctrl-C).
pub const EXIT_OK: u8 = 0;
/// Exit code: a session file or the transcript failed while running. Restarting may help;
/// rows being worked on stay `processing` and are taken again.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code: bad command-line arguments.
pub const EXIT_USAGE: u8 = 2;
/// Exit code: the session cannot be used by this image: `inbound.db` or `outbound.db` is
/// missing, has another schema version, or has no `session_config`. Restarting will not help
/// until the host or the image is fixed.
pub const EXIT_SESSION_UNUSABLE: u8 = 3;
/// Exit code: the session files stayed busy or not ready (a crashed writer's hot journal)
/// past the start deadline. Restarting later may help.
pub const EXIT_SESSION_NOT_READY: u8 = 4;
