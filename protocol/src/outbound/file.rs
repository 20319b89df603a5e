//! The checks the host makes on `out/outbound.db` as a file, before and around SQLite's own
//! opens of it: [`OutboundFile`] remembers which inode was checked, and [`OutboundFile::check`]
//! refuses anything that is not a plain regular file living in the session's `out/` folder.
//!
//! Everything in `out/` belongs to a possibly hostile container, which can replace
//! `outbound.db` or plant `outbound.db-journal` at any moment: with a symlink to a host file
//! (the host would read it, or, if missing, create it), a FIFO (an `open` blocks forever), a
//! device node (an `open` may have side effects, a read returns a host disk), or another
//! file. So nothing here follows a link, nothing opens a path that `lstat` did not show as a
//! regular file, and every open is `O_NONBLOCK`. SQLite itself then opens the same path with
//! `SQLITE_OPEN_NOFOLLOW`, and its unix VFS adds `O_NOFOLLOW` to every file it opens.
//!
//! The residual race, and why it is bounded: SQLite opens by path, so a container that swaps
//! the file between our `fstat` and SQLite's `open` (or plants a journal between our check and
//! the start of a read transaction) gets SQLite to open what it swapped in. Links are still
//! refused (`O_NOFOLLOW`), and a swapped-in regular file can only be one the container wrote
//! itself inside its own `out/` (a hard link or rename across its mounts fails with `EXDEV`),
//! so it is as hostile as, and no more than, the file we checked; its schema is checked in
//! the same read transaction as the rows. What remains is a FIFO, on which SQLite's blocking
//! `open` waits (a device node needs `CAP_MKNOD`, which a session's unprivileged uid lacks).
//! That costs one blocked thread of that session only: the delivery side runs every read of
//! a session with a timeout and marks the session failed when it expires, and the re-checks
//! after the open and after every read ([`OutboundFile::recheck`]) name the swap as hostile
//! whenever the read does return.

use crate::schema::SchemaError;
use std::fs::{File, Metadata, OpenOptions};
use std::io::{ErrorKind, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The first 16 bytes of every SQLite database file.
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// Sidecar files a read-only SQLite connection may open next to the database. A journal is
/// normal (a writer's transaction in progress, or a hot journal after a crash); the WAL files
/// never are, since session files use `journal_mode=DELETE`.
const JOURNAL_SUFFIX: &str = "-journal";
const WAL_SUFFIXES: [&str; 2] = ["-wal", "-shm"];

/// Which file a path named when it was checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Identity {
    device: u64,
    inode: u64,
}

impl Identity {
    fn of(metadata: &Metadata) -> Self {
        Self {
            device: metadata.dev(),
            inode: metadata.ino(),
        }
    }
}

/// A checked `outbound.db`: where it is, with every directory above it resolved, and which
/// inode it was when checked.
#[derive(Debug)]
pub(crate) struct OutboundFile {
    /// The path as the caller gave it, for error messages.
    shown: PathBuf,
    /// The file inside the canonical folder: no symlink anywhere, so that SQLite's
    /// `SQLITE_OPEN_NOFOLLOW` (which refuses a link in any component) accepts an honest
    /// data dir that an operator reached through a link.
    real: PathBuf,
    /// The device of the folder (`out/`); the file and its journal must be on it.
    folder_device: u64,
    identity: Identity,
}

impl OutboundFile {
    /// Checks `path` before SQLite opens it: a regular file (never a link, FIFO, socket,
    /// device or directory) on the same device as its folder, whose descriptor is the inode
    /// `lstat` showed, that starts like a rollback-journal SQLite database; and checks the
    /// sidecar files. Never blocks and never creates anything.
    pub(crate) fn check(path: &Path) -> Result<Self, SchemaError> {
        let hostile = |reason: String| SchemaError::Hostile {
            path: path.to_owned(),
            reason,
        };
        let name = path
            .file_name()
            .ok_or_else(|| hostile("the path names no file".into()))?;
        let folder = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        // The folder (`out/`) and everything above it are the host's, not the container's:
        // resolving links there is safe, and only the last component needs distrust.
        let folder = match std::fs::canonicalize(folder) {
            Ok(folder) => folder,
            Err(e) if e.kind() == ErrorKind::NotFound => return Err(missing(path)),
            Err(e) => return Err(hostile(format!("cannot resolve its folder: {e}"))),
        };
        let folder_metadata = open_no_follow(&folder, libc::O_DIRECTORY)
            .and_then(|dir| dir.metadata())
            .map_err(|e| hostile(format!("cannot open its folder: {e}")))?;
        let file = Self {
            shown: path.to_owned(),
            real: folder.join(name),
            folder_device: folder_metadata.dev(),
            identity: Identity {
                device: 0,
                inode: 0,
            },
        };
        let Some((mut opened, identity)) = file.open_regular(&file.real, "outbound.db")? else {
            return Err(missing(path));
        };
        file.check_header(&mut opened)?;
        // Closing our descriptor here, before SQLite opens the file, matters: closing any
        // descriptor of a file drops every POSIX lock this process holds on it, and SQLite
        // takes its locks later, on its own descriptor.
        drop(opened);
        let file = Self { identity, ..file };
        file.check_sidecars()?;
        Ok(file)
    }

    /// Checks again, without opening the database file, that the path still names the
    /// inode that was checked, and checks the sidecar files. Run after SQLite has opened the
    /// file and before and after every read transaction.
    pub(crate) fn recheck(&self) -> Result<(), SchemaError> {
        match std::fs::symlink_metadata(&self.real) {
            Ok(metadata) if metadata.file_type().is_file() => {
                if Identity::of(&metadata) != self.identity {
                    return Err(self.hostile(
                        "outbound.db was replaced by another file after it was opened".into(),
                    ));
                }
            }
            Ok(metadata) => {
                return Err(self.hostile(format!(
                    "outbound.db was replaced by {} after it was opened",
                    describe(&metadata)
                )));
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(self.hostile("outbound.db was removed after it was opened".into()));
            }
            Err(e) => return Err(self.hostile(format!("cannot stat outbound.db: {e}"))),
        }
        self.check_sidecars()
    }

    /// The database as a `file:` URI with `readonly_shm=1`: should a container switch the file
    /// to WAL mode behind our header check, SQLite then opens `-shm` read-only instead of
    /// creating and writing it in `out/`.
    pub(crate) fn sqlite_uri(&self) -> String {
        let mut uri = String::from("file:");
        for &byte in self.real.as_os_str().as_bytes() {
            if byte.is_ascii_alphanumeric() || b"/._-~".contains(&byte) {
                uri.push(char::from(byte));
            } else {
                uri.push_str(&format!("%{byte:02X}"));
            }
        }
        uri.push_str("?readonly_shm=1");
        uri
    }

    /// The path as the caller gave it.
    pub(crate) fn shown(&self) -> &Path {
        &self.shown
    }

    pub(crate) fn hostile(&self, reason: String) -> SchemaError {
        SchemaError::Hostile {
            path: self.shown.clone(),
            reason,
        }
    }

    /// `lstat`s `path`, and if it is a regular file opens it (`O_NOFOLLOW | O_NONBLOCK`) and
    /// checks the descriptor is that same inode on the folder's device. `None` when there is
    /// no such file.
    fn open_regular(
        &self,
        path: &Path,
        label: &str,
    ) -> Result<Option<(File, Identity)>, SchemaError> {
        let listed = match std::fs::symlink_metadata(path) {
            Ok(metadata) => metadata,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.hostile(format!("cannot stat {label}: {e}"))),
        };
        // Only a path `lstat` shows as a regular file is ever opened: opening a device node
        // can have side effects even read-only.
        if !listed.file_type().is_file() {
            return Err(self.hostile(format!("{label} is {}", describe(&listed))));
        }
        let opened = match open_no_follow(path, 0) {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.hostile(format!("cannot open {label}: {e}"))),
        };
        let held = opened
            .metadata()
            .map_err(|e| self.hostile(format!("cannot fstat {label}: {e}")))?;
        if !held.file_type().is_file() {
            return Err(self.hostile(format!("{label} is {}", describe(&held))));
        }
        if Identity::of(&held) != Identity::of(&listed) {
            return Err(self.hostile(format!("{label} was replaced while it was being opened")));
        }
        if held.dev() != self.folder_device {
            return Err(self.hostile(format!("{label} is on another device than its folder")));
        }
        Ok(Some((opened, Identity::of(&held))))
    }

    /// Refuses a file that is not a SQLite database, or one in WAL mode: its reader would
    /// open `-wal` and `-shm` files in `out/`, which no honest session file has.
    fn check_header(&self, file: &mut File) -> Result<(), SchemaError> {
        let mut header = [0u8; 100];
        let mut filled = 0;
        while filled < header.len() {
            match file.read(&mut header[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(self.hostile(format!("cannot read outbound.db: {e}"))),
            }
        }
        // An empty file is an empty database to SQLite; its version check refuses it.
        if filled == 0 {
            return Ok(());
        }
        if filled < header.len() || !header.starts_with(SQLITE_MAGIC) {
            return Err(self.hostile("outbound.db is not a SQLite database".into()));
        }
        let (write_version, read_version) = (header[18], header[19]);
        if write_version != 1 || read_version != 1 {
            return Err(self.hostile(format!(
                "outbound.db has file format {write_version}/{read_version} (WAL or unknown), \
                 but session files use a rollback journal"
            )));
        }
        Ok(())
    }

    /// The journal, when present, must be a regular file on the folder's device; WAL files
    /// must not exist at all.
    fn check_sidecars(&self) -> Result<(), SchemaError> {
        let journal = self.sidecar(JOURNAL_SUFFIX);
        // Our descriptor is closed at once. No read transaction of ours is open while this
        // runs, so closing it cannot drop a lock of ours even if the "journal" is a hard link
        // to the database itself.
        self.open_regular(&journal, "outbound.db-journal")?;
        for suffix in WAL_SUFFIXES {
            match std::fs::symlink_metadata(self.sidecar(suffix)) {
                Ok(metadata) => {
                    return Err(self.hostile(format!(
                        "outbound.db{suffix} exists ({}), but session files never use WAL",
                        describe(&metadata)
                    )));
                }
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(self.hostile(format!("cannot stat outbound.db{suffix}: {e}"))),
            }
        }
        Ok(())
    }

    fn sidecar(&self, suffix: &str) -> PathBuf {
        let mut name = self.real.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    }
}

fn missing(path: &Path) -> SchemaError {
    SchemaError::Missing {
        path: path.to_owned(),
    }
}

/// Opens read-only without following a link in the last component and without blocking
/// (a FIFO's `open` returns at once with `O_NONBLOCK`); std adds `O_CLOEXEC`.
fn open_no_follow(path: &Path, extra_flags: i32) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC | extra_flags)
        .open(path)
}

/// What kind of file this is, for a refusal's reason.
fn describe(metadata: &Metadata) -> &'static str {
    let kind = metadata.file_type();
    if kind.is_file() {
        "a regular file"
    } else if kind.is_symlink() {
        "a symbolic link"
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else {
        "not a regular file"
    }
}
