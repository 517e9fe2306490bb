//! `cargo xtask lab`: a live Redis HA cluster on this machine, in network
//! namespaces — a bridge, Redis hosts with ha-daemon (10 ms adverts,
//! persistence on) and a client writing INCR through the VIP — then faults
//! one after another, each with its timeline, write gap and lost writes.
//!
//! With two Redis hosts a witness runs on a host of its own and every node
//! has `[quorum]`; with three or more their majority is the quorum. The
//! faults end with partitions, healed after 3 s.
//!
//! `--hosts 3`: a master and two replicas. `--keep`: leave it running and
//! print how to explore it. `down`: remove a kept lab. Ctrl-C cleans up.
use std::{
    fmt::Write as _,
    net::SocketAddr,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use ha_testbed::{
    client::{Report, Writer},
    cluster::{self, Cluster, Fault, Kind, PARTITION, Quorum, VIP},
    require_root, workspace_root,
};

const PREFIX: &str = "lab";

fn state_file() -> PathBuf {
    workspace_root().join("target/lab/kept.txt")
}

/// Removes every lab namespace (and its processes), pinned maps and files:
/// what `down` and Ctrl-C do. Touches only what the lab made.
fn down() -> usize {
    let mut removed = 0;
    if let Ok(dir) = std::fs::read_dir("/run/netns") {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix(PREFIX) else {
                continue;
            };
            // Only names this lab makes: lab<pid>x<n>...
            if !rest.starts_with(|c: char| c.is_ascii_digit()) || !rest.contains('x') {
                continue;
            }
            let pids = std::process::Command::new("ip")
                .args(["netns", "pids", &name])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            for p in pids
                .split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
            {
                // SAFETY: plain kill(2) on a process inside our namespace.
                unsafe { libc::kill(p, libc::SIGKILL) };
            }
            for _ in 0..50 {
                let ok = std::process::Command::new("ip")
                    .args(["netns", "del", &name])
                    .status()
                    .is_ok_and(|s| s.success());
                if ok {
                    removed += 1;
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    let testbed = workspace_root().join("target/testbed");
    for base in [testbed.join("bpffs"), testbed.clone()] {
        if let Ok(dir) = std::fs::read_dir(&base) {
            for e in dir.flatten() {
                if e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("{PREFIX}-"))
                {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    }
    let _ = std::fs::remove_file(state_file());
    removed
}

/// One line per Redis host: VIP, VRRP state and priority, Redis role and
/// offset, and the adverts its XDP program saw.
fn show(c: &Cluster) -> String {
    let mut o = String::new();
    for i in 1..=c.n {
        let st = c.status(i);
        let vrrp = st.as_ref().map_or("(daemon down)".to_owned(), |v| {
            format!(
                "{:<7} prio {:>3}",
                v["state"].as_str().unwrap_or("?"),
                v["effective_priority"]
            )
        });
        let redis = st
            .as_ref()
            .and_then(|v| v["redis"].as_object().cloned())
            .map_or("-".to_owned(), |r| {
                format!(
                    "{} offset {}{}",
                    r.get("role")
                        .and_then(|x| x.as_str())
                        .unwrap_or("not answering"),
                    r.get("offset").cloned().unwrap_or_default(),
                    r.get("lag_bytes")
                        .and_then(|l| l.as_u64())
                        .map(|l| format!(" lag {l} B"))
                        .unwrap_or_default()
                )
            });
        let adverts = c
            .pin_dir(i)
            .and_then(|d| ha_daemon::inspect::report(&d).ok())
            .map(|r| {
                r.instances
                    .iter()
                    .flat_map(|x| x.senders.iter())
                    .map(|s| format!("{} {:.0} ms ago", s.address, s.last_advert_age_ms))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        let lease = st
            .as_ref()
            .map_or("-".to_owned(), |v| lease_text(&v["lease"]));
        let _ = writeln!(
            o,
            "  h{i} {}  {}  {vrrp}  redis {redis}  lease {lease}  adverts seen (XDP): {}",
            c.host(i).addr4,
            if c.holds_vip(i) { "VIP" } else { "   " },
            if adverts.is_empty() { "-" } else { &adverts }
        );
    }
    if let Some(w) = c.witness_host() {
        let votes = c.witness_status().map_or("(witness down)".to_owned(), |v| {
            let g = &v["quorum"]["votes"]["vi"];
            format!(
                "promised to {} (term {}), {} grants",
                g["promised_to"].as_str().unwrap_or("nobody"),
                g["promise_term"],
                g["granted"]
            )
        });
        let _ = writeln!(o, "  h{w} {}  witness  {votes}", c.host(w).addr4);
    }
    o
}

/// A lease as the status shows it, in a few words.
fn lease_text(l: &serde_json::Value) -> String {
    if l.is_null() {
        return "-".into();
    }
    if l["held"] == true {
        let by: Vec<&str> = l["granted_by"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x.as_str())
            .collect();
        format!("HELD term {} (granted by {})", l["term"], by.join(", "))
    } else {
        format!(
            "not held (newest term {} by {})",
            l["term"],
            l["holder"].as_str().unwrap_or("nobody")
        )
    }
}

/// What the timeline watches on one host, owned so that a thread can watch
/// while the main thread injects the fault.
#[derive(Clone)]
struct Probe {
    ns: String,
    iface: String,
    status: Option<PathBuf>,
}

impl Probe {
    fn of(c: &Cluster) -> Vec<Probe> {
        (1..=c.n)
            .map(|i| Probe {
                ns: c.host(i).ns.name().to_owned(),
                iface: c.host(i).iface.clone(),
                status: c.status_file(i),
            })
            .collect()
    }

    fn holds_vip(&self) -> bool {
        std::process::Command::new("ip")
            .args(["-n", &self.ns, "-br", "addr", "show", "dev", &self.iface])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(&format!(" {VIP}/")))
    }

    /// VIP held, daemon running, Redis role; and the instance's status.
    fn sample(&self) -> ((bool, bool, String), Option<serde_json::Value>) {
        let st = self.status();
        let role = st
            .as_ref()
            .and_then(|v| v["redis"]["role"].as_str().map(str::to_owned))
            .unwrap_or_else(|| "not answering".into());
        ((self.holds_vip(), st.is_some(), role), st)
    }

    /// The daemon's status.json for instance "vi", if the daemon still runs
    /// (a killed daemon leaves its last status behind).
    fn status(&self) -> Option<serde_json::Value> {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(self.status.as_ref()?).ok()?).ok()?;
        let pid = i32::try_from(v["pid"].as_u64()?).ok()?;
        // SAFETY: kill(2) with signal 0 only checks that the process exists.
        if unsafe { libc::kill(pid, 0) } != 0 {
            return None;
        }
        Some(v["instances"]["vi"].clone())
    }
}

fn unix_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
}

/// Watches the hosts for `for_` from now and returns what changed, when, in
/// ms from now: VIP moves (sampled every 5 ms), VRRP transitions with their
/// reasons (stamped by the daemon), the daemon stopping, and the Redis role
/// (from status.json, which the daemon writes every 100 ms).
fn watch(probes: Vec<Probe>, for_: Duration) -> std::thread::JoinHandle<Vec<(u128, String)>> {
    // The state before the fault, taken before it is injected.
    let mut last: Vec<(bool, bool, String)> = probes.iter().map(|p| p.sample().0).collect();
    let mut leases: Vec<Option<(bool, String)>> = probes
        .iter()
        .map(|p| p.sample().1.map(|v| lease_key(&v)))
        .collect();
    let t0 = Instant::now();
    let wall0 = unix_ms();
    std::thread::spawn(move || {
        let mut events = Vec::new();
        let mut seen_transitions: Vec<u128> = vec![wall0; probes.len()];
        while t0.elapsed() < for_ {
            let t = t0.elapsed().as_millis();
            for (i, p) in probes.iter().enumerate() {
                let h = i + 1;
                let (now, st) = p.sample();
                if let Some(v) = &st {
                    for tr in v["transitions"].as_array().into_iter().flatten() {
                        let at = tr["at_ms"].as_u64().map_or(0, u128::from);
                        if at > seen_transitions[i] {
                            seen_transitions[i] = at;
                            events.push((
                                at.saturating_sub(wall0),
                                format!(
                                    "h{h}: VRRP {} ({})",
                                    tr["to"].as_str().unwrap_or("?"),
                                    tr["why"].as_str().unwrap_or("?")
                                ),
                            ));
                        }
                    }
                }
                let before = &last[i];
                if before.0 != now.0 {
                    let what = if now.0 { "added" } else { "removed" };
                    events.push((t, format!("h{h}: VIP {what}")));
                }
                if before.1 && !now.1 {
                    events.push((t, format!("h{h}: daemon gone")));
                }
                if before.2 != now.2 && now.1 {
                    events.push((t, format!("h{h}: Redis {}", now.2)));
                }
                if let Some(v) = &st {
                    let k = lease_key(v);
                    if !v["lease"].is_null() && leases[i].as_ref() != Some(&k) {
                        events.push((t, format!("h{h}: lease {}", lease_text(&v["lease"]))));
                        leases[i] = Some(k);
                    }
                }
                last[i] = now;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        events.sort_by_key(|e| e.0);
        events
    })
}

/// What makes a lease change worth a line: held or not, and the term.
fn lease_key(v: &serde_json::Value) -> (bool, String) {
    (v["lease"]["held"] == true, v["lease"]["term"].to_string())
}

/// The writer's report for the window [from, to].
fn window(r: &Report, from: Instant, to: Instant) -> Report {
    let within = |t: &Instant| (from..=to).contains(t);
    Report {
        acked: r.acked.iter().filter(|(t, _)| within(t)).copied().collect(),
        error_log: r
            .error_log
            .iter()
            .filter(|(t, _)| within(t))
            .cloned()
            .collect(),
        ..Default::default()
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("down") {
        require_root();
        println!("lab down: {} namespace(s) removed", down());
        return Ok(());
    }
    require_root();
    let keep = args.iter().any(|a| a == "--keep");
    let hosts: usize = args
        .iter()
        .position(|a| a == "--hosts")
        .and_then(|i| args.get(i + 1))
        .map_or(Ok(2), |h| h.parse())
        .context("--hosts N")?;
    anyhow::ensure!((2..=5).contains(&hosts), "--hosts: 2 to 5");
    if state_file().exists() {
        println!(
            "a kept lab is still up: removing it first ({} namespaces)",
            down()
        );
    }
    // Ctrl-C (or SIGTERM) at any point: everything goes.
    ctrlc::set_handler(|| {
        println!("\ninterrupted: cleaning up");
        println!("{} namespace(s) removed", down());
        std::process::exit(130);
    })?;

    println!(
        "starting: {hosts} Redis hosts + a client on a bridge, in namespaces named {PREFIX}<pid>x...; VIP {VIP}"
    );
    // Two Redis hosts need a witness for a majority; more have their own.
    let quorum = if hosts == 2 {
        Quorum::Witness
    } else {
        Quorum::Majority
    };
    let mut c = Cluster::start_with(Kind::Ours { advert_ms: 10 }, hosts, quorum, PREFIX, true)?;
    println!(
        "cluster up: h1 master, the others its replicas; {}; a client writes INCR through the VIP",
        match c.witness_host() {
            Some(w) => format!("a witness on h{w} (no Redis, no VIP): 3 voters, majority 2"),
            None => format!("{hosts} voters, majority {}", hosts / 2 + 1),
        }
    );
    println!(
        "timelines: ms from the fault; VIPs sampled every 5 ms, VRRP transitions as the daemons \
         stamp them, Redis roles from the daemons' status.json (written every 100 ms)\n"
    );
    let w = Writer::start(
        &c.client().ns,
        format!("{VIP}:6379").parse::<SocketAddr>()?,
        "counter",
    );
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(700));
        print!("{}", show(&c));
        println!();
    }
    let mut results = Vec::new();
    let faults: Vec<Fault> = Fault::LAB
        .into_iter()
        .chain([Fault::PartitionHosts, Fault::MasterCutOff])
        .collect();
    let mut reports: Vec<(Fault, Instant, Instant)> = Vec::new();
    for f in faults {
        let m = c.vip_holder().context("no master")?;
        println!("== {} (on h{m})", f.label());
        // The old master comes back 2 s into its fault; watch its failback too.
        let window = match f {
            Fault::OldMasterBack => Duration::from_secs(6),
            f if f.is_partition() => PARTITION + Duration::from_secs(2),
            _ => Duration::from_secs(4),
        };
        let watcher = watch(Probe::of(&c), window);
        let t0 = Instant::now();
        c.inject(f)?;
        if f.is_partition() {
            // The switch heals the partition; the timeline goes on.
            std::thread::sleep(PARTITION);
            c.lan.heal()?;
            println!("  (partition healed at t+{} ms)", t0.elapsed().as_millis());
        }
        for (t, what) in watcher.join().unwrap_or_default() {
            println!("  t+{t:>5} ms  {what}");
        }
        let end = Instant::now();
        reports.push((f, t0, end));
        print!("{}", show(&c));
        println!("  repairing...");
        let m = c.repair()?;
        println!("  healthy again: h{m} master\n");
    }
    let r = w.stop();
    let final_value = cluster::counter(&c).unwrap_or(0);
    println!("== results (client's view; writes through the VIP)");
    println!("| fault | longest write gap | acknowledged writes lost | writes after |");
    println!("| --- | --- | --- | --- |");
    let mut slow = Vec::new();
    for (f, t0, end) in reports {
        let part = window(&r, t0 - Duration::from_secs(1), end);
        let o = cluster::judge(&part, t0, end, final_value.max(part.last()), Duration::ZERO);
        println!(
            "| {} | {:.0} ms | {} | {} |",
            f.label(),
            o.longest_gap_ms,
            o.lost,
            o.writes_after
        );
        // Longer than a failover and the client's reconnect: say what the
        // client saw meanwhile.
        if o.longest_gap_ms >= 300.0 {
            slow.push((f, part.errors_in_longest_gap()));
        }
        results.push(o);
    }
    for (f, errors) in slow {
        println!("client errors in the longest gap of '{}':", f.label());
        for e in errors.iter().take(12) {
            println!("  {e}");
        }
    }
    println!(
        "total: {} writes acknowledged; the counter is {final_value} (never went back: {})",
        r.acked.len(),
        r.went_back().is_empty()
    );
    if keep {
        let bin = ha_testbed::daemon::binary();
        let mut hint = String::new();
        let _ = writeln!(hint, "\nthe lab stays up. Explore:");
        let _ = writeln!(
            hint,
            "  ip netns exec {} redis-cli -h {VIP} INCR counter",
            c.client().ns.name()
        );
        for i in 1..=c.n {
            if let Some(cfg) = c.config(i) {
                let ns = c.host(i).ns.name();
                let _ = writeln!(
                    hint,
                    "  ip netns exec {ns} {} status -c {}",
                    bin.display(),
                    cfg.display()
                );
                let _ = writeln!(
                    hint,
                    "  ip netns exec {ns} {} inspect -c {}",
                    bin.display(),
                    cfg.display()
                );
            }
        }
        let _ = writeln!(hint, "remove it with: cargo xtask lab down");
        print!("{hint}");
        std::fs::create_dir_all(state_file().parent().context("dir")?)?;
        std::fs::write(state_file(), hint)?;
        // Leave namespaces, processes and files in place.
        std::mem::forget(c);
        return Ok(());
    }
    drop(c);
    let left = down();
    println!(
        "cleaned up: the lab's namespaces, processes and files are gone{}",
        if left > 0 {
            format!(" ({left} removed late)")
        } else {
            String::new()
        }
    );
    Ok(())
}
