//! Running ha-daemon (and keepalived) on test hosts.
use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result};
use serde_json::Value;

use crate::{Host, Proc, wait_for, workspace_root};

/// The ha-daemon binary under test: `HA_DAEMON_BIN`, or target/debug/ha-daemon
/// (built by `cargo xtask test` before the integration tests).
pub fn binary() -> PathBuf {
    let p = std::env::var_os("HA_DAEMON_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/debug/ha-daemon"));
    assert!(
        p.is_file(),
        "{} missing: build it first (`cargo build -p ha-daemon`, done by `cargo xtask test`)",
        p.display()
    );
    p
}

/// A running ha-daemon on a host.
pub struct Daemon {
    pub proc: Proc,
    pub name: String,
    pub run_dir: PathBuf,
    pub config: PathBuf,
}

impl Daemon {
    /// Writes a config with `[node] name = NAME` plus `instances` (TOML
    /// `[[instance]]` tables) into `dir`, and starts the daemon on `host`.
    pub fn start(
        host: &Host,
        dir: &Path,
        name: &str,
        instances: &str,
        extra_args: &[&str],
    ) -> Result<Self> {
        let run_dir = dir.join(format!("run-{name}"));
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                "[node]\nname = \"{name}\"\nrun_dir = \"{}\"\n\n{instances}",
                run_dir.display()
            ),
        )?;
        let mut cmd = host.ns.command(binary().to_str().context("binary path")?);
        cmd.args(["run", "-c"])
            .arg(&config)
            .args(["--log", "ha_daemon=debug"])
            .args(extra_args);
        let proc = host.ns.spawn(
            &format!("ha-daemon {name}"),
            cmd,
            dir.join(format!("{name}.log")),
        )?;
        Ok(Self {
            proc,
            name: name.into(),
            run_dir,
            config,
        })
    }

    /// The daemon's status.json, if written yet.
    pub fn status(&self) -> Option<Value> {
        let text = std::fs::read_to_string(self.run_dir.join("status.json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    pub fn instance(&self, instance: &str) -> Option<Value> {
        self.status()?.get("instances")?.get(instance).cloned()
    }

    /// State of an instance: "Initialize", "Backup" or "Master".
    pub fn state(&self, instance: &str) -> Option<String> {
        Some(self.instance(instance)?.get("state")?.as_str()?.to_owned())
    }

    /// Waits until the instance is in `state`; panics with the log otherwise.
    pub fn wait_state(&mut self, instance: &str, state: &str, timeout: Duration) {
        let ok = wait_for(timeout, || {
            (self.state(instance).as_deref() == Some(state)).then_some(())
        });
        assert!(
            ok.is_some(),
            "{}: instance {instance} not {state} within {timeout:?} (status {:?})\n{}",
            self.name,
            self.status(),
            self.proc.log()
        );
    }
}

/// keepalived from Debian, as a VRRP peer.
pub fn keepalived(host: &Host, dir: &Path, name: &str, conf: &str) -> Result<Proc> {
    let path = dir.join(format!("{name}.conf"));
    std::fs::write(&path, conf)?;
    let mut cmd = host.ns.command("keepalived");
    cmd.args([
        "--dont-fork",
        "--log-console",
        "--log-detail",
        "--no-syslog",
        "--vrrp",
        "-f",
    ])
    .arg(&path)
    .arg("-p")
    .arg(dir.join(format!("{name}.pid")))
    .arg("-r")
    .arg(dir.join(format!("{name}-vrrp.pid")));
    host.ns.spawn(name, cmd, dir.join(format!("{name}.log")))
}
