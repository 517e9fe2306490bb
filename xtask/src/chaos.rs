//! `cargo xtask chaos`: the seeded fault campaign of
//! tests/examples/chaos.rs on a fresh cluster of real daemons (debug build,
//! as the tests run them).
use anyhow::{Result, bail};

use crate::{
    build, setup,
    util::{cargo, is_root, root, step},
};

pub struct Options {
    pub minutes: f64,
    pub seed: u64,
    pub hosts: usize,
    pub switch: String,
    pub plant: Option<String>,
    pub json: Option<std::path::PathBuf>,
}

pub fn run(o: Options) -> Result<()> {
    if !is_root() {
        bail!("cargo xtask chaos needs root (network namespaces, XDP, raw sockets)");
    }
    setup::run()?;
    build::all(false)?;
    step(
        "build the campaign",
        cargo(None).args(["build", "--quiet", "-p", "ha-tests", "--example", "chaos"]),
    )?;
    let mut cmd = std::process::Command::new(root().join("target/debug/examples/chaos"));
    cmd.current_dir(root()).args([
        "--minutes",
        &o.minutes.to_string(),
        "--seed",
        &o.seed.to_string(),
        "--hosts",
        &o.hosts.to_string(),
        "--switch",
        &o.switch,
    ]);
    if let Some(p) = &o.plant {
        cmd.args(["--plant", p]);
    }
    if let Some(j) = &o.json {
        cmd.arg("--json").arg(j);
    }
    let status = cmd.status()?;
    if !status.success() {
        bail!("the campaign failed ({status}): see its verdict above");
    }
    Ok(())
}
