//! The `agent-runner` binary: parses the (few) arguments, sets up logging to stderr, and runs
//! [`agent_runner::run`] on a single-threaded tokio runtime until SIGTERM or Ctrl-C.

use agent_runner::{
    EXIT_FAILURE, EXIT_OK, EXIT_SESSION_NOT_READY, EXIT_SESSION_UNUSABLE, EXIT_USAGE, RunnerOptions,
};
use std::io::IsTerminal;
use std::process::ExitCode;

fn help() -> String {
    format!(
        "agent-runner {version}: the crabpot agent loop inside a session container.

Waits for inbound rows in $CRABPOT_SESSION_DIR/in/inbound.db (default /session), runs the
model through the host proxy at in/proxy.sock, writes replies to out/outbound.db and touches
out/heartbeat. Instructions come from $CRABPOT_GROUP_DIR/AGENT.md (default /group).

Usage: agent-runner [--help | --version]

Environment:
  CRABPOT_SESSION_DIR  session folder root (default /session)
  CRABPOT_GROUP_DIR    agent group folder (default /group)
  RUST_LOG             log filter for stderr (default info)

Exit codes:
  {EXIT_OK}  stopped cleanly on SIGTERM or Ctrl-C
  {EXIT_FAILURE}  a session file or the transcript failed while running (restarting may help)
  {EXIT_USAGE}  bad arguments
  {EXIT_SESSION_UNUSABLE}  the session is unusable by this image: a session file is missing, has another
     schema version, or has no session_config (fix the host or the image first)
  {EXIT_SESSION_NOT_READY}  the session files stayed busy or not ready past the start deadline
",
        version = env!("CARGO_PKG_VERSION")
    )
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        None => {}
        Some("-h" | "--help") => {
            print!("{}", help());
            return ExitCode::from(EXIT_OK);
        }
        Some("-V" | "--version") => {
            println!("agent-runner {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::from(EXIT_OK);
        }
        Some(other) => {
            eprintln!("agent-runner: unexpected argument {other:?}\n\n{}", help());
            return ExitCode::from(EXIT_USAGE);
        }
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(filter)
        .init();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("agent-runner: cannot start the async runtime: {error}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let options = RunnerOptions::from_env();
    match runtime.block_on(agent_runner::run(options, shutdown_signal())) {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(error) => {
            let code = error.exit_code();
            eprintln!("agent-runner: {:#}", anyhow::Error::new(error));
            ExitCode::from(code)
        }
    }
}

/// Resolves on SIGTERM (`docker stop`) or Ctrl-C.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::select! {
                _ = terminate.recv() => tracing::info!("SIGTERM: stopping"),
                _ = tokio::signal::ctrl_c() => tracing::info!("Ctrl-C: stopping"),
            }
        }
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the runner");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
