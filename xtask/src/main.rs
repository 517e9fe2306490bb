//! `cargo xtask <task>`: everything a developer or CI runs, from a fresh
//! Debian machine to passing tests.
mod bench;
mod build;
mod chaos;
mod deb;
mod fuzz;
mod install;
mod lab;
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
    /// Benchmarks (root): the XDP program's cost per packet, then each fault
    /// N times against ha-daemon and keepalived, measured by a client writing
    /// through the VIP; busy and hostile backups; idle CPU.
    Bench {
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Also write the results as JSON here.
        #[arg(long)]
        json: Option<std::path::PathBuf>,
        /// Also plot the write gaps (SVG) here.
        #[arg(long)]
        svg: Option<std::path::PathBuf>,
        /// Only the faults: skip the busy, hostile and idle cases (~4 min).
        #[arg(long)]
        faults_only: bool,
        /// Only discovery without a VIP: ha-daemon's [sentinel] faces beside
        /// three real Sentinels, through redis-py's Sentinel client (~6 min).
        #[arg(long)]
        discovery_only: bool,
    },
    /// A live Redis HA cluster in namespaces (root): faults one after another,
    /// each with its timeline, write gap and lost writes. `lab down` removes
    /// a kept one.
    Lab {
        /// `down`: remove a lab left running by --keep.
        action: Option<String>,
        /// Redis hosts (2: a master and a replica; 3: two replicas).
        #[arg(long, default_value_t = 2)]
        hosts: usize,
        /// Leave the cluster running and print how to explore it.
        #[arg(long)]
        keep: bool,
    },
    /// A seeded campaign of overlapping and successive faults on a live
    /// cluster (root), judged by the final dataset: exit 0 only when no
    /// acknowledged write was lost beyond the README's bound and no two
    /// Redis acknowledged writes at once.
    Chaos {
        #[arg(long, default_value_t = 1.0)]
        minutes: f64,
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Redis hosts: 2 (and a witness) or 3.
        #[arg(long, default_value_t = 2)]
        hosts: usize,
        /// `nic` (XDP on the switch ports, as a NIC) or `veth` (a plain
        /// bridge, as a container host).
        #[arg(long, default_value = "nic")]
        switch: String,
        /// Plant a known bug in the daemons (`no-staleness`), to see the
        /// campaign find it.
        #[arg(long)]
        plant: Option<String>,
        /// Also write the verdict as JSON here.
        #[arg(long)]
        json: Option<std::path::PathBuf>,
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
    /// Build ha-daemon_<version>_amd64.deb (release build, dpkg-deb) into
    /// target/deb: binary, units, conffiles, man pages, completions.
    Deb {
        /// Package this binary instead of building a release one.
        #[arg(long)]
        binary: Option<std::path::PathBuf>,
        /// Write the .deb into this directory.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
        /// Do not compress (quicker; for tests).
        #[arg(long)]
        fast: bool,
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
        Task::Bench {
            runs,
            json,
            svg,
            faults_only,
            discovery_only,
        } => bench::run(bench::Options {
            runs,
            json,
            svg,
            faults_only,
            discovery_only,
        }),
        Task::Lab {
            action,
            hosts,
            keep,
        } => match action.as_deref() {
            None => lab::run(false, hosts, keep),
            Some("down") => lab::run(true, hosts, keep),
            Some(a) => Err(anyhow::anyhow!("lab {a:?}: the only action is `down`")),
        },
        Task::Install { destdir, prefix } => install::run(destdir, prefix),
        Task::Deb { binary, out, fast } => deb::run(deb::Options { binary, out, fast }).map(|_| ()),
        Task::Chaos {
            minutes,
            seed,
            hosts,
            switch,
            plant,
            json,
        } => chaos::run(chaos::Options {
            minutes,
            seed,
            hosts,
            switch,
            plant,
            json,
        }),
    };
    if let Err(e) = r {
        eprintln!("xtask: error: {e:#}");
        std::process::exit(1);
    }
}
