//! `crabpot adapters ...`: add (a fresh token, shown once), list (with each adapter's health
//! from the running host), remove (the token stops working and the connection is closed).

use super::api::{AdapterAdd, AdapterCreated, AdapterListing, AdapterRemove};
use super::{Admin, AdminError, Reply, parse, to_value, unknown_verb};
use crate::channels::external::AdapterError;

pub(super) async fn handle(admin: &Admin, verb: &str, body: serde_json::Value) -> Reply {
    match verb {
        "add" => {
            let request: AdapterAdd = parse(body)?;
            let channel_type = request.channel_type.unwrap_or_else(|| request.name.clone());
            let created = admin.adapters.add(&request.name, &channel_type).await?;
            to_value(&AdapterCreated {
                adapter: created.adapter,
                token: created.token,
                socket: admin
                    .adapters
                    .socket()
                    .map(|path| path.display().to_string())
                    .unwrap_or_default(),
            })
        }
        "list" => {
            let listed = admin.adapters.list().await?;
            let listings: Vec<AdapterListing> = listed
                .into_iter()
                .map(|(adapter, health)| AdapterListing {
                    created: rfc3339(adapter.created_at),
                    last_seen: adapter.last_seen_at.map(rfc3339),
                    adapter,
                    health,
                })
                .collect();
            to_value(&listings)
        }
        "remove" => {
            let request: AdapterRemove = parse(body)?;
            to_value(&admin.adapters.remove(&request.name).await?)
        }
        _ => Err(unknown_verb("adapters", verb)),
    }
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || ms.to_string(),
        |at| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )
}

impl From<AdapterError> for AdminError {
    fn from(error: AdapterError) -> Self {
        match error {
            AdapterError::Reserved(_) => AdminError::Conflict(error.to_string()),
            AdapterError::Token(_) => AdminError::Internal(error.to_string()),
            AdapterError::Db(e) => e.into(),
        }
    }
}
