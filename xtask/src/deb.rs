//! `cargo xtask deb`: `ha-daemon_<version>_amd64.deb`, built with
//! dpkg-deb from a staged tree (no cargo-deb: it would be one more tool to
//! install, and the tree is small): the binary (with its XDP object inside),
//! both units, the example configs as conffiles in /etc/ha-daemon (0750, no
//! key), man pages and completions from `ha-daemon generate`, the README.
//! The maintainer scripts never start, stop or restart a daemon on install
//! or upgrade; removal stops it (a master resigns on SIGTERM).
use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use crate::{
    build,
    util::{root, step},
};

pub struct Options {
    /// Package this binary instead of building a release one (the tests
    /// package the debug build they already have).
    pub binary: Option<PathBuf>,
    /// Where the .deb goes (default target/deb).
    pub out: Option<PathBuf>,
    /// No compression (the tests: xz on a debug binary takes a minute).
    pub fast: bool,
}

const BIN: &str = "/usr/sbin/ha-daemon";
const DOC: &str = "/usr/share/doc/ha-daemon";

const POSTINST: &str = r#"#!/bin/sh
# ha-daemon postinst. Never starts or restarts a daemon: on an upgrade a
# running one keeps running the old binary until the operator restarts it.
set -e
if [ "$1" = configure ] && [ -z "$DPKG_ROOT" ] && [ -d /run/systemd/system ]; then
    systemctl --system daemon-reload >/dev/null 2>&1 || true
    if [ -n "$2" ]; then
        for u in ha-daemon ha-witness; do
            if systemctl is-active --quiet "$u.service"; then
                echo "$u: upgraded from $2; the running daemon is unchanged until \`systemctl restart $u\`"
            fi
        done
    fi
fi
exit 0
"#;

const PRERM: &str = r#"#!/bin/sh
# ha-daemon prerm. Removal stops the services (a master resigns on SIGTERM
# so its peer takes over at once); an upgrade leaves them running.
set -e
if [ "$1" = remove ] && [ -z "$DPKG_ROOT" ] && [ -d /run/systemd/system ]; then
    systemctl stop ha-daemon.service ha-witness.service >/dev/null 2>&1 || true
fi
exit 0
"#;

const POSTRM: &str = r#"#!/bin/sh
# ha-daemon postrm. Purge also drops what `systemctl enable` made.
set -e
if [ "$1" = purge ]; then
    rm -f "$DPKG_ROOT"/etc/systemd/system/multi-user.target.wants/ha-daemon.service \
          "$DPKG_ROOT"/etc/systemd/system/multi-user.target.wants/ha-witness.service
fi
if [ -z "$DPKG_ROOT" ] && [ -d /run/systemd/system ]; then
    systemctl --system daemon-reload >/dev/null 2>&1 || true
fi
exit 0
"#;

fn put(stage: &Path, path: &str, bytes: &[u8], mode: u32) -> Result<()> {
    let to = stage.join(path.trim_start_matches('/'));
    if let Some(d) = to.parent() {
        fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    fs::write(&to, bytes).with_context(|| format!("writing {}", to.display()))?;
    fs::set_permissions(&to, fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// The highest `GLIBC_x.y` symbol version the binary asks for: the
/// package's libc6 dependency.
fn glibc_needed(bin: &[u8]) -> Option<(u32, u32)> {
    let pat = b"GLIBC_2.";
    let mut best = None;
    let mut i = 0;
    while let Some(p) = bin[i..].windows(pat.len()).position(|w| w == pat) {
        let at = i + p + pat.len();
        let digits: Vec<u8> = bin[at..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .copied()
            .collect();
        if let Ok(minor) = std::str::from_utf8(&digits).unwrap_or("").parse::<u32>() {
            best = best.max(Some((2, minor)));
        }
        i = at;
    }
    best
}

fn version() -> Result<String> {
    let manifest = fs::read_to_string(root().join("Cargo.toml"))?;
    let v = manifest
        .split("[workspace.package]")
        .nth(1)
        .and_then(|s| s.lines().find_map(|l| l.trim().strip_prefix("version = ")))
        .map(|v| v.trim_matches('"').to_string())
        .context("Cargo.toml: no [workspace.package] version")?;
    Ok(v)
}

pub fn run(o: Options) -> Result<PathBuf> {
    let bin = match o.binary {
        Some(b) => b,
        None => {
            build::all(true)?;
            root().join("target/release/ha-daemon")
        }
    };
    if !bin.is_file() {
        bail!("{}: no such binary", bin.display());
    }
    let version = version()?;
    let name = format!("ha-daemon_{version}_amd64");
    let work = root().join("target/deb");
    let stage = work.join(&name);
    if stage.exists() {
        fs::remove_dir_all(&stage)?;
    }
    fs::create_dir_all(&stage)?;
    println!("\n==> stage {}", stage.display());
    let bytes = fs::read(&bin).with_context(|| format!("reading {}", bin.display()))?;
    put(&stage, BIN, &bytes, 0o755)?;
    for unit in ["ha-daemon.service", "ha-witness.service"] {
        let text = fs::read_to_string(root().join("config").join(unit))?
            .replace("/usr/local/bin/ha-daemon", BIN)
            .replace("/usr/local/share/doc/ha-daemon", DOC)
            .replace(
                "Installed by `cargo xtask install`",
                "Installed by the ha-daemon package",
            );
        put(
            &stage,
            &format!("/lib/systemd/system/{unit}"),
            text.as_bytes(),
            0o644,
        )?;
    }
    // Conffiles: dpkg keeps an operator's edits on upgrade and asks before
    // replacing them; the directory is not world-readable (secrets go there).
    for conf in ["ha.toml", "witness.toml"] {
        let text = fs::read(root().join("config").join(conf))?;
        put(&stage, &format!("/etc/ha-daemon/{conf}"), &text, 0o640)?;
    }
    fs::set_permissions(
        stage.join("etc/ha-daemon"),
        fs::Permissions::from_mode(0o750),
    )?;
    put(
        &stage,
        &format!("{DOC}/README.md"),
        &fs::read(root().join("README.md"))?,
        0o644,
    )?;
    for f in ["ha-daemon.rules.yml", "ha-daemon.grafana.json"] {
        put(
            &stage,
            &format!("{DOC}/examples/prometheus/{f}"),
            &fs::read(root().join("config/prometheus").join(f))?,
            0o644,
        )?;
    }
    let license = fs::read_to_string(root().join("LICENSE"))?;
    let copyright = format!(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\nUpstream-Name: ha-daemon\n\nFiles: *\nLicense: MIT OR Apache-2.0\n\n{license}"
    );
    put(
        &stage,
        &format!("{DOC}/copyright"),
        copyright.as_bytes(),
        0o644,
    )?;
    // Man pages and completions, from the binary being packaged.
    let gen_dir = work.join("generated");
    if gen_dir.exists() {
        fs::remove_dir_all(&gen_dir)?;
    }
    step(
        "man pages and completions (ha-daemon generate)",
        Command::new(&bin).arg("generate").arg(&gen_dir),
    )?;
    let mut pages = 0;
    for e in fs::read_dir(&gen_dir)? {
        let p = e?.path();
        let file = p
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_string();
        let section = file.rsplit('.').next().unwrap_or("");
        match section {
            "5" | "8" => {
                let out = Command::new("gzip").args(["-9n", "-c"]).arg(&p).output()?;
                if !out.status.success() {
                    bail!(
                        "gzip {}: {}",
                        p.display(),
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
                put(
                    &stage,
                    &format!("/usr/share/man/man{section}/{file}.gz"),
                    &out.stdout,
                    0o644,
                )?;
                pages += 1;
            }
            _ => {
                let to = match file.as_str() {
                    "ha-daemon.bash" => "/usr/share/bash-completion/completions/ha-daemon",
                    "_ha-daemon" => "/usr/share/zsh/vendor-completions/_ha-daemon",
                    "ha-daemon.fish" => "/usr/share/fish/vendor_completions.d/ha-daemon.fish",
                    other => {
                        bail!("ha-daemon generate wrote {other}, which has no place in the package")
                    }
                };
                put(&stage, to, &fs::read(&p)?, 0o644)?;
            }
        }
    }
    if pages < 2 {
        bail!("ha-daemon generate wrote {pages} man pages");
    }
    // DEBIAN/
    let mut md5 = String::new();
    let mut size = 0u64;
    for f in files(&stage)? {
        let rel = f.strip_prefix(&stage)?.to_string_lossy().to_string();
        size += fs::metadata(&f)?.len();
        if rel.starts_with("etc/") {
            // dpkg keeps conffiles' sums itself.
            continue;
        }
        let out = Command::new("md5sum").arg(&f).output()?;
        let sum = String::from_utf8_lossy(&out.stdout);
        md5.push_str(&format!(
            "{}  {rel}\n",
            sum.split_whitespace().next().unwrap_or("")
        ));
    }
    let libc = glibc_needed(&bytes)
        .map(|(a, b)| format!("libc6 (>= {a}.{b})"))
        .unwrap_or_else(|| "libc6".into());
    let control = format!(
        "Package: ha-daemon\nVersion: {version}\nArchitecture: amd64\nMaintainer: ha-daemon developers <root@localhost>\nInstalled-Size: {}\nDepends: {libc}\nRecommends: redis-server\nSuggests: redis-tools\nSection: net\nPriority: optional\nDescription: fast, safe Redis failover with VRRP (keepalived-compatible)\n One daemon per Redis host: VRRP v2/v3 with a virtual IP moved by netlink,\n the local Redis promoted and demoted with the VRRP state (offset catch-up,\n fencing, switchover), an optional quorum lease with a witness, XDP-based\n detection, and a Sentinel-compatible endpoint for Sentinel-aware clients.\n",
        size.div_ceil(1024)
    );
    put(&stage, "DEBIAN/control", control.as_bytes(), 0o644)?;
    put(
        &stage,
        "DEBIAN/conffiles",
        b"/etc/ha-daemon/ha.toml\n/etc/ha-daemon/witness.toml\n",
        0o644,
    )?;
    put(&stage, "DEBIAN/md5sums", md5.as_bytes(), 0o644)?;
    put(&stage, "DEBIAN/postinst", POSTINST.as_bytes(), 0o755)?;
    put(&stage, "DEBIAN/prerm", PRERM.as_bytes(), 0o755)?;
    put(&stage, "DEBIAN/postrm", POSTRM.as_bytes(), 0o755)?;
    let out_dir = o.out.unwrap_or(work);
    fs::create_dir_all(&out_dir)?;
    let deb = out_dir.join(format!("{name}.deb"));
    step(
        "dpkg-deb --build",
        Command::new("dpkg-deb")
            .args(["--root-owner-group", "--build"])
            .args(if o.fast { &["-Znone"][..] } else { &[][..] })
            .arg(&stage)
            .arg(&deb),
    )?;
    println!("    {}", deb.display());
    Ok(deb)
}

/// Every regular file under `dir` but DEBIAN/, sorted.
fn files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d)? {
            let p = e?.path();
            if p.is_dir() {
                if p != dir.join("DEBIAN") {
                    todo.push(p);
                }
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_highest_glibc_version_is_found() {
        let b = b"..GLIBC_2.2.5\0GLIBC_2.34\0GLIBC_2.17\0GLIBC_PRIVATE";
        assert_eq!(super::glibc_needed(b), Some((2, 34)));
        assert_eq!(super::glibc_needed(b"none"), None);
    }
}
