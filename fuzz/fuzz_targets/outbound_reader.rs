//! Fuzz target `outbound_reader`: a whole mutated `outbound.db` file, read the way the host's
//! delivery reads a session's file (`crabpot_fuzz::outbound::read_file`: the defensive
//! read-only open, a batch of rows and the acks in one transaction, then each row's kind,
//! content and action validated). Seeds: real files from `create_outbound` + `insert`.

#![no_main]

use crabpot_fuzz::scratch::Scratch;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let scratch = Scratch::get();
    let path = scratch.path("outbound.db");
    // A journal or WAL file left by an earlier input would change how this one reads.
    for leftover in ["outbound.db-journal", "outbound.db-wal", "outbound.db-shm"] {
        let _ = std::fs::remove_file(scratch.path(leftover));
    }
    if let Err(e) = std::fs::write(&path, data) {
        panic!("cannot write {}: {e}", path.display());
    }
    crabpot_fuzz::outbound::read_file(&path);
});
