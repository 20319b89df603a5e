//! Session-file schemas, their migrations, and the open helpers that fix each side's pragmas.
//!
//! Only the host creates and migrates session files ([`open_inbound_writer`],
//! [`create_outbound`]). The runner opens `inbound.db` read-only and `outbound.db` read-write
//! and checks the schema version ([`open_inbound_reader`], [`open_outbound_writer`]); the host
//! opens `outbound.db` read-only with defensive settings ([`open_outbound_reader`]).
//! Both files use `journal_mode=DELETE`; `inbound.db` uses `synchronous=FULL`.

use rusqlite::{Connection, OpenFlags};
use rusqlite_migration::{M, Migrations};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The schema version of `inbound.db` this build reads and writes.
pub const INBOUND_VERSION: i64 = 1;
/// The schema version of `outbound.db` this build reads and writes.
pub const OUTBOUND_VERSION: i64 = 1;

const INBOUND_MIGRATIONS: &[&str] = &[include_str!("../migrations/inbound/001_init.sql")];
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
    /// The file does not exist.
    #[error("{path} does not exist")]
    Missing { path: PathBuf },
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
            | SchemaError::Missing { .. } => false,
        }
    }
}

fn sqlite(path: &Path) -> impl Fn(rusqlite::Error) -> SchemaError + '_ {
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

/// Host: opens the container-written `outbound.db` read-only, as hostile input: defensive
/// mode, no trusted schema, cell size checks, and a version check.
pub fn open_outbound_reader(path: &Path) -> Result<Connection, SchemaError> {
    let conn = open_read_only(path)?;
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)
        .map_err(sqlite(path))?;
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_TRUSTED_SCHEMA,
        false,
    )
    .map_err(sqlite(path))?;
    conn.pragma_update(None, "cell_size_check", "ON")
        .map_err(sqlite(path))?;
    conn.pragma_update(None, "mmap_size", 0)
        .map_err(sqlite(path))?;
    check_version(&conn, path, OUTBOUND_VERSION)?;
    Ok(conn)
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
