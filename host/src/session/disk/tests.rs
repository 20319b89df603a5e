//! Tests of the session disks: the folder rules without quotas everywhere, and a real quota
//! disk where the host can mount one (root with e2fsprogs and loop devices, as in CI).

use super::*;
use std::io::Write;
use std::os::unix::fs::MetadataExt;

fn me() -> Owner {
    Owner {
        uid: rustix::process::getuid().as_raw(),
        gid: rustix::process::getgid().as_raw(),
        chown: false,
    }
}

/// A fresh session folder (as `folder::create` leaves it) in a temporary dir.
fn session() -> (tempfile::TempDir, SessionPaths) {
    let dir = tempfile::tempdir().unwrap();
    let paths = SessionPaths::at(dir.path().join("s"));
    crate::session::folder::create(&paths, me()).unwrap();
    (dir, paths)
}

/// Unmounts whatever a test mounted, even when it fails half-way.
struct Unmount(SessionPaths);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = release(&self.0);
    }
}

#[test]
fn without_quota_outbound_db_is_made_once_and_never_again() {
    let (_dir, paths) = session();
    assert_eq!(recorded(&paths), None);
    assert_eq!(prepare(&paths, me(), None).unwrap(), Prepared::NoQuota);
    assert!(paths.outbound_db().is_file());
    assert_eq!(
        std::fs::symlink_metadata(paths.outbound_db())
            .unwrap()
            .mode()
            & 0o777,
        0o600
    );
    assert_eq!(recorded(&paths), Some(Prepared::NoQuota));
    // The container removed it (or replaced it with a dangling link): the host never makes
    // it again, and creates nothing at the link's target.
    std::fs::remove_file(paths.outbound_db()).unwrap();
    let target = paths.root().join("elsewhere.db");
    std::os::unix::fs::symlink(&target, paths.outbound_db()).unwrap();
    assert_eq!(prepare(&paths, me(), None).unwrap(), Prepared::NoQuota);
    assert!(std::fs::symlink_metadata(&target).is_err());
    assert!(
        std::fs::symlink_metadata(paths.outbound_db())
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[test]
fn a_session_in_use_before_quotas_keeps_its_folders() {
    let (_dir, paths) = session();
    std::fs::write(paths.out_dir().join("transcript.jsonl"), b"{}").unwrap();
    assert_eq!(prepare(&paths, me(), Some(64)).unwrap(), Prepared::NoQuota);
    assert!(std::fs::symlink_metadata(paths.outbound_db()).is_err());
    assert!(std::fs::symlink_metadata(paths.root().join("disk.img")).is_err());
}

#[test]
fn a_planted_link_for_out_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let paths = SessionPaths::at(dir.path().join("s"));
    let target = dir.path().join("target");
    std::fs::create_dir_all(paths.root()).unwrap();
    std::fs::create_dir(&target).unwrap();
    std::fs::create_dir(paths.work_dir()).unwrap();
    std::os::unix::fs::symlink(&target, paths.out_dir()).unwrap();
    let err = prepare(&paths, me(), None).unwrap_err();
    assert!(err.to_string().contains("not a folder"), "{err}");
    assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0);
}

#[test]
fn mount_points_are_read_with_escapes() {
    assert_eq!(unescape(r"/a\040b\011c\134d"), b"/a b\tc\\d");
    assert_eq!(unescape(r"/tail\04"), b"/tail\\04");
    assert!(is_mount_point(Path::new("/")).unwrap());
    let dir = tempfile::tempdir().unwrap();
    assert!(!is_mount_point(dir.path()).unwrap());
}

#[test]
fn free_space_is_measured() {
    let dir = tempfile::tempdir().unwrap();
    assert!(free_bytes(dir.path()).unwrap() > 0);
    assert!(free_bytes(&dir.path().join("missing")).is_err());
}

#[test]
fn a_quota_disk_caps_out_and_work_and_survives_a_remount() {
    let (dir, paths) = session();
    if let Quotas::Off { reason } = probe(dir.path(), 16) {
        // Only a root host with e2fsprogs and loop devices can mount (CI runs as root).
        eprintln!("skipped: quota disks are off here: {reason}");
        return;
    }
    let _guard = Unmount(paths.clone());
    assert_eq!(
        prepare(&paths, me(), Some(16)).unwrap(),
        Prepared::Quota { mb: 16 }
    );
    assert!(is_mount_point(&paths.out_dir()).unwrap());
    assert!(is_mount_point(&paths.work_dir()).unwrap());
    assert!(paths.outbound_db().is_file());
    // Writing past the quota fails with "no space left", in work/ as in out/.
    let mut file = std::fs::File::create(paths.work_dir().join("big")).unwrap();
    let chunk = vec![7u8; 1024 * 1024];
    let full = (0..32).find_map(|_| file.write_all(&chunk).and_then(|()| file.sync_all()).err());
    let full = full.expect("16 MiB of quota took 32 MiB");
    assert_eq!(full.kind(), std::io::ErrorKind::StorageFull, "{full}");
    drop(file);
    // After an unmount (a reboot), the next start mounts the same disk again.
    release(&paths).unwrap();
    assert!(!is_mount_point(&paths.out_dir()).unwrap());
    assert!(std::fs::symlink_metadata(paths.outbound_db()).is_err());
    assert_eq!(
        prepare(&paths, me(), Some(16)).unwrap(),
        Prepared::Quota { mb: 16 }
    );
    assert!(paths.outbound_db().is_file());
    assert!(paths.work_dir().join("big").is_file());
    release(&paths).unwrap();
}
