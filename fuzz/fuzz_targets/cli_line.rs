//! Fuzz target `cli_line`: arbitrary bytes as one line from a client of `data/cli.sock`,
//! through the parser the cli channel's server calls (`parse_client_line`). A parsed line
//! must write back into the same line. The host's lines (`ServerLine`, read by `crabpot
//! chat`) are parsed too.

#![no_main]

use host::channels::cli::{CliLineError, MAX_LINE_BYTES, ServerLine, parse_client_line};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse_client_line(data) {
        Ok(line) => {
            let written = serde_json::to_string(&line).unwrap_or_default();
            let again = parse_client_line(written.as_bytes()).ok();
            assert_eq!(again.as_ref(), Some(&line), "{written} does not read back");
        }
        Err(CliLineError::TooLong { max }) => assert!(data.len() > max && max == MAX_LINE_BYTES),
        Err(CliLineError::Empty) => assert!(data.iter().all(u8::is_ascii_whitespace)),
        Err(CliLineError::Invalid(_)) => {}
    }
    let _ = serde_json::from_slice::<ServerLine>(data);
});
