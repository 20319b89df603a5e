//! `crabpot groups ...`: list, show, create (with its folder and `AGENT.md`), update (name,
//! container limits, image, commit author, egress allowlist, whether its agents may create
//! agents), delete, restart (its running containers).

use super::api::{GroupCreate, GroupUpdate, Id, Limits};
use super::{Admin, AdminError, Reply, parse, to_value, unknown_verb};
use crate::db::central::groups::{self, ContainerOverrides, GroupChanges, ImageChoice};
use crate::db::central::{destinations, people, sessions, wirings};
use crate::egress::EgressRule;
use crate::serve::MAIN_GROUP;
use protocol::AgentGroupId;
use serde_json::json;

pub(super) async fn handle(admin: &Admin, verb: &str, body: serde_json::Value) -> Reply {
    match verb {
        "list" => to_value(&admin.db(|tx| groups::list_agent_groups(tx)).await?),
        "show" => show(admin, parse(body)?).await,
        "create" => create(admin, parse(body)?).await,
        "update" => update(admin, parse(body)?).await,
        "delete" => delete(admin, parse(body)?).await,
        "restart" => restart(admin, parse(body)?).await,
        _ => Err(unknown_verb("groups", verb)),
    }
}

fn overrides(limits: Limits) -> ContainerOverrides {
    ContainerOverrides {
        memory_mb: limits.memory_mb,
        cpus: limits.cpus,
        pids_limit: limits.pids_limit,
        disk_quota_mb: limits.disk_quota_mb,
        ..ContainerOverrides::default()
    }
}

/// Parses the rules of `--allow-egress` / `--deny-egress`, naming the first bad one.
fn egress_rules(texts: &[String]) -> Result<Vec<EgressRule>, AdminError> {
    texts
        .iter()
        .map(|text| {
            text.parse::<EgressRule>()
                .map_err(|error| AdminError::Invalid(error.to_string()))
        })
        .collect()
}

async fn show(admin: &Admin, request: Id) -> Reply {
    let id = AgentGroupId::new(request.id);
    let value = admin
        .db(move |tx| {
            let group = groups::agent_group(tx, &id)?;
            Ok(json!({
                "group": group,
                "limits": group.overrides(),
                "wirings": wirings::list_wirings(tx, None, Some(&id))?,
                "destinations": destinations::list_destinations(tx, Some(&id))?,
                "members": people::list_members(tx, Some(&id))?,
                "sessions": sessions::list_sessions(tx, Some(&id))?,
            }))
        })
        .await?;
    Ok(value)
}

async fn create(admin: &Admin, request: GroupCreate) -> Reply {
    if !protocol::ids::is_safe_folder_name(&request.folder) {
        return Err(AdminError::Invalid(format!(
            "agent group folder {:?} must be a plain name of [A-Za-z0-9._-], not starting with '.'",
            request.folder
        )));
    }
    let limits = overrides(request.limits);
    limits.validate()?;
    let folder = request.folder.clone();
    let exists = admin
        .db(move |tx| Ok(groups::agent_group(tx, &AgentGroupId::new(folder)).is_ok()))
        .await?;
    if exists {
        return Err(AdminError::Conflict(format!(
            "agent group {:?} already exists",
            request.folder
        )));
    }
    let name = request
        .name
        .clone()
        .unwrap_or_else(|| request.folder.clone());
    let dir = admin.groups_dir.join(&request.folder);
    let instructions = dir.join(protocol::paths::AGENT_INSTRUCTIONS);
    let wrote =
        write_instructions(&dir, &instructions, &name, request.instructions.as_deref()).await?;
    let folder = request.folder.clone();
    let group = admin
        .db(move |tx| groups::create_agent_group(tx, &folder, &name, limits))
        .await?;
    Ok(json!({
        "group": group,
        "folder": dir.display().to_string(),
        "instructions_written": wrote,
    }))
}

/// Creates `groups/<folder>/AGENT.md` unless it exists; `--instructions` may not overwrite
/// an existing one. Returns whether it was written.
async fn write_instructions(
    dir: &std::path::Path,
    path: &std::path::Path,
    name: &str,
    text: Option<&str>,
) -> Result<bool, AdminError> {
    let exists = tokio::fs::try_exists(path).await.unwrap_or(false);
    match (exists, text) {
        (true, Some(_)) => Err(AdminError::Conflict(format!(
            "{} already exists: edit it instead of passing --instructions",
            path.display()
        ))),
        (true, None) => Ok(false),
        (false, text) => {
            let text = text.map_or_else(
                || format!("# {name}\n\nYou are the {name} agent. Answer plainly and briefly.\n"),
                str::to_owned,
            );
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| AdminError::Internal(format!("creating {}: {e}", dir.display())))?;
            tokio::fs::write(path, text)
                .await
                .map_err(|e| AdminError::Internal(format!("writing {}: {e}", path.display())))?;
            // Every session's container (each its own uid) reads the group folder, and the
            // host's umask keeps what it writes private: open this up explicitly.
            crate::agents::make_group_readable(dir, path)
                .map_err(|e| AdminError::Internal(format!("chmod {}: {e}", dir.display())))?;
            Ok(true)
        }
    }
}

async fn update(admin: &Admin, request: GroupUpdate) -> Reply {
    let id = AgentGroupId::new(request.id);
    let limits = request.limits;
    let image = request
        .image
        .as_deref()
        .map(str::parse::<ImageChoice>)
        .transpose()
        .map_err(|error| AdminError::Invalid(error.to_string()))?;
    let edits_container = limits.memory_mb.is_some()
        || limits.cpus.is_some()
        || limits.pids_limit.is_some()
        || limits.disk_quota_mb.is_some()
        || image.is_some()
        || request.git_author.is_some();
    let changes = GroupChanges {
        name: request.name,
        overrides: edits_container.then(|| ContainerOverrides {
            image,
            git_author: request.git_author,
            ..overrides(limits)
        }),
        create_agent_policy: request.create_agents,
        allow_egress: egress_rules(&request.allow_egress)?,
        deny_egress: egress_rules(&request.deny_egress)?,
    };
    let group = admin
        .db(move |tx| groups::update_agent_group(tx, &id, &changes))
        .await?;
    to_value(&group)
}

async fn delete(admin: &Admin, request: Id) -> Reply {
    if request.id == MAIN_GROUP {
        return Err(AdminError::Invalid(
            "the main agent group cannot be deleted".into(),
        ));
    }
    let id = AgentGroupId::new(request.id);
    let found = id.clone();
    admin.db(move |tx| groups::agent_group(tx, &found)).await?;
    let stopped = admin.supervisor.stop_group(&id).await;
    let deleted = id.clone();
    let group = admin
        .db(move |tx| groups::delete_agent_group(tx, &deleted))
        .await?;
    // Other groups' destinations that named this one went with it.
    admin.supervisor.reproject_all().await;
    Ok(json!({ "deleted": group, "containers_stopped": stopped }))
}

async fn restart(admin: &Admin, request: Id) -> Reply {
    let id = AgentGroupId::new(request.id);
    let found = id.clone();
    admin.db(move |tx| groups::agent_group(tx, &found)).await?;
    let stopped = admin.supervisor.restart_group(&id).await;
    admin.supervisor.reproject_group(&id).await;
    Ok(json!({ "group": id, "containers_stopped": stopped }))
}
