//! Sentinel-compatible discovery: each ha-daemon answers the Sentinel
//! protocol on `[sentinel] listen`, and a Sentinel-aware client (redis-py's
//! `Sentinel`, from PyPI) finds the master by asking, keeps writing across
//! a fault, and loses no acknowledged write. Raw replies and events are
//! checked with redis-cli (Debian's) from the client host.
use std::{net::SocketAddr, time::Duration};

use ha_testbed::{
    client::{LibWriter, SentinelLib},
    cluster::{Cluster, Fault, Quorum, SENTINEL_PORT},
    require_root, wait_for,
};

fn cli(c: &Cluster, host: usize, args: &[&str]) -> String {
    let h = c.host(host).addr4.to_string();
    let port = SENTINEL_PORT.to_string();
    let mut all = vec!["-h", h.as_str(), "-p", port.as_str()];
    all.extend_from_slice(args);
    c.client().ns.exec("redis-cli", &all).unwrap_or_default()
}

fn sentinels(c: &Cluster) -> Vec<SocketAddr> {
    (1..=c.n)
        .map(|i| SocketAddr::new(c.host(i).addr4.into(), SENTINEL_PORT))
        .collect()
}

/// The counter, read from the master the daemon on `host` names.
fn counter(c: &Cluster, host: usize) -> Option<i64> {
    let addr = cli(c, host, &["SENTINEL", "get-master-addr-by-name", "vi"]);
    let mut l = addr.lines();
    let (ip, port) = (l.next()?, l.next()?);
    c.client()
        .ns
        .exec("redis-cli", &["-h", ip, "-p", port, "GET", "counter"])
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn discovery_through_a_fault(fault: Fault) {
    require_root();
    let mut c = Cluster::start_sentinel(2, Quorum::Witness, "hsn").expect("the cluster forms");
    let (h1, h2) = (c.host(1).addr4.to_string(), c.host(2).addr4.to_string());
    // Every daemon names the same master, and says it is a Sentinel.
    for i in 1..=2 {
        let got = wait_for(Duration::from_secs(5), || {
            let a = cli(&c, i, &["SENTINEL", "get-master-addr-by-name", "vi"]);
            (a.lines().next() == Some(h1.as_str())).then_some(a)
        });
        assert!(got.is_some(), "h{i} names h1 as the master");
        assert!(cli(&c, i, &["INFO", "server"]).contains("redis_mode:sentinel"));
        assert_eq!(cli(&c, i, &["ROLE"]).trim(), "sentinel\nvi");
    }
    let replicas = cli(&c, 1, &["SENTINEL", "REPLICAS", "vi"]);
    assert!(
        replicas.contains(&h2),
        "h1 lists h2 as its replica: {replicas}"
    );
    // Events, on the daemon that takes over.
    let events = c.dir.path().join("events.txt");
    let sub = c
        .client()
        .ns
        .spawn(
            "redis-cli subscribe",
            {
                let mut cmd = c.client().ns.command("redis-cli");
                cmd.args(["-h", &h2, "-p", &SENTINEL_PORT.to_string()])
                    .args(["PSUBSCRIBE", "*"]);
                cmd
            },
            events.clone(),
        )
        .unwrap();
    let w = LibWriter::start_sentinel(
        SentinelLib::RedisPy,
        &c.client().ns,
        &sentinels(&c),
        "vi",
        "counter",
        Duration::from_millis(50),
    )
    .expect("redis-py runs");
    std::thread::sleep(Duration::from_millis(1500));
    let at = std::time::Instant::now();
    c.inject(fault).unwrap();
    let moved = wait_for(Duration::from_secs(5), || {
        let a = cli(&c, 2, &["SENTINEL", "get-master-addr-by-name", "vi"]);
        (a.lines().next() == Some(h2.as_str())).then_some(())
    });
    std::thread::sleep(Duration::from_millis(1500));
    let r = w.stop();
    drop(sub);
    let final_value = counter(&c, 2).expect("the counter reads from the master h2 names");
    let ev = std::fs::read_to_string(&events).unwrap_or_default();
    let after = r.acked.iter().filter(|(t, _)| *t > at).count();
    println!(
        "{fault:?}: acknowledged {} ({after} after the fault; last {}), final {final_value}, lost {}, errors {}, longest gap {:?}, errors: {:?}\nevents on h2:\n{ev}",
        r.acked.len(),
        r.last(),
        r.lost(final_value),
        r.errors,
        r.longest_gap(),
        r.error_log
            .iter()
            .map(|(t, e)| format!(
                "{:+.0} ms {e}",
                t.duration_since(at).as_secs_f64() * 1e3
                    - at.duration_since(*t).as_secs_f64() * 1e3
            ))
            .collect::<Vec<_>>(),
    );
    assert!(moved.is_some(), "h2 names itself master after the fault");
    assert!(r.acked.len() > 100, "redis-py wrote through discovery");
    assert!(
        after > 100,
        "redis-py writes again after the fault ({after})"
    );
    assert_eq!(r.lost(final_value), 0, "acknowledged writes lost");
    assert!(
        ev.contains(&format!("+switch-master\nvi {h1} 6379 {h2} 6379")),
        "h2 published +switch-master: {ev}"
    );
}

#[test]
fn redis_py_sentinel_finds_the_new_master_after_the_master_host_is_lost() {
    discovery_through_a_fault(Fault::HostLost);
}

#[test]
fn redis_py_sentinel_follows_a_switchover() {
    discovery_through_a_fault(Fault::Switchover);
}
