//! The MCP client end to end: a real host, a real toolbox container running the real runner,
//! the fake model scripting calls, and two real MCP servers declared in the group's `mcp.json`:
//!
//! - `harbour`, written with the official MCP Python SDK (FastMCP, `tests/deps/mcp_server.py`),
//!   served over streamable HTTP on the host's loopback and reached through the egress proxy
//!   (the group allows `127.0.0.1:<port>`);
//! - `local`, a stdio server (`tests/deps/mcp_stdio_server.py`, standard library only) that the
//!   runner starts inside the container with the toolbox's python3;
//! - `closed`, a remote server no egress rule allows, which must not start.
//!
//! The model sees exactly the allowed tools, namespaced by server; a call to each reaches its
//! server and the result computed there reaches the model; a tool that raises comes back as an
//! error result; `mcp_status` names the refused server and the rule that would let it through;
//! and the egress log holds the allowed and the refused attempts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{Value, json};
use support::{TURN, cli_ok, echo_or_tool_result, egress_log_until, groups_dir, tool_result};
use tests::docker::require_docker;
use tests::fake_model::{FakeModel, Reply};
use tests::host_process::{HostOptions, HostProcess, ModelConfig};
use tests::mcp_server::McpServer;

/// The names of the tools a model request offered (OpenAI shape).
fn offered_tools(request: &Value) -> Vec<String> {
    request["tools"]
        .as_array()
        .map(|tools| {
            tools
                .iter()
                .filter_map(|tool| tool["function"]["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn mcp_servers_over_http_and_stdio_join_the_toolset_through_egress() {
    if !require_docker("mcp_servers_over_http_and_stdio_join_the_toolset_through_egress").await {
        return;
    }
    let sdk = McpServer::start().unwrap();
    let p = sdk.port();
    let groups = groups_dir(&[]);
    let main = groups.path().join("main");
    std::fs::copy(
        tests::repo_root().join("tests/deps/mcp_stdio_server.py"),
        main.join("mcp_stdio_server.py"),
    )
    .unwrap();
    let mcp_json = json!({"servers": {
        "harbour": {"url": sdk.url(), "allow_tools": ["tide_table", "sink"]},
        "local": {"command": "python3", "args": ["/group/mcp_stdio_server.py"],
                  "allow_tools": ["shout"]},
        "closed": {"url": "http://mcp.example.invalid/mcp", "allow_tools": ["*"]},
    }});
    std::fs::write(main.join("mcp.json"), mcp_json.to_string()).unwrap();

    let fake = FakeModel::start().unwrap();
    echo_or_tool_result(&fake);
    let host = HostProcess::start(HostOptions {
        groups_dir: Some(groups.path().to_owned()),
        ..HostOptions::with_model(ModelConfig::openai(&fake))
    })
    .await
    .unwrap();
    cli_ok(
        &host,
        &[
            "groups",
            "update",
            "main",
            "--image",
            "toolbox",
            "--allow-egress",
            &format!("127.0.0.1:{p}"),
        ],
    )
    .await;

    let calls = [
        ("harbour__tide_table", json!({"harbour": "Crabtown"})),
        ("local__shout", json!({"text": "ahoy"})),
        ("harbour__sink", json!({})),
        ("mcp_status", json!({})),
    ];
    for (name, arguments) in &calls {
        fake.push(Reply::tool_call(*name, arguments.clone()));
    }
    fake.push(Reply::text("done"));
    let output = host.chat("check the tides", TURN).await.unwrap();
    assert!(output.success(), "{output:?}\n{}", host.log_tail(80));
    let requests = fake.requests();

    // The first request offers the allowed tools only, each under its server's name.
    let offered = offered_tools(&requests[0].body);
    for wanted in [
        "harbour__tide_table",
        "harbour__sink",
        "local__shout",
        "mcp_status",
        "bash",
    ] {
        assert!(
            offered.iter().any(|name| name == wanted),
            "{wanted} not offered: {offered:?}\n{}",
            host.log_tail(80)
        );
    }
    for unwanted in ["harbour__drop_anchor", "local__whisper", "local__fail"] {
        assert!(!offered.iter().any(|name| name == unwanted), "{offered:?}");
    }
    assert!(
        !offered.iter().any(|name| name.starts_with("closed__")),
        "{offered:?}"
    );

    let results: Vec<String> = requests.iter().filter_map(tool_result).collect();
    assert_eq!(
        results.len(),
        calls.len(),
        "{results:#?}\n{}",
        host.log_tail(80)
    );
    // Computed by the SDK server on the host.
    assert!(
        results[0].contains("high tide at nwotbarC (from the SDK server, pid"),
        "{}",
        results[0]
    );
    // Computed by the stdio server, running in the container's workspace.
    assert!(results[1].contains("AHOY!"), "{}", results[1]);
    assert!(results[1].contains("cwd /session/work"), "{}", results[1]);
    // The SDK turns the raised exception into an `isError` result; the model sees an error.
    assert!(results[2].contains("the ship sank"), "{}", results[2]);
    assert!(
        results[2].to_lowercase().contains("error"),
        "{}",
        results[2]
    );
    // `mcp_status` tells the agent which servers run and why `closed` does not.
    let status = &results[3];
    assert!(status.contains("harbour: 2 tool(s)"), "{status}");
    assert!(status.contains("local: 1 tool(s)"), "{status}");
    assert!(status.contains("closed: not started"), "{status}");
    assert!(
        status.contains("--allow-egress mcp.example.invalid:80"),
        "{status}"
    );

    // Every attempt is in the egress log: the SDK server's requests allowed, with bytes, and
    // the closed server refused.
    let entries = egress_log_until(&host, "the MCP attempts", |entries| {
        entries.iter().any(|e| {
            e["host"] == "127.0.0.1"
                && e["port"] == p
                && e["outcome"] == "allowed"
                && e["bytes_down"].as_u64().unwrap_or(0) > 0
        }) && entries
            .iter()
            .any(|e| e["host"] == "mcp.example.invalid" && e["port"] == 80)
    })
    .await;
    assert!(
        entries
            .iter()
            .filter(|e| e["host"] == "mcp.example.invalid")
            .all(|e| e["outcome"] == "not_listed"),
        "{entries:#?}"
    );
}
