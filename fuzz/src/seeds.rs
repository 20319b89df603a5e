//! The seed corpus of every target, built with the real writers where there is one: a real
//! `outbound.db` written by `protocol::schema::create_outbound`, `open_outbound_writer` and
//! `protocol::outbound::insert`, outbound content from `OutboundContent::to_json` and
//! `Action::to_content`, cli lines from `ClientLine`, and hand-written HTTP requests and admin
//! bodies for the verbs of `host/src/admin/`.
//!
//! [`write_all`] writes them to `<dir>/<target>/seed-NN`; `make fuzz` runs it (through the
//! `seed_corpus` binary) into the working corpus before fuzzing.

use host::channels::cli::ClientLine;
use protocol::actions::{CreateAgent, ScheduleTask, UpdateTask};
use protocol::schedule::{Recurrence, Schedule};
use protocol::{
    AckStatus, Action, MessageContent, MessageId, NewOutboundRow, OutboundContent, OutboundKind,
    ProgressItem, Seq,
};
use std::path::Path;

/// Why the seeds could not be written. Not retryable: the folder or SQLite is unusable.
#[derive(Debug)]
pub enum SeedError {
    Io(std::io::Error),
    Schema(protocol::SchemaError),
    Sqlite(rusqlite::Error),
}

impl std::fmt::Display for SeedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SeedError::Io(e) => write!(f, "writing a seed: {e}"),
            SeedError::Schema(e) => write!(f, "creating a seed outbound.db: {e}"),
            SeedError::Sqlite(e) => write!(f, "filling a seed outbound.db: {e}"),
        }
    }
}

impl std::error::Error for SeedError {}

impl From<std::io::Error> for SeedError {
    fn from(e: std::io::Error) -> Self {
        SeedError::Io(e)
    }
}
impl From<protocol::SchemaError> for SeedError {
    fn from(e: protocol::SchemaError) -> Self {
        SeedError::Schema(e)
    }
}
impl From<rusqlite::Error> for SeedError {
    fn from(e: rusqlite::Error) -> Self {
        SeedError::Sqlite(e)
    }
}

/// Writes every target's seeds under `dir`; returns how many each got.
pub fn write_all(dir: &Path) -> Result<Vec<(&'static str, usize)>, SeedError> {
    let all: [(&'static str, Vec<Vec<u8>>); 7] = [
        ("outbound_reader", outbound_files()?),
        ("outbound_content", to_bytes(outbound_contents())),
        ("cli_line", to_bytes(cli_lines())),
        ("proxy_request", to_bytes(proxy_requests())),
        ("admin_request", to_bytes(admin_bodies())),
        ("live_event", to_bytes(live_events())),
        ("platform_event", to_bytes(platform_events())),
    ];
    let mut written = Vec::new();
    for (target, seeds) in all {
        let folder = dir.join(target);
        std::fs::create_dir_all(&folder)?;
        for (index, seed) in seeds.iter().enumerate() {
            std::fs::write(folder.join(format!("seed-{index:02}")), seed)?;
        }
        written.push((target, seeds.len()));
    }
    Ok(written)
}

/// What the platforms send: Telegram updates, Slack bodies and events, Discord payloads,
/// and button data.
fn platform_events() -> Vec<String> {
    vec![
        r#"{"update_id":100,"message":{"message_id":7,"date":1,"chat":{"id":42,"type":"private","first_name":"Ann"},"from":{"id":42,"is_bot":false,"first_name":"Ann","last_name":"Lee"},"text":"hello"}}"#.into(),
        r#"{"update_id":101,"message":{"message_id":8,"date":1,"message_thread_id":3,"is_topic_message":true,"chat":{"id":-1007,"type":"supergroup","title":"Room","is_forum":true},"from":{"id":43,"is_bot":false,"first_name":"Bob"},"text":"@crabbot hi é","entities":[{"type":"mention","offset":0,"length":8}]}}"#.into(),
        r#"{"update_id":102,"message":{"message_id":9,"date":1,"chat":{"id":-5,"type":"group","title":"G"},"from":{"id":44,"is_bot":false,"first_name":"C"},"caption":"doc","document":{"file_id":"F1","file_unique_id":"U1","file_name":"../a.txt","file_size":3},"reply_to_message":{"message_id":2,"date":1,"chat":{"id":-5,"type":"group"},"from":{"id":4242,"is_bot":true,"first_name":"crab"}}}}"#.into(),
        r#"{"update_id":103,"callback_query":{"id":"cb1","from":{"id":42,"is_bot":false,"first_name":"Ann"},"message":{"message_id":7,"date":1,"chat":{"id":42,"type":"private"}},"data":"q:2|q-abc"}}"#.into(),
        r#"{"token":"x","team_id":"T1","api_app_id":"A1","type":"event_callback","event_id":"Ev1","event_time":1,"event":{"type":"message","channel":"D1","channel_type":"im","user":"U1","text":"hi <@UBOT>","ts":"1.000100"}}"#.into(),
        r#"{"type":"app_mention","channel":"C1","user":"U2","text":"<@UBOT|crab> look","ts":"2.0","thread_ts":"1.0","files":[{"id":"F1","name":"a.png","size":4,"url_private_download":"https://files.slack.com/x"}]}"#.into(),
        r#"{"type":"url_verification","challenge":"abc","token":"t"}"#.into(),
        r#"{"id":"11","channel_id":"22","guild_id":"33","author":{"id":"44","username":"ann","global_name":"Ann"},"member":{"nick":"A"},"content":"<@4242> hi","mentions":[{"id":"4242","username":"crab"}],"attachments":[{"id":"1","filename":"a.txt","size":3,"url":"https://cdn.discordapp.com/a.txt"}],"type":0}"#.into(),
        r#"{"id":"12","channel_id":"23","author":{"id":"45","username":"bob"},"content":"dm","type":0}"#.into(),
        r#"{"id":"99","type":3,"token":"tok","channel_id":"22","member":{"user":{"id":"44","username":"ann"}},"data":{"custom_id":"q:q-9:2","component_type":2},"message":{"id":"11","channel_id":"22"}}"#.into(),
        "t:approve ap-1".into(),
        "k:0123456789abcdef0123456789abcdef".into(),
        "<@UBOT".into(),
    ]
}

/// Bodies of `POST /crabpot/v1/live`: each event, and the edges of the caps.
fn live_events() -> Vec<String> {
    vec![
        r#"{"event":"turn_started","in_reply_to":"m-1"}"#.into(),
        r#"{"event":"draft","in_reply_to":"m-1","offset":0,"text":"Hel"}"#.into(),
        r#"{"event":"draft","in_reply_to":"m-1","offset":3,"text":"lo \u00e9"}"#.into(),
        r#"{"event":"draft_reset","in_reply_to":"m-1"}"#.into(),
        r#"{"event":"draft","in_reply_to":"../x","offset":0,"text":"a"}"#.into(),
        r#"{"event":"draft","in_reply_to":"m-1","offset":65535,"text":"ab"}"#.into(),
        r#"{"event":"draft","in_reply_to":"m-1","offset":0,"text":"a","destination":"x"}"#.into(),
    ]
}

fn to_bytes(texts: Vec<String>) -> Vec<Vec<u8>> {
    texts.into_iter().map(String::into_bytes).collect()
}

fn message(id: &str, text: &str) -> NewOutboundRow {
    row(
        id,
        OutboundKind::Chat,
        OutboundContent::Message(MessageContent {
            text: text.into(),
            files: Vec::new(),
        }),
    )
}

fn row(id: &str, kind: OutboundKind, content: OutboundContent) -> NewOutboundRow {
    NewOutboundRow {
        id: MessageId::new(id),
        in_reply_to: Some(MessageId::new("in-1")),
        deliver_after: None,
        kind,
        destination: None,
        thread_id: None,
        content,
    }
}

fn actions() -> Vec<Action> {
    vec![
        Action::ScheduleTask(ScheduleTask {
            task_id: "daily-report".into(),
            prompt: "write the report".into(),
            schedule: Schedule::Cron(Recurrence {
                cron: "0 9 * * 1-5".into(),
                timezone: Some("Europe/Paris".into()),
            }),
        }),
        Action::ScheduleTask(ScheduleTask {
            task_id: "once".into(),
            prompt: "remind me".into(),
            schedule: Schedule::At(1_900_000_000_000),
        }),
        Action::UpdateTask(UpdateTask {
            task_id: "daily-report".into(),
            prompt: None,
            schedule: Some(Schedule::Cron(Recurrence {
                cron: "*/5 * * * *".into(),
                timezone: None,
            })),
        }),
        Action::PauseTask {
            task_id: "daily-report".into(),
        },
        Action::ResumeTask {
            task_id: "daily-report".into(),
        },
        Action::CancelTask {
            task_id: "once".into(),
        },
        Action::CreateAgent(CreateAgent {
            name: "researcher".into(),
            instructions: "You research.".into(),
        }),
    ]
}

fn chat_contents() -> Vec<OutboundContent> {
    vec![
        OutboundContent::Message(MessageContent {
            text: "hello".into(),
            files: Vec::new(),
        }),
        OutboundContent::Message(MessageContent {
            text: "see attached".into(),
            files: vec!["report.pdf".into()],
        }),
        OutboundContent::Edit {
            target_seq: Seq(3),
            text: "hello, edited".into(),
        },
        OutboundContent::Reaction {
            target_seq: Seq(2),
            emoji: "👍".into(),
        },
        OutboundContent::Question {
            question_id: "q1".into(),
            title: "Pick".into(),
            question: "Which one?".into(),
            options: vec!["a".into(), "b".into()],
            expires_at: Some(1_900_000_000_000),
        },
        OutboundContent::Progress {
            items: vec![ProgressItem {
                text: "read the files".into(),
                status: "in_progress".into(),
            }],
            target_seq: None,
        },
        OutboundContent::Progress {
            items: vec![ProgressItem {
                text: "read the files".into(),
                status: "completed".into(),
            }],
            target_seq: Some(Seq(5)),
        },
    ]
}

fn outbound_contents() -> Vec<String> {
    let mut contents: Vec<String> = chat_contents()
        .iter()
        .map(OutboundContent::to_json)
        .collect();
    contents.extend(actions().iter().map(|action| action.to_content().to_json()));
    contents.push(r#"{"action":"unknown_action","x":1}"#.into());
    contents.push(r#"{"operation":"edit","target_seq":-1,"text":""}"#.into());
    contents
}

/// Three real files: the empty schema and a few rows (both shrunk to 512-byte pages so that
/// mutations hit structure more often), and every kind of row at the default page size.
fn outbound_files() -> Result<Vec<Vec<u8>>, SeedError> {
    let dir = tempfile::tempdir()?;
    let mut files = Vec::new();
    let empty = dir.path().join("empty.db");
    protocol::schema::create_outbound(&empty)?;
    shrink(&empty)?;
    files.push(std::fs::read(&empty)?);

    let few = dir.path().join("few.db");
    protocol::schema::create_outbound(&few)?;
    {
        let conn = protocol::schema::open_outbound_writer(&few)?;
        protocol::outbound::insert(&conn, &message("m1", "hello"), Some(Seq(2)))?;
        protocol::outbound::set_ack(&conn, &MessageId::new("in-1"), AckStatus::Completed)?;
    }
    shrink(&few)?;
    files.push(std::fs::read(&few)?);

    let all = dir.path().join("all.db");
    protocol::schema::create_outbound(&all)?;
    {
        let conn = protocol::schema::open_outbound_writer(&all)?;
        for (index, content) in chat_contents().into_iter().enumerate() {
            let id = format!("c{index}");
            protocol::outbound::insert(&conn, &row(&id, OutboundKind::Chat, content), None)?;
        }
        for (index, action) in actions().iter().enumerate() {
            let id = format!("s{index}");
            let system = row(&id, OutboundKind::System, action.to_content());
            protocol::outbound::insert(&conn, &system, None)?;
        }
        let mut later = message("late", "later");
        later.deliver_after = Some(1_900_000_000_000);
        later.destination = Some("parent".into());
        later.thread_id = Some("t1".into());
        protocol::outbound::insert(&conn, &later, None)?;
        protocol::outbound::set_ack(&conn, &MessageId::new("in-1"), AckStatus::Processing)?;
        protocol::outbound::set_ack(&conn, &MessageId::new("in-2"), AckStatus::Failed)?;
        protocol::outbound::set_container_state(&conn, Some(("bash", 60_000)))?;
    }
    files.push(std::fs::read(&all)?);
    Ok(files)
}

/// Rewrites a database with 512-byte pages (it uses the DELETE journal, so VACUUM may).
fn shrink(path: &Path) -> Result<(), SeedError> {
    let conn = rusqlite::Connection::open(path)?;
    conn.execute_batch("PRAGMA page_size = 512; VACUUM;")?;
    Ok(())
}

fn cli_lines() -> Vec<String> {
    let mut lines: Vec<String> = [
        ClientLine::Message {
            text: "hello".into(),
            user: "me".into(),
            chat: None,
            thread: None,
            is_group: false,
            is_mention: true,
            message_id: None,
        },
        ClientLine::Message {
            text: "hi all".into(),
            user: "alice".into(),
            chat: Some("team".into()),
            thread: Some("t-1".into()),
            is_group: true,
            is_mention: false,
            message_id: Some("p-1".into()),
        },
        ClientLine::Answer {
            question_id: Some("q1".into()),
            answer: "2".into(),
            user: "me".into(),
            chat: None,
            thread: None,
        },
    ]
    .iter()
    .filter_map(|line| serde_json::to_string(line).ok())
    .collect();
    lines.push(r#"{"type":"subscribe","chat":"team"}"#.into());
    lines.push(r#"{"type":"answer","answer":"free text","user":"me","chat":"team"}"#.into());
    lines
}

fn http(method: &str, path: &str, headers: &[&str], body: &str) -> String {
    let mut request = format!("{method} {path} HTTP/1.1\r\nhost: localhost\r\n");
    for header in headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    if !body.is_empty() {
        request.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    request.push_str(body);
    request
}

fn proxy_requests() -> Vec<String> {
    let openai = r#"{"model":"gpt","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let anthropic = r#"{"model":"claude","max_tokens":16,"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}"#;
    let json = "content-type: application/json";
    vec![
        http("POST", "/v1/chat/completions", &[json, "authorization: Bearer sk-x"], openai),
        http("POST", "/v1/messages", &[json, "x-api-key: k", "anthropic-version: 2023-06-01"], anthropic),
        http("GET", "/v1/models", &[], ""),
        http("POST", "/v1/chat/completions?x=1", &[json, "expect: 100-continue"], openai),
        "POST /v1/messages HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n5\r\n{\"a\":\r\n2\r\n1}\r\n0\r\n\r\n".into(),
        format!(
            "{}{}",
            http("POST", "/v1/messages", &[json], anthropic),
            http("POST", "/v1/chat/completions", &[json, "connection: close"], openai)
        ),
        "GET / HTTP/1.0\r\n\r\n".into(),
    ]
}

fn admin_bodies() -> Vec<String> {
    [
        "",
        r#"{"id":"main"}"#,
        r#"{"group":"main","chat":"cli/local","all":true,"limit":10}"#,
        r#"{"folder":"research","name":"Research","instructions":"hi","memory_mb":512,"cpus":1.5,"pids_limit":64}"#,
        r#"{"id":"main","name":"Main","create_agents":"approval","memory_mb":256}"#,
        r#"{"channel_type":"cli","platform_id":"team","name":"Team","is_group":true}"#,
        r#"{"id":"cli/team","name":"T","is_group":false,"unknown_sender_policy":"drop"}"#,
        r#"{"chat":"cli/team","group":"main","destination":"team","session_mode":"shared","engage_mode":"pattern","engage_pattern":".*","priority":1}"#,
        r#"{"id":"w1","engage_mode":"mention","engage_pattern":""}"#,
        r#"{"group":"main","name":"ops","display_name":"Ops","chat":"cli/ops","thread":"t"}"#,
        r#"{"group":"main","name":"ops"}"#,
        r#"{"id":"alice","name":"Alice","dm":"cli/alice"}"#,
        r#"{"user":"alice","role":"admin","group":"main"}"#,
        r#"{"group":"main","user":"alice"}"#,
        r#"{"id":"a1","as_user":"alice","group":"main","reason":"ok"}"#,
    ]
    .iter()
    .map(|body| (*body).to_owned())
    .collect()
}
