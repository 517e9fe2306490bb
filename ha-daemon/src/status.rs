//! What the daemon shows of itself: per-instance state and counters, drops by
//! reason. Written as JSON to `<run_dir>/status.json` whenever it changes, so
//! operators and tests can read it without talking to the daemon.
use std::{
    collections::BTreeMap,
    net::IpAddr,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde::Serialize;

use crate::vrrp::machine::{Reason, State};

#[derive(Debug, Clone, Serialize, Default)]
pub struct Status {
    pub node: String,
    pub pid: u32,
    pub ebpf: String,
    pub instances: BTreeMap<String, InstanceStatus>,
    /// Packets dropped before reaching an instance, by reason.
    pub drops: BTreeMap<String, u64>,
    /// Bumped on every change; the writer saves when it moves.
    #[serde(skip)]
    pub generation: u64,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct InstanceStatus {
    pub state: State,
    pub interface: String,
    pub vrid: u8,
    pub version: u8,
    pub priority: u8,
    pub effective_priority: u8,
    pub vips: Vec<String>,
    pub master: Option<IpAddr>,
    pub adverts_sent: u64,
    pub adverts_received: u64,
    /// Adverts for this instance dropped (auth, interval, version, peer), by reason.
    pub drops: BTreeMap<String, u64>,
    /// The last 32 transitions, oldest first.
    pub transitions: Vec<Transition>,
    pub transitions_total: u64,
    /// Last takeover by this node: from the last advert heard from the old
    /// master to becoming master, ms.
    pub last_failover_ms: Option<u64>,
    pub errors: Vec<String>,
    /// The local Redis, when the instance has a `[instance.redis]` table.
    pub redis: Option<crate::redis::reconcile::RedisStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Transition {
    pub from: State,
    pub to: State,
    pub reason: Reason,
    /// The reason in words, as the log says it.
    pub why: String,
    /// Wall-clock time, ms since the Unix epoch.
    pub at_ms: u128,
}

/// The daemon's status, shared by its tasks.
#[derive(Clone, Default)]
pub struct Shared(Arc<Mutex<Status>>);

impl Shared {
    pub fn new(status: Status) -> Self {
        Self(Arc::new(Mutex::new(status)))
    }

    /// Changes the status; the writer picks it up.
    pub fn update<R>(&self, f: impl FnOnce(&mut Status) -> R) -> R {
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        s.generation += 1;
        f(&mut s)
    }

    /// Changes one instance's status (nothing if it is not registered).
    pub fn instance(&self, name: &str, f: impl FnOnce(&mut InstanceStatus)) {
        self.update(|s| {
            if let Some(i) = s.instances.get_mut(name) {
                f(i);
            }
        });
    }

    pub fn snapshot(&self) -> Status {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn drop_packet(&self, reason: &str) {
        self.update(|s| *s.drops.entry(reason.to_owned()).or_default() += 1);
    }

    /// Saves the status to `path` whenever it changed, checking every `period`.
    pub async fn writer(self, path: PathBuf, period: Duration) {
        let mut saved = u64::MAX;
        loop {
            let snap = self.snapshot();
            if snap.generation != saved {
                saved = snap.generation;
                let _ = write_atomic(&path, &snap);
            }
            tokio::time::sleep(period).await;
        }
    }

    pub fn save_now(&self, path: &std::path::Path) {
        let _ = write_atomic(path, &self.snapshot());
    }
}

fn write_atomic(path: &std::path::Path, s: &Status) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(s)?)?;
    std::fs::rename(tmp, path)
}
