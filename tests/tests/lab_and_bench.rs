//! `cargo xtask lab` and `cargo xtask bench` as a newcomer runs them: the lab
//! shows failovers with numbers and leaves nothing behind (also on Ctrl-C,
//! and after `--keep` + `lab down`); the bench measures a fault end to end.
use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::Duration,
};

use ha_testbed::{require_root, wait_for, workspace_root};

fn example(name: &str) -> Command {
    let p = workspace_root().join("target/debug/examples").join(name);
    assert!(
        p.is_file(),
        "{} missing: `cargo build -p ha-tests --examples` (done by cargo xtask test)",
        p.display()
    );
    let mut c = Command::new(p);
    c.current_dir(workspace_root());
    c
}

/// Runs the lab example with `args`; it must succeed. Its output.
fn run_lab(args: &[&str]) -> String {
    let out = example("lab").args(args).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// The rows of the lab's results table (one per fault); each must show no
/// acknowledged write lost, but the master cut off from its peers: README,
/// *What the partitions do*: what it acknowledged in its last lease (32.7
/// ms) plus what its replica lagged at the cut (never more than
/// `max_staleness_ms`, 100 ms). `quorum.rs` checks the lease part exactly,
/// against what the old master acknowledged.
fn assert_no_write_lost(text: &str) -> usize {
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.starts_with("| ")
                && l.ends_with(" |")
                && !l.contains("---")
                && !l.starts_with("| fault")
        })
        .collect();
    for l in &rows {
        let cols: Vec<&str> = l.split('|').map(str::trim).collect();
        if cols[1].starts_with("master cut off") {
            // That span of writes at the run's pace: `writes after` span
            // the 5 s window, gaps included, so the old master's own pace
            // before the fault is up to about twice the average.
            let lost: f64 = cols[3].parse().expect("a count");
            let after: f64 = cols[4].parse().expect("a count");
            let bound = after / 5000.0 * (32.7 + 100.0);
            assert!(
                lost <= 2.0 * bound,
                "more than a lease and max_staleness_ms of writes lost ({bound:.0} at the average pace): {l}"
            );
        } else {
            assert_eq!(cols[3], "0", "lost writes: {l}");
        }
    }
    rows.len()
}

/// The lab's namespaces that exist now.
fn lab_namespaces() -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| {
                    n.starts_with("lab") && n[3..].starts_with(|c: char| c.is_ascii_digit())
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_lab_shows_each_fault_with_numbers_and_leaves_nothing_behind() {
    require_root();
    let text = run_lab(&["--keep"]);
    for want in [
        "cluster up",
        "== master's Redis killed (on h1)",
        "h2: VIP added",
        "h2: VRRP Master (",
        "== master host lost",
        "== master's daemon killed",
        "== old master back (empty)",
        "== planned switchover",
        "== hand-over from the master",
        "handed over (planned switchover away from this node)",
        "| master's Redis killed | ",
        "a witness on h3",
        "h3 198.18.0.3  witness  promised to",
        "lease HELD term",
        "== partition between the Redis hosts, 3 s",
        "== master cut off from its peers, 3 s",
        "(partition healed at t+",
        ": VRRP Backup (lease lost",
        "ip netns exec",
        "cargo xtask lab down",
    ] {
        assert!(text.contains(want), "{want:?} missing from\n{text}");
    }
    // No fault lost an acknowledged write.
    assert_no_write_lost(&text);
    // --keep: still there and usable.
    assert!(lab_namespaces().len() >= 4, "{:?}", lab_namespaces());
    let down = example("lab").arg("down").output().unwrap();
    assert!(down.status.success());
    assert!(
        lab_namespaces().is_empty(),
        "left behind: {:?}",
        lab_namespaces()
    );
    assert!(!workspace_root().join("target/lab/kept.txt").exists());
}

/// `--hosts 3`: a master and two replicas. With three nodes a backup must
/// follow whichever node is master, the returning one included (a stale
/// "failed master" once made h3 take over at failback; later, a middle
/// backup ignored a returning master that a lower backup had replaced), and
/// every fault still loses nothing.
#[test]
fn the_three_host_lab_loses_no_write_and_cleans_up() {
    require_root();
    let text = run_lab(&["--hosts", "3"]);
    for want in [
        "starting: 3 Redis hosts",
        "  h3 198.18.0.3 ",
        "== hand-over from the master",
        "3 voters, majority 2",
        "== master cut off from its peers, 3 s",
        "cleaned up",
    ] {
        assert!(text.contains(want), "{want:?} missing from\n{text}");
    }
    assert_eq!(
        assert_no_write_lost(&text),
        8,
        "one result row per fault:\n{text}"
    );
    assert!(
        lab_namespaces().is_empty(),
        "left behind: {:?}",
        lab_namespaces()
    );
}

#[test]
fn ctrl_c_in_the_lab_cleans_up() {
    require_root();
    let mut child = example("lab")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let up = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.starts_with("cluster up"));
    assert!(up, "the lab did not come up");
    assert!(!lab_namespaces().is_empty());
    // SAFETY: plain kill(2) on our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    let gone = wait_for(Duration::from_secs(5), || {
        lab_namespaces().is_empty().then_some(())
    });
    assert!(gone.is_some(), "left behind: {:?}", lab_namespaces());
}

#[test]
fn the_bench_measures_a_fault_against_both_daemons() {
    require_root();
    let dir = ha_testbed::TempDir::new("bench").unwrap();
    let json = dir.path().join("bench.json");
    let svg = dir.path().join("bench.svg");
    let out = example("failover_bench")
        .args([
            "--runs",
            "1",
            "--faults-only",
            "--only",
            "Redis killed",
            "--json",
        ])
        .arg(&json)
        .arg("--svg")
        .arg(&svg)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("| master's Redis killed | ha-daemon 10 ms |"),
        "{text}"
    );
    assert!(
        text.contains("| master's Redis killed | keepalived 100 ms |"),
        "{text}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let ours = &v["faults"][0];
    assert_eq!(ours["daemon"], "ha-daemon 10 ms");
    assert_eq!(ours["runs"][0]["lost"], 0);
    assert!(ours["runs"][0]["writes_after"].as_u64().unwrap() > 100);
    assert!(std::fs::read_to_string(&svg).unwrap().starts_with("<svg"));
}
