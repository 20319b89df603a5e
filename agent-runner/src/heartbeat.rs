//! The heartbeat: `out/heartbeat` is created if needed and its mtime set to now every
//! `heartbeat_interval_ms`, from a task of its own ([`spawn`]), so a long model call or tool
//! never makes a live runner look stale to the host's sweep.
//!
//! It runs on the runner's tokio thread on purpose: if that thread ever wedges, the heartbeat
//! stops and the sweep can tell.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

/// Creates `path` if needed and sets its modification time to now.
pub fn touch(path: &Path) -> std::io::Result<()> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    file.set_modified(SystemTime::now())
}

/// Touches `path` now and then every `interval` until the task is aborted. A failed touch
/// is logged and tried again on the next tick.
pub fn spawn(path: PathBuf, interval: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            ticks.tick().await;
            match touch(&path) {
                Ok(()) => failing = false,
                Err(error) => {
                    if !failing {
                        tracing::warn!(path = %path.display(), %error, "cannot touch the heartbeat");
                    }
                    failing = true;
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn touch_creates_then_moves_mtime_forward() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("heartbeat");
        touch(&path).unwrap();
        let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        std::fs::File::options()
            .append(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        touch(&path).unwrap();
        let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        assert!(mtime > old + Duration::from_secs(3600));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    }
}
