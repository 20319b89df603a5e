//! `crabpot webhooks ...`: create (inbound with `--group`, outbound with `--url`; a fresh
//! secret, shown once), list (never the secrets), remove (with the hook's chat, so its wiring
//! and every destination naming it go too, projected at once).

use super::api::{WebhookCreate, WebhookCreated, WebhookRemove};
use super::{Admin, AdminError, Reply, parse, to_value, unknown_verb};
use crate::config::ApiKey;
use crate::db::central::webhooks;
use protocol::AgentGroupId;

/// What every webhook secret starts with, so one found in a config is recognisable.
const SECRET_PREFIX: &str = "cpw_";

pub(super) async fn handle(admin: &Admin, verb: &str, body: serde_json::Value) -> Reply {
    match verb {
        "create" => create(admin, parse(body)?).await,
        "list" => to_value(&admin.db(|tx| webhooks::list(tx)).await?),
        "remove" => {
            let request: WebhookRemove = parse(body)?;
            let (hook, groups) = admin
                .db(move |tx| webhooks::remove(tx, &request.name))
                .await?;
            for group in &groups {
                admin.supervisor.reproject_group(group).await;
            }
            to_value(&hook)
        }
        _ => Err(unknown_verb("webhooks", verb)),
    }
}

async fn create(admin: &Admin, request: WebhookCreate) -> Reply {
    let secret =
        crate::secrets::generate(SECRET_PREFIX).map_err(|e| AdminError::Internal(e.to_string()))?;
    let key = ApiKey::new(secret.clone());
    let name = request.name.clone();
    let (webhook, group) = match (request.group, request.url) {
        (Some(group), None) => {
            let group = AgentGroupId::new(group);
            let created_for = group.clone();
            let webhook = admin
                .db(move |tx| webhooks::create_inbound(tx, &name, &created_for, &key))
                .await?;
            (webhook, Some(group))
        }
        (None, Some(url)) => {
            let webhook = admin
                .db(move |tx| webhooks::create_outbound(tx, &name, &url, &key))
                .await?;
            (webhook, None)
        }
        (Some(_), Some(_)) | (None, None) => {
            return Err(AdminError::Invalid(
                "a webhook is either inbound (--group GROUP) or outbound (--url URL)".into(),
            ));
        }
    };
    if let Some(group) = &group {
        admin.supervisor.reproject_group(group).await;
    }
    let endpoint = match (&group, &admin.web_base_url) {
        (Some(_), Some(base)) => Some(format!(
            "{}/hooks/webhooks/{}",
            base.trim_end_matches('/'),
            webhook.name
        )),
        _ => None,
    };
    to_value(&WebhookCreated {
        webhook,
        secret,
        endpoint,
    })
}
