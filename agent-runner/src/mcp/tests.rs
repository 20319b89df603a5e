//! [`super::start`] against a real stdio MCP server (tests/deps/mcp_stdio_server.py, run by
//! the host's python3) in a temporary group folder: allowed tools only, their calls through
//! the registry, error results, restart after the server died, and bad entries that leave
//! the good server working.

use super::*;
use crate::model::tool_schema::{anthropic_tools, openai_tools};
use crate::tools::ToolRegistry;
use crate::tools::testing::Fixture;
use crate::transcript::ToolCall;
use serde_json::json;

const SERVER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/deps/mcp_stdio_server.py"
);

async fn registry_for(fixture: &Fixture, mcp_json: serde_json::Value) -> ToolRegistry {
    let group = fixture.dir.path().join("group");
    std::fs::create_dir_all(&group).unwrap();
    std::fs::write(group.join("mcp.json"), mcp_json.to_string()).unwrap();
    let standard = ToolRegistry::standard();
    let extra = start(&group, &fixture.paths.work_dir(), standard.definitions()).await;
    standard.with_extra(extra)
}

async fn run(
    fixture: &mut Fixture,
    registry: &ToolRegistry,
    name: &str,
    arguments: serde_json::Value,
) -> crate::tools::ToolOutcome {
    let call = ToolCall {
        id: "call_1".into(),
        name: name.into(),
        arguments: arguments.to_string(),
    };
    let mut context = fixture.context();
    registry.run(&mut context, &call).await
}

fn names(registry: &ToolRegistry) -> Vec<String> {
    registry
        .definitions()
        .iter()
        .map(|definition| definition.name.to_string())
        .collect()
}

#[tokio::test]
async fn allowed_stdio_tools_are_offered_and_called() {
    let mut fixture = Fixture::new().await;
    let registry = registry_for(
        &fixture,
        json!({"servers": {
            "loud": {"command": "python3", "args": [SERVER], "env": {"MCP_TEST_X": "from-config"},
                     "allow_tools": ["shout", "fail", "not-there"], "timeout_seconds": 30},
            "broken": {"command": "/nonexistent/mcp-server", "allow_tools": ["*"]},
            "bad name!": {"command": "x"},
        }}),
    )
    .await;
    let names = names(&registry);
    assert!(names.contains(&"loud__shout".to_owned()), "{names:?}");
    assert!(names.contains(&"loud__fail".to_owned()), "{names:?}");
    assert!(
        !names.iter().any(|name| name.contains("whisper")),
        "{names:?}"
    );
    assert!(
        !names.iter().any(|name| name.starts_with("broken__")),
        "{names:?}"
    );
    assert_eq!(names.last().map(String::as_str), Some("mcp_status"));

    // The server's schema survives both providers' normalisation.
    let shout = registry
        .definitions()
        .iter()
        .find(|definition| definition.name == "loud__shout")
        .unwrap();
    assert!(
        shout
            .description
            .starts_with("[MCP server loud] Returns the text in capitals")
    );
    let openai = openai_tools(std::slice::from_ref(shout));
    assert_eq!(
        openai[0]["function"]["parameters"]["required"],
        json!(["text"])
    );
    assert!(openai[0]["function"]["parameters"].get("$schema").is_none());
    let anthropic = anthropic_tools(std::slice::from_ref(shout));
    assert_eq!(
        anthropic[0]["input_schema"]["properties"]["text"]["type"],
        "string"
    );

    let outcome = run(
        &mut fixture,
        &registry,
        "loud__shout",
        json!({"text": "ahoy"}),
    )
    .await;
    assert!(!outcome.is_error, "{}", outcome.content);
    let work = fixture.paths.work_dir();
    assert!(
        outcome.content.starts_with("AHOY! (pid "),
        "{}",
        outcome.content
    );
    assert!(
        outcome.content.contains(&format!("cwd {}", work.display())),
        "runs in the workspace: {}",
        outcome.content
    );
    assert!(
        outcome.content.contains("X=from-config"),
        "{}",
        outcome.content
    );

    let failed = run(&mut fixture, &registry, "loud__fail", json!({})).await;
    assert!(failed.is_error);
    assert_eq!(failed.content, "it failed on purpose");

    let status = run(&mut fixture, &registry, "mcp_status", json!({})).await;
    assert!(!status.is_error, "{}", status.content);
    for fragment in [
        "loud: 2 tool(s): loud__shout, loud__fail",
        "broken: not started: cannot start \"/nonexistent/mcp-server\"",
        "\"bad name!\"",
        "allow_tools names \"not-there\", which it does not offer",
    ] {
        assert!(
            status.content.contains(fragment),
            "{fragment}: {}",
            status.content
        );
    }
}

#[tokio::test]
async fn a_dead_server_is_restarted_by_the_next_call() {
    let mut fixture = Fixture::new().await;
    let registry = registry_for(
        &fixture,
        json!({"servers": {"loud": {"command": "python3", "args": [SERVER], "allow_tools": ["shout"]}}}),
    )
    .await;
    let first = run(&mut fixture, &registry, "loud__shout", json!({"text": "a"})).await;
    let pid = pid_of(&first.content);
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    // The kill is asynchronous: wait until the process is gone (a zombie until reaped counts
    // as gone for the connection, which checks `try_wait`).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let second = run(&mut fixture, &registry, "loud__shout", json!({"text": "b"})).await;
        if !second.is_error && pid_of(&second.content) != pid {
            assert!(second.content.starts_with("B! "), "{}", second.content);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never restarted: {}",
            second.content
        );
        tokio::task::yield_now().await;
    }
}

fn pid_of(content: &str) -> i32 {
    let rest = content.split("(pid ").nth(1).unwrap();
    rest.split(',').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn no_file_means_no_mcp_and_a_bad_file_is_reported() {
    let fixture = Fixture::new().await;
    let group = fixture.dir.path().join("empty-group");
    std::fs::create_dir_all(&group).unwrap();
    assert!(
        start(&group, &fixture.paths.work_dir(), &[])
            .await
            .is_empty()
    );

    std::fs::write(group.join("mcp.json"), "{not json").unwrap();
    let tools = start(&group, &fixture.paths.work_dir(), &[]).await;
    assert_eq!(tools.len(), 1);
    let status = tools[0].definition();
    assert_eq!(status.name, "mcp_status");
    assert!(
        status.description.contains("1 problem(s)"),
        "{}",
        status.description
    );
}
