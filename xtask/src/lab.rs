//! `cargo xtask lab`: setup, build, then the live cluster of
//! tests/examples/lab.rs. `cargo xtask lab down` removes a kept one.
use anyhow::{Result, bail};

use crate::{
    build, setup,
    util::{cargo, is_root, root, step},
};

pub fn run(down: bool, hosts: usize, keep: bool) -> Result<()> {
    if !is_root() {
        bail!("cargo xtask lab needs root (network namespaces, XDP, raw sockets)");
    }
    if !down {
        setup::run()?;
        build::all(false)?;
    }
    let mut b = cargo(None);
    b.args(["build", "--quiet", "-p", "ha-tests", "--example", "lab"]);
    step("build the lab", &mut b)?;
    let mut cmd = std::process::Command::new(root().join("target/debug/examples/lab"));
    cmd.current_dir(root());
    if down {
        cmd.arg("down");
    } else {
        cmd.args(["--hosts", &hosts.to_string()]);
        if keep {
            cmd.arg("--keep");
        }
    }
    // Ctrl-C reaches the lab too (same process group); it cleans up and
    // exits, and we wait for that rather than die first.
    // SAFETY: setting a signal disposition; the lab installs its own handler.
    unsafe { libc::signal(libc::SIGINT, libc::SIG_IGN) };
    let status = cmd.status()?;
    if !status.success() {
        bail!("the lab failed ({status})");
    }
    Ok(())
}
