//! A seeded simulation that checks the lease (the pure `Candidate` and
//! `Voter`, as the daemon runs them) under schedules of partitions, message
//! loss, duplication, reordering and long delays, crashes and reboots,
//! stalls, and clock rates that drift within the bound and change over time
//! — in the style of FoundationDB's and TigerBeetle's simulators.
//!
//! Real time is the simulator's; every node sees only its own clock. What is
//! checked, at every step where it could break:
//! 1. never two holders of the lease at once, as the kernel fence sees it (a
//!    holder serves while its own clock is below the deadline it wrote,
//!    also when its daemon is stalled or dead);
//! 2. no grant outlives its promise: a voter never grants a holder while
//!    another holder still serves on a lease that voter's promise backs;
//! 3. a takeover loses only recent writes: each Redis node has a dataset
//!    (a replication offset) that grows while its node serves and follows
//!    the last holder's over a replication link that breaks on its own; a
//!    node that takes over may lack only writes acknowledged within
//!    `max_stale` (stretched by the drift bound), the old lease and the
//!    longest message delay of the end of the old master's writes.
//!
//! A failing seed prints the trace of what led to the violation.
use std::{cmp::Reverse, collections::BinaryHeap, net::IpAddr};

use rand::{Rng, SeedableRng, rngs::StdRng};

use super::{
    Nanos,
    candidate::{Candidate, From, Out, Want},
    timing::{MAX_PROMISE_NS, Timing},
    voter::{Answer, MEMORY_EVERY_NS, Memory, Request, Voter},
};

const MS: Nanos = 1_000_000;
/// The longest a message takes in the simulation.
const MAX_DELAY: Nanos = 200 * MS;

/// A bug planted to show the checker finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bug {
    None,
    /// The lease as long as the promise: no margin for clock-rate drift.
    NoDriftMargin,
    /// A restarted voter grants at once instead of waiting out what it may
    /// have promised before.
    NoQuietAfterRestart,
    /// A holder that gives its lease up does not fence itself first.
    ReleaseWithoutFence,
    /// A candidate that stepped down withdraws its own vote for a
    /// higher-ranked asker before its last lease has ended in the kernel
    /// (found by `a_split_vote_settles_on_one_holder` while writing it).
    WithdrawWhileServing,
    /// The staleness check removed: every takeover asks as if an operator
    /// had accepted any loss.
    NoStalenessCheck,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub redis_nodes: usize,
    pub witnesses: usize,
    pub drift_ppm: u32,
    pub interval_ns: Nanos,
    pub duration_ns: Nanos,
    pub bug: Bug,
    /// Run the random schedule of faults (off: every Redis node asks for
    /// the lease at once, at different priorities, on a quiet network).
    pub faults: bool,
    /// `[quorum] max_staleness_ms`.
    pub max_stale_ns: Nanos,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            redis_nodes: 2,
            witnesses: 1,
            drift_ppm: super::timing::DEFAULT_DRIFT_PPM,
            interval_ns: 10 * MS,
            duration_ns: 20_000 * MS,
            bug: Bug::None,
            faults: true,
            max_stale_ns: 100 * MS,
        }
    }
}

#[derive(Debug)]
pub struct Violation {
    pub seed: u64,
    pub at_ns: Nanos,
    pub what: String,
    pub trace: Vec<String>,
}

#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub acquisitions: u64,
    pub renewals: u64,
    pub releases: u64,
    pub messages: u64,
    pub crashes: u64,
    pub stalls: u64,
    /// Takeovers refused because the asker's data was too stale.
    pub stale_refusals: u64,
    /// Acknowledged writes lost in takeovers (all within the bound).
    pub lost_writes: u64,
    /// Replication links broken.
    pub repl_cuts: u64,
    /// Stale takeovers granted only by voters whose hosts all rebooted
    /// since the lost writes (they forgot what they knew: the documented
    /// limit).
    pub amnesic_takeovers: u64,
}

#[derive(Debug, Clone, Copy)]
struct Clock {
    rate: f64,
    base_real: Nanos,
    base_local: Nanos,
}

impl Clock {
    fn local(&self, t: Nanos) -> Nanos {
        self.base_local + ((t - self.base_real) as f64 * self.rate) as Nanos
    }
    fn set_rate(&mut self, t: Nanos, rate: f64) {
        self.base_local = self.local(t);
        self.base_real = t;
        self.rate = rate;
    }
}

#[derive(Debug, Clone)]
enum Msg {
    Req(Request),
    Ans { id: u64, answer: Answer },
    Rel { holder: IpAddr, term: u64 },
}

struct Node {
    id: IpAddr,
    redis: bool,
    clock: Clock,
    up: bool,
    stalled_until: Nanos,
    queued: Vec<(usize, Msg)>,
    cand: Option<Candidate>,
    voter: Voter,
    /// The horizon file: no grant to others before this local time, as
    /// written by the voter (kept across a daemon restart, lost at reboot).
    persisted: Nanos,
    /// The kernel fence's deadline (local time) and the voters backing it.
    kernel_until: Nanos,
    support: Vec<From>,
    /// The Redis dataset, as its replication offset (one per write).
    data: u64,
    /// The whole host is down (rebooting): its Redis neither serves nor
    /// replicates.
    host_down: bool,
    /// When its host last rebooted (real time).
    rebooted_at: Nanos,
    /// Its voter answered a request since the host booted (the daemon's
    /// horizon file exists then): a restart is known as one.
    voted_since_boot: bool,
    /// What its voter kept on disk (at most `MEMORY_EVERY_NS` old, as the
    /// daemon writes it), and when (local time).
    kept: Option<Memory>,
    kept_at: Nanos,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Deliver { to: usize, from: usize, seq: u64 },
    Tick(usize),
    Fault(u64),
}

struct Sim {
    cfg: Config,
    timing: Timing,
    rng: StdRng,
    seed: u64,
    now: Nanos,
    nodes: Vec<Node>,
    queue: BinaryHeap<Reverse<(Nanos, u64, Ev)>>,
    msgs: std::collections::HashMap<u64, Msg>,
    next_seq: u64,
    /// cut[a][b]: a's messages to b are dropped.
    cut: Vec<Vec<bool>>,
    loss: f64,
    /// repl_cut[a][b]: b's Redis cannot replicate from a's.
    repl_cut: Vec<Vec<bool>>,
    /// The writes acknowledged in the history that survives so far: (real
    /// time, offset). A takeover keeps those up to its node's data.
    acked: Vec<(Nanos, u64)>,
    /// The last node to take the lease: every Redis replicates from it.
    source: Option<usize>,
    trace: Vec<String>,
    stats: Stats,
    violation: Option<Violation>,
}

fn ip(i: usize) -> IpAddr {
    IpAddr::from([198, 18, 0, (i + 1) as u8])
}

impl Sim {
    fn new(cfg: Config, seed: u64) -> Sim {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut timing = Timing::derive(cfg.interval_ns, cfg.drift_ppm);
        if cfg.bug == Bug::NoDriftMargin {
            timing.lease_ns = timing.promise_ns;
        }
        let n = cfg.redis_nodes + cfg.witnesses;
        let rho = f64::from(cfg.drift_ppm) / 1e6;
        let nodes = (0..n)
            .map(|i| {
                let redis = i < cfg.redis_nodes;
                Node {
                    id: ip(i),
                    redis,
                    clock: Clock {
                        rate: pick_rate(&mut rng, rho),
                        base_real: 0,
                        base_local: rng.random_range(0..1_000_000 * MS),
                    },
                    up: true,
                    stalled_until: 0,
                    queued: Vec::new(),
                    cand: redis.then(|| {
                        Candidate::new(ip(i), n, timing, rng.random()).with_max_stale(
                            if cfg.bug == Bug::NoStalenessCheck {
                                u64::MAX
                            } else {
                                cfg.max_stale_ns
                            },
                        )
                    }),
                    voter: Voter::new(0),
                    persisted: 0,
                    kernel_until: 0,
                    support: Vec::new(),
                    data: 0,
                    host_down: false,
                    rebooted_at: 0,
                    voted_since_boot: false,
                    kept: None,
                    kept_at: 0,
                }
            })
            .collect();
        let mut s = Sim {
            timing,
            rng,
            seed,
            now: 0,
            nodes,
            queue: BinaryHeap::new(),
            msgs: Default::default(),
            next_seq: 0,
            cut: vec![vec![false; n]; n],
            loss: 0.0,
            repl_cut: vec![vec![false; n]; n],
            acked: Vec::new(),
            source: None,
            trace: Vec::new(),
            stats: Stats::default(),
            violation: None,
            cfg,
        };
        for i in 0..n {
            s.at(0, Ev::Tick(i));
        }
        if s.cfg.faults {
            s.at(0, Ev::Fault(0));
        } else {
            // VRRP's part: after the contention, the nodes that did not win
            // follow the one that did (they hear its adverts).
            s.at(300 * MS, Ev::Fault(u64::MAX / 4));
            for i in 0..s.cfg.redis_nodes {
                let now_l = s.local(i);
                let mut out = Vec::new();
                if let Some(c) = s.nodes[i].cand.as_mut() {
                    let w = Want {
                        preempt: false,
                        priority: 100 + 10 * i as u8,
                    };
                    c.want(now_l, w, &mut out);
                }
                s.outs(i, out);
            }
        }
        s
    }

    fn at(&mut self, t: Nanos, ev: Ev) {
        self.next_seq += 1;
        self.queue.push(Reverse((t, self.next_seq, ev)));
    }

    fn log(&mut self, what: String) {
        let line = format!("{:>9.3} ms {what}", self.now as f64 / 1e6);
        self.trace.push(line);
        if self.trace.len() > 400 {
            self.trace.drain(..100);
        }
    }

    fn local(&self, i: usize) -> Nanos {
        self.nodes[i].clock.local(self.now)
    }

    /// Who the kernel lets serve now.
    fn serving(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| {
                let n = &self.nodes[i];
                n.kernel_until > 0 && n.clock.local(self.now) < n.kernel_until
            })
            .collect()
    }

    fn fail(&mut self, what: String) {
        if self.violation.is_none() {
            self.log(format!("VIOLATION: {what}"));
            self.violation = Some(Violation {
                seed: self.seed,
                at_ns: self.now,
                what,
                trace: self.trace.clone(),
            });
        }
    }

    fn send(&mut self, from: usize, to: usize, m: Msg) {
        self.stats.messages += 1;
        if self.cut[from][to] || self.rng.random_bool(self.loss) {
            return;
        }
        let copies = if self.rng.random_bool(0.02) { 2 } else { 1 };
        for _ in 0..copies {
            let r: f64 = if self.cfg.faults {
                self.rng.random()
            } else {
                0.0
            };
            let delay = if r < 0.9 {
                self.rng.random_range(50_000..MS)
            } else if r < 0.99 {
                self.rng.random_range(MS..20 * MS)
            } else {
                // Longer than a promise: safety must not depend on delays.
                self.rng.random_range(20 * MS..MAX_DELAY)
            };
            self.next_seq += 1;
            let seq = self.next_seq;
            self.msgs.insert(seq, m.clone());
            self.at(self.now + delay, Ev::Deliver { to, from, seq });
        }
    }

    /// Node `i`'s voter grants or refuses `r`; check 2 on every grant.
    fn vote(&mut self, i: usize, r: &Request) -> Answer {
        let now_l = self.local(i);
        self.nodes[i].voted_since_boot = true;
        let a = self.nodes[i].voter.request(now_l, r);
        if let Answer::Refuse {
            why: super::voter::Refusal::Stale(_),
            ..
        } = a
        {
            self.stats.stale_refusals += 1;
        }
        if let Answer::Grant { .. } = a {
            let me = self.nodes[i].id;
            for h in self.serving() {
                if self.nodes[h].id == r.holder {
                    continue;
                }
                let backs = self.nodes[h].support.iter().any(|f| match f {
                    From::Me => h == i,
                    From::Peer(p) => *p == me,
                });
                if backs {
                    let what = format!(
                        "{me} granted {} (term {}) while {} still serves on a lease it promised",
                        r.holder, r.term, self.nodes[h].id
                    );
                    self.fail(what);
                }
            }
            // The horizon file, in chunks (as the daemon writes it).
            let h = self.nodes[i].voter.horizon();
            if h > self.nodes[i].persisted {
                self.nodes[i].persisted = h + 1_000 * MS;
            }
        }
        a
    }

    fn outs(&mut self, i: usize, mut outs: Vec<Out>) {
        while !outs.is_empty() {
            let mut more = Vec::new();
            for o in outs {
                match o {
                    Out::Request(mut r) => {
                        // Where its Redis's data stands, as the daemon reads it.
                        r.offset = self.nodes[i].redis.then_some(self.nodes[i].data);
                        for v in 0..self.nodes.len() {
                            if v != i {
                                self.send(i, v, Msg::Req(r));
                            }
                        }
                        let a = self.vote(i, &r);
                        let now_l = self.local(i);
                        if let Some(c) = self.nodes[i].cand.as_mut() {
                            c.answer(now_l, From::Me, r.id, a, &mut more);
                        }
                    }
                    Out::Release { term } => {
                        self.stats.releases += 1;
                        let now_l = self.local(i);
                        if self.cfg.bug != Bug::ReleaseWithoutFence {
                            self.nodes[i].kernel_until = self.nodes[i].kernel_until.min(now_l);
                        }
                        let me = self.nodes[i].id;
                        self.log(format!("{me} releases term {term}"));
                        self.nodes[i].voter.release(me, term);
                        for v in 0..self.nodes.len() {
                            if v != i {
                                self.send(i, v, Msg::Rel { holder: me, term });
                            }
                        }
                    }
                    Out::Acquired { term, until } | Out::Extended { term, until } => {
                        let acquired = self.nodes[i].kernel_until <= self.local(i);
                        if acquired {
                            self.stats.acquisitions += 1;
                            let me = self.nodes[i].id;
                            let data = self.nodes[i].data;
                            self.log(format!("{me} holds term {term} with data {data}"));
                        } else {
                            self.stats.renewals += 1;
                        }
                        let support = self.nodes[i]
                            .cand
                            .as_ref()
                            .and_then(|c| c.held())
                            .map(|h| h.granted_by.clone())
                            .unwrap_or_default();
                        self.nodes[i].kernel_until = until;
                        self.nodes[i].support = support;
                        if acquired {
                            self.took_over(i);
                        }
                        let serving = self.serving();
                        if serving.len() > 1 {
                            let who: Vec<String> = serving
                                .iter()
                                .map(|&s| self.nodes[s].id.to_string())
                                .collect();
                            self.fail(format!("two holders serve at once: {}", who.join(", ")));
                        }
                    }
                    Out::Lost { term, why } => {
                        let me = self.nodes[i].id;
                        self.log(format!("{me} loses term {term}: {why:?}"));
                    }
                }
            }
            outs = more;
        }
    }

    /// Check 3: node `i` starts serving with its data; what the history
    /// acknowledged past it is lost, and must all be recent.
    fn took_over(&mut self, i: usize) {
        let data = self.nodes[i].data;
        let keep = self.acked.partition_point(|a| a.1 <= data);
        if keep < self.acked.len() {
            let first_lost = self.acked[keep].0;
            let last = self.acked.last().map_or(first_lost, |a| a.0);
            let lost = self.acked.len() - keep;
            self.stats.lost_writes += lost as u64;
            let rho = f64::from(self.cfg.drift_ppm) / 1e6;
            // The staleness allowed, on a voter's clock; the old holder's
            // lease after its last report, on its clock; the longest delay
            // a report may take to reach a voter (see `send`); a tick.
            // A restarted voter's memory may miss its last MEMORY_EVERY_NS.
            let bound = ((self.cfg.max_stale_ns + MEMORY_EVERY_NS) as f64 * (1.0 + rho)
                / (1.0 - rho)
                + self.timing.lease_ns as f64 / (1.0 - rho)) as Nanos
                + MAX_DELAY
                + 2 * MS;
            let me = self.nodes[i].id;
            let support = self.nodes[i].support.clone();
            self.log(format!(
                "{me} takes over lacking {lost} writes acknowledged over the last {:.1} ms, granted by {support:?}",
                (last - first_lost) as f64 / 1e6
            ));
            // Every voter that granted this lease rebooted since the first
            // lost write: none can remember the old master's data.
            let amnesic = self.nodes[i].support.iter().all(|f| {
                let v = match f {
                    From::Me => i,
                    From::Peer(p) => self.nodes.iter().position(|n| n.id == *p).unwrap_or(i),
                };
                self.nodes[v].rebooted_at > first_lost
            });
            if last - first_lost > bound && amnesic {
                self.stats.amnesic_takeovers += 1;
                self.log(format!("{me}: every voter of its majority rebooted since"));
            } else if last - first_lost > bound {
                self.fail(format!(
                    "{me} took over lacking writes acknowledged {:.1} ms before the old master's last (bound {:.1} ms)",
                    (last - first_lost) as f64 / 1e6,
                    bound as f64 / 1e6
                ));
            }
            self.acked.truncate(keep);
        }
        self.source = Some(i);
    }

    /// Every ms: the serving Redis acknowledges a write; the others follow
    /// the last holder where their replication link works.
    fn data_tick(&mut self) {
        let serving = self.serving();
        for &s in &serving {
            if self.nodes[s].redis && !self.nodes[s].host_down {
                self.nodes[s].data += 1;
                let d = self.nodes[s].data;
                self.acked.push((self.now, d));
            }
        }
        let Some(src) = self.source else { return };
        if self.nodes[src].host_down {
            return;
        }
        for j in 0..self.nodes.len() {
            if j == src || !self.nodes[j].redis || self.nodes[j].host_down || serving.contains(&j) {
                continue;
            }
            if !self.repl_cut[src][j] && self.rng.random_bool(0.7) {
                self.nodes[j].data = self.nodes[src].data;
            }
        }
    }

    fn deliver(&mut self, to: usize, from: usize, m: Msg) {
        let now_l = self.local(to);
        if !self.cfg.faults {
            let d = match &m {
                Msg::Req(r) => format!("req term {} from {} prio {}", r.term, r.holder, r.priority),
                Msg::Ans { answer, .. } => format!("{answer:?}"),
                Msg::Rel { holder, term } => format!("release {holder} {term}"),
            };
            let (a, b) = (self.nodes[from].id, self.nodes[to].id);
            self.log(format!("{a} -> {b}: {d}"));
        }
        let mut out = Vec::new();
        match m {
            Msg::Req(r) => {
                // A holder asked to make way may release (the daemon does
                // when the asker outranks it), fencing itself first.
                let holds = self.nodes[to]
                    .cand
                    .as_ref()
                    .is_some_and(|c| c.held().is_some());
                if r.preempt && holds && self.rng.random_bool(0.5) {
                    if let Some(c) = self.nodes[to].cand.as_mut() {
                        c.unwant(&mut out);
                    }
                    self.outs(to, std::mem::take(&mut out));
                }
                // A split vote: a lower-ranked asker that holds nothing
                // withdraws and votes for the higher one (as the daemon does).
                let at = if self.cfg.bug == Bug::WithdrawWhileServing {
                    Nanos::MAX
                } else {
                    now_l
                };
                if let Some(c) = self.nodes[to].cand.as_mut()
                    && c.yields_to(at, &r)
                {
                    let (me, backoff) = (c.id(), 3 * self.timing.renew_ns);
                    c.withdraw(now_l, backoff);
                    if let Some(p) = self.nodes[to].voter.promise(now_l)
                        && p.holder == me
                    {
                        self.nodes[to].voter.release(me, p.term);
                    }
                }
                let a = self.vote(to, &r);
                self.send(
                    to,
                    from,
                    Msg::Ans {
                        id: r.id,
                        answer: a,
                    },
                );
            }
            Msg::Ans { id, answer } => {
                let f = From::Peer(self.nodes[from].id);
                if let Some(c) = self.nodes[to].cand.as_mut() {
                    c.answer(now_l, f, id, answer, &mut out);
                }
            }
            Msg::Rel { holder, term } => {
                self.nodes[to].voter.release(holder, term);
                if let Some(c) = self.nodes[to].cand.as_mut() {
                    c.heard_of(holder, term);
                    c.hurry(now_l, &mut out);
                }
            }
        }
        self.outs(to, out);
    }

    fn crash(&mut self, i: usize, reboot: bool) {
        let id = self.nodes[i].id;
        self.log(format!(
            "{id} {}",
            if reboot { "reboots" } else { "daemon dies" }
        ));
        self.stats.crashes += 1;
        let n = &mut self.nodes[i];
        n.up = false;
        n.queued.clear();
        n.cand = None;
        if reboot {
            // The kernel (and its fence) goes with the host; the Redis data
            // is on disk.
            n.kernel_until = 0;
            n.persisted = 0;
            n.host_down = true;
        }
    }

    fn restart(&mut self, i: usize, reboot: bool) {
        let rho = f64::from(self.cfg.drift_ppm) / 1e6;
        let total = self.nodes.len();
        let first_id = self.rng.random();
        let rate = pick_rate(&mut self.rng, rho);
        let now = self.now;
        let bug = self.cfg.bug;
        let timing = self.timing;
        let n = &mut self.nodes[i];
        if reboot {
            n.clock = Clock {
                rate,
                base_real: now,
                base_local: 0,
            };
            n.rebooted_at = now;
            n.voted_since_boot = false;
            n.kept = None;
        }
        let now_l = n.clock.local(now);
        let quiet = match (bug, reboot) {
            (Bug::NoQuietAfterRestart, _) => 0,
            (_, true) => now_l + MAX_PROMISE_NS,
            (_, false) => n.persisted,
        };
        // A voter that ran before in this boot knows it (its horizon file).
        n.voter = match (reboot, n.voted_since_boot, &n.kept) {
            (false, true, Some(m)) => Voter::restore(quiet, m),
            (false, true, None) => Voter::restarted(quiet),
            _ => Voter::new(quiet),
        };
        let stale = if bug == Bug::NoStalenessCheck {
            u64::MAX
        } else {
            self.cfg.max_stale_ns
        };
        n.cand = n
            .redis
            .then(|| Candidate::new(n.id, total, timing, first_id).with_max_stale(stale));
        n.host_down = false;
        n.up = true;
        n.stalled_until = 0;
        let id = n.id;
        self.log(format!("{id} back"));
    }

    /// The schedule: every so often something changes.
    fn fault(&mut self, k: u64) {
        let n = self.nodes.len();
        let rho = f64::from(self.cfg.drift_ppm) / 1e6;
        let r: f64 = self.rng.random();
        let i = self.rng.random_range(0..n);
        if r < 0.25 {
            // Partition: a random set of directed links cut, or healed.
            let heal = self.rng.random_bool(0.4);
            for a in 0..n {
                for b in 0..n {
                    self.cut[a][b] = !heal && a != b && self.rng.random_bool(0.35);
                }
            }
            self.loss = if self.rng.random_bool(0.3) {
                self.rng.random_range(0.0..0.4)
            } else {
                0.0
            };
            let desc = format!("links cut: {:?}, loss {:.2}", self.cut, self.loss);
            self.log(desc);
        } else if r < 0.45 {
            let rate = pick_rate(&mut self.rng, rho);
            self.nodes[i].clock.set_rate(self.now, rate);
        } else if r < 0.55 {
            if self.nodes[i].up {
                let d = self.rng.random_range(0..200 * MS);
                self.stats.stalls += 1;
                self.nodes[i].stalled_until = self.now + d;
                let id = self.nodes[i].id;
                self.log(format!("{id} stalls {} ms", d / MS));
            }
        } else if r < 0.68 && self.cfg.redis_nodes > 1 {
            // The replication link between two Redis nodes breaks (both
            // ways), or every broken one is mended.
            if self.rng.random_bool(0.5) {
                let a = self.rng.random_range(0..self.cfg.redis_nodes);
                let b = (a + self.rng.random_range(1..self.cfg.redis_nodes)) % self.cfg.redis_nodes;
                self.repl_cut[a][b] = true;
                self.repl_cut[b][a] = true;
                self.stats.repl_cuts += 1;
                let (x, y) = (self.nodes[a].id, self.nodes[b].id);
                self.log(format!("replication between {x} and {y} broken"));
            } else {
                self.repl_cut = vec![vec![false; n]; n];
                self.log("replication links mended".into());
            }
        } else if r < 0.75 {
            if self.nodes[i].up {
                let reboot = self.rng.random_bool(0.3);
                self.crash(i, reboot);
                let down = self.rng.random_range(0..1_000 * MS);
                self.at(
                    self.now + down,
                    Ev::Fault(u64::MAX - reboot as u64 - 2 * i as u64),
                );
            }
        } else if self.nodes[i].up {
            // VRRP's wish: take over (maybe as a preemption), or let go.
            let now_l = self.local(i);
            let mut out = Vec::new();
            if let Some(c) = self.nodes[i].cand.as_mut() {
                if self.rng.random_bool(0.7) {
                    let w = Want {
                        preempt: self.rng.random_bool(0.3),
                        priority: self.rng.random_range(1..=254),
                    };
                    c.want(now_l, w, &mut out);
                } else {
                    c.unwant(&mut out);
                }
            }
            self.outs(i, out);
        }
        let next = self.rng.random_range(5 * MS..300 * MS);
        self.at(self.now + next, Ev::Fault(k + 1));
    }

    fn run(self) -> (Stats, Option<Violation>) {
        let (stats, v, _) = self.run_to_end();
        (stats, v)
    }

    /// Runs, and says who serves at the end (and, on a quiet run, checks
    /// every voter agrees that it holds the newest term).
    fn run_to_end(mut self) -> (Stats, Option<Violation>, Vec<IpAddr>) {
        while let Some(Reverse((t, _, ev))) = self.queue.pop() {
            if t > self.cfg.duration_ns || self.violation.is_some() {
                break;
            }
            self.now = t;
            match ev {
                Ev::Deliver { to, from, seq } => {
                    let Some(m) = self.msgs.remove(&seq) else {
                        continue;
                    };
                    if !self.nodes[to].up {
                        continue;
                    }
                    if self.now < self.nodes[to].stalled_until {
                        self.nodes[to].queued.push((from, m));
                        continue;
                    }
                    self.deliver(to, from, m);
                }
                Ev::Tick(i) => {
                    if i == 0 {
                        self.data_tick();
                    }
                    // The voter's memory goes to disk as the daemon writes it.
                    let now_l = self.local(i);
                    if self.nodes[i].up && now_l >= self.nodes[i].kept_at + MEMORY_EVERY_NS {
                        let m = self.nodes[i].voter.memory();
                        self.nodes[i].kept = Some(m);
                        self.nodes[i].kept_at = now_l;
                    }
                    if self.nodes[i].up && self.now >= self.nodes[i].stalled_until {
                        for (from, m) in std::mem::take(&mut self.nodes[i].queued) {
                            self.deliver(i, from, m);
                        }
                        let now_l = self.local(i);
                        let mut out = Vec::new();
                        if let Some(c) = self.nodes[i].cand.as_mut() {
                            c.tick(now_l, &mut out);
                        }
                        self.outs(i, out);
                    }
                    self.at(self.now + MS, Ev::Tick(i));
                }
                Ev::Fault(k) if k == u64::MAX / 4 => {
                    for i in 0..self.nodes.len() {
                        let mut out = Vec::new();
                        if let Some(c) = self.nodes[i].cand.as_mut()
                            && c.held().is_none()
                        {
                            c.unwant(&mut out);
                        }
                        self.outs(i, out);
                    }
                }
                Ev::Fault(k) if k > u64::MAX / 2 => {
                    let code = u64::MAX - k;
                    self.restart((code / 2) as usize, code % 2 == 1);
                }
                Ev::Fault(k) => self.fault(k),
            }
        }
        let serving: Vec<IpAddr> = self.serving().iter().map(|&i| self.nodes[i].id).collect();
        if !self.cfg.faults && serving.len() == 1 {
            for n in &self.nodes {
                if n.voter.newest().1 != Some(serving[0]) {
                    let what = format!(
                        "{} thinks the newest term {} is {:?}'s, but {} holds",
                        n.id,
                        n.voter.newest().0,
                        n.voter.newest().1,
                        serving[0]
                    );
                    self.fail(what);
                    break;
                }
            }
        }
        if !self.cfg.faults && serving.len() != 1 {
            eprintln!("{}", self.trace.join("\n"));
        }
        (self.stats, self.violation, serving)
    }
}

/// A clock rate within the bound, often at its edges (the worst case).
fn pick_rate(rng: &mut StdRng, rho: f64) -> f64 {
    match rng.random_range(0..4) {
        0 => 1.0 - rho,
        1 => 1.0 + rho,
        _ => rng.random_range(1.0 - rho..=1.0 + rho),
    }
}

/// Runs one seed.
pub fn run(cfg: &Config, seed: u64) -> (Stats, Option<Violation>) {
    Sim::new(cfg.clone(), seed).run()
}

/// Runs `seeds` seeds from `first`; the first violation found, with totals.
pub fn explore(cfg: &Config, first: u64, seeds: u64) -> (Stats, Option<Violation>) {
    let mut total = Stats::default();
    for seed in first..first + seeds {
        let (s, v) = run(cfg, seed);
        total.acquisitions += s.acquisitions;
        total.renewals += s.renewals;
        total.releases += s.releases;
        total.messages += s.messages;
        total.crashes += s.crashes;
        total.stalls += s.stalls;
        total.stale_refusals += s.stale_refusals;
        total.lost_writes += s.lost_writes;
        total.repl_cuts += s.repl_cuts;
        total.amnesic_takeovers += s.amnesic_takeovers;
        if v.is_some() {
            return (total, v);
        }
    }
    (total, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seeds per configuration in `cargo test`; `HA_SIM_SEEDS` for more.
    fn seeds() -> u64 {
        std::env::var("HA_SIM_SEEDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(40)
    }

    fn check(cfg: Config) {
        let (stats, v) = explore(&cfg, 1, seeds());
        eprintln!("{cfg:?}: {stats:?}");
        if let Some(v) = v {
            panic!(
                "seed {} at {} ms: {}\n{}",
                v.seed,
                v.at_ns / MS,
                v.what,
                v.trace[v.trace.len().saturating_sub(40)..].join("\n")
            );
        }
        assert!(
            stats.acquisitions > seeds(),
            "the schedules must exercise takeovers: {stats:?}"
        );
        assert!(stats.crashes > 0 && stats.stalls > 0 && stats.releases > 0);
        assert!(
            cfg.redis_nodes < 2 || (stats.repl_cuts > 0 && stats.stale_refusals > 0),
            "the schedules must exercise stale takeovers: {stats:?}"
        );
    }

    #[test]
    fn two_redis_nodes_and_a_witness() {
        check(Config::default());
    }

    #[test]
    fn three_redis_nodes() {
        check(Config {
            redis_nodes: 3,
            witnesses: 0,
            ..Config::default()
        });
    }

    #[test]
    fn four_redis_nodes_and_a_witness_small_drift() {
        check(Config {
            redis_nodes: 4,
            witnesses: 1,
            drift_ppm: 500,
            ..Config::default()
        });
    }

    /// A planted bug must be found; returns how many seeds it took.
    fn finds(bug: Bug) -> Violation {
        let cfg = Config {
            bug,
            ..Config::default()
        };
        let (_, v) = explore(&cfg, 1, 2000);
        let v = v.unwrap_or_else(|| panic!("{bug:?}: the checker found nothing in 2000 seeds"));
        eprintln!(
            "{bug:?}: found at seed {} ({} ms in): {}",
            v.seed,
            v.at_ns / MS,
            v.what
        );
        v
    }

    /// All Redis nodes ask at once on a quiet network (a split vote at
    /// first): they must settle on one holder (which one is VRRP's
    /// business: a higher priority preempts by asking the holder).
    #[test]
    fn a_split_vote_settles_on_one_holder() {
        for (redis_nodes, witnesses) in [(3, 0), (2, 1), (4, 1), (5, 0)] {
            for seed in 1..=20 {
                let cfg = Config {
                    redis_nodes,
                    witnesses,
                    faults: false,
                    duration_ns: 2_000 * MS,
                    ..Config::default()
                };
                let sim = Sim::new(cfg, seed);
                let (stats, v, serving) = sim.run_to_end();
                assert!(v.is_none(), "{v:?}");
                assert_eq!(
                    serving.len(),
                    1,
                    "{redis_nodes}+{witnesses}, seed {seed}: {serving:?} {stats:?}"
                );
            }
        }
    }

    #[test]
    fn finds_the_bug_when_the_drift_margin_is_removed() {
        finds(Bug::NoDriftMargin);
    }

    #[test]
    fn finds_the_bug_when_a_restarted_voter_is_not_quiet() {
        finds(Bug::NoQuietAfterRestart);
    }

    #[test]
    fn finds_the_bug_when_a_release_is_not_fenced() {
        finds(Bug::ReleaseWithoutFence);
    }

    #[test]
    fn finds_the_bug_when_a_vote_is_withdrawn_while_the_lease_is_served() {
        finds(Bug::WithdrawWhileServing);
    }

    #[test]
    fn finds_the_bug_when_stale_replicas_may_take_over() {
        finds(Bug::NoStalenessCheck);
    }
}
#[cfg(test)]
#[test]
fn debug_one_seed() {
    let Some(seed) = std::env::var("HA_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    else {
        return;
    };
    let (_, v) = run(&Config::default(), seed);
    if let Some(v) = v {
        eprintln!("{}", v.trace.join("\n"));
    }
}
