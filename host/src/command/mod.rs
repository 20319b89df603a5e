//! The command line of `crabpot`: [`Cli`] and its subcommands (clap derive). Parsing only;
//! each command's work lives in its own module.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

pub const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  error (the message says what failed)
  2  bad command-line arguments
  3  the host is not running (no socket to connect to)
  4  no reply within --timeout";

/// crabpot: one sandboxed AI agent per conversation.
#[derive(Debug, Parser)]
#[command(name = "crabpot", version, after_help = EXIT_CODES)]
pub struct Cli {
    /// Where runtime state lives (central DB, sessions, sockets).
    #[arg(long, global = true, env = "CRABPOT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// A crabpot.toml to read (default: ./crabpot.toml when it exists).
    #[arg(long, global = true, env = "CRABPOT_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the host daemon.
    Serve(ServeArgs),
    /// Chat with the `main` agent from this terminal.
    Chat(ChatArgs),
    /// Show the running host: Docker, containers, queue.
    Status(StatusArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Stop and remove this install's containers when the host exits (by default they keep
    /// running and the next start adopts them).
    #[arg(long)]
    pub stop_containers_on_exit: bool,
    /// Most containers running at once.
    #[arg(long)]
    pub max_containers: Option<usize>,
    /// The agent image.
    #[arg(long)]
    pub image: Option<String>,
    /// The folder holding agent group folders.
    #[arg(long)]
    pub groups_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ChatArgs {
    /// Send this message, print the replies of that turn, and exit.
    #[arg(long, short)]
    pub message: Option<String>,
    /// With --message: seconds to wait for the turn to finish.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
    /// Who you are in the chat (default: $USER).
    #[arg(long)]
    pub user: Option<String>,
    /// With --message: print one JSON document on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print one JSON document on stdout.
    #[arg(long)]
    pub json: bool,
}
