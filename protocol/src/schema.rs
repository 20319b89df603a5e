//! Session-file schemas, their migrations, and the open helpers that fix each side's pragmas.
//!
//! Only the host creates and migrates session files ([`open_inbound_writer`],
//! [`create_outbound`]). The runner opens `inbound.db` read-only and `outbound.db` read-write
//! and checks the schema version ([`open_inbound_reader`], [`open_outbound_writer`]); the host
//! reads `outbound.db` through [`crate::outbound::OutboundReader`], which treats it as hostile
//! input and checks its schema against the one the migrations create
//! ([`outbound_schema_difference`]). Both files use `journal_mode=DELETE`; `inbound.db` uses
//! `synchronous=FULL`.

use rusqlite::{Connection, OpenFlags};
use rusqlite_migration::{M, Migrations};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

/// The schema version of `inbound.db` this build reads and writes.
pub const INBOUND_VERSION: i64 = 2;
/// The schema version of `outbound.db` this build reads and writes.
pub const OUTBOUND_VERSION: i64 = 1;

const INBOUND_MIGRATIONS: &[&str] = &[
    include_str!("../migrations/inbound/001_init.sql"),
    include_str!("../migrations/inbound/002_delivery_cursor.sql"),
];
const OUTBOUND_MIGRATIONS: &[&str] = &[include_str!("../migrations/outbound/001_init.sql")];

/// How long a reader or writer waits for the other side's lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Errors opening or migrating a session file.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// SQLite refused; retryable only if the cause was transient (a lock held too long).
    #[error("sqlite error on {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    /// Applying the numbered migrations failed. Not retryable.
    #[error("migrating {path} failed: {source}")]
    Migration {
        path: PathBuf,
        source: rusqlite_migration::Error,
    },
    /// The file was written by a build with another schema. Not retryable: upgrade the image or host.
    #[error("{path} has schema version {found}, this build expects {expected}")]
    VersionMismatch {
        path: PathBuf,
        found: i64,
        expected: i64,
    },
    /// A writer crashed mid-transaction and a read-only open cannot roll back its journal.
    /// Retryable: the next writer recovers the file.
    #[error("{path} is not ready: a crashed writer left a hot journal")]
    NotReady { path: PathBuf },
    /// The file does not exist (yet). Neither hostile nor retryable as such: there is nothing
    /// to read until the host creates it.
    #[error("{path} does not exist")]
    Missing { path: PathBuf },
    /// The container-written file is hostile or broken: not a regular file, a link, replaced
    /// while open, another schema, a read over its work budget, a corrupt database. Not
    /// retryable: mark the session failed with this reason.
    #[error("{path} is refused as hostile or broken: {reason}")]
    Hostile { path: PathBuf, reason: String },
}

impl SchemaError {
    /// True when trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            SchemaError::NotReady { .. } => true,
            SchemaError::Sqlite { source, .. } => matches!(
                source.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            ),
            SchemaError::Migration { .. }
            | SchemaError::VersionMismatch { .. }
            | SchemaError::Missing { .. }
            | SchemaError::Hostile { .. } => false,
        }
    }

    /// True when the session's file is hostile or broken, and the session must be marked
    /// failed with this error's reason.
    pub fn is_hostile(&self) -> bool {
        matches!(self, SchemaError::Hostile { .. })
    }
}

pub(crate) fn sqlite(path: &Path) -> impl Fn(rusqlite::Error) -> SchemaError + '_ {
    move |source| {
        let code = source.sqlite_error_code();
        let extended = match &source {
            rusqlite::Error::SqliteFailure(e, _) => e.extended_code,
            _ => 0,
        };
        if code == Some(rusqlite::ErrorCode::ReadOnly)
            && extended == rusqlite::ffi::SQLITE_READONLY_ROLLBACK
        {
            SchemaError::NotReady {
                path: path.to_owned(),
            }
        } else {
            SchemaError::Sqlite {
                path: path.to_owned(),
                source,
            }
        }
    }
}

fn migrations(sql: &'static [&'static str]) -> Migrations<'static> {
    Migrations::new(sql.iter().map(|s| M::up(s)).collect())
}

fn set_session_file_pragmas(conn: &Connection, path: &Path) -> Result<(), SchemaError> {
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sqlite(path))?;
    conn.pragma_update(None, "journal_mode", "DELETE")
        .map_err(sqlite(path))?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(sqlite(path))?;
    Ok(())
}

/// Host: opens (creating if needed) and migrates `inbound.db` for writing.
pub fn open_inbound_writer(path: &Path) -> Result<Connection, SchemaError> {
    let mut conn = Connection::open(path).map_err(sqlite(path))?;
    set_session_file_pragmas(&conn, path)?;
    migrations(INBOUND_MIGRATIONS)
        .to_latest(&mut conn)
        .map_err(|source| SchemaError::Migration {
            path: path.to_owned(),
            source,
        })?;
    Ok(conn)
}

/// Host: creates `outbound.db` with the current schema, before any container has seen the
/// folder. The host never opens it for writing again.
pub fn create_outbound(path: &Path) -> Result<(), SchemaError> {
    let mut conn = Connection::open(path).map_err(sqlite(path))?;
    set_session_file_pragmas(&conn, path)?;
    migrations(OUTBOUND_MIGRATIONS)
        .to_latest(&mut conn)
        .map_err(|source| SchemaError::Migration {
            path: path.to_owned(),
            source,
        })?;
    Ok(())
}

/// Runner: opens the existing `outbound.db` for writing and checks its version.
pub fn open_outbound_writer(path: &Path) -> Result<Connection, SchemaError> {
    if !path.exists() {
        return Err(SchemaError::Missing {
            path: path.to_owned(),
        });
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite(path))?;
    set_session_file_pragmas(&conn, path)?;
    check_version(&conn, path, OUTBOUND_VERSION)?;
    Ok(conn)
}

/// Runner: opens `inbound.db` read-only and checks its version.
pub fn open_inbound_reader(path: &Path) -> Result<Connection, SchemaError> {
    let conn = open_read_only(path)?;
    check_version(&conn, path, INBOUND_VERSION)?;
    Ok(conn)
}

/// Host: opens the container-written `outbound.db` read-only, as hostile input, with every
/// check of [`crate::outbound::OutboundReader::open`], and hands back the bare connection
/// (without the per-read work budget: prefer [`crate::outbound::OutboundReader::read`]).
pub fn open_outbound_reader(path: &Path) -> Result<Connection, SchemaError> {
    crate::outbound::OutboundReader::open(path)
        .map(crate::outbound::OutboundReader::into_connection)
}

fn open_read_only(path: &Path) -> Result<Connection, SchemaError> {
    if !path.exists() {
        return Err(SchemaError::Missing {
            path: path.to_owned(),
        });
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite(path))?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sqlite(path))?;
    conn.pragma_update(None, "query_only", "ON")
        .map_err(sqlite(path))?;
    Ok(conn)
}

fn check_version(conn: &Connection, path: &Path, expected: i64) -> Result<(), SchemaError> {
    let found: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(sqlite(path))?;
    if found == expected {
        Ok(())
    } else {
        Err(SchemaError::VersionMismatch {
            path: path.to_owned(),
            found,
            expected,
        })
    }
}

/// One row of `sqlite_schema`, as compared between a session file and the migrations.
#[derive(Clone, Debug, PartialEq, Eq)]
struct SchemaObject {
    kind: Option<String>,
    name: Option<String>,
    table: Option<String>,
    sql: Option<String>,
}

impl SchemaObject {
    fn describe(&self) -> String {
        format!(
            "{} {:?}",
            self.kind.as_deref().unwrap_or("object"),
            self.name.as_deref().unwrap_or("")
        )
    }
}

/// What `sqlite_schema` of an `outbound.db` must hold: exactly what the migrations create,
/// applied once to an in-memory database (no hand-written copy that could drift).
fn expected_outbound_schema() -> Result<&'static [SchemaObject], SchemaError> {
    static EXPECTED: OnceLock<Vec<SchemaObject>> = OnceLock::new();
    if let Some(expected) = EXPECTED.get() {
        return Ok(expected);
    }
    let memory = Path::new(":memory:");
    let mut conn = Connection::open_in_memory().map_err(sqlite(memory))?;
    migrations(OUTBOUND_MIGRATIONS)
        .to_latest(&mut conn)
        .map_err(|source| SchemaError::Migration {
            path: memory.to_owned(),
            source,
        })?;
    let objects = match schema_objects(&conn, usize::MAX).map_err(sqlite(memory))? {
        Ok(objects) => objects,
        Err(reason) => {
            return Err(SchemaError::Hostile {
                path: memory.to_owned(),
                reason,
            });
        }
    };
    Ok(EXPECTED.get_or_init(|| objects))
}

/// Reads at most `limit` rows of `sqlite_schema`; `Err(reason)` when a value is not text.
fn schema_objects(
    conn: &Connection,
    limit: usize,
) -> rusqlite::Result<Result<Vec<SchemaObject>, String>> {
    let mut statement =
        conn.prepare("SELECT type, name, tbl_name, sql FROM sqlite_schema ORDER BY name LIMIT ?1")?;
    let mut rows = statement.query([i64::try_from(limit).unwrap_or(i64::MAX)])?;
    let mut objects = Vec::new();
    while let Some(row) = rows.next()? {
        let mut texts: [Option<String>; 4] = Default::default();
        for (index, text) in texts.iter_mut().enumerate() {
            *text = match row.get_ref(index)? {
                rusqlite::types::ValueRef::Null => None,
                rusqlite::types::ValueRef::Text(text) => {
                    Some(String::from_utf8_lossy(text).into_owned())
                }
                _ => return Ok(Err("sqlite_schema holds a value that is not text".into())),
            };
        }
        let [kind, name, table, sql] = texts;
        objects.push(SchemaObject {
            kind,
            name,
            table,
            sql,
        });
    }
    Ok(Ok(objects))
}

/// Compares the schema version and `sqlite_schema` of an opened `outbound.db` with what the
/// migrations create: the same tables and indexes with the same SQL text, and nothing else
/// (no view, no trigger, no extra table or index). `Ok(None)` when they match, else the
/// first difference, for a [`SchemaError::Hostile`] reason. Runs inside the caller's read
/// transaction, so that the rows it then reads are read under the schema checked here.
pub(crate) fn outbound_schema_difference(
    conn: &Connection,
) -> Result<rusqlite::Result<Option<String>>, SchemaError> {
    let expected = expected_outbound_schema()?;
    Ok((|| {
        let found: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
        if found != OUTBOUND_VERSION {
            return Ok(Some(format!(
                "it has schema version {found}, this build expects {OUTBOUND_VERSION}"
            )));
        }
        // One more than expected is enough to see that something is extra.
        let actual = match schema_objects(conn, expected.len() + 1)? {
            Ok(actual) => actual,
            Err(reason) => return Ok(Some(reason)),
        };
        Ok(schema_difference(expected, &actual))
    })())
}

fn schema_difference(expected: &[SchemaObject], actual: &[SchemaObject]) -> Option<String> {
    for object in actual {
        match expected.iter().find(|e| e.name == object.name) {
            None => {
                return Some(format!(
                    "its schema has an unexpected {}",
                    object.describe()
                ));
            }
            Some(wanted) if wanted != object => {
                return Some(format!(
                    "its {} is not the {} the migrations create",
                    object.describe(),
                    wanted.describe()
                ));
            }
            Some(_) => {}
        }
    }
    expected
        .iter()
        .find(|e| !actual.iter().any(|a| a.name == e.name))
        .map(|missing| format!("its schema lacks the {}", missing.describe()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_valid() {
        assert!(migrations(INBOUND_MIGRATIONS).validate().is_ok());
        assert!(migrations(OUTBOUND_MIGRATIONS).validate().is_ok());
        assert_eq!(INBOUND_MIGRATIONS.len() as i64, INBOUND_VERSION);
        assert_eq!(OUTBOUND_MIGRATIONS.len() as i64, OUTBOUND_VERSION);
    }

    #[test]
    fn writers_and_readers_agree_on_versions() {
        let dir = tempfile::tempdir().unwrap();
        let inbound = dir.path().join("inbound.db");
        let outbound = dir.path().join("outbound.db");
        let writer = open_inbound_writer(&inbound).unwrap();
        let mode: String = writer
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "delete");
        let sync: i64 = writer
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 2, "synchronous=FULL");
        create_outbound(&outbound).unwrap();
        open_inbound_reader(&inbound).unwrap();
        open_outbound_writer(&outbound).unwrap();
        let reader = open_outbound_reader(&outbound).unwrap();
        let write = reader.execute("DELETE FROM processing_ack", []);
        assert!(
            write.is_err(),
            "the host's outbound connection must be read-only"
        );
    }

    #[test]
    fn version_mismatch_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbound.db");
        create_outbound(&path).unwrap();
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        let err = open_outbound_writer(&path).unwrap_err();
        assert!(
            err.to_string()
                .contains("schema version 99, this build expects 1"),
            "{err}"
        );
        assert!(!err.is_retryable());
        let missing = open_inbound_reader(&dir.path().join("nope.db")).unwrap_err();
        assert!(matches!(missing, SchemaError::Missing { .. }));
    }
}
