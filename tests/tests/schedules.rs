//! Scheduled tasks end to end: an agent schedules a one-shot task with `schedule_task`, its
//! container is stopped, and when the task comes due the host's sweep starts a container and
//! the `task` row starts a turn whose reply reaches the chat. A recurring task in a timezone
//! is listed, paused, resumed, run now and cancelled with `crabpot tasks`; a task in an
//! unknown timezone is refused and the agent is told why.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::{Platform, Say, after_tool_call, cli_fails, cli_json, cli_ok, tool_result};
use tests::docker::require_docker;
use tests::fake_model::{FakeModel, Reply, echo_reply};
use tests::host_process::{HostOptions, HostProcess, ModelConfig};

/// `unix_ms` as RFC 3339 in UTC (`2025-03-10T08:30:00Z`).
fn rfc3339(unix_ms: i64) -> String {
    let seconds = unix_ms.div_euclid(1000);
    let (days, day_seconds) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        day_seconds / 3600,
        day_seconds % 3600 / 60,
        day_seconds % 60
    )
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Tasks say what they are for; other messages are echoed; tool results and refusals are
/// repeated back, so the test can read them in the chat.
fn script(fake: &FakeModel) {
    fake.set_default_reply_fn(|request| {
        let last = request.last_user_text().unwrap_or_default();
        if after_tool_call(request) {
            Reply::text(format!(
                "tool said: {}",
                tool_result(request).unwrap_or_default()
            ))
        } else if last.contains("] task t-") && last.contains("water the plants") {
            Reply::text("time to water the plants!")
        } else if last.contains("] task t-") && last.contains("check the pots") {
            Reply::text("checked the pots")
        } else if last.contains("was refused") {
            Reply::text(format!("noted: {last}"))
        } else {
            echo_reply(request)
        }
    });
}

fn task_list(list: &Value) -> Vec<Value> {
    list.as_array().unwrap().clone()
}

/// Polls `crabpot <args> --json` until `done` holds for the (non-empty) list.
async fn wait_for_list(
    host: &HostProcess,
    args: &[&str],
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let list = task_list(&cli_json(host, args).await);
        if !list.is_empty() && done(&list) {
            return list;
        }
        assert!(
            Instant::now() < deadline,
            "`crabpot {}` never got there: {list:?}",
            args.join(" ")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scheduled_one_shot_task_fires_and_starts_a_turn() {
    if !require_docker("a_scheduled_one_shot_task_fires_and_starts_a_turn").await {
        return;
    }
    let fake = FakeModel::start().unwrap();
    script(&fake);
    let host = HostProcess::start(
        HostOptions::with_model(ModelConfig::openai(&fake)).env("CRABPOT_SWEEP_INTERVAL_MS", "500"),
    )
    .await
    .unwrap();
    let mut platform = Platform::connect(&host).await;
    // Whole seconds: `at` is written in RFC 3339 without fractions.
    let at = (now_ms() + 15_000) / 1000 * 1000;
    fake.push(Reply::tool_call(
        "schedule_task",
        json!({"prompt": "water the plants", "at": rfc3339(at)}),
    ));
    platform.say(&Say::dm("ann", "local"), "remind me").await;
    let (reply, _) = platform.reply_containing("local", "tool said:").await;
    assert!(reply.contains("scheduled"), "{reply}");

    let list = task_list(&cli_json(&host, &["tasks", "list"]).await);
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["status"], "pending");
    assert_eq!(list[0]["schedule"], "once");
    assert_eq!(list[0]["next_run_at"], json!(at));
    let session = list[0]["session_id"].as_str().unwrap().to_owned();

    // No container until the task is due: the sweep must start one.
    cli_ok(&host, &["sessions", "stop", &session]).await;
    let sessions = cli_json(&host, &["sessions", "list"]).await;
    assert_eq!(sessions[0]["container"], "none", "{sessions}");
    assert!(
        now_ms() < at,
        "the container was stopped before the task came due"
    );
    let (reply, _) = platform
        .reply_containing("local", "time to water the plants!")
        .await;
    assert_eq!(reply, "time to water the plants!");
    assert!(now_ms() >= at, "not before its time");
    let task_request = fake
        .requests()
        .into_iter()
        .rev()
        .find(|r| {
            r.last_user_text()
                .is_some_and(|t| t.contains("water the plants"))
        })
        .unwrap();
    let text = task_request.last_user_text().unwrap();
    assert!(
        text.contains(&format!("task {}", list[0]["task_id"].as_str().unwrap())),
        "{text}"
    );

    // The run's ack is copied after its reply is delivered.
    let done = wait_for_list(&host, &["tasks", "list", "--all"], |list| {
        list[0]["status"] == "completed"
    })
    .await;
    assert_eq!(done.len(), 1, "{done:?}");
    assert!(task_list(&cli_json(&host, &["tasks", "list"]).await).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_operator_pauses_resumes_runs_and_cancels_a_recurring_task() {
    if !require_docker("the_operator_pauses_resumes_runs_and_cancels_a_recurring_task").await {
        return;
    }
    let fake = FakeModel::start().unwrap();
    script(&fake);
    let host = HostProcess::start(HostOptions::with_model(ModelConfig::openai(&fake)))
        .await
        .unwrap();
    let mut platform = Platform::connect(&host).await;
    fake.push(Reply::tool_call(
        "schedule_task",
        json!({"prompt": "check the pots", "cron": "0 9 * * *", "timezone": "Europe/Paris"}),
    ));
    platform
        .say(&Say::dm("ann", "local"), "every morning")
        .await;
    platform.reply_containing("local", "tool said:").await;
    let list = task_list(&cli_json(&host, &["tasks", "list"]).await);
    assert_eq!(list.len(), 1, "{list:?}");
    let task = list[0]["task_id"].as_str().unwrap().to_owned();
    assert_eq!(list[0]["schedule"], "CRON_TZ=Europe/Paris 0 9 * * *");
    let next = list[0]["next_run_at"].as_i64().unwrap();
    assert!(
        next > now_ms() && next - now_ms() <= 25 * 3600 * 1000,
        "{next}"
    );
    let hour = list[0]["next_run"].as_str().unwrap();
    assert!(
        hour.ends_with(":00:00Z") && (hour.contains("T07:") || hour.contains("T08:")),
        "{hour}"
    );

    cli_ok(&host, &["tasks", "pause", &task]).await;
    assert_eq!(
        cli_json(&host, &["tasks", "list"]).await[0]["status"],
        "paused"
    );
    cli_ok(&host, &["tasks", "resume", &task]).await;
    assert_eq!(
        cli_json(&host, &["tasks", "list"]).await[0]["status"],
        "pending"
    );
    let table = cli_ok(&host, &["tasks", "list"]).await;
    assert!(
        table.contains(&task) && table.contains("check the pots"),
        "{table}"
    );

    // Run now: one extra run, and the schedule stays.
    cli_ok(&host, &["tasks", "run-now", &task]).await;
    platform.reply_containing("local", "checked the pots").await;
    // The extra run finishes (its ack is copied); the scheduled run is still there.
    let list = wait_for_list(&host, &["tasks", "list"], |list| {
        list[0]["next_run_at"].as_i64() == Some(next)
    })
    .await;
    assert_eq!(list.len(), 1, "{list:?}");

    cli_ok(&host, &["tasks", "cancel", &task]).await;
    assert!(task_list(&cli_json(&host, &["tasks", "list"]).await).is_empty());
    let all = task_list(&cli_json(&host, &["tasks", "list", "--all"]).await);
    assert_eq!(all[0]["status"], "cancelled", "{all:?}");
    let stderr = cli_fails(&host, &["tasks", "pause", "t-0000000000"], 5).await;
    assert!(stderr.contains("no scheduled task"), "{stderr}");
    cli_fails(&host, &["tasks", "resume", &task], 5).await;

    // A timezone that does not exist: refused, and the agent is told why.
    fake.push(Reply::tool_call(
        "schedule_task",
        json!({"prompt": "x", "cron": "0 9 * * *", "timezone": "Mars/Olympus"}),
    ));
    platform.say(&Say::dm("ann", "local"), "on mars").await;
    let (reply, _) = platform.reply_containing("local", "noted:").await;
    assert!(reply.contains("schedule_task t-"), "{reply}");
    assert!(
        reply.contains("\"Mars/Olympus\" is not a known IANA timezone"),
        "{reply}"
    );
    assert_eq!(
        task_list(&cli_json(&host, &["tasks", "list", "--all"]).await).len(),
        1
    );
}
