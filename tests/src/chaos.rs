//! The fault campaign (`cargo xtask chaos`): Jepsen's nemesis and
//! FoundationDB's simulation in spirit, on the real system — namespace
//! hosts, redis-server, ha-daemon and the witness — under a seeded schedule
//! of overlapping and successive faults, while clients write values that
//! can each be found again. A checker then reads the final dataset.
//!
//! The schedule is a pure function of the seed: a failing seed replays the
//! same faults in the same order at the same times (the system's own timing
//! varies run to run, as a real one does). Faults come in two slots that
//! overlap freely: the network (partitions, flapping, one-way loss, a bad
//! link that loses, duplicates, delays and reorders frames) and the
//! processes (Redis or the daemon killed, stopped or hung, a host lost, the
//! witness lost during a failover, a node back with an empty data dir, a
//! planned switchover); one sequence takes both (replication cut, then the
//! master lost). Each node's lease clock runs at its own rate within the
//! drift bound (`HA_TEST_CLOCK_PPM`).
//!
//! The verdict, over every client's acknowledged writes:
//! - lost: an acknowledged element missing from the final list. Allowed
//!   only when the Redis that acknowledged it stopped acknowledging (and
//!   another started) within `bound` of it — the README's bound for any
//!   sequence of faults; every lost write is listed with the faults around;
//! - two writers: two Redis acknowledging writes at once (both busy for
//!   longer than `TWO_MASTERS_SLACK`);
//! - the longest time without an acknowledged write, per client.
use std::{
    cmp::Reverse,
    collections::{BTreeMap, BTreeSet, BinaryHeap},
    fmt::Write as _,
    net::SocketAddr,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use rand::{Rng, SeedableRng, rngs::StdRng};

use crate::{
    Switch,
    client::{Profile, Report, Writer},
    cluster::{Cluster, Kind, Quorum, VIP},
    impair::{Impairment, Spec},
};

/// What a campaign runs.
#[derive(Debug, Clone)]
pub struct Options {
    pub minutes: f64,
    pub seed: u64,
    /// Redis hosts: 2 (and a witness) or 3 (their majority).
    pub hosts: usize,
    pub switch: Switch,
    /// A bug planted in every Redis node's daemon (`HA_TEST_PLANT`), to
    /// show the campaign finds it.
    pub plant: Option<String>,
    /// Print each fault as it is injected.
    pub verbose: bool,
}

/// The README's bound, at 10 ms adverts and the default
/// `max_staleness_ms` (100): an acknowledged write is lost only if the
/// master that acknowledged it stopped within this of it. It is
/// max_staleness_ms plus one renewal (the offset a voter saw last) plus one
/// sample of the offset, stretched by the drift bound (1.1/0.9), plus the
/// old master's lease (32.7 ms, stretched by 1/0.9).
pub const BOUND: Duration = Duration::from_millis(200);

/// Two Redis both acknowledging for less than this (a client's reply
/// recorded a little late) is timing noise, not two masters; also the
/// longest pause within one Redis's run of acknowledgements.
pub const TWO_MASTERS_SLACK: Duration = Duration::from_millis(10);

/// How far apart writes of one client may be: the pace of each writer.
pub const PACE: Duration = Duration::from_millis(2);

/// No master this long, and a node refused as stale: the campaign's
/// operator takes the loss (`promote --accept-loss`), as the README asks of
/// one when the data's last holder is gone for good (a master back empty
/// while its replica was behind). What that loses is reported apart.
pub const OPERATOR_AFTER: Duration = Duration::from_secs(5);

/// The operator of `OPERATOR_AFTER`.
struct Operator {
    since: Option<Instant>,
    checked: Instant,
    /// When it accepted a loss, and what `promote` said.
    accepted: Vec<(Instant, String)>,
}

impl Operator {
    fn new() -> Self {
        Self {
            since: None,
            checked: Instant::now(),
            accepted: Vec::new(),
        }
    }

    /// At most once a second: no master for `OPERATOR_AFTER`, and the node
    /// with the most data refused as stale → `promote --accept-loss` on it.
    fn check(&mut self, c: &Cluster) {
        let now = Instant::now();
        if now.duration_since(self.checked) < Duration::from_secs(1) {
            return;
        }
        self.checked = now;
        let master = (1..=c.n).any(|i| c.status(i).is_some_and(|s| s["state"] == "Master"));
        if master {
            self.since = None;
            return;
        }
        let since = *self.since.get_or_insert(now);
        if now.duration_since(since) < OPERATOR_AFTER {
            return;
        }
        // As a person would: the node whose Redis holds the most keys, if
        // it is one refused as stale; never an emptied one over a full one
        // (the first 30-minute run promoted an emptied node while the other
        // held the data, whose daemon was down then: the data's node then
        // refused to follow an empty master, rightly, and nothing settled).
        // A Redis that does not answer may hold the data: wait for it (the
        // second 30-minute run promoted an emptied node while the full one
        // was restarting, and lost nearly everything the run had written).
        let Some(all) = (1..=c.n)
            .map(|i| {
                let keys: u64 = crate::redis::cli(c.host(i), &["DBSIZE"])
                    .ok()?
                    .trim()
                    .parse()
                    .ok()?;
                let stale = c
                    .status(i)
                    .is_some_and(|st| st["lease"]["stale"].is_object());
                Some((i, keys, stale))
            })
            .collect::<Option<Vec<(usize, u64, bool)>>>()
        else {
            return;
        };
        let Some(most) = all.iter().map(|x| x.1).max() else {
            return;
        };
        let Some(&(h, _, _)) = all.iter().find(|x| x.2 && x.1 == most) else {
            return;
        };
        let Some(cfg) = c.config(h) else { return };
        let Some(bin) = crate::daemon::binary().to_str().map(str::to_owned) else {
            return;
        };
        let out = c
            .host(h)
            .ns
            .command(&bin)
            .args(["promote", "--accept-loss", "-c"])
            .arg(&cfg)
            .output();
        let said = match out {
            Ok(o) => format!(
                "h{h}: {}{}",
                String::from_utf8_lossy(&o.stdout).trim(),
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => format!("h{h}: {e}"),
        };
        println!("  operator: no master for {OPERATOR_AFTER:?}, `promote --accept-loss` on {said}");
        self.accepted.push((now, said));
        self.since = None;
    }
}

/// A fault, with the random parts drawn when the schedule was made. The
/// host it hits is resolved when it is injected ("the master": whoever
/// holds the VIP then).
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    RedisKilled {
        back_ms: u64,
    },
    HostLost {
        back_ms: u64,
    },
    DaemonKilled {
        back_ms: u64,
    },
    /// The master's daemon stopped (SIGSTOP), longer than a lease.
    DaemonStopped {
        ms: u64,
    },
    /// The master's Redis stopped (SIGSTOP): a hang.
    RedisHung {
        ms: u64,
    },
    PartitionHosts {
        ms: u64,
    },
    MasterCutOff {
        ms: u64,
    },
    BackupCutOff {
        ms: u64,
    },
    /// The link between the Redis hosts flaps.
    Flapping {
        ms: u64,
        down_ms: u64,
        up_ms: u64,
    },
    /// Frames from the master to its peers (or back) dropped.
    OneWayLoss {
        ms: u64,
        from_master: bool,
    },
    /// A host's link loses, duplicates, delays and reorders frames.
    BadLink {
        ms: u64,
        host: Target,
        spec: Spec,
    },
    /// The replication link between the Redis hosts breaks, then the
    /// master host is lost.
    ReplicationCutThenMasterLost {
        cut_ms: u64,
        back_ms: u64,
    },
    /// The witness is killed as the master's Redis is.
    WitnessLostDuringFailover {
        back_ms: u64,
    },
    /// A node's Redis killed and restarted with an empty data dir.
    EmptyDataDir {
        host: Target,
    },
    Switchover,
}

/// Which host a fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Master,
    Backup,
    Witness,
}

impl Fault {
    fn label(&self) -> String {
        match self {
            Fault::RedisKilled { back_ms } => format!("master's Redis killed ({back_ms} ms)"),
            Fault::HostLost { back_ms } => format!("master host lost ({back_ms} ms)"),
            Fault::DaemonKilled { back_ms } => format!("master's daemon killed ({back_ms} ms)"),
            Fault::DaemonStopped { ms } => format!("master's daemon stopped {ms} ms"),
            Fault::RedisHung { ms } => format!("master's Redis hung {ms} ms"),
            Fault::PartitionHosts { ms } => format!("partition between the Redis hosts {ms} ms"),
            Fault::MasterCutOff { ms } => format!("master cut off {ms} ms"),
            Fault::BackupCutOff { ms } => format!("backup cut off {ms} ms"),
            Fault::Flapping { ms, down_ms, up_ms } => {
                format!("link between the Redis hosts flapping {down_ms}/{up_ms} ms for {ms} ms")
            }
            Fault::OneWayLoss { ms, from_master } => format!(
                "one-way loss {} for {ms} ms",
                if *from_master {
                    "master -> peers"
                } else {
                    "peers -> master"
                }
            ),
            Fault::BadLink { ms, host, spec } => {
                format!("bad link on the {host:?} ({spec}) {ms} ms")
            }
            Fault::ReplicationCutThenMasterLost { cut_ms, back_ms } => {
                format!("replication cut, master host lost {cut_ms} ms later (back {back_ms} ms)")
            }
            Fault::WitnessLostDuringFailover { back_ms } => {
                format!("witness lost as the master's Redis dies ({back_ms} ms)")
            }
            Fault::EmptyDataDir { host } => format!("{host:?}'s Redis back with an empty data dir"),
            Fault::Switchover => "planned switchover".into(),
        }
    }

    /// The slots it takes (network, processes) and for how long.
    fn slots(&self) -> (bool, bool, u64) {
        match *self {
            Fault::RedisKilled { back_ms }
            | Fault::DaemonKilled { back_ms }
            | Fault::WitnessLostDuringFailover { back_ms } => (false, true, back_ms),
            Fault::HostLost { back_ms } => (false, true, back_ms),
            Fault::DaemonStopped { ms } | Fault::RedisHung { ms } => (false, true, ms),
            Fault::EmptyDataDir { .. } | Fault::Switchover => (false, true, 1000),
            Fault::PartitionHosts { ms }
            | Fault::MasterCutOff { ms }
            | Fault::BackupCutOff { ms }
            | Fault::Flapping { ms, .. }
            | Fault::OneWayLoss { ms, .. }
            | Fault::BadLink { ms, .. } => (true, false, ms),
            Fault::ReplicationCutThenMasterLost { cut_ms, back_ms } => {
                (true, true, cut_ms + back_ms)
            }
        }
    }
}

/// A fault and when it starts, from the campaign's start.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub at: Duration,
    pub fault: Fault,
}

/// The schedule for `seed`: a fault every 0.4 to 2 s, each in a free slot
/// (the two slots overlap), over `duration`.
pub fn schedule(seed: u64, duration: Duration, hosts: usize, witness: bool) -> Vec<Planned> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Vec::new();
    let (mut net_free, mut proc_free) = (0u64, 0u64);
    let mut t = 1_500u64;
    let end = duration.as_millis() as u64;
    while t < end {
        let f = draw(&mut rng, hosts, witness);
        let (net, procs, ms) = f.slots();
        if (!net || net_free <= t) && (!procs || proc_free <= t) {
            if net {
                net_free = t + ms + 300;
            }
            if procs {
                proc_free = t + ms + 300;
            }
            out.push(Planned {
                at: Duration::from_millis(t),
                fault: f,
            });
        }
        t += rng.random_range(400..2_000);
    }
    out
}

fn draw(rng: &mut StdRng, hosts: usize, witness: bool) -> Fault {
    let short = |rng: &mut StdRng| rng.random_range(100..2_500);
    loop {
        let f = match rng.random_range(0..16) {
            0 => Fault::RedisKilled {
                back_ms: short(rng),
            },
            1 => Fault::HostLost {
                back_ms: rng.random_range(300..3_000),
            },
            2 => Fault::DaemonKilled {
                back_ms: short(rng),
            },
            3 => Fault::DaemonStopped {
                ms: rng.random_range(50..1_500),
            },
            4 => Fault::RedisHung {
                ms: rng.random_range(50..2_500),
            },
            5 => Fault::PartitionHosts { ms: short(rng) },
            6 => Fault::MasterCutOff { ms: short(rng) },
            7 => Fault::BackupCutOff { ms: short(rng) },
            8 => Fault::Flapping {
                ms: rng.random_range(1_000..3_000),
                down_ms: rng.random_range(50..500),
                up_ms: rng.random_range(50..500),
            },
            9 => Fault::OneWayLoss {
                ms: short(rng),
                from_master: rng.random_bool(0.5),
            },
            10 | 11 => Fault::BadLink {
                ms: rng.random_range(500..3_000),
                host: match rng.random_range(0..3) {
                    0 => Target::Master,
                    1 => Target::Backup,
                    _ if witness => Target::Witness,
                    _ => Target::Backup,
                },
                spec: Spec {
                    loss: [0.0, 0.01, 0.05, 0.2][rng.random_range(0..4)],
                    dup: [0.0, 0.02, 0.1][rng.random_range(0..3)],
                    delay: {
                        let lo = rng.random_range(0..3);
                        let hi = lo + rng.random_range(0..8);
                        (Duration::from_millis(lo), Duration::from_millis(hi))
                    },
                },
            },
            12 => Fault::ReplicationCutThenMasterLost {
                cut_ms: rng.random_range(200..1_500),
                back_ms: rng.random_range(500..2_500),
            },
            13 if witness => Fault::WitnessLostDuringFailover {
                back_ms: short(rng),
            },
            14 => Fault::EmptyDataDir {
                host: if rng.random_bool(0.5) {
                    Target::Master
                } else {
                    Target::Backup
                },
            },
            15 => Fault::Switchover,
            _ => continue,
        };
        let _ = hosts;
        return f;
    }
}

/// Something the nemesis does at a time.
#[derive(Debug)]
enum Act {
    Isolate(usize, Vec<usize>),
    Uncut(usize, Vec<usize>),
    UncutOneWay(Vec<(usize, usize)>),
    HostDown(usize),
    HostBack(usize),
    RedisBack(usize),
    NodeBack(usize),
    NodeCont(usize),
    RedisCont(usize),
    WitnessBack,
    Unimpair(usize),
}

/// A fault as it happened: when, on which host, for how long.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Window {
    pub label: String,
    pub host: Option<usize>,
    /// ms from the campaign's start.
    pub start_ms: f64,
    pub end_ms: f64,
    pub skipped: Option<String>,
}

/// The campaign's verdict.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Verdict {
    pub seed: u64,
    pub minutes: f64,
    pub hosts: usize,
    pub switch: String,
    pub plant: Option<String>,
    pub clock_ppm: BTreeMap<usize, i64>,
    pub faults: Vec<Window>,
    pub acknowledged: usize,
    pub lost: usize,
    /// Lost writes beyond the bound, with what was going on.
    pub violations: Vec<String>,
    /// Lost writes within the bound, per fault around them.
    pub lost_by_fault: BTreeMap<String, usize>,
    /// Lost beyond the bound, but after the operator accepted the loss
    /// (`OPERATOR_AFTER`).
    pub lost_accepted: usize,
    /// Two Redis acknowledging at once: (from ms, to ms, what).
    pub two_writers: Vec<String>,
    /// Per client: the longest time without an acknowledged write, ms.
    pub longest_gap_ms: BTreeMap<String, f64>,
    /// Per client: when that gap began, ms from time 0.
    pub longest_gap_from_ms: BTreeMap<String, f64>,
    pub bound_ms: f64,
    pub ok: bool,
    /// When the campaign's time 0 was, UTC (to read the daemons' logs).
    pub start_utc: String,
}

struct Client {
    name: String,
    key: String,
    writer: Writer,
}

/// Runs a campaign and judges it.
pub fn run(o: &Options) -> Result<Verdict> {
    crate::require_root();
    let duration = Duration::from_secs_f64(o.minutes * 60.0);
    let quorum = if o.hosts >= 3 {
        Quorum::Majority
    } else {
        Quorum::Witness
    };
    let witness = quorum == Quorum::Witness;
    let plan = schedule(o.seed, duration, o.hosts, witness);
    let mut rng = StdRng::seed_from_u64(o.seed ^ 0x5eed_c10c);
    // Every node's lease clock at its own rate, within max_drift_ppm
    // (100,000); restarts keep it.
    let mut clock_ppm = BTreeMap::new();
    let mut env = BTreeMap::new();
    let voters = o.hosts + usize::from(witness);
    for h in 1..=voters {
        let ppm = [0i64, 20_000, -20_000, 50_000, -50_000, 80_000, -80_000][rng.random_range(0..7)];
        clock_ppm.insert(h, ppm);
        let mut e = vec![("HA_TEST_CLOCK_PPM".to_string(), ppm.to_string())];
        if let (Some(p), true) = (&o.plant, h <= o.hosts) {
            e.push(("HA_TEST_PLANT".into(), p.clone()));
        }
        env.insert(h, e);
    }
    let mut c = Cluster::start_env(
        o.switch,
        Kind::Ours { advert_ms: 10 },
        o.hosts,
        quorum,
        1,
        "hax",
        true,
        env,
    )
    .context("starting the cluster")?;
    println!(
        "chaos: seed {}, {} min, {} Redis hosts{}, {:?} switch{}; {} faults planned; lease clocks (ppm) {:?}",
        o.seed,
        o.minutes,
        o.hosts,
        if witness { " + witness" } else { "" },
        o.switch,
        o.plant
            .as_deref()
            .map(|p| format!(", PLANTED BUG {p}"))
            .unwrap_or_default(),
        plan.len(),
        clock_ppm
    );
    let addr: SocketAddr = format!("{VIP}:6379").parse()?;
    let mut clients = Vec::new();
    for (k, (profile, host)) in [
        (Profile::Tight, 0),
        (Profile::Defaults, 0),
        (Profile::Tight, 1),
        (Profile::Defaults, 1),
    ]
    .into_iter()
    .enumerate()
    {
        let name = format!("{}-{}", profile.label(), k + 1);
        let key = format!("chaos:{}", k + 1);
        clients.push(Client {
            writer: Writer::start_pushing(&c.client_n(host).ns, addr, &key, profile, PACE),
            name,
            key,
        });
    }
    std::thread::sleep(Duration::from_millis(500));
    let start = Instant::now();
    let start_utc = utc(std::time::SystemTime::now());
    println!("campaign starts at {start_utc} UTC (the daemons' logs' clock)");
    let mut windows: Vec<Window> = Vec::new();
    let mut acts: BinaryHeap<Reverse<(Instant, u64, usize)>> = BinaryHeap::new();
    let mut pending: BTreeMap<usize, Act> = BTreeMap::new();
    let mut impairs: BTreeMap<usize, Impairment> = BTreeMap::new();
    let mut seq = 0usize;
    let ms = |t: Instant| t.saturating_duration_since(start).as_secs_f64() * 1e3;
    let mut operator = Operator::new();
    let mut queue = |acts: &mut BinaryHeap<Reverse<(Instant, u64, usize)>>,
                     pending: &mut BTreeMap<usize, Act>,
                     at: Instant,
                     a: Act| {
        seq += 1;
        pending.insert(seq, a);
        acts.push(Reverse((at, seq as u64, seq)));
    };
    for p in &plan {
        let at = start + p.at;
        // Carry out what is due until the next fault starts.
        loop {
            let now = Instant::now();
            while acts.peek().is_some_and(|Reverse((t, _, _))| *t <= now) {
                let Some(Reverse((_, _, id))) = acts.pop() else {
                    break;
                };
                if let Some(a) = pending.remove(&id) {
                    act(&mut c, a, &mut impairs);
                }
            }
            if now >= at {
                break;
            }
            operator.check(&c);
            std::thread::sleep(Duration::from_millis(2).min(at - now));
        }
        let now = Instant::now();
        let mut w = Window {
            label: p.fault.label(),
            host: None,
            start_ms: ms(now),
            end_ms: ms(now) + p.fault.slots().2 as f64,
            skipped: None,
        };
        match inject(
            &mut c,
            &p.fault,
            now,
            &mut |at, a| queue(&mut acts, &mut pending, at, a),
            &mut impairs,
            &mut rng,
        ) {
            Ok(host) => w.host = host,
            Err(e) => w.skipped = Some(format!("{e:#}")),
        }
        if o.verbose {
            println!(
                "  +{:>7.0} ms  {}{}{}",
                w.start_ms,
                w.label,
                w.host.map(|h| format!(" on h{h}")).unwrap_or_default(),
                w.skipped
                    .as_deref()
                    .map(|s| format!(" — skipped: {s}"))
                    .unwrap_or_default()
            );
        }
        windows.push(w);
    }
    // The rest of the campaign, then everything undone.
    while Instant::now() < start + duration {
        let now = Instant::now();
        while acts.peek().is_some_and(|Reverse((t, _, _))| *t <= now) {
            let Some(Reverse((_, _, id))) = acts.pop() else {
                break;
            };
            if let Some(a) = pending.remove(&id) {
                act(&mut c, a, &mut impairs);
            }
        }
        operator.check(&c);
        std::thread::sleep(Duration::from_millis(5));
    }
    while let Some(Reverse((_, _, id))) = acts.pop() {
        if let Some(a) = pending.remove(&id) {
            act(&mut c, a, &mut impairs);
        }
    }
    impairs.clear();
    // Everything is back; a master may still be waited for (refused as
    // stale): the operator's call, as during the campaign.
    let settle = Instant::now() + Duration::from_secs(30);
    while Instant::now() < settle {
        if (1..=c.n).any(|i| c.status(i).is_some_and(|s| s["state"] == "Master")) {
            break;
        }
        operator.check(&c);
        std::thread::sleep(Duration::from_millis(100));
    }
    let repaired = c.repair();
    std::thread::sleep(Duration::from_secs(2));
    let end = Instant::now();
    let reports: Vec<(String, String, Report)> = clients
        .into_iter()
        .map(|cl| (cl.name, cl.key, cl.writer.stop()))
        .collect();
    repaired.context("the cluster does not recover after the campaign")?;
    c.wait_healthy(None, Duration::from_secs(20))
        .context("no healthy cluster after the campaign")?;
    let mut finals = Vec::new();
    for (_, key, _) in &reports {
        finals.push(read_list(&c, key)?);
    }
    for (t, said) in &operator.accepted {
        windows.push(Window {
            label: format!("operator: promote --accept-loss ({said})"),
            host: None,
            start_ms: ms(*t),
            end_ms: ms(*t),
            skipped: None,
        });
    }
    let accepted: Vec<Instant> = operator.accepted.iter().map(|a| a.0).collect();
    let mut v = judge(&reports, &finals, &windows, &accepted, start, end, BOUND);
    v.seed = o.seed;
    v.minutes = o.minutes;
    v.hosts = o.hosts;
    v.switch = format!("{:?}", o.switch);
    v.plant = o.plant.clone();
    v.clock_ppm = clock_ppm;
    v.faults = windows;
    v.start_utc = start_utc;
    Ok(v)
}

/// The elements of list `key`, read through the VIP.
fn read_list(c: &Cluster, key: &str) -> Result<BTreeSet<i64>> {
    let out = c
        .client()
        .ns
        .exec("redis-cli", &["-h", VIP, "--raw", "LRANGE", key, "0", "-1"])
        .with_context(|| format!("reading {key} through the VIP"))?;
    Ok(out.lines().filter_map(|l| l.trim().parse().ok()).collect())
}

/// The host a target names now (None: there is none, e.g. no master).
fn resolve(c: &Cluster, t: Target) -> Option<usize> {
    let m = c.vip_holder();
    match t {
        Target::Master => m,
        Target::Backup => (1..=c.n).find(|&i| Some(i) != m),
        Target::Witness => c.witness_host(),
    }
}

/// Starts `f`; what undoes it goes through `later`. Returns the host hit.
fn inject(
    c: &mut Cluster,
    f: &Fault,
    now: Instant,
    later: &mut dyn FnMut(Instant, Act),
    impairs: &mut BTreeMap<usize, Impairment>,
    rng: &mut StdRng,
) -> Result<Option<usize>> {
    let after = |ms: u64| now + Duration::from_millis(ms);
    let master = || c.vip_holder().context("no master now");
    let m = master();
    let peers = |c: &Cluster, m: usize| -> Vec<usize> {
        (1..=c.n)
            .chain(c.witness_host())
            .filter(|&h| h != m)
            .collect()
    };
    Ok(match *f {
        Fault::RedisKilled { back_ms } => {
            let m = m?;
            c.kill_redis(m);
            later(after(back_ms), Act::RedisBack(m));
            Some(m)
        }
        Fault::HostLost { back_ms } => {
            let m = m?;
            c.link(m, false)?;
            c.kill_node(m);
            c.kill_redis(m);
            later(after(back_ms), Act::HostBack(m));
            Some(m)
        }
        Fault::DaemonKilled { back_ms } => {
            let m = m?;
            c.kill_node(m);
            later(after(back_ms), Act::NodeBack(m));
            Some(m)
        }
        Fault::DaemonStopped { ms } => {
            let m = m?;
            c.signal_node(m, libc::SIGSTOP);
            later(after(ms), Act::NodeCont(m));
            Some(m)
        }
        Fault::RedisHung { ms } => {
            let m = m?;
            c.signal_redis(m, libc::SIGSTOP);
            later(after(ms), Act::RedisCont(m));
            Some(m)
        }
        Fault::PartitionHosts { ms } => {
            let m = m?;
            let others: Vec<usize> = (1..=c.n).filter(|&h| h != m).collect();
            c.lan.isolate(m, &others)?;
            later(after(ms), Act::Uncut(m, others));
            Some(m)
        }
        Fault::MasterCutOff { ms } => {
            let m = m?;
            let others = peers(c, m);
            c.lan.isolate(m, &others)?;
            later(after(ms), Act::Uncut(m, others));
            Some(m)
        }
        Fault::BackupCutOff { ms } => {
            let b = resolve(c, Target::Backup).context("no backup")?;
            let everyone: Vec<usize> = (1..=c.lan.hosts.len()).filter(|&h| h != b).collect();
            c.lan.isolate(b, &everyone)?;
            later(after(ms), Act::Uncut(b, everyone));
            Some(b)
        }
        Fault::Flapping { ms, down_ms, up_ms } => {
            let m = m?;
            let others: Vec<usize> = (1..=c.n).filter(|&h| h != m).collect();
            let mut t = 0;
            while t < ms {
                later(after(t), Act::Isolate(m, others.clone()));
                later(after((t + down_ms).min(ms)), Act::Uncut(m, others.clone()));
                t += down_ms + up_ms;
            }
            Some(m)
        }
        Fault::OneWayLoss { ms, from_master } => {
            let m = m?;
            let pairs: Vec<(usize, usize)> = peers(c, m)
                .into_iter()
                .map(|p| if from_master { (m, p) } else { (p, m) })
                .collect();
            for (a, b) in &pairs {
                c.lan.cut_one_way(*a, *b)?;
            }
            later(after(ms), Act::UncutOneWay(pairs));
            Some(m)
        }
        Fault::BadLink { ms, host, spec } => {
            let h = resolve(c, host).context("no such host now")?;
            // One relay per link: a second would fail half-way up and
            // leave the first one's link broken.
            anyhow::ensure!(!impairs.contains_key(&h), "h{h}'s link is impaired already");
            let imp = c.lan.impair(h, spec, rng.random())?;
            impairs.insert(h, imp);
            later(after(ms), Act::Unimpair(h));
            Some(h)
        }
        Fault::ReplicationCutThenMasterLost { cut_ms, back_ms } => {
            let m = m?;
            let others: Vec<usize> = (1..=c.n).filter(|&h| h != m).collect();
            c.lan.isolate(m, &others)?;
            later(after(cut_ms), Act::HostDown(m));
            later(after(cut_ms + back_ms), Act::Uncut(m, others));
            later(after(cut_ms + back_ms), Act::HostBack(m));
            Some(m)
        }
        Fault::WitnessLostDuringFailover { back_ms } => {
            let m = m?;
            c.kill_witness();
            c.kill_redis(m);
            later(after(back_ms), Act::WitnessBack);
            later(after(back_ms), Act::RedisBack(m));
            Some(m)
        }
        Fault::EmptyDataDir { host } => {
            let h = resolve(c, host).context("no such host now")?;
            c.kill_redis(h);
            let _ = std::fs::remove_dir_all(c.dir.path().join(format!("redis-r{h}")));
            c.start_redis(h, false)?;
            Some(h)
        }
        Fault::Switchover => {
            let m = m?;
            let to = (1..=c.n).find(|&i| i != m).context("a peer")?;
            let cfg = c.config(to).context("no daemon there")?;
            let out = c
                .host(to)
                .ns
                .command(crate::daemon::binary().to_str().context("binary path")?)
                .args(["switchover", "-c"])
                .arg(&cfg)
                .output()?;
            anyhow::ensure!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            Some(to)
        }
    })
}

/// Carries out one timed action (errors are the campaign's, not a
/// verdict: it goes on).
fn act(c: &mut Cluster, a: Act, impairs: &mut BTreeMap<usize, Impairment>) {
    let r: Result<()> = (|| {
        match a {
            Act::Isolate(h, others) => c.lan.isolate(h, &others)?,
            Act::Uncut(h, others) => c.lan.uncut(h, &others)?,
            Act::UncutOneWay(pairs) => {
                for (a, b) in pairs {
                    c.lan.uncut_one_way(a, b)?;
                }
            }
            Act::HostDown(h) => {
                c.link(h, false)?;
                c.kill_node(h);
                c.kill_redis(h);
            }
            Act::HostBack(h) => {
                c.link(h, true)?;
                if !c.redis_alive(h) {
                    c.start_redis(h, false)?;
                }
                if c.daemon(h).is_none() {
                    c.start_node(h)?;
                }
            }
            Act::RedisBack(h) => {
                if !c.redis_alive(h) {
                    c.start_redis(h, false)?;
                }
            }
            Act::NodeBack(h) => {
                if c.daemon(h).is_none() {
                    c.start_node(h)?;
                }
            }
            Act::NodeCont(h) => c.signal_node(h, libc::SIGCONT),
            Act::RedisCont(h) => c.signal_redis(h, libc::SIGCONT),
            Act::WitnessBack => c.start_witness()?,
            Act::Unimpair(h) => {
                impairs.remove(&h);
            }
        }
        Ok(())
    })();
    if let Err(e) = r {
        eprintln!("chaos: {e:#}");
    }
}

/// The checker, on what the clients saw and what the lists hold at the end.
pub fn judge(
    reports: &[(String, String, Report)],
    finals: &[BTreeSet<i64>],
    windows: &[Window],
    accepted: &[Instant],
    start: Instant,
    end: Instant,
    bound: Duration,
) -> Verdict {
    let ms = |t: Instant| {
        if t >= start {
            t.duration_since(start).as_secs_f64() * 1e3
        } else {
            -(start.duration_since(t).as_secs_f64() * 1e3)
        }
    };
    let mut v = Verdict {
        bound_ms: bound.as_secs_f64() * 1e3,
        ..Default::default()
    };
    // Every acknowledgement, in time order, with the Redis that gave it.
    let mut all: Vec<(Instant, String)> = Vec::new();
    for (_, _, r) in reports {
        for (i, (t, _)) in r.acked.iter().enumerate() {
            let s = r
                .acked_by
                .get(i)
                .and_then(|s| r.servers.get(*s as usize))
                .cloned()
                .unwrap_or_default();
            all.push((*t, s));
        }
    }
    all.sort_by_key(|a| a.0);
    // Runs of one Redis acknowledging, in time order.
    let mut runs: Vec<(String, Instant, Instant, usize)> = Vec::new();
    for (t, s) in &all {
        match runs.last_mut() {
            Some(r) if r.0 == *s => {
                r.2 = *t;
                r.3 += 1;
            }
            _ => runs.push((s.clone(), *t, *t, 1)),
        }
    }
    // Two writers: two Redis busy at once. A Redis is busy over a span of
    // its acknowledgements less than the slack apart (the clients write
    // every 2 ms); two spans of different Redis overlapping longer than the
    // slack are two masters, where a takeover and a quick return (A, then
    // B, then A again) overlap not at all.
    let mut spans: Vec<(String, Instant, Instant, usize)> = Vec::new();
    let mut open: BTreeMap<&str, usize> = BTreeMap::new();
    for (t, s) in &all {
        match open.get(s.as_str()) {
            Some(&i) if t.duration_since(spans[i].2) < TWO_MASTERS_SLACK => {
                spans[i].2 = *t;
                spans[i].3 += 1;
            }
            _ => {
                open.insert(s, spans.len());
                spans.push((s.clone(), *t, *t, 1));
            }
        }
    }
    for (i, a) in spans.iter().enumerate() {
        // Spans are in order of their start: stop at the first that starts
        // after this one ends.
        for b in spans[i + 1..].iter().take_while(|b| b.1 <= a.2) {
            let both = a.2.min(b.2).duration_since(b.1);
            if b.0 != a.0 && both > TWO_MASTERS_SLACK {
                v.two_writers.push(format!(
                    "{:.0}..{:.0} ms: {} and {} both acknowledged ({} and {} writes)",
                    ms(b.1),
                    ms(a.2.min(b.2)),
                    short(&a.0),
                    short(&b.0),
                    a.3,
                    b.3
                ));
            }
        }
    }
    // When each run ends: a lost write's Redis must have stopped within
    // the bound of it.
    let run_end = |s: &str, t: Instant| -> Instant {
        runs.iter()
            .find(|r| r.0 == s && r.1 <= t && t <= r.2)
            .map_or(t, |r| r.2)
    };
    for ((name, _, r), have) in reports.iter().zip(finals) {
        v.acknowledged += r.acked.len();
        for (i, (t, n)) in r.acked.iter().enumerate() {
            if have.contains(n) {
                continue;
            }
            v.lost += 1;
            let s = r
                .acked_by
                .get(i)
                .and_then(|s| r.servers.get(*s as usize))
                .cloned()
                .unwrap_or_default();
            let stop = run_end(&s, *t);
            let around: Vec<String> = windows
                .iter()
                .filter(|w| w.skipped.is_none())
                .filter(|w| w.start_ms - v.bound_ms <= ms(*t) && ms(*t) <= w.end_ms + v.bound_ms)
                .map(|w| w.label.clone())
                .collect();
            let key = if around.is_empty() {
                "(no fault)".to_string()
            } else {
                around.join(" + ")
            };
            // The operator took this loss: after that Redis stopped, no
            // node could be elected without it.
            let taken = accepted
                .iter()
                .any(|a| *a >= stop && a.duration_since(stop) < Duration::from_secs(120));
            if stop.duration_since(*t) > bound && taken {
                v.lost_accepted += 1;
            } else if stop.duration_since(*t) > bound {
                if v.violations.len() < 50 {
                    v.violations.push(format!(
                        "{name}: element {n} acknowledged by {} at {:.1} ms is gone; that Redis went on acknowledging until {:.1} ms ({:.1} ms later, bound {:.0}); faults around: {key}",
                        short(&s),
                        ms(*t),
                        ms(stop),
                        stop.duration_since(*t).as_secs_f64() * 1e3,
                        v.bound_ms
                    ));
                }
            } else {
                *v.lost_by_fault.entry(key).or_default() += 1;
            }
        }
        // The longest gap and where it began (to find it in the logs).
        let mut prev = start;
        let mut gap = (Duration::ZERO, start);
        let ends = r.acked.iter().map(|a| a.0).filter(|t| *t >= start);
        for t in ends.chain([end]) {
            if t.saturating_duration_since(prev) > gap.0 {
                gap = (t.duration_since(prev), prev);
            }
            prev = t;
        }
        v.longest_gap_ms
            .insert(name.clone(), gap.0.as_secs_f64() * 1e3);
        v.longest_gap_from_ms.insert(name.clone(), ms(gap.1));
    }
    v.ok = v.violations.is_empty() && v.two_writers.is_empty() && v.acknowledged > 0;
    v
}

/// HH:MM:SS.mmm of a wall-clock time, UTC.
fn utc(t: std::time::SystemTime) -> String {
    let ms = t
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000 % 24,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

fn short(run_id: &str) -> String {
    run_id.chars().take(8).collect()
}

impl Verdict {
    /// The report a person reads.
    pub fn render(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "== chaos verdict: seed {}, {} min, {} Redis hosts, {} switch{}",
            self.seed,
            self.minutes,
            self.hosts,
            self.switch,
            self.plant
                .as_deref()
                .map(|p| format!(", planted bug {p}"))
                .unwrap_or_default()
        );
        let done = self.faults.iter().filter(|f| f.skipped.is_none()).count();
        let _ = writeln!(o, "time 0: {} UTC", self.start_utc);
        let _ = writeln!(
            o,
            "faults injected: {done} ({} skipped: no target then)",
            self.faults.len() - done
        );
        let _ = writeln!(
            o,
            "acknowledged writes: {}; lost: {} (bound: the acknowledging Redis stopped within {:.0} ms)",
            self.acknowledged, self.lost, self.bound_ms
        );
        for (k, n) in &self.lost_by_fault {
            let _ = writeln!(o, "  lost within the bound, {n}: {k}");
        }
        if self.lost_accepted > 0 {
            let _ = writeln!(
                o,
                "  lost where the operator accepted it (no master for {OPERATOR_AFTER:?}, `promote --accept-loss`): {}",
                self.lost_accepted
            );
        }
        for f in self
            .faults
            .iter()
            .filter(|f| f.label.starts_with("operator"))
        {
            let _ = writeln!(o, "  at {:.0} ms {}", f.start_ms, f.label);
        }
        for l in &self.violations {
            let _ = writeln!(o, "  LOST BEYOND THE BOUND: {l}");
        }
        for t in &self.two_writers {
            let _ = writeln!(o, "  TWO WRITERS: {t}");
        }
        for (c, g) in &self.longest_gap_ms {
            let from = self.longest_gap_from_ms.get(c).copied().unwrap_or(0.0);
            let _ = writeln!(o, "  longest gap, {c}: {g:.0} ms from {from:.0} ms");
        }
        let _ = writeln!(o, "verdict: {}", if self.ok { "PASS" } else { "FAIL" });
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_is_the_seeds() {
        let a = schedule(7, Duration::from_secs(60), 2, true);
        assert_eq!(a, schedule(7, Duration::from_secs(60), 2, true));
        assert_ne!(a, schedule(8, Duration::from_secs(60), 2, true));
        assert!(a.len() > 20, "{}", a.len());
        // The slots overlap: a network fault runs while a process fault does.
        let busy = |net: bool| {
            a.iter()
                .filter(move |p| {
                    if net {
                        p.fault.slots().0
                    } else {
                        p.fault.slots().1
                    }
                })
                .map(|p| (p.at, p.at + Duration::from_millis(p.fault.slots().2)))
        };
        let overlap = busy(true).any(|(s, e)| busy(false).any(|(s2, e2)| s < e2 && s2 < e));
        assert!(overlap);
    }

    fn report(acks: &[(u64, i64, u16)], servers: &[&str], t0: Instant) -> Report {
        Report {
            acked: acks
                .iter()
                .map(|(ms, n, _)| (t0 + Duration::from_millis(*ms), *n))
                .collect(),
            acked_by: acks.iter().map(|a| a.2).collect(),
            servers: servers.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    /// One client's report judged against the list it left, no fault
    /// windows, no operator, a 50 ms bound.
    fn judge_one(r: Report, have: BTreeSet<i64>, t0: Instant) -> Verdict {
        let end = t0 + Duration::from_millis(400);
        judge(
            &[("c".into(), "k".into(), r)],
            &[have],
            &[],
            &[],
            t0,
            end,
            Duration::from_millis(50),
        )
    }

    #[test]
    fn the_checker_tells_a_recent_loss_from_an_old_one_and_sees_two_writers() {
        let t0 = Instant::now();
        // A acknowledges 1..=10 every 10 ms, dies at 100 ms; B from 150 ms.
        let acks: Vec<(u64, i64, u16)> = (1..=10)
            .map(|i| (i as u64 * 10, i, 0))
            .chain((11..=20).map(|i| (100 + i as u64 * 10, i, 1)))
            .collect();
        let r = report(&acks, &["aaaa", "bbbb"], t0);
        // B lacks A's last two (acknowledged 10 and 20 ms before A stopped).
        let have: BTreeSet<i64> = (1..=20).filter(|n| *n != 9 && *n != 10).collect();
        let v = judge_one(r.clone(), have, t0);
        assert_eq!((v.lost, v.violations.len()), (2, 0), "{v:?}");
        assert!(v.ok);
        // B lacks A's first write: acknowledged 90 ms before A stopped.
        let v = judge_one(r, (2..=20).collect(), t0);
        assert_eq!(v.violations.len(), 1, "{v:?}");
        assert!(!v.ok);
        // A and B both acknowledging (two clients, each on one) for 40 ms.
        let acks: Vec<(u64, i64, u16)> = (1..=20)
            .map(|i| (i as u64 * 2, i, (i % 2) as u16))
            .collect();
        let v = judge_one(report(&acks, &["aaaa", "bbbb"], t0), (1..=20).collect(), t0);
        assert_eq!(v.two_writers.len(), 1, "{v:?}");
        assert!(!v.ok);
        // A fast takeover and return: A until 100 ms, B for 14 ms, A again
        // from 130 ms. One Redis at a time: not two writers.
        let acks: Vec<(u64, i64, u16)> = (1..=50)
            .map(|i| (i as u64 * 2, i, 0))
            .chain((51..=58).map(|i| (110 + (i as u64 - 51) * 2, i, 1)))
            .chain((59..=80).map(|i| (130 + (i as u64 - 59) * 2, i, 0)))
            .collect();
        let v = judge_one(report(&acks, &["aaaa", "bbbb"], t0), (1..=80).collect(), t0);
        assert!(v.two_writers.is_empty(), "{v:?}");
        assert!(v.ok, "{v:?}");
    }
}
