//! What a running process takes of the machine, read from `/proc/<pid>/`: resident memory
//! ([`ProcessUsage::rss_bytes`], its peak [`ProcessUsage::peak_rss_bytes`] and
//! [`ProcessUsage::reset_peak_rss`]), open file descriptors, and CPU time ([`CpuMeter`], the
//! share of one core a process used over a stretch of wall time).
//!
//! The hostile-session suite asserts bounds with these (a host under attack stays under a
//! sane RSS, an idle host burns almost no CPU), and `make bench` reports the same figures.
//! Everything is Linux-only, as the host is.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// One process, by pid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcessUsage {
    pub pid: u32,
}

impl ProcessUsage {
    pub fn new(pid: u32) -> Self {
        Self { pid }
    }

    fn proc_path(&self, file: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/{file}", self.pid))
    }

    /// A `kB` field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`), in bytes.
    fn status_field_bytes(&self, field: &str) -> anyhow::Result<u64> {
        let path = self.proc_path("status");
        let status = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        parse_status_kib(&status, field)
            .map(|kib| kib * 1024)
            .with_context(|| format!("no {field} line in {}", path.display()))
    }

    /// Resident memory now (`VmRSS`).
    pub fn rss_bytes(&self) -> anyhow::Result<u64> {
        self.status_field_bytes("VmRSS")
    }

    /// The most resident memory since start or the last [`ProcessUsage::reset_peak_rss`]
    /// (`VmHWM`): a spike between two samples still shows.
    pub fn peak_rss_bytes(&self) -> anyhow::Result<u64> {
        self.status_field_bytes("VmHWM")
    }

    /// Resets the peak to the current RSS (writes `5` to `/proc/<pid>/clear_refs`; needs the
    /// same user or root). Afterwards [`ProcessUsage::peak_rss_bytes`] covers only what
    /// follows.
    pub fn reset_peak_rss(&self) -> anyhow::Result<()> {
        let path = self.proc_path("clear_refs");
        std::fs::write(&path, "5").with_context(|| format!("writing {}", path.display()))
    }

    /// How many file descriptors the process holds.
    pub fn open_fds(&self) -> anyhow::Result<usize> {
        let path = self.proc_path("fd");
        let entries =
            std::fs::read_dir(&path).with_context(|| format!("listing {}", path.display()))?;
        Ok(entries.count())
    }

    /// CPU time used so far, user plus system (`utime + stime` of `/proc/<pid>/stat`).
    pub fn cpu_time(&self) -> anyhow::Result<Duration> {
        let path = self.proc_path("stat");
        let stat = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let ticks = parse_stat_cpu_ticks(&stat)
            .with_context(|| format!("cannot parse {}: {stat:?}", path.display()))?;
        Ok(ticks_to_duration(ticks, clock_ticks_per_second()))
    }
}

/// The `kB` value of `field` in a `/proc/<pid>/status` text.
fn parse_status_kib(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// `utime + stime`, in clock ticks, of a `/proc/<pid>/stat` text. The command name (field 2)
/// may hold spaces and parentheses, so the fields are counted after its last `)`.
fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // After the name come field 3 (state) onwards; utime and stime are fields 14 and 15.
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn ticks_to_duration(ticks: u64, per_second: u64) -> Duration {
    let per_second = per_second.max(1);
    Duration::from_secs(ticks / per_second)
        + Duration::from_nanos((ticks % per_second) * 1_000_000_000 / per_second)
}

/// `getconf CLK_TCK`, or 100 (what Linux uses on every common architecture) when it cannot
/// be asked.
pub fn clock_ticks_per_second() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|output| String::from_utf8(output.stdout).ok())
            .and_then(|text| text.trim().parse().ok())
            .filter(|ticks| *ticks > 0)
            .unwrap_or(100)
    })
}

/// Measures the share of one core a process uses: start it, let the stretch pass, read
/// [`CpuMeter::share`].
#[derive(Clone, Copy, Debug)]
pub struct CpuMeter {
    process: ProcessUsage,
    cpu_at_start: Duration,
    started: Instant,
}

/// What a [`CpuMeter`] measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CpuShare {
    pub cpu: Duration,
    pub wall: Duration,
}

impl CpuShare {
    /// CPU time over wall time, in percent of one core.
    pub fn percent_of_one_core(&self) -> f64 {
        if self.wall.is_zero() {
            return 0.0;
        }
        self.cpu.as_secs_f64() / self.wall.as_secs_f64() * 100.0
    }
}

impl std::fmt::Display for CpuShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.1}% of one core ({:?} of CPU in {:?})",
            self.percent_of_one_core(),
            self.cpu,
            self.wall
        )
    }
}

impl CpuMeter {
    pub fn start(pid: u32) -> anyhow::Result<Self> {
        let process = ProcessUsage::new(pid);
        Ok(Self {
            process,
            cpu_at_start: process.cpu_time()?,
            started: Instant::now(),
        })
    }

    /// What the process used since [`CpuMeter::start`].
    pub fn share(&self) -> anyhow::Result<CpuShare> {
        let cpu = self.process.cpu_time()?;
        let wall = self.started.elapsed();
        if cpu < self.cpu_at_start {
            bail!("the CPU time of pid {} went backwards", self.process.pid);
        }
        Ok(CpuShare {
            cpu: cpu - self.cpu_at_start,
            wall,
        })
    }
}

/// Bytes as mebibytes, for messages.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields_are_read_in_bytes() {
        let status = "Name:\tcrabpot\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(parse_status_kib(status, "VmRSS"), Some(10_240));
        assert_eq!(parse_status_kib(status, "VmHWM"), Some(20_480));
        assert_eq!(parse_status_kib(status, "VmSwap"), None);
    }

    #[test]
    fn stat_cpu_ticks_skip_a_name_with_spaces() {
        let stat = "42 (tokio (w) 1) S 1 42 42 0 -1 4194560 100 0 0 0 7 5 0 0 20 0 9 0 1 2 3";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(12));
        assert_eq!(parse_stat_cpu_ticks("garbage"), None);
    }

    #[test]
    fn ticks_become_durations() {
        assert_eq!(ticks_to_duration(250, 100), Duration::from_millis(2_500));
        assert_eq!(ticks_to_duration(1, 3), Duration::from_nanos(333_333_333));
    }

    #[test]
    fn this_process_can_be_measured() {
        let me = ProcessUsage::new(std::process::id());
        assert!(me.rss_bytes().unwrap() > 0);
        assert!(me.peak_rss_bytes().unwrap() >= me.rss_bytes().unwrap() / 2);
        assert!(me.open_fds().unwrap() >= 3);
        let meter = CpuMeter::start(std::process::id()).unwrap();
        let mut spin = 0u64;
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(50) {
            spin = spin.wrapping_add(1);
        }
        assert!(spin > 0);
        let share = meter.share().unwrap();
        assert!(share.wall >= Duration::from_millis(50), "{share}");
        assert!(share.percent_of_one_core() >= 0.0, "{share}");
    }
}
