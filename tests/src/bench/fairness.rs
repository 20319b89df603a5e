//! Per-session fairness (issue 8, "the host's edge"): what one hostile or busy session costs
//! the others. Two measurements, each on its own host:
//!
//! - [`measure_flood`]: a victim chat's warm reply latency, first alone, then while another
//!   session floods — rows written into its `out/outbound.db` as fast as a container could,
//!   and files in its `out/` touched in a loop, from the host side as the container would.
//!   [`FloodRun::added_p99_ms`] is the p99 the flood adds (target <= 50 ms).
//! - [`measure_drain`]: one session's legitimate backlog, rows written in one transaction
//!   with the per-turn and per-minute caps raised out of the way, timed until every row has
//!   reached the chat ([`DrainRun::rows_per_sec`], target >= 1,000).
//!
//! The idle-CPU figure (200 idle containers) comes from the `concurrency` part, which has
//! them up anyway. [`rows`] turns all three into report rows.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use host::channels::cli::ServerLine;
use rusqlite::{Connection, OpenFlags, params};

use super::Bench;
use super::chats::start_host_with_chats;
use super::cli_client::CliClient;
use super::concurrency::ConcurrencyRun;
use super::report::{Row, ms};
use super::stats::Distribution;
use crate::fake_model::FakeModel;
use crate::host_process::{HostOptions, HostProcess, ModelConfig};

/// Targets of issue 8.
const FLOOD_ADDED_P99_MS: f64 = 50.0;
const DRAIN_ROWS_PER_SEC: f64 = 1_000.0;
const IDLE_CPU_PERCENT: f64 = 2.0;

/// How long one warm turn may take before the run fails.
const TURN_TIMEOUT: Duration = Duration::from_secs(60);
/// Rows per transaction of the flood, and the pause between transactions.
const FLOOD_BATCH: usize = 50;
const FLOOD_PAUSE: Duration = Duration::from_millis(5);

const VICTIM: &str = "fair-victim";
const FLOODER: &str = "fair-flooder";
const BACKLOG: &str = "fair-backlog";

/// What the flood measurement saw.
#[derive(Clone, Debug)]
pub struct FloodRun {
    /// The victim's message -> first reply, alone.
    pub baseline: Distribution,
    /// The same while the other session floods.
    pub flooded: Distribution,
    /// Rows the flooder wrote per second, and files it touched per second.
    pub rows_per_sec: f64,
    pub touches_per_sec: f64,
    /// The host's CPU during the flood, in percent of one core.
    pub host_cpu_percent: f64,
}

impl FloodRun {
    pub fn added_p99_ms(&self) -> f64 {
        self.flooded.p99() - self.baseline.p99()
    }
}

/// What the backlog measurement saw.
#[derive(Clone, Debug)]
pub struct DrainRun {
    pub rows: usize,
    pub secs: f64,
}

impl DrainRun {
    pub fn rows_per_sec(&self) -> f64 {
        self.rows as f64 / self.secs.max(0.001)
    }
}

fn options(bench: &Bench, fake: &FakeModel) -> HostOptions {
    HostOptions {
        model: Some(ModelConfig::openai(fake)),
        image: Some(bench.image.clone()),
        binary: Some(bench.crabpot_bin.clone()),
        rust_log: Some("info".to_owned()),
        ..HostOptions::default()
    }
}

/// The folder of the session of `main` for `cli/<chat>`.
fn session_dir(host: &HostProcess, chat: &str) -> anyhow::Result<PathBuf> {
    let central = Connection::open_with_flags(
        host.data_dir().join("crabpot.db"),
        OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    central.busy_timeout(Duration::from_secs(5))?;
    let id: String = central
        .query_row(
            "SELECT s.id FROM sessions s JOIN messaging_groups m ON m.id = s.messaging_group_id \
             WHERE m.channel_type = 'cli' AND m.platform_id = ?1",
            [chat],
            |row| row.get(0),
        )
        .with_context(|| format!("finding the session of cli/{chat}"))?;
    Ok(host.sessions_dir().join("main").join(id))
}

/// Writes rows into a session's `outbound.db` as its container would.
struct RowWriter {
    conn: Connection,
    next_seq: i64,
}

impl RowWriter {
    fn open(session: &Path) -> anyhow::Result<RowWriter> {
        let inbound = Connection::open_with_flags(
            session.join("in/inbound.db"),
            OpenFlags::SQLITE_OPEN_READ_ONLY,
        )?;
        let in_max: i64 =
            inbound.query_row("SELECT coalesce(max(seq), 0) FROM messages_in", [], |r| {
                r.get(0)
            })?;
        let conn = Connection::open(session.join("out/outbound.db"))?;
        conn.busy_timeout(Duration::from_secs(30))?;
        let out_max: i64 =
            conn.query_row("SELECT coalesce(max(seq), 0) FROM messages_out", [], |r| {
                r.get(0)
            })?;
        // Far above both writers' rows, odd, so the runner's own rows never collide.
        let next_seq = (out_max.max(in_max) + 100_001) | 1;
        Ok(RowWriter { conn, next_seq })
    }

    /// Writes `n` rows in one transaction. The session's own runner may write a row at the
    /// same time (answering a host notice), taking a seq above ours: then the batch is
    /// written again above it.
    fn write(&mut self, prefix: &str, n: usize) -> anyhow::Result<()> {
        match self.write_once(prefix, n) {
            Ok(()) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(error, _))
                if error.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                let out_max: i64 = self.conn.query_row(
                    "SELECT coalesce(max(seq), 0) FROM messages_out",
                    [],
                    |r| r.get(0),
                )?;
                self.next_seq = (out_max + 1_001) | 1;
                Ok(self.write_once(prefix, n)?)
            }
            Err(error) => Err(error.into()),
        }
    }

    fn write_once(&mut self, prefix: &str, n: usize) -> rusqlite::Result<()> {
        let first_seq = self.next_seq;
        let tx = self.conn.transaction()?;
        let mut seq = first_seq;
        for _ in 0..n {
            tx.execute(
                "INSERT INTO messages_out (id, seq, created_at, kind, content) VALUES (?1, ?2, ?3, 'chat', ?4)",
                params![
                    format!("{prefix}-{seq}"),
                    seq,
                    protocol::time::now_ms(),
                    serde_json::json!({"text": format!("{prefix} row {seq}")}).to_string()
                ],
            )?;
            seq += 2;
        }
        tx.commit()?;
        self.next_seq = seq;
        Ok(())
    }
}

/// `n` victim turns; the message -> first reply times.
async fn victim_turns(
    client: &mut CliClient,
    n: usize,
    label: &str,
) -> anyhow::Result<Distribution> {
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let turn = client
            .turn(&format!("{label} {i}"), Some(VICTIM), TURN_TIMEOUT)
            .await?;
        samples.push(turn.first_reply);
    }
    Ok(Distribution::from_durations(&samples))
}

/// Reads (and drops) every line a client gets, so the host never waits on a full socket.
fn drain_lines(mut client: CliClient, seen: Arc<AtomicUsize>, stop: Arc<AtomicBool>) {
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            let deadline = Instant::now() + Duration::from_millis(500);
            match client.next(deadline).await {
                Ok(ServerLine::Reply { .. }) => {
                    seen.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(_) => {}
            }
        }
    });
}

pub async fn measure_flood(bench: &Bench, turns: usize) -> anyhow::Result<FloodRun> {
    let fake = FakeModel::start()?;
    let chats = [VICTIM.to_owned(), FLOODER.to_owned()];
    let mut host = start_host_with_chats(options(bench, &fake), &chats).await?;
    let result = flood_rounds(&host, turns).await;
    let _ = host.stop();
    result
}

async fn flood_rounds(host: &HostProcess, turns: usize) -> anyhow::Result<FloodRun> {
    let mut victim = CliClient::connect(&host.cli_socket()).await?;
    let mut flooder = CliClient::connect(&host.cli_socket()).await?;
    // Warm-ups start both containers (and subscribe each client to its chat).
    victim.turn("warm-up", Some(VICTIM), TURN_TIMEOUT).await?;
    flooder.turn("warm-up", Some(FLOODER), TURN_TIMEOUT).await?;
    let baseline = victim_turns(&mut victim, turns, "baseline").await?;

    let flood_dir = session_dir(host, FLOODER)?;
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(AtomicUsize::new(0));
    drain_lines(flooder, Arc::clone(&seen), Arc::clone(&stop));
    let (rows, touches) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let writer = {
        let (stop, rows, touches) = (Arc::clone(&stop), Arc::clone(&rows), Arc::clone(&touches));
        let mut writer = RowWriter::open(&flood_dir)?;
        let noise = flood_dir.join("out/noise");
        std::thread::spawn(move || -> anyhow::Result<()> {
            while !stop.load(Ordering::Relaxed) {
                writer.write("flood", FLOOD_BATCH)?;
                rows.fetch_add(FLOOD_BATCH, Ordering::Relaxed);
                for _ in 0..FLOOD_BATCH {
                    std::fs::write(&noise, b"x")?;
                    touches.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(FLOOD_PAUSE);
            }
            Ok(())
        })
    };
    let pid = host.pid().context("the host is not running")?;
    let cpu_before = super::resources::cpu_millis(pid)?;
    let started = Instant::now();
    let flooded = victim_turns(&mut victim, turns, "flooded").await;
    let elapsed = started.elapsed().as_secs_f64();
    let host_cpu_percent = (super::resources::cpu_millis(pid)? - cpu_before) / 10.0 / elapsed;
    stop.store(true, Ordering::Relaxed);
    match writer.join() {
        Ok(Ok(())) => {}
        Ok(Err(error)) => bail!("the flood writer failed: {error:#}"),
        Err(_) => bail!("the flood writer panicked"),
    }
    Ok(FloodRun {
        baseline,
        flooded: flooded?,
        rows_per_sec: rows.load(Ordering::Relaxed) as f64 / elapsed,
        touches_per_sec: touches.load(Ordering::Relaxed) as f64 / elapsed,
        host_cpu_percent,
    })
}

pub async fn measure_drain(bench: &Bench, n_rows: usize) -> anyhow::Result<DrainRun> {
    let fake = FakeModel::start()?;
    let options = options(bench, &fake)
        .env("CRABPOT_OUTBOUND_MAX_ROWS_PER_TURN", "1000000")
        .env("CRABPOT_OUTBOUND_MAX_ROWS_PER_MINUTE", "1000000");
    let mut host = start_host_with_chats(options, &[BACKLOG.to_owned()]).await?;
    let result = drain(&host, n_rows).await;
    let _ = host.stop();
    result
}

async fn drain(host: &HostProcess, n_rows: usize) -> anyhow::Result<DrainRun> {
    let mut client = CliClient::connect(&host.cli_socket()).await?;
    client.turn("warm-up", Some(BACKLOG), TURN_TIMEOUT).await?;
    let mut writer = RowWriter::open(&session_dir(host, BACKLOG)?)?;
    writer.write("backlog", n_rows)?;
    let started = Instant::now();
    // Generous: a tenth of the target rate still finishes.
    let deadline = started + Duration::from_secs(60) + Duration::from_millis(10 * n_rows as u64);
    let mut received = 0;
    while received < n_rows {
        match client.next(deadline).await {
            Ok(ServerLine::Reply { text, .. }) if text.starts_with("backlog row ") => received += 1,
            Ok(_) => {}
            Err(error) => {
                bail!("{received} of {n_rows} backlog rows reached the chat: {error:#}")
            }
        }
    }
    Ok(DrainRun {
        rows: n_rows,
        secs: started.elapsed().as_secs_f64(),
    })
}

/// The fairness rows: idle CPU (from the concurrency part), flood vs reply latency, backlog
/// drain rate.
pub fn rows(
    concurrency: &anyhow::Result<ConcurrencyRun>,
    flood: &anyhow::Result<FloodRun>,
    drain: &anyhow::Result<DrainRun>,
) -> Vec<Row> {
    let mut rows = Vec::new();
    let idle_target = format!("< {IDLE_CPU_PERCENT}% of one core");
    match concurrency {
        Ok(run) => {
            let percent = run.idle_host_cpu_percent;
            let what = format!(
                "host CPU with {} idle containers up ({:.0} s)",
                run.containers, run.idle_window_secs
            );
            let mut row = Row::value(
                "host_cpu_idle_containers",
                &what,
                format!("{percent:.2}% of one core"),
                percent,
            )
            .target(&idle_target, percent < IDLE_CPU_PERCENT);
            if run.containers < 200 {
                row.met = super::report::Met::NotApplicable;
            }
            rows.push(row);
        }
        Err(error) => rows.push(Row::failed(
            "host_cpu_idle_containers",
            "host CPU with 200 idle containers up",
            &idle_target,
            error,
        )),
    }
    let flood_target = format!("p99 added <= {}", ms(FLOOD_ADDED_P99_MS));
    const FLOOD_WHAT: &str =
        "another session's reply latency while one session floods (rows + out/ touches)";
    match flood {
        Ok(run) => rows.push(
            Row::value(
                "flood_added_p99",
                FLOOD_WHAT,
                format!(
                    "p99 +{} (alone p50 {} / p99 {}, flooded p50 {} / p99 {}, n = {}; flood {:.0} rows/s + {:.0} touches/s, host CPU {:.0}%)",
                    ms(run.added_p99_ms()),
                    ms(run.baseline.p50()),
                    ms(run.baseline.p99()),
                    ms(run.flooded.p50()),
                    ms(run.flooded.p99()),
                    run.flooded.n(),
                    run.rows_per_sec,
                    run.touches_per_sec,
                    run.host_cpu_percent,
                ),
                run.added_p99_ms(),
            )
            .with("baseline_p99_ms", run.baseline.p99())
            .with("flooded_p99_ms", run.flooded.p99())
            .with("flood_rows_per_sec", run.rows_per_sec)
            .target(&flood_target, run.added_p99_ms() <= FLOOD_ADDED_P99_MS),
        ),
        Err(error) => rows.push(Row::failed("flood_added_p99", FLOOD_WHAT, &flood_target, error)),
    }
    let drain_target = format!(">= {DRAIN_ROWS_PER_SEC:.0} rows/s");
    const DRAIN_WHAT: &str =
        "backlog drain of one session, rows written at once -> all in the chat";
    match drain {
        Ok(run) => rows.push(
            Row::value(
                "backlog_drain",
                DRAIN_WHAT,
                format!(
                    "{:.0} rows/s (n = {}, {:.1} s)",
                    run.rows_per_sec(),
                    run.rows,
                    run.secs
                ),
                run.rows_per_sec(),
            )
            .with("n", run.rows as f64)
            .target(&drain_target, run.rows_per_sec() >= DRAIN_ROWS_PER_SEC),
        ),
        Err(error) => rows.push(Row::failed(
            "backlog_drain",
            DRAIN_WHAT,
            &drain_target,
            error,
        )),
    }
    rows
}
