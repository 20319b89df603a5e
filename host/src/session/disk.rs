//! Disk quotas (DESIGN §3, §5): each session's `out/` and `work/` live on a filesystem image of
//! their own, so a container cannot write more than its quota whatever it does; and the host
//! keeps a reserve of free disk below which no container starts.
//!
//! Layout, all host-owned in the session folder and outside what the container sees:
//! `disk.img` (a sparse ext4 image of the quota's size), `disk/` (where it is loop-mounted,
//! `nosuid,nodev`), and `disk.state` (the marker: `quota <MiB>` or `none`). The image holds
//! `out/` and `work/`, which are bind-mounted onto `<session>/out` and `<session>/work`, so the
//! paths of DESIGN §3 stay as they are for the host, Docker and the runner; `out/` is remounted
//! `noexec` as well (nothing there is ever run), while `work/` keeps exec so an agent can run
//! what it builds.
//!
//! Why one image for both folders, not two: one loop device and one mount per session instead
//! of two (hosts run hundreds of sessions), one quota that the agent spends where it needs
//! it, and the image's `lost+found` stays hidden in `disk/` instead of showing in `out/`.
//!
//! The disk is made lazily, by the first container start ([`prepare`]: `mkfs.ext4` of a sparse
//! file and a loop mount, about 60 ms), never with the folder: the router creates folders by
//! the thousand and must stay fast. `out/outbound.db` is created then, inside the image, once.
//! After a reboot the next start mounts the image again. [`release`] unmounts it (session
//! reset, group delete, and a session stopped for idleness, so idle sessions hold no loop
//! device; a crashed or failed one stays mounted, its `out/` in view for the operator). Quotas need root, `mkfs.ext4` (e2fsprogs) and `mount` with loop
//! support (util-linux); [`probe`] tries them once at start, and without them quotas are off,
//! which the log and `crabpot status` say.

use super::owner::Owner;
use protocol::SessionPaths;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Why a disk step failed. None is retryable as is: the same step fails the same way until
/// the machine changes (a tool installed, loop devices freed, disk space freed).
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// A command (`mkfs.ext4`, `mount`, `umount`) failed or could not run.
    #[error("{command} failed: {detail}")]
    Command { command: String, detail: String },
    /// A file operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// Something in the session folder is not what the host made (a link, a file).
    #[error("{0}")]
    Unexpected(String),
    /// Creating `outbound.db` failed.
    #[error(transparent)]
    Schema(#[from] protocol::SchemaError),
}

/// Whether this host can give sessions quota disks, decided once at start by [`probe`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Quotas {
    On,
    Off { reason: String },
}

/// How a session's `out/` and `work/` were set up, as its marker records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prepared {
    /// On a quota disk of this many MiB.
    Quota { mb: u64 },
    /// Plain folders on the host's disk (quotas were off, or the session predates them).
    NoQuota,
}

/// The host-owned disk files of one session.
struct DiskPaths {
    image: PathBuf,
    mount: PathBuf,
    marker: PathBuf,
}

impl DiskPaths {
    fn of(paths: &SessionPaths) -> DiskPaths {
        DiskPaths {
            image: paths.root().join("disk.img"),
            mount: paths.root().join("disk"),
            marker: paths.root().join("disk.state"),
        }
    }
}

/// What the session's marker says, `None` before its first container start.
pub fn recorded(paths: &SessionPaths) -> Option<Prepared> {
    let text = std::fs::read_to_string(DiskPaths::of(paths).marker).ok()?;
    let text = text.trim();
    if text == "none" {
        return Some(Prepared::NoQuota);
    }
    let mb = text.strip_prefix("quota ")?.parse().ok()?;
    Some(Prepared::Quota { mb })
}

/// Readies `out/` and `work/` for a container start (blocking: run it off the async
/// workers). The first time: a quota disk of `quota_mb` (or, with `None`, plain folders), and
/// `outbound.db` in `out/`; later: the disk mounted again if it is not. Nothing in `out/` is
/// created or opened read-write once the marker exists.
pub fn prepare(
    paths: &SessionPaths,
    owner: Owner,
    quota_mb: Option<u64>,
) -> Result<Prepared, DiskError> {
    let disk = DiskPaths::of(paths);
    match recorded(paths) {
        Some(Prepared::Quota { mb }) => {
            mount_all(&disk, paths)?;
            return Ok(Prepared::Quota { mb });
        }
        Some(Prepared::NoQuota) => return Ok(Prepared::NoQuota),
        None => {}
    }
    // No start got this far before: what an interrupted one left is undone.
    release(paths)?;
    remove_if_present(&disk.image)?;
    for dir in [paths.out_dir(), paths.work_dir()] {
        if !empty_dir(&dir)? {
            // A session from before quotas: its folders are in use, and a disk mounted over
            // them would hide its conversation.
            write_marker(&disk, Prepared::NoQuota)?;
            return Ok(Prepared::NoQuota);
        }
    }
    let prepared = match quota_mb {
        Some(mb) => {
            if let Err(e) = make_disk(&disk, paths, owner, mb) {
                let _ = release(paths);
                let _ = remove_if_present(&disk.image);
                return Err(e);
            }
            Prepared::Quota { mb }
        }
        None => {
            create_out_files(&paths.out_dir(), owner)?;
            Prepared::NoQuota
        }
    };
    write_marker(&disk, prepared)?;
    Ok(prepared)
}

/// Unmounts the session's disk (before its folder is removed); the loop device goes with it.
/// Not mounted is fine.
pub fn release(paths: &SessionPaths) -> Result<(), DiskError> {
    let disk = DiskPaths::of(paths);
    for target in [paths.out_dir(), paths.work_dir(), disk.mount] {
        if is_mount_point(&target)? {
            // A process still using it (an exec into a stopping container) must not keep the
            // disk: a lazy unmount detaches it at once and frees it when the last user goes.
            if run("umount", &[target.as_os_str()]).is_err() {
                run("umount", &["-l".as_ref(), target.as_os_str()])?;
            }
        }
    }
    Ok(())
}

/// Whether quota disks work on this host: root, a quota configured, and a real trial of
/// `mkfs.ext4` and a loop mount in `data_dir` (blocking, about 60 ms).
pub fn probe(data_dir: &Path, quota_mb: u64) -> Quotas {
    if quota_mb == 0 {
        return Quotas::Off {
            reason: "disk_quota_mb is 0".into(),
        };
    }
    if !rustix::process::getuid().is_root() {
        return Quotas::Off {
            reason: "the host is not root, so it cannot mount quota disks".into(),
        };
    }
    let root = data_dir.join(format!(".disk-probe-{}", std::process::id()));
    let trial = (|| -> Result<(), DiskError> {
        make_dir(&root)?;
        let image = root.join("disk.img");
        let mount = root.join("disk");
        make_image(&image, 16)?;
        make_dir(&mount)?;
        mount_image(&image, &mount)?;
        run("umount", &[mount.as_os_str()])
    })();
    let _ = run("umount", &[root.join("disk").as_os_str()]);
    let _ = std::fs::remove_dir_all(&root);
    match trial {
        Ok(()) => Quotas::On,
        Err(e) => Quotas::Off {
            reason: format!(
                "a trial quota disk failed ({e}); install e2fsprogs and mount, and make loop devices available"
            ),
        },
    }
}

/// Free bytes for unprivileged writers on the filesystem holding `path`.
pub fn free_bytes(path: &Path) -> Result<u64, DiskError> {
    let stat = rustix::fs::statvfs(path).map_err(|e| DiskError::Io {
        action: "statvfs",
        path: path.to_owned(),
        source: e.into(),
    })?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

fn make_disk(
    disk: &DiskPaths,
    paths: &SessionPaths,
    owner: Owner,
    mb: u64,
) -> Result<(), DiskError> {
    make_image(&disk.image, mb)?;
    make_dir(&disk.mount)?;
    set_mode(&disk.mount, 0o700)?;
    mount_image(&disk.image, &disk.mount)?;
    set_mode(&disk.mount, 0o700)?;
    for name in [protocol::paths::OUT_DIR, protocol::paths::WORK_DIR] {
        let dir = disk.mount.join(name);
        make_dir(&dir)?;
        own(&dir, owner, 0o700)?;
    }
    create_out_files(&disk.mount.join(protocol::paths::OUT_DIR), owner)?;
    bind(
        &disk.mount.join(protocol::paths::OUT_DIR),
        &paths.out_dir(),
        true,
    )?;
    bind(
        &disk.mount.join(protocol::paths::WORK_DIR),
        &paths.work_dir(),
        false,
    )
}

/// Mounts what is not mounted of a session that has a disk (after a reboot, or a release).
fn mount_all(disk: &DiskPaths, paths: &SessionPaths) -> Result<(), DiskError> {
    if !is_mount_point(&disk.mount)? {
        let meta = std::fs::symlink_metadata(&disk.image).map_err(|source| DiskError::Io {
            action: "reading",
            path: disk.image.clone(),
            source,
        })?;
        if !meta.is_file() {
            return Err(DiskError::Unexpected(format!(
                "{} is not a regular file",
                disk.image.display()
            )));
        }
        mount_image(&disk.image, &disk.mount)?;
    }
    for (name, target, noexec) in [
        (protocol::paths::OUT_DIR, paths.out_dir(), true),
        (protocol::paths::WORK_DIR, paths.work_dir(), false),
    ] {
        if !is_mount_point(&target)? {
            real_dir(&target)?;
            bind(&disk.mount.join(name), &target, noexec)?;
        }
    }
    Ok(())
}

/// A sparse file of `mb` MiB with an empty ext4 filesystem: no reserved blocks (the agent
/// gets all of it) and lazy init (a few hundred KB written, not the whole image).
fn make_image(image: &Path, mb: u64) -> Result<(), DiskError> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(image)
        .map_err(|source| DiskError::Io {
            action: "creating",
            path: image.to_owned(),
            source,
        })?;
    file.set_len(mb.saturating_mul(1024 * 1024))
        .map_err(|source| DiskError::Io {
            action: "sizing",
            path: image.to_owned(),
            source,
        })?;
    drop(file);
    run(
        "mkfs.ext4",
        &[
            "-q".as_ref(),
            "-F".as_ref(),
            "-m".as_ref(),
            "0".as_ref(),
            "-E".as_ref(),
            "lazy_itable_init=1,lazy_journal_init=1".as_ref(),
            image.as_os_str(),
        ],
    )
}

fn mount_image(image: &Path, mount: &Path) -> Result<(), DiskError> {
    run(
        "mount",
        &[
            "-o".as_ref(),
            "loop,nosuid,nodev".as_ref(),
            image.as_os_str(),
            mount.as_os_str(),
        ],
    )
}

fn bind(source: &Path, target: &Path, noexec: bool) -> Result<(), DiskError> {
    run(
        "mount",
        &["--bind".as_ref(), source.as_os_str(), target.as_os_str()],
    )?;
    if noexec {
        run(
            "mount",
            &[
                "-o".as_ref(),
                "remount,bind,nosuid,nodev,noexec".as_ref(),
                target.as_os_str(),
            ],
        )?;
    }
    Ok(())
}

/// `outbound.db` and `outbox/` in a new, empty `out/`, given to the session's uid.
fn create_out_files(out: &Path, owner: Owner) -> Result<(), DiskError> {
    let outbox = out.join(protocol::paths::OUTBOX);
    make_dir(&outbox)?;
    own(&outbox, owner, 0o700)?;
    let db = out.join(protocol::paths::OUTBOUND_DB);
    protocol::schema::create_outbound(&db)?;
    own(&db, owner, 0o600)
}

fn own(path: &Path, owner: Owner, mode: u32) -> Result<(), DiskError> {
    if owner.chown {
        std::os::unix::fs::lchown(path, Some(owner.uid), Some(owner.gid)).map_err(|source| {
            DiskError::Io {
                action: "chown",
                path: path.to_owned(),
                source,
            }
        })?;
    }
    set_mode(path, mode)
}

fn write_marker(disk: &DiskPaths, prepared: Prepared) -> Result<(), DiskError> {
    let text = match prepared {
        Prepared::Quota { mb } => format!("quota {mb}\n"),
        Prepared::NoQuota => "none\n".to_owned(),
    };
    std::fs::write(&disk.marker, text).map_err(|source| DiskError::Io {
        action: "writing",
        path: disk.marker.clone(),
        source,
    })?;
    set_mode(&disk.marker, 0o600)
}

/// Whether `dir` is a real, empty folder; a link or a file there is an error.
fn empty_dir(dir: &Path) -> Result<bool, DiskError> {
    real_dir(dir)?;
    let mut entries = std::fs::read_dir(dir).map_err(|source| DiskError::Io {
        action: "listing",
        path: dir.to_owned(),
        source,
    })?;
    Ok(entries.next().is_none())
}

fn real_dir(dir: &Path) -> Result<(), DiskError> {
    match std::fs::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(DiskError::Unexpected(format!(
            "{} is not a folder (a link or a file is never followed)",
            dir.display()
        ))),
        Err(source) => Err(DiskError::Io {
            action: "reading",
            path: dir.to_owned(),
            source,
        }),
    }
}

fn make_dir(dir: &Path) -> Result<(), DiskError> {
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => real_dir(dir),
        Err(source) => Err(DiskError::Io {
            action: "creating",
            path: dir.to_owned(),
            source,
        }),
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<(), DiskError> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|source| {
        DiskError::Io {
            action: "chmod",
            path: path.to_owned(),
            source,
        }
    })
}

fn remove_if_present(path: &Path) -> Result<(), DiskError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(DiskError::Io {
            action: "removing",
            path: path.to_owned(),
            source,
        }),
    }
}

/// Whether `path` is a mount point, from `/proc/self/mountinfo` (which names mount points
/// with spaces, tabs, newlines and backslashes as octal escapes).
fn is_mount_point(path: &Path) -> Result<bool, DiskError> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").map_err(|source| DiskError::Io {
        action: "reading",
        path: "/proc/self/mountinfo".into(),
        source,
    })?;
    let wanted = path.as_os_str().as_encoded_bytes();
    Ok(info.lines().any(|line| {
        line.split(' ')
            .nth(4)
            .is_some_and(|point| unescape(point) == wanted)
    }))
}

fn unescape(field: &str) -> Vec<u8> {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|digits| {
            std::str::from_utf8(digits)
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    out
}

/// Runs a system command to completion; a failure carries its stderr.
fn run(program: &str, args: &[&std::ffi::OsStr]) -> Result<(), DiskError> {
    let shown = || {
        let mut shown = program.to_owned();
        for arg in args {
            shown.push(' ');
            shown.push_str(&arg.to_string_lossy());
        }
        shown
    };
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| DiskError::Command {
            command: shown(),
            detail: e.to_string(),
        })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(DiskError::Command {
            command: shown(),
            detail: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

#[cfg(test)]
mod tests;
