//! What the daemon shows of itself: per-instance state and counters, drops by
//! reason, the Redis side, the lease and the tickles beside each other.
//!
//! A leaf model: the subsystems publish to it, the faces (control socket,
//! metrics, systemd, the status file) read or subscribe to it, and it
//! depends on no subsystem (only on the pure VRRP machine's and health
//! policy's enums). A change a subscriber acts on (`update`) reaches it at
//! once through a `watch`; counters (`count`) only reach the status file,
//! within its period. Written as JSON to `<run_dir>/status.json`, so
//! operators and tests can read it without talking to the daemon.
use std::{
    collections::BTreeMap,
    net::IpAddr,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde::Serialize;
use tokio::sync::watch;

use crate::{
    redis::health::Health,
    vrrp::machine::{Reason, State},
};

#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Status {
    pub node: String,
    pub pid: u32,
    pub ebpf: String,
    pub instances: BTreeMap<String, InstanceStatus>,
    /// Packets dropped before reaching an instance, by reason.
    pub drops: BTreeMap<String, u64>,
    /// The quorum side (`[quorum]`, or a witness).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quorum: Option<QuorumStatus>,
    /// Bumped on every change; the writer saves when it moves.
    #[serde(skip)]
    pub generation: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct InstanceStatus {
    pub state: State,
    pub interface: String,
    pub vrid: u8,
    pub version: u8,
    pub priority: u8,
    pub effective_priority: u8,
    pub vips: Vec<String>,
    pub master: Option<IpAddr>,
    /// This node's address on the instance's interface (its adverts'
    /// source): where peers and clients reach its Redis.
    pub address: Option<IpAddr>,
    /// The master whose adverts this backup hears (None once they stopped
    /// for Master_Down_Interval, even while a takeover waits).
    pub master_heard: Option<IpAddr>,
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
    /// Flap dampening, as of the last flap: flaps that still count, and the
    /// extra wait for a silent master they impose (it decays meanwhile).
    pub flaps: u32,
    pub flap_hold_ms: u64,
    pub errors: Vec<String>,
    /// The local Redis, when the instance has a `[instance.redis]` table.
    pub redis: Option<RedisStatus>,
    /// The lease, with `[quorum]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease: Option<LeaseStatus>,
    /// Client connections tracked / known, and the last takeover's tickles.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tickle: Option<TickleStatus>,
}

/// What `status.json` shows of the Redis side of an instance.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct RedisStatus {
    pub role: Option<String>,
    pub offset: u64,
    pub master: Option<String>,
    pub link_up: Option<bool>,
    pub health: Option<Health>,
    /// Why the local Redis is not replicating from the VRRP master, if it is not.
    pub guard: Option<String>,
    /// Why the daemon pointed the local Redis nowhere (it could no longer
    /// vouch for the master it followed), until it re-attaches.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detached: Option<String>,
    pub last_action: Option<String>,
    /// Backup: bytes the master had 100 ms ago that the local replica has
    /// not applied (0 when streaming keeps up).
    pub lag_bytes: Option<u64>,
    /// Backup: the master's command stream reaches the local replica (not
    /// just the end of the full sync). Preemption waits for it.
    pub streaming: Option<bool>,
    /// Promotions of the local Redis since the daemon started.
    pub promotions: u64,
    /// Write pause of the last promotion that paused an old master, ms.
    pub last_pause_ms: Option<u64>,
    /// A master: the replicas its Redis streams to.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<ReplicaStatus>,
    /// VRRP master and the local Redis a master whose write pause this term
    /// lifted: it takes writes. A Redis that was a master already (it
    /// restarted as one, self-fenced) becomes writable without a promotion,
    /// so `promote` and `switchover` wait for this, not for `promotions`.
    pub writable: bool,
}

/// A replica as the master's Redis lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct ReplicaStatus {
    pub ip: String,
    pub port: u16,
    pub online: bool,
    pub offset: u64,
}

impl InstanceStatus {
    /// The one rule for which node is the master clients should write to,
    /// as far as this node can vouch: itself while it is VRRP master (and,
    /// under `[quorum]`, holds the lease); else the master whose adverts it
    /// hears (under `[quorum]`, only the lease's holder). None when it
    /// cannot tell (cut off, in a minority, a takeover pending): then no
    /// client is sent to a master that may be fenced.
    pub fn master_for_clients(&self) -> Option<IpAddr> {
        let lease = self.lease.as_ref();
        match self.state {
            State::Master => self.address.filter(|_| lease.is_none_or(|l| l.held)),
            State::Backup => self
                .master_heard
                .filter(|&m| lease.is_none_or(|l| l.holder == Some(m))),
            _ => None,
        }
    }
}

/// What `status` shows of an instance's tickles.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct TickleStatus {
    /// Master: clients connected to the VIP's Redis port now.
    pub tracked: usize,
    /// Backup: clients the master reported, and who reported them.
    pub known: usize,
    pub known_from: Option<IpAddr>,
    /// The last takeover's tickles.
    pub last: Option<LastTickle>,
    /// Time the last sock_diag dump took, µs.
    pub last_dump_us: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct LastTickle {
    pub clients: usize,
    /// Sent in the first round, and how long that took (ms).
    pub sent: usize,
    pub send_ms: f64,
    /// From becoming master to the first round (waiting for the promotion).
    pub after_takeover_ms: f64,
    pub rounds: usize,
}

/// Times in these are CLOCK_BOOTTIME ns on this host (`*_ns`), so a reader
/// on the same host computes ages; durations are ms.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct QuorumStatus {
    /// "node" or "witness".
    pub role: String,
    pub port: u16,
    pub voters: usize,
    pub majority: usize,
    pub drift_ppm: u32,
    pub peers: Vec<PeerStatus>,
    /// Datagrams dropped, by reason (`bad_mac`, `replay`, `not_voter`, ...).
    pub rejected: BTreeMap<String, u64>,
    /// This voter grants nothing before then (it restarted and may have
    /// forgotten promises).
    pub quiet_until_ns: u64,
    /// This node's own vote, per instance.
    pub votes: BTreeMap<String, VoteStatus>,
    /// CLOCK_BOOTTIME when this status was taken.
    pub now_ns: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeerStatus {
    pub addr: IpAddr,
    /// Last authentic datagram from it (0: never).
    pub heard_ns: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct VoteStatus {
    /// The holder this voter promised, and until when.
    pub promised_to: Option<IpAddr>,
    pub promise_term: u64,
    pub promise_until_ns: u64,
    /// Newest term granted and its holder.
    pub newest_term: u64,
    pub newest_holder: Option<IpAddr>,
    pub granted: u64,
    pub refused: BTreeMap<String, u64>,
    /// The newest holder's Redis replication offset, as its last renewal
    /// here reported it, and when it first reached it (CLOCK_BOOTTIME ns).
    pub master_offset: Option<u64>,
    pub master_offset_ns: u64,
    /// How far behind the last master's reported writes the last node this
    /// voter let take over was, ms (its staleness at the takeover).
    pub last_takeover_behind_ms: Option<f64>,
}

/// A takeover refused because the local Redis lacks too much of the last
/// master's data.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct StaleStatus {
    /// The voter that said so ("self" or its address).
    pub voter: String,
    /// How long before the master's last report the first write this
    /// node lacks was reported (None: this node's offset is unknown).
    pub behind_ms: Option<f64>,
    pub behind_bytes: Option<u64>,
    /// When (CLOCK_BOOTTIME ns).
    pub at_ns: u64,
}

impl StaleStatus {
    /// How far behind, in words.
    pub fn describe(&self) -> String {
        match (self.behind_ms, self.behind_bytes) {
            (Some(ms), Some(b)) => format!(
                "{ms:.0} ms ({b} replication bytes) behind the last master's acknowledged writes"
            ),
            (None, Some(b)) => format!(
                "{b} replication bytes behind the last master's acknowledged writes, some older than the voter knows"
            ),
            _ => "of unknown staleness (its replication offset unknown)".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct LeaseStatus {
    /// This node holds the lease.
    pub held: bool,
    /// The newest term known and who holds it (this node or another).
    pub term: u64,
    pub holder: Option<IpAddr>,
    /// When this node's lease ends (the kernel fence's deadline).
    pub until_ns: u64,
    /// Voters whose promises back it ("self" or an address).
    pub granted_by: Vec<String>,
    pub wanted: bool,
    pub lease_ms: f64,
    pub promise_ms: f64,
    pub renew_ms: f64,
    pub acquired: u64,
    pub lost: u64,
    pub released: u64,
    /// What happened last to the lease, and when (CLOCK_BOOTTIME ns).
    pub last_event: Option<String>,
    pub last_event_ns: u64,
    /// `[quorum] max_staleness_ms`: how much of the last master's writes
    /// this node may lack and still take over.
    pub max_staleness_ms: f64,
    /// The last takeover refused for staleness, while it is still wanted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stale: Option<StaleStatus>,
    /// Takeovers refused for staleness so far.
    pub stale_refusals: u64,
    /// An operator accepted the loss (`ha-daemon promote --accept-loss`):
    /// the next takeover is not refused for staleness.
    pub accept_loss: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
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
#[derive(Clone)]
pub struct Shared(Arc<Inner>);

struct Inner {
    status: Mutex<Status>,
    /// The generation of the last change subscribers are told of.
    changes: watch::Sender<u64>,
}

impl Default for Shared {
    fn default() -> Self {
        Self::new(Status::default())
    }
}

impl Shared {
    pub fn new(status: Status) -> Self {
        let (changes, _) = watch::channel(status.generation);
        Self(Arc::new(Inner {
            status: Mutex::new(status),
            changes,
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Status> {
        self.0.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the status; subscribers are told at once, the status file
    /// is written at once.
    pub fn update<R>(&self, f: impl FnOnce(&mut Status) -> R) -> R {
        let (r, generation) = {
            let mut s = self.lock();
            s.generation += 1;
            (f(&mut s), s.generation)
        };
        self.0.changes.send_replace(generation);
        r
    }

    /// Changes counters (adverts, drops): nobody is woken for them; the
    /// status file shows them within its period.
    pub fn count<R>(&self, f: impl FnOnce(&mut Status) -> R) -> R {
        let mut s = self.lock();
        s.generation += 1;
        f(&mut s)
    }

    /// Changes one instance's status (nothing if it is not registered).
    /// Subscribers are told only when something changed: the subsystems
    /// publish the same values over and over (the master after every
    /// advert, the Redis role after every pass).
    pub fn instance(&self, name: &str, f: impl FnOnce(&mut InstanceStatus)) {
        let generation = {
            let mut s = self.lock();
            let Some(i) = s.instances.get_mut(name) else {
                return;
            };
            let before = i.clone();
            f(i);
            if *i == before {
                return;
            }
            s.generation += 1;
            s.generation
        };
        self.0.changes.send_replace(generation);
    }

    /// `count` for one instance's counters.
    pub fn count_instance(&self, name: &str, f: impl FnOnce(&mut InstanceStatus)) {
        self.count(|s| {
            if let Some(i) = s.instances.get_mut(name) {
                f(i);
            }
        });
    }

    /// Changes what changes often and needs no status.json write of its
    /// own (lease renewals, peers heard): the next real change or a
    /// `status` request shows it.
    pub fn update_quiet<R>(&self, f: impl FnOnce(&mut Status) -> R) -> R {
        f(&mut self.lock())
    }

    /// Moves on every `update` (not on counters): a face that shows state
    /// waits on it instead of polling.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.0.changes.subscribe()
    }

    pub fn snapshot(&self) -> Status {
        let mut s = self.lock().clone();
        if let Some(q) = &mut s.quorum {
            q.now_ns = crate::ebpf::clock::boottime_ns();
        }
        s
    }

    pub fn drop_packet(&self, reason: &str) {
        self.count(|s| *s.drops.entry(reason.to_owned()).or_default() += 1);
    }

    /// Saves the status to `path`: at once after an `update`, and within
    /// `period` after counters moved.
    pub async fn writer(self, path: PathBuf, period: Duration) {
        let mut changes = self.subscribe();
        let mut saved = u64::MAX;
        loop {
            let snap = self.snapshot();
            if snap.generation != saved {
                saved = snap.generation;
                let _ = write_atomic(&path, &snap);
            }
            tokio::select! {
                r = changes.changed() => {
                    // The sender lives as long as `self`: never closed.
                    if r.is_err() {
                        tokio::time::sleep(period).await;
                    }
                }
                _ = tokio::time::sleep(period) => {}
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn shared() -> Shared {
        let mut st = Status::default();
        st.instances.insert("vi".into(), InstanceStatus::default());
        Shared::new(st)
    }

    #[test]
    fn a_change_reaches_a_subscriber_at_once() {
        let s = shared();
        let mut rx = s.subscribe();
        assert!(!rx.has_changed().unwrap());
        s.instance("vi", |i| i.state = State::Master);
        assert!(rx.has_changed().unwrap());
        rx.mark_unchanged();
        assert_eq!(s.snapshot().instances["vi"].state, State::Master);
    }

    #[test]
    fn the_same_value_again_and_counters_wake_nobody() {
        let s = shared();
        s.instance("vi", |i| i.priority = 100);
        let mut rx = s.subscribe();
        rx.mark_unchanged();
        let before = s.snapshot().generation;
        s.instance("vi", |i| i.priority = 100);
        s.count_instance("vi", |i| i.adverts_sent += 1);
        s.drop_packet("bad_checksum");
        assert!(!rx.has_changed().unwrap(), "no push for counters");
        // The status file still sees the counters move.
        assert!(s.snapshot().generation > before);
        assert_eq!(s.snapshot().instances["vi"].adverts_sent, 1);
    }

    #[test]
    fn an_unknown_instance_changes_nothing() {
        let s = shared();
        let rx = s.subscribe();
        s.instance("other", |i| i.priority = 1);
        assert!(!rx.has_changed().unwrap());
    }
}
