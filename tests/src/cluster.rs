//! A Redis HA cluster in namespaces — Redis hosts h1..hN and a client host —
//! run either by ha-daemon or by keepalived with the notify scripts the
//! keepalived + Redis guides use. Shared by `cargo xtask lab` and
//! `cargo xtask bench`: the same faults, measured the same way, from the
//! client's side.
use std::{
    io::{BufRead, Read, Write},
    net::SocketAddr,
    os::unix::fs::PermissionsExt,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{Host, Lan, Proc, TempDir, client, daemon::Daemon, redis, wait_for};

pub const VIP: &str = "198.18.0.100";

/// Who runs failover.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    Ours {
        advert_ms: u32,
    },
    /// keepalived: `vrrp_script` redis-cli PING every second (fall 2, rise 2,
    /// weight -60), notify_master `REPLICAOF NO ONE`, notify_backup
    /// `REPLICAOF <peer>`: the guides' setup.
    Keepalived {
        advert_ms: u32,
    },
    /// Real Redis Sentinel (Debian's `redis-server --sentinel`): one on each
    /// Redis host and one on the client host, quorum 2, no VIP: clients
    /// find the master by asking.
    Sentinel {
        down_after_ms: u32,
    },
}

impl Kind {
    pub fn label(&self) -> String {
        match self {
            Kind::Ours { advert_ms } => format!("ha-daemon {advert_ms} ms"),
            Kind::Keepalived { advert_ms } => format!("keepalived {advert_ms} ms"),
            Kind::Sentinel { down_after_ms } => {
                format!("Redis Sentinel ×3, down-after {down_after_ms} ms")
            }
        }
    }
}

/// The faults, in the order the lab plays them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fault {
    /// The master's redis-server is SIGKILLed; its failover daemon lives.
    RedisKilled,
    /// The master host is lost: its processes killed, its link down.
    HostLost,
    /// The master's failover daemon is SIGKILLed; its Redis lives.
    DaemonKilled,
    /// After the master's Redis was killed and the peer took over, the old
    /// master comes back (Redis restarted empty, as without persistence) with
    /// the higher priority.
    OldMasterBack,
    /// Planned switchover to the backup (`ha-daemon switchover`; keepalived
    /// has none).
    Switchover,
    /// Planned switchover started on the master (`ha-daemon switchover` there:
    /// it hands over to the backup). Lab only; keepalived has none.
    HandOver,
    /// Frames between the Redis hosts dropped in the switch for
    /// `PARTITION`; the client and the witness still reach both.
    PartitionHosts,
    /// The master cut from every other voter (peers, witness) for
    /// `PARTITION`; the client still reaches it.
    MasterCutOff,
    /// The backup cut from everyone for `PARTITION`.
    BackupCutOff,
    /// The master's Redis stopped (SIGSTOP) for `PARTITION`: a hang.
    RedisHung,
    /// The link between the Redis hosts down 100 ms, up 150 ms, for
    /// `PARTITION` (the client and the witness see both).
    FlappingLink,
    /// The Redis hosts cut from each other, and 1 s later the master host
    /// lost (for good: the run ends without it).
    ReplicationCutThenMasterLost,
}

/// How long the partition faults last before the switch heals.
pub const PARTITION: Duration = Duration::from_secs(3);

impl Fault {
    pub const ALL: [Fault; 5] = [
        Fault::RedisKilled,
        Fault::HostLost,
        Fault::DaemonKilled,
        Fault::OldMasterBack,
        Fault::Switchover,
    ];
    /// The partitions, healed after `PARTITION`.
    pub const PARTITIONS: [Fault; 3] = [
        Fault::PartitionHosts,
        Fault::MasterCutOff,
        Fault::BackupCutOff,
    ];
    pub fn is_partition(&self) -> bool {
        Self::PARTITIONS.contains(self)
    }
    /// Sequences and hangs the bench runs after the partitions.
    pub const SEQUENCES: [Fault; 3] = [
        Fault::RedisHung,
        Fault::FlappingLink,
        Fault::ReplicationCutThenMasterLost,
    ];
    /// Healed (or resumed) after `PARTITION`.
    pub fn is_healed(&self) -> bool {
        self.is_partition() || *self == Fault::RedisHung
    }
    /// What the lab plays: the faults, then a hand-over started on the master.
    pub const LAB: [Fault; 6] = [
        Fault::RedisKilled,
        Fault::HostLost,
        Fault::DaemonKilled,
        Fault::OldMasterBack,
        Fault::Switchover,
        Fault::HandOver,
    ];
    pub fn label(&self) -> &'static str {
        match self {
            Fault::RedisKilled => "master's Redis killed",
            Fault::HostLost => "master host lost",
            Fault::DaemonKilled => "master's daemon killed",
            Fault::OldMasterBack => "old master back (empty)",
            Fault::Switchover => "planned switchover",
            Fault::HandOver => "hand-over from the master",
            Fault::PartitionHosts => "partition between the Redis hosts, 3 s",
            Fault::MasterCutOff => "master cut off from its peers, 3 s",
            Fault::BackupCutOff => "backup cut off from everyone, 3 s",
            Fault::RedisHung => "master's Redis hung (SIGSTOP), 3 s",
            Fault::FlappingLink => "link between the Redis hosts flapping 100/150 ms, 3 s",
            Fault::ReplicationCutThenMasterLost => "replication cut, master lost 1 s later",
        }
    }
}

enum Node {
    Ours(Daemon),
    /// keepalived, or a real Sentinel.
    Other(Proc),
}

impl Node {
    fn proc(&mut self) -> &mut Proc {
        match self {
            Node::Ours(d) => &mut d.proc,
            Node::Other(p) => p,
        }
    }
}

/// Partition safety in an ha-daemon cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quorum {
    /// No `[quorum]`: plain VRRP (what keepalived does too).
    Off,
    /// `[quorum]` with a witness on its own host, after the Redis hosts.
    Witness,
    /// `[quorum]` among the Redis hosts alone (3 or more).
    Majority,
}

pub struct Cluster {
    pub lan: Lan,
    pub dir: TempDir,
    pub kind: Kind,
    /// Redis hosts 1..=n; then the witness (with `Quorum::Witness`); the
    /// client is the last host.
    pub n: usize,
    pub quorum: Quorum,
    redis: Vec<Option<Proc>>,
    nodes: Vec<Option<Node>>,
    witness: Option<Proc>,
    persist: bool,
    /// Environment for the daemons (and the witness) started from now on,
    /// per host number: the test seams (`HA_TEST_CLOCK_PPM`, `HA_TEST_PLANT`).
    pub env: std::collections::BTreeMap<usize, Vec<(String, String)>>,
    /// `[sentinel] listen = "0.0.0.0:PORT"` on every ha-daemon node, the
    /// other Redis hosts as its peers.
    pub sentinel: Option<u16>,
    /// The VIP is configured (false: `vips = []`, clients find the master
    /// through `[sentinel]`; "holds the VIP" then means "is VRRP master").
    pub vip: bool,
    /// Kind::Sentinel: the Sentinel on the client host.
    client_sentinel: Option<Proc>,
}

/// The port of the test clusters' Sentinel endpoints.
pub const SENTINEL_PORT: u16 = 26379;

/// The quorum port the test clusters use.
pub const QUORUM_PORT: u16 = 5940;

fn priority(i: usize) -> u8 {
    (200 - 50 * i) as u8
}

impl Cluster {
    /// Starts Redis on hosts 1..=n (h1 master, the others its replicas, as
    /// an operator sets them up) and the failover daemon on each; returns
    /// once h1 holds the VIP and the replicas stream from it.
    pub fn start(kind: Kind, n: usize, prefix: &str, persist: bool) -> Result<Cluster> {
        Self::start_with(kind, n, Quorum::Off, prefix, persist)
    }

    /// The same, with partition safety as `quorum` says.
    pub fn start_with(
        kind: Kind,
        n: usize,
        quorum: Quorum,
        prefix: &str,
        persist: bool,
    ) -> Result<Cluster> {
        Self::start_full(kind, n, quorum, 0, prefix, persist)
    }

    /// The same with `extra` more client hosts after the first one.
    pub fn start_full(
        kind: Kind,
        n: usize,
        quorum: Quorum,
        extra: usize,
        prefix: &str,
        persist: bool,
    ) -> Result<Cluster> {
        Self::start_on(crate::Switch::Nic, kind, n, quorum, extra, prefix, persist)
    }

    /// The same with the hosts plugged into `switch`.
    pub fn start_on(
        switch: crate::Switch,
        kind: Kind,
        n: usize,
        quorum: Quorum,
        extra: usize,
        prefix: &str,
        persist: bool,
    ) -> Result<Cluster> {
        Self::start_env(
            switch,
            kind,
            n,
            quorum,
            extra,
            prefix,
            persist,
            Default::default(),
        )
    }

    /// The same with an environment for the daemons, per host (`env`).
    #[allow(clippy::too_many_arguments)]
    pub fn start_env(
        switch: crate::Switch,
        kind: Kind,
        n: usize,
        quorum: Quorum,
        extra: usize,
        prefix: &str,
        persist: bool,
        env: std::collections::BTreeMap<usize, Vec<(String, String)>>,
    ) -> Result<Cluster> {
        Self::start_all(
            switch, kind, n, quorum, extra, prefix, persist, env, None, true,
        )
    }

    /// Every node also answers Sentinel-aware clients on `SENTINEL_PORT`.
    pub fn start_sentinel(n: usize, quorum: Quorum, prefix: &str) -> Result<Cluster> {
        Self::start_all(
            crate::Switch::Nic,
            Kind::Ours { advert_ms: 10 },
            n,
            quorum,
            0,
            prefix,
            true,
            Default::default(),
            Some(SENTINEL_PORT),
            true,
        )
    }

    /// Sentinel endpoints and no VIP at all: the cloud deployment, where
    /// clients find the master only by asking.
    pub fn start_discovery(n: usize, quorum: Quorum, prefix: &str) -> Result<Cluster> {
        Self::start_all(
            crate::Switch::Nic,
            Kind::Ours { advert_ms: 10 },
            n,
            quorum,
            0,
            prefix,
            true,
            Default::default(),
            Some(SENTINEL_PORT),
            false,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn start_all(
        switch: crate::Switch,
        kind: Kind,
        n: usize,
        quorum: Quorum,
        extra: usize,
        prefix: &str,
        persist: bool,
        env: std::collections::BTreeMap<usize, Vec<(String, String)>>,
        sentinel: Option<u16>,
        vip: bool,
    ) -> Result<Cluster> {
        if matches!(kind, Kind::Keepalived { .. }) && n != 2 {
            bail!("the keepalived guides' scripts name one peer: 2 Redis hosts only");
        }
        if matches!(kind, Kind::Keepalived { .. }) && quorum != Quorum::Off {
            bail!("keepalived has no quorum");
        }
        if matches!(kind, Kind::Sentinel { .. }) && (quorum != Quorum::Off || n != 2) {
            bail!(
                "the real Sentinel set-up is 2 Redis hosts and three Sentinels, no quorum of ours"
            );
        }
        let vip = vip && !matches!(kind, Kind::Sentinel { .. });
        if quorum == Quorum::Majority && n < 3 {
            bail!("a majority among the Redis hosts needs 3 of them");
        }
        let hosts = n + 1 + usize::from(quorum == Quorum::Witness) + extra;
        let lan = Lan::with_switch(prefix, hosts, switch)?;
        let dir = TempDir::new(prefix)?;
        if matches!(kind, Kind::Ours { .. }) {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(dir.path().join("quorum.key"))?;
            // A test key: random per cluster.
            let key: String = (0..32).map(|_| format!("{:02x}", rand_byte())).collect();
            writeln!(f, "{key}")?;
        }
        let mut c = Cluster {
            lan,
            dir,
            kind,
            n,
            quorum,
            redis: (0..n).map(|_| None).collect(),
            nodes: (0..n).map(|_| None).collect(),
            witness: None,
            persist,
            env,
            sentinel,
            vip,
            client_sentinel: None,
        };
        for i in 1..=n {
            c.start_redis(i, i > 1)?;
        }
        if quorum == Quorum::Witness {
            c.start_witness()?;
        }
        for i in 1..=n {
            c.start_node(i)?;
        }
        if let Kind::Sentinel { down_after_ms } = kind {
            // The third Sentinel, on the client host (an application server).
            let p = c.spawn_sentinel(n + 1, down_after_ms)?;
            c.client_sentinel = Some(p);
            c.wait_sentinels()?;
        }
        c.wait_healthy(Some(1), Duration::from_secs(15))?;
        Ok(c)
    }

    /// `redis-server --sentinel` on host `i` (the client host is n + 1),
    /// monitoring h1 as `vi` with quorum 2.
    fn spawn_sentinel(&self, i: usize, down_after_ms: u32) -> Result<Proc> {
        let host = self.lan.host(i);
        let conf = self.dir.path().join(format!("sentinel-h{i}.conf"));
        std::fs::write(
            &conf,
            format!(
                "port {SENTINEL_PORT}\nbind {}\ndir {}\nsentinel monitor vi {} 6379 2\n\
                 sentinel down-after-milliseconds vi {down_after_ms}\nsentinel failover-timeout vi 10000\n\
                 sentinel parallel-syncs vi 1\n",
                host.addr4,
                self.dir.path().display(),
                self.lan.host(1).addr4,
            ),
        )?;
        let mut cmd = host.ns.command("redis-server");
        cmd.arg(&conf).arg("--sentinel");
        let log = self.dir.path().join(format!("sentinel-h{i}.log"));
        host.ns.spawn(&format!("sentinel h{i}"), cmd, log)
    }

    /// Until every Sentinel knows the two others and the replica (hello
    /// messages go every 2 s).
    fn wait_sentinels(&self) -> Result<()> {
        let port = SENTINEL_PORT.to_string();
        let ready = wait_for(Duration::from_secs(20), || {
            (1..=self.n + 1)
                .all(|i| {
                    let h = self.lan.host(i).addr4.to_string();
                    let ask = |args: &[&str]| {
                        let mut all = vec!["-h", h.as_str(), "-p", port.as_str()];
                        all.extend_from_slice(args);
                        self.client().ns.exec("redis-cli", &all).unwrap_or_default()
                    };
                    ask(&["SENTINEL", "CKQUORUM", "vi"]).starts_with("OK 3 usable")
                        && ask(&["SENTINEL", "REPLICAS", "vi"]).contains("slave")
                })
                .then_some(())
        });
        anyhow::ensure!(
            ready.is_some(),
            "the three Sentinels did not find each other within 20 s"
        );
        Ok(())
    }

    /// Waits until one host holds the VIP (`master`, if given), its Redis is
    /// the only master, and every other Redis receives its writes (streaming,
    /// not just synced: Redis may start the stream up to 1 s after a sync).
    pub fn wait_healthy(&self, master: Option<usize>, timeout: Duration) -> Result<usize> {
        let deadline = Instant::now() + timeout;
        // A failback can start between the role check and the probe write
        // (READONLY): the whole check is retried until the deadline.
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.healthy_once(master, left) {
                Ok(m) => return Ok(m),
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    fn healthy_once(&self, master: Option<usize>, timeout: Duration) -> Result<usize> {
        let n = self.n;
        let m = wait_for(timeout, || {
            let m = self.vip_holder()?;
            (master.is_none_or(|x| x == m)
                && (1..=n).filter(|&i| self.holds_vip(i)).count() == 1
                && self.role(m).as_deref() == Some("master")
                && (1..=n)
                    .filter(|&i| i != m)
                    .all(|i| self.role(i).as_deref() == Some("slave")))
            .then_some(m)
        });
        let Some(m) = m else {
            bail!(
                "cluster not healthy: VIP on {:?}, roles {:?}",
                self.vip_holder(),
                (1..=n).map(|i| self.role(i)).collect::<Vec<_>>()
            );
        };
        let stamp = format!("{:?}", Instant::now());
        let probe = redis::cli(self.host(m), &["SET", "cluster-probe", &stamp])?;
        anyhow::ensure!(probe == "OK", "SET on h{m}: {probe}");
        for i in (1..=n).filter(|&i| i != m) {
            let ok = wait_for(Duration::from_secs(5), || {
                (redis::cli(self.host(i), &["GET", "cluster-probe"]).ok()? == stamp).then_some(())
            });
            anyhow::ensure!(ok.is_some(), "h{i}'s Redis does not receive h{m}'s writes");
        }
        Ok(m)
    }

    /// Puts back whatever a fault took away — links up, Redis and daemons
    /// restarted (Redis as a master: the daemons sort the roles out) — and
    /// waits until the cluster is healthy and settled: a returning
    /// higher-priority node preempts once its Redis streams from the master,
    /// and that failback belongs to this repair, not to the next fault.
    pub fn repair(&mut self) -> Result<usize> {
        self.lan.heal()?;
        if self.quorum == Quorum::Witness && !self.witness.as_mut().is_some_and(|p| p.alive()) {
            self.start_witness()?;
        }
        for i in 1..=self.n {
            self.link(i, true)?;
            if !self.redis_alive(i) {
                self.start_redis(i, false)?;
            }
            if self.nodes[i - 1].is_none() {
                self.start_node(i)?;
            }
        }
        let m = self.wait_healthy(None, Duration::from_secs(20))?;
        if !matches!(self.kind, Kind::Ours { .. }) {
            return Ok(m);
        }
        // 20 s: after a lower-priority backup took over (README, Known
        // limits: three hosts at 10 ms adverts), two failbacks follow, each
        // waiting for a sync and a streaming replica.
        let settled = wait_for(Duration::from_secs(20), || {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .ok()?
                .as_millis();
            let statuses: Vec<_> = (1..=self.n)
                .map(|i| self.status(i))
                .collect::<Option<_>>()?;
            // Preemption is on: until the highest priority holds the VIP,
            // a failback is still to come. A backup's configured priority
            // counts too: one whose Redis just restarted advertises less
            // until its health checks pass, then preempts (a fault injected
            // then hits the node that is taking over, mid-promotion).
            let prio = |st: &serde_json::Value| st["effective_priority"].as_u64().unwrap_or(0);
            let base = |st: &serde_json::Value| st["priority"].as_u64().unwrap_or(0);
            let top = statuses.iter().map(|st| prio(st).max(base(st))).max()?;
            let master_is_top = statuses
                .iter()
                .any(|st| st["state"] == "Master" && prio(st) == top);
            (master_is_top
                && statuses.iter().all(|st| {
                    let quiet = st["transitions"]
                        .as_array()
                        .and_then(|t| t.last())
                        .and_then(|t| t["at_ms"].as_u64())
                        .is_none_or(|at| now > u128::from(at) + 500);
                    let streaming = st["state"] != "Backup" || st["redis"]["streaming"] == true;
                    quiet && streaming
                }))
            .then_some(())
        });
        if settled.is_none() {
            // What each node says, to tell the two apart.
            let each: Vec<String> = (1..=self.n)
                .map(|i| {
                    let st = self.status(i).unwrap_or_default();
                    format!(
                        "h{i}: state {}, priority {}/{}, last transition {}, redis {}",
                        st["state"],
                        st["effective_priority"],
                        st["priority"],
                        st["transitions"]
                            .as_array()
                            .and_then(|t| t.last())
                            .cloned()
                            .unwrap_or_default(),
                        st["redis"]
                    )
                })
                .collect();
            anyhow::bail!(
                "the cluster does not settle: a backup's Redis does not stream from the master, or VRRP keeps changing\n{}",
                each.join("\n")
            );
        }
        self.wait_healthy(None, Duration::from_secs(20))
    }

    pub fn host(&self, i: usize) -> &Host {
        self.lan.host(i)
    }
    pub fn client(&self) -> &Host {
        self.client_n(0)
    }

    /// Client host `k` (0: the first, the one `client()` is).
    pub fn client_n(&self, k: usize) -> &Host {
        self.lan
            .host(self.n + 1 + usize::from(self.quorum == Quorum::Witness) + k)
    }

    /// The witness's host number, with `Quorum::Witness`.
    pub fn witness_host(&self) -> Option<usize> {
        (self.quorum == Quorum::Witness).then_some(self.n + 1)
    }

    /// Every voter's host number but `i`'s.
    fn voters_but(&self, i: usize) -> Vec<usize> {
        (1..=self.n)
            .chain(self.witness_host())
            .filter(|&h| h != i)
            .collect()
    }

    /// The `[quorum]` table for host `i`.
    fn quorum_table(&self, i: usize) -> String {
        let peers: Vec<String> = self
            .voters_but(i)
            .into_iter()
            .map(|h| format!("\"{}\"", self.host(h).addr4))
            .collect();
        format!(
            "[quorum]\npeers = [{}]\nkey_file = \"{}\"\nport = {QUORUM_PORT}\n\n",
            peers.join(", "),
            self.dir.path().join("quorum.key").display()
        )
    }

    /// `[sentinel]`, with the other Redis hosts' endpoints as its peers.
    fn sentinel_table(&self, i: usize) -> String {
        let Some(port) = self.sentinel else {
            return String::new();
        };
        let peers: Vec<String> = (1..=self.n)
            .filter(|&h| h != i)
            .map(|h| format!("\"{}:{port}\"", self.host(h).addr4))
            .collect();
        format!(
            "[sentinel]\nlisten = \"0.0.0.0:{port}\"\npeers = [{}]\n\n",
            peers.join(", ")
        )
    }

    /// Without a quorum: `[tickle]` with the other Redis hosts as peers.
    fn tickle_table(&self, i: usize) -> String {
        let peers: Vec<String> = (1..=self.n)
            .filter(|&h| h != i)
            .map(|h| format!("\"{}\"", self.host(h).addr4))
            .collect();
        format!(
            "[tickle]\npeers = [{}]\nkey_file = \"{}\"\nport = {QUORUM_PORT}\n\n",
            peers.join(", "),
            self.dir.path().join("quorum.key").display()
        )
    }

    /// Starts (or restarts) the witness.
    pub fn start_witness(&mut self) -> Result<()> {
        let w = self.witness_host().context("no witness in this cluster")?;
        let run_dir = self.dir.path().join("run-witness");
        let path = self.dir.path().join("witness.toml");
        std::fs::write(
            &path,
            format!(
                "[node]\nname = \"witness\"\nrun_dir = \"{}\"\n\n{}",
                run_dir.display(),
                self.quorum_table(w)
            ),
        )?;
        let mut cmd = self
            .host(w)
            .ns
            .command(crate::daemon::binary().to_str().context("binary path")?);
        cmd.args(["witness", "-c"])
            .arg(&path)
            .args(["--log", "ha_daemon=debug"]);
        for (k, v) in self.env.get(&w).into_iter().flatten() {
            cmd.env(k, v);
        }
        let log = self
            .dir
            .path()
            .join(format!("witness-{}.log", crate::netns::next_id()));
        self.witness = Some(self.host(w).ns.spawn("witness", cmd, log)?);
        Ok(())
    }

    /// Kills the witness (SIGKILL).
    pub fn kill_witness(&mut self) {
        if let Some(mut p) = self.witness.take() {
            p.signal(libc::SIGKILL);
            p.wait();
        }
    }

    /// The witness's status.json.
    pub fn witness_status(&self) -> Option<serde_json::Value> {
        let t = std::fs::read_to_string(self.dir.path().join("run-witness/status.json")).ok()?;
        serde_json::from_str(&t).ok()
    }

    /// What the client and the hosts' kernels say now: the client's
    /// neighbour entry and sockets for the VIP, each node's kernel side.
    pub fn diagnose(&self) -> String {
        let mut out = String::new();
        let ns = &self.client().ns;
        out += &format!(
            "client neigh: {}",
            ns.exec("ip", &["neigh", "show", VIP]).unwrap_or_default()
        );
        out += &format!(
            "client sockets: {}",
            ns.exec("ss", &["-tanoi", "dst", VIP]).unwrap_or_default()
        );
        for i in 1..=self.n {
            let h = self.host(i);
            let client = self.client().addr4.to_string();
            out += &format!(
                "h{i} sockets from the client: {}",
                h.ns.exec("ss", &["-tanoi", "dst", &client])
                    .unwrap_or_default()
            );
            out += &format!(
                "h{i} redis clients: {}\n",
                redis::cli(h, &["CLIENT", "LIST"]).unwrap_or_default()
            );
            out += &format!("h{i} mac {}", self.host(i).mac);
            if let Some(pin) = self.pin_dir(i) {
                let o = std::process::Command::new(crate::daemon::binary())
                    .args(["inspect", "--json", "--pin-dir"])
                    .arg(&pin)
                    .output();
                let v: serde_json::Value = o
                    .ok()
                    .and_then(|o| serde_json::from_slice(&o.stdout).ok())
                    .unwrap_or_default();
                out += &format!(": counters {} vips {}\n", v["counters"], v["vips"]);
            } else {
                out += "\n";
            }
        }
        out
    }

    /// CPU time the witness used so far.
    pub fn witness_cpu(&self) -> Duration {
        self.witness
            .as_ref()
            .map_or(Duration::ZERO, |p| crate::proc_cpu(p.pid()))
    }

    /// The witness's log so far.
    pub fn witness_log(&self) -> String {
        self.witness.as_ref().map(|p| p.log()).unwrap_or_default()
    }

    /// Node i's log so far (ha-daemon only).
    pub fn node_log(&self, i: usize) -> String {
        match self.nodes.get(i - 1).and_then(|n| n.as_ref()) {
            Some(Node::Ours(d)) => d.proc.log(),
            Some(Node::Other(p)) => p.log(),
            None => String::new(),
        }
    }

    pub fn start_redis(&mut self, i: usize, replica: bool) -> Result<()> {
        let master = replica.then(|| self.host(1).addr4.to_string());
        // Room for the many-connection tests (Redis lowers it to what its
        // file limit allows).
        let extra: &[&str] = if self.persist {
            &[
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--maxclients",
                "20000",
            ]
        } else {
            &["--maxclients", "20000"]
        };
        let p = redis::start_args(
            self.lan.host(i),
            self.dir.path(),
            &format!("r{i}"),
            master.as_deref(),
            None,
            extra,
        )?;
        self.redis[i - 1] = Some(p);
        Ok(())
    }

    pub fn start_node(&mut self, i: usize) -> Result<()> {
        let env: Vec<(&str, &str)> = self
            .env
            .get(&i)
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let node = match self.kind {
            Kind::Ours { advert_ms } => Node::Ours(Daemon::start_with(
                self.lan.host(i),
                &self.dir,
                &format!("n{i}"),
                "",
                &format!(
                    "{}[[instance]]\nname = \"vi\"\ninterface = \"eth0\"\nvrid = 51\nversion = 3\n\
                     priority = {}\nadvert_interval_ms = {advert_ms}\nvips = [{}]\n\n\
                     [instance.redis]\naddress = \"127.0.0.1:6379\"\nport = 6379\n",
                    if self.quorum == Quorum::Off {
                        self.tickle_table(i)
                    } else {
                        self.quorum_table(i)
                    } + &self.sentinel_table(i),
                    priority(i),
                    if self.vip {
                        format!("\"{VIP}/24\"")
                    } else {
                        String::new()
                    }
                ),
                &[],
                &env,
            )?),
            Kind::Sentinel { down_after_ms } => Node::Other(self.spawn_sentinel(i, down_after_ms)?),
            Kind::Keepalived { advert_ms } => {
                let peer = self.host(3 - i).addr4;
                let script = |name: &str, body: &str| -> Result<String> {
                    let p = self.dir.path().join(format!("{name}-h{i}.sh"));
                    std::fs::write(&p, format!("#!/bin/sh\n{body}\n"))?;
                    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))?;
                    Ok(p.display().to_string())
                };
                let master = script(
                    "redis-master",
                    "exec redis-cli -h 127.0.0.1 REPLICAOF NO ONE",
                )?;
                let backup = script(
                    "redis-backup",
                    &format!("exec redis-cli -h 127.0.0.1 REPLICAOF {peer} 6379"),
                )?;
                let conf = format!(
                    "global_defs {{\n  router_id h{i}\n  script_user root\n}}\n\
                     vrrp_script chk_redis {{\n  script \"/usr/bin/redis-cli -h 127.0.0.1 ping\"\n  interval 1\n  fall 2\n  rise 2\n  weight -60\n}}\n\
                     vrrp_instance VI {{\n  interface eth0\n  virtual_router_id 51\n  version 3\n  priority {}\n  advert_int {}\n\
                     virtual_ipaddress {{\n    {VIP}/24\n  }}\n  track_script {{\n    chk_redis\n  }}\n\
                     notify_master \"{master}\"\n  notify_backup \"{backup}\"\n}}\n",
                    priority(i),
                    advert_ms as f64 / 1000.0
                );
                Node::Other(crate::daemon::keepalived(
                    self.lan.host(i),
                    self.dir.path(),
                    &format!("ka{i}"),
                    &conf,
                )?)
            }
        };
        self.nodes[i - 1] = Some(node);
        Ok(())
    }

    /// Which Redis host has the VIP configured (the first, if several do).
    pub fn vip_holder(&self) -> Option<usize> {
        (1..=self.n).find(|&i| self.holds_vip(i))
    }
    pub fn holds_vip(&self, i: usize) -> bool {
        if matches!(self.kind, Kind::Sentinel { .. }) {
            // No VIP, no status: the master is the Redis that says it is.
            return self.role(i).as_deref() == Some("master");
        }
        if !self.vip {
            return self.status(i).is_some_and(|s| s["state"] == "Master");
        }
        self.host(i)
            .addresses()
            .iter()
            .any(|a| a.starts_with(&format!("{VIP}/")))
    }

    /// `master` / `slave` from the host's Redis, None if it does not answer.
    pub fn role(&self, i: usize) -> Option<String> {
        let info = redis::cli(self.host(i), &["INFO", "replication"]).ok()?;
        info.lines()
            .find_map(|l| l.trim().strip_prefix("role:").map(str::to_owned))
    }

    pub fn redis_alive(&mut self, i: usize) -> bool {
        self.redis[i - 1].as_mut().is_some_and(|p| p.alive())
    }

    /// Sends `sig` to host i's redis-server (SIGSTOP / SIGCONT: a hang).
    pub fn signal_redis(&self, i: usize, sig: i32) {
        if let Some(p) = self.redis[i - 1].as_ref() {
            p.signal(sig);
        }
    }

    pub fn kill_redis(&mut self, i: usize) {
        if let Some(mut p) = self.redis[i - 1].take() {
            p.signal(libc::SIGKILL);
            p.wait();
        }
    }

    /// SIGKILLs the failover daemon, all its processes at once (keepalived
    /// runs a parent and a VRRP child; killing one lets the other resign).
    pub fn kill_node(&mut self, i: usize) {
        if let Some(mut n) = self.nodes[i - 1].take() {
            for pid in self.daemon_pids(i) {
                // SAFETY: plain kill(2).
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            n.proc().signal(libc::SIGKILL);
            n.proc().wait();
        }
    }

    /// Sends `sig` to node i's failover daemon (SIGSTOP / SIGCONT).
    pub fn signal_node(&self, i: usize, sig: i32) {
        for pid in self.daemon_pids(i) {
            // SAFETY: plain kill(2).
            unsafe { libc::kill(pid, sig) };
        }
    }

    /// Host i's Redis run_id (`INFO server`), None if it does not answer.
    pub fn run_id(&self, i: usize) -> Option<String> {
        let info = redis::cli(self.host(i), &["INFO", "server"]).ok()?;
        info.lines()
            .find_map(|l| l.trim().strip_prefix("run_id:").map(str::to_owned))
    }

    fn daemon_pids(&self, i: usize) -> Vec<i32> {
        let comm = match self.kind {
            Kind::Ours { .. } => "ha-daemon",
            Kind::Keepalived { .. } => "keepalived",
            Kind::Sentinel { .. } => "redis-server",
        };
        let pids = crate::netns::run(std::process::Command::new("ip").args([
            "netns",
            "pids",
            self.host(i).ns.name(),
        ]))
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
        pids.split_whitespace()
            .filter_map(|p| p.parse().ok())
            .filter(|p: &i32| {
                std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == comm)
            })
            .collect()
    }

    pub fn link(&self, i: usize, up: bool) -> Result<()> {
        self.host(i)
            .ns
            .ip(&["link", "set", "eth0", if up { "up" } else { "down" }])?;
        Ok(())
    }

    /// Node i's ha-daemon, if it runs one.
    pub fn daemon(&self, i: usize) -> Option<&Daemon> {
        match self.nodes.get(i - 1)?.as_ref()? {
            Node::Ours(d) => Some(d),
            Node::Other(_) => None,
        }
    }

    /// ha-daemon's status.json for node i.
    pub fn status(&self, i: usize) -> Option<serde_json::Value> {
        match self.nodes.get(i - 1)?.as_ref()? {
            Node::Ours(d) => d.instance("vi"),
            Node::Other(_) => None,
        }
    }

    /// The node's status.json (ha-daemon only; it outlives a killed daemon).
    pub fn status_file(&self, i: usize) -> Option<std::path::PathBuf> {
        match self.nodes.get(i - 1)?.as_ref()? {
            Node::Ours(d) => Some(d.run_dir.join("status.json")),
            Node::Other(_) => None,
        }
    }

    /// The node's pin dir (ha-daemon only), for its XDP maps.
    pub fn pin_dir(&self, i: usize) -> Option<std::path::PathBuf> {
        match self.nodes.get(i - 1)?.as_ref()? {
            Node::Ours(d) => Some(d.pin_dir.clone()),
            Node::Other(_) => None,
        }
    }

    pub fn config(&self, i: usize) -> Option<std::path::PathBuf> {
        match self.nodes.get(i - 1)?.as_ref()? {
            Node::Ours(d) => Some(d.config.clone()),
            Node::Other(_) => None,
        }
    }

    /// How many times node i became master since it started.
    pub fn takeovers(&mut self, i: usize) -> usize {
        match self.nodes.get_mut(i - 1).and_then(|n| n.as_mut()) {
            Some(Node::Ours(d)) => d
                .instance("vi")
                .and_then(|v| {
                    v["transitions"]
                        .as_array()
                        .map(|t| t.iter().filter(|x| x["to"] == "Master").count())
                })
                .unwrap_or(0),
            Some(Node::Other(p)) => {
                p.log().matches("Entering MASTER STATE").count()
                    + p.log().matches("+switch-master").count()
            }
            None => 0,
        }
    }

    /// CPU time used by the failover daemon on host i (all its processes).
    pub fn node_cpu(&self, i: usize) -> Duration {
        self.daemon_pids(i).into_iter().map(crate::proc_cpu).sum()
    }

    /// Injects `fault` on the current master (h1 at start); returns when the
    /// fault is in place (not when the cluster recovered).
    pub fn inject(&mut self, fault: Fault) -> Result<()> {
        let m = self.vip_holder().context("no master to inject on")?;
        match fault {
            Fault::RedisKilled => self.kill_redis(m),
            Fault::HostLost => {
                // The network goes first, as when a host dies: nothing it
                // does on its way down (a graceful resignation) gets out.
                self.link(m, false)?;
                self.kill_node(m);
                self.kill_redis(m);
            }
            Fault::DaemonKilled => self.kill_node(m),
            Fault::OldMasterBack => {
                self.kill_redis(m);
                // With three hosts either backup may win the race for the
                // dead Redis's place (the lower one when its timer fires first).
                let took = wait_for(Duration::from_secs(10), || {
                    self.vip_holder().filter(|&h| h != m && !self.holds_vip(m))
                });
                anyhow::ensure!(took.is_some(), "no peer of h{m} took over");
                std::thread::sleep(Duration::from_secs(2));
                // Back without its data, as a node without persistence (or a
                // replaced disk) comes back.
                let data = self.dir.path().join(format!("redis-r{m}"));
                let _ = std::fs::remove_dir_all(&data);
                self.start_redis(m, false)?;
            }
            Fault::PartitionHosts => {
                let other = (1..=self.n).find(|&i| i != m).context("a peer")?;
                self.lan.cut(m, other)?;
            }
            Fault::MasterCutOff => {
                let others = self.voters_but(m);
                self.lan.isolate(m, &others)?;
            }
            Fault::RedisHung => self.signal_redis(m, libc::SIGSTOP),
            Fault::FlappingLink => {
                let other = (1..=self.n).find(|&i| i != m).context("a peer")?;
                let end = Instant::now() + PARTITION;
                while Instant::now() < end {
                    self.lan.cut(m, other)?;
                    std::thread::sleep(Duration::from_millis(100));
                    self.lan.heal()?;
                    std::thread::sleep(Duration::from_millis(150));
                }
            }
            Fault::ReplicationCutThenMasterLost => {
                let other = (1..=self.n).find(|&i| i != m).context("a peer")?;
                self.lan.cut(m, other)?;
                std::thread::sleep(Duration::from_secs(1));
                self.link(m, false)?;
                self.kill_node(m);
                self.kill_redis(m);
            }
            Fault::BackupCutOff => {
                let b = (1..=self.n).find(|&i| i != m).context("a peer")?;
                let everyone: Vec<usize> = (1..=self.lan.hosts.len()).filter(|&h| h != b).collect();
                self.lan.isolate(b, &everyone)?;
            }
            Fault::Switchover | Fault::HandOver => {
                // Run on the backup that takes over, or on the master that hands over.
                let to = if fault == Fault::HandOver {
                    m
                } else {
                    (1..=self.n).find(|&i| i != m).context("a peer")?
                };
                let cfg = self
                    .config(to)
                    .context("keepalived has no planned switchover")?;
                let out = self
                    .host(to)
                    .ns
                    .command(crate::daemon::binary().to_str().context("binary path")?)
                    .args(["switchover", "-c"])
                    .arg(&cfg)
                    .output()?;
                let text = String::from_utf8_lossy(&out.stdout);
                anyhow::ensure!(
                    out.status.success(),
                    "switchover: {text}{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        Ok(())
    }
}

/// A random byte (for test keys), from the kernel.
fn rand_byte() -> u8 {
    let mut b = [0u8; 1];
    // SAFETY: getrandom into a valid one-byte buffer.
    unsafe { libc::getrandom(b.as_mut_ptr().cast(), 1, 0) };
    b[0]
}

/// Reads `INFO replication`'s role over a kept connection (faster than
/// running redis-cli, for sampling every few ms).
fn info_role(c: &mut client::Conn) -> Option<bool> {
    c.get_mut()
        .write_all(b"*2\r\n$4\r\nINFO\r\n$11\r\nreplication\r\n")
        .ok()?;
    let mut line = String::new();
    c.read_line(&mut line).ok()?;
    let len: usize = line.trim().strip_prefix('$')?.parse().ok()?;
    let mut body = vec![0u8; len + 2];
    c.read_exact(&mut body).ok()?;
    Some(String::from_utf8_lossy(&body).contains("role:master"))
}

/// Samples every Redis's role from the client host every 5 ms, and sums the
/// time two or more of them were writable masters.
pub struct MasterSampler {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<Duration>>,
    /// When a node's Redis was seen to become master.
    changes: Arc<std::sync::Mutex<Vec<Instant>>>,
}

impl MasterSampler {
    pub fn start(c: &Cluster) -> MasterSampler {
        let addrs: Vec<SocketAddr> = (1..=c.n)
            .map(|i| SocketAddr::new(c.host(i).addr4.into(), 6379))
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let changes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = changes.clone();
        let handle = c
            .client()
            .ns
            .thread(move || {
                let mut conns: Vec<Option<client::Conn>> = addrs.iter().map(|_| None).collect();
                let mut was: Vec<Option<bool>> = addrs.iter().map(|_| None).collect();
                let mut both = Duration::ZERO;
                let mut last = Instant::now();
                while !flag.load(Ordering::Relaxed) {
                    let mut masters = 0;
                    for ((a, c), was) in addrs.iter().zip(conns.iter_mut()).zip(was.iter_mut()) {
                        if c.is_none() {
                            *c = client::connect(*a).ok();
                        }
                        let role = c.as_mut().and_then(info_role);
                        match role {
                            Some(true) => masters += 1,
                            Some(false) => {}
                            None => *c = None,
                        }
                        if role == Some(true) && *was == Some(false) {
                            seen.lock().unwrap().push(Instant::now());
                        }
                        if role.is_some() {
                            *was = role;
                        }
                    }
                    let now = Instant::now();
                    if masters >= 2 {
                        both += now - last;
                    }
                    last = now;
                    std::thread::sleep(Duration::from_millis(5));
                }
                both
            })
            .expect("sampler thread");
        MasterSampler {
            stop,
            handle: Some(handle),
            changes,
        }
    }

    /// When a node's Redis was seen to become master so far (a replica's
    /// promotion; a node seen first as a master does not count).
    pub fn changes(&self) -> Vec<Instant> {
        self.changes.lock().unwrap().clone()
    }
    pub fn stop(mut self) -> Duration {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }
}

/// What a client saw through the VIP over one fault.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Outcome {
    /// Longest time between two acknowledged writes after the fault, ms.
    pub longest_gap_ms: f64,
    /// Sum of the gaps longer than 50 ms after the fault, ms.
    pub unavailable_ms: f64,
    /// Acknowledged increments the cluster no longer has.
    pub lost: i64,
    /// Time two Redis were writable masters at once, ms.
    pub two_masters_ms: f64,
    /// Writes acknowledged after the fault.
    pub writes_after: usize,
}

/// The counter as the cluster has it now, read through the VIP.
pub fn counter(c: &Cluster) -> Option<i64> {
    counter_of(c, "counter")
}

/// Key `key`'s counter, read through the VIP.
pub fn counter_of(c: &Cluster, key: &str) -> Option<i64> {
    let addr: SocketAddr = format!("{VIP}:6379").parse().ok()?;
    wait_for(Duration::from_secs(5), || {
        c.client()
            .ns
            .enter(|| {
                let mut s = client::connect(addr).ok()?;
                let v = client::call(&mut s, &["GET", key]).ok()?;
                (!v.starts_with('-')).then(|| v.parse().unwrap_or(0))
            })
            .ok()
            .flatten()
    })
}

/// Judges a writer's report: gaps between `fault_at` and `end` (a client
/// still waiting at `end` counts too), and what was lost — every step back
/// of the counter, plus acknowledged values above what the cluster has at
/// the end.
pub fn judge(
    r: &client::Report,
    fault_at: Instant,
    end: Instant,
    final_value: i64,
    two_masters: Duration,
) -> Outcome {
    let after: Vec<&(Instant, i64)> = r.acked.iter().filter(|(t, _)| *t >= fault_at).collect();
    let mut gaps = Vec::new();
    let mut prev = r
        .acked
        .iter()
        .rev()
        .find(|(t, _)| *t < fault_at)
        .map_or(fault_at, |a| a.0);
    for (t, _) in &after {
        gaps.push(*t - prev);
        prev = *t;
    }
    gaps.push(end.saturating_duration_since(prev));
    let lost_back: i64 = r
        .acked
        .windows(2)
        .filter(|w| w[1].1 <= w[0].1)
        .map(|w| w[0].1 - w[1].1 + 1)
        .sum();
    let top = r.acked.iter().map(|a| a.1).max().unwrap_or(0);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    Outcome {
        longest_gap_ms: gaps.iter().max().map_or(0.0, |d| ms(*d)),
        unavailable_ms: gaps
            .iter()
            .filter(|d| **d > Duration::from_millis(50))
            .map(|d| ms(*d))
            .sum::<f64>()
            + 0.0,
        lost: lost_back + (top - final_value).max(0),
        two_masters_ms: ms(two_masters),
        writes_after: after.len(),
    }
}

/// One fault on a fresh cluster, measured: the writer runs 1 s before the
/// fault and `settle` after it.
pub fn run_fault(kind: Kind, fault: Fault, prefix: &str, settle: Duration) -> Result<Outcome> {
    run_fault_as(kind, Quorum::Off, fault, prefix, settle, &[None]).map(|mut v| v.remove(0))
}

/// Writes between two acknowledged writes of each profile writer, so that
/// three share the client host's CPU without starving the cluster; well
/// below the gaps measured (tens of ms).
pub const PACE: Duration = Duration::from_micros(500);

/// One fault on a fresh two-host cluster without a VIP, as a
/// Sentinel-aware client sees it: redis-py's `Sentinel` (50 ms timeouts)
/// asking ha-daemon's `[sentinel]` faces (`Kind::Ours`, with a witness) or
/// three real Sentinels (`Kind::Sentinel`). Two writable masters are not
/// sampled here (no VIP to watch).
pub fn run_discovery_fault(
    kind: Kind,
    fault: Fault,
    prefix: &str,
    settle: Duration,
) -> Result<Outcome> {
    let real = matches!(kind, Kind::Sentinel { .. });
    let mut c = if real {
        Cluster::start_all(
            crate::Switch::Nic,
            kind,
            2,
            Quorum::Off,
            0,
            prefix,
            false,
            Default::default(),
            None,
            false,
        )?
    } else {
        Cluster::start_discovery(2, Quorum::Witness, prefix)?
    };
    // The Sentinels: the daemons on the Redis hosts, or the three real ones.
    let faces: Vec<SocketAddr> = (1..=c.n + usize::from(real))
        .map(|i| SocketAddr::new(c.lan.host(i).addr4.into(), SENTINEL_PORT))
        .collect();
    let w = client::LibWriter::start_sentinel(
        client::SentinelLib::RedisPy,
        &c.client().ns,
        &faces,
        "vi",
        "counter",
        Duration::from_millis(50),
    )?;
    std::thread::sleep(Duration::from_secs(2));
    let fault_at = Instant::now();
    c.inject(fault)?;
    std::thread::sleep(settle);
    let end = Instant::now();
    let r = w.stop();
    let m = c.vip_holder().context("no master at the end")?;
    let final_value = redis::cli(c.host(m), &["GET", "counter"])?
        .trim()
        .parse()
        .unwrap_or(0);
    Ok(judge(&r, fault_at, end, final_value, Duration::ZERO))
}

/// The same with one client per profile, side by side on the client host
/// (each on its own key); `None` is the tests' own writer (200 ms connect,
/// 500 ms read timeouts, unpaced). A partition heals after `PARTITION`,
/// within `settle`.
pub fn run_fault_as(
    kind: Kind,
    quorum: Quorum,
    fault: Fault,
    prefix: &str,
    settle: Duration,
    profiles: &[Option<client::Profile>],
) -> Result<Vec<Outcome>> {
    // The lost master comes back with its data (AOF) after the run, where
    // a quorum made the instance wait for it.
    let persist = fault == Fault::ReplicationCutThenMasterLost;
    let mut c = Cluster::start_full(kind, 2, quorum, 0, prefix, persist)?;
    let addr: SocketAddr = format!("{VIP}:6379").parse()?;
    let keys: Vec<String> = profiles
        .iter()
        .map(|p| match p {
            None => "counter".to_owned(),
            Some(p) => format!("counter:{p:?}"),
        })
        .collect();
    let writers = profiles
        .iter()
        .zip(&keys)
        .map(|(p, key)| match p {
            None => Ok(client::ProfileWriter::Rust(client::Writer::start(
                &c.client().ns,
                addr,
                key,
            ))),
            Some(p) => client::ProfileWriter::start(&c.client().ns, addr, key, *p, PACE)
                .with_context(|| format!("starting the {} client", p.label())),
        })
        .collect::<Result<Vec<_>>>()?;
    let sampler = MasterSampler::start(&c);
    std::thread::sleep(Duration::from_secs(1));
    let fault_at = Instant::now();
    c.inject(fault)?;
    if fault.is_healed() {
        std::thread::sleep(PARTITION);
        c.lan.heal()?;
        for i in 1..=c.n {
            c.signal_redis(i, libc::SIGCONT);
        }
        std::thread::sleep(settle.saturating_sub(PARTITION));
    } else {
        std::thread::sleep(settle);
    }
    let end = Instant::now();
    // Taken before the writers stop (a stop cuts a waiting client's socket).
    let seen = c.diagnose();
    let reports: Vec<client::Report> = writers.into_iter().map(|w| w.stop()).collect();
    if reports.iter().any(|r| r.blocked_at_stop) {
        eprintln!("{seen}");
    }
    for (r, p) in reports.iter().zip(profiles) {
        if r.blocked_at_stop {
            let last = r.acked.last().map(|a| end.saturating_duration_since(a.0));
            eprintln!(
                "{}: the {} client still waited at the end ({last:?} after its last acknowledged write); its last errors: {:?}",
                c.dir.path().display(),
                p.map_or("tests'", |p| p.label()),
                r.error_log
                    .iter()
                    .rev()
                    .take(3)
                    .map(|e| &e.1)
                    .collect::<Vec<_>>()
            );
        }
    }
    if std::env::var_os("HA_BENCH_DEBUG").is_some() {
        for (r, p) in reports.iter().zip(profiles) {
            eprintln!(
                "{} {p:?}: errors in the longest gap: {:?}; went back: {:?}",
                c.dir.path().display(),
                r.errors_in_longest_gap(),
                r.went_back_detail()
            );
        }
    }
    let two = sampler.stop();
    // With a quorum no stale replica took over: the instance waited for the
    // old master, which comes back now (with its data) so that the counter
    // can be read; the run ended before, so the wait counts in full.
    if fault == Fault::ReplicationCutThenMasterLost && quorum != Quorum::Off {
        c.repair()?;
    }
    reports
        .iter()
        .zip(&keys)
        .map(|(r, key)| {
            // Unreadable through the VIP 5 s after the run: the cluster did
            // not recover; that is a failed run, not a count of lost writes.
            let v = counter_of(&c, key)
                .context("the counter is unreadable through the VIP after the run")?;
            Ok(judge(r, fault_at, end, v, two))
        })
        .collect()
}
