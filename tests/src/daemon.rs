//! Running ha-daemon (and keepalived) on test hosts.
use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result};
use serde_json::Value;

use crate::{Host, Proc, TempDir, wait_for, workspace_root};

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
    pub pin_dir: PathBuf,
    pub config: PathBuf,
    netns: String,
}

impl Daemon {
    /// Writes a config with `[node] name = NAME` plus `instances` (TOML
    /// `[[instance]]` tables) into `dir`, and starts the daemon on `host`.
    /// Its maps are pinned under the test bpffs, per `dir` and `name`: a daemon
    /// restarted with the same name in the same dir finds them again.
    pub fn start(
        host: &Host,
        dir: &TempDir,
        name: &str,
        instances: &str,
        extra_args: &[&str],
    ) -> Result<Self> {
        Self::start_with(host, dir, name, "", instances, extra_args, &[])
    }

    /// The same with more `[node]` keys (`node_extra`, TOML lines) and
    /// environment variables for the daemon.
    pub fn start_with(
        host: &Host,
        dir: &TempDir,
        name: &str,
        node_extra: &str,
        instances: &str,
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Self> {
        let pin_dir = dir.pin_root().join(name);
        let dir = dir.path();
        let run_dir = dir.join(format!("run-{name}"));
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                "[node]\nname = \"{name}\"\nrun_dir = \"{}\"\nbpf_pin_dir = \"{}\"\n{node_extra}\n{instances}",
                run_dir.display(),
                pin_dir.display()
            ),
        )?;
        let mut cmd = host.ns.command(binary().to_str().context("binary path")?);
        cmd.args(["run", "-c"])
            .arg(&config)
            .args(["--log", "ha_daemon=debug,ha_daemon::quorum=trace"])
            .args(extra_args)
            .envs(env.iter().copied());
        let log = dir.join(format!("{name}-{}.log", crate::netns::next_id()));
        let proc = host.ns.spawn(&format!("ha-daemon {name}"), cmd, log)?;
        Ok(Self {
            proc,
            name: name.into(),
            run_dir,
            pin_dir,
            config,
            netns: host.ns.name().to_owned(),
        })
    }

    /// `ha-daemon inspect --json` on the daemon's host.
    pub fn inspect(&self) -> Result<Value> {
        let out = crate::netns::run(
            std::process::Command::new("ip")
                .args(["netns", "exec", &self.netns])
                .arg(binary())
                .args(["inspect", "--json", "--pin-dir"])
                .arg(&self.pin_dir),
        )?;
        Ok(serde_json::from_slice(&out.stdout)?)
    }

    /// XDP drop counter `reason` as `inspect` shows it.
    pub fn xdp_drops(&self, reason: &str) -> u64 {
        let Ok(v) = self.inspect() else { return 0 };
        v["drops"]
            .as_array()
            .and_then(|a| a.iter().find(|d| d[0] == reason))
            .and_then(|d| d[1].as_u64())
            .unwrap_or(0)
    }

    /// CPU time (user + system) the daemon has used so far.
    pub fn cpu_time(&self) -> Duration {
        crate::proc_cpu(self.proc.pid())
    }

    /// The daemon's status.json, if written yet.
    pub fn status(&self) -> Option<Value> {
        let text = std::fs::read_to_string(self.run_dir.join("status.json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    pub fn instance(&self, instance: &str) -> Option<Value> {
        self.status()?.get("instances")?.get(instance).cloned()
    }

    /// The instance's most recent transition (`from`, `to`, `reason`, `at_ms`).
    pub fn last_transition(&self, instance: &str) -> Value {
        self.instance(instance)
            .and_then(|i| i["transitions"].as_array().and_then(|t| t.last().cloned()))
            .unwrap_or_default()
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

    /// Waits until this backup's Redis receives the master's replication
    /// stream, not just until its full sync ended: Redis may start streaming
    /// up to 1 s after a diskless sync, and writes the master acknowledges
    /// before that die with it. Panics with the log otherwise.
    pub fn wait_streaming(&self, instance: &str, timeout: Duration) {
        let ok = wait_for(timeout, || {
            (self.instance(instance)?["redis"]["streaming"] == true).then_some(())
        });
        assert!(
            ok.is_some(),
            "{}: instance {instance}: the master's stream never reached the local Redis within {timeout:?} (status {:?})\n{}",
            self.name,
            self.instance(instance),
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
