//! People: [`User`]s (one platform identity each, `<channel_type>:<handle>`, exactly the
//! sender id a channel reports), their [`Role`]s (owner: global; admin: global or per agent
//! group), agent group members, and the DM chat where each user can be reached.
//!
//! [`is_known`] decides whether a sender is known to an agent group (member, admin of it,
//! global admin or owner). [`choose_approvers`] picks who decides an approval: the group's
//! admins, else global admins, else owners, preferring those on the requester's platform.

use super::{DbError, constraint, text_enum};
use protocol::AgentGroupId;
use protocol::time::now_ms;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

text_enum!(
    /// A user's role.
    Role { Owner => "owner", Admin => "admin" }
);

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    pub name: String,
    /// `<channel_type>/<platform_id>` of each DM chat.
    pub dms: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleGrant {
    pub user_id: String,
    pub role: Role,
    /// `None` = global.
    pub agent_group_id: Option<AgentGroupId>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub agent_group_id: AgentGroupId,
    pub user_id: String,
}

/// The channel part of a user id (`cli` of `cli:alice`).
pub fn channel_of(user_id: &str) -> &str {
    user_id.split_once(':').map_or("", |(channel, _)| channel)
}

/// Checks a user id: `<channel_type>:<handle>`, printable, at most 256 bytes.
pub fn check_user_id(id: &str) -> Result<(), DbError> {
    let ok = id.len() <= 256
        && !id.chars().any(char::is_control)
        && id
            .split_once(':')
            .is_some_and(|(channel, handle)| !channel.is_empty() && !handle.is_empty());
    if ok {
        Ok(())
    } else {
        Err(DbError::Invalid(format!(
            "user id {id:?} must be <channel_type>:<handle>, the sender id the channel reports (e.g. cli:alice)"
        )))
    }
}

/// The user with this id, created (named after the handle) if missing.
pub fn ensure_user(conn: &Connection, id: &str, name: Option<&str>) -> Result<(), DbError> {
    check_user_id(id)?;
    let handle = id.split_once(':').map_or(id, |(_, handle)| handle);
    conn.execute(
        "INSERT OR IGNORE INTO users (id, name, created_at) VALUES (?1, ?2, ?3)",
        params![id, name.unwrap_or(handle), now_ms()],
    )?;
    Ok(())
}

/// Takes note of who sent a platform message: the user `<channel>:<id>` is created with the
/// platform's display name (or renamed to it while it still has the default name, the
/// handle), and a direct chat becomes the user's DM on that channel when they have none, so
/// approvals reach them there. A sender of another channel, or an id that is not a user id,
/// is left alone.
pub fn note_sender(
    conn: &Connection,
    channel_type: &str,
    sender: &protocol::Sender,
    dm_platform_id: Option<&str>,
) -> Result<(), DbError> {
    if channel_of(&sender.id) != channel_type || check_user_id(&sender.id).is_err() {
        return Ok(());
    }
    let handle = sender
        .id
        .split_once(':')
        .map_or(sender.id.as_str(), |(_, h)| h);
    let name: Option<String> = sender.name.as_deref().map(|name| {
        name.chars()
            .filter(|c| !c.is_control())
            .take(200)
            .collect::<String>()
            .trim()
            .to_owned()
    });
    let name = name.filter(|n| !n.is_empty());
    // Runs for every routed message: the statements are prepared once per connection.
    conn.prepare_cached(
        "INSERT INTO users (id, name, created_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT (id) DO UPDATE SET name = excluded.name WHERE users.name = ?4 AND ?5",
    )?
    .execute(params![
        sender.id,
        name.as_deref().unwrap_or(handle),
        now_ms(),
        handle,
        name.is_some()
    ])?;
    if let Some(platform_id) = dm_platform_id.filter(|id| !id.is_empty()) {
        conn.prepare_cached(
            "INSERT OR IGNORE INTO user_dms (user_id, channel_type, platform_id, created_at) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![sender.id, channel_type, platform_id, now_ms()])?;
    }
    Ok(())
}

/// Creates a user, optionally with a DM chat `(channel_type, platform_id)`.
pub fn create_user(
    conn: &Connection,
    id: &str,
    name: Option<&str>,
    dm: Option<(&str, &str)>,
) -> Result<User, DbError> {
    check_user_id(id)?;
    let handle = id.split_once(':').map_or(id, |(_, handle)| handle);
    conn.execute(
        "INSERT INTO users (id, name, created_at) VALUES (?1, ?2, ?3)",
        params![id, name.unwrap_or(handle), now_ms()],
    )
    .map_err(|e| constraint(e, || format!("user {id:?} already exists")))?;
    if let Some((channel_type, platform_id)) = dm {
        set_dm(conn, id, channel_type, platform_id)?;
    }
    user(conn, id)
}

/// Sets where a user is reached privately on a channel.
pub fn set_dm(
    conn: &Connection,
    user_id: &str,
    channel_type: &str,
    platform_id: &str,
) -> Result<(), DbError> {
    if channel_type.is_empty() || platform_id.is_empty() {
        return Err(DbError::Invalid(
            "a DM is <channel_type>/<platform_id>, e.g. cli/dm:alice".into(),
        ));
    }
    conn.execute(
        "INSERT OR REPLACE INTO user_dms (user_id, channel_type, platform_id, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![user_id, channel_type, platform_id, now_ms()],
    )?;
    Ok(())
}

/// The DM chats of a user: `(channel_type, platform_id)`.
pub fn dms_of(conn: &Connection, user_id: &str) -> Result<Vec<(String, String)>, DbError> {
    let mut statement = conn.prepare_cached(
        "SELECT channel_type, platform_id FROM user_dms WHERE user_id = ?1 ORDER BY channel_type",
    )?;
    let rows = statement.query_map([user_id], |row| Ok((row.get(0)?, row.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The user whose DM chat this is, if any.
pub fn dm_owner(
    conn: &Connection,
    channel_type: &str,
    platform_id: &str,
) -> Result<Option<String>, DbError> {
    Ok(conn
        .query_row(
            "SELECT user_id FROM user_dms WHERE channel_type = ?1 AND platform_id = ?2",
            params![channel_type, platform_id],
            |row| row.get(0),
        )
        .optional()?)
}

pub fn user(conn: &Connection, id: &str) -> Result<User, DbError> {
    let name: String = conn
        .query_row("SELECT name FROM users WHERE id = ?1", [id], |row| {
            row.get(0)
        })
        .optional()?
        .ok_or_else(|| DbError::NotFound {
            what: "user",
            id: id.to_owned(),
        })?;
    let dms = dms_of(conn, id)?
        .into_iter()
        .map(|(c, p)| format!("{c}/{p}"))
        .collect();
    Ok(User {
        id: id.to_owned(),
        name,
        dms,
    })
}

pub fn list_users(conn: &Connection) -> Result<Vec<User>, DbError> {
    let ids: Vec<String> = conn
        .prepare_cached("SELECT id FROM users ORDER BY id")?
        .query_map([], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    ids.iter().map(|id| user(conn, id)).collect()
}

/// Grants a role; granting one the user already has is a conflict.
pub fn grant_role(
    conn: &Connection,
    user_id: &str,
    role: Role,
    agent_group: Option<&AgentGroupId>,
) -> Result<RoleGrant, DbError> {
    user(conn, user_id)?;
    if let Some(group) = agent_group {
        if role == Role::Owner {
            return Err(DbError::Invalid(
                "owner is a global role: leave out the agent group".into(),
            ));
        }
        super::groups::agent_group(conn, group)?;
    }
    conn.execute(
        "INSERT INTO user_roles (user_id, role, agent_group_id, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![user_id, role, agent_group, now_ms()],
    )
    .map_err(|e| constraint(e, || format!("{user_id} already has that role")))?;
    Ok(RoleGrant {
        user_id: user_id.to_owned(),
        role,
        agent_group_id: agent_group.cloned(),
    })
}

/// Revokes a role; revoking one the user does not have is "not found".
pub fn revoke_role(
    conn: &Connection,
    user_id: &str,
    role: Role,
    agent_group: Option<&AgentGroupId>,
) -> Result<(), DbError> {
    let removed = conn.execute(
        "DELETE FROM user_roles WHERE user_id = ?1 AND role = ?2 AND coalesce(agent_group_id, '') = coalesce(?3, '')",
        params![user_id, role, agent_group],
    )?;
    if removed == 0 {
        let scope = agent_group.map_or_else(|| "global".to_owned(), |g| format!("of {g}"));
        return Err(DbError::NotFound {
            what: "role",
            id: format!("{user_id} {role} ({scope})"),
        });
    }
    Ok(())
}

pub fn list_roles(conn: &Connection) -> Result<Vec<RoleGrant>, DbError> {
    let mut statement = conn.prepare_cached(
        "SELECT user_id, role, agent_group_id FROM user_roles ORDER BY role DESC, user_id, agent_group_id",
    )?;
    let rows = statement.query_map([], |row| {
        Ok(RoleGrant {
            user_id: row.get(0)?,
            role: row.get(1)?,
            agent_group_id: row.get(2)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Makes a user (created if missing) a member of an agent group. `Ok(false)` when they
/// already were.
pub fn add_member(
    conn: &Connection,
    agent_group: &AgentGroupId,
    user_id: &str,
) -> Result<bool, DbError> {
    super::groups::agent_group(conn, agent_group)?;
    ensure_user(conn, user_id, None)?;
    Ok(conn.execute(
        "INSERT OR IGNORE INTO members (agent_group_id, user_id, created_at) VALUES (?1, ?2, ?3)",
        params![agent_group, user_id, now_ms()],
    )? > 0)
}

pub fn remove_member(
    conn: &Connection,
    agent_group: &AgentGroupId,
    user_id: &str,
) -> Result<(), DbError> {
    let removed = conn.execute(
        "DELETE FROM members WHERE agent_group_id = ?1 AND user_id = ?2",
        params![agent_group, user_id],
    )?;
    if removed == 0 {
        return Err(DbError::NotFound {
            what: "member",
            id: format!("{user_id} of {agent_group}"),
        });
    }
    Ok(())
}

pub fn list_members(
    conn: &Connection,
    agent_group: Option<&AgentGroupId>,
) -> Result<Vec<Member>, DbError> {
    let mut statement = conn.prepare_cached(
        "SELECT agent_group_id, user_id FROM members WHERE ?1 IS NULL OR agent_group_id = ?1 \
         ORDER BY agent_group_id, user_id",
    )?;
    let rows = statement.query_map([agent_group], |row| {
        Ok(Member {
            agent_group_id: row.get(0)?,
            user_id: row.get(1)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Whether a sender is known to an agent group: a member, an admin of the group, a global
/// admin, or an owner.
pub fn is_known(
    conn: &Connection,
    user_id: &str,
    agent_group: &AgentGroupId,
) -> Result<bool, DbError> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM members WHERE agent_group_id = ?2 AND user_id = ?1 \
             UNION ALL SELECT 1 FROM user_roles WHERE user_id = ?1 \
               AND (role = 'owner' OR agent_group_id IS NULL OR agent_group_id = ?2) LIMIT 1",
            params![user_id, agent_group],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// The strongest role a user holds for an agent group: owner, else admin (global or of the
/// group), else none.
pub fn role_for(
    conn: &Connection,
    user_id: &str,
    agent_group: &AgentGroupId,
) -> Result<Option<Role>, DbError> {
    Ok(conn
        .query_row(
            "SELECT role FROM user_roles WHERE user_id = ?1 \
             AND (role = 'owner' OR agent_group_id IS NULL OR agent_group_id = ?2) \
             ORDER BY role = 'owner' DESC LIMIT 1",
            params![user_id, agent_group],
            |row| row.get(0),
        )
        .optional()?)
}

/// Whether `user_id` holds the owner role.
pub fn is_owner(conn: &Connection, user_id: &str) -> Result<bool, DbError> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM user_roles WHERE user_id = ?1 AND role = 'owner' LIMIT 1",
            [user_id],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// Who decides an approval about `agent_group` (or about no group yet): the group's admins,
/// else global admins, else owners — within that tier, those on `platform` (by their id or
/// a DM there) when there are any. Empty when nobody holds a role: then only the operator
/// decides, with `crabpot approvals`.
pub fn choose_approvers(
    conn: &Connection,
    agent_group: Option<&AgentGroupId>,
    platform: &str,
) -> Result<Vec<String>, DbError> {
    let query = |sql: &str, group: Option<&AgentGroupId>| -> Result<Vec<String>, DbError> {
        let mut statement = conn.prepare_cached(sql)?;
        let rows: Vec<String> = match group {
            Some(group) => statement
                .query_map([group], |row| row.get(0))?
                .collect::<Result<_, _>>()?,
            None => statement
                .query_map([], |row| row.get(0))?
                .collect::<Result<_, _>>()?,
        };
        Ok(rows)
    };
    let group_admins = match agent_group {
        Some(group) => query(
            "SELECT DISTINCT user_id FROM user_roles WHERE role = 'admin' AND agent_group_id = ?1 ORDER BY user_id",
            Some(group),
        )?,
        None => Vec::new(),
    };
    let tiers = [
        group_admins,
        query(
            "SELECT DISTINCT user_id FROM user_roles WHERE role = 'admin' AND agent_group_id IS NULL ORDER BY user_id",
            None,
        )?,
        query(
            "SELECT DISTINCT user_id FROM user_roles WHERE role = 'owner' ORDER BY user_id",
            None,
        )?,
    ];
    for users in tiers {
        if users.is_empty() {
            continue;
        }
        let mut on_platform = Vec::new();
        for user in &users {
            let has_dm = dms_of(conn, user)?.iter().any(|(c, _)| c == platform);
            if channel_of(user) == platform || has_dm {
                on_platform.push(user.clone());
            }
        }
        return Ok(if on_platform.is_empty() {
            users
        } else {
            on_platform
        });
    }
    Ok(Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::central::{ensure_agent_group, open};

    #[test]
    fn approvers_by_tier_and_platform() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir.path().join("c.db")).unwrap();
        let main = ensure_agent_group(&conn, "main", "Main").unwrap().id;
        let other = ensure_agent_group(&conn, "other", "Other").unwrap().id;
        let check = |group: Option<&AgentGroupId>, platform: &str, want: &[&str]| {
            assert_eq!(
                choose_approvers(&conn, group, platform).unwrap(),
                want,
                "{group:?} {platform}"
            );
        };
        check(Some(&main), "cli", &[]);
        for user in ["cli:olivia", "tg:oscar", "cli:gina", "tg:gus", "cli:ada"] {
            create_user(&conn, user, None, None).unwrap();
        }
        grant_role(&conn, "cli:olivia", Role::Owner, None).unwrap();
        grant_role(&conn, "tg:oscar", Role::Owner, None).unwrap();
        assert!(is_owner(&conn, "tg:oscar").unwrap());
        assert!(!is_owner(&conn, "cli:gina").unwrap());
        check(Some(&main), "cli", &["cli:olivia"]);
        check(Some(&main), "tg", &["tg:oscar"]);
        check(Some(&main), "slack", &["cli:olivia", "tg:oscar"]);
        grant_role(&conn, "cli:gina", Role::Admin, None).unwrap();
        grant_role(&conn, "tg:gus", Role::Admin, None).unwrap();
        check(Some(&main), "tg", &["tg:gus"]);
        check(None, "cli", &["cli:gina"]);
        grant_role(&conn, "cli:ada", Role::Admin, Some(&main)).unwrap();
        check(Some(&main), "tg", &["cli:ada"]);
        check(Some(&other), "cli", &["cli:gina"]);
        // A DM on the platform counts as being there.
        set_dm(&conn, "cli:gina", "tg", "dm-gina").unwrap();
        check(Some(&other), "tg", &["cli:gina", "tg:gus"]);

        assert!(is_known(&conn, "cli:ada", &main).unwrap());
        assert!(!is_known(&conn, "cli:ada", &other).unwrap());
        assert!(is_known(&conn, "cli:olivia", &other).unwrap());
        assert!(!is_known(&conn, "cli:sam", &main).unwrap());
        assert!(add_member(&conn, &main, "cli:sam").unwrap());
        assert!(!add_member(&conn, &main, "cli:sam").unwrap());
        assert!(is_known(&conn, "cli:sam", &main).unwrap());
        assert!(matches!(
            grant_role(&conn, "cli:olivia", Role::Owner, None),
            Err(DbError::Conflict(_))
        ));
        assert!(matches!(
            grant_role(&conn, "cli:nobody", Role::Owner, None),
            Err(DbError::NotFound { .. })
        ));
        assert!(matches!(
            revoke_role(&conn, "cli:sam", Role::Admin, None),
            Err(DbError::NotFound { .. })
        ));
        revoke_role(&conn, "cli:ada", Role::Admin, Some(&main)).unwrap();
        assert!(!is_known(&conn, "cli:ada", &main).unwrap());
        assert!(check_user_id("nocolon").is_err());
    }

    #[test]
    fn a_platform_sender_becomes_a_user_with_a_name_and_a_dm() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir.path().join("c.db")).unwrap();
        let sender = |id: &str, name: Option<&str>| protocol::Sender {
            id: id.into(),
            name: name.map(str::to_owned),
        };
        note_sender(&conn, "telegram", &sender("telegram:42", None), None).unwrap();
        assert_eq!(user(&conn, "telegram:42").unwrap().name, "42");
        // The platform's display name replaces the default, and a DM is recorded once.
        note_sender(
            &conn,
            "telegram",
            &sender("telegram:42", Some("Ada\u{7} Lovelace")),
            Some("42"),
        )
        .unwrap();
        assert_eq!(user(&conn, "telegram:42").unwrap().name, "Ada Lovelace");
        note_sender(
            &conn,
            "telegram",
            &sender("telegram:42", Some("Ada")),
            Some("99"),
        )
        .unwrap();
        assert_eq!(
            dms_of(&conn, "telegram:42").unwrap(),
            [("telegram".into(), "42".into())]
        );
        // A name the operator chose is kept.
        create_user(&conn, "slack:U1", Some("Grace (ops)"), None).unwrap();
        note_sender(&conn, "slack", &sender("slack:U1", Some("grace")), None).unwrap();
        assert_eq!(user(&conn, "slack:U1").unwrap().name, "Grace (ops)");
        // A sender of another channel, or not a user id, is left alone.
        note_sender(&conn, "slack", &sender("telegram:7", Some("x")), None).unwrap();
        note_sender(&conn, "slack", &sender("slack:", Some("x")), None).unwrap();
        assert!(user(&conn, "telegram:7").is_err());
    }
}
