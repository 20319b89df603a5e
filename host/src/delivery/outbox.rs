//! The session's outbox (`out/outbox/<row id>/`, DESIGN §3): files an agent sends, written by
//! the container and so hostile input. [`copy_files`] copies the files a row names into a
//! host-owned folder — another agent's inbox, or [`stage_for_channel`]'s folder under
//! `data/files/` that channel adapters read — opening each without following links, refusing
//! anything but a regular file within the size cap, and checking on the open descriptor
//! that it really lies in the session's `out/`. After the row is handled, [`remove_outbox`]
//! deletes the row's outbox folder through directory descriptors opened without following
//! links, so a link planted in `out/` cannot point the removal at the host's files.

use rustix::fs::{AtFlags, Mode, OFlags};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Largest file the host takes from an outbox.
pub use crate::edge::MAX_ATTACHMENT_BYTES;

/// The folder a row's files are staged in for a channel: `<files_dir>/<session>.<row id>/`.
/// `None` when the row id is not a plain name.
pub fn staging_dir(files_dir: &Path, session: &str, row_id: &str) -> Option<PathBuf> {
    let name = format!("{session}.{row_id}");
    protocol::ids::is_safe_folder_name(&name).then(|| files_dir.join(name))
}

/// Copies a row's files out of the outbox into `staging` and returns the copies' paths.
pub fn stage_for_channel(
    out_dir: &Path,
    outbox: &Path,
    names: &[String],
    staging: &Path,
) -> Result<Vec<PathBuf>, String> {
    copy_files(out_dir, outbox, names, staging)?;
    Ok(names.iter().map(|name| staging.join(name)).collect())
}

/// Removes `out/outbox/<row id>/` and the files in it. A missing folder is fine; entries that
/// are not plain files (a planted folder) are left, and so is the folder then.
pub fn remove_outbox(out_dir: &Path, row_id: &str) -> Result<(), String> {
    if !protocol::ids::is_safe_folder_name(row_id) {
        return Err(format!("{row_id:?} is not a plain name"));
    }
    let flags = OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC;
    let out = rustix::fs::open(out_dir, flags, Mode::empty())
        .map_err(|e| format!("opening out/: {e}"))?;
    let outbox = match rustix::fs::openat(&out, protocol::paths::OUTBOX, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(()),
        Err(e) => {
            return Err(format!(
                "opening out/outbox (it must be a folder, not a link): {e}"
            ));
        }
    };
    let folder = match rustix::fs::openat(&outbox, row_id, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(()),
        Err(e) => {
            return Err(format!(
                "opening out/outbox/{row_id} (it must be a folder, not a link): {e}"
            ));
        }
    };
    let entries = rustix::fs::Dir::read_from(&folder).map_err(|e| format!("listing: {e}"))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("listing: {e}"))?;
        let name = entry.file_name();
        if name.to_bytes() == b"." || name.to_bytes() == b".." {
            continue;
        }
        // A file or a link is unlinked itself (never followed); a folder is left.
        let _ = rustix::fs::unlinkat(&folder, name, AtFlags::empty());
    }
    match rustix::fs::unlinkat(&outbox, row_id, AtFlags::REMOVEDIR) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(e) => Err(format!("removing out/outbox/{row_id}: {e}")),
    }
}

/// Copies the named files from a session's outbox into a host-owned folder (another agent's
/// inbox, or the staging folder a channel reads). The outbox is
/// container-written: every file is opened without following links and without blocking
/// (a planted FIFO fails), must be a regular file within the size cap, and must really lie
/// inside `out_dir` (checked on the open descriptor).
pub fn copy_files(
    out_dir: &Path,
    outbox: &Path,
    names: &[String],
    inbox: &Path,
) -> Result<(), String> {
    if names.is_empty() {
        return Ok(());
    }
    let out_root = std::fs::canonicalize(out_dir).map_err(|e| format!("reading out/: {e}"))?;
    for dir in [outbox.parent(), Some(outbox)].into_iter().flatten() {
        match std::fs::symlink_metadata(dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return Err(format!("{} is not a folder", display(out_dir, dir))),
            Err(e) => return Err(format!("{}: {e}", display(out_dir, dir))),
        }
    }
    std::fs::create_dir_all(inbox).map_err(|e| format!("creating the inbox: {e}"))?;
    for name in names {
        let source = outbox.join(name);
        let mut file =
            open_regular(&source, &out_root).map_err(|e| format!("file {name:?}: {e}"))?;
        let destination = inbox.join(name);
        // The inbox is host-owned, so truncating a copy left by an interrupted pass is safe.
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&destination)
            .map_err(|e| format!("file {name:?}: writing the copy: {e}"))?;
        let mut limited = (&mut file).take(MAX_ATTACHMENT_BYTES + 1);
        let copied = std::io::copy(&mut limited, &mut out)
            .map_err(|e| format!("file {name:?}: copying: {e}"))?;
        if copied > MAX_ATTACHMENT_BYTES {
            let _ = std::fs::remove_file(&destination);
            return Err(format!(
                "file {name:?} is over the cap of {MAX_ATTACHMENT_BYTES} bytes"
            ));
        }
    }
    Ok(())
}

fn open_regular(path: &Path, root: &Path) -> Result<std::fs::File, String> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::io::AsRawFd;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("cannot open it (it must be a regular file, not a link): {e}"))?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > MAX_ATTACHMENT_BYTES {
        return Err(format!("over the cap of {MAX_ATTACHMENT_BYTES} bytes"));
    }
    // The descriptor's real path: a folder swapped for a link after the checks shows here.
    let real: PathBuf = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .map_err(|e| format!("cannot check where it lies: {e}"))?;
    if !real.starts_with(root) {
        return Err("it lies outside the session's out/ folder".into());
    }
    Ok(file)
}

fn display(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .map(|p| format!("out/{}", p.display()))
        .unwrap_or_else(|_| path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_copied_but_links_and_fifos_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let outbox = out.join("outbox").join("m1");
        std::fs::create_dir_all(&outbox).unwrap();
        std::fs::write(outbox.join("a.txt"), "hello").unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "host secret").unwrap();
        std::os::unix::fs::symlink(&secret, outbox.join("link.txt")).unwrap();
        let inbox = dir.path().join("in/inbox/x");
        copy_files(&out, &outbox, &["a.txt".into()], &inbox).unwrap();
        assert_eq!(
            std::fs::read_to_string(inbox.join("a.txt")).unwrap(),
            "hello"
        );
        let refused = copy_files(&out, &outbox, &["link.txt".into()], &dir.path().join("i2"));
        assert!(refused.unwrap_err().contains("link.txt"));
        let missing = copy_files(&out, &outbox, &["nope".into()], &dir.path().join("i3"));
        assert!(missing.is_err());
        // The outbox folder itself swapped for a link to the host's files.
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir_all(&elsewhere).unwrap();
        std::fs::write(elsewhere.join("b.txt"), "x").unwrap();
        std::os::unix::fs::symlink(&elsewhere, out.join("outbox").join("m2")).unwrap();
        let swapped = copy_files(
            &out,
            &out.join("outbox").join("m2"),
            &["b.txt".into()],
            &dir.path().join("i4"),
        );
        assert!(swapped.is_err());
        let status = std::process::Command::new("mkfifo")
            .arg(outbox.join("pipe"))
            .status()
            .unwrap();
        assert!(status.success());
        let fifo = copy_files(&out, &outbox, &["pipe".into()], &dir.path().join("i5"));
        assert!(fifo.unwrap_err().contains("not a regular file"));

        // Staging for a channel, then removing the outbox folder.
        let staging = staging_dir(&dir.path().join("files"), "s1", "m1").unwrap();
        let staged = stage_for_channel(&out, &outbox, &["a.txt".into()], &staging).unwrap();
        assert_eq!(std::fs::read_to_string(&staged[0]).unwrap(), "hello");
        assert!(staging_dir(dir.path(), "s1", "../x").is_none());
        remove_outbox(&out, "m1").unwrap();
        assert!(!outbox.exists());
        assert_eq!(
            std::fs::read_to_string(&secret).unwrap(),
            "host secret",
            "the link's target stays"
        );
        remove_outbox(&out, "m1").unwrap();
        // A row folder that is a link to host files: refused, and the files stay.
        assert!(remove_outbox(&out, "m2").is_err());
        assert!(elsewhere.join("b.txt").exists());
        // The whole outbox swapped for a link: refused.
        let out2 = dir.path().join("out2");
        std::fs::create_dir_all(&out2).unwrap();
        std::fs::create_dir_all(elsewhere.join("m3")).unwrap();
        std::fs::write(elsewhere.join("m3/c.txt"), "keep").unwrap();
        std::os::unix::fs::symlink(&elsewhere, out2.join("outbox")).unwrap();
        assert!(remove_outbox(&out2, "m3").is_err());
        assert!(elsewhere.join("m3/c.txt").exists());
        assert!(remove_outbox(&out2, "../x").is_err());
    }
}
