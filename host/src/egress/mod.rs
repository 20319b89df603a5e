//! Egress: what an agent's container may reach outside, through its session's proxy socket
//! (DESIGN §6). An agent group holds an allowlist ([`EgressRules`], empty = deny all); the
//! proxy socket takes `CONNECT host:port` and plain HTTP for allowed hosts, the host resolves
//! names itself and refuses private, loopback and link-local addresses unless a rule names
//! the address, and every attempt is recorded.
//!
//! Files: `rules` (the allowlist and its matching), `address` (which addresses are internal,
//! and resolving an allowed destination), `target` (the destination a proxy request names),
//! `gate` (the decision for one attempt: rules from the central DB, resolve, connect),
//! `tunnel` (splicing a `CONNECT` tunnel with its idle and total bounds), `recorder` (the
//! attempts' way to the central DB, never blocking the proxy); the web tools: `web` (their
//! endpoint on the session socket), `fetch` (web_fetch through the rules), `page` (HTML to
//! Markdown, capped), `search` (web_search against the host's SearXNG-compatible backend).
//! The HTTP side lives in `crate::proxy` (its `egress` file); the log's rows in `crate::db::central::egress_log`.

pub mod address;
pub mod fetch;
pub mod gate;
pub mod page;
pub mod recorder;
pub mod rules;
pub mod search;
pub mod target;
pub mod tunnel;
pub mod web;

pub use crate::db::central::egress_log::{AttemptKind, EgressAttempt, Outcome};
pub use address::{ResolveError, is_internal, resolve};
pub use gate::{EgressGate, EgressLimits, Opened, Refusal};
pub use recorder::EgressRecorder;
pub use rules::{EgressRule, EgressRules, RuleError, Verdict};
pub use target::{Target, TargetError};
pub use tunnel::{ByteCounters, TunnelEnd, TunnelLimits};
