//! `crabpot egress log`: [`EgressCommand`] and the admin API request behind it
//! ([`request`]). The allowlist itself is set with `crabpot groups update G --allow-egress
//! HOST:PORTS` / `--deny-egress`.

use super::request::Render;
use clap::Subcommand;
use serde_json::{Value, json};

#[derive(Debug, Subcommand)]
pub enum EgressCommand {
    /// The newest egress attempts of the agents' containers, allowed and refused, newest
    /// first: host, port, kind (connect | http | fetch | search), outcome (allowed,
    /// not_listed, denied_rule, internal_address, lookup_failed, connect_failed), bytes.
    Log {
        /// Only this session's attempts.
        #[arg(long)]
        session: Option<String>,
        /// Only this agent group's attempts.
        #[arg(long)]
        group: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
}

/// The columns of `crabpot egress log`.
const EGRESS_LOG: &[(&str, &str)] = &[
    ("AT", "at"),
    ("SESSION", "session_id"),
    ("GROUP", "agent_group_id"),
    ("KIND", "kind"),
    ("HOST", "host"),
    ("PORT", "port"),
    ("OUTCOME", "outcome"),
    ("UP", "bytes_up"),
    ("DOWN", "bytes_down"),
    ("MS", "duration_ms"),
    ("DETAIL", "detail"),
];

/// The API call behind an egress verb.
pub(super) fn request(verb: &EgressCommand) -> (&'static str, &'static str, Value, Render) {
    match verb {
        EgressCommand::Log {
            session,
            group,
            limit,
        } => (
            "egress",
            "log",
            json!({ "session": session, "group": group, "limit": limit }),
            Render::Table(EGRESS_LOG),
        ),
    }
}
