//! Partition safety with a quorum lease: real redis-server and ha-daemon on
//! namespace hosts, a witness, partitions made in the switch with nftables,
//! and a client writing INCR through the VIP; judged by the final dataset
//! holding every acknowledged write (a counter that never goes back).
use std::{
    collections::BTreeMap,
    net::SocketAddr,
    time::{Duration, Instant},
};

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

/// For each Redis (by run_id), the first and last time it acknowledged a
/// write in [from, to], over every writer's report, and how many.
fn ack_windows(
    reports: &[&Report],
    from: Instant,
    to: Instant,
) -> BTreeMap<String, (Instant, Instant, usize)> {
    let mut w: BTreeMap<String, (Instant, Instant, usize)> = BTreeMap::new();
    for r in reports {
        for (i, (t, _)) in r.acked.iter().enumerate() {
            if *t < from || *t > to {
                continue;
            }
            let Some(s) = r.acked_by.get(i).and_then(|s| r.servers.get(*s as usize)) else {
                continue;
            };
            let e = w.entry(s.clone()).or_insert((*t, *t, 0));
            e.0 = e.0.min(*t);
            e.1 = e.1.max(*t);
            e.2 += 1;
        }
    }
    w
}

/// Every acknowledged write of every writer in [from, to], in time order,
/// cut into runs by the host whose Redis acknowledged it: (host, first,
/// last, writes). With one writing master at a time there is one run per
/// term; two acknowledging at once interleave into many short runs.
fn ack_runs(
    reports: &[&Report],
    ids: &[String],
    from: Instant,
    to: Instant,
) -> Vec<(usize, Instant, Instant, usize)> {
    let mut all: Vec<(Instant, usize)> = Vec::new();
    for r in reports {
        for (i, (t, _)) in r.acked.iter().enumerate() {
            if *t < from || *t > to {
                continue;
            }
            let host = r
                .acked_by
                .get(i)
                .and_then(|s| r.servers.get(*s as usize))
                .and_then(|id| ids.iter().position(|x| x == id))
                .map_or(0, |h| h + 1);
            all.push((*t, host));
        }
    }
    all.sort_by_key(|a| a.0);
    let mut runs: Vec<(usize, Instant, Instant, usize)> = Vec::new();
    for (t, h) in all {
        match runs.last_mut() {
            Some(r) if r.0 == h => {
                r.2 = t;
                r.3 += 1;
            }
            _ => runs.push((h, t, t, 1)),
        }
    }
    runs
}

/// Never two masters acknowledging at once: the hand-overs between runs
/// are few (one per takeover or failback) and far apart in time.
fn single_writer(what: &str, runs: &[(usize, Instant, Instant, usize)]) {
    assert!(
        runs.len() <= 4,
        "{what}: writes acknowledged by {} alternating runs of hosts: two masters at once",
        runs.len()
    );
    for w in runs.windows(3) {
        // A host that gives way and comes back within 20 ms: interleaved.
        let between = w[2].1 - w[1].2;
        assert!(
            !(w[0].0 == w[2].0 && between < Duration::from_millis(20) && w[1].3 < 50),
            "{what}: h{} and h{} acknowledged writes at once",
            w[0].0,
            w[1].0
        );
    }
}

/// Writers on three client hosts: the first follows the VIP as clients do;
/// the second always sends to h1's MAC, the third to h2's (pinned ARP), so
/// both Redis hosts get writes whatever the VIP does.
struct Writers {
    main: Writer,
    to_h1: Writer,
    to_h2: Writer,
}

fn writers(c: &Cluster) -> Writers {
    let addr: SocketAddr = format!("{VIP}:6379").parse().unwrap();
    c.client_n(1).pin_neighbour(VIP, &c.host(1).mac).unwrap();
    c.client_n(2).pin_neighbour(VIP, &c.host(2).mac).unwrap();
    Writers {
        main: Writer::start_tagged(&c.client().ns, addr, "counter"),
        to_h1: Writer::start_tagged(&c.client_n(1).ns, addr, "k1"),
        to_h2: Writer::start_tagged(&c.client_n(2).ns, addr, "k2"),
    }
}

/// Ms from `fault` to the last time `i` became VRRP master.
fn became_master_after(c: &Cluster, i: usize, fault_wall_ms: u128) -> Option<u128> {
    let st = c.status(i)?;
    st["transitions"]
        .as_array()?
        .iter()
        .filter(|t| t["to"] == "Master")
        .filter_map(|t| t["at_ms"].as_u64().map(u128::from))
        .filter(|at| *at >= fault_wall_ms)
        .min()
        .map(|at| at - fault_wall_ms)
}

fn wall_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

/// The lease length in ms, as h1's status says.
fn lease_ms(c: &Cluster) -> f64 {
    lease(c, 1)["lease_ms"].as_f64().unwrap_or(0.0)
}

/// After a fault and its repair: one master, the others its replicas, and
/// the counter holds every write acknowledged under the newest term.
fn healed(c: &mut Cluster, main: &Report) {
    let m = c.repair().expect("one master after the heal");
    let final_value = counter(c).expect("the counter reads through the VIP");
    assert!(
        final_value >= main.last(),
        "after the heal the counter is {final_value}, but {} was acknowledged last",
        main.last()
    );
    println!("healed: h{m} master, counter {final_value}");
}

#[test]
fn master_cut_from_peer_and_witness_fences_itself_before_the_new_master_serves() {
    require_root();
    let mut c = Cluster::start_full(
        Kind::Ours { advert_ms: 10 },
        2,
        Quorum::Witness,
        2,
        "haq",
        false,
    )
    .expect("the cluster forms");
    let ids: Vec<String> = (1..=2).map(|i| c.run_id(i).unwrap()).collect();
    let w = writers(&c);
    std::thread::sleep(Duration::from_millis(800));
    // h1 loses h2 and the witness; every client still reaches it. Timed
    // from when the cut is in place (`before`: just before it started).
    let before = Instant::now();
    c.lan.isolate(1, &[2, 3]).unwrap();
    let (fault, fault_wall) = (Instant::now(), wall_ms());
    std::thread::sleep(Duration::from_secs(3));
    let heal = Instant::now();
    let took = became_master_after(&c, 2, fault_wall);
    c.lan.heal().unwrap();
    // h1 preempts back once its Redis streams from h2 (a few hundred ms).
    std::thread::sleep(Duration::from_millis(1500));
    let (main, to_h1, to_h2) = (w.main.stop(), w.to_h1.stop(), w.to_h2.stop());
    // The failback: h2 gives its lease to h1, and its fence drops what its
    // Redis would still answer; its clients are reset at once (a request
    // in flight waited for TCP's 200 ms retransmit before).
    let mut prev = heal;
    let mut failback_gap = Duration::ZERO;
    for (t, _) in main.acked.iter().filter(|a| a.0 > heal) {
        failback_gap = failback_gap.max(*t - prev);
        prev = *t;
    }
    println!("after the heal: longest gap {failback_gap:?}");
    assert!(
        failback_gap < Duration::from_millis(100),
        "after the heal the client waited {failback_gap:?}"
    );
    let windows = ack_windows(&[&main, &to_h1, &to_h2], fault, heal);
    single_writer(
        "master cut off",
        &ack_runs(&[&main, &to_h1, &to_h2], &ids, fault, heal),
    );
    let l = lease_ms(&c);
    let (h1, h2) = (windows.get(&ids[0]), windows.get(&ids[1]));
    println!(
        "h2 master {took:?} ms after the cut (lease {l:.1} ms); h1 acknowledged until +{:?}, {} writes; h2 from +{:?}",
        h1.map(|w| (w.1 - fault).as_secs_f64() * 1000.0),
        h1.map_or(0, |w| w.2),
        h2.map(|w| (w.0 - fault).as_secs_f64() * 1000.0),
    );
    let took = took.expect("h2 became master");
    assert!(took < 100, "a new master within the lease time: {took} ms");
    let (h1, h2) = (
        h1.expect("h1 acknowledged after the cut"),
        h2.expect("h2 acknowledged"),
    );
    assert!(
        h1.1 < h2.0,
        "two masters acknowledged writes at once: h1 until +{:?}, h2 from +{:?}",
        h1.1 - fault,
        h2.0 - fault
    );
    let h1_after_ms = (h1.1 - fault).as_secs_f64() * 1000.0;
    assert!(
        h1_after_ms <= l + 15.0,
        "h1 acknowledged writes {h1_after_ms:.1} ms after the cut, past its lease ({l:.1} ms)"
    );
    // What the main client lost: at most what h1 acknowledged to it after the cut.
    let final_value = counter(&c).unwrap();
    let o = ha_testbed::cluster::judge(&main, fault, heal, final_value, Duration::ZERO);
    let main_on_h1 = ack_windows(&[&main], before, heal)
        .get(&ids[0])
        .map_or(0, |w| w.2);
    println!(
        "main client: {} acknowledged writes lost; it had {main_on_h1} acknowledged by h1 after the cut",
        o.lost
    );
    // (plus the replication tail at the cut: a few writes in flight).
    assert!(
        o.lost <= main_on_h1 as i64 + 5,
        "lost {} > the {main_on_h1} writes h1 acknowledged within its lease",
        o.lost
    );
    healed(&mut c, &main);
}

/// What a fault may cost in acknowledged writes.
#[derive(Clone, Copy)]
enum Loss {
    /// Nothing: the old master's Redis lives and is caught up from.
    None,
    /// A crash: the writes the dead Redis acknowledged and had not yet
    /// streamed (asynchronous replication; a handful at most here).
    Crash,
    /// A partition: what the cut-off master acknowledged within its lease.
    Lease,
}

/// A fault on the master, its repair, and the checks every one needs: a
/// single writing master at any time (by the pinned writers), no more lost
/// than `loss` allows, one master after the heal.
fn master_fault(
    what: &str,
    n: usize,
    quorum: Quorum,
    loss: Loss,
    fault: impl FnOnce(&mut Cluster),
) {
    require_root();
    let mut c = Cluster::start_full(Kind::Ours { advert_ms: 10 }, n, quorum, 2, "haq", false)
        .expect("the cluster forms");
    let ids: Vec<String> = (1..=n).map(|i| c.run_id(i).unwrap_or_default()).collect();
    let w = writers(&c);
    std::thread::sleep(Duration::from_millis(800));
    let (at, at_wall) = (Instant::now(), wall_ms());
    fault(&mut c);
    let injected = at.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    let end = Instant::now();
    let took = (2..=n)
        .filter_map(|i| became_master_after(&c, i, at_wall))
        .min();
    let (main, to_h1, to_h2) = (w.main.stop(), w.to_h1.stop(), w.to_h2.stop());
    let runs = ack_runs(&[&main, &to_h1, &to_h2], &ids, at, end);
    println!(
        "{what} (injected in {:.1} ms): takeover after {took:?} ms; acknowledging: {}",
        injected.as_secs_f64() * 1e3,
        runs.iter()
            .map(|(h, a, b, n)| format!(
                "h{h} +{:.1}..+{:.1} ms ({n})",
                (*a - at).as_secs_f64() * 1e3,
                (*b - at).as_secs_f64() * 1e3
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    single_writer(what, &runs);
    if let Some(w) = c.witness_status() {
        println!(
            "{what}: the witness let the new master take over {} ms behind the last master's reported writes",
            w["quorum"]["votes"]["vi"]["last_takeover_behind_ms"]
        );
    }
    let final_value = counter(&c).expect("the counter reads through the VIP");
    let o = ha_testbed::cluster::judge(&main, at, end, final_value, Duration::ZERO);
    let on_old = ack_runs(&[&main], &ids, at, end)
        .iter()
        .filter(|r| r.0 == 1)
        .map(|r| r.3)
        .sum::<usize>() as i64;
    println!(
        "{what}: {} acknowledged writes lost; the old master acknowledged {on_old} to the main client after the fault",
        o.lost
    );
    let allowed = match loss {
        Loss::None => 0,
        Loss::Crash => 5,
        Loss::Lease => on_old + 5,
    };
    assert!(
        o.lost <= allowed,
        "{what}: {} acknowledged writes lost, more than {allowed}",
        o.lost
    );
    assert!(
        main.acked.iter().filter(|(t, _)| *t > at).count() > 100,
        "{what}: writes resumed"
    );
    healed(&mut c, &main);
}

#[test]
fn master_daemon_sigkilled_redis_alive_nothing_lost() {
    master_fault("daemon SIGKILLed", 2, Quorum::Witness, Loss::None, |c| {
        c.kill_node(1)
    });
}

#[test]
fn master_daemon_sigstopped_then_resumed_steps_down_nothing_lost() {
    master_fault(
        "daemon SIGSTOPped 1 s",
        2,
        Quorum::Witness,
        Loss::None,
        |c| {
            c.signal_node(1, libc::SIGSTOP);
            std::thread::sleep(Duration::from_secs(1));
            c.signal_node(1, libc::SIGCONT);
        },
    );
}

#[test]
fn master_host_lost_nothing_lost() {
    master_fault("host lost", 2, Quorum::Witness, Loss::Crash, |c| {
        c.inject(ha_testbed::cluster::Fault::HostLost).unwrap()
    });
}

#[test]
fn master_redis_killed_nothing_lost() {
    master_fault("Redis killed", 2, Quorum::Witness, Loss::Crash, |c| {
        c.inject(ha_testbed::cluster::Fault::RedisKilled).unwrap()
    });
}

#[test]
fn three_redis_nodes_without_a_witness_master_cut_off() {
    master_fault(
        "3 nodes, master cut off",
        3,
        Quorum::Majority,
        Loss::Lease,
        |c| {
            let others: Vec<usize> = vec![2, 3];
            c.lan.isolate(1, &others).unwrap();
        },
    );
}

#[test]
fn witness_restarted_nothing_changes() {
    let mut c = start(2, Quorum::Witness);
    let before = takeovers_of(&mut c, 2);
    let w = writer(&c);
    std::thread::sleep(Duration::from_millis(300));
    let fault = Instant::now();
    c.kill_witness();
    std::thread::sleep(Duration::from_millis(500));
    c.start_witness().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let r = w.stop();
    assert_eq!(takeovers_of(&mut c, 2), before, "h2 never became master");
    assert_eq!(c.status(1).unwrap()["state"], "Master");
    // The restarted witness kept its promises across the restart.
    let ws = c.witness_status().unwrap();
    println!("witness after restart: {}", ws["quorum"]["votes"]);
    no_write_lost("witness restarted", &c, &r, fault);
    assert!(
        r.longest_gap() < Duration::from_millis(100),
        "the master kept writing: {:?}",
        r.longest_gap()
    );
}

/// How many VRRP state changes node i has made since it started.
fn transitions(c: &Cluster, i: usize) -> usize {
    c.status(i)
        .and_then(|s| s["transitions_total"].as_u64())
        .unwrap_or(0) as usize
}

#[test]
fn forged_priority_255_adverts_from_a_non_voter_count_for_nothing() {
    let c = start(2, Quorum::Witness);
    let w = writer(&c);
    std::thread::sleep(Duration::from_millis(300));
    let before = (transitions(&c, 1), transitions(&c, 2));
    let fault = Instant::now();
    // The client host is no voter: 2 s of well-formed priority-255 adverts.
    let vip: std::net::Ipv4Addr = VIP.parse().unwrap();
    let from = c.client().addr4;
    let frame = ha_testbed::frames::advert_v3_frame(from, 51, 255, 1, &[vip], None);
    let end = Instant::now() + Duration::from_secs(2);
    let iface = c.client().iface.clone();
    let sent = c
        .client()
        .ns
        .enter(|| {
            let mut sent = 0;
            while Instant::now() < end {
                sent += ha_testbed::frames::send_raw(&iface, std::slice::from_ref(&frame)).unwrap();
                std::thread::sleep(Duration::from_millis(10));
            }
            sent as u64
        })
        .unwrap();
    let r = w.stop();
    assert_eq!(c.status(1).unwrap()["state"], "Master");
    assert!(c.holds_vip(1) && !c.holds_vip(2));
    assert_eq!(
        (transitions(&c, 1), transitions(&c, 2)),
        before,
        "nobody changed state"
    );
    let drops = c.daemon(1).map_or(0, |d| d.xdp_drops("not_voter"));
    println!("forged adverts: {sent} sent, {drops} dropped in XDP on h1");
    // Each send opens and closes a packet socket (the close waits for RCU,
    // tens of ms on a busy host): 20 to 200 frames in the 2 s.
    assert!(sent >= 20 && drops == sent, "{sent} sent, {drops} dropped");
    no_write_lost("forged adverts", &c, &r, fault);
    // Without the quorum a master drops the VIP for the whole flood (2 s);
    // here at most a TCP retransmit of this busy lab host shows.
    assert!(
        r.longest_gap() < Duration::from_millis(300),
        "writes went on: {:?}",
        r.longest_gap()
    );
}

/// `to` holds the lease and is master, `from` is backup: the move is done
/// (each daemon writes its status as it changes; give both a moment).
fn moved(c: &Cluster, to: usize, from: usize) -> Option<()> {
    let done = lease(c, to)["held"] == true
        && c.status(to)?["state"] == "Master"
        && c.status(from)?["state"] == "Backup";
    if done {
        std::thread::sleep(Duration::from_millis(300));
    }
    done.then_some(())
}

/// A planned switchover and then a hand-over back, with a witness: the lease
/// moves with the VIP, under a newer term, and the old master's Redis
/// follows the new one; nothing lost. (Whether the lease then stays put is
/// not asserted: on this VM's PREEMPT_NONE kernel a real-time thread stalls
/// for up to ~20 ms under load, and about 1 run in 4 sees one renewal miss
/// its lease and a safe step-down.)
#[test]
fn switchover_and_hand_over_move_the_lease_with_nothing_lost() {
    let mut c = start(2, Quorum::Witness);
    let w = writer(&c);
    std::thread::sleep(Duration::from_millis(300));
    let fault = Instant::now();
    let before = lease(&c, 1)["term"].as_u64().unwrap_or(0);
    c.inject(ha_testbed::cluster::Fault::Switchover).unwrap();
    assert!(
        wait_for(Duration::from_secs(2), || moved(&c, 2, 1)).is_some(),
        "the lease did not move to h2: h1 {}, h2 {}",
        lease(&c, 1),
        lease(&c, 2)
    );
    let term = lease(&c, 2)["term"].as_u64().unwrap_or(0);
    assert!(
        term > before,
        "h2 serves under term {term}, not newer than {before}"
    );
    c.wait_healthy(Some(2), Duration::from_secs(5))
        .expect("h1's Redis follows h2");
    // And back: a hand-over started on the new master.
    c.inject(ha_testbed::cluster::Fault::HandOver).unwrap();
    assert!(
        wait_for(Duration::from_secs(2), || moved(&c, 1, 2)).is_some(),
        "the lease did not move back to h1: h1 {}, h2 {}",
        lease(&c, 1),
        lease(&c, 2)
    );
    assert!(lease(&c, 1)["term"].as_u64().unwrap_or(0) > term);
    c.wait_healthy(Some(1), Duration::from_secs(5))
        .expect("h2's Redis follows h1");
    let r = w.stop();
    no_write_lost("switchover and hand-over", &c, &r, fault);
}
