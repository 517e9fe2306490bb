use std::{path::PathBuf, process::Command, time::Instant};

use anyhow::{Context, Result, bail};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A `cargo` command run through rustup's proxy, with the variables the outer
/// `cargo xtask` set removed so they do not leak into the inner build.
pub fn cargo(toolchain: Option<&str>) -> Command {
    let mut c = Command::new("cargo");
    if let Some(t) = toolchain {
        c.arg(format!("+{t}"));
    }
    for v in [
        "RUSTUP_TOOLCHAIN",
        "RUSTC",
        "RUSTDOC",
        "CARGO",
        "RUSTC_WRAPPER",
        "CARGO_MANIFEST_DIR",
        "CARGO_PKG_NAME",
    ] {
        c.env_remove(v);
    }
    c.current_dir(root());
    c
}

/// Prints a step header, runs the command, fails with its name if it fails.
pub fn step(title: &str, cmd: &mut Command) -> Result<()> {
    println!("\n==> {title}");
    println!("    $ {}", show(cmd));
    let start = Instant::now();
    let status = cmd
        .status()
        .with_context(|| format!("starting {}", show(cmd)))?;
    if !status.success() {
        bail!(
            "{title} failed ({status}) after {:.1}s: {}",
            start.elapsed().as_secs_f64(),
            show(cmd)
        );
    }
    println!("    ok ({:.1}s)", start.elapsed().as_secs_f64());
    Ok(())
}

/// Runs quietly; true when it succeeded.
pub fn quiet_ok(cmd: &mut Command) -> bool {
    cmd.output().map(|o| o.status.success()).unwrap_or(false)
}

pub fn output(cmd: &mut Command) -> Result<String> {
    let o = cmd
        .output()
        .with_context(|| format!("starting {}", show(cmd)))?;
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

pub fn show(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}
