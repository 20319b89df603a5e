//! `crabpot webhooks create|list|remove`: [`WebhooksCommand`] and the admin API request
//! behind each verb ([`request`]).

use super::request::Render;
use super::table::cell;
use clap::Subcommand;
use serde_json::{Value, json};

#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// Create an inbound (--group) or outbound (--url) webhook; prints its secret once.
    ///
    /// Inbound: other systems POST signed JSON to the printed URL, and each request starts a
    /// turn of GROUP, whose reply goes to GROUP's destinations. Outbound: agents' messages
    /// are POSTed, signed, to URL; make it a destination with `crabpot destinations add G
    /// NAME --webhook HOOK`.
    Create {
        /// 1-64 of [A-Za-z0-9._-].
        name: String,
        /// Inbound: the agent group its requests start turns of.
        #[arg(long, conflicts_with = "url", required_unless_present = "url")]
        group: Option<String>,
        /// Outbound: the http(s) URL messages are POSTed to.
        #[arg(long)]
        url: Option<String>,
    },
    /// List webhooks (never their secrets).
    List,
    /// Remove a webhook with its chat, wiring and the destinations naming it.
    Remove { name: String },
}

/// The columns of `crabpot webhooks list`.
const WEBHOOKS: &[(&str, &str)] = &[
    ("NAME", "name"),
    ("DIRECTION", "direction"),
    ("GROUP", "agent_group_id"),
    ("URL", "url"),
    ("CHAT", "chat_address"),
];

/// The API call behind a webhooks verb.
pub(super) fn request(verb: &WebhooksCommand) -> (&'static str, &'static str, Value, Render) {
    match verb {
        WebhooksCommand::Create { name, group, url } => (
            "webhooks",
            "create",
            json!({ "name": name, "group": group, "url": url }),
            Render::Line(created),
        ),
        WebhooksCommand::List => ("webhooks", "list", json!({}), Render::Table(WEBHOOKS)),
        WebhooksCommand::Remove { name } => (
            "webhooks",
            "remove",
            json!({ "name": name }),
            Render::Line(|v| format!("removed webhook {}", cell(v.get("name")))),
        ),
    }
}

fn created(v: &Value) -> String {
    let name = cell(v.pointer("/webhook/name"));
    let secret = cell(v.get("secret"));
    if v.pointer("/webhook/direction") == Some(&Value::from("inbound")) {
        let endpoint = match v.get("endpoint") {
            Some(Value::String(url)) => url.clone(),
            _ => format!("<the web server's URL>/hooks/webhooks/{name} (the web server is off)"),
        };
        format!(
            "created inbound webhook {name} for agent group {}: POST signed JSON to\n{endpoint}\n\
             with X-Crabpot-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, \"<t>.<body>\")> \
             or X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>. \
             The secret (shown once, keep it secret):\n{secret}",
            cell(v.pointer("/webhook/agent_group_id"))
        )
    } else {
        format!(
            "created outbound webhook {name} to {}; crabpot signs what it POSTs with this secret \
             in X-Crabpot-Signature (shown once, keep it secret):\n{secret}\n\
             Let a group send there with `crabpot destinations add GROUP NAME --webhook {name}`.",
            cell(v.pointer("/webhook/url"))
        )
    }
}
