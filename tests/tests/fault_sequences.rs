//! Sequences of faults, each a finding that once lost writes or kept
//! clients waiting: real redis-server and ha-daemon on namespace hosts, a
//! client writing INCR through the VIP, judged by the final dataset holding
//! every acknowledged write.
use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use ha_testbed::{
    client::{Report, Writer},
    cluster::{Cluster, Fault, Kind, Quorum, VIP, counter},
    require_root, wait_for,
};

fn writer(c: &Cluster) -> Writer {
    Writer::start(
        &c.client().ns,
        format!("{VIP}:6379").parse::<SocketAddr>().unwrap(),
        "counter",
    )
}

/// The replication link between the two Redis hosts breaks (the switch
/// drops their frames; the witness and the client still reach both), then
/// the master host is lost: h2's Redis has missed a second of writes.
fn cut_replication_then_lose_the_master() -> (Cluster, Writer) {
    let (mut c, w) = cut_replication();
    std::thread::sleep(Duration::from_secs(1));
    c.inject(Fault::HostLost).unwrap();
    (c, w)
}

/// Two Redis hosts (AOF) and a witness, a client writing through the VIP,
/// and after 500 ms the link between the Redis hosts cut.
fn cut_replication() -> (Cluster, Writer) {
    require_root();
    let c = Cluster::start_with(
        Kind::Ours { advert_ms: 10 },
        2,
        Quorum::Witness,
        "has",
        true,
    )
    .expect("the cluster forms");
    let w = writer(&c);
    std::thread::sleep(Duration::from_millis(500));
    c.lan.cut(1, 2).unwrap();
    (c, w)
}

/// h2 must not take over with a second of writes missing: it is refused as
/// stale (status says why, and by how much) and the instance waits for the
/// old master, which comes back with its data and serves again.
#[test]
fn replication_cut_then_master_lost_waits_for_the_old_master_nothing_lost() {
    let (mut c, w) = cut_replication_then_lose_the_master();
    let elsewhere = wait_for(Duration::from_secs(2), || c.holds_vip(2).then_some(()));
    let st2 = c.status(2).unwrap();
    println!("h2 2 s later: {} {}", st2["state"], st2["lease"]);
    assert!(elsewhere.is_none(), "h2 took over with a stale Redis");
    let stale = &st2["lease"]["stale"];
    let behind = stale["behind_ms"].as_f64().unwrap_or(0.0);
    assert!(
        (800.0..1500.0).contains(&behind),
        "h2's status says how stale it is (about the second since the cut): {stale}"
    );
    assert!(
        c.node_log(2).contains("refuses the local Redis: "),
        "the log says why no one takes over"
    );
    // The old master's host comes back, with its Redis's data (AOF).
    let t = Instant::now();
    c.lan.heal().unwrap();
    c.link(1, true).unwrap();
    c.start_redis(1, false).unwrap();
    c.start_node(1).unwrap();
    let m = c
        .wait_healthy(Some(1), Duration::from_secs(20))
        .expect("h1 serves again, h2 follows it");
    println!(
        "h{m} master again {:?} after its host came back",
        t.elapsed()
    );
    std::thread::sleep(Duration::from_millis(300));
    let r = w.stop();
    let v = counter(&c).expect("the counter reads through the VIP");
    println!(
        "acknowledged {} (last {}), cluster has {v}, longest gap {:?}",
        r.acked.len(),
        r.last(),
        r.longest_gap()
    );
    assert_eq!(r.lost(v), 0, "acknowledged writes lost");
}

/// The same, but an operator takes the loss: `ha-daemon promote
/// --accept-loss` on h2 makes it master and says how much is given up.
#[test]
fn promote_accept_loss_takes_over_and_says_what_is_lost() {
    let (c, w) = cut_replication_then_lose_the_master();
    let refused = wait_for(Duration::from_secs(3), || {
        c.status(2)?["lease"]["stale"].as_object().map(|_| ())
    });
    assert!(refused.is_some(), "h2 is refused as stale first");
    let out = c
        .host(2)
        .ns
        .command(ha_testbed::daemon::binary().to_str().unwrap())
        .args(["promote", "--accept-loss", "-c"])
        .arg(c.config(2).unwrap())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    println!("promote: {text}");
    assert!(out.status.success(), "promote: {text}");
    assert!(
        text.contains("promoted") && text.contains("final") && text.contains("ms"),
        "it says what is lost: {text}"
    );
    assert!(c.holds_vip(2), "h2 serves");
    let before = Instant::now();
    std::thread::sleep(Duration::from_millis(500));
    let r = w.stop();
    let after = r.acked.iter().filter(|(t, _)| *t > before).count();
    assert!(after > 100, "writes resumed on h2 ({after})");
    // Without the flag, promote refuses and says why.
    let out = c
        .host(2)
        .ns
        .command(ha_testbed::daemon::binary().to_str().unwrap())
        .args(["promote", "-c"])
        .arg(c.config(2).unwrap())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--accept-loss"));
}

/// The master's Redis hangs (SIGSTOP for 5 s: a long fork, a disk stuck
/// under `appendfsync always`, a slow script). It acknowledges nothing, so
/// nothing forces a wait: the backup serves within the health bound
/// (fall × check_interval_ms = 200 ms) plus 100 ms, fenced, nothing lost,
/// with and without a quorum. When the hung Redis wakes up it must not
/// acknowledge the writes queued in its sockets.
fn redis_hangs(quorum: Quorum) {
    require_root();
    let mut c = Cluster::start_with(Kind::Ours { advert_ms: 10 }, 2, quorum, "has", false)
        .expect("the cluster forms");
    let w = writer(&c);
    std::thread::sleep(Duration::from_millis(800));
    let fault = Instant::now();
    c.signal_redis(1, libc::SIGSTOP);
    let took = wait_for(Duration::from_secs(3), || c.holds_vip(2).then_some(()));
    let took_ms = fault.elapsed().as_millis();
    std::thread::sleep(Duration::from_millis(1000));
    let r0 = Instant::now();
    let resumed_before = r0;
    std::thread::sleep(Duration::from_secs(4).saturating_sub(fault.elapsed()));
    c.signal_redis(1, libc::SIGCONT);
    std::thread::sleep(Duration::from_secs(2));
    let r = w.stop();
    let first_after = r
        .acked
        .iter()
        .find(|(t, _)| *t > fault + Duration::from_millis(5))
        .map(|(t, _)| (*t - fault).as_millis());
    let v = counter(&c).expect("the counter reads through the VIP");
    let lost = r.lost(v);
    println!(
        "{quorum:?}: h2 holds the VIP {took_ms} ms after the hang; first write acknowledged after it at +{first_after:?} ms; longest gap {:?}; lost {lost}; went back {:?}",
        r.longest_gap(),
        r.went_back_detail()
    );
    let _ = resumed_before;
    assert!(took.is_some(), "h2 took over");
    assert_eq!(lost, 0, "acknowledged writes lost");
    let first = first_after.expect("writes resumed");
    assert!(
        first <= 300,
        "clients wrote again {first} ms after the hang (bound: 200 ms health + 100 ms)"
    );
    c.repair().expect("the cluster heals");
}

#[test]
fn redis_hung_5s_with_a_witness_is_replaced_within_the_health_bound() {
    redis_hangs(Quorum::Witness);
}

#[test]
fn redis_hung_5s_without_a_quorum_is_replaced_within_the_health_bound() {
    redis_hangs(Quorum::Off);
}

/// The link between the Redis hosts flaps (down 100 ms, up 150 ms, for
/// 3 s; the client sees both): acknowledged writes lost, and takeovers by h2.
fn flapping(kind: Kind, quorum: Quorum) -> (i64, usize, Report) {
    require_root();
    let mut c = Cluster::start_with(kind, 2, quorum, "has", false).expect("the cluster forms");
    let before = c.takeovers(2);
    let w = writer(&c);
    std::thread::sleep(Duration::from_millis(800));
    let end = Instant::now() + Duration::from_secs(3);
    while Instant::now() < end {
        c.lan.cut(1, 2).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        c.lan.heal().unwrap();
        std::thread::sleep(Duration::from_millis(150));
    }
    std::thread::sleep(Duration::from_secs(1));
    let r = w.stop();
    c.wait_healthy(None, Duration::from_secs(10))
        .expect("one master after the flapping");
    let v = counter(&c).expect("the counter reads through the VIP");
    let takeovers = c.takeovers(2) - before;
    (r.lost(v), takeovers, r)
}

/// Without a quorum a flapping link makes the backup take over at every cut
/// and yield at every heal, and each time the writes it took are thrown
/// away. Repeated takeovers from a master that comes back are held down
/// (longer each time, as route-flap dampening does): no more lost than
/// keepalived loses in the same run.
#[test]
fn a_flapping_link_without_a_quorum_loses_no_more_than_keepalived() {
    let (ours, ours_takeovers, r) = flapping(Kind::Ours { advert_ms: 10 }, Quorum::Off);
    let (ka, ka_takeovers, _) = flapping(Kind::Keepalived { advert_ms: 10 }, Quorum::Off);
    println!(
        "flapping 100/150 ms for 3 s: ha-daemon lost {ours} ({ours_takeovers} takeovers, {} acknowledged), keepalived lost {ka} ({ka_takeovers} takeovers)",
        r.acked.len()
    );
    assert!(
        ours <= ka,
        "ha-daemon lost {ours} acknowledged writes, keepalived {ka}"
    );
}

/// With a witness the backup never takes over from a master the witness
/// still hears: nothing lost, no takeover.
#[test]
fn a_flapping_link_with_a_witness_loses_nothing_and_moves_nothing() {
    let (lost, takeovers, r) = flapping(Kind::Ours { advert_ms: 10 }, Quorum::Witness);
    println!(
        "flapping with a witness: lost {lost}, {takeovers} takeovers, longest gap {:?}",
        r.longest_gap()
    );
    assert_eq!((lost, takeovers), (0, 0));
}

/// Found by the campaign (seed 42): replication cut, then the master's Redis
/// comes back with an empty data dir. Neither node may take over (h2 is
/// stale, h1 empty); an operator who accepts the loss on h1, whose Redis is
/// a master already (self-fenced, not a replica to promote), must get it
/// serving and be told so, not a timeout after 10 s.
#[test]
fn promote_accept_loss_on_an_emptied_master_serves_at_once() {
    let (mut c, w) = cut_replication();
    std::thread::sleep(Duration::from_millis(500));
    c.kill_redis(1);
    let _ = std::fs::remove_dir_all(c.dir.path().join("redis-r1"));
    c.start_redis(1, false).unwrap();
    let refused = wait_for(Duration::from_secs(3), || {
        c.status(1)?["lease"]["stale"].as_object().map(|_| ())
    });
    assert!(refused.is_some(), "h1 (emptied) is refused first");
    let t = Instant::now();
    let out = c
        .host(1)
        .ns
        .command(ha_testbed::daemon::binary().to_str().unwrap())
        .args(["promote", "--accept-loss", "-c"])
        .arg(c.config(1).unwrap())
        .output()
        .unwrap();
    let took = t.elapsed();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    println!("promote after {took:?}: {text}");
    assert!(out.status.success(), "promote: {text}");
    assert!(took < Duration::from_secs(3), "promote took {took:?}");
    let before = Instant::now();
    std::thread::sleep(Duration::from_millis(500));
    let r = w.stop();
    let after = r.acked.iter().filter(|(t, _)| *t > before).count();
    assert!(after > 100, "writes resumed on h1 ({after})");
}

/// Found by the 30-minute campaign's lead on 2026-12-07 (failed 2 of 2
/// before the fix): replication cut (the backup is refused as stale), then
/// the master's Redis restarts with an empty data dir. When the link heals,
/// the backup's Redis, still a replica of that address, reconnected on its
/// own and full-synced the empty dataset (the empty-master guard covered
/// only the daemon's own REPLICAOF). Now the backup's daemon detaches its
/// Redis once it cannot vouch for the master (`redis/detach.rs`), and the
/// guard refuses the empty master when the daemon re-attaches.
#[test]
fn a_stale_backup_does_not_resync_from_its_master_restarted_empty() {
    let (mut c, w) = cut_replication();
    std::thread::sleep(Duration::from_secs(1));
    c.kill_redis(1);
    let _ = std::fs::remove_dir_all(c.dir.path().join("redis-r1"));
    std::thread::sleep(Duration::from_millis(300));
    c.start_redis(1, false).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let read = |c: &Cluster| -> i64 {
        ha_testbed::redis::cli(c.host(2), &["GET", "counter"])
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    let held = read(&c);
    assert!(held > 0, "the backup holds the data before the heal");
    c.lan.heal().unwrap();
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(250));
        let now = read(&c);
        assert!(
            now >= held,
            "the backup's Redis lost its data after the heal: counter {held} -> {now}"
        );
    }
    // It says why it is not replicating: detached, and the guard refusing
    // the empty master.
    let log = c.node_log(2);
    assert!(log.contains("detached the local Redis from"), "{log}");
    let i = c.status(2).expect("h2's status");
    println!("h2's Redis after the heal: {}", i["redis"]);
    println!(
        "DEBUG h2 {}\nDEBUG h1 {:?}\n{}",
        i,
        c.status(1),
        c.node_log(2)
    );
    assert!(
        i["redis"]["detached"].is_string() || i["redis"]["guard"].is_string(),
        "{}",
        i["redis"]
    );
    drop(w.stop());
}

/// The staleness rule and the detached replica with Valkey on both hosts.
mod valkey {
    use ha_testbed::redis::use_valkey;

    #[test]
    fn replication_cut_then_master_lost_waits_for_the_old_master_nothing_lost() {
        use_valkey();
        super::replication_cut_then_master_lost_waits_for_the_old_master_nothing_lost();
    }

    #[test]
    fn a_stale_backup_does_not_resync_from_its_master_restarted_empty() {
        use_valkey();
        super::a_stale_backup_does_not_resync_from_its_master_restarted_empty();
    }
}
