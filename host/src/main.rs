//! The `crabpot` binary: parses the command line, sets up logging, and calls into the
//! library. Exit codes are listed in `crabpot --help`.

use clap::Parser;
use host::command::{Cli, Command};
use host::config::{Config, RawConfig};
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("crabpot: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(run(cli))
}

fn load_config(cli: &Cli, flags: RawConfig) -> anyhow::Result<Config> {
    let file = match &cli.config {
        Some(path) => RawConfig::from_file(path)?,
        None if std::path::Path::new("crabpot.toml").is_file() => {
            RawConfig::from_file("crabpot.toml".as_ref())?
        }
        None => RawConfig::default(),
    };
    let env = RawConfig::from_env(|key| std::env::var(key).ok())?;
    let flags = RawConfig {
        data_dir: cli.data_dir.clone(),
        ..flags
    };
    Ok(Config::from_raw(
        RawConfig::default().merge(file).merge(env).merge(flags),
    )?)
}

async fn run(cli: Cli) -> ExitCode {
    let user = || std::env::var("USER").unwrap_or_else(|_| "you".into());
    match &cli.command {
        Command::Serve(args) => {
            init_logging(true);
            let flags = RawConfig {
                max_containers: args.max_containers,
                image: args.image.clone(),
                groups_dir: args.groups_dir.clone(),
                ..RawConfig::default()
            };
            let result = match load_config(&cli, flags) {
                Ok(config) => {
                    let options = host::serve::ServeOptions {
                        stop_containers_on_exit: args.stop_containers_on_exit,
                    };
                    host::serve::serve(config, options).await
                }
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("crabpot serve: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Chat(args) => {
            init_logging(false);
            let config = match load_config(&cli, RawConfig::default()) {
                Ok(config) => config,
                Err(e) => {
                    eprintln!("crabpot chat: {e:#}");
                    return ExitCode::from(1);
                }
            };
            let socket = config.cli_socket();
            let user = args.user.clone().unwrap_or_else(user);
            let result = match &args.message {
                Some(text) => {
                    match host::chat::one_shot(
                        &socket,
                        &user,
                        text,
                        Duration::from_secs(args.timeout),
                    )
                    .await
                    {
                        Ok(turn) => {
                            if args.json {
                                println!("{}", serde_json::to_string(&turn).unwrap_or_default());
                            } else {
                                for reply in &turn.replies {
                                    println!("{reply}");
                                }
                                if turn.replies.is_empty() {
                                    eprintln!("(the agent finished its turn without replying)");
                                }
                            }
                            Ok(())
                        }
                        Err(e) => Err(e),
                    }
                }
                None => host::chat::interactive(&socket, &user).await,
            };
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("crabpot chat: {e}");
                    ExitCode::from(e.exit_code())
                }
            }
        }
        Command::Status(args) => {
            init_logging(false);
            let config = match load_config(&cli, RawConfig::default()) {
                Ok(config) => config,
                Err(e) => {
                    eprintln!("crabpot status: {e:#}");
                    return ExitCode::from(1);
                }
            };
            match host::admin::get::<host::admin::Status>(&config.admin_socket(), "/v1/status")
                .await
            {
                Ok(status) if args.json => {
                    println!("{}", serde_json::to_string(&status).unwrap_or_default());
                    ExitCode::SUCCESS
                }
                Ok(status) => {
                    println!("install     {}", status.install_id);
                    println!("docker      {}", status.docker);
                    println!("model       {}", status.model);
                    println!(
                        "containers  {} running, {} starting (cap {})",
                        status.running.len(),
                        status.starting,
                        status.max_containers
                    );
                    println!("queue       {}", status.queued.len());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("crabpot status: {e}");
                    ExitCode::from(e.exit_code())
                }
            }
        }
    }
}

fn init_logging(verbose: bool) {
    let default = if verbose { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colours only on a terminal: `make run` and the tests send the log to a file.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .try_init();
}
