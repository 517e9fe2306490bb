//! `cargo xtask lab`: a live Redis HA cluster on this machine, in network
//! namespaces — a bridge, Redis hosts with ha-daemon (10 ms adverts,
//! persistence on) and a client writing INCR through the VIP — then faults
//! one after another, each with its timeline, write gap and lost writes.
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
    cluster::{self, Cluster, Fault, Kind, VIP},
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

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
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
                    r.get("role").and_then(|x| x.as_str()).unwrap_or("?"),
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
        let _ = writeln!(
            o,
            "  h{i} {}  {}  {vrrp}  redis {redis}  adverts seen (XDP): {}",
            c.host(i).addr4,
            if c.holds_vip(i) { "VIP" } else { "   " },
            if adverts.is_empty() { "-" } else { &adverts }
        );
    }
    o
}

type Snapshot = Vec<(bool, String, String)>;

/// Per host: VIP held, VRRP state, Redis role (as its daemon reports them).
fn snapshot(c: &Cluster) -> Snapshot {
    (1..=c.n)
        .map(|i| {
            let st = c.status(i);
            (
                c.holds_vip(i),
                st.as_ref()
                    .and_then(|v| v["state"].as_str().map(str::to_owned))
                    .unwrap_or_else(|| "down".into()),
                st.as_ref()
                    .and_then(|v| v["redis"]["role"].as_str().map(str::to_owned))
                    .unwrap_or_else(|| "?".into()),
            )
        })
        .collect()
}

/// Watches the cluster after a fault and prints what changed, when (VRRP
/// state and Redis role come from status.json, written every 100 ms).
fn timeline(c: &Cluster, t0: Instant, mut last: Snapshot, for_: Duration) {
    while t0.elapsed() < for_ {
        let now = snapshot(c);
        if now != last {
            let t = t0.elapsed();
            for (i, n) in now.iter().enumerate() {
                let before = last.get(i);
                if before.map(|b| b.0) != Some(n.0) {
                    println!(
                        "  t+{:>6}  h{}: VIP {}",
                        ms(t),
                        i + 1,
                        if n.0 { "added" } else { "removed" }
                    );
                }
                if before.map(|b| &b.1) != Some(&n.1) {
                    println!("  t+{:>6}  h{}: VRRP {}", ms(t), i + 1, n.1);
                }
                if before.map(|b| &b.2) != Some(&n.2) {
                    println!("  t+{:>6}  h{}: Redis {}", ms(t), i + 1, n.2);
                }
            }
            last = now;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The writer's report for the window [from, to].
fn window(r: &Report, from: Instant, to: Instant) -> Report {
    Report {
        acked: r
            .acked
            .iter()
            .filter(|(t, _)| *t >= from && *t <= to)
            .copied()
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
    let mut c = Cluster::start(Kind::Ours { advert_ms: 10 }, hosts, PREFIX, true)?;
    println!(
        "cluster up: h1 master, the others its replicas; a client writes INCR through the VIP\n"
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
    let faults: Vec<Fault> = Fault::ALL.to_vec();
    let mut reports: Vec<(Fault, Instant, Instant)> = Vec::new();
    for f in faults {
        let m = c.vip_holder().context("no master")?;
        println!("== {} (on h{m})", f.label());
        let before = snapshot(&c);
        let t0 = Instant::now();
        c.inject(f)?;
        timeline(&c, t0, before, Duration::from_secs(4));
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
        results.push(o);
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
