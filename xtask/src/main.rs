//! `cargo xtask <task>`: everything a developer or CI runs, from a fresh
//! Debian machine to passing tests.
mod bench;
mod build;
mod fuzz;
mod install;
mod setup;
mod test;
mod util;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "ha-daemon developer tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what is missing (Debian packages, nightly rust-src, bpf-linker); idempotent.
    Setup,
    /// Build the XDP object (nightly, bpfel-unknown-none) into target/ebpf/ha-ebpf.o.
    BuildEbpf {
        #[arg(long)]
        release: bool,
    },
    /// Build the XDP object and the ha-daemon binary that embeds it.
    Build {
        #[arg(long)]
        release: bool,
    },
    /// Setup, format and lint checks, unit tests, eBPF build and tests, integration tests (root).
    Test,
    /// Benchmarks (root): the XDP program's cost per packet.
    Bench {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Install the release binary, the systemd unit and the example config
    /// (an existing /etc/ha-daemon/ha.toml is kept).
    Install {
        /// Stage under this directory instead of / (for packaging and tests).
        #[arg(long)]
        destdir: Option<std::path::PathBuf>,
        #[arg(long, default_value = "/usr/local")]
        prefix: String,
    },
    /// Fuzz the VRRP decoder with cargo-fuzz (nightly, libFuzzer).
    Fuzz {
        /// How long to run.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
}

fn main() {
    let cli = Cli::parse();
    let r: Result<()> = match cli.task {
        Task::Setup => setup::run(),
        Task::BuildEbpf { release } => build::ebpf(release).map(|_| ()),
        Task::Build { release } => build::all(release),
        Task::Test => test::run(),
        Task::Fuzz { seconds } => fuzz::run(seconds),
        Task::Bench { json } => bench::run(json),
        Task::Install { destdir, prefix } => install::run(destdir, prefix),
    };
    if let Err(e) = r {
        eprintln!("xtask: error: {e:#}");
        std::process::exit(1);
    }
}
