//! `cargo xtask bench`: measurements whose numbers go in the README.
use anyhow::{Result, bail};

use crate::{
    build, setup,
    util::{cargo, is_root, step},
};

pub fn run(json: bool) -> Result<()> {
    if !is_root() {
        bail!("cargo xtask bench needs root (it loads the XDP program)");
    }
    setup::run()?;
    build::ebpf(true)?;
    let mut cmd = cargo(None);
    cmd.args([
        "run",
        "--quiet",
        "--release",
        "-p",
        "ha-tests",
        "--example",
        "xdp_cost",
    ]);
    if json {
        cmd.args(["--", "--json"]);
    }
    step("XDP cost per packet", &mut cmd)
}
