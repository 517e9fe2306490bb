//! `cargo xtask install`: the release binary, the systemd unit, the example
//! config (never over an existing one) and the README, under `--destdir`
//! (packaging; default /) and `--prefix` (default /usr/local).
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use crate::{build, util::root};

fn copy(from: &Path, to: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(d) = to.parent() {
        fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    // Through a temporary name: replacing a running binary must not truncate it.
    let tmp = to.with_extension("xtask-new");
    fs::copy(from, &tmp)
        .with_context(|| format!("copying {} to {}", from.display(), tmp.display()))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))?;
    fs::rename(&tmp, to)?;
    println!("    {}", to.display());
    Ok(())
}

/// `/a/b` under `destdir`.
fn under(destdir: &Path, p: &str) -> PathBuf {
    destdir.join(p.trim_start_matches('/'))
}

pub fn run(destdir: Option<PathBuf>, prefix: String) -> Result<()> {
    let real = destdir.is_none();
    if real && !crate::util::is_root() {
        bail!("installing into / needs root (or pass --destdir DIR to stage it)");
    }
    let destdir = destdir.unwrap_or_else(|| PathBuf::from("/"));
    build::all(true)?;
    println!("\n==> install into {}", destdir.display());
    let bin = format!("{prefix}/bin/ha-daemon");
    copy(
        &root().join("target/release/ha-daemon"),
        &under(&destdir, &bin),
        0o755,
    )?;
    // The unit names /usr/local/bin; a different prefix is written into it.
    for name in ["ha-daemon.service", "ha-witness.service"] {
        let unit = fs::read_to_string(root().join("config").join(name))?
            .replace("/usr/local/bin/ha-daemon", &bin)
            .replace("/usr/local/share/doc", &format!("{prefix}/share/doc"));
        let unit_path = under(&destdir, &format!("/etc/systemd/system/{name}"));
        fs::create_dir_all(unit_path.parent().unwrap())?;
        fs::write(&unit_path, unit)?;
        println!("    {}", unit_path.display());
    }
    let conf = under(&destdir, "/etc/ha-daemon/ha.toml");
    if conf.exists() {
        println!(
            "    {} exists: kept (the example is in the doc dir)",
            conf.display()
        );
    } else {
        copy(&root().join("config/ha.toml"), &conf, 0o600)?;
    }
    let doc = under(&destdir, &format!("{prefix}/share/doc/ha-daemon"));
    copy(&root().join("README.md"), &doc.join("README.md"), 0o644)?;
    copy(
        &root().join("config/ha.toml"),
        &doc.join("ha.toml.example"),
        0o644,
    )?;
    copy(
        &root().join("config/witness.toml"),
        &doc.join("witness.toml.example"),
        0o644,
    )?;
    if real && Path::new("/run/systemd/system").exists() {
        let ok = Command::new("systemctl")
            .arg("daemon-reload")
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        println!(
            "    systemctl daemon-reload: {}",
            if ok { "ok" } else { "FAILED" }
        );
    }
    println!(
        "\nnext: edit /etc/ha-daemon/ha.toml, `ha-daemon check-config`, then `systemctl enable --now ha-daemon`\n      (a witness host: witness.toml.example to /etc/ha-daemon/witness.toml, then `systemctl enable --now ha-witness`)"
    );
    Ok(())
}
