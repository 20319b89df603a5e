//! A start that panics (the recording runtime made to panic in `create`) is a failed start for
//! that session only: its slot is freed, the person is told once, and the next message starts
//! a fresh container.

use super::*;
use crate::db::DbThread;
use crate::proxy::Proxy;
use crate::runtime::{CallKind, ContainerLimits, ContainerRuntime, RecordingRuntime};
use crate::session::SessionStore;
use crate::supervisor::{Notice, SupervisorConfig, SupervisorParts};
use protocol::{AgentGroupId, InboundContent, NewInboundRow};
use std::time::Duration;
use tokio::sync::mpsc;

struct Harness {
    _dir: tempfile::TempDir,
    supervisor: Arc<Supervisor>,
    runtime: Arc<RecordingRuntime>,
    sessions: Arc<SessionStore>,
    notices: mpsc::UnboundedReceiver<Notice>,
    session: SessionRef,
}

fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crabpot.db");
    let central = Arc::new(DbThread::spawn("central", move || central::open(&path)).unwrap());
    central
        .call_blocking(|conn| central::ensure_agent_group(conn, "main", "Main").map(|_| ()))
        .unwrap();
    std::fs::create_dir_all(dir.path().join("groups/main")).unwrap();
    let sessions = SessionStore::start(dir.path().join("sessions"), None).unwrap();
    let runtime = Arc::new(RecordingRuntime::new());
    let (usage, _) = mpsc::unbounded_channel();
    let (out_changed, _) = mpsc::unbounded_channel();
    let (notice_tx, notices) = mpsc::unbounded_channel();
    let supervisor = Supervisor::new(
        SupervisorConfig {
            install_id: "t".into(),
            image: "img".into(),
            toolbox_image: "toolbox-img".into(),
            disk: DiskSettings::off("unit test"),
            limits: ContainerLimits::default(),
            max_containers: 1,
            groups_dir: dir.path().join("groups"),
            idle_timeout: Duration::from_secs(600),
            heartbeat_stale: Duration::from_secs(60),
            agent_log: "info".into(),
            wake_mode: WakeMode::Poll,
            session_config: protocol::SessionConfig::default(),
        },
        SupervisorParts {
            runtime: runtime.clone() as Arc<dyn ContainerRuntime>,
            sessions: Arc::clone(&sessions),
            central,
            proxy: Proxy::new(None, usage).unwrap(),
            tasks: tokio_util::task::TaskTracker::new(),
            shutdown: CancellationToken::new(),
            out_changed,
            notices: notice_tx,
        },
    );
    let session = SessionRef {
        id: SessionId::new("s1"),
        agent_group: AgentGroupId::new("main"),
        group_folder: "main".into(),
    };
    Harness {
        _dir: dir,
        supervisor,
        runtime,
        sessions,
        notices,
        session,
    }
}

impl Harness {
    async fn message(&self, text: &str) {
        let row = NewInboundRow::chat(&InboundContent {
            text: text.into(),
            ..Default::default()
        });
        self.sessions
            .with_inbound(&self.session, move |tx, _| {
                protocol::inbound::insert(tx, &row, None)?;
                Ok(())
            })
            .await
            .unwrap();
        self.supervisor.wake(&self.session);
    }

    async fn wait_for_state(&mut self, wanted: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.supervisor.container_state(&self.session.id) != wanted {
            if let (true, Ok(notice)) = (wanted == "running", self.notices.try_recv()) {
                panic!("the start failed: {}", notice.text);
            }
            assert!(
                Instant::now() < deadline,
                "the session is {:?}, not {wanted:?}",
                self.supervisor.container_state(&self.session.id)
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

#[tokio::test]
async fn a_panicking_start_frees_its_slot_tells_once_and_the_next_message_starts_afresh() {
    let mut h = harness();
    h.runtime.panic_next(CallKind::Create);
    h.message("hello").await;
    let notice = tokio::time::timeout(Duration::from_secs(10), h.notices.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(notice.text.contains("could not start"), "{}", notice.text);
    assert!(notice.text.contains("injected panic"), "{}", notice.text);
    assert_eq!(
        notice.finished.len(),
        1,
        "the waiting row is finished, not retried forever"
    );
    h.wait_for_state("none").await;
    assert_eq!(
        h.supervisor.status().starting,
        0,
        "no Starting slot is left behind"
    );

    h.message("again").await;
    h.wait_for_state("running").await;
    assert!(h.runtime.containers().iter().any(|c| c.running));
    assert!(h.notices.try_recv().is_err(), "the person was told once");
}

#[tokio::test]
async fn a_container_runs_as_its_sessions_owner() {
    let mut h = harness();
    h.message("hello").await;
    h.wait_for_state("running").await;
    let owner = h.sessions.owner(&h.session).await.unwrap();
    let user = h
        .runtime
        .calls()
        .into_iter()
        .find_map(|call| match call {
            crate::runtime::RuntimeCall::Create { spec } => Some(spec.user),
            _ => None,
        })
        .unwrap();
    assert_eq!(user, owner.user());
    // With quotas off, the first start made `outbound.db` (plain folders), once.
    let paths = h.sessions.paths(&h.session);
    assert!(paths.outbound_db().is_file());
    assert_eq!(disk::recorded(&paths), Some(Prepared::NoQuota));
}

#[tokio::test]
async fn a_panic_while_checking_containers_does_not_end_the_sweep() {
    let mut h = harness();
    h.message("hello").await;
    h.wait_for_state("running").await;
    h.runtime.panic_next(CallKind::ListByLabel);
    h.supervisor.check().await;
    // The next check runs normally: the container that exited meanwhile is noticed.
    let container = h.runtime.containers()[0].id.clone();
    h.runtime.exit(&container, 1);
    h.supervisor.check().await;
    assert!(
        !h.runtime.containers().iter().any(|c| c.id == container),
        "the exited container was reaped by the check after the panic"
    );
}

#[test]
fn the_container_env_holds_the_proxy_and_the_author_and_no_secret() {
    let env = super::container_env("info", "Ada Lovelace <ada@example.com>");
    let get = |key: &str| {
        env.iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.as_str())
    };
    assert_eq!(get("HTTPS_PROXY"), Some("http://127.0.0.1:3128"));
    assert_eq!(get("http_proxy"), Some("http://127.0.0.1:3128"));
    assert_eq!(get("NO_PROXY"), Some("localhost"));
    assert_eq!(get("GIT_AUTHOR_NAME"), Some("Ada Lovelace"));
    assert_eq!(get("GIT_COMMITTER_EMAIL"), Some("ada@example.com"));
    assert_eq!(get("RUST_LOG"), Some("info"));
    assert!(
        env.iter()
            .all(|(name, _)| !name.contains("KEY") && !name.contains("TOKEN")),
        "{env:?}"
    );
}
