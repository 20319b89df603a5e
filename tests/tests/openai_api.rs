//! The OpenAI-compatible API and the web chat's privacy, end to end: a real `crabpot serve`
//! with a real container and the fake model, driven by the real `openai` Python package
//! (tests/openai/client.py, from the test venv: CRABPOT_TEST_VENV, default
//! /var/tmp/crabpot-venv, made by tests/deps/install.sh).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tests::docker::require_docker;
use tests::fake_model::{FakeModel, Reply};
use tests::host_process::{HostOptions, HostProcess, ModelConfig};
use tests::http_client::{HttpResponse, send_tcp};

/// The test venv's Python.
fn python() -> PathBuf {
    let venv = std::env::var_os("CRABPOT_TEST_VENV")
        .map_or_else(|| PathBuf::from("/var/tmp/crabpot-venv"), PathBuf::from);
    let python = venv.join("bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run `bash tests/deps/install.sh` (it installs the `openai` package)",
        python.display()
    );
    python
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("openai/client.py")
}

/// Runs the client script and returns the JSON it printed.
async fn client(base_url: &str, token: &str, model: &str, mode: &str, text: &str) -> Value {
    let output = tokio::time::timeout(
        Duration::from_secs(280),
        tokio::process::Command::new(python())
            .arg(script())
            .args([base_url, token, model, mode, text])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the openai client ran too long")
    .expect("running the openai client");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "client.py {mode} failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

async fn cli(host: &HostProcess, args: &[&str]) -> String {
    let output = host.run_cli(args).await.unwrap();
    assert!(
        output.status.success(),
        "crabpot {}: {}{}",
        args.join(" "),
        output.stdout,
        output.stderr
    );
    output.stdout
}

/// A web user who is a member of `main`, and a chat token of theirs.
async fn member_with_token(host: &HostProcess, name: &str) -> String {
    let user = format!("web:{name}");
    cli(host, &["users", "create", &user]).await;
    cli(host, &["members", "add", "main", &user]).await;
    let out = cli(
        host,
        &["tokens", "create", "--user", name, "--scope", "chat"],
    )
    .await;
    out.split(|c: char| c.is_whitespace() || c == '"')
        .find(|word| word.starts_with("cpt_"))
        .unwrap_or_else(|| panic!("no token in: {out}"))
        .to_owned()
}

fn addr_of(base_url: &str) -> SocketAddr {
    base_url
        .trim_start_matches("http://")
        .parse()
        .unwrap_or_else(|e| panic!("{base_url}: {e}"))
}

async fn request(
    base_url: &str,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> HttpResponse {
    let addr = addr_of(base_url);
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    let body = match body {
        Some(body) => {
            builder = builder.header("content-type", "application/json");
            Full::new(Bytes::from(body.to_string()))
        }
        None => Full::new(Bytes::new()),
    };
    send_tcp(addr, builder.body(body).unwrap()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_clients_talk_to_an_agent_group() {
    if !require_docker("openai_clients_talk_to_an_agent_group").await {
        return;
    }
    let fake = FakeModel::start().unwrap();
    let host = HostProcess::start(HostOptions::with_model(ModelConfig::openai(&fake)))
        .await
        .unwrap();
    let web = host.web_url().unwrap();
    let base = format!("{web}/v1");
    let ann = member_with_token(&host, "ann").await;

    // Without a token: 401, in OpenAI's error shape.
    let anonymous = request(
        &web,
        Method::POST,
        "/v1/chat/completions",
        None,
        Some(serde_json::json!({"model": "main", "messages": [{"role": "user", "content": "hi"}]})),
    )
    .await;
    assert_eq!(
        anonymous.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        anonymous.text()
    );
    assert!(anonymous.json().unwrap()["error"]["message"].is_string());
    // A hostile body: 400 naming the problem.
    let no_user = request(
        &web,
        Method::POST,
        "/v1/chat/completions",
        Some(&ann),
        Some(
            serde_json::json!({"model": "main", "messages": [{"role": "system", "content": "x"}]}),
        ),
    )
    .await;
    assert_eq!(
        no_user.status,
        StatusCode::BAD_REQUEST,
        "{}",
        no_user.text()
    );
    assert_eq!(no_user.json().unwrap()["error"]["param"], "messages");

    // The models are the groups ann may use; the reply is the agent's (the fake echoes the
    // last user message, the only one routed).
    let done = client(&base, &ann, "main", "complete", "hello crab").await;
    assert!(done.get("error").is_none(), "{done}");
    let models: Vec<&str> = done["models"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(models.contains(&"main"), "{done}");
    assert_eq!(done["object"], "chat.completion");
    assert_eq!(done["finish_reason"], "stop");
    let reply = done["reply"].as_str().unwrap();
    assert!(
        reply.starts_with("echo: ") && reply.contains("hello crab"),
        "{done}"
    );
    assert!(
        !reply.contains("earlier message"),
        "only the last user message: {done}"
    );

    // Streamed, with the fake streaming slowly: several chunks that add up to the reply.
    let text = "The crab builds its pot one stone at a time, and never hurries.";
    fake.push(Reply::text(text).streamed_slowly(6, Duration::from_millis(150)));
    let streamed = client(&base, &ann, "main", "stream", "tell me slowly").await;
    assert!(streamed.get("error").is_none(), "{streamed}");
    assert_eq!(streamed["reply"], text, "{streamed}");
    assert_eq!(streamed["finish_reason"], "stop");
    assert!(
        streamed["chunks"].as_array().unwrap().len() > 1,
        "the text came in pieces as it was written: {streamed}"
    );

    // A group that does not exist: 404 model_not_found.
    let unknown = client(&base, &ann, "nope", "unknown-model", "hi").await;
    assert_eq!(unknown["error"]["status"], 404, "{unknown}");
    assert_eq!(
        unknown["error"]["body"]["code"], "model_not_found",
        "{unknown}"
    );
}

/// One server-sent event: `id:`, `event:` and the JSON of `data:`.
#[derive(Debug)]
struct Sse {
    id: Option<i64>,
    event: String,
    data: Value,
}

/// Opens an event stream (with `Last-Event-ID` when given) and reads events until `enough`
/// holds, within `deadline`.
async fn read_events(
    base_url: &str,
    path: &str,
    token: &str,
    last_event_id: Option<i64>,
    deadline: Duration,
    enough: impl Fn(&[Sse]) -> bool,
) -> Vec<Sse> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = addr_of(base_url);
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let resume = last_event_id.map_or_else(String::new, |id| format!("Last-Event-ID: {id}\r\n"));
    let head = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Accept: text/event-stream\r\n{resume}\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let start = std::time::Instant::now();
    loop {
        let events = parse_events(&String::from_utf8_lossy(&raw));
        if enough(&events) {
            return events;
        }
        let left = deadline.saturating_sub(start.elapsed());
        assert!(
            !left.is_zero(),
            "timed out reading {path}: {}",
            String::from_utf8_lossy(&raw)
        );
        let mut buffer = [0u8; 8192];
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Ok(Ok(0)) => panic!("{path} ended: {}", String::from_utf8_lossy(&raw)),
            Ok(Ok(n)) => raw.extend_from_slice(&buffer[..n]),
            Ok(Err(e)) => panic!("reading {path}: {e}"),
            Err(_) => {}
        }
    }
}

/// The events of a (chunked) SSE body; chunk-size lines are not fields and are skipped.
fn parse_events(raw: &str) -> Vec<Sse> {
    let body = raw.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    let mut events = Vec::new();
    let (mut id, mut event, mut data) = (None, None, None);
    for line in body.split('\n').map(|line| line.trim_end_matches('\r')) {
        if line.is_empty() {
            if let (Some(kind), Some(json)) = (event.take(), data.take()) {
                events.push(Sse {
                    id: id.take(),
                    event: kind,
                    data: serde_json::from_str(json).unwrap_or(Value::Null),
                });
            }
            id = None;
        } else if let Some(value) = line.strip_prefix("id: ") {
            id = value.parse().ok();
        } else if let Some(value) = line.strip_prefix("event: ") {
            event = Some(value.to_owned());
        } else if let Some(value) = line.strip_prefix("data: ") {
            data = Some(value);
        }
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_cannot_read_another_members_conversation() {
    if !require_docker("a_member_cannot_read_another_members_conversation").await {
        return;
    }
    let fake = FakeModel::start().unwrap();
    let host = HostProcess::start(HostOptions::with_model(ModelConfig::openai(&fake)))
        .await
        .unwrap();
    let web = host.web_url().unwrap();
    let ann = member_with_token(&host, "ann").await;
    let bob = member_with_token(&host, "bob").await;

    let created = request(
        &web,
        Method::POST,
        "/api/chat/conversations",
        Some(&ann),
        Some(serde_json::json!({"group": "main", "title": "ann's"})),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
    let conversation = created.json().unwrap();
    let id = conversation["id"].as_str().unwrap().to_owned();
    assert!(
        conversation["platform_id"]
            .as_str()
            .unwrap()
            .starts_with("ann/"),
        "{conversation}"
    );
    let sent = request(
        &web,
        Method::POST,
        &format!("/api/chat/conversations/{id}/messages"),
        Some(&ann),
        Some(serde_json::json!({"text": "a secret of ann"})),
    )
    .await;
    assert_eq!(sent.status, StatusCode::OK, "{}", sent.text());
    assert_eq!(
        sent.json().unwrap()["message_ids"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Ann reads her messages; Bob gets 404 for every route of her conversation.
    let mine = request(
        &web,
        Method::GET,
        &format!("/api/chat/conversations/{id}/messages"),
        Some(&ann),
        None,
    )
    .await;
    assert_eq!(mine.status, StatusCode::OK, "{}", mine.text());
    assert!(mine.text().contains("a secret of ann"), "{}", mine.text());
    for (method, path, body) in [
        (Method::GET, format!("/api/chat/conversations/{id}"), None),
        (
            Method::GET,
            format!("/api/chat/conversations/{id}/messages"),
            None,
        ),
        (
            Method::GET,
            format!("/api/chat/conversations/{id}/events"),
            None,
        ),
        (
            Method::POST,
            format!("/api/chat/conversations/{id}/messages"),
            Some(serde_json::json!({"text": "let me in"})),
        ),
    ] {
        let theirs = request(&web, method.clone(), &path, Some(&bob), body).await;
        assert_eq!(
            theirs.status,
            StatusCode::NOT_FOUND,
            "{method} {path}: {}",
            theirs.text()
        );
        assert!(!theirs.text().contains("secret"), "{}", theirs.text());
    }
    // Ann's event stream: her message, the agent's reply, the completed turn, with ids
    // counting up by one; a reconnect after the first gets the rest, once.
    let events_path = format!("/api/chat/conversations/{id}/events");
    let first = read_events(
        &web,
        &events_path,
        &ann,
        None,
        Duration::from_secs(120),
        |events| events.iter().any(|e| e.event == "turn_complete"),
    )
    .await;
    let durable: Vec<&Sse> = first.iter().filter(|e| e.id.is_some()).collect();
    let ids: Vec<i64> = durable.iter().filter_map(|e| e.id).collect();
    let expected: Vec<i64> = (1..=i64::try_from(ids.len()).unwrap()).collect();
    assert_eq!(ids, expected, "{first:?}");
    assert_eq!(durable[0].event, "message");
    assert_eq!(durable[0].data["role"], "user");
    assert_eq!(durable[0].data["text"], "a secret of ann");
    let reply = durable
        .iter()
        .find(|e| e.event == "message" && e.data["role"] == "agent")
        .unwrap_or_else(|| panic!("no reply: {first:?}"));
    assert!(
        reply.data["text"]
            .as_str()
            .unwrap()
            .contains("a secret of ann"),
        "{reply:?}"
    );
    let newest = *ids.last().unwrap();
    let again = read_events(
        &web,
        &events_path,
        &ann,
        Some(1),
        Duration::from_secs(30),
        |events| events.iter().any(|e| e.id == Some(newest)),
    )
    .await;
    let resumed: Vec<i64> = again.iter().filter_map(|e| e.id).collect();
    assert_eq!(resumed, (2..=newest).collect::<Vec<_>>(), "{again:?}");

    let listed = request(
        &web,
        Method::GET,
        "/api/chat/conversations",
        Some(&bob),
        None,
    )
    .await;
    assert_eq!(listed.status, StatusCode::OK);
    assert!(!listed.text().contains(&id), "{}", listed.text());
    // Without credentials: 401.
    let anonymous = request(&web, Method::GET, "/api/chat/conversations", None, None).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_question_shows_its_options_and_the_browser_answers_it() {
    if !require_docker("a_question_shows_its_options_and_the_browser_answers_it").await {
        return;
    }
    let fake = FakeModel::start().unwrap();
    support::echo_or_tool_result(&fake);
    fake.push(Reply::tool_call(
        "ask_user_question",
        serde_json::json!({"question": "Which colour for the pot?", "options": ["red", "green"], "timeout_seconds": 120}),
    ));
    let host = HostProcess::start(HostOptions::with_model(ModelConfig::openai(&fake)))
        .await
        .unwrap();
    let web = host.web_url().unwrap();
    let ann = member_with_token(&host, "ann").await;
    let created = request(
        &web,
        Method::POST,
        "/api/chat/conversations",
        Some(&ann),
        Some(serde_json::json!({"group": "main"})),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
    let id = created.json().unwrap()["id"].as_str().unwrap().to_owned();
    let sent = request(
        &web,
        Method::POST,
        &format!("/api/chat/conversations/{id}/messages"),
        Some(&ann),
        Some(serde_json::json!({"text": "paint it"})),
    )
    .await;
    assert_eq!(sent.status, StatusCode::OK, "{}", sent.text());

    let events_path = format!("/api/chat/conversations/{id}/events");
    let asked = read_events(
        &web,
        &events_path,
        &ann,
        None,
        Duration::from_secs(120),
        |events| events.iter().any(|e| e.data.get("question").is_some()),
    )
    .await;
    let question = asked
        .iter()
        .find(|e| e.data.get("question").is_some())
        .unwrap();
    assert_eq!(question.event, "message");
    assert!(
        question.data["text"]
            .as_str()
            .unwrap()
            .contains("Which colour"),
        "{question:?}"
    );
    let options: Vec<(&str, &str)> = question.data["question"]["options"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["label"].as_str().unwrap(), o["answer"].as_str().unwrap()))
        .collect();
    assert_eq!(options, [("red", "1"), ("green", "2")], "{question:?}");
    let question_id = question.data["question"]["question_id"].as_str().unwrap();

    let answered = request(
        &web,
        Method::POST,
        &format!("/api/chat/conversations/{id}/answers"),
        Some(&ann),
        Some(serde_json::json!({"question_id": question_id, "answer": "2"})),
    )
    .await;
    assert_eq!(answered.status, StatusCode::OK, "{}", answered.text());
    let after = question.id.unwrap();
    let rest = read_events(
        &web,
        &events_path,
        &ann,
        Some(after),
        Duration::from_secs(120),
        |events| events.iter().any(|e| e.event == "turn_complete"),
    )
    .await;
    let replies: Vec<&str> = rest
        .iter()
        .filter(|e| e.event == "message" && e.data["role"] == "agent")
        .filter_map(|e| e.data["text"].as_str())
        .collect();
    assert!(
        replies.iter().any(|text| text.contains("answered: green")),
        "the answer reached the agent: {rest:?}"
    );
    // A second answer to the same question is refused.
    let again = request(
        &web,
        Method::POST,
        &format!("/api/chat/conversations/{id}/answers"),
        Some(&ann),
        Some(serde_json::json!({"question_id": question_id, "answer": "1"})),
    )
    .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_the_agent_sends_is_downloaded_by_its_owner_only() {
    if !require_docker("a_file_the_agent_sends_is_downloaded_by_its_owner_only").await {
        return;
    }
    let fake = FakeModel::start().unwrap();
    fake.push(Reply::tool_call(
        "write_file",
        serde_json::json!({"path": "notes/report.html", "content": "<script>alert(1)</script>\n"}),
    ));
    fake.push(Reply::tool_call(
        "send_file",
        serde_json::json!({"path": "notes/report.html", "text": "here is the report"}),
    ));
    fake.push(Reply::text(""));
    let host = HostProcess::start(HostOptions::with_model(ModelConfig::openai(&fake)))
        .await
        .unwrap();
    let web = host.web_url().unwrap();
    let ann = member_with_token(&host, "ann").await;
    let bob = member_with_token(&host, "bob").await;
    let created = request(
        &web,
        Method::POST,
        "/api/chat/conversations",
        Some(&ann),
        Some(serde_json::json!({"group": "main"})),
    )
    .await;
    let id = created.json().unwrap()["id"].as_str().unwrap().to_owned();
    let sent = request(
        &web,
        Method::POST,
        &format!("/api/chat/conversations/{id}/messages"),
        Some(&ann),
        Some(serde_json::json!({"text": "write me a report"})),
    )
    .await;
    assert_eq!(sent.status, StatusCode::OK, "{}", sent.text());
    let events_path = format!("/api/chat/conversations/{id}/events");
    let events = read_events(
        &web,
        &events_path,
        &ann,
        None,
        Duration::from_secs(120),
        |events| events.iter().any(|e| e.data.get("files").is_some()),
    )
    .await;
    let with_file = events
        .iter()
        .find(|e| e.data.get("files").is_some())
        .unwrap();
    assert_eq!(
        with_file.data["files"],
        serde_json::json!(["report.html"]),
        "{with_file:?}"
    );
    let event_id = with_file.id.unwrap();
    let path = format!("/api/chat/conversations/{id}/files/{event_id}/0");
    let file = request(&web, Method::GET, &path, Some(&ann), None).await;
    assert_eq!(file.status, StatusCode::OK, "{}", file.text());
    assert_eq!(file.text(), "<script>alert(1)</script>\n");
    // Always a download, never a page of this origin.
    assert!(
        file.header("content-disposition")
            .unwrap()
            .starts_with("attachment"),
        "{:?}",
        file.headers
    );
    assert_eq!(file.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(
        file.header("content-type"),
        Some("application/octet-stream")
    );
    let theirs = request(&web, Method::GET, &path, Some(&bob), None).await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND);
    let missing = request(
        &web,
        Method::GET,
        &format!("/api/chat/conversations/{id}/files/{event_id}/1"),
        Some(&ann),
        None,
    )
    .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_client_answers_the_agents_question_with_its_next_message() {
    if !require_docker("an_api_client_answers_the_agents_question_with_its_next_message").await {
        return;
    }
    let fake = FakeModel::start().unwrap();
    support::echo_or_tool_result(&fake);
    fake.push(Reply::tool_call(
        "ask_user_question",
        serde_json::json!({"question": "Which colour for the pot?", "options": ["red", "green"], "timeout_seconds": 120}),
    ));
    let host = HostProcess::start(HostOptions::with_model(ModelConfig::openai(&fake)))
        .await
        .unwrap();
    let base = format!("{}/v1", host.web_url().unwrap());
    let ann = member_with_token(&host, "ann").await;
    let asked = client(&base, &ann, "main", "ask", "paint it").await;
    let question = asked["reply"].as_str().unwrap_or_else(|| panic!("{asked}"));
    assert!(question.contains("Which colour for the pot?"), "{asked}");
    assert!(
        question.contains("1. red") && question.contains("2. green"),
        "{asked}"
    );
    let answered = client(&base, &ann, "main", "ask", "2").await;
    let reply = answered["reply"]
        .as_str()
        .unwrap_or_else(|| panic!("{answered}"));
    assert!(reply.contains("answered: green"), "{answered}");
    // The turn is over: the next message is a message again.
    let next = client(&base, &ann, "main", "ask", "and now?").await;
    assert!(
        next["reply"].as_str().unwrap().contains("and now?"),
        "{next}"
    );
}
