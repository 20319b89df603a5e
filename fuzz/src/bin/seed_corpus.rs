//! `seed_corpus <dir>`: writes the seed corpus of every fuzz target to `<dir>/<target>/`
//! (see `crabpot_fuzz::seeds`). Exit code 0 on success, 1 on any error, 2 on bad usage.

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(dir), None) = (args.next(), args.next()) else {
        eprintln!("usage: seed_corpus <dir>");
        return ExitCode::from(2);
    };
    match crabpot_fuzz::seeds::write_all(std::path::Path::new(&dir)) {
        Ok(written) => {
            for (target, count) in written {
                eprintln!("seed_corpus: {count} seeds for {target}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("seed_corpus: {e}");
            ExitCode::FAILURE
        }
    }
}
