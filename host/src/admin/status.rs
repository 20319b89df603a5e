//! `crabpot status` (host, Docker, running containers, queue, open approvals, disk quotas,
//! free disk and the reserve, the uid scheme, each channel adapter's health) and
//! `crabpot dropped list` (what was not delivered, and why), and `crabpot channels list` (every
//! channel adapter, built in or out of process, with its health).

use super::api::{ListFilter, Status};
use super::{Admin, Reply, parse, to_value, unknown_verb};
use crate::db::central::{approvals, drops};
use crate::supervisor::SupervisorStatus;

pub(super) async fn status(admin: &Admin) -> Reply {
    let docker = match admin.runtime.version().await {
        Ok(v) => format!("{} (API {})", v.engine_version, v.negotiated_api_version),
        Err(e) => format!("unreachable: {e}"),
    };
    let SupervisorStatus {
        running,
        starting,
        queued,
        max_containers,
        disk,
    } = admin.supervisor.status();
    let pending_approvals = admin
        .db(|tx| {
            approvals::expire_due(tx, protocol::time::now_ms())?;
            Ok(approvals::list_approvals(tx, false)?.len())
        })
        .await?;
    to_value(&Status {
        install_id: admin.install_id.clone(),
        docker,
        model: admin.model.clone(),
        running,
        starting,
        queued,
        max_containers,
        pending_approvals,
        disk,
        channels: admin.channels.status(),
    })
}

pub(super) async fn dropped(admin: &Admin, verb: &str, body: serde_json::Value) -> Reply {
    match verb {
        "list" => {
            let filter: ListFilter = parse(body)?;
            let limit = filter.limit.unwrap_or(50).clamp(1, 10_000);
            to_value(&admin.db(move |tx| drops::list_drops(tx, limit)).await?)
        }
        _ => Err(unknown_verb("dropped", verb)),
    }
}

pub(super) fn channels(admin: &Admin, verb: &str) -> Reply {
    match verb {
        "list" => to_value(&admin.channels.status()),
        _ => Err(unknown_verb("channels", verb)),
    }
}
