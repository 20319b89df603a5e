//! The `crabpot` binary: parses the command line, sets up logging, and calls into the
//! library. Exit codes are listed in `crabpot --help`.

use clap::Parser;
use host::chat::ChatTarget;
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
    let code = runtime.block_on(run(cli));
    // Dropping the runtime would wait for every blocking thread, and one can be stuck for
    // good (an open() of a FIFO a container planted in its out/): give them a moment, then
    // leave them to the process exit.
    runtime.shutdown_timeout(Duration::from_millis(500));
    code
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
    let user = host::channels::cli::terminal_user;
    match &cli.command {
        Command::Serve(args) => {
            init_logging(true);
            let flags = RawConfig {
                max_containers: args.max_containers,
                image: args.image.clone(),
                groups_dir: args.groups_dir.clone(),
                web_listen: args.web_listen.clone(),
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
            let target = ChatTarget {
                user: args.user.clone().unwrap_or_else(user),
                chat: args.chat.clone(),
                thread: args.thread.clone(),
                is_group: args.group_chat,
                is_mention: !args.no_mention,
            };
            let result = match &args.message {
                Some(text) => {
                    let timeout = Duration::from_secs(args.timeout);
                    let turn = match args.answer.as_deref() {
                        Some(question_id) => {
                            let question_id = (question_id != "latest").then_some(question_id);
                            host::chat::answer(&socket, &target, question_id, text, timeout).await
                        }
                        None => host::chat::one_shot(&socket, &target, text, timeout).await,
                    };
                    match turn {
                        Ok(turn) => {
                            if cli.json {
                                println!("{}", serde_json::to_string(&turn).unwrap_or_default());
                            } else {
                                for reply in &turn.replies {
                                    println!("{reply}");
                                }
                                if !turn.held.is_empty() {
                                    eprintln!(
                                        "(your message awaits approval {}; see `crabpot approvals list`)",
                                        turn.held.join(", ")
                                    );
                                } else if turn.replies.is_empty() {
                                    eprintln!("(the agent finished its turn without replying)");
                                }
                            }
                            Ok(())
                        }
                        Err(e) => Err(e),
                    }
                }
                None => host::chat::interactive(&socket, &target).await,
            };
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("crabpot chat: {e}");
                    ExitCode::from(e.exit_code())
                }
            }
        }
        Command::Service(service) => {
            init_logging(false);
            let result = load_config(&cli, RawConfig::default())
                .map_err(|e| format!("{e:#}"))
                .and_then(|config| {
                    host::command::service::run(service, &config.data_dir, cli.config.as_deref())
                });
            match result {
                Ok(message) => {
                    println!("{message}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("crabpot service: {e}");
                    ExitCode::from(1)
                }
            }
        }
        command => {
            init_logging(false);
            let name = command_name(command);
            let config = match load_config(&cli, RawConfig::default()) {
                Ok(config) => config,
                Err(e) => {
                    eprintln!("crabpot {name}: {e:#}");
                    return ExitCode::from(1);
                }
            };
            let socket = config.admin_socket();
            let result = match command {
                Command::Status => host::command::admin::status(&socket, cli.json).await,
                other => host::command::admin::run(&socket, cli.json, other)
                    .await
                    .unwrap_or(Ok(())),
            };
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(failure) => {
                    eprintln!("crabpot {name}: {}", failure.message);
                    ExitCode::from(failure.code)
                }
            }
        }
    }
}

/// The resource a command is about, for error messages.
fn command_name(command: &Command) -> &'static str {
    match command {
        Command::Serve(_) => "serve",
        Command::Chat(_) => "chat",
        Command::Status => "status",
        Command::Groups(_) => "groups",
        Command::Chats(_) => "chats",
        Command::Wirings(_) => "wirings",
        Command::Destinations(_) => "destinations",
        Command::Users(_) => "users",
        Command::Roles(_) => "roles",
        Command::Members(_) => "members",
        Command::Sessions(_) => "sessions",
        Command::Approvals(_) => "approvals",
        Command::Dropped(_) => "dropped",
        Command::Tasks(_) => "tasks",
        Command::Channels(_) => "channels",
        Command::Adapters(_) => "adapters",
        Command::Tokens(_) => "tokens",
        Command::Web(_) => "web",
        Command::Webhooks(_) => "webhooks",
        Command::Egress(_) => "egress",
        Command::Service(_) => "service",
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
