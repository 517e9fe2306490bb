//! `cargo xtask bench`: measurements whose numbers go in the README — the
//! XDP program's cost per packet, then failover as a client sees it, ha-daemon
//! beside keepalived (see tests/examples/failover_bench.rs).
use std::path::PathBuf;

use anyhow::{Result, bail};

use crate::{
    build, setup,
    util::{cargo, is_root, root, step},
};

pub struct Options {
    pub runs: usize,
    pub json: Option<PathBuf>,
    pub svg: Option<PathBuf>,
    /// Only the faults (skip the busy, hostile and idle cases).
    pub faults_only: bool,
    pub discovery_only: bool,
}

/// `cargo run --release` of one of tests/examples, arguments to follow.
fn example(name: &str) -> std::process::Command {
    let mut cmd = cargo(None);
    cmd.args([
        "run",
        "--quiet",
        "--release",
        "-p",
        "ha-tests",
        "--example",
        name,
        "--",
    ]);
    cmd
}

pub fn run(o: Options) -> Result<()> {
    if !is_root() {
        bail!("cargo xtask bench needs root (namespaces, XDP)");
    }
    setup::run()?;
    build::all(true)?;
    if !o.discovery_only {
        step("XDP cost per packet", &mut example("xdp_cost"))?;
    }
    let mut cmd = example("failover_bench");
    cmd.args(["--runs", &o.runs.to_string()])
        // The cluster runs the release daemon, as users would.
        .env("HA_DAEMON_BIN", root().join("target/release/ha-daemon"));
    if let Some(j) = &o.json {
        cmd.arg("--json").arg(root().join(j));
    }
    if let Some(s) = &o.svg {
        cmd.arg("--svg").arg(root().join(s));
    }
    if o.faults_only {
        cmd.arg("--faults-only");
    }
    if o.discovery_only {
        cmd.arg("--discovery-only");
    }
    step(
        "failover as a client sees it, ha-daemon and keepalived",
        &mut cmd,
    )
}
