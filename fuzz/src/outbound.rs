//! The host's read of a hostile `outbound.db`, as delivery does it: `OutboundReader::open`
//! (file checks, defensive read-only connection, schema check), one `read` of a batch of rows
//! and the acks under the work budget, then each row's kind and content validated and
//! `system` rows read as actions.
//!
//! [`read_file`] is the body of the `outbound_reader` target. It checks the bounds the rest of
//! the host relies on (every loaded text within its cap, the batch and ack counts) and panics
//! when one does not hold; an error from the reader or a refused row is the expected outcome
//! for most mutated files.

use protocol::content::MAX_OUTBOUND_CONTENT_BYTES;
use protocol::outbound::{AckWindow, BadRow, MAX_ACKS, MAX_NAME_BYTES, OutboundReader};
use protocol::{Action, OutboundContent, OutboundKind, OutboundRow, Seq};
use std::path::Path;

/// Rows per read, as in a delivery pass.
pub const BATCH: usize = 256;

/// Reads `path` as the host reads a session's `outbound.db` and validates every row.
pub fn read_file(path: &Path) {
    let after = Seq(-1);
    let Ok(mut reader) = OutboundReader::open(path) else {
        return;
    };
    let Ok(snapshot) = reader.read(after, BATCH, MAX_OUTBOUND_CONTENT_BYTES, Some(&AckWindow::all())) else {
        return;
    };
    assert!(
        snapshot.rows.len() <= BATCH,
        "{} rows read, over the batch",
        snapshot.rows.len()
    );
    for row in &snapshot.rows {
        match row {
            Ok(row) => validate_row(row, after),
            Err(bad) => check_bad_row(bad),
        }
    }
    assert!(
        snapshot.acks.len() <= MAX_ACKS,
        "{} acks read, over the cap",
        snapshot.acks.len()
    );
    for ack in &snapshot.acks {
        assert!(
            ack.message_id.as_str().len() <= MAX_NAME_BYTES as usize,
            "an ack's message id of {} bytes was loaded",
            ack.message_id.as_str().len()
        );
    }
}

/// What delivery does with a readable row before routing it.
pub fn validate_row(row: &OutboundRow, after: Seq) {
    // On a corrupt file (a damaged index on `seq`) SQLite can return rows outside the
    // `seq > after` range; delivery refuses those itself ("seq N is not above the last
    // delivered seq", host/src/delivery/pass.rs), so they go no further here either.
    if row.seq <= after {
        return;
    }
    assert!(
        row.id.as_str().len() <= MAX_NAME_BYTES as usize,
        "an id of {} bytes was loaded",
        row.id.as_str().len()
    );
    for (name, value) in [
        ("kind", Some(&row.kind)),
        ("destination", row.destination.as_ref()),
        ("thread_id", row.thread_id.as_ref()),
    ] {
        if let Some(value) = value {
            assert!(
                value.len() <= MAX_NAME_BYTES as usize,
                "{name} of {} bytes was loaded",
                value.len()
            );
        }
    }
    assert!(
        row.content.len() <= MAX_OUTBOUND_CONTENT_BYTES,
        "content of {} bytes was loaded",
        row.content.len()
    );
    let Some(kind) = OutboundKind::parse(&row.kind) else {
        return;
    };
    validate_content(kind, &row.content);
}

/// Parses content as delivery does, and reads a `system` row's action.
pub fn validate_content(kind: OutboundKind, content: &str) {
    let Ok(parsed) = OutboundContent::parse(kind, content) else {
        return;
    };
    match (kind, &parsed) {
        (OutboundKind::System, OutboundContent::System { .. }) => {}
        (OutboundKind::Chat, OutboundContent::System { .. }) => {
            panic!("a chat row parsed as a system action: {content:?}")
        }
        (OutboundKind::System, _) => panic!("a system row parsed as a chat operation"),
        (OutboundKind::Chat, _) => {}
    }
    let action = Action::from_content(&parsed);
    if kind == OutboundKind::Chat {
        assert!(
            matches!(action, Err(protocol::ActionError::NotSystem(_))),
            "a chat row read as an action: {action:?}"
        );
    }
    if let Ok(action) = action {
        // The host writes actions back (a task's next run) with `to_content`: what it writes
        // must read back as the same action.
        let again = Action::from_content(&action.to_content());
        assert_eq!(
            again.as_ref().ok(),
            Some(&action),
            "{action:?} does not round-trip"
        );
    }
}

fn check_bad_row(bad: &BadRow) {
    assert!(!bad.reason.is_empty(), "a bad row without a reason");
    if let Some(id) = &bad.id {
        assert!(
            id.len() <= MAX_NAME_BYTES as usize,
            "a bad row's id of {} bytes was loaded",
            id.len()
        );
    }
}
