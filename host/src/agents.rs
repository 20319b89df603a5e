//! Agents that create agents (`create_agent`, DESIGN §4 Delivery): a [`ChildRequest`] from an
//! agent's `system` row, checked against the creating group's [`CreateAgentPolicy`] and, by
//! default, held for an approval ([`request`]); once allowed, [`create_child`] makes the
//! child: its folder `groups/<name>/` with the instructions as `AGENT.md`, its agent group
//! (id and folder = the name; an existing group or folder of that name is refused), and both
//! destinations — the creator reaches the child by its name, the child reaches the creator as
//! `parent` (both of type agent, so their messages travel agent to agent).
//!
//! Everything here is central-DB work run on the database's thread; the folder is written
//! there too, before the rows, and removed again if the rows cannot be written.

use crate::db::DbError;
use crate::db::central::approvals::{self as approval_db, Approval, ApprovalKind, NewApproval};
use crate::db::central::destinations::{self, Target};
use crate::db::central::groups::{self, ContainerOverrides, CreateAgentPolicy};
use crate::db::central::{self, people};
use protocol::actions::{CreateAgent, PARENT_DESTINATION};
use protocol::{AgentGroupId, SessionId};
use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// What an agent asked for, kept as a `create_agent` approval's payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildRequest {
    /// The session whose agent asked: it is told the outcome.
    pub session_id: SessionId,
    pub name: String,
    pub instructions: String,
}

/// A child agent that now exists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreatedAgent {
    pub creator: AgentGroupId,
    pub creator_session: SessionId,
    pub child: AgentGroupId,
    pub name: String,
}

/// What became of a request.
#[derive(Clone, Debug, PartialEq)]
pub enum RequestOutcome {
    /// Created at once (policy `allow`).
    Created(CreatedAgent),
    /// Waiting for this approval (new, or the one already open for the same name).
    Pending {
        approval: Approval,
        /// Newly created: its approvers should be asked.
        new: bool,
    },
    /// Refused; the text says why.
    Refused(String),
}

/// Why a name cannot be used for a child of `creator`, if it cannot.
/// A group folder and its `AGENT.md` as every session's container must read them: each runs
/// as its own uid, and the host's umask keeps what it writes private.
pub fn make_group_readable(folder: &Path, instructions: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(folder, std::fs::Permissions::from_mode(0o755))?;
    std::fs::set_permissions(instructions, std::fs::Permissions::from_mode(0o644))
}

fn name_problem(
    conn: &Connection,
    creator: &AgentGroupId,
    name: &str,
    groups_dir: &Path,
) -> Result<Option<String>, DbError> {
    if !protocol::actions::is_valid_agent_name(name) {
        return Ok(Some(format!("{name:?} is not an agent name")));
    }
    if destinations::destination(conn, creator, name)?.is_some() {
        return Ok(Some(format!(
            "agent group {creator} already has a destination named {name:?}"
        )));
    }
    match groups::agent_group(conn, &AgentGroupId::new(name)) {
        Ok(_) => {
            return Ok(Some(format!(
                "an agent group named {name:?} already exists"
            )));
        }
        Err(DbError::NotFound { .. }) => {}
        Err(e) => return Err(e),
    }
    if groups_dir.join(name).exists() {
        return Ok(Some(format!(
            "the folder groups/{name}/ already exists; choose another name"
        )));
    }
    Ok(None)
}

/// Handles an agent's `create_agent` under its group's policy, in one transaction.
/// `platform` is the channel type of the creator's chat (approvers on it are preferred).
pub fn request(
    conn: &mut Connection,
    creator_session: &SessionId,
    creator: &AgentGroupId,
    create: &CreateAgent,
    groups_dir: &Path,
    approval_ttl_ms: i64,
) -> Result<RequestOutcome, DbError> {
    let tx = conn.transaction()?;
    let group = groups::agent_group(&tx, creator)?;
    let child_request = ChildRequest {
        session_id: creator_session.clone(),
        name: create.name.clone(),
        instructions: create.instructions.clone(),
    };
    let outcome = match group.create_agent_policy {
        CreateAgentPolicy::Deny => RequestOutcome::Refused(format!(
            "agent group {creator} may not create agents (its create-agent policy is `deny`)"
        )),
        CreateAgentPolicy::Allow => match create_child(&tx, groups_dir, creator, &child_request)? {
            Ok(created) => RequestOutcome::Created(created),
            Err(reason) => RequestOutcome::Refused(reason),
        },
        CreateAgentPolicy::Approval => {
            if let Some(open) = approval_db::pending_create_agent(&tx, creator, &create.name)? {
                RequestOutcome::Pending {
                    approval: open,
                    new: false,
                }
            } else if let Some(problem) = name_problem(&tx, creator, &create.name, groups_dir)? {
                RequestOutcome::Refused(problem)
            } else {
                let platform = creator_platform(&tx, creator_session)?;
                let excerpt: String = create.instructions.chars().take(200).collect();
                let approval = approval_db::create_approval(
                    &tx,
                    &NewApproval {
                        kind: ApprovalKind::CreateAgent,
                        agent_group_id: Some(creator.clone()),
                        messaging_group_id: None,
                        requester: format!("agent:{creator}"),
                        summary: format!(
                            "agent group {creator} wants to create agent {:?} with instructions {excerpt:?}",
                            create.name
                        ),
                        approvers: people::choose_approvers(&tx, Some(creator), &platform)?,
                        held: None,
                        payload: serde_json::to_value(&child_request).ok(),
                        ttl_ms: approval_ttl_ms,
                    },
                )?;
                RequestOutcome::Pending {
                    approval,
                    new: true,
                }
            }
        }
    };
    tx.commit()?;
    Ok(outcome)
}

/// The channel type of the chat a session came from (`cli` when it has none).
pub fn creator_platform(conn: &Connection, session: &SessionId) -> Result<String, DbError> {
    let stored = central::session(conn, session)?;
    Ok(match stored.messaging_group_id {
        Some(chat) => central::messaging_group(conn, &chat)?.channel_type,
        None => crate::channels::cli::CHANNEL_TYPE.to_owned(),
    })
}

/// Creates the child: folder and `AGENT.md`, agent group, and both destinations. The inner
/// error says why it was refused (nothing is left behind then).
pub fn create_child(
    tx: &Connection,
    groups_dir: &Path,
    creator: &AgentGroupId,
    request: &ChildRequest,
) -> Result<Result<CreatedAgent, String>, DbError> {
    let name = request.name.as_str();
    if let Some(problem) = name_problem(tx, creator, name, groups_dir)? {
        return Ok(Err(problem));
    }
    if request.instructions.trim().is_empty() {
        return Ok(Err("the instructions are empty".into()));
    }
    let folder = groups_dir.join(name);
    // `create_dir` (not `create_dir_all`) fails if the folder appeared meanwhile.
    let instructions = folder.join(protocol::paths::AGENT_INSTRUCTIONS);
    if let Err(e) = std::fs::create_dir(&folder)
        .and_then(|()| std::fs::write(&instructions, &request.instructions))
        .and_then(|()| make_group_readable(&folder, &instructions))
    {
        return Ok(Err(format!("cannot write groups/{name}/AGENT.md: {e}")));
    }
    let rows = (|| -> Result<AgentGroupId, DbError> {
        let child = groups::create_agent_group(tx, name, name, ContainerOverrides::default())?;
        groups::set_parent(tx, &child.id, creator)?;
        destinations::add_destination(
            tx,
            creator,
            name,
            None,
            &Target::Agent {
                agent_group_id: child.id.clone(),
            },
        )?;
        destinations::add_destination(
            tx,
            &child.id,
            PARENT_DESTINATION,
            None,
            &Target::Agent {
                agent_group_id: creator.clone(),
            },
        )?;
        Ok(child.id)
    })();
    match rows {
        Ok(child) => {
            tracing::info!(%creator, %child, "agent created by an agent");
            Ok(Ok(CreatedAgent {
                creator: creator.clone(),
                creator_session: request.session_id.clone(),
                child,
                name: name.to_owned(),
            }))
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&folder);
            match e {
                DbError::Conflict(reason) | DbError::Invalid(reason) => Ok(Err(reason)),
                other => Err(other),
            }
        }
    }
}

/// The request a `create_agent` approval carries.
pub fn request_of(approval: &Approval) -> Option<ChildRequest> {
    approval
        .payload
        .clone()
        .and_then(|payload| serde_json::from_value(payload).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, Connection, SessionId) {
        let dir = tempfile::tempdir().unwrap();
        let conn = central::open(&dir.path().join("crabpot.db")).unwrap();
        central::ensure_agent_group(&conn, "main", "Main").unwrap();
        std::fs::create_dir_all(dir.path().join("groups/main")).unwrap();
        let (session, _) =
            central::resolve_session(&conn, &AgentGroupId::new("main"), "k", None, None).unwrap();
        (dir, conn, session.id)
    }

    fn create(name: &str) -> CreateAgent {
        CreateAgent {
            name: name.into(),
            instructions: "You find sources.".into(),
        }
    }

    #[test]
    fn policies_and_creation() {
        let (dir, mut conn, session) = setup();
        let groups_dir = dir.path().join("groups");
        let main = AgentGroupId::new("main");
        // Default policy: an approval, once per name.
        let first = request(
            &mut conn,
            &session,
            &main,
            &create("scout"),
            &groups_dir,
            1000,
        )
        .unwrap();
        let RequestOutcome::Pending {
            approval,
            new: true,
        } = first
        else {
            panic!("{first:?}")
        };
        assert_eq!(approval.kind, ApprovalKind::CreateAgent);
        let again = request(
            &mut conn,
            &session,
            &main,
            &create("scout"),
            &groups_dir,
            1000,
        )
        .unwrap();
        assert!(
            matches!(again, RequestOutcome::Pending { new: false, .. }),
            "{again:?}"
        );
        let child_request = request_of(&approval).unwrap();
        assert_eq!(child_request.session_id, session);

        // Creation makes the folder, the group and both destinations.
        let created = create_child(&conn, &groups_dir, &main, &child_request)
            .unwrap()
            .unwrap();
        assert_eq!(created.child, AgentGroupId::new("scout"));
        assert_eq!(
            std::fs::read_to_string(groups_dir.join("scout/AGENT.md")).unwrap(),
            "You find sources."
        );
        let to_child = destinations::destination(&conn, &main, "scout")
            .unwrap()
            .unwrap();
        assert_eq!(to_child.agent_group_id, Some(AgentGroupId::new("scout")));
        let to_parent = destinations::destination(&conn, &created.child, "parent")
            .unwrap()
            .unwrap();
        assert_eq!(to_parent.agent_group_id, Some(main.clone()));
        assert_eq!(
            groups::agent_group(&conn, &created.child)
                .unwrap()
                .parent_agent_group_id,
            Some(main.clone())
        );
        // The name is taken now.
        let taken = create_child(&conn, &groups_dir, &main, &child_request).unwrap();
        assert!(taken.unwrap_err().contains("already has a destination"));

        // Policies `allow` and `deny`.
        groups::update_agent_group(
            &conn,
            &main,
            &groups::GroupChanges {
                create_agent_policy: Some(CreateAgentPolicy::Allow),
                ..Default::default()
            },
        )
        .unwrap();
        let allowed = request(
            &mut conn,
            &session,
            &main,
            &create("clerk"),
            &groups_dir,
            1000,
        )
        .unwrap();
        assert!(matches!(allowed, RequestOutcome::Created(_)), "{allowed:?}");
        groups::update_agent_group(
            &conn,
            &main,
            &groups::GroupChanges {
                create_agent_policy: Some(CreateAgentPolicy::Deny),
                ..Default::default()
            },
        )
        .unwrap();
        let denied = request(
            &mut conn,
            &session,
            &main,
            &create("spy"),
            &groups_dir,
            1000,
        )
        .unwrap();
        assert!(
            matches!(&denied, RequestOutcome::Refused(r) if r.contains("`deny`")),
            "{denied:?}"
        );

        // A folder already on disk is refused and left alone.
        std::fs::create_dir_all(groups_dir.join("taken")).unwrap();
        std::fs::write(groups_dir.join("taken/AGENT.md"), "mine").unwrap();
        let request = ChildRequest {
            name: "taken".into(),
            ..child_request
        };
        let refused = create_child(&conn, &groups_dir, &main, &request).unwrap();
        assert!(refused.unwrap_err().contains("already exists"));
        assert_eq!(
            std::fs::read_to_string(groups_dir.join("taken/AGENT.md")).unwrap(),
            "mine"
        );
    }
}
