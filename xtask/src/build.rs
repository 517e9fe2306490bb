//! Building the XDP object and the daemon that embeds it.
use std::{fs, path::PathBuf};

use anyhow::{Context, Result};

use crate::util::{cargo, root, step};

/// Builds ha-ebpf and copies the object to target/ebpf/ha-ebpf.o, where
/// ha-daemon's build script picks it up. Returns the object's path.
pub fn ebpf(release: bool) -> Result<PathBuf> {
    let profile = if release { "release" } else { "debug" };
    let mut cmd = cargo(Some("nightly"));
    cmd.current_dir(root().join("ha-ebpf")).args([
        "build",
        "--target",
        "bpfel-unknown-none",
        "-Z",
        "build-std=core",
    ]);
    if release {
        cmd.arg("--release");
    }
    step(&format!("build the XDP object ({profile})"), &mut cmd)?;
    let built = root()
        .join("ha-ebpf/target/bpfel-unknown-none")
        .join(profile)
        .join("ha-ebpf");
    let dest_dir = root().join("target/ebpf");
    fs::create_dir_all(&dest_dir)?;
    let dest = dest_dir.join("ha-ebpf.o");
    let bytes = fs::read(&built).with_context(|| format!("reading {}", built.display()))?;
    // Only rewrite on change: the daemon rebuilds when this file changes.
    if fs::read(&dest).ok().as_deref() != Some(&bytes[..]) {
        fs::write(&dest, &bytes).with_context(|| format!("writing {}", dest.display()))?;
    }
    println!("    object: {} ({} bytes)", dest.display(), bytes.len());
    Ok(dest)
}

pub fn all(release: bool) -> Result<()> {
    ebpf(release)?;
    let mut cmd = cargo(None);
    cmd.args(["build", "-p", "ha-daemon"]);
    if release {
        cmd.arg("--release");
    }
    step("build ha-daemon", &mut cmd)
}
