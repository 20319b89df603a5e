//! Agent groups (`agent_groups`): [`AgentGroup`], its per-group container settings
//! ([`ContainerOverrides`]: limits, image, git author and egress rules, stored as JSON in
//! `container_config`), and whether its agents may create child agents
//! ([`CreateAgentPolicy`]). [`GroupChanges`] is one update.
//!
//! An agent group's id is its folder name under `groups/`, checked to be a plain name.

use super::{DbError, constraint, text_enum};
use crate::egress::{EgressRule, EgressRules};
use protocol::AgentGroupId;
use protocol::time::now_ms;
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

text_enum!(
    /// Whether an agent group's agents may create child agents (`create_agent`).
    CreateAgentPolicy {
        /// Each request waits for an approval (the group's admins, else global admins, else
        /// owners; the operator always may). The default.
        Approval => "approval",
        /// Created at once.
        Allow => "allow",
        /// Refused.
        Deny => "deny",
    }
);

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentGroup {
    pub id: AgentGroupId,
    pub folder: String,
    pub name: String,
    /// JSON of [`ContainerOverrides`].
    pub container_config: String,
    pub create_agent_policy: CreateAgentPolicy,
    /// The group whose agent created this one, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_agent_group_id: Option<AgentGroupId>,
}

impl AgentGroup {
    /// The group's container limit overrides; a malformed value counts as none.
    pub fn overrides(&self) -> ContainerOverrides {
        serde_json::from_str(&self.container_config).unwrap_or_default()
    }
}

/// Per-group container settings; `None` keeps the host's default.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerOverrides {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids_limit: Option<i64>,
    /// Hard cap on each session's `out/` and `work/`, in MiB; applies to sessions whose disk
    /// is made after the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_quota_mb: Option<u64>,
    /// Which agent image the group's containers run; `None` is the small default image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageChoice>,
    /// The author (`Name <email>`) of the commits the group's agents make in their workspace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_author: Option<String>,
    /// What the group's containers may reach through the egress proxy (empty: nothing).
    #[serde(default, skip_serializing_if = "is_default")]
    pub egress: EgressRules,
}

fn is_default(rules: &EgressRules) -> bool {
    *rules == EgressRules::default()
}

/// The agent images a group can choose.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageChoice {
    /// `crabpot-agent`: the static runner and busybox (`make image`).
    Default,
    /// `crabpot-agent-toolbox`: a Debian root filesystem with git, Python, Node.js, Chromium
    /// and the same runner (`make image-toolbox`).
    Toolbox,
}

impl std::str::FromStr for ImageChoice {
    type Err = DbError;

    fn from_str(text: &str) -> Result<Self, DbError> {
        match text {
            "default" => Ok(ImageChoice::Default),
            "toolbox" => Ok(ImageChoice::Toolbox),
            other => Err(DbError::Invalid(format!(
                "image {other:?} is not one of default, toolbox"
            ))),
        }
    }
}

impl ContainerOverrides {
    /// Refuses values Docker would refuse or that make no sense.
    pub fn validate(&self) -> Result<(), DbError> {
        if let Some(mb) = self.memory_mb
            && mb < 16
        {
            return Err(DbError::Invalid(format!(
                "memory_mb {mb} is below the 16 MB Docker needs"
            )));
        }
        if let Some(cpus) = self.cpus
            && !(0.01..=64.0).contains(&cpus)
        {
            return Err(DbError::Invalid(format!(
                "cpus {cpus} is outside 0.01..=64"
            )));
        }
        if let Some(pids) = self.pids_limit
            && pids < 8
        {
            return Err(DbError::Invalid(format!("pids_limit {pids} is below 8")));
        }
        if let Some(mb) = self.disk_quota_mb
            && !(16..=1 << 24).contains(&mb)
        {
            return Err(DbError::Invalid(format!(
                "disk_quota_mb {mb} is outside 16..=16777216"
            )));
        }
        if let Some(author) = &self.git_author {
            check_git_author(author)?;
        }
        self.egress
            .parsed()
            .map_err(|error| DbError::Invalid(error.to_string()))?;
        Ok(())
    }

    /// `over`'s values replace these where set; the egress rules are changed only through
    /// [`GroupChanges`].
    pub fn merge(self, over: ContainerOverrides) -> ContainerOverrides {
        ContainerOverrides {
            memory_mb: over.memory_mb.or(self.memory_mb),
            cpus: over.cpus.or(self.cpus),
            pids_limit: over.pids_limit.or(self.pids_limit),
            disk_quota_mb: over.disk_quota_mb.or(self.disk_quota_mb),
            image: over.image.or(self.image),
            git_author: over.git_author.or(self.git_author),
            egress: self.egress,
        }
    }
}

/// A commit author as git takes it: `Name <email>`, one line, no control characters.
fn check_git_author(author: &str) -> Result<(), DbError> {
    let well_formed = author.len() <= 200
        && !author.chars().any(char::is_control)
        && author.split_once(" <").is_some_and(|(name, email)| {
            !name.trim().is_empty()
                && email.ends_with('>')
                && email.trim_end_matches('>').contains('@')
                && !email.trim_end_matches('>').contains(['<', '>'])
        });
    if well_formed {
        Ok(())
    } else {
        Err(DbError::Invalid(format!(
            "git author {author:?} must look like `Name <email@example.com>`"
        )))
    }
}

/// What one `groups update` changes; `None` and empty lists leave things as they are.
#[derive(Clone, Debug, Default)]
pub struct GroupChanges {
    pub name: Option<String>,
    pub overrides: Option<ContainerOverrides>,
    pub create_agent_policy: Option<CreateAgentPolicy>,
    /// Rules added to the allowlist, in order.
    pub allow_egress: Vec<EgressRule>,
    /// Rules taken off it (or denied explicitly where a broader rule still covers them).
    pub deny_egress: Vec<EgressRule>,
}

fn agent_group_from(row: &Row<'_>) -> rusqlite::Result<AgentGroup> {
    Ok(AgentGroup {
        id: row.get(0)?,
        folder: row.get(1)?,
        name: row.get(2)?,
        container_config: row.get(3)?,
        create_agent_policy: row.get(4)?,
        parent_agent_group_id: row.get(5)?,
    })
}

const COLUMNS: &str =
    "id, folder, name, container_config, create_agent_policy, parent_agent_group_id";

fn check_folder(folder: &str) -> Result<(), DbError> {
    if protocol::ids::is_safe_folder_name(folder) {
        Ok(())
    } else {
        Err(DbError::Invalid(format!(
            "agent group folder {folder:?} must be a plain name of [A-Za-z0-9._-], not starting with '.'"
        )))
    }
}

/// The agent group stored for `folder`, created if missing (id = folder).
pub fn ensure_agent_group(
    conn: &Connection,
    folder: &str,
    name: &str,
) -> Result<AgentGroup, DbError> {
    check_folder(folder)?;
    conn.execute(
        "INSERT OR IGNORE INTO agent_groups (id, folder, name, created_at) VALUES (?1, ?1, ?2, ?3)",
        params![folder, name, now_ms()],
    )?;
    agent_group(conn, &AgentGroupId::new(folder))
}

/// Creates an agent group; a clash with an existing one is a conflict.
pub fn create_agent_group(
    conn: &Connection,
    folder: &str,
    name: &str,
    overrides: ContainerOverrides,
) -> Result<AgentGroup, DbError> {
    check_folder(folder)?;
    overrides.validate()?;
    let config = serde_json::to_string(&overrides).unwrap_or_else(|_| "{}".into());
    conn.execute(
        "INSERT INTO agent_groups (id, folder, name, container_config, created_at) VALUES (?1, ?1, ?2, ?3, ?4)",
        params![folder, name, config, now_ms()],
    )
    .map_err(|e| constraint(e, || format!("agent group {folder:?} already exists")))?;
    agent_group(conn, &AgentGroupId::new(folder))
}

pub fn agent_group(conn: &Connection, id: &AgentGroupId) -> Result<AgentGroup, DbError> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM agent_groups WHERE id = ?1"),
        [id],
        agent_group_from,
    )
    .optional()?
    .ok_or_else(|| DbError::NotFound {
        what: "agent group",
        id: id.to_string(),
    })
}

pub fn list_agent_groups(conn: &Connection) -> Result<Vec<AgentGroup>, DbError> {
    let mut statement =
        conn.prepare_cached(&format!("SELECT {COLUMNS} FROM agent_groups ORDER BY id"))?;
    let rows = statement.query_map([], agent_group_from)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Records the group that created a child group.
pub fn set_parent(
    conn: &Connection,
    id: &AgentGroupId,
    parent: &AgentGroupId,
) -> Result<(), DbError> {
    conn.execute(
        "UPDATE agent_groups SET parent_agent_group_id = ?2 WHERE id = ?1",
        params![id, parent],
    )?;
    Ok(())
}

/// Renames a group, changes its container limits (merged into the stored ones) and/or its
/// create-agent policy.
pub fn update_agent_group(
    conn: &Connection,
    id: &AgentGroupId,
    changes: &GroupChanges,
) -> Result<AgentGroup, DbError> {
    let group = agent_group(conn, id)?;
    if let Some(policy) = changes.create_agent_policy {
        conn.execute(
            "UPDATE agent_groups SET create_agent_policy = ?2 WHERE id = ?1",
            params![id, policy],
        )?;
    }
    if let Some(name) = &changes.name {
        conn.execute(
            "UPDATE agent_groups SET name = ?2 WHERE id = ?1",
            params![id, name],
        )?;
    }
    let edits_egress = !changes.allow_egress.is_empty() || !changes.deny_egress.is_empty();
    if changes.overrides.is_some() || edits_egress {
        let mut merged = group
            .overrides()
            .merge(changes.overrides.clone().unwrap_or_default());
        for rule in &changes.allow_egress {
            merged.egress.allow(rule);
        }
        for rule in &changes.deny_egress {
            merged.egress.deny(rule);
        }
        merged.validate()?;
        let config = serde_json::to_string(&merged).unwrap_or_else(|_| "{}".into());
        conn.execute(
            "UPDATE agent_groups SET container_config = ?2 WHERE id = ?1",
            params![id, config],
        )?;
    }
    agent_group(conn, id)
}

/// Deletes a group with its wirings, sessions and destinations (and other groups'
/// destinations that name it).
pub fn delete_agent_group(conn: &Connection, id: &AgentGroupId) -> Result<AgentGroup, DbError> {
    let group = agent_group(conn, id)?;
    conn.execute("DELETE FROM agent_groups WHERE id = ?1", [id])?;
    Ok(group)
}
