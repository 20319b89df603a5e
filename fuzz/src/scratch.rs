//! [`Scratch`]: one private folder per fuzzing process, made once, for the files a target
//! must hand to the host by path (an `outbound.db`, a unix socket).
//!
//! It prefers `/dev/shm`, a RAM filesystem, so that writing one input per execution costs no
//! disk I/O; libFuzzer runs a million inputs in a `make fuzz` run.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The process's scratch folder; removed when the process ends normally.
pub struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    /// The folder, created on first use.
    ///
    /// # Panics
    /// When no temporary folder can be created: the target cannot run at all, and libFuzzer
    /// should stop with that message rather than report every input as a crash.
    pub fn get() -> &'static Scratch {
        static SCRATCH: OnceLock<Scratch> = OnceLock::new();
        SCRATCH.get_or_init(|| {
            let shm = Path::new("/dev/shm");
            let parent = if shm.is_dir() {
                shm.to_path_buf()
            } else {
                std::env::temp_dir()
            };
            #[allow(clippy::expect_used)] // See `# Panics`: a broken environment, not an input.
            let dir = tempfile::Builder::new()
                .prefix("crabpot-fuzz-")
                .tempdir_in(parent)
                .expect("creating the fuzz scratch folder");
            Scratch { dir }
        })
    }

    /// A path inside the scratch folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}
