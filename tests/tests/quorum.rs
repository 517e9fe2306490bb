//! Partition safety with a quorum lease: real redis-server and ha-daemon on
//! namespace hosts, a witness, partitions made in the switch with nftables,
//! and a client writing INCR through the VIP; judged by the final dataset
//! holding every acknowledged write (a counter that never goes back).
use std::{net::SocketAddr, time::Duration};

use ha_testbed::{
    client::{Report, Writer},
    cluster::{Cluster, Kind, Quorum, VIP, counter},
    require_root, wait_for,
};

fn start(n: usize, quorum: Quorum) -> Cluster {
    require_root();
    Cluster::start_with(Kind::Ours { advert_ms: 10 }, n, quorum, "haq", false)
        .expect("the cluster forms")
}

fn writer(c: &Cluster) -> Writer {
    Writer::start(
        &c.client().ns,
        format!("{VIP}:6379").parse::<SocketAddr>().unwrap(),
        "counter",
    )
}

/// Writes resumed after `fault` and nothing acknowledged was lost.
fn no_write_lost(what: &str, c: &Cluster, r: &Report, fault: std::time::Instant) {
    let final_value = counter(c).expect("the counter reads through the VIP");
    let after = r.acked.iter().filter(|(t, _)| *t > fault).count();
    println!(
        "{what}: {} acknowledged ({after} after the fault), {} errors, longest gap {:?}, last {}, cluster has {final_value}",
        r.acked.len(),
        r.errors,
        r.longest_gap(),
        r.last()
    );
    assert!(after > 100, "{what}: writes did not resume ({after})");
    assert!(
        r.went_back().is_empty(),
        "{what}: the counter went back: {:?}",
        &r.went_back_detail()[..r.went_back().len().min(5)]
    );
    assert!(
        final_value >= r.last(),
        "{what}: acknowledged {} but the cluster has {final_value}",
        r.last()
    );
}

/// Samples, every 10 ms for `d`, whether any host but `except` holds the
/// VIP; returns the hosts that did.
fn vip_elsewhere(c: &Cluster, except: usize, d: Duration) -> Vec<usize> {
    let end = std::time::Instant::now() + d;
    let mut seen = Vec::new();
    while std::time::Instant::now() < end {
        for i in (1..=c.n).filter(|&i| i != except) {
            if c.holds_vip(i) && !seen.contains(&i) {
                seen.push(i);
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    seen
}

/// How often host i became VRRP master since it started.
fn takeovers_of(c: &mut Cluster, i: usize) -> usize {
    c.takeovers(i)
}

fn lease(c: &Cluster, i: usize) -> serde_json::Value {
    c.status(i).map(|s| s["lease"].clone()).unwrap_or_default()
}

#[test]
fn partition_between_the_redis_hosts_with_a_witness_no_takeover_nothing_lost() {
    let mut c = start(2, Quorum::Witness);
    // status.json is written within 100 ms of a change.
    let held = wait_for(Duration::from_secs(1), || {
        (lease(&c, 1)["held"] == true).then_some(())
    });
    assert!(held.is_some(), "h1 holds the lease: {}", lease(&c, 1));
    let before = takeovers_of(&mut c, 2);
    let w = writer(&c);
    std::thread::sleep(Duration::from_millis(500));
    let fault = std::time::Instant::now();
    // Frames between h1 and h2 dropped in the switch; the witness and the
    // client still reach both.
    c.lan.cut(1, 2).unwrap();
    let elsewhere = vip_elsewhere(&c, 1, Duration::from_secs(3));
    assert!(elsewhere.is_empty(), "the VIP showed up on {elsewhere:?}");
    // h2 hears no adverts, asks for the lease, and the witness refuses it.
    let st2 = c.status(2).unwrap();
    assert_eq!(st2["state"], "Backup", "{st2}");
    assert!(!c.holds_vip(2), "no VIP on h2");
    assert_eq!(lease(&c, 1)["held"], true);
    c.lan.heal().unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let r = w.stop();
    assert_eq!(takeovers_of(&mut c, 2), before, "h2 never became master");
    let ws = c.witness_status().unwrap();
    println!("witness: {}", ws["quorum"]["votes"]);
    assert!(
        ws["quorum"]["votes"]["vi"]["refused"]["promised"]
            .as_u64()
            .unwrap_or(0)
            > 0,
        "the witness refused h2: {ws}"
    );
    no_write_lost("partition between the Redis hosts", &c, &r, fault);
    c.wait_healthy(Some(1), Duration::from_secs(10)).unwrap();
}

#[test]
fn backup_cut_from_everyone_stays_backup_without_the_vip() {
    let mut c = start(2, Quorum::Witness);
    let before = takeovers_of(&mut c, 2);
    let w = writer(&c);
    std::thread::sleep(Duration::from_millis(300));
    let fault = std::time::Instant::now();
    let others: Vec<usize> = (1..=c.lan.hosts.len()).filter(|&h| h != 2).collect();
    c.lan.isolate(2, &others).unwrap();
    let elsewhere = vip_elsewhere(&c, 1, Duration::from_secs(3));
    assert!(
        elsewhere.is_empty(),
        "the isolated backup took the VIP: {elsewhere:?}"
    );
    assert_eq!(c.status(2).unwrap()["state"], "Backup");
    c.lan.heal().unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let r = w.stop();
    assert_eq!(takeovers_of(&mut c, 2), before, "h2 never became master");
    no_write_lost("backup cut from everyone", &c, &r, fault);
}
