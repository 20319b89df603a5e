//! [`CrashReport`]: the figures of a crash run, from the client's tally and the session
//! files, printed as a small markdown table; [`CrashReport::passed`] is the verdict (nothing
//! lost, nothing duplicated, at the client and in the database).

use std::collections::BTreeSet;
use std::fmt::Write;
use std::time::{Duration, Instant};

use super::CrashOptions;
use super::client::{MessageStatus, Tally};
use super::database::SessionView;

/// The client's side.
#[derive(Clone, Debug, Default)]
pub struct ClientFigures {
    pub sent: usize,
    pub send_attempts: usize,
    pub accepted: usize,
    /// Messages the host refused, with why (first few).
    pub refused: Vec<String>,
    pub replies_expected: usize,
    /// Distinct reply lines (outbound ids) received.
    pub reply_lines: usize,
    /// Messages named by at least one received reply.
    pub answered: usize,
    pub lost: usize,
    /// Extra arrivals of an outbound id already received.
    pub duplicated: usize,
    /// Messages named by more than one distinct reply.
    pub answered_twice: usize,
    pub connections: usize,
    pub subscribed: usize,
    pub surprises: Vec<String>,
}

/// The session files' side.
#[derive(Clone, Debug, Default)]
pub struct DatabaseFigures {
    pub stored: usize,
    pub outbound_rows: usize,
    pub delivered_rows: usize,
    pub resent_rows: usize,
    /// Sent messages that no delivered reply names.
    pub lost: usize,
    /// Messages named by more than one delivered reply.
    pub duplicated: usize,
}

/// Everything a run measured.
#[derive(Clone, Debug)]
pub struct CrashReport {
    pub seed: u64,
    pub kills: usize,
    pub sessions: Vec<SessionView>,
    pub client: ClientFigures,
    pub database: DatabaseFigures,
    pub client_settled: bool,
    pub restart_p50: Duration,
    pub restart_max: Duration,
    pub elapsed: Duration,
    /// The host's last log lines, kept when the run failed.
    pub host_log_tail: String,
}

impl CrashReport {
    pub fn new(
        options: &CrashOptions,
        tally: &Tally,
        sessions: &[SessionView],
        restart_times: &[Duration],
        started: Instant,
    ) -> Self {
        let answers = tally.answers_by_token();
        let sent: BTreeSet<&str> = tally
            .messages
            .iter()
            .filter(|(_, status)| *status != MessageStatus::Unsent)
            .map(|(message, _)| message.token.as_str())
            .collect();
        let mut client = ClientFigures {
            sent: sent.len(),
            send_attempts: tally.send_attempts,
            replies_expected: sent.len(),
            reply_lines: tally.replies.len(),
            connections: tally.connections,
            subscribed: tally.subscribed,
            surprises: tally.surprises.iter().take(5).cloned().collect(),
            ..ClientFigures::default()
        };
        for (message, status) in &tally.messages {
            match status {
                MessageStatus::Accepted => client.accepted += 1,
                MessageStatus::Refused(why) if client.refused.len() < 5 => {
                    client.refused.push(format!("{}: {why}", message.token));
                }
                MessageStatus::Unsent | MessageStatus::Sent | MessageStatus::Refused(_) => {}
            }
        }
        client.answered = sent
            .iter()
            .filter(|token| answers.contains_key(**token))
            .count();
        client.lost = client.replies_expected - client.answered;
        client.duplicated = tally.replies.values().map(|reply| reply.times - 1).sum();
        client.answered_twice = answers.values().filter(|times| **times > 1).count();

        let mut database = DatabaseFigures::default();
        let mut delivered_tokens = std::collections::BTreeMap::new();
        let mut stored = BTreeSet::new();
        for session in sessions {
            database.outbound_rows += session.outbound_rows;
            database.delivered_rows += session.delivered_rows;
            database.resent_rows += session.resent_rows;
            stored.extend(session.inbound_tokens.iter().cloned());
            for (token, times) in &session.delivered_tokens {
                *delivered_tokens.entry(token.clone()).or_insert(0) += times;
            }
        }
        database.stored = sent.iter().filter(|token| stored.contains(**token)).count();
        database.lost = sent
            .iter()
            .filter(|token| !delivered_tokens.contains_key(**token))
            .count();
        database.duplicated = delivered_tokens
            .values()
            .filter(|times| **times > 1)
            .count();

        let mut sorted = restart_times.to_vec();
        sorted.sort();
        Self {
            seed: options.seed,
            kills: restart_times.len(),
            sessions: sessions.to_vec(),
            client,
            database,
            client_settled: false,
            restart_p50: sorted.get(sorted.len() / 2).copied().unwrap_or_default(),
            restart_max: sorted.last().copied().unwrap_or_default(),
            elapsed: started.elapsed(),
            host_log_tail: String::new(),
        }
    }

    /// Nothing lost and nothing duplicated, at the client and in the session files.
    pub fn passed(&self) -> bool {
        self.client.lost == 0
            && self.client.duplicated == 0
            && self.database.lost == 0
            && self.database.duplicated == 0
    }

    /// The report as markdown.
    pub fn render(&self) -> String {
        let c = &self.client;
        let d = &self.database;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "## crash test: {} SIGKILLs, {} sessions, seed {} (replay with --seed {})\n",
            self.kills,
            self.sessions.len(),
            self.seed,
            self.seed
        );
        let _ = writeln!(out, "| figure | client | database |");
        let _ = writeln!(out, "|---|---:|---:|");
        let rows: [(&str, String, String); 8] = [
            (
                "messages sent",
                c.sent.to_string(),
                d.stored.to_string() + " stored",
            ),
            (
                "replies expected",
                c.replies_expected.to_string(),
                c.replies_expected.to_string(),
            ),
            (
                "replies received / delivered",
                format!("{} lines naming {} messages", c.reply_lines, c.answered),
                format!("{} of {} rows", d.delivered_rows, d.outbound_rows),
            ),
            ("lost", c.lost.to_string(), d.lost.to_string()),
            (
                "duplicated",
                c.duplicated.to_string(),
                d.duplicated.to_string(),
            ),
            (
                "answered by two replies",
                c.answered_twice.to_string(),
                d.duplicated.to_string(),
            ),
            (
                "re-sent after a kill (attempts > 1)",
                "-".into(),
                d.resent_rows.to_string(),
            ),
            (
                "send attempts / connections",
                format!("{} / {}", c.send_attempts, c.connections),
                "-".into(),
            ),
        ];
        for (name, client, database) in rows {
            let _ = writeln!(out, "| {name} | {client} | {database} |");
        }
        let _ = writeln!(
            out,
            "\nrestart to ready: p50 {:.2} s, max {:.2} s; run {:.0} s; subscribed answers {}; all replies in before the deadline: {}",
            self.restart_p50.as_secs_f64(),
            self.restart_max.as_secs_f64(),
            self.elapsed.as_secs_f64(),
            c.subscribed,
            self.client_settled
        );
        let _ = writeln!(
            out,
            "\n| session chat | stored | replies | delivered | re-sent |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|");
        for session in &self.sessions {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                session.chat,
                session.inbound_tokens.len(),
                session.outbound_rows,
                session.delivered_rows,
                session.resent_rows
            );
        }
        for refused in &c.refused {
            let _ = writeln!(out, "refused: {refused}");
        }
        for surprise in &c.surprises {
            let _ = writeln!(out, "protocol surprise: {surprise}");
        }
        let verdict = if self.passed() { "PASS" } else { "FAIL" };
        let _ = writeln!(
            out,
            "\n{verdict}: lost {} / duplicated {} at the client, lost {} / duplicated {} in the database",
            c.lost, c.duplicated, d.lost, d.duplicated
        );
        out
    }
}
