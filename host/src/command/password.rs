//! Reading a password for `crabpot users passwd`: from stdin, one line, never from argv (the
//! process list would show it). On a terminal it is asked twice with echo off (rustix
//! termios); from a pipe, the first line is the password.

use super::admin::Failure;
use crate::web::auth::passwords::MIN_CHARS;
use std::io::{BufRead, IsTerminal, Write};

/// The exit code for invalid input (see `crabpot --help`).
const INVALID: u8 = 6;

/// Reads the new password of `web:<name>` from stdin.
pub async fn read(name: &str) -> Result<String, Failure> {
    let name = name.to_owned();
    let read = tokio::task::spawn_blocking(move || read_blocking(&name))
        .await
        .map_err(|e| failure(1, format!("reading the password failed: {e}")))?;
    let password = read?;
    let chars = password.chars().count();
    if chars < MIN_CHARS {
        return Err(failure(
            INVALID,
            format!("the password must be at least {MIN_CHARS} characters (got {chars})"),
        ));
    }
    Ok(password)
}

fn read_blocking(name: &str) -> Result<String, Failure> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return read_line(&mut stdin.lock());
    }
    let first = prompt(&format!("New password for web:{name}: "))?;
    let second = prompt("Again: ")?;
    if first != second {
        return Err(failure(INVALID, "the two passwords differ".into()));
    }
    Ok(first)
}

/// One line without its line ending; no line at all is an error.
fn read_line(input: &mut impl BufRead) -> Result<String, Failure> {
    let mut line = String::new();
    let n = input
        .read_line(&mut line)
        .map_err(|e| failure(1, format!("cannot read the password from stdin: {e}")))?;
    if n == 0 {
        return Err(failure(
            INVALID,
            "no password on stdin: type it, or pipe one line".into(),
        ));
    }
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

/// Asks on stderr and reads a line from the terminal with echo off, restoring it after.
fn prompt(text: &str) -> Result<String, Failure> {
    let mut stderr = std::io::stderr();
    let _ = write!(stderr, "{text}");
    let _ = stderr.flush();
    let stdin = std::io::stdin();
    let saved = rustix::termios::tcgetattr(&stdin).ok();
    if let Some(saved) = &saved {
        let mut quiet = saved.clone();
        quiet.local_modes -= rustix::termios::LocalModes::ECHO;
        let _ = rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &quiet);
    }
    let line = read_line(&mut stdin.lock());
    if let Some(saved) = &saved {
        let _ = rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, saved);
    }
    let _ = writeln!(stderr);
    line
}

fn failure(code: u8, message: String) -> Failure {
    Failure { message, code }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_is_read_without_its_ending() {
        let mut input = std::io::Cursor::new("s3cret pass\r\nnext\n");
        assert_eq!(read_line(&mut input).unwrap(), "s3cret pass");
        let mut empty = std::io::Cursor::new("");
        assert_eq!(read_line(&mut empty).unwrap_err().code, INVALID);
    }
}
