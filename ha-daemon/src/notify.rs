//! keepalived-style notify hooks: scripts run on state changes, off the state
//! machine's path (each in its own task), killed after a timeout.
use std::{path::PathBuf, process::Stdio, time::Duration};

use serde::{Deserialize, Serialize};

/// The hooks of one instance. Each is a program and its arguments, split on
/// white space as keepalived does (no shell).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NotifyConf {
    pub master: Option<String>,
    pub backup: Option<String>,
    /// When the local Redis is gone (priority 0), keepalived's FAULT.
    pub fault: Option<String>,
    /// When the daemon stops the instance.
    pub stop: Option<String>,
    /// Called on every change with: INSTANCE <name> <MASTER|BACKUP|FAULT|STOP> <priority>.
    pub all: Option<String>,
    #[serde(default = "d_timeout")]
    pub timeout_ms: u64,
}

fn d_timeout() -> u64 {
    5000
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    Master,
    Backup,
    Fault,
    Stop,
}

impl Hook {
    pub fn word(self) -> &'static str {
        match self {
            Hook::Master => "MASTER",
            Hook::Backup => "BACKUP",
            Hook::Fault => "FAULT",
            Hook::Stop => "STOP",
        }
    }
}

impl NotifyConf {
    pub fn is_empty(&self) -> bool {
        self.master.is_none()
            && self.backup.is_none()
            && self.fault.is_none()
            && self.stop.is_none()
            && self.all.is_none()
    }

    /// Every configured program path, for validation.
    pub fn programs(&self) -> Vec<PathBuf> {
        [
            &self.master,
            &self.backup,
            &self.fault,
            &self.stop,
            &self.all,
        ]
        .into_iter()
        .flatten()
        .filter_map(|s| s.split_whitespace().next().map(PathBuf::from))
        .collect()
    }

    /// Runs the hooks for `hook` (its own, then `all`) in the background.
    pub fn fire(&self, instance: &str, hook: Hook, priority: u8) {
        let specific = match hook {
            Hook::Master => &self.master,
            Hook::Backup => &self.backup,
            Hook::Fault => &self.fault,
            Hook::Stop => &self.stop,
        };
        let timeout = Duration::from_millis(self.timeout_ms);
        if let Some(s) = specific {
            spawn(instance, s.clone(), Vec::new(), timeout);
        }
        if let Some(s) = &self.all {
            let args = vec![
                "INSTANCE".to_owned(),
                instance.to_owned(),
                hook.word().to_owned(),
                priority.to_string(),
            ];
            spawn(instance, s.clone(), args, timeout);
        }
    }
}

/// Hooks still running; the daemon waits for them (within their timeout) when it stops.
static RUNNING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Waits until no hook runs, or `limit` passes.
pub async fn drain(limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    while RUNNING.load(std::sync::atomic::Ordering::SeqCst) > 0
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn spawn(instance: &str, line: String, extra: Vec<String>, timeout: Duration) {
    let instance = instance.to_owned();
    RUNNING.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    tokio::spawn(async move {
        run(&instance, &line, &extra, timeout).await;
        RUNNING.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    });
}

async fn run(instance: &str, line: &str, extra: &[String], timeout: Duration) {
    {
        let mut words = line.split_whitespace();
        let Some(prog) = words.next() else { return };
        let mut cmd = tokio::process::Command::new(prog);
        cmd.args(words)
            .args(extra)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(instance, "notify {line:?}: cannot run: {e}");
                return;
            }
        };
        match tokio::time::timeout(timeout, child.wait_with_output()).await {
            Ok(Ok(out)) if out.status.success() => {
                tracing::debug!(instance, "notify {line:?} {extra:?}: ok")
            }
            Ok(Ok(out)) => tracing::warn!(instance, "notify {line:?} {extra:?}: {}", out.status),
            Ok(Err(e)) => tracing::warn!(instance, "notify {line:?}: {e}"),
            // Dropping the future kills the child (kill_on_drop).
            Err(_) => tracing::warn!(
                instance,
                "notify {line:?} {extra:?}: killed after {timeout:?}"
            ),
        }
    }
}
