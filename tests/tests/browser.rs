//! The web chat in a real browser: Debian's Chromium, headless, driven over WebDriver
//! (`tests::browser`), against a real `crabpot serve`, a real container and the fake model.
//!
//! One person logs in with the password the operator set, opens a chat with `main`, sees the
//! streamed reply grow and then settle into one message, answers the agent's question by
//! clicking its button, and gets a reply full of `<script>` and `<img onerror>` payloads shown
//! as text, with no script run. An owner approves a held message from the dashboard, decided
//! as that owner with the CLI's approver checks. A screenshot of each page is saved under the test output
//! (`$CARGO_TARGET_DIR/test-output/browser/`, or `CRABPOT_TEST_OUTPUT`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;
use support::{Platform, Say, after_tool_call, cli_ok, tool_result};
use tests::browser::Browser;
use tests::docker::require_docker;
use tests::fake_model::{FakeModel, Reply, echo_reply};
use tests::host_process::{HostOptions, HostProcess, ModelConfig};

const PAGE: Duration = Duration::from_secs(20);
/// A turn through a container, its start included.
const TURN: Duration = Duration::from_secs(120);
const PASSWORD: &str = "correct horse battery";

fn output_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CRABPOT_TEST_OUTPUT").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("browser");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| tests::repo_root().join("target"));
    target.join("test-output").join("browser")
}

/// The texts of the shown messages matching `css`.
async fn texts(browser: &Browser, css: &str) -> Vec<String> {
    let mut out = Vec::new();
    for element in browser.find_all(css).await.unwrap() {
        out.push(browser.text(&element).await.unwrap_or_default());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_chats_in_the_browser() {
    if !require_docker("a_person_chats_in_the_browser").await {
        return;
    }
    let fake = FakeModel::start().unwrap();
    fake.set_default_reply_fn(|request| {
        if after_tool_call(request) {
            Reply::text(format!(
                "You chose {}",
                tool_result(request).unwrap_or_default()
            ))
        } else {
            echo_reply(request)
        }
    });
    let grown = "This reply grows a few words at a time, and then it settles.";
    fake.push(Reply::text(grown).streamed_slowly(6, Duration::from_millis(150)));
    let host = HostProcess::start(HostOptions::with_model(ModelConfig::openai(&fake)))
        .await
        .unwrap();
    cli_ok(&host, &["users", "create", "web:ann"]).await;
    cli_ok(&host, &["members", "add", "main", "web:ann"]).await;
    let set = host
        .run_cli_with_stdin(&["users", "passwd", "ann"], &format!("{PASSWORD}\n"))
        .await
        .unwrap();
    assert!(set.status.success(), "users passwd: {}", set.stderr);
    let web = host.web_url().unwrap();
    let shots = output_dir();
    let browser = Browser::start().await.unwrap();

    // Log in.
    browser.goto(&format!("{web}/login")).await.unwrap();
    browser.screenshot(&shots.join("login.png")).await.unwrap();
    log_in(&browser, &web, "ann").await;
    browser.screenshot(&shots.join("home.png")).await.unwrap();

    // A new chat with main; the reply streams in.
    browser.goto(&format!("{web}/chat")).await.unwrap();
    browser
        .find("#group option[value=main]", PAGE)
        .await
        .unwrap();
    let new_chat = browser
        .find("#new-conversation button", PAGE)
        .await
        .unwrap();
    browser.click(&new_chat).await.unwrap();
    let text = browser
        .find("#composer:not([hidden]) #text", PAGE)
        .await
        .unwrap();
    browser.type_into(&text, "tell me something").await.unwrap();
    let send = browser.find("#send", PAGE).await.unwrap();
    browser.click(&send).await.unwrap();
    // Every distinct draft text seen while polling, in order.
    let drafts = std::sync::Mutex::new(Vec::<String>::new());
    let settled = browser
        .wait_for("the reply to settle", TURN, || async {
            for draft in texts(&browser, ".message.draft").await {
                let mut seen = drafts.lock().unwrap();
                if !draft.is_empty() && seen.last() != Some(&draft) {
                    seen.push(draft);
                }
            }
            let agent = texts(&browser, ".message.agent:not(.draft)").await;
            Ok(agent.into_iter().find(|t| t.contains("settles")))
        })
        .await
        .unwrap();
    let drafts = drafts.into_inner().unwrap();
    assert!(drafts.len() >= 2, "the reply grew in place: {drafts:?}");
    assert!(
        drafts.windows(2).all(|pair| pair[0].len() < pair[1].len()
            && grown.starts_with(pair[1].trim_end_matches('…').trim_end())),
        "each draft extends the one before: {drafts:?}"
    );
    assert_eq!(settled, grown);
    assert!(
        texts(&browser, ".message.draft").await.is_empty(),
        "the final reply took the draft's place"
    );
    browser.screenshot(&shots.join("chat.png")).await.unwrap();

    // A file the person attaches lands in the session's inbox, named in the message: here the
    // first message of a new conversation, so of a session that does not exist yet.
    browser.click(&new_chat).await.unwrap();
    browser
        .wait_for("the second conversation", PAGE, || async {
            Ok((browser.find_all("#conversations a").await?.len() == 2).then_some(()))
        })
        .await
        .unwrap();
    let upload_dir = tempfile::tempdir().unwrap();
    let upload = upload_dir.path().join("clay-notes.txt");
    std::fs::write(&upload, "two parts clay, one part water\n").unwrap();
    let files = browser.find("#files", PAGE).await.unwrap();
    browser
        .type_into(&files, &upload.display().to_string())
        .await
        .unwrap();
    let text = browser.find("#text", PAGE).await.unwrap();
    browser.type_into(&text, "here are my notes").await.unwrap();
    browser.click(&send).await.unwrap();
    let request = browser
        .wait_for("the model to see the attachment", TURN, || async {
            Ok(fake
                .requests()
                .into_iter()
                .rev()
                .find(|request| request.body.to_string().contains("here are my notes")))
        })
        .await
        .unwrap();
    let body = request.body.to_string();
    assert!(
        body.contains("[attachments: /session/in/inbox/") && body.contains("clay-notes.txt"),
        "the agent is told where the file is: {body}"
    );
    let copied = std::fs::read_dir(host.sessions_dir())
        .unwrap()
        .flatten()
        .flat_map(|group| {
            std::fs::read_dir(group.path())
                .into_iter()
                .flatten()
                .flatten()
        })
        .filter_map(|session| std::fs::read_dir(session.path().join("in/inbox")).ok())
        .flatten()
        .flatten()
        .map(|message| message.path().join("clay-notes.txt"))
        .find(|path| path.is_file())
        .expect("the upload is in a session's inbox");
    assert_eq!(
        std::fs::read_to_string(copied).unwrap(),
        "two parts clay, one part water\n"
    );
    browser
        .wait_for("the upload's reply", TURN, || async {
            let agent = texts(&browser, ".message.agent:not(.draft)").await;
            Ok(agent.into_iter().find(|t| t.contains("here are my notes")))
        })
        .await
        .unwrap();

    // The agent's plan shows as a checklist, updated in place.
    fake.push(Reply::tool_call(
        "todo_write",
        json!({"items": [
            {"text": "mix the clay", "status": "done"},
            {"text": "shape the pot", "status": "in_progress"},
            {"text": "fire it", "status": "pending"},
        ]}),
    ));
    fake.push(Reply::text("Planned."));
    let text = browser.find("#text", PAGE).await.unwrap();
    browser.type_into(&text, "make a plan").await.unwrap();
    browser.click(&send).await.unwrap();
    let plan = browser
        .wait_for("the plan's checklist", TURN, || async {
            let state = browser
                .execute(
                    "return [...document.querySelectorAll('#messages .plan .step')]\
                     .map(li => [li.textContent.trim(), li.querySelector('input').checked, \
                                 li.querySelector('input').indeterminate]);",
                    json!([]),
                )
                .await?;
            Ok(state
                .as_array()
                .is_some_and(|steps| steps.len() == 3)
                .then_some(state))
        })
        .await
        .unwrap();
    assert_eq!(
        plan,
        json!([
            ["mix the clay", true, false],
            ["shape the pot", false, true],
            ["fire it", false, false]
        ])
    );
    browser
        .wait_for("the turn's reply", TURN, || async {
            let agent = texts(&browser, ".message.agent:not(.draft)").await;
            Ok(agent.into_iter().find(|t| t.contains("Planned.")))
        })
        .await
        .unwrap();

    // A question: its options are buttons, and clicking one answers it.
    fake.push(Reply::tool_call(
        "ask_user_question",
        json!({"question": "Which colour for the pot?", "options": ["red", "green"], "timeout_seconds": 120}),
    ));
    browser.type_into(&text, "paint it").await.unwrap();
    browser.click(&send).await.unwrap();
    let green = browser
        .wait_for("the question's buttons", TURN, || async {
            for button in browser.find_all(".message .options button").await? {
                if browser.text(&button).await? == "green" {
                    return Ok(Some(button));
                }
            }
            Ok(None)
        })
        .await
        .unwrap();
    browser
        .screenshot(&shots.join("question.png"))
        .await
        .unwrap();
    browser.click(&green).await.unwrap();
    browser
        .wait_for("the answer's reply", TURN, || async {
            let agent = texts(&browser, ".message.agent:not(.draft)").await;
            Ok(agent.into_iter().find(|t| t.contains("You chose")))
        })
        .await
        .unwrap();

    // Agent output is hostile: it shows as text, and nothing in it runs.
    let payload = "<script>window.__pwned = 1</script><img src=x onerror=\"window.__pwned = 2\"> \
                   [click](javascript:window.__pwned=3) and **bold**";
    fake.push(Reply::text(payload));
    browser.type_into(&text, "be nasty").await.unwrap();
    browser.click(&send).await.unwrap();
    let shown = browser
        .wait_for("the hostile reply", TURN, || async {
            let agent = texts(&browser, ".message.agent:not(.draft)").await;
            Ok(agent.into_iter().find(|t| t.contains("onerror")))
        })
        .await
        .unwrap();
    assert!(
        shown.contains("<script>window.__pwned = 1</script>"),
        "{shown}"
    );
    let probe = browser
        .execute(
            "return {pwned: window.__pwned === undefined ? null : window.__pwned, \
                     scripts: document.querySelectorAll('#messages script').length, \
                     images: document.querySelectorAll('#messages img').length, \
                     links: [...document.querySelectorAll('#messages a')].map(a => a.href), \
                     bold: document.querySelectorAll('#messages strong').length};",
            json!([]),
        )
        .await
        .unwrap();
    assert_eq!(probe["pwned"], serde_json::Value::Null, "{probe}");
    assert_eq!(probe["scripts"], 0, "{probe}");
    assert_eq!(probe["images"], 0, "{probe}");
    assert!(
        probe["links"]
            .as_array()
            .unwrap()
            .iter()
            .all(|href| !href.as_str().unwrap_or_default().starts_with("javascript:")),
        "{probe}"
    );
    assert!(
        probe["bold"].as_i64().unwrap() >= 1,
        "Markdown still renders: {probe}"
    );
    browser
        .screenshot(&shots.join("hostile.png"))
        .await
        .unwrap();

    // On a phone-sized screen nothing runs off the side and the message box stays in view.
    browser.set_window_size(390, 844).await.unwrap();
    // (The list slides away with a short transition: wait for it to settle.)
    let fits = browser
        .wait_for("the phone layout", PAGE, || async {
            let fits = browser
                .execute(
                    "const box = document.getElementById('composer').getBoundingClientRect(); \
                     return {overflow: document.documentElement.scrollWidth - window.innerWidth, \
                             composer_right: box.right, width: window.innerWidth, \
                             sidebar_hidden: document.getElementById('sidebar') \
                                 .getBoundingClientRect().right <= 0};",
                    json!([]),
                )
                .await?;
            Ok((fits["sidebar_hidden"] == true).then_some(fits))
        })
        .await
        .unwrap();
    assert!(fits["overflow"].as_f64().unwrap() <= 0.0, "{fits}");
    assert!(
        fits["composer_right"].as_f64().unwrap() <= fits["width"].as_f64().unwrap(),
        "{fits}"
    );
    assert_eq!(fits["sidebar_hidden"], true, "the list folds away: {fits}");
    browser.screenshot(&shots.join("phone.png")).await.unwrap();
}

/// Logs `name` in through the login form and waits until the browser has left it.
async fn log_in(browser: &Browser, web: &str, name: &str) {
    browser.goto(&format!("{web}/login")).await.unwrap();
    let user = browser.find("#username", PAGE).await.unwrap();
    browser.type_into(&user, name).await.unwrap();
    let password = browser.find("#password", PAGE).await.unwrap();
    browser.type_into(&password, PASSWORD).await.unwrap();
    let submit = browser
        .find("form button[type=submit]", PAGE)
        .await
        .unwrap();
    browser.click(&submit).await.unwrap();
    browser
        .wait_for("the login to land", PAGE, || async {
            Ok((!browser.current_url().await?.ends_with("/login")).then_some(()))
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_approves_a_held_message_from_the_dashboard() {
    if !require_docker("an_owner_approves_a_held_message_from_the_dashboard").await {
        return;
    }
    let fake = FakeModel::start().unwrap();
    let host = HostProcess::start(HostOptions::with_model(ModelConfig::openai(&fake)))
        .await
        .unwrap();
    cli_ok(&host, &["users", "create", "web:olive"]).await;
    cli_ok(&host, &["roles", "grant", "web:olive", "owner"]).await;
    let set = host
        .run_cli_with_stdin(&["users", "passwd", "olive"], &format!("{PASSWORD}\n"))
        .await
        .unwrap();
    assert!(set.status.success(), "users passwd: {}", set.stderr);
    cli_ok(
        &host,
        &[
            "chats",
            "create",
            "cli",
            "room-1",
            "--group-chat",
            "--unknown-senders",
            "request_approval",
        ],
    )
    .await;
    cli_ok(&host, &["wirings", "create", "cli/room-1", "main"]).await;
    let mut platform = Platform::connect(&host).await;
    let held = Platform::held(
        &platform
            .say(&Say::group("sam", "room-1", true), "@crab hello from sam")
            .await,
    );
    assert_eq!(held.len(), 1);
    let id = held[0].clone();

    let web = host.web_url().unwrap();
    let browser = Browser::start().await.unwrap();
    log_in(&browser, &web, "olive").await;
    browser.goto(&format!("{web}/dashboard")).await.unwrap();
    browser
        .wait_for("the approval in the dashboard", PAGE, || async {
            for row in browser.find_all("#approvals tbody tr").await? {
                if browser.text(&row).await?.contains(&id) {
                    return Ok(Some(()));
                }
            }
            Ok(None)
        })
        .await
        .unwrap();
    browser
        .wait_for("the status to show the queue", PAGE, || async {
            let status = browser.find("#status .cards", PAGE).await?;
            Ok(browser
                .text(&status)
                .await?
                .contains("approvals waiting")
                .then_some(()))
        })
        .await
        .unwrap();
    browser
        .screenshot(&output_dir().join("dashboard.png"))
        .await
        .unwrap();
    // The tables are rebuilt every few seconds: find the button and press it in one go,
    // looking again when the row was replaced in between.
    browser
        .wait_for("the approve button to be pressed", PAGE, || async {
            for row in browser.find_all("#approvals tbody tr").await? {
                if browser.text(&row).await?.contains(&id) {
                    let buttons = browser.find_all("#approvals button.approve").await?;
                    if let Some(button) = buttons.into_iter().next() {
                        browser.click(&button).await?;
                        return Ok(Some(()));
                    }
                }
            }
            Ok(None)
        })
        .await
        .unwrap();
    // Decided as the person logged in, with the CLI's own checks; the held message replays.
    platform.reply_containing("room-1", "hello from sam").await;
    let shown = support::cli_json(&host, &["approvals", "show", &id]).await;
    assert_eq!(shown["approval"]["status"], "approved", "{shown}");
    let log = shown["log"].as_array().unwrap();
    assert!(
        log.iter().any(|entry| entry["actor"] == "web:olive"),
        "decided as web:olive: {log:?}"
    );
    // The session the replay started shows with its container and its token usage.
    browser
        .wait_for("the session in the dashboard", PAGE, || async {
            for row in browser.find_all("#sessions tbody tr").await? {
                let text = browser.text(&row).await?;
                if text.contains("main") && text.contains("running") && text.contains(" / ") {
                    return Ok(Some(()));
                }
            }
            Ok(None)
        })
        .await
        .unwrap();
    // An edit from the dashboard is the admin API's `groups update`.
    browser
        .wait_for("the name to be typed and saved", PAGE, || async {
            let name = browser
                .find("#groups tbody tr input[aria-label=name]", PAGE)
                .await?;
            // While the input has focus the table is not rebuilt (see `editing` in the page).
            browser.click(&name).await?;
            browser.clear(&name).await?;
            browser.type_into(&name, "Main agent").await?;
            let save = browser.find("#groups tbody tr .edit button", PAGE).await?;
            browser.click(&save).await?;
            Ok(Some(()))
        })
        .await
        .unwrap();
    browser
        .wait_for("the new name", PAGE, || async {
            let group = support::cli_json(&host, &["groups", "show", "main"]).await;
            Ok(
                (group["name"] == "Main agent" || group["group"]["name"] == "Main agent")
                    .then_some(()),
            )
        })
        .await
        .unwrap();
    browser
        .wait_for("the approval to leave the list", PAGE, || async {
            let text = match browser
                .find_all("#approvals .body")
                .await?
                .into_iter()
                .next()
            {
                Some(body) => browser.text(&body).await?,
                None => String::new(),
            };
            Ok((!text.contains(&id)).then_some(()))
        })
        .await
        .unwrap();
}
