//! Email end to end: a real `crabpot serve` with the email adapter on, reading the bot's
//! mailbox over IMAP (IDLE, STARTTLS) and answering over SMTP (STARTTLS, SASL) on a private
//! Postfix and Dovecot (`tests::mail_server`), real containers and the fake model.
//!
//! - an email gets a reply in its thread (`In-Reply-To`, `References`, `Re:`), multipart
//!   with a plain-text part, and a reply to the reply stays in that thread;
//! - an auto-reply (`Auto-Submitted`) and list mail (`List-Id`) are not answered, while a
//!   person's email sent after them is;
//! - an attachment goes both ways (into the session's inbox; `send_file` out as an
//!   attachment with the same bytes);
//! - a host stopped, or killed, loses and repeats nothing (the UID is stored only once each
//!   message is durable);
//! - where the IMAP server has no IDLE, the mailbox is polled and mail is still answered;
//! - over implicit TLS (IMAPS, and SMTP as on port 465) an email is answered too;
//! - a reply while the SMTP server is down is retried until it is back (the adapter's health
//!   says meanwhile that sending fails) and arrives once;
//! - in `chat_mode = mailbox` the whole mailbox is one group chat and replies still go to
//!   the sender, in the thread;
//! - a refused password fails only the email adapter (`crabpot channels list` says why,
//!   without the password).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use mail_parser::MimeHeaders;
use serde_json::json;
use std::time::{Duration, Instant};
use support::{TURN, central, cli_json, cli_ok};
use tests::docker::require_docker;
use tests::fake_model::{FakeModel, Reply};
use tests::host_process::{HostOptions, HostProcess, ModelConfig};
use tests::mail_server::{ALICE, BOT, Mail, MailServer};

async fn start_host(fake: &FakeModel, mail: &MailServer) -> HostProcess {
    // IDLE is renewed often, so a lost notification would show as a slow test, not a hang.
    start_host_polling_every(fake, mail, 20).await
}

async fn start_host_polling_every(
    fake: &FakeModel,
    mail: &MailServer,
    seconds: u32,
) -> HostProcess {
    start_host_with(fake, mail, seconds, &[]).await
}

/// A host with the email adapter on `mail`, IDLE renewed (or the mailbox polled) every
/// `seconds`, and the `extra` variables.
async fn start_host_with(
    fake: &FakeModel,
    mail: &MailServer,
    seconds: u32,
    extra: &[(&str, &str)],
) -> HostProcess {
    let mut options = HostOptions::with_model(ModelConfig::openai(fake));
    for (name, value) in extra {
        options = options.env(*name, *value);
    }
    for (name, value) in mail.bot_env() {
        options = options.env(name, value);
    }
    options = options.env("CRABPOT_EMAIL_POLL_SECONDS", seconds.to_string());
    let host = HostProcess::start(options).await.unwrap();
    // Once connected, its position in the mailbox is stored: mail sent from now on is taken.
    wait_health(&host, mail, "connected").await;
    host
}

/// The email adapter's health in `crabpot channels list`.
async fn email_health(host: &HostProcess) -> serde_json::Value {
    let listed = cli_json(host, &["channels", "list"]).await;
    listed
        .as_array()
        .unwrap()
        .iter()
        .find(|channel| channel["channel_type"] == "email")
        .unwrap_or_else(|| panic!("email is listed: {listed}"))["health"]
        .clone()
}

/// Waits until `crabpot channels list` shows the email adapter in `state`.
async fn wait_health(host: &HostProcess, mail: &MailServer, state: &str) -> serde_json::Value {
    let deadline = Instant::now() + TURN;
    loop {
        let health = email_health(host).await;
        if health["state"] == state {
            return health;
        }
        assert!(
            Instant::now() < deadline,
            "the email adapter never got {state}: {health}\n{}\n{}",
            host.log_tail(40),
            mail.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Creates the chat `email/<alice>` and wires it to `main`.
async fn wire_alice(host: &HostProcess) {
    cli_ok(host, &["chats", "create", "email", "--", ALICE]).await;
    cli_ok(
        host,
        &["wirings", "create", &format!("email/{ALICE}"), "main"],
    )
    .await;
}

/// A plain-text email from Alice to the bot.
fn email(message_id: &str, subject: &str, thread: Option<(&str, &str)>, body: &str) -> String {
    let mut headers = format!(
        "From: Alice Liddell <{ALICE}>\nTo: Crab Bot <{BOT}>\nSubject: {subject}\n\
         Message-ID: <{message_id}>\nDate: Thu, 03 Dec 2026 12:00:00 +0000\nMIME-Version: 1.0\n\
         Content-Type: text/plain; charset=utf-8\n"
    );
    if let Some((in_reply_to, references)) = thread {
        headers.push_str(&format!(
            "In-Reply-To: <{in_reply_to}>\nReferences: {references}\n"
        ));
    }
    format!("{headers}\n{body}\n")
}

fn text_of(mail: &Mail) -> String {
    mail.parsed()
        .body_text(0)
        .map(|text| text.into_owned())
        .unwrap_or_default()
}

/// The first mail Alice got whose text contains `needle`.
async fn reply_containing(mail: &MailServer, needle: &str) -> Mail {
    mail.wait_mail(
        ALICE,
        &format!("a reply containing {needle:?}"),
        TURN,
        |box_| box_.iter().find(|m| text_of(m).contains(needle)).cloned(),
    )
    .await
    .unwrap()
}

fn count_containing(mail: &MailServer, needle: &str) -> usize {
    mail.mailbox(ALICE)
        .iter()
        .filter(|m| text_of(m).contains(needle))
        .count()
}

fn header(mail: &Mail, name: &str) -> String {
    mail.parsed()
        .headers_raw()
        .find(|(header, _)| header.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.trim().to_owned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_email_gets_a_threaded_reply_and_robots_are_not_answered() {
    if !require_docker("an_email_gets_a_threaded_reply_and_robots_are_not_answered").await {
        return;
    }
    let mail = MailServer::start().await.unwrap();
    let fake = FakeModel::start().unwrap();
    let host = start_host(&fake, &mail).await;
    wire_alice(&host).await;
    assert!(
        host.log().contains("idle=true"),
        "Dovecot has IDLE: {}",
        host.log_tail(20)
    );

    // 1. An email gets a reply in its thread, with a plain-text and an HTML part.
    let first = "first.4711@crabpot.test";
    mail.send(ALICE, BOT, &email(first, "Crab pots", None, "hello crab"))
        .await
        .unwrap();
    let reply = reply_containing(&mail, "hello crab").await;
    let parsed = reply.parsed();
    assert_eq!(parsed.subject(), Some("Re: Crab pots"));
    assert_eq!(header(&reply, "In-Reply-To"), format!("<{first}>"));
    assert!(
        header(&reply, "References").contains(first),
        "{}",
        header(&reply, "References")
    );
    assert_eq!(header(&reply, "Auto-Submitted"), "auto-replied");
    assert_eq!(
        parsed
            .from()
            .and_then(|f| f.first())
            .and_then(|a| a.address()),
        Some(BOT)
    );
    assert!(text_of(&reply).starts_with("echo:"), "{}", text_of(&reply));
    assert_eq!(parsed.text_body_count(), 1, "one text/plain part");
    let plain = parsed.text_part(0).unwrap();
    assert_eq!(plain.content_type().unwrap().subtype(), Some("plain"));
    assert!(
        parsed
            .body_html(0)
            .is_some_and(|html| html.contains("hello crab"))
    );
    let reply_id = parsed.message_id().unwrap().to_owned();
    assert!(reply_id.starts_with("crabpot."), "{reply_id}");
    let users = cli_json(&host, &["users", "list"]).await.to_string();
    assert!(
        users.contains(&format!("email:{ALICE}")) && users.contains("Alice Liddell"),
        "{users}"
    );

    // Alice answers the reply: the next reply stays in the thread.
    let second = "second.4712@crabpot.test";
    let references = format!("<{first}> <{reply_id}>");
    mail.send(
        ALICE,
        BOT,
        &email(
            second,
            "Re: Crab pots",
            Some((&reply_id, &references)),
            "and the bait?",
        ),
    )
    .await
    .unwrap();
    let answer = reply_containing(&mail, "and the bait?").await;
    assert_eq!(answer.parsed().subject(), Some("Re: Crab pots"));
    assert_eq!(header(&answer, "In-Reply-To"), format!("<{second}>"));
    let references = header(&answer, "References");
    assert!(
        references.starts_with(&format!("<{first}>")) && references.contains(&reply_id),
        "{references}"
    );

    // 2. An auto-reply and a list mail are not answered; a person's mail after them is.
    let vacation = format!(
        "From: Alice Liddell <{ALICE}>\nTo: {BOT}\nSubject: Out of office\n\
         Message-ID: <vacation.1@crabpot.test>\nAuto-Submitted: auto-replied\n\n\
         vacation notice: I am away\n"
    );
    mail.send(ALICE, BOT, &vacation).await.unwrap();
    let list = format!(
        "From: Alice Liddell <{ALICE}>\nTo: {BOT}\nSubject: [crabs] digest\n\
         Message-ID: <list.1@crabpot.test>\nList-Id: Crab lovers <crabs.lists.crabpot.test>\n\n\
         list digest: ten crabs\n"
    );
    mail.send(ALICE, BOT, &list).await.unwrap();
    mail.send(
        ALICE,
        BOT,
        &email(
            "after.1@crabpot.test",
            "Still there?",
            None,
            "after the robots",
        ),
    )
    .await
    .unwrap();
    reply_containing(&mail, "after the robots").await;
    // Mail is taken in UID order, so the robots' mail was seen (and dropped) before it.
    assert_eq!(count_containing(&mail, "vacation notice"), 0);
    assert_eq!(count_containing(&mail, "list digest"), 0);
    let asked: Vec<String> = fake
        .requests()
        .iter()
        .filter_map(|r| r.last_user_text())
        .collect();
    assert!(
        !asked
            .iter()
            .any(|text| text.contains("vacation notice") || text.contains("list digest")),
        "{asked:?}"
    );
    assert!(host.log().contains("automatic email"), "the drop is logged");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_attachment_goes_both_ways() {
    if !require_docker("an_attachment_goes_both_ways").await {
        return;
    }
    let mail = MailServer::start().await.unwrap();
    let fake = FakeModel::start().unwrap();
    let host = start_host(&fake, &mail).await;
    wire_alice(&host).await;

    // Alice's file reaches the session's inbox and the model.
    let with_file = format!(
        "From: Alice Liddell <{ALICE}>\nTo: {BOT}\nSubject: Notes\n\
         Message-ID: <notes.1@crabpot.test>\nMIME-Version: 1.0\n\
         Content-Type: multipart/mixed; boundary=\"b0\"\n\n\
         --b0\nContent-Type: text/plain; charset=utf-8\n\nread this\n\
         --b0\nContent-Type: text/plain; name=\"notes.txt\"\n\
         Content-Disposition: attachment; filename=\"notes.txt\"\n\
         Content-Transfer-Encoding: base64\n\nY3JhYiBwb3RzOiAzCg==\n--b0--\n"
    );
    mail.send(ALICE, BOT, &with_file).await.unwrap();
    reply_containing(&mail, "read this").await;
    let session = host.session_dir("main").unwrap();
    let copies = support::find_files(&session, "notes.txt");
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert_eq!(std::fs::read(&copies[0]).unwrap(), b"crab pots: 3\n");
    assert!(
        fake.requests()
            .iter()
            .any(|r| r.last_user_text().unwrap_or_default().contains("notes.txt")),
        "the model saw the attachment"
    );

    // The agent's send_file arrives as an attachment with the same bytes.
    fake.push(Reply::tool_call(
        "write_file",
        json!({"path": "report.bin", "content": "crab pots: 4\n\u{1}\u{2}"}),
    ));
    fake.push(Reply::tool_call(
        "send_file",
        json!({"path": "report.bin", "text": "here is the report"}),
    ));
    fake.push(Reply::text("done"));
    mail.send(
        ALICE,
        BOT,
        &email(
            "report.1@crabpot.test",
            "Report",
            None,
            "send me the report",
        ),
    )
    .await
    .unwrap();
    let with_report = mail
        .wait_mail(ALICE, "the report", TURN, |box_| {
            box_.iter()
                .find(|m| m.parsed().attachment_count() > 0)
                .cloned()
        })
        .await
        .unwrap();
    let parsed = with_report.parsed();
    let attachment = parsed.attachment(0).unwrap();
    assert_eq!(attachment.attachment_name(), Some("report.bin"));
    assert_eq!(attachment.contents(), b"crab pots: 4\n\x01\x02");
    assert!(
        text_of(&with_report).contains("here is the report"),
        "{}",
        text_of(&with_report)
    );
    assert!(
        parsed.body_html(0).is_some(),
        "still multipart/alternative inside"
    );
    assert_eq!(
        header(&with_report, "In-Reply-To"),
        "<report.1@crabpot.test>"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_or_crashed_host_loses_and_repeats_nothing() {
    if !require_docker("email: a_stopped_or_crashed_host_loses_and_repeats_nothing").await {
        return;
    }
    let mail = MailServer::start().await.unwrap();
    let fake = FakeModel::start().unwrap();
    let mut host = start_host(&fake, &mail).await;
    wire_alice(&host).await;
    mail.send(
        ALICE,
        BOT,
        &email("w1@crabpot.test", "One", None, "first words"),
    )
    .await
    .unwrap();
    reply_containing(&mail, "first words").await;

    host.stop().unwrap();
    let stored: String = central(&host)
        .query_row(
            "SELECT value FROM channel_state WHERE channel_type = 'email' AND key = 'uid:INBOX'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        stored.ends_with(":1"),
        "the first message's UID is stored: {stored}"
    );
    // Sent while the host was down.
    mail.send(
        ALICE,
        BOT,
        &email("w2@crabpot.test", "Two", None, "second words"),
    )
    .await
    .unwrap();
    mail.send(
        ALICE,
        BOT,
        &email("w3@crabpot.test", "Three", None, "third words"),
    )
    .await
    .unwrap();
    host.restart().await.unwrap();
    reply_containing(&mail, "second words").await;
    reply_containing(&mail, "third words").await;

    // Every reply recorded delivered, then a crash (SIGKILL) and one more email meanwhile.
    let session = host.session_dir("main").unwrap();
    let inbound = support::read_only(&session.join("in/inbound.db"));
    support::eventually("every reply recorded delivered", TURN, || {
        let (sending, delivered): (i64, i64) = inbound
            .query_row(
                "SELECT count(*) FILTER (WHERE status = 'sending'), \
                 count(*) FILTER (WHERE status = 'delivered') FROM delivered",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        // The second and third may be answered in one turn: at least two replies.
        (sending == 0 && delivered >= 2).then_some(())
    })
    .await;
    drop(inbound);
    host.kill().unwrap();
    mail.send(
        ALICE,
        BOT,
        &email("w4@crabpot.test", "Four", None, "fourth words"),
    )
    .await
    .unwrap();
    host.restart().await.unwrap();
    reply_containing(&mail, "fourth words").await;

    let words = ["first words", "second words", "third words", "fourth words"];
    for said in words {
        assert_eq!(count_containing(&mail, said), 1, "{said} answered once");
    }
    let inbound = support::read_only(&session.join("in/inbound.db"));
    for said in words {
        let rows: i64 = inbound
            .query_row(
                "SELECT count(*) FROM messages_in WHERE kind = 'chat' AND content LIKE ?1",
                [format!("%{said}%")],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(rows, 1, "{said:?} was stored once");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn without_idle_the_mailbox_is_polled() {
    if !require_docker("without_idle_the_mailbox_is_polled").await {
        return;
    }
    let mail = MailServer::start_without_idle().await.unwrap();
    let fake = FakeModel::start().unwrap();
    let host = start_host_polling_every(&fake, &mail, 1).await;
    wire_alice(&host).await;
    assert!(
        host.log().contains("idle=false"),
        "the adapter saw no IDLE: {}",
        host.log_tail(20)
    );
    mail.send(
        ALICE,
        BOT,
        &email("poll.1@crabpot.test", "Polled", None, "are you polling"),
    )
    .await
    .unwrap();
    let reply = reply_containing(&mail, "are you polling").await;
    assert_eq!(header(&reply, "In-Reply-To"), "<poll.1@crabpot.test>");
}

#[tokio::test(flavor = "multi_thread")]
async fn over_implicit_tls_an_email_is_answered() {
    if !require_docker("over_implicit_tls_an_email_is_answered").await {
        return;
    }
    let mail = MailServer::start().await.unwrap();
    let fake = FakeModel::start().unwrap();
    // IMAP on the IMAPS port and SMTP on the port-465 kind: TLS from the first byte.
    let mut options = HostOptions::with_model(ModelConfig::openai(&fake));
    for (name, value) in mail.bot_env_tls() {
        options = options.env(name, value);
    }
    let host = HostProcess::start(options.env("CRABPOT_EMAIL_POLL_SECONDS", "20"))
        .await
        .unwrap();
    wait_health(&host, &mail, "connected").await;
    wire_alice(&host).await;
    mail.send(
        ALICE,
        BOT,
        &email("tls.1@crabpot.test", "Sealed", None, "over tls please"),
    )
    .await
    .unwrap();
    let reply = reply_containing(&mail, "over tls please").await;
    // The host knew only the implicit-TLS ports, so both the mail in and the reply out
    // crossed them.
    assert_eq!(header(&reply, "In-Reply-To"), "<tls.1@crabpot.test>");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_password_fails_only_the_email_adapter() {
    if !require_docker("a_refused_password_fails_only_the_email_adapter").await {
        return;
    }
    let mail = MailServer::start().await.unwrap();
    let fake = FakeModel::start().unwrap();
    let mut options = HostOptions::with_model(ModelConfig::openai(&fake));
    for (name, value) in mail.bot_env() {
        options = options.env(name, value);
    }
    let wrong = "not-the-Pa55word";
    options = options.env("CRABPOT_EMAIL_PASSWORD", wrong);
    let host = HostProcess::start(options).await.unwrap();
    let health = wait_health(&host, &mail, "failing").await;
    let why = health["last_error"].as_str().unwrap_or_default();
    assert!(why.contains("CRABPOT_EMAIL_PASSWORD"), "{health}");
    assert!(!why.contains(wrong), "{health}");
    assert!(!host.log().contains(wrong), "the password is not logged");
    // The rest of the host runs on: the terminal channel still answers.
    let answer = host.chat("still there?", TURN).await.unwrap();
    assert!(answer.success(), "{answer:?}\n{}", host.log_tail(60));
    assert!(answer.stdout.contains("echo:"), "{}", answer.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn in_mailbox_mode_the_mailbox_is_one_group_chat() {
    if !require_docker("in_mailbox_mode_the_mailbox_is_one_group_chat").await {
        return;
    }
    let mail = MailServer::start().await.unwrap();
    let fake = FakeModel::start().unwrap();
    let host = start_host_with(&fake, &mail, 20, &[("CRABPOT_EMAIL_CHAT_MODE", "mailbox")]).await;
    cli_ok(
        &host,
        &["chats", "create", "--group-chat", "email", "--", BOT],
    )
    .await;
    cli_ok(
        &host,
        &["wirings", "create", &format!("email/{BOT}"), "main"],
    )
    .await;
    mail.send(
        ALICE,
        BOT,
        &email("group.1@crabpot.test", "To the team", None, "hello team"),
    )
    .await
    .unwrap();
    let reply = reply_containing(&mail, "hello team").await;
    assert_eq!(header(&reply, "In-Reply-To"), "<group.1@crabpot.test>");
    assert_eq!(reply.parsed().subject(), Some("Re: To the team"));
    let chats = cli_json(&host, &["chats", "list"]).await;
    let email_chats: Vec<&serde_json::Value> = chats
        .as_array()
        .unwrap()
        .iter()
        .filter(|chat| chat["channel_type"] == "email")
        .collect();
    assert_eq!(email_chats.len(), 1, "no chat per sender: {chats}");
    assert_eq!(email_chats[0]["platform_id"], BOT);
    assert_eq!(email_chats[0]["is_group"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reply_waits_out_a_down_smtp_server() {
    if !require_docker("a_reply_waits_out_a_down_smtp_server").await {
        return;
    }
    let mut mail = MailServer::start().await.unwrap();
    let fake = FakeModel::start().unwrap();
    let host = start_host(&fake, &mail).await;
    wire_alice(&host).await;
    // A reply slow enough that the SMTP server is down before it is sent.
    fake.push(Reply::text("echo: patience, please").streamed_slowly(4, Duration::from_millis(400)));
    mail.send(
        ALICE,
        BOT,
        &email("down.1@crabpot.test", "Down", None, "are you down"),
    )
    .await
    .unwrap();
    mail.wait_mail(BOT, "alice's email", TURN, |box_| {
        (!box_.is_empty()).then_some(())
    })
    .await
    .unwrap();
    mail.stop_smtp();
    let health = wait_health(&host, &mail, "degraded").await;
    assert!(
        health["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("sending failed")),
        "{health}"
    );
    mail.start_smtp().await.unwrap();
    let reply = reply_containing(&mail, "patience, please").await;
    assert_eq!(header(&reply, "In-Reply-To"), "<down.1@crabpot.test>");
    wait_health(&host, &mail, "connected").await;
    assert_eq!(count_containing(&mail, "patience, please"), 1);
}
