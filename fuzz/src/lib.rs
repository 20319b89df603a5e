//! Shared pieces of crabpot's `cargo fuzz` targets (`fuzz/fuzz_targets/`, run by `make fuzz`).
//!
//! Every target drives the host's real parsing code (the `host` and `protocol` crates as
//! they are, never a copy); what lives here is only the scaffolding around it: [`scratch`], a
//! private folder per fuzzing process for the files a target must write, [`outbound`], the
//! host's read of an `outbound.db` and its validation of every row, and [`seeds`], the seed
//! corpus of every target, written by the `seed_corpus` binary.

pub mod outbound;
pub mod scratch;
pub mod seeds;
