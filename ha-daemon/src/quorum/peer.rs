//! The quorum's I/O: one task per node (or witness) with a UDP socket on the
//! quorum port. It owns every instance's candidate and voter, signs and
//! checks every datagram, writes the lease deadline into the kernel fence
//! before it tells anyone the lease is held (and fences before it releases
//! one), and reports lease changes to the instance drivers.
use std::{
    collections::{BTreeMap, HashMap},
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use ring::rand::{SecureRandom, SystemRandom};
use tokio::{net::UdpSocket, sync::mpsc};

use super::{
    Nanos,
    candidate::{Candidate, From, LostWhy, Out, Want},
    staleness::{Behind, Offset},
    timing::{MAX_PROMISE_NS, Timing},
    voter::{Answer, Refusal, Voter},
    wire::{self, Body, Envelope, Freshness, Key, MAX_DATAGRAM, Reject, Verdict},
};
use crate::{
    ebpf::clock::boottime_ns,
    status::{LeaseStatus, PeerStatus, QuorumStatus, Shared, StaleStatus, VoteStatus},
};

/// Writes an instance's lease deadline (CLOCK_BOOTTIME ns; 0: fenced) where
/// the kernel enforces it.
pub type Fence = Arc<dyn Fn(u32, Nanos) + Send + Sync>;

/// What a driver hears about its instance's lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseEvent {
    /// The lease is ours: the kernel lets the VIP's Redis traffic through
    /// until `until` (CLOCK_BOOTTIME).
    Acquired { term: u64, until: Nanos },
    /// Not ours any more: step down now (the kernel fence engages by itself).
    Lost { term: u64, why: LostWhy },
    /// Another node asks for the lease to replace this master.
    YieldRequest { from: IpAddr, priority: u8 },
    /// The newest term this node knows of, and its holder (None: released).
    Newest { term: u64, holder: Option<IpAddr> },
}

enum Cmd {
    Register {
        instance: String,
        holder: IpAddr,
        advert_interval_ns: Nanos,
        slot: u32,
        offset: Option<Offset>,
        events: mpsc::Sender<LeaseEvent>,
    },
    Unregister(String),
    /// An operator accepts what the local Redis lacks: the next takeover is
    /// not refused for staleness. Answered with the last staleness refusal.
    AcceptLoss(
        String,
        tokio::sync::oneshot::Sender<Result<Option<StaleStatus>, String>>,
    ),
    Want(String, Want),
    Unwant(String),
    Send(Vec<IpAddr>, Body),
    Conns(String, mpsc::UnboundedSender<(IpAddr, wire::Conns)>),
}

/// How a driver (or the connection tracker) talks to the quorum task.
#[derive(Clone)]
pub struct Handle {
    tx: mpsc::UnboundedSender<Cmd>,
}

impl Handle {
    /// Joins `instance` to the quorum as a candidate: `holder` is this
    /// node's address for it (the VRRP source), `slot` its kernel fence
    /// slot, `offset` where its Redis's data stands (sent with each request).
    pub fn register(
        &self,
        instance: &str,
        holder: IpAddr,
        advert_interval_ns: Nanos,
        slot: u32,
        offset: Option<Offset>,
    ) -> mpsc::Receiver<LeaseEvent> {
        let (events, rx) = mpsc::channel(64);
        let _ = self.tx.send(Cmd::Register {
            instance: instance.into(),
            holder,
            advert_interval_ns,
            slot,
            offset,
            events,
        });
        rx
    }
    /// The next takeover of `instance` is not refused for staleness (an
    /// operator accepted the loss); returns the last refusal for it.
    pub async fn accept_loss(&self, instance: &str) -> Result<Option<StaleStatus>, String> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let _ = self.tx.send(Cmd::AcceptLoss(instance.into(), tx));
        rx.await
            .unwrap_or_else(|_| Err("the quorum task is gone".into()))
    }
    pub fn unregister(&self, instance: &str) {
        let _ = self.tx.send(Cmd::Unregister(instance.into()));
    }
    pub fn want(&self, instance: &str, w: Want) {
        let _ = self.tx.send(Cmd::Want(instance.into(), w));
    }
    /// Gives the lease up: the kernel fence engages first, then the voters
    /// are told.
    pub fn unwant(&self, instance: &str) {
        let _ = self.tx.send(Cmd::Unwant(instance.into()));
    }
    /// Sends a body (connection lists) to these peers, signed.
    pub fn send(&self, to: Vec<IpAddr>, body: Body) {
        let _ = self.tx.send(Cmd::Send(to, body));
    }
    /// The connection lists peers send about `instance`, with their sender.
    pub fn conns(&self, instance: &str) -> mpsc::UnboundedReceiver<(IpAddr, wire::Conns)> {
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = self.tx.send(Cmd::Conns(instance.into(), tx));
        rx
    }
}

/// What the quorum task needs to know.
#[derive(Clone)]
pub struct Settings {
    pub port: u16,
    pub peers: Vec<IpAddr>,
    pub key: Key,
    pub drift_ppm: u32,
    /// Where the promise horizon is kept across restarts.
    pub run_dir: PathBuf,
    /// A witness votes on any instance it is asked about and holds none.
    pub witness: bool,
    /// How much of the last master's acknowledged writes a takeover by this
    /// node may lack (`[quorum] max_staleness_ms`).
    pub max_stale_ns: Nanos,
}

struct Inst {
    cand: Option<Candidate>,
    voter: Voter,
    events: Option<mpsc::Sender<LeaseEvent>>,
    slot: Option<u32>,
    timing: Option<Timing>,
    /// Where the local Redis's data stands (Redis nodes).
    offset: Option<Offset>,
    /// When a staleness refusal was last logged.
    stale_logged: Nanos,
    /// Last `Newest` told to the driver.
    told: (u64, Option<IpAddr>),
    lease: LeaseStatus,
    vote: VoteStatus,
}

impl Inst {
    fn new(quiet_until: Nanos, restarted: bool, kept: Option<&super::voter::Memory>) -> Self {
        Self {
            cand: None,
            voter: match (restarted, kept) {
                (true, Some(m)) => Voter::restore(quiet_until, m),
                (true, None) => Voter::restarted(quiet_until),
                (false, _) => Voter::new(quiet_until),
            },
            events: None,
            slot: None,
            timing: None,
            offset: None,
            stale_logged: 0,
            told: (0, None),
            lease: LeaseStatus::default(),
            vote: VoteStatus::default(),
        }
    }
}

/// Witnesses answer for at most this many instances.
const MAX_INSTANCES: usize = 256;
pub struct Quorum {
    cmds: Option<mpsc::UnboundedReceiver<Cmd>>,
    s: Settings,
    v4: Option<Arc<UdpSocket>>,
    v6: Option<Arc<UdpSocket>>,
    insts: BTreeMap<String, Inst>,
    fresh: Freshness,
    /// The last challenge nonce each peer sent us, echoed back to it.
    echo: HashMap<IpAddr, u64>,
    incarnation: u64,
    seq: u64,
    rng: SystemRandom,
    quiet_until: Nanos,
    /// This voter ran before in this boot (its horizon file says so).
    restarted: bool,
    /// What the voters kept from before a restart, per instance.
    kept: BTreeMap<String, super::voter::Memory>,
    /// Where the voters' memory goes, and what went there last, when.
    memory: super::memory::MemoryFile,
    memory_saved: BTreeMap<String, super::voter::Memory>,
    memory_at: Nanos,
    /// The promise horizon's writer (off this thread: see horizon.rs).
    horizon: super::horizon::Horizon,
    fence: Option<Fence>,
    status: Shared,
    heard: HashMap<IpAddr, Nanos>,
    rejected: BTreeMap<&'static str, u64>,
    conns: HashMap<String, mpsc::UnboundedSender<(IpAddr, wire::Conns)>>,
}

fn read_boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// The lease thread's SCHED_FIFO priority: above every normal thread on the
/// host, so that a busy host does not make a healthy master miss its
/// renewals (it wakes every renewal period for microseconds). systemd:
/// `LimitRTPRIO=10` allows it without CAP_SYS_NICE.
pub const RT_PRIORITY: i32 = 10;

/// Gives the calling thread SCHED_FIFO priority `prio`; says why not if it
/// cannot (no CAP_SYS_NICE nor RLIMIT_RTPRIO).
pub fn realtime(prio: i32) -> Result<(), String> {
    let p = libc::sched_param {
        sched_priority: prio,
    };
    // SAFETY: 0 = the calling thread; valid sched_param.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &p) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().to_string())
    }
}

impl Quorum {
    /// Runs the quorum task on a thread of its own (its own runtime, real-
    /// time priority where allowed): the lease must be renewed on time
    /// whatever the rest of the daemon is doing.
    pub fn spawn_thread(
        s: Settings,
        fence: Option<Fence>,
        status: Shared,
    ) -> std::io::Result<Handle> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("ha-quorum".into())
            .spawn(move || {
                match realtime(RT_PRIORITY) {
                    Ok(()) => tracing::debug!("quorum: thread at SCHED_FIFO {RT_PRIORITY}"),
                    Err(e) => tracing::warn!(
                        "quorum: cannot run the lease thread at real-time priority ({e}); a busy host may delay renewals (give the service LimitRTPRIO={RT_PRIORITY} or CAP_SYS_NICE)"
                    ),
                }
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                rt.block_on(async move {
                    match Quorum::bind(s, fence, status).await {
                        Ok((q, h)) => {
                            let _ = tx.send(Ok(h));
                            q.run().await;
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e));
                        }
                    }
                });
            })?;
        rx.recv()
            .unwrap_or_else(|_| Err(std::io::Error::other("the quorum thread died")))
    }

    /// Binds the quorum port (per address family of the peers) and works
    /// out how long this voter must stay quiet.
    pub async fn bind(
        s: Settings,
        fence: Option<Fence>,
        status: Shared,
    ) -> std::io::Result<(Self, Handle)> {
        let bind = |a: SocketAddr| async move {
            let sock = socket2::Socket::new(
                socket2::Domain::for_address(a),
                socket2::Type::DGRAM,
                Some(socket2::Protocol::UDP),
            )?;
            if a.is_ipv6() {
                sock.set_only_v6(true)?;
            }
            sock.set_nonblocking(true)?;
            sock.bind(&a.into())?;
            UdpSocket::from_std(sock.into()).map(Arc::new)
        };
        let v4 = if s.peers.iter().any(|p| p.is_ipv4()) {
            Some(
                bind(SocketAddr::from(([0, 0, 0, 0], s.port)))
                    .await
                    .map_err(|e| {
                        std::io::Error::new(e.kind(), format!("UDP port {} (IPv4): {e}", s.port))
                    })?,
            )
        } else {
            None
        };
        let v6 = if s.peers.iter().any(|p| p.is_ipv6()) {
            Some(
                bind(SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, s.port)))
                    .await
                    .map_err(|e| {
                        std::io::Error::new(e.kind(), format!("UDP port {} (IPv6): {e}", s.port))
                    })?,
            )
        } else {
            None
        };
        let boot_id = read_boot_id();
        let (quiet_until, restarted) = quiet_until(&s, &boot_id);
        let state_file = s.run_dir.join("quorum-state");
        let kept = if restarted {
            super::memory::load(&state_file, &boot_id)
        } else {
            BTreeMap::new()
        };
        let memory = super::memory::MemoryFile::start(state_file, boot_id.clone())?;
        let rng = SystemRandom::new();
        let incarnation = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        let (tx, rx) = mpsc::unbounded_channel();
        let q = Quorum {
            cmds: Some(rx),
            v4,
            v6,
            insts: BTreeMap::new(),
            fresh: Freshness::default(),
            echo: HashMap::new(),
            incarnation,
            seq: 0,
            rng,
            quiet_until,
            restarted,
            memory_saved: kept.clone(),
            kept,
            memory,
            memory_at: 0,
            horizon: super::horizon::Horizon::start(s.run_dir.join("quorum-horizon"), boot_id)?,
            fence,
            status,
            heard: HashMap::new(),
            rejected: BTreeMap::new(),
            conns: HashMap::new(),
            s,
        };
        Ok((q, Handle { tx }))
    }

    fn random(&self) -> u64 {
        let mut b = [0u8; 8];
        let _ = self.rng.fill(&mut b);
        u64::from_le_bytes(b)
    }

    pub async fn run(mut self) {
        let Some(mut cmds) = self.cmds.take() else {
            return;
        };
        if self.quiet_until > boottime_ns() {
            tracing::info!(
                "quorum: this voter grants nothing for {:.1} s: it may have promised before it restarted",
                (self.quiet_until - boottime_ns()) as f64 / 1e9
            );
        }
        self.publish(true);
        let mut buf4 = vec![0u8; MAX_DATAGRAM + 600];
        let mut buf6 = vec![0u8; MAX_DATAGRAM + 600];
        let (v4, v6) = (self.v4.clone(), self.v6.clone());
        let mut last_publish = boottime_ns();
        let mut last_written = last_publish;
        loop {
            let now = boottime_ns();
            let wake = self
                .insts
                .values()
                .filter_map(|i| i.cand.as_ref()?.next_wakeup())
                .min()
                .unwrap_or(now + 1_000_000_000);
            let sleep = tokio::time::sleep(Duration::from_nanos(wake.saturating_sub(now)));
            tokio::select! {
                biased;
                c = cmds.recv() => match c {
                    Some(c) => self.command(c),
                    None => return,
                },
                r = recv(&v4, &mut buf4) => if let Some((n, from)) = r {
                    let data = buf4[..n].to_vec();
                    self.datagram(from, &data);
                },
                r = recv(&v6, &mut buf6) => if let Some((n, from)) = r {
                    let data = buf6[..n].to_vec();
                    self.datagram(from, &data);
                },
                _ = sleep => {
                    let now = boottime_ns();
                    if now > wake + 5_000_000 {
                        tracing::debug!("quorum: woke {:.1} ms late", (now - wake) as f64 / 1e6);
                    }
                    let names: Vec<String> = self.insts.keys().cloned().collect();
                    for n in names {
                        let mut out = Vec::new();
                        if let Some(c) = self.insts.get_mut(&n).and_then(|i| i.cand.as_mut()) {
                            c.tick(now, &mut out);
                        }
                        self.outs(&n, out);
                    }
                }
            }
            let now = boottime_ns();
            self.remember(now);
            if now > last_publish + 200_000_000 {
                // status.json about once a second; `status` asks live.
                let bump = now > last_written + 1_000_000_000;
                if bump {
                    last_written = now;
                }
                last_publish = now;
                self.publish(bump);
            }
        }
    }

    fn command(&mut self, c: Cmd) {
        let now = boottime_ns();
        match c {
            Cmd::Register {
                instance,
                holder,
                advert_interval_ns,
                slot,
                offset,
                events,
            } => {
                let timing = Timing::derive(advert_interval_ns, self.s.drift_ppm);
                let first_id = self.random();
                let (quiet, restarted) = (self.quiet_until, self.restarted);
                let inst = self
                    .insts
                    .entry(instance.clone())
                    .or_insert_with(|| Inst::new(quiet, restarted, self.kept.get(&instance)));
                let max_stale = if super::planted("no-staleness") {
                    u64::MAX
                } else {
                    self.s.max_stale_ns
                };
                inst.cand = Some(
                    Candidate::new(holder, self.s.peers.len() + 1, timing, first_id)
                        .with_max_stale(max_stale),
                );
                inst.offset = offset;
                inst.events = Some(events);
                inst.slot = Some(slot);
                inst.timing = Some(timing);
                inst.lease = LeaseStatus {
                    lease_ms: timing.lease_ns as f64 / 1e6,
                    promise_ms: timing.promise_ns as f64 / 1e6,
                    renew_ms: timing.renew_ns as f64 / 1e6,
                    max_staleness_ms: self.s.max_stale_ns as f64 / 1e6,
                    ..Default::default()
                };
                // Nothing is ours yet: the kernel fence is closed.
                if let Some(f) = &self.fence {
                    f(slot, 0);
                }
                tracing::info!(
                    instance = %instance,
                    "quorum: {} voters, majority {}; lease {:.1} ms from each request, voters promise {:.1} ms, renewed every {:.1} ms (drift bound {} ppm)",
                    self.s.peers.len() + 1,
                    crate::quorum::majority(self.s.peers.len() + 1),
                    timing.lease_ns as f64 / 1e6,
                    timing.promise_ns as f64 / 1e6,
                    timing.renew_ns as f64 / 1e6,
                    self.s.drift_ppm
                );
                self.publish(true);
            }
            Cmd::Unregister(name) => {
                if let Some(i) = self.insts.get_mut(&name) {
                    let mut out = Vec::new();
                    if let Some(c) = i.cand.as_mut() {
                        c.unwant(&mut out);
                    }
                    self.outs(&name, out);
                    if let Some(i) = self.insts.get_mut(&name) {
                        i.cand = None;
                        i.events = None;
                    }
                }
                self.publish(true);
            }
            Cmd::Want(name, w) => {
                let mut out = Vec::new();
                if let Some(c) = self.insts.get_mut(&name).and_then(|i| i.cand.as_mut()) {
                    c.want(now, w, &mut out);
                }
                if let Some(i) = self.insts.get_mut(&name) {
                    i.lease.wanted = true;
                }
                self.outs(&name, out);
            }
            Cmd::Unwant(name) => {
                let mut out = Vec::new();
                if let Some(c) = self.insts.get_mut(&name).and_then(|i| i.cand.as_mut()) {
                    c.unwant(&mut out);
                }
                if let Some(i) = self.insts.get_mut(&name) {
                    i.lease.wanted = false;
                    i.lease.stale = None;
                    i.lease.accept_loss = false;
                }
                self.outs(&name, out);
            }
            Cmd::AcceptLoss(name, reply) => {
                let r = match self.insts.get_mut(&name) {
                    Some(Inst {
                        cand: Some(c),
                        lease,
                        ..
                    }) => {
                        if c.held().is_some() {
                            Err("this node holds the lease already".into())
                        } else {
                            c.accept_loss();
                            lease.accept_loss = true;
                            tracing::warn!(instance = %name, "quorum: an operator accepts the loss of what the local Redis lacks: the next takeover is not refused for staleness");
                            let mut out = Vec::new();
                            c.hurry(now, &mut out);
                            let stale = lease.stale.clone();
                            self.outs(&name, out);
                            Ok(stale)
                        }
                    }
                    _ => Err(format!("instance {name:?} is not a candidate here")),
                };
                self.publish(true);
                let _ = reply.send(r);
            }
            Cmd::Send(to, body) => {
                for p in to {
                    self.send(p, body.clone());
                }
            }
            Cmd::Conns(instance, tx) => {
                self.conns.insert(instance, tx);
            }
        }
    }

    fn send(&mut self, to: IpAddr, body: Body) {
        self.seq += 1;
        let env = Envelope {
            incarnation: self.incarnation,
            seq: self.seq,
            echo: self.echo.get(&to).copied().unwrap_or(0),
            body,
        };
        let data = wire::seal(&self.s.key, &env);
        let sock = if to.is_ipv4() { &self.v4 } else { &self.v6 };
        if let Some(s) = sock {
            // A full socket buffer drops the datagram, as the network may.
            let _ = s.try_send_to(&data, SocketAddr::new(to, self.s.port));
        }
    }

    fn reject(&mut self, r: Reject) {
        *self.rejected.entry(r.name()).or_default() += 1;
    }

    fn datagram(&mut self, from: SocketAddr, data: &[u8]) {
        let peer = from.ip().to_canonical();
        if !self.s.peers.contains(&peer) {
            return self.reject(Reject::NotVoter);
        }
        let env = match wire::open(&self.s.key, data) {
            Ok(e) => e,
            Err(r) => return self.reject(r),
        };
        let now = boottime_ns();
        self.heard.insert(peer, now);
        // Answers are bound to a request id only this run knows; challenges
        // must get through after either side restarted.
        if !matches!(env.body, Body::Answer { .. } | Body::Challenge { .. }) {
            let nonce = self.random();
            if let Verdict::Stale(challenge) = self.fresh.check(peer, &env, now, nonce) {
                self.reject(Reject::Replay);
                if let Some(n) = challenge {
                    self.send(peer, Body::Challenge { nonce: n });
                }
                return;
            }
        }
        match env.body {
            Body::Challenge { nonce } => {
                self.echo.insert(peer, nonce);
                // Ask again at once, now with the echo.
                let names: Vec<String> = self.insts.keys().cloned().collect();
                for n in names {
                    let mut out = Vec::new();
                    if let Some(c) = self.insts.get_mut(&n).and_then(|i| i.cand.as_mut()) {
                        c.hurry(now, &mut out);
                    }
                    self.outs(&n, out);
                }
            }
            Body::Request { instance, req } => {
                if req.holder != peer {
                    // Only a node itself asks for itself.
                    return self.reject(Reject::NotVoter);
                }
                if !self.insts.contains_key(&instance) {
                    if !self.s.witness || self.insts.len() >= MAX_INSTANCES {
                        return self.reject(Reject::UnknownInstance);
                    }
                    let (quiet, restarted) = (self.quiet_until, self.restarted);
                    let inst = Inst::new(quiet, restarted, self.kept.get(&instance));
                    self.insts.insert(instance.clone(), inst);
                }
                let Some(inst) = self.insts.get_mut(&instance) else {
                    return;
                };
                if req.preempt
                    && inst.cand.as_ref().is_some_and(|c| c.held().is_some())
                    && let Some(ev) = &inst.events
                {
                    let _ = ev.try_send(LeaseEvent::YieldRequest {
                        from: peer,
                        priority: req.priority,
                    });
                }
                // A split vote: this node is asking too, ranks lower and
                // holds nothing. It withdraws (forgetting its grants) and
                // lets its own vote go to the higher-ranked node.
                if let Some(c) = inst.cand.as_mut()
                    && c.yields_to(now, &req)
                {
                    let (me, backoff) = (c.id(), 3 * c.timing().renew_ns);
                    c.withdraw(now, backoff);
                    if let Some(p) = inst.voter.promise(now)
                        && p.holder == me
                    {
                        inst.voter.release(me, p.term);
                    }
                    tracing::debug!(instance = %instance, "quorum: {peer} (priority {}) outranks this node's attempt: voting for it", req.priority);
                }
                // A takeover from another holder: how far behind it is, for
                // the log and status (0: not behind).
                let takeover =
                    !req.holding && inst.voter.data_holder().is_some_and(|h| h != req.holder);
                let behind = takeover.then(|| {
                    inst.voter.history().behind_pos(req.offset.map(|offset| {
                        super::staleness::Position {
                            replid: req.replid,
                            replid2: req.replid2,
                            offset,
                            empty: req.empty,
                        }
                    }))
                });
                let answer = inst.voter.request(now, &req);
                if let (Some(b), Answer::Grant { term }) = (behind, &answer) {
                    // None: not behind at all. Unknown (an operator's
                    // accepted loss): no figure, and the log says why.
                    let b = b.unwrap_or(super::staleness::Behind { ns: 0, bytes: 0 });
                    inst.vote.last_takeover_behind_ms =
                        (b.ns != u64::MAX).then(|| b.ns as f64 / 1e6);
                    tracing::info!(instance = %instance, "quorum: granted {peer} a takeover (term {term}): its Redis is {}", b.describe());
                }
                count_vote(&mut inst.vote, &answer);
                self.persist_horizon();
                self.send(
                    peer,
                    Body::Answer {
                        instance: instance.clone(),
                        id: req.id,
                        answer,
                    },
                );
                self.tell_newest(&instance);
            }
            Body::Answer {
                instance,
                id,
                answer,
            } => {
                if let Answer::Refuse { why, term, holder } = answer {
                    tracing::debug!(instance = %instance, "quorum: {peer} refused request {id}: {why:?} (its newest term {term}, to {holder:?})");
                    if let Refusal::Stale(b) = why {
                        self.refused_stale(&instance, &peer.to_string(), b, holder, now);
                    }
                }
                let mut out = Vec::new();
                match self.insts.get_mut(&instance).and_then(|i| i.cand.as_mut()) {
                    Some(c) => c.answer(now, From::Peer(peer), id, answer, &mut out),
                    None => return self.reject(Reject::UnknownInstance),
                }
                self.outs(&instance, out);
                self.tell_newest(&instance);
            }
            Body::Release {
                instance,
                holder,
                term,
            } => {
                if holder != peer {
                    return self.reject(Reject::NotVoter);
                }
                let Some(inst) = self.insts.get_mut(&instance) else {
                    return self.reject(Reject::UnknownInstance);
                };
                inst.voter.release(holder, term);
                let mut out = Vec::new();
                if let Some(c) = inst.cand.as_mut() {
                    c.hurry(now, &mut out);
                }
                if let Some(ev) = &inst.events {
                    let _ = ev.try_send(LeaseEvent::Newest { term, holder: None });
                    inst.told = (term, None);
                }
                self.outs(&instance, out);
            }
            Body::Conns(c) => {
                // None: a witness, or an instance without tickles.
                if let Some(tx) = self.conns.get(&c.instance) {
                    let _ = tx.send((peer, c));
                }
            }
        }
    }

    /// Carries out what a candidate decided.
    fn outs(&mut self, name: &str, mut outs: Vec<Out>) {
        let now = boottime_ns();
        while !outs.is_empty() {
            let mut more = Vec::new();
            for o in outs {
                let Some(inst) = self.insts.get_mut(name) else {
                    return;
                };
                match o {
                    Out::Request(mut r) => {
                        if let Some(p) = inst.offset.as_ref().and_then(Offset::get) {
                            (r.offset, r.replid, r.replid2, r.empty) =
                                (Some(p.offset), p.replid, p.replid2, p.empty);
                        }
                        tracing::trace!(instance = %name, "quorum: request {} term {} offset {:?}", r.id, r.term, r.offset);
                        let own = inst.voter.request(now, &r);
                        let own_stale = match own {
                            Answer::Refuse {
                                why: Refusal::Stale(b),
                                holder,
                                ..
                            } => Some((b, holder)),
                            _ => None,
                        };
                        count_vote(&mut inst.vote, &own);
                        if let Some(c) = inst.cand.as_mut() {
                            c.answer(now, From::Me, r.id, own, &mut more);
                        }
                        for p in self.s.peers.clone() {
                            self.send(
                                p,
                                Body::Request {
                                    instance: name.into(),
                                    req: r,
                                },
                            );
                        }
                        if let Some((b, holder)) = own_stale {
                            self.refused_stale(name, "self", b, holder, now);
                        }
                        self.persist_horizon();
                    }
                    Out::Release { term } => {
                        // Fenced in the kernel before any voter hears of it.
                        if let (Some(f), Some(slot)) = (&self.fence, inst.slot) {
                            f(slot, 0);
                        }
                        let Some(me) = inst.cand.as_ref().map(Candidate::id) else {
                            continue;
                        };
                        inst.voter.release(me, term);
                        inst.lease.held = false;
                        inst.lease.until_ns = 0;
                        inst.lease.released += 1;
                        inst.lease.last_event = Some(format!("released term {term}"));
                        inst.lease.last_event_ns = now;
                        tracing::info!(instance = %name, "quorum: released the lease (term {term}); fenced first");
                        for p in self.s.peers.clone() {
                            self.send(
                                p,
                                Body::Release {
                                    instance: name.into(),
                                    holder: me,
                                    term,
                                },
                            );
                        }
                        self.publish(true);
                    }
                    Out::Acquired { term, until } => {
                        if let (Some(f), Some(slot)) = (&self.fence, inst.slot) {
                            f(slot, until);
                        }
                        if inst.lease.accept_loss {
                            tracing::warn!(instance = %name, "quorum: lease acquired with the loss accepted{}", inst.lease.stale.as_ref().map(|s| format!(" (last refusal: {} by {})", s.describe(), s.voter)).unwrap_or_default());
                        }
                        inst.lease.accept_loss = false;
                        inst.lease.stale = None;
                        inst.lease.held = true;
                        inst.lease.term = term;
                        inst.lease.until_ns = until;
                        inst.lease.acquired += 1;
                        inst.lease.granted_by = granted_by(inst.cand.as_ref());
                        inst.lease.last_event = Some(format!("acquired term {term}"));
                        inst.lease.last_event_ns = now;
                        tracing::info!(instance = %name, "quorum: lease acquired, term {term}, granted by {}", inst.lease.granted_by.join(", "));
                        if let Some(ev) = &inst.events {
                            let _ = ev.try_send(LeaseEvent::Acquired { term, until });
                        }
                        self.publish(true);
                    }
                    Out::Extended { term, until } => {
                        tracing::trace!(instance = %name, "quorum: term {term} extended to {until}");
                        if let (Some(f), Some(slot)) = (&self.fence, inst.slot) {
                            f(slot, until);
                        }
                        inst.lease.until_ns = until;
                        inst.lease.granted_by = granted_by(inst.cand.as_ref());
                    }
                    Out::Lost { term, why } => {
                        inst.lease.held = false;
                        inst.lease.lost += 1;
                        inst.lease.last_event = Some(format!("lost term {term}: {why:?}"));
                        inst.lease.last_event_ns = now;
                        tracing::warn!(instance = %name, "quorum: lease lost (term {term}, {why:?}: not renewed by a majority in time): stepping down; the kernel fence engages at its end");
                        if let Some(ev) = &inst.events {
                            let _ = ev.try_send(LeaseEvent::Lost { term, why });
                        }
                        self.publish(true);
                    }
                }
            }
            outs = more;
        }
    }

    /// A voter refused this node's takeover: its Redis lacks too much of the
    /// last master's data. Shown in status; logged at most once a second.
    fn refused_stale(
        &mut self,
        name: &str,
        voter: &str,
        b: Behind,
        holder: Option<IpAddr>,
        now: Nanos,
    ) {
        let Some(inst) = self.insts.get_mut(name) else {
            return;
        };
        if inst.cand.as_ref().is_none_or(|c| c.wants().is_none()) {
            return;
        }
        let st = StaleStatus {
            voter: voter.to_owned(),
            behind_ms: (b.ns != u64::MAX).then(|| b.ns as f64 / 1e6),
            behind_bytes: (b.bytes != u64::MAX).then_some(b.bytes),
            at_ns: now,
        };
        inst.lease.stale_refusals += 1;
        let first = inst.lease.stale.is_none();
        if now >= inst.stale_logged + 1_000_000_000 {
            inst.stale_logged = now;
            tracing::warn!(
                instance = %name,
                "quorum: no takeover: voter {voter} refuses the local Redis: {}; waiting for the old master{} (`ha-daemon promote --accept-loss` takes over anyway)",
                b.describe(),
                holder.map(|h| format!(" {h}")).unwrap_or_default()
            );
        }
        inst.lease.stale = Some(st);
        self.publish(first);
    }

    /// Tells the driver the newest term and holder this node knows of.
    fn tell_newest(&mut self, name: &str) {
        let Some(inst) = self.insts.get_mut(name) else {
            return;
        };
        let v = inst.voter.newest();
        let c = inst.cand.as_ref().map_or((0, None), |c| c.newest());
        let newest = if c.0 > v.0 { c } else { v };
        if newest != inst.told && newest.0 > 0 {
            inst.told = newest;
            inst.lease.term = newest.0;
            inst.lease.holder = newest.1;
            if let Some(ev) = &inst.events {
                let _ = ev.try_send(LeaseEvent::Newest {
                    term: newest.0,
                    holder: newest.1,
                });
            }
            // At once, not with the next periodic publish (200 ms): which
            // node is master for clients (the Sentinel face) follows the
            // holder, and a backup learns the new one here.
            self.publish(true);
        }
    }

    /// Keeps the voters' memory on disk as it changes (at most every
    /// `MEMORY_EVERY_NS`), for a restart within this boot.
    fn remember(&mut self, now: Nanos) {
        if now < self.memory_at + super::voter::MEMORY_EVERY_NS {
            return;
        }
        let m: BTreeMap<String, super::voter::Memory> = self
            .insts
            .iter()
            .map(|(n, i)| (n.clone(), i.voter.memory()))
            .collect();
        if m != self.memory_saved {
            self.memory.save(&m);
            self.memory_saved = m;
            self.memory_at = now;
        }
    }

    /// Keeps the promise horizon on disk, a chunk ahead.
    fn persist_horizon(&mut self) {
        let h = self
            .insts
            .values()
            .map(|i| i.voter.horizon())
            .max()
            .unwrap_or(0);
        self.horizon.cover(h);
    }

    fn publish(&mut self, bump: bool) {
        let now = boottime_ns();
        let q = QuorumStatus {
            role: if self.s.witness { "witness" } else { "node" }.into(),
            port: self.s.port,
            voters: self.s.peers.len() + 1,
            majority: crate::quorum::majority(self.s.peers.len() + 1),
            drift_ppm: self.s.drift_ppm,
            peers: self
                .s
                .peers
                .iter()
                .map(|p| PeerStatus {
                    addr: *p,
                    heard_ns: self.heard.get(p).copied().unwrap_or(0),
                })
                .collect(),
            rejected: self
                .rejected
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect(),
            quiet_until_ns: self.quiet_until,
            votes: self
                .insts
                .iter()
                .map(|(n, i)| {
                    let mut v = i.vote.clone();
                    if let Some(p) = i.voter.promise(now) {
                        v.promised_to = Some(p.holder);
                        v.promise_term = p.term;
                        v.promise_until_ns = p.until;
                    }
                    (v.newest_term, v.newest_holder) = i.voter.newest();
                    if let Some((at, o)) = i.voter.history().newest() {
                        v.master_offset = Some(o);
                        v.master_offset_ns = at;
                    }
                    (n.clone(), v)
                })
                .collect(),
            now_ns: now,
        };
        let leases: Vec<(String, LeaseStatus)> = self
            .insts
            .iter()
            .filter(|(_, i)| i.cand.is_some())
            .map(|(n, i)| (n.clone(), i.lease.clone()))
            .collect();
        let apply = |s: &mut crate::status::Status| {
            s.quorum = Some(q);
            for (n, l) in leases {
                if let Some(i) = s.instances.get_mut(&n) {
                    i.lease = Some(l);
                }
            }
        };
        if bump {
            self.status.update(apply);
        } else {
            self.status.update_quiet(apply);
        }
    }
}

fn granted_by(c: Option<&Candidate>) -> Vec<String> {
    c.and_then(|c| c.held())
        .map(|h| {
            h.granted_by
                .iter()
                .map(|f| match f {
                    From::Me => "self".to_owned(),
                    From::Peer(p) => p.to_string(),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn count_vote(v: &mut VoteStatus, a: &Answer) {
    match a {
        Answer::Grant { .. } => v.granted += 1,
        Answer::Refuse { why, .. } => {
            let k = match why {
                Refusal::Promised => "promised",
                Refusal::StaleTerm => "stale_term",
                Refusal::Quiet => "quiet",
                Refusal::TooLong => "too_long",
                Refusal::Stale(_) => "stale",
            };
            *v.refused.entry(k.into()).or_default() += 1;
        }
    }
}

/// How long a voter that just started must stay quiet (CLOCK_BOOTTIME):
/// until the horizon it wrote before, if this boot wrote one (it then ran
/// before: `true`); otherwise until any promise made before this boot has
/// run out in real time, whatever the clock drift (CLOCK_BOOTTIME counts
/// from boot).
fn quiet_until(s: &Settings, boot_id: &str) -> (Nanos, bool) {
    let file = s.run_dir.join("quorum-horizon");
    if let Ok(text) = std::fs::read_to_string(&file) {
        let mut it = text.split_whitespace();
        if let (Some(b), Some(h)) = (it.next(), it.next().and_then(|h| h.parse::<u64>().ok()))
            && b == boot_id
            && !boot_id.is_empty()
        {
            return (h, true);
        }
    }
    let d = u128::from(s.drift_ppm);
    (
        (u128::from(MAX_PROMISE_NS) * (1_000_000 + d) / (1_000_000 - d)) as Nanos,
        false,
    )
}

async fn recv(s: &Option<Arc<UdpSocket>>, buf: &mut [u8]) -> Option<(usize, SocketAddr)> {
    match s {
        Some(s) => s.recv_from(buf).await.ok(),
        None => std::future::pending().await,
    }
}
