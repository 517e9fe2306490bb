//! Real redis-server instances on test hosts.
use std::{path::Path, time::Duration};

use anyhow::Result;

use crate::{Host, Proc, wait_for};

/// Starts redis-server on `host` (port 6379, no persistence), optionally as a
/// replica of `master`.
pub fn start(host: &Host, dir: &Path, name: &str, master: Option<&str>) -> Result<Proc> {
    start_with(host, dir, name, master, None)
}

/// The same, requiring `password` from clients when set.
pub fn start_with(
    host: &Host,
    dir: &Path,
    name: &str,
    master: Option<&str>,
    password: Option<&str>,
) -> Result<Proc> {
    start_args(host, dir, name, master, password, &[])
}

/// The same with more redis-server arguments (`--appendonly yes`, ...).
pub fn start_args(
    host: &Host,
    dir: &Path,
    name: &str,
    master: Option<&str>,
    password: Option<&str>,
    extra: &[&str],
) -> Result<Proc> {
    let data = dir.join(format!("redis-{name}"));
    std::fs::create_dir_all(&data)?;
    let mut cmd = host.ns.command("redis-server");
    cmd.args([
        "--port",
        "6379",
        "--bind",
        "0.0.0.0 ::",
        "--protected-mode",
        "no",
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
        // Full resyncs start at once (Redis 7 waits 5 s by default): a
        // returning node must be in sync before the next failure.
        "--repl-diskless-sync-delay",
        "0",
        "--dir",
    ])
    .arg(&data);
    if let Some(m) = master {
        cmd.args(["--replicaof", m, "6379"]);
    }
    if let Some(p) = password {
        cmd.args(["--requirepass", p]);
    }
    cmd.args(extra);
    let p = host.ns.spawn(
        &format!("redis {name}"),
        cmd,
        dir.join(format!("redis-{name}.log")),
    )?;
    let up = wait_for(Duration::from_secs(10), || {
        cli_auth(host, password, &["PING"])
            .ok()
            .filter(|r| r == "PONG")
    });
    anyhow::ensure!(
        up.is_some(),
        "redis-server on {} did not answer PING:\n{}",
        host.name,
        p.log()
    );
    Ok(p)
}

/// `redis-cli` on the host against its local Redis; returns the trimmed reply.
pub fn cli(host: &Host, args: &[&str]) -> Result<String> {
    cli_auth(host, None, args)
}

/// `redis-cli` with a password.
pub fn cli_auth(host: &Host, password: Option<&str>, args: &[&str]) -> Result<String> {
    let mut full = vec!["-h", "127.0.0.1", "-p", "6379"];
    if let Some(p) = password {
        full.extend_from_slice(&["-a", p, "--no-auth-warning"]);
    }
    full.extend_from_slice(args);
    Ok(host.ns.exec("redis-cli", &full)?.trim().to_owned())
}

/// Waits until the host's Redis is a replica with its link to the master up.
pub fn wait_replicating(host: &Host) -> bool {
    wait_replicating_auth(host, None)
}

pub fn wait_replicating_auth(host: &Host, password: Option<&str>) -> bool {
    wait_for(Duration::from_secs(10), || {
        cli_auth(host, password, &["INFO", "replication"])
            .ok()
            .filter(|i| i.contains("master_link_status:up"))
    })
    .is_some()
}
