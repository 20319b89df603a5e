//! `crabpot serve`: builds the daemon from a [`Config`] and runs it until SIGINT/SIGTERM.
//!
//! Start order (the sequence is here; [`data`] holds what is kept on disk at start and
//! [`background`] what runs until shutdown): data folders, central DB thread (and the `main` agent group wired to the
//! `cli` chat on first start), Docker (version negotiated), session store thread, model
//! proxy, supervisor (adopting this install's running containers), router, tasks, delivery,
//! sweep, the `cli` channel, the out-of-process adapters' socket and the admin socket. Shutdown cancels the root token, waits for every
//! task with a bound, then joins the database threads.

mod background;
mod data;

use background::{bounded, persist_usage, shutdown_signal, start_channels};
use data::{absolute, bootstrap, make_private};

use crate::admin::Admin;
use crate::bridge::Bridge;
use crate::channels::Channels;
use crate::channels::cli::{CliChannel, CliLimits};
use crate::config::Config;
use crate::db::DbThread;
use crate::db::central;
use crate::delivery::{Delivery, DeliveryParts};
use crate::edge::ChannelContext;
use crate::fd_budget::FdBudget;
use crate::proxy::{Proxy, ProxyLimits};
use crate::router::plan::PlanSettings;
use crate::router::{Router, RouterParts};
use crate::runtime::{ContainerLimits, ContainerRuntime, DockerRuntime};
use crate::session::SessionStore;
use crate::session::disk::{self, Quotas};
use crate::session::owner::Owners;
use crate::supervisor::{DiskSettings, Supervisor, SupervisorConfig, SupervisorParts};
use crate::tasks::Tasks;
use anyhow::{Context, bail};
use protocol::SessionConfig;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Options of `crabpot serve` that are not configuration.
#[derive(Clone, Debug, Default)]
pub struct ServeOptions {
    pub stop_containers_on_exit: bool,
}

/// The `main` agent group every install starts with.
pub const MAIN_GROUP: &str = "main";

/// The process umask: what the host creates is its own (group root at most: the data dir is
/// 0700 anyway). Not 0o077, because what a session's container must read is given the
/// session's group through setgid folders (`in/`, see `session::folder`), which a umask
/// without group read would undo.
const UMASK: u32 = 0o027;

/// SIGTERM to exit: every wait of the shutdown fits in this, whatever a session is doing.
const SHUTDOWN_BUDGET: Duration = Duration::from_millis(8_500);

/// Runs the daemon until a shutdown signal.
pub async fn serve(config: Config, options: ServeOptions) -> anyhow::Result<()> {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(UMASK));
    // Raised to the hard limit first, so the reserve is counted from what the host may open.
    let fd_budget = FdBudget::from_process();
    tracing::info!(
        limit = fd_budget.limit(),
        reserve = fd_budget.reserve(),
        "file descriptors"
    );
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating the data dir {}", config.data_dir.display()))?;
    let data_dir = absolute(&config.data_dir)?;
    make_private(&data_dir);
    let groups_dir = absolute(&config.groups_dir)?;
    let main_instructions = groups_dir
        .join(MAIN_GROUP)
        .join(protocol::paths::AGENT_INSTRUCTIONS);
    if !main_instructions.is_file() {
        bail!(
            "{} is missing: the groups dir must hold groups/main/AGENT.md (set --groups-dir or CRABPOT_GROUPS_DIR)",
            main_instructions.display()
        );
    }
    let config = Config {
        data_dir: data_dir.clone(),
        groups_dir: groups_dir.clone(),
        ..config
    };

    let central_path = config.central_db();
    let central = Arc::new(
        DbThread::spawn("central", move || central::open(&central_path))
            .context("opening the central database")?,
    );
    let configured_install = config.install_id.clone();
    let install_id = central
        .call(move |conn| {
            let install = central::install_id(conn, configured_install.as_deref())?;
            bootstrap(conn)?;
            Ok(install)
        })
        .await
        .context("preparing the central database")?;
    make_private(&data_dir);

    let docker = DockerRuntime::connect()
        .await
        .context("Docker is not reachable (is the Docker engine running?)")?;
    let runtime: Arc<dyn ContainerRuntime> = Arc::new(docker);
    let version = runtime
        .version()
        .await
        .context("Docker is not reachable (is the Docker engine running?)")?;
    tracing::info!(engine = %version.engine_version, api = %version.negotiated_api_version, "docker");

    let owners = Owners::for_host(
        config.container_user,
        config.container_uid_range,
        Arc::clone(&central),
    );
    match &owners {
        Owners::HostUser { .. } => tracing::warn!(uids = %owners.describe(), "uids"),
        Owners::Fixed { .. } | Owners::PerSession { .. } => {
            tracing::info!(uids = %owners.describe(), "uids")
        }
    }
    let uids = owners.describe();
    let sessions = SessionStore::start_with(config.sessions_dir(), owners)
        .context("starting the session store")?;
    let probe_dir = data_dir.clone();
    let quota_mb = config.disk_quota_mb;
    let quotas = tokio::task::spawn_blocking(move || disk::probe(&probe_dir, quota_mb))
        .await
        .context("probing for disk quotas")?;
    match &quotas {
        Quotas::On => tracing::info!(
            quota_mb,
            reserve_mb = config.disk_reserve_mb,
            "disk quotas are on"
        ),
        Quotas::Off { reason } => tracing::warn!(
            %reason,
            "disk quotas are OFF: a session can fill the host's disk (only the reserve of disk_reserve_mb stops new containers)"
        ),
    }

    let root = CancellationToken::new();
    let tasks = TaskTracker::new();
    let (usage_tx, usage_rx) = mpsc::unbounded_channel();
    let model_name = match &config.model {
        Some(model) => format!("{} {} at {}", model.provider, model.model, model.base_url),
        None => "none configured".to_owned(),
    };
    match &config.model {
        Some(_) => tracing::info!(model = %model_name, "model"),
        None => tracing::warn!(
            "no model is configured: set CRABPOT_MODEL_PROVIDER, CRABPOT_MODEL_BASE_URL, CRABPOT_MODEL and \
             CRABPOT_MODEL_API_KEY; until then every message gets a reply saying so"
        ),
    }
    let session_config = SessionConfig {
        provider: config
            .model
            .as_ref()
            .map_or(protocol::ProviderKind::OpenAi, |m| m.provider),
        model: config
            .model
            .as_ref()
            .map_or_else(String::new, |m| m.model.clone()),
        max_output_tokens: config.max_output_tokens,
        context_window_tokens: config.context_window_tokens,
        compact_at_percent: config.compact_at_percent,
        vision: config.model_vision,
        ..SessionConfig::default()
    };
    let proxy = Proxy::new_with(
        config.model.clone(),
        usage_tx,
        ProxyLimits {
            max_connections_per_session: config.proxy_max_connections,
            header_timeout: config.proxy_header_timeout,
            idle_timeout: config.proxy_idle_timeout,
            request_timeout: config.proxy_request_timeout,
        },
        Arc::clone(&fd_budget),
    )
    .context("building the model proxy")?;
    let proxy_gate = proxy.log_gate();
    tasks.spawn(persist_usage(Arc::clone(&central), usage_rx, root.clone()));

    let (out_tx, out_rx) = mpsc::unbounded_channel();
    let (notice_tx, notice_rx) = mpsc::unbounded_channel();
    let (arrival_tx, arrival_rx) = mpsc::unbounded_channel();
    let supervisor = Supervisor::new(
        SupervisorConfig {
            install_id: install_id.clone(),
            image: config.image.clone(),
            toolbox_image: config.toolbox_image.clone(),
            disk: DiskSettings {
                quotas,
                quota_mb: config.disk_quota_mb,
                reserve_mb: config.disk_reserve_mb,
                data_dir: data_dir.clone(),
                uids,
            },
            limits: ContainerLimits {
                memory_bytes: config.limits.memory_bytes,
                nano_cpus: config.limits.nano_cpus,
                pids_limit: config.limits.pids_limit,
                tmpfs_tmp_bytes: config.limits.tmpfs_bytes,
            },
            max_containers: config.max_containers,
            groups_dir,
            idle_timeout: config.idle_timeout,
            heartbeat_stale: config.heartbeat_stale,
            agent_log: config.agent_log.clone(),
            wake_mode: config.wake_mode,
            session_config: session_config.clone(),
        },
        SupervisorParts {
            runtime: Arc::clone(&runtime),
            sessions: Arc::clone(&sessions),
            central: Arc::clone(&central),
            proxy: Arc::clone(&proxy),
            tasks: tasks.clone(),
            shutdown: root.clone(),
            out_changed: out_tx,
            notices: notice_tx,
        },
    );
    match supervisor.adopt().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(adopted = n, "adopted running containers"),
        Err(e) => tracing::warn!(error = %e, "could not adopt running containers"),
    }

    let router = Router::with_parts(RouterParts {
        central: Arc::clone(&central),
        sessions: Arc::clone(&sessions),
        supervisor: Arc::clone(&supervisor),
        session_config,
        settings: PlanSettings {
            approval_ttl_ms: i64::try_from(config.approval_ttl.as_millis()).unwrap_or(i64::MAX),
        },
        groups_dir: config.groups_dir.clone(),
    });
    let host_message_rx = router
        .take_host_messages()
        .context("the router's host messages were already taken")?;
    let cli_channel = CliChannel::new_with(CliLimits::default(), Arc::clone(&fd_budget));
    let cli_gate = cli_channel.log_gate();
    let channels = Arc::new(Channels::default());
    channels.register(cli_channel.clone());
    let web_channel =
        crate::channels::web::WebChannel::new(Arc::clone(&central), data_dir.join("uploads"));
    channels.register(web_channel.clone());
    // Every registered out-of-process adapter has its channel before delivery starts, so its
    // rows wait for it (connected or not) instead of being refused.
    let adapters = crate::channels::external::ExternalAdapters::new(
        Arc::clone(&central),
        Arc::clone(&channels),
        Arc::clone(&fd_budget),
        crate::channels::external::ExternalLimits::default(),
    );
    let n_adapters = adapters
        .load()
        .await
        .context("loading the channel adapters")?;
    let adapters_socket = crate::channels::external::ExternalAdapters::socket_path(&data_dir);
    adapters.listen(
        crate::channels::external::ExternalAdapters::bind(&adapters_socket)
            .with_context(|| format!("binding {}", adapters_socket.display()))?,
    );
    tracing::info!(adapters = n_adapters, "out-of-process channel adapters");
    let web_base_url = Arc::new(std::sync::OnceLock::new());
    let hooks = crate::channels::platforms::register(
        &config.channels,
        &crate::channels::platforms::PlatformParts {
            central: Arc::clone(&central),
            uploads_dir: data_dir.join("uploads"),
            web_base_url: Arc::clone(&web_base_url),
        },
        &channels,
    );
    let bridge = Bridge::new(Arc::clone(&channels));
    let (draft_log, found_drafts) =
        crate::delivery::drafts::CentralDrafts::load(Arc::clone(&central))
            .await
            .context("reading the drafts an earlier run left")?;
    bridge.streams().remember(draft_log, found_drafts);
    let delivery_interval = match config.wake_mode {
        crate::config::WakeMode::Events => config.sweep_interval,
        crate::config::WakeMode::Poll => Duration::from_secs(1),
    };
    let tasks_service = Tasks::new(
        Arc::clone(&sessions),
        Arc::clone(&central),
        Arc::clone(&supervisor),
    );
    let delivery = Delivery::new(DeliveryParts {
        sessions: Arc::clone(&sessions),
        central: Arc::clone(&central),
        supervisor: Arc::clone(&supervisor),
        channels: Arc::clone(&channels),
        bridge: Arc::clone(&bridge),
        interval: delivery_interval,
        a2a_limits: config.a2a,
        router: Arc::clone(&router),
        tasks: Arc::clone(&tasks_service),
        files_dir: config.files_dir(),
        outbound_limits: crate::delivery::OutboundLimits {
            max_rows_per_turn: config.outbound_max_rows_per_turn as usize,
            max_rows_per_minute: config.outbound_max_rows_per_minute as usize,
            ..crate::delivery::OutboundLimits::default()
        },
    });
    // Drafts the runners post on their proxy sockets go to delivery's live streams.
    proxy.set_live_sink(crate::delivery::live::LiveInput::new(&delivery));
    // Egress on the proxy sockets: the groups' rules read from the central DB, every attempt
    // written back to it (`crabpot egress log`).
    proxy.set_egress(crate::egress::EgressGate::start(
        Arc::clone(&central),
        &tasks,
        root.clone(),
    ));
    // web_fetch and web_search: the host fetches through the same rules and records each.
    proxy.set_web_tools(
        crate::egress::web::WebTools::new(
            Arc::clone(&central),
            config.search.clone(),
            proxy.egress_recorder(),
        )
        .context("building the web tools")?,
    );
    let delivery_gate = delivery.log_gate();
    tasks.spawn(delivery.run(out_rx, notice_rx, host_message_rx, arrival_rx, root.clone()));
    tasks.spawn(crate::sweep::run(
        Arc::clone(&supervisor),
        config.sweep_interval,
        root.clone(),
    ));

    let admin_listener = crate::admin::bind(&config.admin_socket())
        .with_context(|| format!("binding {}", config.admin_socket().display()))?;
    // The web listener is bound before the Admin is built: login links need its base URL.
    let web_listener = match config.web.listen {
        Some(addr) => {
            let listener = crate::web::bind(addr).await?;
            let bound = listener
                .local_addr()
                .context("reading the web server's address")?;
            let base_url = config.web.base_url(bound);
            let _ = web_base_url.set(base_url.clone());
            Some((listener, base_url))
        }
        None => None,
    };
    let admin = Arc::new(Admin {
        install_id: install_id.clone(),
        model: model_name,
        runtime: Arc::clone(&runtime),
        supervisor: Arc::clone(&supervisor),
        central: Arc::clone(&central),
        sessions: Arc::clone(&sessions),
        router: Arc::clone(&router),
        tasks: tasks_service,
        groups_dir: config.groups_dir.clone(),
        channels: Arc::clone(&channels),
        adapters: Arc::clone(&adapters),
        web_base_url: web_listener.as_ref().map(|(_, base_url)| base_url.clone()),
    });
    tasks.spawn(Arc::clone(&admin).serve(admin_listener, root.clone()));
    let web_url = match web_listener {
        Some((listener, base_url)) => {
            let state = crate::web::WebState {
                admin: Arc::clone(&admin),
                auth: crate::web::auth::Auth::new(Arc::clone(&central)),
                web: Arc::clone(&web_channel),
                config: config.web.clone(),
                base_url: base_url.clone(),
            };
            tasks.spawn(crate::web::serve(listener, state, hooks, root.clone()));
            std::fs::write(config.web_url_file(), format!("{base_url}\n"))
                .with_context(|| format!("writing {}", config.web_url_file().display()))?;
            tracing::info!(url = %base_url, "the web server is listening");
            Some(base_url)
        }
        None => {
            let _ = std::fs::remove_file(config.web_url_file());
            tracing::info!("the web server is off (web_listen = off)");
            None
        }
    };
    let cli_listener = CliChannel::bind(&config.cli_socket())
        .with_context(|| format!("binding {}", config.cli_socket().display()))?;
    cli_channel.listen(cli_listener);
    let context = ChannelContext::new(router, arrival_tx);
    start_channels(&channels, &context, &tasks, &root);
    tasks.spawn(Arc::clone(&adapters).serve(context, tasks.clone(), root.clone()));
    for gate in [
        proxy_gate,
        supervisor.log_gate(),
        delivery_gate,
        cli_gate,
        adapters.log_gate(),
    ] {
        tasks.spawn(gate.run_flusher(root.clone()));
    }
    tracing::info!(data_dir = %data_dir.display(), install = %install_id, "crabpot is serving");

    shutdown_signal().await;
    tracing::info!("shutting down");
    // Every wait is bounded: a session's task stuck anywhere (a blocking open of a FIFO a
    // container planted) must not keep the host from stopping. What is still running at the
    // end is abandoned; `main` shuts the runtime down without waiting for it.
    let deadline = tokio::time::Instant::now() + SHUTDOWN_BUDGET;
    let budget = |cap: Duration| {
        deadline
            .saturating_duration_since(tokio::time::Instant::now())
            .min(cap)
    };
    if options.stop_containers_on_exit {
        bounded(
            "stopping containers",
            budget(Duration::from_secs(4)),
            supervisor.stop_all(),
        )
        .await;
    }
    root.cancel();
    tasks.close();
    bounded(
        "the host's tasks",
        budget(Duration::from_secs(5)),
        tasks.wait(),
    )
    .await;
    if options.stop_containers_on_exit {
        // A container whose start was in flight at the signal is running only now.
        bounded(
            "stopping containers",
            budget(Duration::from_secs(2)),
            supervisor.stop_all(),
        )
        .await;
    }
    let databases = tokio::task::spawn_blocking(move || {
        sessions.shutdown();
        central.shutdown();
    });
    bounded(
        "closing the databases",
        budget(Duration::from_secs(2)),
        databases,
    )
    .await;
    let _ = std::fs::remove_file(config.cli_socket());
    let _ = std::fs::remove_file(&adapters_socket);
    let _ = std::fs::remove_file(config.admin_socket());
    if web_url.is_some() {
        let _ = std::fs::remove_file(config.web_url_file());
    }
    Ok(())
}
