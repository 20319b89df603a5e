//! Tests of [`OutboundReader`] against the attacks of issue 8: a hostile container replacing
//! `outbound.db`, planting a journal, rewriting the schema, writing huge or ill-typed values.

use super::*;
use crate::content::{MessageContent, OutboundContent};
use crate::ids::MessageId;
use crate::outbound::{AckWindow, insert, set_ack};
use crate::rows::{AckStatus, NewOutboundRow, OutboundKind};
use crate::schema::{create_outbound, open_outbound_writer};
use rustix::fs::{CWD, FileType, Mode, makedev, mkfifoat, mknodat};
use std::path::PathBuf;
use std::sync::mpsc;

/// Longer than any honest open or read takes; only there so a regression (a blocked `open`
/// on a FIFO, an endless view) fails the test instead of hanging it.
const HANG_GUARD: Duration = Duration::from_secs(30);

/// Puts something at the `outbound.db` path of a table-driven case.
type Plant<'a> = Box<dyn Fn(&Path) + 'a>;
/// Replaces an open reader's file in a table-driven case.
type Swap<'a> = Box<dyn Fn() + 'a>;

fn message(text: &str) -> NewOutboundRow {
    NewOutboundRow {
        id: MessageId::generate(),
        in_reply_to: None,
        deliver_after: None,
        kind: OutboundKind::Chat,
        destination: None,
        thread_id: None,
        content: OutboundContent::Message(MessageContent {
            text: text.into(),
            files: vec![],
        }),
    }
}

/// `<root>/<name>/out/outbound.db`, created as the host does and written by an honest runner:
/// two rows and one ack.
fn honest(root: &Path, name: &str) -> PathBuf {
    let out = root.join(name).join("out");
    std::fs::create_dir_all(&out).unwrap();
    let path = out.join("outbound.db");
    create_outbound(&path).unwrap();
    let writer = open_outbound_writer(&path).unwrap();
    insert(&writer, &message("a"), Some(Seq(4))).unwrap();
    insert(&writer, &message("b"), None).unwrap();
    set_ack(&writer, &MessageId::new("m1"), AckStatus::Completed).unwrap();
    path
}

/// Runs `work` on another thread and fails the test if it has not returned by [`HANG_GUARD`].
fn guarded<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(work());
    });
    receiver
        .recv_timeout(HANG_GUARD)
        .expect("the reader blocked instead of refusing the file")
}

fn open_guarded(path: &Path) -> Result<OutboundReader, SchemaError> {
    let path = path.to_owned();
    guarded(move || OutboundReader::open(&path))
}

/// The reason of a `Hostile` error, failing the test on anything else.
fn hostile<T: std::fmt::Debug>(result: Result<T, SchemaError>) -> String {
    match result {
        Err(SchemaError::Hostile { reason, .. }) => reason,
        other => panic!("expected a Hostile error, got {other:?}"),
    }
}

fn check(result: Result<impl std::fmt::Debug, SchemaError>, expected: &str, case: &str) {
    let error = match result {
        Err(error) => error,
        Ok(value) => panic!("{case}: expected a refusal, got {value:?}"),
    };
    assert!(error.is_hostile(), "{case}: {error}");
    assert!(!error.is_retryable(), "{case}: {error}");
    assert!(
        error.to_string().contains(expected),
        "{case}: {error:?} does not contain {expected:?}"
    );
}

#[test]
fn an_honest_file_reads_as_before() {
    let root = tempfile::tempdir().unwrap();
    // Characters a `file:` URI must escape, and a data dir reached through a link.
    let path = honest(root.path(), "session ?#%&=");
    std::os::unix::fs::symlink(root.path(), root.path().join("data")).unwrap();
    let through_link = root.path().join("data/session ?#%&=/out/outbound.db");
    for path in [path, through_link] {
        let mut reader = OutboundReader::open(&path).unwrap();
        let snapshot = reader
            .read(Seq(-1), 100, 1024, Some(&AckWindow::all()))
            .unwrap();
        let seqs: Vec<i64> = snapshot
            .rows
            .iter()
            .map(|row| row.as_ref().unwrap().seq.0)
            .collect();
        assert_eq!(seqs, [5, 7]);
        assert_eq!(snapshot.acks.len(), 1);
        assert_eq!(snapshot.acks[0].message_id.as_str(), "m1");
        let later = reader
            .read(Seq(5), 100, 1024, Some(&AckWindow::all()))
            .unwrap();
        assert_eq!(later.rows.len(), 1);
        assert!(
            reader
                .conn
                .execute("DELETE FROM processing_ack", [])
                .is_err()
        );
    }
}

#[test]
fn no_file_is_missing_not_hostile() {
    let root = tempfile::tempdir().unwrap();
    for path in [
        root.path().join("outbound.db"),
        root.path().join("no/out/outbound.db"),
    ] {
        let error = OutboundReader::open(&path).unwrap_err();
        assert!(matches!(error, SchemaError::Missing { .. }), "{error}");
        assert!(!error.is_hostile());
    }
}

/// Every way of putting something other than a regular file at `outbound.db` or its journal
/// is refused, at once, without reading or creating the target.
#[test]
fn files_that_are_not_plain_files_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let outside = root.path().join("host");
    std::fs::create_dir(&outside).unwrap();
    let secret = outside.join("shadow");
    std::fs::write(&secret, "root:secret").unwrap();
    let fifo = outside.join("fifo");
    mkfifoat(CWD, &fifo, Mode::from_raw_mode(0o600)).unwrap();
    let other_session = honest(root.path(), "other");
    let cases: Vec<(&str, Plant, &str)> = vec![
        (
            "symlink to a host file",
            Box::new(|db| std::os::unix::fs::symlink(&secret, db).unwrap()),
            "outbound.db is a symbolic link",
        ),
        (
            // Were the link followed, opening the FIFO would block and the guard would fail.
            "symlink to a FIFO outside",
            Box::new(|db| std::os::unix::fs::symlink(&fifo, db).unwrap()),
            "outbound.db is a symbolic link",
        ),
        (
            "symlink to another session's outbound.db",
            Box::new(|db| std::os::unix::fs::symlink(&other_session, db).unwrap()),
            "outbound.db is a symbolic link",
        ),
        (
            "FIFO",
            Box::new(|db| mkfifoat(CWD, db, Mode::from_raw_mode(0o600)).unwrap()),
            "outbound.db is a FIFO",
        ),
        (
            "directory",
            Box::new(|db| std::fs::create_dir(db).unwrap()),
            "outbound.db is a directory",
        ),
        (
            "socket",
            Box::new(|db| {
                std::mem::forget(std::os::unix::net::UnixListener::bind(db).unwrap());
            }),
            "outbound.db is a socket",
        ),
        (
            "not a database",
            Box::new(|db| std::fs::write(db, vec![7u8; 4096]).unwrap()),
            "not a SQLite database",
        ),
        (
            "journal symlink to a host file",
            Box::new(|db| {
                create_outbound(db).unwrap();
                std::os::unix::fs::symlink(&secret, sidecar(db, "-journal")).unwrap();
            }),
            "outbound.db-journal is a symbolic link",
        ),
        (
            "journal FIFO",
            Box::new(|db| {
                create_outbound(db).unwrap();
                mkfifoat(CWD, sidecar(db, "-journal"), Mode::from_raw_mode(0o600)).unwrap();
            }),
            "outbound.db-journal is a FIFO",
        ),
        (
            "a WAL file",
            Box::new(|db| {
                create_outbound(db).unwrap();
                std::fs::write(sidecar(db, "-wal"), "").unwrap();
            }),
            "outbound.db-wal exists",
        ),
        (
            "WAL mode",
            Box::new(|db| {
                create_outbound(db).unwrap();
                Connection::open(db)
                    .unwrap()
                    .pragma_update(None, "journal_mode", "WAL")
                    .unwrap();
            }),
            "WAL or unknown",
        ),
    ];
    for (index, (case, plant, expected)) in cases.iter().enumerate() {
        let out = root.path().join(format!("case{index}/out"));
        std::fs::create_dir_all(&out).unwrap();
        let db = out.join("outbound.db");
        plant(&db);
        check(open_guarded(&db), expected, case);
    }
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "root:secret");
}

fn sidecar(db: &Path, suffix: &str) -> PathBuf {
    PathBuf::from(format!("{}{suffix}", db.display()))
}

#[test]
fn a_symlink_to_a_missing_path_creates_nothing() {
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let target = root.path().join("host-file-that-does-not-exist");
    std::os::unix::fs::symlink(&target, out.join("outbound.db")).unwrap();
    let reason = hostile(OutboundReader::open(&out.join("outbound.db")));
    assert!(reason.contains("symbolic link"), "{reason}");
    assert!(!target.exists(), "the reader created the link's target");
}

#[test]
fn a_device_node_is_refused_without_opening_it() {
    // /dev/null is a real character device at a hard path: the checks see it as the file.
    check(
        open_guarded(Path::new("/dev/null")),
        "outbound.db is a character device",
        "/dev/null",
    );
    // A device node planted in `out/`, when this test may create one (root, not in a user
    // namespace without CAP_MKNOD).
    let root = tempfile::tempdir().unwrap();
    let db = root.path().join("outbound.db");
    let device = FileType::CharacterDevice;
    if mknodat(CWD, &db, device, Mode::from_raw_mode(0o600), makedev(1, 3)).is_ok() {
        check(
            open_guarded(&db),
            "outbound.db is a character device",
            "mknod",
        );
    }
}

/// Schema changes a container can make; all are refused before any row is read (a recursive
/// view would otherwise spin the reader forever).
#[test]
fn a_schema_other_than_the_migrations_is_refused() {
    let views = "DROP TABLE messages_out; CREATE VIEW messages_out AS SELECT 'x' AS id, 1 AS seq, \
         NULL AS in_reply_to, 0 AS created_at, NULL AS deliver_after, 'chat' AS kind, \
         NULL AS destination, NULL AS thread_id, '{}' AS content;";
    let recursive = "DROP TABLE messages_out; CREATE VIEW messages_out AS \
         WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) \
         SELECT 'x' || n AS id, 2 * n + 1 AS seq, NULL AS in_reply_to, 0 AS created_at, \
         NULL AS deliver_after, 'chat' AS kind, NULL AS destination, NULL AS thread_id, \
         '{}' AS content FROM r;";
    let cases = [
        (
            "view in place of messages_out",
            views,
            "view \"messages_out\"",
        ),
        ("recursive view", recursive, "view \"messages_out\""),
        (
            "trigger",
            "CREATE TRIGGER t AFTER INSERT ON processing_ack BEGIN SELECT 1; END;",
            "unexpected trigger \"t\"",
        ),
        (
            "extra table",
            "CREATE TABLE extra (x);",
            "unexpected table \"extra\"",
        ),
        (
            "extra index",
            "CREATE INDEX by_kind ON messages_out (kind);",
            "unexpected index \"by_kind\"",
        ),
        (
            "changed table",
            "ALTER TABLE processing_ack ADD COLUMN extra TEXT;",
            "table \"processing_ack\" is not the table",
        ),
        (
            "dropped table",
            "DROP TABLE container_state;",
            "lacks the table \"container_state\"",
        ),
        (
            "statistics",
            "ANALYZE;",
            "unexpected table \"sqlite_stat1\"",
        ),
        ("version", "PRAGMA user_version = 7;", "schema version 7"),
    ];
    let root = tempfile::tempdir().unwrap();
    for (index, (case, sql, expected)) in cases.into_iter().enumerate() {
        let db = honest(root.path(), &format!("case{index}"));
        Connection::open(&db).unwrap().execute_batch(sql).unwrap();
        check(open_guarded(&db), expected, case);
        // The same change made after the reader was opened is refused at its next read.
        let db = honest(root.path(), &format!("later{index}"));
        let mut reader = OutboundReader::open(&db).unwrap();
        Connection::open(&db).unwrap().execute_batch(sql).unwrap();
        let read = guarded(move || reader.read(Seq(-1), 100, 1024, Some(&AckWindow::all())));
        check(read, expected, case);
    }
}

/// Oversized and ill-typed values become bad rows naming the column (and the id, when that
/// is readable), and are never loaded.
#[test]
fn hostile_values_are_bad_rows_and_are_never_loaded() {
    let root = tempfile::tempdir().unwrap();
    let db = honest(root.path(), "session");
    let writer = open_outbound_writer(&db).unwrap();
    writer
        .pragma_update(None, "ignore_check_constraints", "ON")
        .unwrap();
    let huge = "x".repeat(2 << 20);
    let long = "y".repeat(300);
    // (seq, SQL setting one column of a fresh honest row, expected reason, id readable)
    let cases: [(i64, &str, String, bool); 10] = [
        (
            11,
            "id = ?1",
            format!("id is {} bytes, over the cap of 256", huge.len()),
            false,
        ),
        (
            13,
            "in_reply_to = ?2",
            "in_reply_to is 300 bytes, over the cap of 256".into(),
            true,
        ),
        (
            15,
            "kind = ?2",
            "kind is 300 bytes, over the cap of 256".into(),
            true,
        ),
        (
            17,
            "destination = ?2",
            "destination is 300 bytes, over the cap of 256".into(),
            true,
        ),
        (
            19,
            "thread_id = ?2",
            "thread_id is 300 bytes, over the cap of 256".into(),
            true,
        ),
        (
            21,
            "content = ?1",
            format!("content is {} bytes, over the cap of", huge.len()),
            true,
        ),
        // TEXT affinity turns a number into text; a blob is what stays non-text.
        (
            23,
            "kind = x'63686174'",
            "kind is not text but blob (4 bytes)".into(),
            true,
        ),
        (
            25,
            "destination = CAST(x'ff' AS TEXT)",
            "destination is not valid UTF-8".into(),
            true,
        ),
        (
            27,
            "created_at = 'noon'",
            "created_at is not an integer but text".into(),
            true,
        ),
        (29, "id = x'00ff'", "id is not text but blob".into(), false),
    ];
    for (seq, set, _, _) in &cases {
        writer
            .execute(
                "INSERT INTO messages_out (id, seq, created_at, kind, content) \
                 VALUES ('id' || ?1, ?1, 0, 'chat', '{}')",
                [seq],
            )
            .unwrap();
        let sql = format!("UPDATE messages_out SET {set} WHERE seq = {seq}");
        let mut statement = writer.prepare(&sql).unwrap();
        let count = statement.parameter_count();
        let values = [huge.as_str(), long.as_str()];
        statement
            .execute(rusqlite::params_from_iter(&values[..count]))
            .unwrap();
    }
    let mut reader = OutboundReader::open(&db).unwrap();
    // With SQLITE_LIMIT_LENGTH at about 1 MiB, loading any 2 MiB value fails the whole read
    // with "string or blob too big": the bad rows below prove nothing was loaded.
    let max_content = (1 << 20) - LENGTH_MARGIN;
    let snapshot = reader
        .read(Seq(7), 100, max_content, Some(&AckWindow::all()))
        .unwrap();
    let loaded = reader
        .conn
        .query_row("SELECT id FROM messages_out WHERE seq = 11", [], |row| {
            row.get::<_, String>(0)
        });
    assert_eq!(
        loaded.unwrap_err().sqlite_error_code(),
        Some(ErrorCode::TooBig),
        "the length limit must be low enough for this test to mean something"
    );
    assert_eq!(snapshot.rows.len(), cases.len());
    for ((seq, set, expected, id_readable), row) in cases.iter().zip(&snapshot.rows) {
        let bad = row.as_ref().unwrap_err();
        assert_eq!(bad.seq, Some(*seq), "{set}");
        assert!(bad.reason.contains(expected.as_str()), "{set}: {bad:?}");
        let id = format!("id{seq}");
        assert_eq!(
            bad.id.as_deref(),
            id_readable.then_some(id.as_str()),
            "{set}"
        );
    }
    // A seq that is not an integer still leaves the id for recording the refusal.
    writer
        .execute(
            "INSERT INTO messages_out (id, seq, created_at, kind, content) \
             VALUES ('textseq', 'late', 0, 'chat', '{}')",
            [],
        )
        .unwrap();
    let snapshot = reader
        .read(Seq(29), 100, 1024, Some(&AckWindow::all()))
        .unwrap();
    let bad = snapshot.rows[0].as_ref().unwrap_err();
    assert_eq!((bad.id.as_deref(), bad.seq), (Some("textseq"), None));
    assert!(
        bad.reason.contains("seq is not an integer but text"),
        "{bad:?}"
    );
}

#[test]
fn bad_acks_are_skipped() {
    let root = tempfile::tempdir().unwrap();
    let db = honest(root.path(), "session");
    let writer = open_outbound_writer(&db).unwrap();
    writer
        .pragma_update(None, "ignore_check_constraints", "ON")
        .unwrap();
    writer
        .execute_batch(
            "INSERT INTO processing_ack VALUES ('bogus', 'bogus', 0);
             INSERT INTO processing_ack VALUES (x'00', 'completed', 0);
             INSERT INTO processing_ack VALUES ('late', 'completed', 'noon');",
        )
        .unwrap();
    writer
        .execute(
            "INSERT INTO processing_ack VALUES (?1, 'completed', 0)",
            ["z".repeat(300)],
        )
        .unwrap();
    let snapshot = OutboundReader::open(&db)
        .unwrap()
        .read(Seq(-1), 10, 1024, Some(&AckWindow::all()))
        .unwrap();
    let ids: Vec<&str> = snapshot
        .acks
        .iter()
        .map(|a| a.message_id.as_str())
        .collect();
    assert_eq!(ids, ["m1"]);
    // The skipped ones still count as read, so a cursor moves past them.
    assert_eq!(snapshot.acks_through, Some(5));
}

#[test]
fn acks_are_read_from_a_cursor_in_rowid_order() {
    let root = tempfile::tempdir().unwrap();
    let db = honest(root.path(), "session");
    let writer = open_outbound_writer(&db).unwrap();
    for id in ["m2", "m3", "m4"] {
        crate::outbound::set_ack(&writer, &MessageId::new(id), AckStatus::Processing).unwrap();
    }
    // An update keeps the row's place.
    crate::outbound::set_ack(&writer, &MessageId::new("m2"), AckStatus::Completed).unwrap();
    let mut reader = OutboundReader::open(&db).unwrap();
    let all = reader
        .read(Seq(-1), 10, 1024, Some(&AckWindow::all()))
        .unwrap();
    let seen: Vec<(i64, &str, AckStatus)> = all
        .acks
        .iter()
        .map(|a| (a.rowid, a.message_id.as_str(), a.status))
        .collect();
    assert_eq!(
        seen,
        [
            (1, "m1", AckStatus::Completed),
            (2, "m2", AckStatus::Completed),
            (3, "m3", AckStatus::Processing),
            (4, "m4", AckStatus::Processing),
        ]
    );
    assert_eq!(all.acks_through, Some(4));
    let window = AckWindow {
        from: 4,
        again: vec![1],
    };
    let window_read = reader.read(Seq(-1), 10, 1024, Some(&window)).unwrap();
    let ids: Vec<&str> = window_read
        .acks
        .iter()
        .map(|a| a.message_id.as_str())
        .collect();
    assert_eq!(ids, ["m1", "m4"]);
    assert_eq!(window_read.acks_through, Some(4));
    let none = reader.read(Seq(-1), 10, 1024, None).unwrap();
    assert!(none.acks.is_empty());
    assert_eq!(none.acks_through, None);
    let past = reader
        .read(
            Seq(-1),
            10,
            1024,
            Some(&AckWindow {
                from: 5,
                again: vec![],
            }),
        )
        .unwrap();
    assert!(past.acks.is_empty());
}

#[test]
fn a_read_over_its_budget_is_hostile() {
    let root = tempfile::tempdir().unwrap();
    let db = honest(root.path(), "session");
    let writer = open_outbound_writer(&db).unwrap();
    writer
        .execute_batch(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000) \
             INSERT INTO processing_ack SELECT 'ack' || i, 'completed', 0 FROM n;",
        )
        .unwrap();
    // The default budget reads a whole batch of acks ...
    let snapshot = OutboundReader::open(&db)
        .unwrap()
        .read(Seq(-1), 10, 1024, Some(&AckWindow::all()))
        .unwrap();
    assert_eq!(snapshot.acks.len(), crate::outbound::MAX_ACKS);
    // ... a budget of a few thousand steps, or of no time at all, does not.
    for budget in [
        Budget {
            steps: 20_000,
            time: Duration::from_secs(60),
        },
        Budget {
            steps: u64::MAX,
            time: Duration::ZERO,
        },
    ] {
        let read = OutboundReader::open_with_budget(&db, budget)
            .and_then(|mut reader| reader.read(Seq(-1), 10, 1024, Some(&AckWindow::all())));
        assert_eq!(hostile(read), BUDGET_REASON, "{budget:?}");
    }
}

#[test]
fn a_file_swapped_after_the_open_is_refused_at_the_next_read() {
    let root = tempfile::tempdir().unwrap();
    let db = honest(root.path(), "session");
    let copy = db.with_file_name("copy.db");
    let cases: [(&str, Swap, &str); 3] = [
        (
            "another file",
            Box::new(|| {
                std::fs::copy(&db, &copy).unwrap();
                std::fs::rename(&copy, &db).unwrap();
            }),
            "replaced by another file",
        ),
        (
            "a FIFO",
            Box::new(|| {
                std::fs::remove_file(&db).unwrap();
                mkfifoat(CWD, &db, Mode::from_raw_mode(0o600)).unwrap();
            }),
            "replaced by a FIFO",
        ),
        (
            "nothing",
            Box::new(|| std::fs::remove_file(&db).unwrap()),
            "removed after it was opened",
        ),
    ];
    for (case, swap, expected) in cases {
        let _ = std::fs::remove_file(&db);
        create_outbound(&db).unwrap();
        let mut reader = OutboundReader::open(&db).unwrap();
        swap();
        let read = guarded(move || reader.read(Seq(-1), 10, 1024, Some(&AckWindow::all())));
        check(read, expected, case);
    }
}

/// A crashed writer's hot journal stays "not ready" (retryable), not hostile.
#[test]
fn a_hot_journal_is_not_ready() {
    let root = tempfile::tempdir().unwrap();
    let db = honest(root.path(), "session");
    let writer = open_outbound_writer(&db).unwrap();
    // A tiny cache makes the writer spill changed pages into the file before it commits,
    // which leaves a hot journal behind: copying both files mid-transaction is a crash.
    writer.pragma_update(None, "cache_size", 1).unwrap();
    writer.execute_batch("BEGIN IMMEDIATE").unwrap();
    for i in 0..200 {
        insert(&writer, &message(&format!("{i:0>500}")), None).unwrap();
    }
    let crashed = root.path().join("crashed/out");
    std::fs::create_dir_all(&crashed).unwrap();
    std::fs::copy(&db, crashed.join("outbound.db")).unwrap();
    std::fs::copy(
        sidecar(&db, "-journal"),
        crashed.join("outbound.db-journal"),
    )
    .unwrap();
    writer.execute_batch("ROLLBACK").unwrap();
    let error = OutboundReader::open(&crashed.join("outbound.db")).unwrap_err();
    assert!(matches!(error, SchemaError::NotReady { .. }), "{error}");
    assert!(error.is_retryable() && !error.is_hostile());
}

#[test]
fn an_ack_read_seeks_and_never_scans() {
    let root = tempfile::tempdir().unwrap();
    let db = honest(root.path(), "session");
    let reader = OutboundReader::open(&db).unwrap();
    let sql = format!("EXPLAIN QUERY PLAN {}", *super::super::columns::ACKS_SQL);
    let mut statement = reader.conn.prepare(&sql).unwrap();
    let plan: Vec<String> = statement
        .query_map(rusqlite::params![256, 32, 10, 5, "[1]"], |row| row.get(3))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(
        plan.iter()
            .all(|step| !step.contains("SCAN processing_ack")),
        "{plan:#?}"
    );
    assert!(
        plan.iter()
            .filter(|step| step.contains("SEARCH processing_ack USING INTEGER PRIMARY KEY"))
            .count()
            == 2,
        "{plan:#?}"
    );
}
