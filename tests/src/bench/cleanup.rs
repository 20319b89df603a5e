//! Nothing the benchmark starts outlives it. Every host's install id is registered here, and
//! [`remove_registered_containers`] force-removes every container carrying one of them; the
//! benchmark calls it at the end, after an error, and after SIGINT/SIGTERM ([`interrupted`]).
//! This is on top of the harness's own drop guards ([`crate::host_process::HostProcess`]
//! removes its containers when dropped), so an interrupted run still cleans up even if a
//! guard never ran. [`ChildGuard`] kills a bare child process (the start-up probes) on drop.

use std::collections::BTreeSet;
use std::process::Child;
use std::sync::{Mutex, PoisonError};

use crate::host_process::INSTALL_LABEL;

static INSTALLS: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// Remembers an install id whose containers must be removed at the end.
pub fn register_install(install_id: &str) {
    INSTALLS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(install_id.to_owned());
}

/// The registered install ids.
pub fn registered_installs() -> Vec<String> {
    INSTALLS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .cloned()
        .collect()
}

/// Force-removes every container of every registered install; returns how many were left.
/// Runs on its own thread and runtime, so it works from any context, even a dropped future.
pub fn remove_registered_containers() -> usize {
    let installs = registered_installs();
    let mut removed = 0;
    for install in installs {
        match crate::docker::remove_containers_by_label_blocking(INSTALL_LABEL, &install) {
            Ok(n) => removed += n,
            Err(error) => {
                eprintln!("bench: could not remove the containers of install {install}: {error:#}")
            }
        }
    }
    removed
}

/// Resolves with the signal's name on SIGINT or SIGTERM.
pub async fn interrupted() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        // Without handlers the default action (exit) applies; never resolve.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = interrupt.recv() => "SIGINT",
        _ = terminate.recv() => "SIGTERM",
    }
}

/// Kills and reaps a child process when dropped.
pub struct ChildGuard(pub Child);

impl ChildGuard {
    /// Asks the child to stop (SIGTERM), as a person would, and waits for it.
    pub fn terminate(mut self) -> std::io::Result<std::process::ExitStatus> {
        let pid = self.0.id().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .is_ok_and(|status| status.success());
        if !sent {
            self.0.kill()?;
        }
        self.0.wait()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
