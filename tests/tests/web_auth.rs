//! Web authentication end to end, against a real `crabpot serve` over real HTTP on loopback:
//! nothing answers without credentials; `crabpot users passwd` (password on stdin) then a
//! login gives a session cookie; a state-changing request with the cookie needs the CSRF
//! token; logout ends the session server-side; API tokens work until revoked and a `chat`
//! token never reaches the admin API; a member's session cannot reach `/api/v1`; a login
//! link works once; failed logins are rate-limited (429 with Retry-After).
//!
//! None of this needs a container: no turn is run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::process::Stdio;
use support::{cli_fails, cli_json, cli_ok, groups_dir};
use tests::host_process::{HostOptions, HostProcess, crabpot_bin};
use tests::http_client::{self, HttpResponse};
use tokio::io::AsyncWriteExt;

/// A running host and the address of its web server.
struct Web {
    host: HostProcess,
    address: SocketAddr,
    _groups: tempfile::TempDir,
}

async fn start() -> Web {
    let groups = groups_dir(&[]);
    let host = HostProcess::start(HostOptions {
        groups_dir: Some(groups.path().to_owned()),
        ..HostOptions::default()
    })
    .await
    .unwrap();
    let url = host.web_url().unwrap();
    let address = url
        .trim_end_matches('/')
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("web.url {url:?} is not http://"))
        .parse()
        .unwrap();
    Web {
        host,
        address,
        _groups: groups,
    }
}

/// One request: `headers` as given, `body` as JSON when `Some`.
async fn send(
    web: &Web,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> HttpResponse {
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, web.address.to_string());
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let body = match body {
        Some(body) => {
            builder = builder.header(http::header::CONTENT_TYPE, "application/json");
            Bytes::from(body.to_string())
        }
        None => Bytes::new(),
    };
    http_client::send_tcp(web.address, builder.body(Full::new(body)).unwrap())
        .await
        .unwrap()
}

/// `crabpot users passwd NAME` with `stdin` piped in; returns the exit code and stderr.
async fn passwd(web: &Web, name: &str, stdin: &str) -> (Option<i32>, String) {
    let mut child = tokio::process::Command::new(crabpot_bin())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .arg("--data-dir")
        .arg(web.host.data_dir())
        .args(["users", "passwd", name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    let output = tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("crabpot users passwd finished")
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Logs in with JSON; on success returns the `Cookie` header value and the CSRF token.
async fn login(
    web: &Web,
    username: &str,
    password: &str,
) -> Result<(String, String), HttpResponse> {
    let response = send(
        web,
        Method::POST,
        "/login",
        &[],
        Some(json!({ "username": username, "password": password })),
    )
    .await;
    if response.status != StatusCode::OK {
        return Err(response);
    }
    let cookie = session_cookie(&response);
    let csrf = response.json().unwrap()["csrf_token"]
        .as_str()
        .unwrap()
        .to_owned();
    Ok((cookie, csrf))
}

/// The `crabpot_session=...` pair of a response's Set-Cookie, checking its attributes.
fn session_cookie(response: &HttpResponse) -> String {
    let set_cookie = response
        .header("set-cookie")
        .unwrap_or_else(|| panic!("no Set-Cookie: {:?}", response.headers));
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    assert!(
        !set_cookie.contains("Secure"),
        "not behind HTTPS: {set_cookie}"
    );
    let pair = set_cookie.split(';').next().unwrap().trim().to_owned();
    assert!(
        pair.starts_with("crabpot_session=") && pair.len() > 40,
        "{pair}"
    );
    pair
}

fn kind(response: &HttpResponse) -> String {
    response.json().unwrap()["kind"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn password_login_csrf_and_logout() {
    let web = start().await;

    // Nothing but the login page answers without credentials.
    for path in ["/api/session", "/api/v1/status"] {
        let response = send(&web, Method::GET, path, &[], None).await;
        assert_eq!(
            response.status,
            StatusCode::UNAUTHORIZED,
            "{path}: {}",
            response.text()
        );
        assert_eq!(kind(&response), "unauthenticated", "{path}");
    }
    let response = send(
        &web,
        Method::POST,
        "/api/v1/groups/list",
        &[],
        Some(json!({})),
    )
    .await;
    assert_eq!(response.status, StatusCode::UNAUTHORIZED);
    let home = send(&web, Method::GET, "/", &[], None).await;
    assert!(home.status.is_redirection(), "{:?}", home.status);
    assert_eq!(home.header("location"), Some("/login"));
    let page = send(&web, Method::GET, "/login", &[], None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.text()
            .contains("<form method=\"post\" action=\"/login\"")
    );

    // Passwords come from stdin; short ones are refused with "invalid input".
    let (code, stderr) = passwd(&web, "alice", "short\n").await;
    assert_eq!(code, Some(6), "{stderr}");
    assert!(stderr.contains("at least 8"), "{stderr}");
    let (code, stderr) = passwd(&web, "alice", "correct horse battery\n").await;
    assert_eq!(code, Some(0), "{stderr}");
    cli_ok(&web.host, &["roles", "grant", "web:alice", "owner"]).await;

    let wrong = login(&web, "alice", "wrong horse battery")
        .await
        .unwrap_err();
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{}", wrong.text());
    let unknown = login(&web, "nobody", "correct horse battery")
        .await
        .unwrap_err();
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        wrong.text(),
        unknown.text(),
        "the answer does not tell users apart"
    );

    // A login posted from another site's page is refused, even with the right password.
    let foreign = send(
        &web,
        Method::POST,
        "/login",
        &[("origin", "http://evil.example")],
        Some(json!({ "username": "alice", "password": "correct horse battery" })),
    )
    .await;
    assert_eq!(foreign.status, StatusCode::FORBIDDEN, "{}", foreign.text());
    assert!(foreign.header("set-cookie").is_none());

    let (cookie, csrf) = login(&web, "alice", "correct horse battery").await.unwrap();
    let me = send(
        &web,
        Method::GET,
        "/api/session",
        &[("cookie", &cookie)],
        None,
    )
    .await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.text());
    let me = me.json().unwrap();
    assert_eq!(me["user_id"], "web:alice");
    assert_eq!(me["csrf_token"], csrf.as_str());
    assert_eq!(me["admin"], true);
    assert_eq!(me["roles"][0]["role"], "owner");
    // A browser session's landing page is the web chat.
    let home = send(&web, Method::GET, "/", &[("cookie", &cookie)], None).await;
    assert_eq!(home.status, StatusCode::SEE_OTHER, "{}", home.text());
    assert_eq!(home.header("location"), Some("/chat"));

    // A form login redirects to / with the cookie.
    let form = http_client::send_tcp(
        web.address,
        Request::post("/login")
            .header(http::header::HOST, web.address.to_string())
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(Full::new(Bytes::from(
                "username=alice&password=correct+horse+battery",
            )))
            .unwrap(),
    )
    .await
    .unwrap();
    assert!(
        form.status.is_redirection(),
        "{:?} {}",
        form.status,
        form.text()
    );
    assert_eq!(form.header("location"), Some("/"));
    session_cookie(&form);

    // State changes with the cookie need the CSRF token.
    let no_csrf = send(
        &web,
        Method::POST,
        "/api/v1/groups/list",
        &[("cookie", &cookie)],
        Some(json!({})),
    )
    .await;
    assert_eq!(no_csrf.status, StatusCode::FORBIDDEN, "{}", no_csrf.text());
    assert!(
        no_csrf.text().contains("X-CSRF-Token"),
        "{}",
        no_csrf.text()
    );
    let bad_csrf = send(
        &web,
        Method::POST,
        "/api/v1/groups/list",
        &[("cookie", &cookie), ("x-csrf-token", "0123")],
        Some(json!({})),
    )
    .await;
    assert_eq!(bad_csrf.status, StatusCode::FORBIDDEN);
    let groups = send(
        &web,
        Method::POST,
        "/api/v1/groups/list",
        &[("cookie", &cookie), ("x-csrf-token", &csrf)],
        Some(json!({})),
    )
    .await;
    assert_eq!(groups.status, StatusCode::OK, "{}", groups.text());
    assert_eq!(groups.json().unwrap()[0]["id"], "main");
    // The HTTP admin API answers like the socket, errors included.
    let missing = send(
        &web,
        Method::POST,
        "/api/v1/groups/show",
        &[("cookie", &cookie), ("x-csrf-token", &csrf)],
        Some(json!({ "id": "nope" })),
    )
    .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{}", missing.text());
    assert_eq!(kind(&missing), "not_found");

    // Logout needs the token too, then ends the session server-side.
    let refused = send(&web, Method::POST, "/logout", &[("cookie", &cookie)], None).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text());
    let out = send(
        &web,
        Method::POST,
        "/logout",
        &[("cookie", &cookie), ("x-csrf-token", &csrf)],
        None,
    )
    .await;
    assert_eq!(out.status, StatusCode::OK, "{}", out.text());
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));
    let after = send(
        &web,
        Method::GET,
        "/api/session",
        &[("cookie", &cookie)],
        None,
    )
    .await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED, "{}", after.text());
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_scopes_and_revocation() {
    let web = start().await;
    cli_ok(&web.host, &["users", "create", "web:olga"]).await;
    cli_ok(&web.host, &["roles", "grant", "web:olga", "owner"]).await;

    let admin = cli_json(
        &web.host,
        &["tokens", "create", "--user", "olga", "--scope", "admin"],
    )
    .await;
    let admin_secret = admin["secret"].as_str().unwrap().to_owned();
    assert!(admin_secret.starts_with("cpt_"), "{admin}");
    let chat = cli_json(
        &web.host,
        &["tokens", "create", "--user", "web:olga", "--scope", "chat"],
    )
    .await;
    let chat_secret = chat["secret"].as_str().unwrap().to_owned();
    let text = cli_ok(
        &web.host,
        &["tokens", "create", "--user", "olga", "--scope", "chat"],
    )
    .await;
    assert!(
        text.contains("shown once") && text.contains("cpt_"),
        "{text}"
    );
    cli_fails(
        &web.host,
        &["tokens", "create", "--user", "nobody", "--scope", "chat"],
        5,
    )
    .await;
    cli_fails(
        &web.host,
        &["tokens", "create", "--user", "olga", "--scope", "root"],
        2,
    )
    .await;

    let bearer = |secret: &str| format!("Bearer {secret}");
    let status = send(
        &web,
        Method::POST,
        "/api/v1/status",
        &[("authorization", &bearer(&admin_secret))],
        None,
    )
    .await;
    assert_eq!(status.status, StatusCode::OK, "{}", status.text());
    assert!(status.json().unwrap()["install_id"].is_string());
    // A bearer token needs no CSRF token; a chat token never reaches the admin API.
    let refused = send(
        &web,
        Method::POST,
        "/api/v1/status",
        &[("authorization", &bearer(&chat_secret))],
        None,
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text());
    assert!(
        refused.text().contains("scope `chat`"),
        "{}",
        refused.text()
    );
    let me = send(
        &web,
        Method::GET,
        "/api/session",
        &[("authorization", &bearer(&chat_secret))],
        None,
    )
    .await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.json().unwrap()["token_scope"], "chat");
    assert_eq!(me.json().unwrap()["admin"], false);
    let made_up = send(
        &web,
        Method::GET,
        "/api/session",
        &[("authorization", "Bearer cpt_0000")],
        None,
    )
    .await;
    assert_eq!(made_up.status, StatusCode::UNAUTHORIZED);
    let basic = send(
        &web,
        Method::GET,
        "/api/session",
        &[("authorization", "Basic b2xnYTp4")],
        None,
    )
    .await;
    assert_eq!(basic.status, StatusCode::UNAUTHORIZED);

    // Revoked: it stops working at once; the list never shows a secret.
    let id = admin["id"].as_str().unwrap();
    let out = cli_ok(&web.host, &["tokens", "revoke", id]).await;
    assert!(out.contains("revoked"), "{out}");
    cli_fails(&web.host, &["tokens", "revoke", id], 7).await;
    cli_fails(&web.host, &["tokens", "revoke", "tok-nope"], 5).await;
    let gone = send(
        &web,
        Method::POST,
        "/api/v1/status",
        &[("authorization", &bearer(&admin_secret))],
        None,
    )
    .await;
    assert_eq!(gone.status, StatusCode::UNAUTHORIZED, "{}", gone.text());
    let list = cli_json(&web.host, &["tokens", "list"]).await;
    assert_eq!(list.as_array().unwrap().len(), 3, "{list}");
    assert!(
        !list.to_string().contains("cpt_") && !list.to_string().contains("sha256"),
        "{list}"
    );
    let table = cli_ok(&web.host, &["tokens", "list"]).await;
    assert!(table.starts_with("ID") && table.contains(id), "{table}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_session_cannot_reach_the_admin_api() {
    let web = start().await;
    let (code, stderr) = passwd(&web, "bob", "bob's long password\n").await;
    assert_eq!(code, Some(0), "{stderr}");
    cli_ok(&web.host, &["members", "add", "main", "web:bob"]).await;
    let (cookie, csrf) = login(&web, "bob", "bob's long password").await.unwrap();
    let me = send(
        &web,
        Method::GET,
        "/api/session",
        &[("cookie", &cookie)],
        None,
    )
    .await
    .json()
    .unwrap();
    assert_eq!(me["admin"], false);
    assert_eq!(me["groups"], json!(["main"]));
    for path in [
        "/api/v1/status",
        "/api/v1/groups/list",
        "/api/v1/users/list",
    ] {
        let response = send(
            &web,
            Method::POST,
            path,
            &[("cookie", &cookie), ("x-csrf-token", &csrf)],
            Some(json!({})),
        )
        .await;
        assert_eq!(
            response.status,
            StatusCode::FORBIDDEN,
            "{path}: {}",
            response.text()
        );
        assert!(
            response.text().contains("neither an owner nor"),
            "{}",
            response.text()
        );
    }
    // A new password ends the user's sessions.
    let (code, stderr) = passwd(&web, "bob", "bob's newer password\n").await;
    assert_eq!(code, Some(0), "{stderr}");
    let ended = send(
        &web,
        Method::GET,
        "/api/session",
        &[("cookie", &cookie)],
        None,
    )
    .await;
    assert_eq!(ended.status, StatusCode::UNAUTHORIZED);
    assert!(login(&web, "bob", "bob's long password").await.is_err());
    assert!(login(&web, "bob", "bob's newer password").await.is_ok());
    // Even an admin-scope token of a member is not an admin.
    let token = cli_json(
        &web.host,
        &["tokens", "create", "--user", "bob", "--scope", "admin"],
    )
    .await;
    let bearer = format!("Bearer {}", token["secret"].as_str().unwrap());
    let response = send(
        &web,
        Method::POST,
        "/api/v1/status",
        &[("authorization", &bearer)],
        None,
    )
    .await;
    assert_eq!(response.status, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_login_link_works_once() {
    let web = start().await;
    let url = cli_ok(&web.host, &["web", "login-link", "--user", "carol"]).await;
    let url = url.trim();
    let base = web.host.web_url().unwrap();
    let path = url
        .strip_prefix(base.trim_end_matches('/'))
        .unwrap_or_else(|| panic!("{url} is not under {base}"))
        .to_owned();
    assert!(path.starts_with("/login/link/cpl_"), "{path}");
    cli_fails(
        &web.host,
        &["web", "login-link", "--user", "carol", "--ttl-minutes", "0"],
        6,
    )
    .await;

    let first = send(&web, Method::GET, &path, &[], None).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    assert_eq!(first.header("referrer-policy"), Some("same-origin"));
    let cookie = session_cookie(&first);
    let me = send(
        &web,
        Method::GET,
        "/api/session",
        &[("cookie", &cookie)],
        None,
    )
    .await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.json().unwrap()["user_id"], "web:carol");

    let again = send(&web, Method::GET, &path, &[], None).await;
    assert_eq!(again.status, StatusCode::GONE, "{}", again.text());
    assert!(again.text().contains("already used"));
    assert!(again.header("set-cookie").is_none());
    let forged = send(&web, Method::GET, "/login/link/cpl_forged", &[], None).await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_logins_are_rate_limited() {
    let web = start().await;
    let (code, stderr) = passwd(&web, "dave", "dave's long password\n").await;
    assert_eq!(code, Some(0), "{stderr}");
    for attempt in 0..5 {
        let response = login(&web, "dave", "not the password").await.unwrap_err();
        assert_eq!(
            response.status,
            StatusCode::UNAUTHORIZED,
            "attempt {attempt}"
        );
    }
    // Past the limit even the right password waits.
    let held = login(&web, "dave", "dave's long password")
        .await
        .unwrap_err();
    assert_eq!(
        held.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        held.text()
    );
    assert_eq!(kind(&held), "rate_limited");
    let retry_after: u64 = held.header("retry-after").unwrap().parse().unwrap();
    assert!(retry_after > 0 && retry_after <= 15 * 60, "{retry_after}");
    // Another account from the same address is not held yet (20 per address).
    cli_ok(&web.host, &["users", "create", "web:erin"]).await;
    let (code, _) = passwd(&web, "erin", "erin's long password\n").await;
    assert_eq!(code, Some(0));
    assert!(login(&web, "erin", "erin's long password").await.is_ok());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_openapi_document_lists_only_real_endpoints() {
    let web = start().await;
    let refused = send(&web, Method::GET, "/api/openapi.json", &[], None).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    cli_ok(&web.host, &["users", "create", "web:root"]).await;
    cli_ok(&web.host, &["roles", "grant", "web:root", "owner"]).await;
    let token = cli_json(
        &web.host,
        &["tokens", "create", "--user", "root", "--scope", "admin"],
    )
    .await;
    let bearer = format!("Bearer {}", token["secret"].as_str().unwrap());
    let document = send(
        &web,
        Method::GET,
        "/api/openapi.json",
        &[("authorization", &bearer)],
        None,
    )
    .await;
    assert_eq!(document.status, StatusCode::OK);
    let document = document.json().unwrap();
    assert_eq!(document["openapi"], "3.0.3");
    let paths = document["paths"].as_object().unwrap();
    assert!(paths.len() > 40, "{}", paths.len());
    // Every documented path is dispatched: with an empty body it answers, or refuses the
    // body, but never "no admin endpoint". (None of them changes anything without a body.)
    for path in paths.keys() {
        let response = send(
            &web,
            Method::POST,
            path,
            &[("authorization", &bearer)],
            Some(json!({})),
        )
        .await;
        assert!(
            !response.text().contains("no admin endpoint"),
            "{path}: {} {}",
            response.status,
            response.text()
        );
    }
    let unknown = send(
        &web,
        Method::POST,
        "/api/v1/groups/frobnicate",
        &[("authorization", &bearer)],
        Some(json!({})),
    )
    .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert!(
        unknown.text().contains("no admin endpoint"),
        "{}",
        unknown.text()
    );
}
