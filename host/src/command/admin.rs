//! Runs `crabpot <resource> <verb>` against the host's admin API and renders the answer:
//! tables and short lines for people, or the API's JSON with `--json`. [`Failure`] carries the
//! message for stderr and the documented exit code.

use super::request::{Render, merge, request};
use super::table::{Table, field_cell, outline};
use super::{Command, UsersCommand};
use crate::admin::client::{self, ClientError};
use serde_json::json;
use std::path::Path;

/// A failed admin command: what to print on stderr and the exit code.
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub code: u8,
}

impl From<ClientError> for Failure {
    fn from(error: ClientError) -> Self {
        Failure {
            code: error.exit_code(),
            message: error.to_string(),
        }
    }
}

/// Runs an admin command; prints the answer on stdout. `None` for commands that are not
/// admin verbs.
pub async fn run(
    socket: &Path,
    json_output: bool,
    command: &Command,
) -> Option<Result<(), Failure>> {
    let (resource, verb, mut body, render) = request(command)?;
    if let Command::Users(UsersCommand::Passwd { name }) = command {
        let password = match super::password::read(name).await {
            Ok(password) => password,
            Err(e) => return Some(Err(e)),
        };
        merge(&mut body, json!({ "password": password }));
    }
    let answer = match client::request(socket, &format!("/v1/{resource}/{verb}"), &body).await {
        Ok(answer) => answer,
        Err(e) => return Some(Err(e.into())),
    };
    if json_output {
        println!(
            "{}",
            serde_json::to_string_pretty(&answer).unwrap_or_default()
        );
        return Some(Ok(()));
    }
    match render {
        Render::Table(columns) => {
            let headers: Vec<&str> = columns.iter().map(|(header, _)| *header).collect();
            let mut table = Table::new(&headers);
            for item in answer.as_array().into_iter().flatten() {
                table.row(
                    columns
                        .iter()
                        .map(|(_, field)| {
                            let name = field.rsplit('.').next().unwrap_or(field);
                            field_cell(name, item.pointer(&format!("/{}", field.replace('.', "/"))))
                        })
                        .collect(),
                );
            }
            print!("{}", table.render());
        }
        Render::Outline => print!("{}", outline(&answer)),
        Render::Line(line) => println!("{}", line(&answer)),
    }
    Some(Ok(()))
}

/// `crabpot status`.
pub async fn status(socket: &Path, json_output: bool) -> Result<(), Failure> {
    let status: crate::admin::Status = client::call(socket, "status", "show", &json!({})).await?;
    if json_output {
        println!("{}", serde_json::to_string(&status).unwrap_or_default());
        return Ok(());
    }
    println!("install     {}", status.install_id);
    println!("docker      {}", status.docker);
    println!("model       {}", status.model);
    println!(
        "containers  {} running, {} starting (cap {})",
        status.running.len(),
        status.starting,
        status.max_containers
    );
    println!("queue       {}", status.queued.len());
    println!("approvals   {} open", status.pending_approvals);
    for line in disk_lines(&status.disk) {
        println!("{line}");
    }
    for channel in &status.channels {
        let state = serde_json::to_value(channel.health.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        match &channel.health.last_error {
            Some(error) => println!("channel     {} {state}: {error}", channel.channel_type),
            None => println!("channel     {} {state}", channel.channel_type),
        }
    }
    Ok(())
}

/// The disk part of `crabpot status`: quotas, free disk against the reserve, uids.
fn disk_lines(disk: &crate::supervisor::DiskStatus) -> Vec<String> {
    let free = disk
        .free_mb
        .map_or_else(|| "unknown".to_owned(), |mb| format!("{mb} MiB"));
    let mut lines = vec![
        format!("quotas      {}", disk.quotas),
        format!("disk        {free} free, reserve {} MiB", disk.reserve_mb),
    ];
    if let Some(refusing) = &disk.refusing {
        lines.push(format!("            NEW CONTAINERS REFUSED: {refusing}"));
    }
    if !disk.uids.is_empty() {
        lines.push(format!("uids        {}", disk.uids));
    }
    lines
}
