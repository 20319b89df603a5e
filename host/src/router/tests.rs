//! Table-driven tests of the router's decision ([`plan::plan`]) over the combinations of
//! session mode, engage mode, unknown-sender policy and sender scope, accumulate or drop,
//! fan-out and dedup. Each case sets up a chat and its wirings, then feeds events in order
//! and checks where each went; [`check`] is the one helper.

use super::InboundEvent;
use super::plan::{self, PatternCache, PlanSettings};
use crate::db::central::wirings::{self, WiringSettings};
use crate::db::central::{
    self, EngageMode as E, IgnoredMessagePolicy as I, SenderScope as Scope, SessionMode as M,
    UnknownSenderPolicy as P, people,
};
use protocol::{AgentGroupId, Sender};
use rusqlite::Connection;

/// One wiring of the chat `cli/room` to group `a` or `b`.
#[derive(Clone, Copy)]
struct W {
    group: &'static str,
    mode: M,
    engage: E,
    pattern: Option<&'static str>,
    scope: Scope,
    ignored: I,
    priority: i64,
}

const fn w(group: &'static str, mode: M, engage: E) -> W {
    W {
        group,
        mode,
        engage,
        pattern: None,
        scope: Scope::All,
        ignored: I::Drop,
        priority: 0,
    }
}

impl W {
    const fn pattern(mut self, pattern: &'static str) -> Self {
        self.pattern = Some(pattern);
        self
    }
    const fn scope(mut self, scope: Scope) -> Self {
        self.scope = scope;
        self
    }
    const fn accumulate(mut self) -> Self {
        self.ignored = I::Accumulate;
        self
    }
    const fn priority(mut self, priority: i64) -> Self {
        self.priority = priority;
        self
    }
}

/// One incoming message: who (`kim` is a member of both groups, `olivia` the owner, anyone
/// else unknown), what, where.
#[derive(Clone, Copy)]
struct Ev {
    sender: &'static str,
    text: &'static str,
    thread: Option<&'static str>,
    mention: bool,
    id: &'static str,
}

const fn ev(sender: &'static str, text: &'static str) -> Ev {
    Ev {
        sender,
        text,
        thread: None,
        mention: false,
        id: "",
    }
}

impl Ev {
    const fn thread(mut self, thread: &'static str) -> Self {
        self.thread = Some(thread);
        self
    }
    const fn mention(mut self) -> Self {
        self.mention = true;
        self
    }
    /// A fixed platform message id (default: unique per step).
    const fn id(mut self, id: &'static str) -> Self {
        self.id = id;
        self
    }
}

/// Where a message should go: per target (group, trigger, session key), held approvals,
/// and fragments of the drop reasons.
struct Want {
    targets: Vec<(&'static str, bool, &'static str)>,
    held: usize,
    dropped: Vec<&'static str>,
}

fn to(targets: Vec<(&'static str, bool, &'static str)>) -> Want {
    Want {
        targets,
        held: 0,
        dropped: Vec::new(),
    }
}

fn dropped(dropped: Vec<&'static str>) -> Want {
    Want {
        targets: Vec::new(),
        held: 0,
        dropped,
    }
}

fn held() -> Want {
    Want {
        targets: Vec::new(),
        held: 1,
        dropped: Vec::new(),
    }
}

struct Case {
    name: &'static str,
    is_group: bool,
    policy: P,
    wirings: Vec<W>,
    steps: Vec<(Ev, Want)>,
}

fn setup(case: &Case) -> (tempfile::TempDir, Connection) {
    let dir = tempfile::tempdir().unwrap();
    let conn = central::open(&dir.path().join("crabpot.db")).unwrap();
    for group in ["a", "b"] {
        central::ensure_agent_group(&conn, group, group).unwrap();
    }
    people::create_user(&conn, "cli:olivia", None, Some(("cli", "dm:olivia"))).unwrap();
    people::grant_role(&conn, "cli:olivia", people::Role::Owner, None).unwrap();
    for group in ["a", "b"] {
        people::add_member(&conn, &AgentGroupId::new(group), "cli:kim").unwrap();
    }
    let (chat, _) =
        central::ensure_messaging_group(&conn, "cli", "room", "room", case.is_group).unwrap();
    central::chats::update_chat(
        &conn,
        &chat.id,
        &central::chats::ChatChanges {
            unknown_sender_policy: Some(case.policy),
            ..Default::default()
        },
    )
    .unwrap();
    for wiring in &case.wirings {
        let settings = WiringSettings {
            session_mode: Some(wiring.mode),
            engage_mode: Some(wiring.engage),
            engage_pattern: wiring.pattern.map(str::to_owned),
            sender_scope: Some(wiring.scope),
            ignored_message_policy: Some(wiring.ignored),
            priority: Some(wiring.priority),
        };
        wirings::create_wiring(
            &conn,
            &chat,
            &AgentGroupId::new(wiring.group),
            &settings,
            None,
        )
        .unwrap();
    }
    (dir, conn)
}

fn check(case: &Case) {
    let (_dir, mut conn) = setup(case);
    let mut patterns = PatternCache::default();
    for (index, (ev, want)) in case.steps.iter().enumerate() {
        let event = InboundEvent {
            channel_type: "cli".into(),
            platform_id: "room".into(),
            thread_id: ev.thread.map(str::to_owned),
            platform_message_id: if ev.id.is_empty() {
                format!("p{index}")
            } else {
                ev.id.to_owned()
            },
            sender: Sender {
                id: format!("cli:{}", ev.sender),
                name: None,
            },
            text: ev.text.into(),
            attachments: Vec::new(),
            is_mention: ev.mention,
            is_group: case.is_group,
            chat_name: None,
            uploads: Vec::new(),
        };
        let at = format!("{}, step {index}", case.name);
        let plan = plan::plan(&mut conn, &event, PlanSettings::default(), &mut patterns).unwrap();
        let got: Vec<(String, bool, String)> = plan
            .targets
            .iter()
            .map(|t| {
                let session = central::session(&conn, &t.session.id).unwrap();
                (
                    t.session.agent_group.to_string(),
                    t.trigger,
                    session.session_key,
                )
            })
            .collect();
        assert_eq!(got.len(), want.targets.len(), "{at}: targets {got:?}");
        for ((group, trigger, key), (want_group, want_trigger, want_key)) in
            got.iter().zip(&want.targets)
        {
            assert_eq!(group, want_group, "{at}: {got:?}");
            assert_eq!(trigger, want_trigger, "{at}: {got:?}");
            let key = key
                .split(':')
                .filter(|part| !part.starts_with("mg-"))
                .collect::<Vec<_>>();
            assert_eq!(key.join(":"), *want_key, "{at}: {got:?}");
        }
        assert_eq!(plan.held.len(), want.held, "{at}: held {:?}", plan.held);
        assert_eq!(
            plan.dropped.len(),
            want.dropped.len(),
            "{at}: dropped {:?}",
            plan.dropped
        );
        for (reason, fragment) in plan.dropped.iter().zip(&want.dropped) {
            assert!(
                reason.contains(fragment),
                "{at}: {reason:?} lacks {fragment:?}"
            );
        }
    }
}

#[test]
fn session_modes() {
    let cases = [
        Case {
            name: "shared direct chat",
            is_group: false,
            policy: P::Public,
            wirings: vec![w("a", M::Shared, E::Mention)],
            steps: vec![
                (ev("kim", "hi"), to(vec![("a", true, "chat")])),
                (
                    ev("kim", "again").thread("t1"),
                    to(vec![("a", true, "chat")]),
                ),
            ],
        },
        Case {
            name: "threaded group chat is forced to per-thread",
            is_group: true,
            policy: P::Public,
            wirings: vec![w("a", M::Shared, E::Mention)],
            steps: vec![
                (ev("kim", "hi").mention(), to(vec![("a", true, "chat")])),
                (
                    ev("kim", "hi").mention().thread("t1"),
                    to(vec![("a", true, "thread:t1")]),
                ),
                (
                    ev("kim", "hi").mention().thread("t2"),
                    to(vec![("a", true, "thread:t2")]),
                ),
            ],
        },
        Case {
            name: "per-thread",
            is_group: true,
            policy: P::Public,
            wirings: vec![w("a", M::PerThread, E::Mention)],
            steps: vec![
                (
                    ev("kim", "x").mention().thread("t1"),
                    to(vec![("a", true, "thread:t1")]),
                ),
                (ev("kim", "x").mention(), to(vec![("a", true, "thread:")])),
            ],
        },
        Case {
            name: "agent-shared is not forced per thread",
            is_group: true,
            policy: P::Public,
            wirings: vec![w("a", M::AgentShared, E::Mention)],
            steps: vec![
                (
                    ev("kim", "x").mention().thread("t1"),
                    to(vec![("a", true, "agent")]),
                ),
                (ev("kim", "y").mention(), to(vec![("a", true, "agent")])),
            ],
        },
    ];
    for case in &cases {
        check(case);
    }
}

#[test]
fn engage_modes() {
    let cases = [
        Case {
            name: "pattern",
            is_group: true,
            policy: P::Public,
            wirings: vec![w("a", M::Shared, E::Pattern).pattern("(?i)^hey crab")],
            steps: vec![
                (ev("kim", "Hey crab, hi"), to(vec![("a", true, "chat")])),
                (
                    ev("kim", "hello").mention(),
                    dropped(vec!["a: did not engage"]),
                ),
            ],
        },
        Case {
            name: "mention in a group chat; every DM message counts as a mention",
            is_group: true,
            policy: P::Public,
            wirings: vec![w("a", M::Shared, E::Mention)],
            steps: vec![
                (ev("kim", "no mention"), dropped(vec!["did not engage"])),
                (ev("kim", "@crab").mention(), to(vec![("a", true, "chat")])),
            ],
        },
        Case {
            name: "mention in a direct chat",
            is_group: false,
            policy: P::Public,
            wirings: vec![w("a", M::Shared, E::Mention)],
            steps: vec![(
                ev("kim", "no mention needed"),
                to(vec![("a", true, "chat")]),
            )],
        },
        Case {
            name: "mention-sticky keeps listening in the mentioned thread only",
            is_group: true,
            policy: P::Public,
            wirings: vec![w("a", M::Shared, E::MentionSticky)],
            steps: vec![
                (
                    ev("kim", "before").thread("t1"),
                    dropped(vec!["did not engage"]),
                ),
                (
                    ev("kim", "@crab").mention().thread("t1"),
                    to(vec![("a", true, "thread:t1")]),
                ),
                (
                    ev("kim", "follow-up").thread("t1"),
                    to(vec![("a", true, "thread:t1")]),
                ),
                (
                    ev("kim", "other thread").thread("t2"),
                    dropped(vec!["did not engage"]),
                ),
                (ev("kim", "no thread"), dropped(vec!["did not engage"])),
            ],
        },
        Case {
            name: "plain mention is not sticky",
            is_group: true,
            policy: P::Public,
            wirings: vec![w("a", M::Shared, E::Mention)],
            steps: vec![
                (
                    ev("kim", "@crab").mention().thread("t1"),
                    to(vec![("a", true, "thread:t1")]),
                ),
                (
                    ev("kim", "follow-up").thread("t1"),
                    dropped(vec!["did not engage"]),
                ),
            ],
        },
    ];
    for case in &cases {
        check(case);
    }
}

#[test]
fn sender_policy_and_scope() {
    let mention = w("a", M::Shared, E::Mention);
    let cases = [
        Case {
            name: "public, scope all: anyone",
            is_group: true,
            policy: P::Public,
            wirings: vec![mention],
            steps: vec![(
                ev("stranger", "@crab").mention(),
                to(vec![("a", true, "chat")]),
            )],
        },
        Case {
            name: "public, scope known: members and roles only",
            is_group: true,
            policy: P::Public,
            wirings: vec![mention.scope(Scope::Known)],
            steps: vec![
                (
                    ev("stranger", "@crab").mention(),
                    dropped(vec!["wiring accepts known senders only"]),
                ),
                (ev("kim", "@crab").mention(), to(vec![("a", true, "chat")])),
                (
                    ev("olivia", "@crab").mention(),
                    to(vec![("a", true, "chat")]),
                ),
            ],
        },
        Case {
            name: "strict: unknown senders are dropped",
            is_group: true,
            policy: P::Strict,
            wirings: vec![mention],
            steps: vec![
                (
                    ev("stranger", "@crab").mention(),
                    dropped(vec!["chat policy strict"]),
                ),
                (ev("kim", "@crab").mention(), to(vec![("a", true, "chat")])),
            ],
        },
        Case {
            name: "request_approval: held once per sender, repeats ride along",
            is_group: true,
            policy: P::RequestApproval,
            wirings: vec![mention],
            steps: vec![
                (ev("stranger", "@crab let me in").mention(), held()),
                (ev("stranger", "@crab please").mention(), held()),
                (
                    ev("stranger", "not engaging"),
                    dropped(vec!["did not engage, so no approval was asked"]),
                ),
                (ev("kim", "@crab").mention(), to(vec![("a", true, "chat")])),
            ],
        },
    ];
    for case in &cases {
        check(case);
    }
}

#[test]
fn accumulate_drop_fan_out_and_dedup() {
    let cases = [
        Case {
            name: "accumulate stores context rows, drop does not",
            is_group: true,
            policy: P::Public,
            wirings: vec![
                w("a", M::Shared, E::Mention).accumulate(),
                w("b", M::Shared, E::Mention),
            ],
            steps: vec![
                (
                    ev("kim", "chatter"),
                    Want {
                        targets: vec![("a", false, "chat")],
                        held: 0,
                        dropped: vec!["b: did not engage"],
                    },
                ),
                (
                    ev("kim", "@crab").mention(),
                    to(vec![("a", true, "chat"), ("b", true, "chat")]),
                ),
            ],
        },
        Case {
            name: "fan-out in priority order",
            is_group: true,
            policy: P::Public,
            wirings: vec![
                w("a", M::Shared, E::Pattern).pattern(".*").priority(1),
                w("b", M::AgentShared, E::Pattern)
                    .pattern("crab")
                    .priority(5),
            ],
            steps: vec![
                (
                    ev("kim", "crab"),
                    to(vec![("b", true, "agent"), ("a", true, "chat")]),
                ),
                (
                    ev("kim", "lobster"),
                    Want {
                        targets: vec![("a", true, "chat")],
                        held: 0,
                        dropped: vec!["b: did not engage"],
                    },
                ),
            ],
        },
        Case {
            name: "a platform message id is stored once per agent group",
            is_group: false,
            policy: P::Public,
            wirings: vec![w("a", M::Shared, E::Mention), w("b", M::Shared, E::Mention)],
            steps: vec![
                (
                    ev("kim", "once").id("same"),
                    to(vec![("a", true, "chat"), ("b", true, "chat")]),
                ),
                (ev("kim", "once").id("same"), to(vec![])),
                (
                    ev("kim", "other").id("next"),
                    to(vec![("a", true, "chat"), ("b", true, "chat")]),
                ),
            ],
        },
        Case {
            name: "unknown sender under a strict policy is not accumulated",
            is_group: true,
            policy: P::Strict,
            wirings: vec![w("a", M::Shared, E::Mention).accumulate()],
            steps: vec![(
                ev("stranger", "chatter"),
                dropped(vec!["chat policy strict"]),
            )],
        },
    ];
    for case in &cases {
        check(case);
    }
}

#[test]
fn unwired_chats_ask_for_registration_on_a_mention() {
    check(&Case {
        name: "unwired group chat",
        is_group: true,
        policy: P::Public,
        wirings: Vec::new(),
        steps: vec![
            (ev("kim", "chatter"), dropped(vec!["not wired"])),
            (ev("kim", "@crab").mention(), held()),
            (ev("kim", "@crab again").mention(), held()),
        ],
    });
    check(&Case {
        name: "unwired direct chat",
        is_group: false,
        policy: P::Public,
        wirings: Vec::new(),
        steps: vec![(ev("kim", "hello?"), held())],
    });
}

#[test]
fn drops_are_recorded_with_reason_chat_sender_and_counts() {
    let case = Case {
        name: "drops",
        is_group: true,
        policy: P::Strict,
        wirings: vec![w("a", M::Shared, E::Mention)],
        steps: Vec::new(),
    };
    let (_dir, mut conn) = setup(&case);
    let mut patterns = PatternCache::default();
    for id in ["x1", "x2", "x3"] {
        let event = InboundEvent {
            channel_type: "cli".into(),
            platform_id: "room".into(),
            thread_id: None,
            platform_message_id: id.into(),
            sender: Sender {
                id: "cli:stranger".into(),
                name: None,
            },
            text: "@crab".into(),
            attachments: Vec::new(),
            is_mention: true,
            is_group: true,
            chat_name: None,
            uploads: Vec::new(),
        };
        plan::plan(&mut conn, &event, PlanSettings::default(), &mut patterns).unwrap();
    }
    let drops = central::drops::list_drops(&conn, 10).unwrap();
    assert_eq!(drops.len(), 1, "{drops:?}");
    let drop = &drops[0];
    assert_eq!(drop.direction, "inbound");
    assert!(drop.reason.contains("strict"), "{drop:?}");
    assert_eq!(drop.chat.as_deref(), Some("cli/room"));
    assert_eq!(drop.sender.as_deref(), Some("cli:stranger"));
    assert_eq!(drop.agent_group_id.as_deref(), Some("a"));
    assert_eq!(drop.count, 3);
    assert!(drop.first_seen <= drop.last_seen);
    assert_eq!(drop.message_id.as_deref(), Some("x3"));
}

#[test]
fn approval_requests_reach_the_approver_dm_and_record_what_they_are_for() {
    let case = Case {
        name: "approval",
        is_group: true,
        policy: P::RequestApproval,
        wirings: vec![w("a", M::Shared, E::Mention)],
        steps: Vec::new(),
    };
    let (_dir, mut conn) = setup(&case);
    let event = InboundEvent {
        channel_type: "cli".into(),
        platform_id: "room".into(),
        thread_id: None,
        platform_message_id: "m1".into(),
        sender: Sender {
            id: "cli:sam".into(),
            name: Some("Sam".into()),
        },
        text: "@crab hello".into(),
        attachments: Vec::new(),
        is_mention: true,
        is_group: true,
        chat_name: None,
        uploads: Vec::new(),
    };
    let plan = plan::plan(
        &mut conn,
        &event,
        PlanSettings::default(),
        &mut PatternCache::default(),
    )
    .unwrap();
    assert_eq!(plan.held.len(), 1);
    assert_eq!(plan.notifications.len(), 1);
    let note = &plan.notifications[0];
    assert_eq!(note.to.platform_id, "dm:olivia");
    assert!(
        note.text.contains(&plan.held[0]) && note.text.contains("cli:sam"),
        "{note:?}"
    );
    // Where the platform has buttons, they are the replies the text asks for.
    let answers: Vec<&str> = note.buttons.iter().map(|b| b.answer.as_str()).collect();
    assert_eq!(
        answers,
        [
            format!("approve {}", plan.held[0]),
            format!("deny {}", plan.held[0])
        ]
    );
    // The sender is now a user, with their display name; a group chat is nobody's DM.
    assert_eq!(central::people::user(&conn, "cli:sam").unwrap().name, "Sam");
    assert!(
        central::people::dms_of(&conn, "cli:sam")
            .unwrap()
            .is_empty()
    );
    let approval = central::approvals::approval(&conn, &plan.held[0]).unwrap();
    assert_eq!(approval.approvers, ["cli:olivia"]);
    assert_eq!(
        approval.agent_group_id.as_ref().map(|g| g.as_str()),
        Some("a")
    );
    assert!(approval.expires_at > approval.created_at);
    assert!(approval.summary.contains("agent group a"), "{approval:?}");
    assert_eq!(approval.held.len(), 1);
}

/// A whole router over a real central DB and session store, with a recording container
/// runtime: decisions, replays and context rows, end to end inside the host.
mod routing {
    use super::super::approvals::{DecideError, Decider, Decision};
    use super::super::{Router, RouterParts};
    use super::*;
    use crate::db::DbThread;
    use crate::edge::HostMessage;
    use crate::proxy::Proxy;
    use crate::runtime::{ContainerLimits, RecordingRuntime};
    use crate::session::{SessionRef, SessionStore};
    use crate::supervisor::{Supervisor, SupervisorConfig, SupervisorParts};
    use std::sync::Arc;
    use std::time::Duration;
    use tokio::sync::mpsc;

    struct Harness {
        _dir: tempfile::TempDir,
        central: Arc<DbThread<Connection>>,
        sessions: Arc<SessionStore>,
        router: Arc<Router>,
        runtime: Arc<RecordingRuntime>,
        host_messages: mpsc::UnboundedReceiver<HostMessage>,
    }

    fn harness(setup: impl FnOnce(&Connection) + Send + 'static) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("crabpot.db");
        let central = Arc::new(DbThread::spawn("central", move || central::open(&path)).unwrap());
        central
            .call_blocking(move |conn| {
                setup(conn);
                Ok(())
            })
            .unwrap();
        for group in ["a", "b"] {
            std::fs::create_dir_all(dir.path().join("groups").join(group)).unwrap();
        }
        let sessions = SessionStore::start(dir.path().join("sessions"), None).unwrap();
        let runtime = Arc::new(RecordingRuntime::new());
        let (usage, _) = mpsc::unbounded_channel();
        let (out_changed, _) = mpsc::unbounded_channel();
        let (notices, _) = mpsc::unbounded_channel();
        let supervisor = Supervisor::new(
            SupervisorConfig {
                install_id: "t".into(),
                image: "img".into(),
                toolbox_image: "toolbox-img".into(),
                disk: crate::supervisor::DiskSettings::off("unit test"),
                limits: ContainerLimits {
                    memory_bytes: 64 << 20,
                    nano_cpus: 1_000_000_000,
                    pids_limit: 64,
                    tmpfs_tmp_bytes: 1 << 20,
                },
                max_containers: 4,
                groups_dir: dir.path().join("groups"),
                idle_timeout: Duration::from_secs(600),
                heartbeat_stale: Duration::from_secs(60),
                agent_log: "info".into(),
                wake_mode: crate::config::WakeMode::Events,
                session_config: protocol::SessionConfig::default(),
            },
            SupervisorParts {
                runtime: runtime.clone(),
                sessions: Arc::clone(&sessions),
                central: Arc::clone(&central),
                proxy: Proxy::new(None, usage).unwrap(),
                tasks: tokio_util::task::TaskTracker::new(),
                shutdown: tokio_util::sync::CancellationToken::new(),
                out_changed,
                notices,
            },
        );
        let router = Router::with_parts(RouterParts {
            central: Arc::clone(&central),
            sessions: Arc::clone(&sessions),
            supervisor,
            session_config: protocol::SessionConfig::default(),
            settings: PlanSettings::default(),
            groups_dir: dir.path().join("groups"),
        });
        let host_messages = router.take_host_messages().unwrap();
        assert!(router.take_host_messages().is_none());
        Harness {
            _dir: dir,
            central,
            sessions,
            router,
            runtime,
            host_messages,
        }
    }

    fn event(sender: &str, chat: &str, is_group: bool, text: &str) -> InboundEvent {
        InboundEvent {
            channel_type: "cli".into(),
            platform_id: chat.into(),
            thread_id: None,
            platform_message_id: format!("p-{}", uuid::Uuid::new_v4().simple()),
            sender: Sender {
                id: format!("cli:{sender}"),
                name: None,
            },
            text: text.into(),
            attachments: Vec::new(),
            is_mention: true,
            is_group,
            chat_name: None,
            uploads: Vec::new(),
        }
    }

    /// The rows of a session's inbound.db: (kind, trigger, text, sender id).
    async fn rows(h: &Harness, session: &SessionRef) -> Vec<(String, bool, String, String)> {
        h.sessions
            .with_inbound(session, |tx, _| {
                Ok(protocol::inbound::rows_after(tx, protocol::Seq(-1))?
                    .into_iter()
                    .map(|row| {
                        let content: protocol::InboundContent =
                            serde_json::from_str(&row.content).unwrap();
                        (
                            row.kind.to_string(),
                            row.trigger,
                            content.text,
                            content.sender.map(|s| s.id).unwrap_or_default(),
                        )
                    })
                    .collect())
            })
            .await
            .unwrap()
    }

    fn room_setup(policy: P, ignored: I) -> impl FnOnce(&Connection) + Send + 'static {
        move |conn| {
            central::ensure_agent_group(conn, "a", "A").unwrap();
            people::create_user(conn, "cli:olivia", None, Some(("cli", "dm:olivia"))).unwrap();
            people::grant_role(conn, "cli:olivia", people::Role::Owner, None).unwrap();
            people::create_user(conn, "cli:mallory", None, Some(("cli", "dm:mallory"))).unwrap();
            people::add_member(conn, &AgentGroupId::new("a"), "cli:mallory").unwrap();
            let chat = central::chats::create_chat(
                conn,
                &central::chats::NewChat {
                    channel_type: "cli".into(),
                    platform_id: "room".into(),
                    name: None,
                    is_group: true,
                    unknown_sender_policy: Some(policy),
                },
            )
            .unwrap();
            let settings = WiringSettings {
                ignored_message_policy: Some(ignored),
                ..Default::default()
            };
            wirings::create_wiring(conn, &chat, &AgentGroupId::new("a"), &settings, None).unwrap();
        }
    }

    #[tokio::test]
    async fn the_wrong_approver_is_refused_and_logged_the_right_one_replays_the_held_message() {
        let mut h = harness(room_setup(P::RequestApproval, I::Drop));
        let held = h
            .router
            .route_event(event("sam", "room", true, "@crab let me in"))
            .await
            .unwrap();
        assert!(held.routed.is_empty() && held.held.len() == 1, "{held:?}");
        let id = held.held[0].clone();
        let asked = h.host_messages.recv().await.unwrap();
        assert_eq!(asked.to.platform_id, "dm:olivia");
        assert!(asked.text.contains(&format!("approve {id}")), "{asked:?}");
        assert!(
            h.runtime.calls().is_empty(),
            "nothing runs for a held message"
        );

        // A member who is not an approver, in their DM: refused, answered, logged.
        let wrong = h
            .router
            .route_event(event(
                "mallory",
                "dm:mallory",
                false,
                &format!("approve {id}"),
            ))
            .await
            .unwrap();
        let answer = wrong.decision.unwrap();
        assert!(answer.contains("may not decide"), "{answer}");
        let told = h.host_messages.recv().await.unwrap();
        assert_eq!(told.to.platform_id, "dm:mallory");
        // Through the API on mallory's behalf: refused too.
        let api = h
            .router
            .decide(
                &id,
                Decider::User("cli:mallory".into()),
                Decision::Approve { agent_group: None },
            )
            .await;
        assert!(matches!(api, Err(DecideError::Refused(_))), "{api:?}");
        let log_id = id.clone();
        let (status, log) = h
            .central
            .call(move |conn| {
                Ok((
                    central::approvals::approval(conn, &log_id)?.status,
                    central::approvals::log_entries(conn, &log_id)?,
                ))
            })
            .await
            .unwrap();
        assert_eq!(status, central::ApprovalStatus::Pending);
        assert_eq!(log.len(), 2, "{log:?}");
        assert!(
            log.iter()
                .all(|e| e.actor == "cli:mallory" && e.outcome.starts_with("refused"))
        );

        // The owner, in their DM: approved; sam is a member; the message is replayed.
        let right = h
            .router
            .route_event(event(
                "olivia",
                "dm:olivia",
                false,
                &format!("approve {id}"),
            ))
            .await
            .unwrap();
        assert!(right.decision.unwrap().contains("approved"));
        let sessions = h
            .central
            .call(|conn| {
                assert!(people::is_known(conn, "cli:sam", &AgentGroupId::new("a"))?);
                central::sessions::list_sessions(conn, None)
            })
            .await
            .unwrap();
        assert_eq!(sessions.len(), 1, "{sessions:?}");
        let session = SessionRef {
            id: sessions[0].id.clone(),
            agent_group: AgentGroupId::new("a"),
            group_folder: "a".into(),
        };
        assert_eq!(
            rows(&h, &session).await,
            [(
                "chat".to_owned(),
                true,
                "@crab let me in".to_owned(),
                "cli:sam".to_owned()
            )]
        );
        // Decided once: a second decision is refused.
        let again = h
            .router
            .decide(&id, Decider::Operator, Decision::Deny { reason: None })
            .await;
        assert!(
            matches!(again, Err(DecideError::Refused(ref m)) if m.contains("already approved"))
        );
        // Now known, sam goes straight through.
        let direct = h
            .router
            .route(event("sam", "room", true, "@crab thanks"))
            .await
            .unwrap();
        assert_eq!(direct.len(), 1);
    }

    #[tokio::test]
    async fn deny_drops_the_held_messages_and_an_expired_approval_is_refused() {
        let h = harness(room_setup(P::RequestApproval, I::Drop));
        let first = h
            .router
            .route_event(event("eve", "room", true, "@crab hi"))
            .await
            .unwrap();
        let denied = h
            .router
            .decide(
                &first.held[0],
                Decider::User("cli:olivia".into()),
                Decision::Deny {
                    reason: Some("spam".into()),
                },
            )
            .await
            .unwrap();
        assert_eq!(denied.status, central::ApprovalStatus::Denied);
        // A denied sender is not asked about again.
        let later = h
            .router
            .route_event(event("eve", "room", true, "@crab hi?"))
            .await
            .unwrap();
        assert!(
            later.held.is_empty() && later.routed.is_empty(),
            "{later:?}"
        );
        assert!(later.dropped[0].contains("denied"), "{later:?}");

        let second = h
            .router
            .route_event(event("zed", "room", true, "@crab yo"))
            .await
            .unwrap();
        let id = second.held[0].clone();
        let expire = id.clone();
        h.central
            .call(move |conn| {
                conn.execute(
                    "UPDATE approvals SET expires_at = 0 WHERE id = ?1",
                    [&expire],
                )?;
                Ok(())
            })
            .await
            .unwrap();
        let expired = h
            .router
            .decide(
                &id,
                Decider::Operator,
                Decision::Approve { agent_group: None },
            )
            .await;
        assert!(
            matches!(expired, Err(DecideError::Refused(ref m)) if m.contains("expired")),
            "{expired:?}"
        );
        let drops = h
            .central
            .call(|conn| central::drops::list_drops(conn, 10))
            .await
            .unwrap();
        assert!(
            drops
                .iter()
                .any(|d| d.reason == "denied by an approver"
                    && d.sender.as_deref() == Some("cli:eve")),
            "{drops:?}"
        );
        let missing = h
            .router
            .decide(
                "ap-0000000000",
                Decider::Operator,
                Decision::Deny { reason: None },
            )
            .await;
        assert!(matches!(missing, Err(DecideError::NotFound(_))));
    }

    #[tokio::test]
    async fn accumulated_rows_are_context_only_and_wake_nothing() {
        let h = harness(room_setup(P::Public, I::Accumulate));
        let chatter = h
            .router
            .route_event(event("kim", "room", true, "chatter"))
            .await
            .unwrap();
        let mut quiet = event("kim", "room", true, "still chatting");
        quiet.is_mention = false;
        let quiet = h.router.route_event(quiet).await.unwrap();
        assert_eq!(quiet.routed.len(), 1);
        assert!(!quiet.routed[0].trigger);
        let session = quiet.routed[0].session.clone();
        let texts = rows(&h, &session).await;
        assert_eq!(texts.len(), 2, "{texts:?}");
        assert!(chatter.routed[0].trigger && !texts[1].1, "{texts:?}");
    }

    #[tokio::test]
    async fn registration_wires_the_chat_to_the_chosen_group_and_replays() {
        let h = harness(|conn| {
            central::ensure_agent_group(conn, "a", "A").unwrap();
        });
        let held = h
            .router
            .route_event(event("kim", "new-room", true, "@crab hi"))
            .await
            .unwrap();
        let id = held.held[0].clone();
        let no_group = h
            .router
            .decide(
                &id,
                Decider::Operator,
                Decision::Approve { agent_group: None },
            )
            .await;
        assert!(
            matches!(no_group, Err(DecideError::Invalid(_))),
            "{no_group:?}"
        );
        let bad_group = h
            .router
            .decide(
                &id,
                Decider::Operator,
                Decision::Approve {
                    agent_group: Some(AgentGroupId::new("nope")),
                },
            )
            .await;
        assert!(
            matches!(bad_group, Err(DecideError::Invalid(_))),
            "{bad_group:?}"
        );
        h.router
            .decide(
                &id,
                Decider::Operator,
                Decision::Approve {
                    agent_group: Some(AgentGroupId::new("a")),
                },
            )
            .await
            .unwrap();
        let (wirings, destinations, sessions) = h
            .central
            .call(|conn| {
                Ok((
                    wirings::list_wirings(conn, None, None)?,
                    central::destinations_for(conn, &AgentGroupId::new("a"))?,
                    central::sessions::list_sessions(conn, None)?,
                ))
            })
            .await
            .unwrap();
        assert_eq!(wirings.len(), 1);
        assert_eq!(destinations[0].platform_id.as_deref(), Some("new-room"));
        assert_eq!(sessions.len(), 1, "the held message was replayed");
    }
}
