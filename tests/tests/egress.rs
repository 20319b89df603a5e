//! Egress end to end: a real host, a real container running the real runner, and the fake
//! model scripting `bash` calls that reach out through `127.0.0.1:3128` (the runner's
//! forwarder) and the session's proxy socket, to loopback servers on the host
//! (`tests::https_server`).
//!
//! - Small image (busybox `wget` and `nc`): a plain HTTP request and a `CONNECT` tunnel reach an
//!   allowed server; a host with no rule, a name allowed but resolving to loopback, and a port
//!   off the list are refused with the rule to add; every attempt is in `crabpot egress log
//!   --json` with its outcome, the allowed ones with bytes; `--deny-egress` takes access away
//!   for the next connection.
//! - Toolbox image: `curl` and `git clone` reach an allowed HTTPS server (self-signed, for
//!   127.0.0.1) and the clone's content is checked; a branch committed in the container, with
//!   the group's author, is pushed back over smart HTTP and lands in the host's repository; the
//!   same three refusals show in curl.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{Value, json};
use support::{TURN, cli_ok, echo_or_tool_result, egress_log_until, tool_result};
use tests::docker::{self, require_docker};
use tests::fake_model::{FakeModel, Reply};
use tests::host_process::{HostOptions, HostProcess, ModelConfig};
use tests::https_server::{StaticServer, bare_repo, git_show};

async fn start(fake: &FakeModel) -> HostProcess {
    HostProcess::start(HostOptions::with_model(ModelConfig::openai(fake)))
        .await
        .unwrap()
}

/// A folder with `hello.txt` to serve.
fn site() -> tempfile::TempDir {
    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("hello.txt"), "crab egress ok\n").unwrap();
    site
}

/// Runs one turn whose first model answer is `bash command`; returns the command's output
/// as the model received it.
async fn run_bash(host: &HostProcess, fake: &FakeModel, command: &str) -> String {
    let n_before = fake.requests().len();
    fake.push(Reply::tool_call(
        "bash",
        json!({ "command": command, "timeout_seconds": 120 }),
    ));
    let output = host.chat("reach out", TURN).await.unwrap();
    assert!(output.success(), "{output:?}\n{}", host.log_tail(60));
    fake.requests()
        .iter()
        .skip(n_before)
        .find_map(tool_result)
        .unwrap_or_else(|| panic!("no tool result reached the model\n{}", host.log_tail(60)))
}

fn entry<'a>(entries: &'a [Value], host: &str, port: u16, kind: &str) -> Option<&'a Value> {
    entries
        .iter()
        .find(|e| e["host"] == host && e["port"] == port && e["kind"] == kind)
}

fn bytes_down(entry: Option<&Value>) -> u64 {
    entry.and_then(|e| e["bytes_down"].as_u64()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_small_image_reaches_allowed_hosts_and_is_refused_the_rest() {
    if !require_docker("the_small_image_reaches_allowed_hosts_and_is_refused_the_rest").await {
        return;
    }
    let site = site();
    let allowed = StaticServer::http(site.path()).unwrap();
    let unlisted = StaticServer::http(site.path()).unwrap();
    let (p, q) = (allowed.port(), unlisted.port());
    let fake = FakeModel::start().unwrap();
    echo_or_tool_result(&fake);
    let host = start(&fake).await;
    cli_ok(
        &host,
        &[
            "groups",
            "update",
            "main",
            "--allow-egress",
            &format!("127.0.0.1:{p}"),
            "--allow-egress",
            &format!("localhost:{p}"),
        ],
    )
    .await;
    let command = format!(
        r#"refuse() {{ {{ printf 'CONNECT %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$1" "$1"; sleep 5; }} | timeout 30 nc 127.0.0.1 3128 2>&1; }}
echo "== wget"; http_proxy=http://127.0.0.1:3128 wget -q -O - http://127.0.0.1:{p}/hello.txt 2>&1
echo "== tunnel"; printf 'CONNECT 127.0.0.1:{p} HTTP/1.1\r\nHost: 127.0.0.1:{p}\r\n\r\nGET /hello.txt HTTP/1.0\r\n\r\n' | timeout 30 nc 127.0.0.1 3128 2>&1
echo "== invalid"; refuse example.invalid:443
echo "== localhost"; refuse localhost:{p}
echo "== port"; refuse 127.0.0.1:{q}
echo "== end""#
    );
    let output = run_bash(&host, &fake, &command).await;
    let section = |name: &str| -> String {
        let start = output
            .find(&format!("== {name}"))
            .unwrap_or_else(|| panic!("no section {name}: {output}"));
        let rest = &output[start + name.len() + 3..];
        rest[..rest.find("\n== ").unwrap_or(rest.len())].to_owned()
    };
    assert!(section("wget").contains("crab egress ok"), "{output}");
    let tunnel = section("tunnel");
    assert!(tunnel.contains("HTTP/1.1 200"), "{output}");
    assert!(tunnel.contains("crab egress ok"), "{output}");
    let invalid = section("invalid");
    assert!(invalid.contains("403"), "{output}");
    assert!(
        invalid.contains("crabpot groups update main --allow-egress example.invalid:443"),
        "{output}"
    );
    let localhost = section("localhost");
    assert!(localhost.contains("403"), "{output}");
    assert!(
        localhost.contains("a private, loopback or link-local address"),
        "{output}"
    );
    let port = section("port");
    assert!(port.contains("403"), "{output}");
    assert!(
        port.contains(&format!("--allow-egress 127.0.0.1:{q}")),
        "{output}"
    );

    let entries = egress_log_until(&host, "every attempt", |entries| {
        bytes_down(entry(entries, "127.0.0.1", p, "http")) > 0
            && bytes_down(entry(entries, "127.0.0.1", p, "connect")) > 0
            && entry(entries, "example.invalid", 443, "connect").is_some()
            && entry(entries, "localhost", p, "connect").is_some()
            && entry(entries, "127.0.0.1", q, "connect").is_some()
    })
    .await;
    let outcome = |host: &str, port: u16, kind: &str| {
        entry(&entries, host, port, kind).unwrap()["outcome"].clone()
    };
    assert_eq!(outcome("127.0.0.1", p, "http"), "allowed");
    assert_eq!(outcome("127.0.0.1", p, "connect"), "allowed");
    assert_eq!(outcome("example.invalid", 443, "connect"), "not_listed");
    assert_eq!(outcome("localhost", p, "connect"), "internal_address");
    assert_eq!(outcome("127.0.0.1", q, "connect"), "not_listed");
    let allowed_entry = entry(&entries, "127.0.0.1", p, "connect").unwrap();
    assert!(
        allowed_entry["bytes_up"].as_u64().unwrap() > 0,
        "{allowed_entry}"
    );
    let session = allowed_entry["session_id"].as_str().unwrap().to_owned();
    assert_eq!(allowed_entry["agent_group_id"], "main");
    // The filters narrow the listing; the table names the columns.
    let other = cli_ok(
        &host,
        &["--json", "egress", "log", "--session", "no-such-session"],
    )
    .await;
    assert_eq!(serde_json::from_str::<Value>(&other).unwrap(), json!([]));
    let table = cli_ok(
        &host,
        &["egress", "log", "--session", &session, "--limit", "3"],
    )
    .await;
    assert!(table.contains("OUTCOME"), "{table}");
    assert_eq!(table.lines().count(), 4, "a header and three rows: {table}");

    // Denying the rule holds for the next connection, without a restart.
    cli_ok(
        &host,
        &[
            "groups",
            "update",
            "main",
            "--deny-egress",
            &format!("127.0.0.1:{p}"),
        ],
    )
    .await;
    let n_http_before = entries.iter().filter(|e| e["kind"] == "http").count();
    let output = run_bash(
        &host,
        &fake,
        &format!("http_proxy=http://127.0.0.1:3128 wget -q -O - http://127.0.0.1:{p}/hello.txt 2>&1; echo exit=$?"),
    )
    .await;
    assert!(!output.contains("crab egress ok"), "{output}");
    assert!(output.contains("403"), "{output}");
    let entries = egress_log_until(&host, "the refused request", |entries| {
        entries.iter().filter(|e| e["kind"] == "http").count() > n_http_before
    })
    .await;
    let newest = entry(&entries, "127.0.0.1", p, "http").unwrap();
    assert_eq!(newest["outcome"], "not_listed", "{newest}");
}

#[tokio::test(flavor = "multi_thread")]
async fn curl_and_git_in_the_toolbox_reach_an_allowed_https_server() {
    if !require_docker("curl_and_git_in_the_toolbox_reach_an_allowed_https_server").await {
        return;
    }
    let site = site();
    let repo = bare_repo(
        site.path(),
        "repo",
        &[("README.md", "cloned through the egress proxy\n")],
    )
    .unwrap();
    let server = StaticServer::https(site.path()).unwrap();
    let unlisted = StaticServer::https(site.path()).unwrap();
    let (p, q) = (server.port(), unlisted.port());
    let fake = FakeModel::start().unwrap();
    echo_or_tool_result(&fake);
    let host = start(&fake).await;
    cli_ok(
        &host,
        &[
            "groups",
            "update",
            "main",
            "--image",
            "toolbox",
            "--git-author",
            "Ada Lovelace <ada@example.com>",
            "--allow-egress",
            &format!("127.0.0.1:{p}"),
            "--allow-egress",
            &format!("localhost:{p}"),
        ],
    )
    .await;
    let command = format!(
        // `localhost` is the container itself (NO_PROXY); `--noproxy ""` sends it to the host's
        // proxy, as a name that resolves to loopback there.
        r#"echo "== curl"; curl -sSk https://127.0.0.1:{p}/hello.txt 2>&1
echo "== git"; git -c http.sslVerify=false clone -q https://127.0.0.1:{p}/repo.git clone 2>&1 && cat clone/README.md
echo "== commit"; cd clone && echo more >> README.md && git commit -qam "agent edit" 2>&1 && git log -1 --format='%an <%ae> | %cn <%ce>'
echo "== push"; git checkout -qb agent-edit && git -c http.sslVerify=false push -q origin agent-edit 2>&1 && echo pushed; cd ..
echo "== invalid"; curl -sSk https://example.invalid/ 2>&1
echo "== localhost"; curl --noproxy "" -sSk https://localhost:{p}/ 2>&1
echo "== port"; curl -sSk https://127.0.0.1:{q}/hello.txt 2>&1
echo "== end""#
    );
    let output = run_bash(&host, &fake, &command).await;
    let section = |name: &str| -> String {
        let start = output
            .find(&format!("== {name}"))
            .unwrap_or_else(|| panic!("no section {name}: {output}"));
        let rest = &output[start + name.len() + 3..];
        rest[..rest.find("\n== ").unwrap_or(rest.len())].to_owned()
    };
    assert!(section("curl").contains("crab egress ok"), "{output}");
    assert!(
        section("git").contains("cloned through the egress proxy"),
        "{output}"
    );
    // The commit carries the group's configured author, with no git config in the container.
    assert!(
        section("commit")
            .contains("Ada Lovelace <ada@example.com> | Ada Lovelace <ada@example.com>"),
        "{output}"
    );
    // The push went through the proxy too, and the host's repository has the agent's branch.
    assert!(section("push").contains("pushed"), "{output}");
    assert_eq!(
        git_show(&repo, "agent-edit", "%an <%ae> | %s").unwrap(),
        "Ada Lovelace <ada@example.com> | agent edit"
    );
    for name in ["invalid", "localhost", "port"] {
        let refused = section(name);
        assert!(refused.contains("403"), "{name}: {output}");
        assert!(!refused.contains("crab egress ok"), "{name}: {output}");
    }
    toolbox_keeps_the_policy_and_carries_the_tools(&host).await;
    let entries = egress_log_until(&host, "every attempt", |entries| {
        entries
            .iter()
            .filter(|e| e["host"] == "127.0.0.1" && e["port"] == p && e["outcome"] == "allowed")
            .filter(|e| e["bytes_down"].as_u64().unwrap_or(0) > 0)
            .count()
            >= 2
            && entry(entries, "example.invalid", 443, "connect").is_some()
            && entry(entries, "localhost", p, "connect").is_some()
            && entry(entries, "127.0.0.1", q, "connect").is_some()
    })
    .await;
    let outcome =
        |host: &str, port: u16| entry(&entries, host, port, "connect").unwrap()["outcome"].clone();
    assert_eq!(outcome("example.invalid", 443), "not_listed");
    assert_eq!(outcome("localhost", p), "internal_address");
    assert_eq!(outcome("127.0.0.1", q), "not_listed");
}

/// The session's toolbox container runs under the small image's policy (own uid, read-only
/// root, every capability dropped, no network, limits) with the toolbox floors, and has the
/// tools the issue names.
async fn toolbox_keeps_the_policy_and_carries_the_tools(host: &HostProcess) {
    let docker = docker::connect().await.unwrap();
    let containers =
        docker::list_containers_by_label(&docker, "crabpot.install", host.install_id())
            .await
            .unwrap();
    assert_eq!(containers.len(), 1, "{containers:?}");
    let id = containers[0].id.clone().unwrap();
    let inspect = docker::inspect_container_json(&docker, &id).await.unwrap();
    assert!(
        inspect["Config"]["Image"]
            .as_str()
            .unwrap_or_default()
            .contains("toolbox"),
        "{}",
        inspect["Config"]["Image"]
    );
    let config = &inspect["HostConfig"];
    assert_eq!(config["ReadonlyRootfs"], true);
    assert_eq!(config["CapDrop"], json!(["ALL"]));
    assert_eq!(config["NetworkMode"], "none");
    assert_eq!(config["Privileged"], false);
    assert!(
        config["SecurityOpt"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o == "no-new-privileges"),
        "{config}"
    );
    assert!(
        config["Memory"].as_i64().unwrap() >= 1_500_000_000,
        "{config}"
    );
    assert!(config["PidsLimit"].as_i64().unwrap() >= 1024, "{config}");
    let user = inspect["Config"]["User"].as_str().unwrap_or_default();
    assert!(
        !user.is_empty() && !user.starts_with("0:") && user != "0",
        "{user}"
    );

    let script = "id -u; git --version; python3 --version; python3 -m pip --version; \
                  node --version; npm --version; curl --version | head -1; rg --version | head -1; \
                  chromium --version; touch /usr/probe 2>&1 || echo read-only root";
    let tools = docker::exec(&docker, &id, &["sh", "-c", script])
        .await
        .unwrap();
    let out = &tools.stdout;
    assert_ne!(out.lines().next().unwrap_or("0").trim(), "0", "{tools:?}");
    for wanted in [
        "git version",
        "Python 3.",
        "pip ",
        "curl ",
        "ripgrep ",
        "Chromium ",
        "read-only root",
    ] {
        assert!(out.contains(wanted), "{wanted} missing: {tools:?}");
    }
    // `node --version` and `npm --version` print bare versions: v18.19.0 and 9.2.0.
    assert!(
        out.lines()
            .any(|line| line.starts_with('v') && line.contains('.')),
        "{tools:?}"
    );
}
