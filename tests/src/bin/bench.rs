//! `make bench`: measures crabpot against the targets of DESIGN §9 and a polling baseline,
//! prints one markdown table and writes the same figures as JSON. See `tests/src/bench`.
//!
//! Exit codes: 0 every part measured, 1 a part could not be measured or the run failed,
//! 2 bad arguments, 3 Docker is not reachable (nothing was run), 130 interrupted (every
//! container the run started is removed first).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use tests::bench::{self, Bench, Part, Scale};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ScaleArg {
    Full,
    Quick,
}

/// Benchmark crabpot on this machine: real host, real containers, fake model.
#[derive(Debug, Parser)]
#[command(name = "bench")]
struct Args {
    /// Run sizes: `full` (the sizes, about 10 minutes on 2 cores) or `quick`.
    #[arg(long, value_enum, default_value = "full")]
    scale: ScaleArg,
    /// Shorthand for `--scale quick`.
    #[arg(long)]
    quick: bool,
    /// Only these parts (comma-separated); the others are reported as not measured.
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Part>,
    /// Where the JSON goes.
    #[arg(long, default_value_os_t = tests::repo_root().join("data/bench/latest.json"))]
    out: PathBuf,
    /// The host binary; default `CRABPOT_BIN`, else `crabpot` next to this program.
    #[arg(long, env = "CRABPOT_BIN")]
    crabpot_bin: Option<PathBuf>,
    /// The agent image; default `CRABPOT_IMAGE`, else `crabpot-agent:latest`.
    #[arg(long)]
    image: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("bench: cannot start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(run(args));
    let left = bench::cleanup::remove_registered_containers();
    if left > 0 {
        eprintln!("bench: removed {left} container(s) left behind");
    }
    let installs = bench::cleanup::registered_installs();
    if !installs.is_empty() {
        eprintln!(
            "bench: no container of this run's installs ({}) is left",
            installs.join(", ")
        );
    }
    code
}

async fn run(args: Args) -> ExitCode {
    let docker = match bench::require_docker().await {
        Ok(docker) => docker,
        Err(error) => {
            eprintln!("bench: refusing to run: {error:#}");
            return ExitCode::from(3);
        }
    };
    let crabpot_bin = match args.crabpot_bin.clone().or_else(sibling_crabpot) {
        Some(path) if path.is_file() => path,
        Some(path) => {
            eprintln!(
                "bench: the host binary {} is missing: run `cargo build --release -p host` (or `make bench`)",
                path.display()
            );
            return ExitCode::from(2);
        }
        None => {
            eprintln!("bench: cannot find the host binary; pass --crabpot-bin");
            return ExitCode::from(2);
        }
    };
    let scale = match (args.quick, args.scale) {
        (true, _) | (false, ScaleArg::Quick) => Scale::Quick,
        (false, ScaleArg::Full) => Scale::Full,
    };
    let work_dir = args
        .out
        .parent()
        .map_or_else(|| PathBuf::from("."), PathBuf::from)
        .join(format!("work-{}", std::process::id()));
    let bench = Bench {
        scale,
        crabpot_bin,
        image: args.image.clone().unwrap_or_else(tests::image_name),
        work_dir: work_dir.clone(),
        only: args.only.clone(),
    };
    eprintln!(
        "bench: scale {}, host {}, image {}",
        scale.describe(),
        bench.crabpot_bin.display(),
        bench.image
    );
    let outcome = tokio::select! {
        report = bench::run(&bench, &docker) => Some(report),
        signal = bench::cleanup::interrupted() => {
            eprintln!("bench: {signal}: stopping and removing every container this run started");
            None
        }
    };
    // Whatever happened, the work dir goes (the hosts' own data dirs go with their guards).
    let _ = std::fs::remove_dir_all(&work_dir);
    match outcome {
        None => ExitCode::from(130),
        Some(Err(error)) => {
            eprintln!("bench: {error:#}");
            ExitCode::from(1)
        }
        Some(Ok(report)) => {
            println!("{}", report.markdown());
            if let Err(error) = report.write_json(&args.out) {
                eprintln!("bench: {error:#}");
                return ExitCode::from(1);
            }
            eprintln!("bench: wrote {}", args.out.display());
            if bench::has_failures(&report.rows) {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
    }
}

/// `crabpot` in the same folder as this program (`target/release/`).
fn sibling_crabpot() -> Option<PathBuf> {
    Some(std::env::current_exe().ok()?.parent()?.join("crabpot"))
}
