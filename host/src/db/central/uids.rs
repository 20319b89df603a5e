//! One container uid per session (`session_uids`, migration 005): [`allocate`] gives a session
//! the lowest free uid of a [`UidRange`] the first time it is asked and the same uid ever after;
//! [`uid_of`] reads it back. The row is deleted with the session (a reset, a deleted group), which
//! frees the uid for a later session.
//!
//! The gid of a session is its uid: each session has a group of its own, which is what lets
//! `in/` be readable by that session's container and by no other.

use super::DbError;
use protocol::SessionId;
use protocol::time::now_ms;
use rusqlite::{Connection, OptionalExtension, params};

/// An inclusive range of uids for session containers, e.g. `200000-265535`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UidRange {
    pub first: u32,
    pub last: u32,
}

impl UidRange {
    /// The default: 65,536 uids well above any login user, as rootless container setups use.
    pub const DEFAULT: UidRange = UidRange {
        first: 200_000,
        last: 265_535,
    };

    /// Parses `first-last`; `None` unless both are numbers with `first <= last`.
    pub fn parse(text: &str) -> Option<UidRange> {
        let (first, last) = text.trim().split_once('-')?;
        let range = UidRange {
            first: first.trim().parse().ok()?,
            last: last.trim().parse().ok()?,
        };
        (range.first <= range.last).then_some(range)
    }

    pub fn contains(&self, uid: u32) -> bool {
        (self.first..=self.last).contains(&uid)
    }
}

impl std::fmt::Display for UidRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

/// The session's uid, if it has one.
pub fn uid_of(conn: &Connection, session: &SessionId) -> Result<Option<u32>, DbError> {
    Ok(conn
        .query_row(
            "SELECT uid FROM session_uids WHERE session_id = ?1",
            [session],
            |row| row.get(0),
        )
        .optional()?)
}

/// The session's uid: the one it already has (even if the range changed since: its files
/// belong to it), else the lowest free uid of `range`, recorded now. The session must exist.
pub fn allocate(conn: &Connection, session: &SessionId, range: UidRange) -> Result<u32, DbError> {
    if let Some(uid) = uid_of(conn, session)? {
        return Ok(uid);
    }
    // The lowest free uid is either the range's first one or one above a taken uid.
    let free: Option<u32> = conn.query_row(
        "SELECT MIN(candidate) FROM (
             SELECT ?1 AS candidate
             UNION ALL SELECT uid + 1 FROM session_uids WHERE uid >= ?1 AND uid < ?2
         )
         WHERE candidate NOT IN (SELECT uid FROM session_uids)",
        params![range.first, range.last],
        |row| row.get(0),
    )?;
    let uid = free.ok_or_else(|| {
        DbError::Conflict(format!(
            "container_uid_range {range} is used up: every uid is held by a session \
             (reset old sessions or widen the range)"
        ))
    })?;
    conn.execute(
        "INSERT INTO session_uids (session_id, uid, created_at) VALUES (?1, ?2, ?3)",
        params![session, uid, now_ms()],
    )
    .map_err(|e| super::constraint(e, || format!("session {session} does not exist")))?;
    Ok(uid)
}

#[cfg(test)]
mod tests {
    use super::super::tests::db;
    use super::*;
    use crate::db::central::{ensure_agent_group, resolve_session, sessions};

    fn session(conn: &Connection, key: &str) -> SessionId {
        let group = ensure_agent_group(conn, "main", "Main").unwrap();
        resolve_session(conn, &group.id, key, None, None)
            .unwrap()
            .0
            .id
    }

    #[test]
    fn lowest_free_uid_is_given_once_and_kept() {
        let (_dir, conn) = db();
        let range = UidRange {
            first: 500,
            last: 502,
        };
        let a = session(&conn, "a");
        let b = session(&conn, "b");
        let c = session(&conn, "c");
        assert_eq!(allocate(&conn, &a, range).unwrap(), 500);
        assert_eq!(allocate(&conn, &b, range).unwrap(), 501);
        assert_eq!(allocate(&conn, &a, range).unwrap(), 500, "reused");
        assert_eq!(uid_of(&conn, &b).unwrap(), Some(501));
        // Deleting a session frees its uid for the next one; the others keep theirs.
        sessions::delete_session(&conn, &a).unwrap();
        assert_eq!(uid_of(&conn, &a).unwrap(), None);
        assert_eq!(allocate(&conn, &c, range).unwrap(), 500);
        let d = session(&conn, "d");
        assert_eq!(allocate(&conn, &d, range).unwrap(), 502);
        let e = session(&conn, "e");
        let full = allocate(&conn, &e, range).unwrap_err();
        assert!(full.to_string().contains("container_uid_range"), "{full}");
        // A session keeps its uid when the range moves away from it.
        let moved = UidRange {
            first: 900,
            last: 999,
        };
        assert_eq!(allocate(&conn, &b, moved).unwrap(), 501);
        assert_eq!(allocate(&conn, &e, moved).unwrap(), 900);
    }

    #[test]
    fn a_missing_session_gets_no_uid() {
        let (_dir, conn) = db();
        let err = allocate(&conn, &SessionId::new("ghost"), UidRange::DEFAULT).unwrap_err();
        assert!(err.to_string().contains("ghost"), "{err}");
    }

    #[test]
    fn ranges_parse() {
        assert_eq!(UidRange::parse("200000-265535"), Some(UidRange::DEFAULT));
        assert_eq!(
            UidRange::parse(" 7 - 7 "),
            Some(UidRange { first: 7, last: 7 })
        );
        for bad in ["", "5", "9-5", "a-b", "-5", "1-99999999999"] {
            assert_eq!(UidRange::parse(bad), None, "{bad}");
        }
    }
}
