//! How a session's delivery task reads its `outbound.db` ([`OutboundSource`]): through one
//! [`OutboundReader`] kept open between passes (it re-checks the file's identity around
//! every read, so a swapped file is named hostile rather than silently read), on a blocking
//! thread, under a timeout. A read that does not come back in time is given up: the thread
//! stays blocked, nobody waits for it, and the session is failed ([`ReadFailure::Hostile`]).
//!
//! [`FileStamp`] is the cheap `lstat` the periodic tick compares to skip a pass over a file
//! that has not changed.

use protocol::outbound::{AckWindow, OutboundReader, Snapshot};
use protocol::{SchemaError, Seq};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Most rows read in one pass, in each of the two ranges.
pub const BATCH: usize = 256;

/// How many failed reads in a row that are neither retryable nor hostile (an I/O error, say)
/// it takes to fail the session.
const MAX_ODD_FAILURES: u32 = 3;

/// Why a read gave nothing.
#[derive(Debug)]
pub enum ReadFailure {
    /// Not there yet, not ready (a crashed writer's journal), or busy: the next pass tries.
    NotYet(String),
    /// Hostile or broken: the session must be failed with this reason.
    Hostile(String),
}

/// What one read saw: rows at or below the high-water mark (when waiting rows are due),
/// rows above it, and the acks.
#[derive(Debug, Default)]
pub struct Read {
    pub recheck: Snapshot,
    /// How far the recheck read saw every row (a waiting row up to here that it did not
    /// see is gone from the file); `None` when there was no recheck.
    pub recheck_through: Option<Seq>,
    pub fresh: Snapshot,
}

/// Blocks a test's read of one session (to prove that it delays no other session).
#[cfg(test)]
pub type ReadGate = std::sync::Arc<dyn Fn(&Path) + Send + Sync>;

/// A session's `outbound.db` as its delivery task reads it.
pub struct OutboundSource {
    path: PathBuf,
    /// Kept open between passes; `None` before the first read, after a failed one, and
    /// while a read is under way on its thread.
    reader: Option<OutboundReader>,
    odd_failures: u32,
    #[cfg(test)]
    pub gate: Option<ReadGate>,
}

impl OutboundSource {
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            reader: None,
            odd_failures: 0,
            #[cfg(test)]
            gate: None,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads rows above `high_water` and the acks of the `acks` window, and when
    /// `recheck_from` is set also rows above it up to `high_water` (those of waiting rows),
    /// with a timeout.
    pub async fn read(
        &mut self,
        recheck_from: Option<Option<Seq>>,
        high_water: Option<Seq>,
        acks: &AckWindow,
        timeout: Duration,
    ) -> Result<Read, ReadFailure> {
        let reader = self.reader.take();
        let path = self.path.clone();
        let acks = acks.clone();
        #[cfg(test)]
        let gate = self.gate.clone();
        let work = tokio::task::spawn_blocking(move || {
            #[cfg(test)]
            if let Some(gate) = gate {
                gate(&path);
            }
            let mut reader = match reader {
                Some(reader) => reader,
                None => match OutboundReader::open(&path) {
                    Ok(reader) => reader,
                    Err(e) => return (None, Err(e)),
                },
            };
            let max = protocol::content::MAX_OUTBOUND_CONTENT_BYTES;
            let below = |seq: Option<Seq>| seq.unwrap_or(Seq(-1));
            let result = (|| {
                let (recheck, recheck_through) = match recheck_from {
                    Some(from) => {
                        let mut snapshot = reader.read(below(from), BATCH, max, None)?;
                        let through = if snapshot.rows.len() < BATCH {
                            high_water
                        } else {
                            snapshot
                                .rows
                                .iter()
                                .filter_map(row_seq)
                                .max()
                                .map(Seq)
                                .min(high_water)
                        };
                        snapshot.rows.retain(|row| {
                            row_seq(row).is_some_and(|seq| Some(Seq(seq)) <= high_water)
                        });
                        (snapshot, through)
                    }
                    None => (Snapshot::default(), None),
                };
                let fresh = reader.read(below(high_water), BATCH, max, Some(&acks))?;
                Ok(Read {
                    recheck,
                    recheck_through,
                    fresh,
                })
            })();
            (Some(reader), result)
        });
        let (reader, result) = match tokio::time::timeout(timeout, work).await {
            Ok(Ok(done)) => done,
            Ok(Err(e)) => {
                // The read panicked (a bug, or SQLite on a file it could not handle).
                return Err(self.odd(format!("the read of outbound.db failed: {e}")));
            }
            Err(_) => {
                return Err(ReadFailure::Hostile(format!(
                    "reading outbound.db did not finish within {} s",
                    timeout.as_secs_f64()
                )));
            }
        };
        match result {
            Ok(read) => {
                self.reader = reader;
                self.odd_failures = 0;
                Ok(read)
            }
            // After any failure the reader is dropped and the next pass opens anew.
            Err(e) => Err(self.classify(e)),
        }
    }

    fn classify(&mut self, error: SchemaError) -> ReadFailure {
        match &error {
            SchemaError::Missing { .. } => ReadFailure::NotYet(error.to_string()),
            _ if error.is_retryable() => ReadFailure::NotYet(error.to_string()),
            _ if error.is_hostile() => ReadFailure::Hostile(error.to_string()),
            SchemaError::VersionMismatch { .. } | SchemaError::Migration { .. } => {
                ReadFailure::Hostile(error.to_string())
            }
            _ => self.odd(error.to_string()),
        }
    }

    /// A failure that may pass once; failing again and again, it fails the session.
    fn odd(&mut self, reason: String) -> ReadFailure {
        self.odd_failures += 1;
        if self.odd_failures >= MAX_ODD_FAILURES {
            ReadFailure::Hostile(format!("{reason} ({} times in a row)", self.odd_failures))
        } else {
            ReadFailure::NotYet(reason)
        }
    }
}

fn row_seq(row: &Result<protocol::OutboundRow, protocol::outbound::BadRow>) -> Option<i64> {
    match row {
        Ok(row) => Some(row.seq.0),
        Err(bad) => bad.seq,
    }
}

/// What `lstat` says of `outbound.db`: which file, how big, when last written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileStamp {
    device: u64,
    inode: u64,
    size: u64,
    modified_ns: i128,
}

impl FileStamp {
    /// `None` when the path cannot be `lstat`ed (then the tick does not skip the pass).
    pub fn of(path: &Path) -> Option<Self> {
        let metadata = std::fs::symlink_metadata(path).ok()?;
        Some(Self {
            device: metadata.dev(),
            inode: metadata.ino(),
            size: metadata.size(),
            modified_ns: i128::from(metadata.mtime()) * 1_000_000_000
                + i128::from(metadata.mtime_nsec()),
        })
    }

    /// Unix ms of the last write.
    pub fn modified_ms(&self) -> i64 {
        i64::try_from(self.modified_ns / 1_000_000).unwrap_or(i64::MAX)
    }
}
