//! Unit tests of the email adapter's parts without I/O: loop detection, threads, parsing,
//! composing, the stored position.

use super::compose::{self, File, Reply};
use super::loops;
use super::parse::{self, ParseError};
use super::threads::{self, ThreadState};
use super::watcher::Position;
use crate::edge::OutgoingMessage;
use mail_parser::{MessageParser, MimeHeaders};
use protocol::MessageId;

fn message(headers: &str) -> Vec<u8> {
    format!("From: Alice <alice@example.org>\r\nTo: bot@example.org\r\nSubject: hi\r\n{headers}\r\nhello\r\n")
        .into_bytes()
}

fn check_automatic(headers: &str, expected: Option<&str>) {
    let raw = message(headers);
    let parsed = MessageParser::default()
        .parse(&raw)
        .unwrap_or_else(|| panic!("parses"));
    assert_eq!(loops::automatic(&parsed), expected, "{headers:?}");
}

#[test]
fn automatic_mail_is_recognised() {
    check_automatic("", None);
    check_automatic("Auto-Submitted: no\r\n", None);
    check_automatic("Auto-Submitted: auto-replied\r\n", Some("Auto-Submitted"));
    check_automatic("auto-submitted: Auto-Generated\r\n", Some("Auto-Submitted"));
    check_automatic("Precedence: bulk\r\n", Some("Precedence"));
    check_automatic("Precedence: LIST\r\n", Some("Precedence"));
    check_automatic("Precedence: first-class\r\n", None);
    check_automatic("List-Id: Crabs <crabs.example.org>\r\n", Some("List-Id"));
    check_automatic(
        "List-Unsubscribe: <mailto:u@example.org>\r\n",
        Some("List-Id"),
    );
    check_automatic("X-Autoreply: yes\r\n", Some("X-Autoreply"));
    check_automatic("X-Autorespond: yes\r\n", Some("X-Autoreply"));
    check_automatic("Return-Path: <>\r\n", Some("an empty Return-Path"));
    check_automatic("Return-Path: <alice@example.org>\r\n", None);
    check_automatic(
        "Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n",
        Some("a delivery or read report"),
    );
    let bounce = b"From: Mail Delivery System <MAILER-DAEMON@example.org>\r\nSubject: Undelivered\r\n\r\nsorry\r\n";
    let parsed = MessageParser::default()
        .parse(&bounce[..])
        .unwrap_or_else(|| panic!("parses"));
    assert_eq!(loops::automatic(&parsed), Some("a mailer daemon"));
}

#[test]
fn threads_are_named_by_their_root() {
    let ids = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    assert_eq!(
        threads::thread_root("c", &ids(&["b"]), &ids(&["a", "b"])),
        "a"
    );
    assert_eq!(threads::thread_root("c", &ids(&["b"]), &[]), "b");
    assert_eq!(threads::thread_root("c", &[], &[]), "c");
    assert_eq!(threads::clean_id(" <x@y> "), Some("x@y".to_owned()));
    assert_eq!(threads::clean_id("<>"), None);
    assert_eq!(threads::clean_id("a b@c"), None);
    assert_eq!(threads::clean_id(&"x".repeat(501)), None);
}

#[test]
fn subjects_lose_their_prefixes() {
    for (subject, base) in [
        ("Crab pots", "Crab pots"),
        ("Re: Crab pots", "Crab pots"),
        ("RE: re: Fwd: Crab pots", "Crab pots"),
        ("Re[2]: Crab pots", "Crab pots"),
        ("AW: Krabben", "Krabben"),
        ("Reading list", "Reading list"),
        ("", ""),
    ] {
        assert_eq!(threads::base_subject(subject), base, "{subject:?}");
    }
    assert_eq!(threads::reply_subject("re: Crab pots"), "Re: Crab pots");
    assert_eq!(threads::reply_subject(""), "Re: your message");
}

#[test]
fn a_thread_keeps_its_root_and_newest_references() {
    let mut state = ThreadState::default();
    for n in 0..30 {
        state.push(&format!("m{n}"));
    }
    assert_eq!(state.references.len(), threads::MAX_REFERENCES);
    assert_eq!(state.references[0], "m0");
    assert_eq!(state.references.last().map(String::as_str), Some("m29"));
    assert_eq!(state.last_message_id, "m29");
    state.push("m29");
    assert_eq!(
        state.references.len(),
        threads::MAX_REFERENCES,
        "no duplicate"
    );
}

#[test]
fn a_message_is_read_with_its_thread_text_and_files() {
    let raw = "From: \"Alice L.\" <Alice@Example.org>\r\nTo: bot@example.org\r\n\
        Subject: Re: Crab pots\r\nMessage-ID: <m2@example.org>\r\n\
        In-Reply-To: <m1@example.org>\r\nReferences: <m0@example.org> <m1@example.org>\r\n\
        MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
        --b\r\nContent-Type: text/html\r\n\r\n<p>Hello <b>crab</b></p>\r\n\
        --b\r\nContent-Type: application/octet-stream; name=../../etc/passwd\r\n\
        Content-Transfer-Encoding: base64\r\n\r\nAAEC\r\n\
        --b\r\nContent-Type: application/octet-stream\r\n\
        Content-Disposition: attachment; filename=big.bin\r\n\r\n0123456789\r\n--b--\r\n";
    let incoming = parse::parse(raw.as_bytes(), 7, 3, 5).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(incoming.from_address, "alice@example.org");
    assert_eq!(incoming.from_name.as_deref(), Some("Alice L."));
    assert_eq!(incoming.message_id, "m2@example.org");
    assert_eq!(incoming.in_reply_to, ["m1@example.org"]);
    assert_eq!(incoming.references, ["m0@example.org", "m1@example.org"]);
    assert_eq!(incoming.thread_root(), "m0@example.org");
    assert!(
        incoming.text.contains("Hello") && incoming.text.contains("crab"),
        "{}",
        incoming.text
    );
    assert!(
        !incoming.text.contains("<p>"),
        "HTML made text: {}",
        incoming.text
    );
    assert_eq!(incoming.attachments.len(), 1);
    assert_eq!(&incoming.attachments[0].bytes[..], [0u8, 1, 2]);
    // The name is hostile; staging makes it one plain path component.
    let plain = crate::channels::staging::plain_name(&incoming.attachments[0].name);
    assert!(crate::edge::Upload::is_valid_name(&plain), "{plain:?}");
    assert!(!plain.contains('/'), "{plain:?}");
    assert_eq!(incoming.left_out.len(), 1, "{:?}", incoming.left_out);
    assert!(incoming.left_out[0].contains("big.bin"));
    assert_eq!(incoming.automatic, None);
}

#[test]
fn messages_without_a_sender_or_an_id() {
    assert_eq!(
        parse::parse(b"Subject: x\r\n\r\nbody\r\n", 1, 1, 10),
        Err(ParseError::NoSender)
    );
    assert_eq!(
        parse::parse(b"From: not an address\r\n\r\nbody\r\n", 1, 1, 10),
        Err(ParseError::NoSender)
    );
    let incoming = parse::parse(b"From: a@example.org\r\n\r\nbody\r\n", 9, 42, 10)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(incoming.message_id, "crabpot-uid-9-42");
    assert_eq!(incoming.thread_root(), "crabpot-uid-9-42");
    assert_eq!(incoming.text, "body");
}

fn outgoing(text: &str, piece: u32) -> OutgoingMessage {
    OutgoingMessage {
        id: MessageId::new("out-7/x"),
        piece,
        text: text.to_owned(),
        ..OutgoingMessage::default()
    }
}

#[test]
fn a_reply_is_threaded_multipart_and_marked_automatic() {
    let thread = ThreadState {
        subject: "Crab pots".into(),
        last_message_id: "m1@example.org".into(),
        references: vec!["m0@example.org".into(), "m1@example.org".into()],
        reply_to: "alice@example.org".into(),
    };
    let message = outgoing("**Three** pots <script>", 1);
    let (email, id) = compose::compose(Reply {
        from: "bot@example.org",
        to: "alice@example.org",
        thread: Some(&thread),
        message: &message,
        files: vec![File {
            name: "report.txt".into(),
            bytes: b"pots: 3\n".to_vec(),
        }],
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(id, "crabpot.out-7_x.1@example.org");
    let raw = email.formatted();
    let parsed = MessageParser::default()
        .parse(&raw)
        .unwrap_or_else(|| panic!("parses"));
    assert_eq!(parsed.subject(), Some("Re: Crab pots"));
    assert_eq!(parsed.message_id(), Some(id.as_str()));
    assert_eq!(parsed.in_reply_to().as_text(), Some("m1@example.org"));
    let header = |name: &str| {
        parsed
            .headers_raw()
            .find(|(h, _)| h.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_owned())
    };
    assert_eq!(header("Auto-Submitted").as_deref(), Some("auto-replied"));
    assert_eq!(
        header("References").as_deref(),
        Some("<m0@example.org> <m1@example.org>")
    );
    let text = parsed.body_text(0).unwrap_or_default();
    assert!(text.contains("Three pots"), "{text}");
    let html = parsed.body_html(0).unwrap_or_default();
    assert!(html.contains("<strong>Three</strong>"), "{html}");
    assert!(!html.contains("<script>"), "raw HTML is text: {html}");
    let attachment = parsed
        .attachment(0)
        .unwrap_or_else(|| panic!("an attachment"));
    assert_eq!(attachment.attachment_name(), Some("report.txt"));
    assert_eq!(attachment.contents(), b"pots: 3\n");
    // The same row and piece give the same Message-ID: a resend is recognisable.
    let (_, again) = compose::compose(Reply {
        from: "bot@example.org",
        to: "alice@example.org",
        thread: None,
        message: &message,
        files: Vec::new(),
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again, id);
}

#[test]
fn a_new_thread_takes_its_subject_from_the_text() {
    let message = outgoing("# Weekly crab report\n\nAll pots full.", 0);
    let (email, _) = compose::compose(Reply {
        from: "bot@example.org",
        to: "alice@example.org",
        thread: None,
        message: &message,
        files: Vec::new(),
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let raw = email.formatted();
    let parsed = MessageParser::default()
        .parse(&raw)
        .unwrap_or_else(|| panic!("parses"));
    assert_eq!(parsed.subject(), Some("Weekly crab report"));
    assert!(parsed.in_reply_to().is_empty());
    assert!(
        compose::compose(Reply {
            from: "bot@example.org",
            to: "not an address",
            thread: None,
            message: &message,
            files: Vec::new(),
        })
        .is_err()
    );
}

#[test]
fn the_position_round_trips() {
    let position = Position {
        uid_validity: 1_700_000_000,
        last_uid: 42,
    };
    assert_eq!(Position::parse(&position.render()), Some(position));
    assert_eq!(Position::parse("garbage"), None);
    assert_eq!(Position::parse("1:-2"), None);
}
