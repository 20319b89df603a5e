//! What the benchmark ran on: [`Machine`] (cores, CPU model, memory, kernel, Docker version,
//! commit), and [`load_average`], read at the start and end of a run because other work on
//! the machine skews every figure.

use bollard::Docker;
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub cpu_model: String,
    pub memory_mib: u64,
    pub kernel: String,
    pub docker_version: String,
    pub docker_api_version: String,
    /// `git rev-parse --short HEAD` plus `-dirty` when the tree has changes.
    pub commit: String,
}

impl Machine {
    pub async fn describe(docker: &Docker) -> Machine {
        let version = docker.version().await.ok();
        Machine {
            cores: std::thread::available_parallelism().map_or(0, usize::from),
            cpu_model: first_field("/proc/cpuinfo", "model name")
                .unwrap_or_else(|| "unknown CPU".to_owned()),
            memory_mib: first_field("/proc/meminfo", "MemTotal")
                .and_then(|kib| kib.split_whitespace().next()?.parse::<u64>().ok())
                .map_or(0, |kib| kib / 1024),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|text| text.trim().to_owned())
                .unwrap_or_else(|_| "unknown".to_owned()),
            docker_version: version
                .as_ref()
                .and_then(|v| v.version.clone())
                .unwrap_or_else(|| "unknown".to_owned()),
            docker_api_version: version
                .as_ref()
                .and_then(|v| v.api_version.clone())
                .unwrap_or_else(|| "unknown".to_owned()),
            commit: commit(),
        }
    }
}

/// The 1-, 5- and 15-minute load averages, as `/proc/loadavg` prints them.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The value after `name:` on the first line of `path` that starts with `name`.
fn first_field(path: &str, name: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find(|line| line.starts_with(name))
        .and_then(|line| line.split_once(':'))
        .map(|(_, value)| value.trim().to_owned())
}

fn commit() -> String {
    let root = crate::repo_root();
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(&root)
            .args(args)
            .output()
            .ok()
            .filter(|output| output.status.success())
            .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    };
    let Some(head) = git(&["rev-parse", "--short", "HEAD"]) else {
        return "unknown".to_owned();
    };
    match git(&["status", "--porcelain", "--untracked-files=no"]) {
        Some(changes) if !changes.is_empty() => format!("{head}-dirty"),
        Some(_) | None => head,
    }
}
