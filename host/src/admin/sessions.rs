//! `crabpot sessions ...`: list, show (with its container state and usage), stop (its
//! container; the next message starts a fresh one), reset (forget the conversation: the
//! container, the session's folder and its row go, and with the row a failure; the next
//! message starts a new session).

use super::api::{Id, ListFilter};
use super::{Admin, AdminError, Reply, parse, unknown_verb};
use crate::db::central::{self, sessions};
use crate::session::SessionRef;
use protocol::{AgentGroupId, SessionId};
use serde_json::json;

pub(super) async fn handle(admin: &Admin, verb: &str, body: serde_json::Value) -> Reply {
    match verb {
        "list" => {
            let filter: ListFilter = parse(body)?;
            let group = filter.group.map(AgentGroupId::new);
            // Each session with its group's folder (for its files) and its usage totals.
            let list = admin
                .db(move |tx| {
                    let mut rows = Vec::new();
                    for session in sessions::list_sessions(tx, group.as_ref())? {
                        let folder = central::agent_group(tx, &session.agent_group_id)?.folder;
                        let usage = central::session_usage(tx, &session.id)?;
                        rows.push((session, folder, usage));
                    }
                    Ok(rows)
                })
                .await?;
            let rows: Vec<serde_json::Value> = list
                .into_iter()
                .map(|(s, folder, usage)| {
                    let container = admin.supervisor.container_state(&s.id);
                    let reference = SessionRef {
                        id: s.id.clone(),
                        agent_group: s.agent_group_id.clone(),
                        group_folder: folder,
                    };
                    let heartbeat = admin.sessions.paths(&reference).heartbeat();
                    let heartbeat_age_ms = crate::supervisor::heartbeat_age(&heartbeat)
                        .map(|age| u64::try_from(age.as_millis()).unwrap_or(u64::MAX));
                    json!({
                        "session": s,
                        "container": container,
                        "heartbeat_age_ms": heartbeat_age_ms,
                        "usage": usage,
                    })
                })
                .collect();
            Ok(serde_json::Value::Array(rows))
        }
        "show" => {
            let request: Id = parse(body)?;
            let id = SessionId::new(request.id);
            let (session, usage) = admin
                .db(move |tx| {
                    let session = central::session(tx, &id)?;
                    let usage = central::session_usage(tx, &id)?;
                    Ok((session, usage))
                })
                .await?;
            let container = admin.supervisor.container_state(&session.id);
            Ok(json!({
                "session": session,
                "container": container,
                "usage": usage,
            }))
        }
        "stop" => {
            let request: Id = parse(body)?;
            let session = find(admin, request.id).await?;
            admin.supervisor.stop_by_id(&session).await;
            let id = session.id.clone();
            admin
                .db(move |tx| sessions::set_session_status(tx, &id, false))
                .await?;
            Ok(json!({ "stopped": session.id }))
        }
        "reset" => {
            let request: Id = parse(body)?;
            let session = find(admin, request.id).await?;
            admin.supervisor.stop_by_id(&session).await;
            admin
                .sessions
                .close(&session.id)
                .await
                .map_err(|e| AdminError::Internal(e.to_string()))?;
            // Its quota disk is mounted over out/ and work/: unmount before removing.
            admin
                .supervisor
                .release_disk(&session)
                .await
                .map_err(AdminError::Internal)?;
            let root = admin.sessions.paths(&session).root().to_owned();
            match tokio::fs::remove_dir_all(&root).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(AdminError::Internal(format!(
                        "removing {}: {e}",
                        root.display()
                    )));
                }
            }
            let id = session.id.clone();
            admin
                .db(move |tx| sessions::delete_session(tx, &id))
                .await?;
            // The failure went with the row; the next message starts a fresh session.
            admin.supervisor.clear_failure(&session.id);
            Ok(json!({ "reset": session.id }))
        }
        _ => Err(unknown_verb("sessions", verb)),
    }
}

async fn find(admin: &Admin, id: String) -> Result<SessionRef, AdminError> {
    let id = SessionId::new(id);
    admin
        .db(move |tx| {
            let session = central::session(tx, &id)?;
            let group = central::agent_group(tx, &session.agent_group_id)?;
            Ok(SessionRef {
                id: session.id,
                agent_group: group.id,
                group_folder: group.folder,
            })
        })
        .await
}
