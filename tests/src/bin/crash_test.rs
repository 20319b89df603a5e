//! `make crash-test`: kills the real host with SIGKILL at random points around a stream of
//! messages across several sessions and checks that no reply is lost or duplicated, at the
//! client and in the session files. See `tests/src/crash`.
//!
//! Exit codes: 0 nothing lost or duplicated, 1 something was lost or duplicated, 2 bad
//! arguments, 3 Docker is not reachable (nothing was run), 4 the run could not go on (the
//! host did not come back after a kill, or another harness error).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tests::crash::{self, CrashOptions};

/// Crash-test crabpot: SIGKILL the host again and again while messages flow.
#[derive(Debug, Parser)]
#[command(name = "crash_test")]
struct Args {
    /// How many times the host is killed (the issue asks for at least 50).
    #[arg(long, default_value_t = 50)]
    kills: usize,
    /// The RNG seed of the kill delays and message gaps; default: drawn from the clock and
    /// printed, so a run can be replayed.
    #[arg(long)]
    seed: Option<u64>,
    /// How many chats, each its own session.
    #[arg(long, default_value_t = 4)]
    sessions: usize,
    /// How many messages the stream sends, round-robin over the chats.
    #[arg(long, default_value_t = 200)]
    messages: usize,
    /// Longest time the host runs between two kills, in milliseconds (shortest: 50).
    #[arg(long, default_value_t = 3_000)]
    max_kill_delay_ms: u64,
    /// Longest pause between two messages, in milliseconds.
    #[arg(long, default_value_t = 600)]
    max_message_gap_ms: u64,
    /// How long to wait for the last replies after the last kill, in seconds.
    #[arg(long, default_value_t = 180)]
    reply_deadline_s: u64,
    /// The host binary; default `CRABPOT_BIN`, else `crabpot` next to this program.
    #[arg(long, env = "CRABPOT_BIN")]
    crabpot_bin: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let defaults = CrashOptions::default();
    let options = CrashOptions {
        kills: args.kills,
        seed: args.seed.unwrap_or_else(crash::rng::fresh_seed),
        sessions: args.sessions,
        messages: args.messages,
        kill_delay: (
            defaults.kill_delay.0,
            Duration::from_millis(args.max_kill_delay_ms),
        ),
        message_gap: (
            Duration::ZERO,
            Duration::from_millis(args.max_message_gap_ms),
        ),
        reply_deadline: Duration::from_secs(args.reply_deadline_s),
        binary: args.crabpot_bin,
        ..defaults
    };
    if options.sessions == 0 || options.messages == 0 {
        eprintln!("crash_test: --sessions and --messages must be at least 1");
        return ExitCode::from(2);
    }
    eprintln!(
        "crash_test: seed {} (replay with --seed {})",
        options.seed, options.seed
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("crash_test: cannot start the async runtime: {error}");
            return ExitCode::from(4);
        }
    };
    let code = runtime.block_on(async {
        if !tests::docker::docker_available().await {
            eprintln!("crash_test: Docker is not reachable (docker info failed); the crash test runs real containers");
            return ExitCode::from(3);
        }
        match crash::run(&options).await {
            Ok(report) => {
                print!("{}", report.render());
                if report.passed() {
                    ExitCode::SUCCESS
                } else {
                    eprintln!("---- last lines of host.log ----\n{}", report.host_log_tail);
                    ExitCode::from(1)
                }
            }
            Err(error) => {
                eprintln!("crash_test: the run could not go on (seed {}): {error:#}", options.seed);
                ExitCode::from(4)
            }
        }
    });
    let left = tests::bench::cleanup::remove_registered_containers();
    if left > 0 {
        eprintln!("crash_test: removed {left} container(s) left behind");
    }
    code
}
