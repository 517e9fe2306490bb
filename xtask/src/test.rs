//! `cargo xtask test`: the whole check, as CI runs it. Never passes by
//! skipping: without root it stops with a message, and tests that cannot run fail.
use std::time::Instant;

use anyhow::{Result, bail};

use crate::{
    build, setup,
    util::{cargo, is_root, root, step},
};

/// How long CI fuzzes the decoder: a smoke run; `cargo xtask fuzz` goes longer.
const FUZZ_SECONDS: u64 = 40;

pub fn run() -> Result<()> {
    if !is_root() {
        bail!(
            "cargo xtask test needs root: the tests create network namespaces, load XDP programs and open raw sockets. Run it as root (e.g. `sudo -E cargo xtask test`)."
        );
    }
    let start = Instant::now();
    setup::run()?;
    step(
        "rustfmt (workspace)",
        cargo(None).args(["fmt", "--all", "--check"]),
    )?;
    step(
        "rustfmt (ha-ebpf)",
        cargo(None)
            .args(["fmt", "--check", "--manifest-path"])
            .arg(root().join("ha-ebpf/Cargo.toml")),
    )?;
    step(
        "rustfmt (fuzz targets)",
        cargo(None)
            .args(["fmt", "--check", "--manifest-path"])
            .arg(root().join("ha-daemon/fuzz/Cargo.toml")),
    )?;
    build::ebpf(true)?;
    step(
        "clippy (workspace, -D warnings)",
        cargo(None).args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--quiet",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    step(
        "clippy (ha-ebpf, -D warnings)",
        cargo(Some("nightly"))
            .current_dir(root().join("ha-ebpf"))
            .args([
                "clippy",
                "--target",
                "bpfel-unknown-none",
                "-Z",
                "build-std=core",
                "--release",
                "--quiet",
                "--",
                "-D",
                "warnings",
            ]),
    )?;
    step(
        "unit tests",
        cargo(None).args(["test", "--workspace", "--exclude", "ha-tests"]),
    )?;
    crate::fuzz::run(FUZZ_SECONDS)?;
    step(
        "build ha-daemon for the integration tests",
        cargo(None).args(["build", "-p", "ha-daemon"]),
    )?;
    step(
        "build the lab and the benchmarks (the lab test runs them)",
        cargo(None).args(["build", "-p", "ha-tests", "--examples"]),
    )?;
    // tests/tests/xdp_*.rs feed frames to the loaded object; the rest run
    // daemons on namespace hosts.
    let (xdp, integration): (Vec<String>, Vec<String>) = test_targets()?
        .into_iter()
        .partition(|t| t.starts_with("xdp_"));
    let mut ebpf_tests = cargo(None);
    ebpf_tests.args(["test", "-p", "ha-tests", "--lib"]);
    for t in &xdp {
        ebpf_tests.args(["--test", t]);
    }
    step(
        "eBPF tests (BPF_PROG_TEST_RUN on the real object)",
        &mut ebpf_tests,
    )?;
    let mut int_tests = cargo(None);
    int_tests.args(["test", "-p", "ha-tests"]);
    for t in &integration {
        int_tests.args(["--test", t]);
    }
    // One at a time: they measure timings (10 ms adverts) and one floods the
    // host at 100k packets/s; on 2 cores they must not share the CPU.
    int_tests.args(["--", "--test-threads", "1"]);
    step(
        "integration tests (real daemons in network namespaces)",
        &mut int_tests,
    )?;
    println!(
        "\n==> all checks passed in {:.0}s",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Names of the integration test targets in tests/tests/.
fn test_targets() -> Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(root().join("tests/tests"))?
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(".rs")
                .map(str::to_owned)
        })
        .collect();
    names.sort();
    Ok(names)
}
