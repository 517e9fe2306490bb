//! Two ha-daemon nodes on a bridge with a client host: the higher priority
//! holds the VIP; when its host is lost the other takes over within
//! Master_Down_Interval (+ 50 ms of slack), and announces it so the client's
//! neighbour table points at the new holder at once.
use std::time::{Duration, Instant};

use ha_testbed::{Lan, TempDir, daemon::Daemon, require_root, wait_for};

fn instance(version: u8, interval_ms: u32, priority: u8, vip: &str) -> String {
    format!(
        "[[instance]]\nname = \"vi\"\ninterface = \"eth0\"\nvrid = 51\nversion = {version}\npriority = {priority}\n\
         advert_interval_ms = {interval_ms}\nvips = [\"{vip}\"]\ngarp_repeat = 3\ngarp_interval_ms = 20\n"
    )
}

/// Master_Down_Interval of a backup at `priority` (RFC 5798: 3 × interval + skew).
fn mdi(version: u8, interval_ms: u32, priority: u8) -> Duration {
    let skew_ms = match version {
        3 => f64::from(256 - u32::from(priority)) * f64::from(interval_ms) / 256.0,
        _ => f64::from(256 - u32::from(priority)) * 1000.0 / 256.0,
    };
    Duration::from_secs_f64((3.0 * f64::from(interval_ms) + skew_ms) / 1000.0)
}

fn failover(version: u8, interval_ms: u32, vip: &str) {
    require_root();
    let lan = Lan::new("hat", 3).unwrap();
    let (h1, h2, h3) = (lan.host(1), lan.host(2), lan.host(3));
    let dir = TempDir::new("failover").unwrap();
    let vip_addr = vip.split('/').next().unwrap();
    let mut n1 = Daemon::start(
        h1,
        &dir,
        "n1",
        &instance(version, interval_ms, 150, vip),
        &[],
    )
    .unwrap();
    let mut n2 = Daemon::start(
        h2,
        &dir,
        "n2",
        &instance(version, interval_ms, 100, vip),
        &[],
    )
    .unwrap();
    let settle = Duration::from_secs(10);
    n1.wait_state("vi", "Master", settle);
    n2.wait_state("vi", "Backup", settle);
    assert!(
        h1.addresses().iter().any(|a| a.starts_with(vip_addr)),
        "VIP on the master"
    );
    // A backup that was master for a moment (its peer started later) keeps
    // the VIP up to 50 ms after it yields (LINGER_MAX: its sockets finish);
    // its status says Backup at once.
    assert!(
        wait_for(Duration::from_secs(1), || {
            (!h2.addresses().iter().any(|a| a.starts_with(vip_addr))).then_some(())
        })
        .is_some(),
        "VIP not on the backup"
    );

    // The client talks to the VIP: its neighbour entry points at h1.
    h3.ns
        .exec("ping", &["-c", "1", "-W", "2", vip_addr])
        .expect("client reaches the VIP");
    assert_eq!(h3.neighbour_mac(vip_addr).as_deref(), Some(h1.mac.as_str()));

    // Host loss: daemon killed, interface down (its address gone from the LAN).
    let killed = Instant::now();
    n1.proc.signal(libc::SIGKILL);
    h1.ns.ip(&["link", "set", "eth0", "down"]).unwrap();
    let took = wait_for(Duration::from_secs(10), || {
        h2.addresses()
            .iter()
            .any(|a| a.starts_with(vip_addr))
            .then(|| killed.elapsed())
    })
    .unwrap_or_else(|| panic!("backup never took the VIP:\n{}", n2.proc.log()));
    let bound = mdi(version, interval_ms, 100) + Duration::from_millis(50);
    println!(
        "VRRPv{version} {interval_ms} ms {vip}: VIP on the backup {took:?} after the kill (bound {bound:?})"
    );
    // `took` includes the test's polling (an `ip` run per poll); the daemon's own
    // transition is checked against the bound.
    n2.wait_state("vi", "Master", Duration::from_secs(1));
    let tr = n2.last_transition("vi");
    assert_eq!(tr["reason"], "MasterDown");
    let wall_kill = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        - killed.elapsed().as_millis();
    let daemon_took = Duration::from_millis(
        (tr["at_ms"].as_u64().unwrap() as u128).saturating_sub(wall_kill) as u64,
    );
    println!("  daemon became master {daemon_took:?} after the kill");
    assert!(
        daemon_took <= bound,
        "takeover took {daemon_took:?}, bound {bound:?}"
    );

    // The announcement moved the client's neighbour entry to h2 without the
    // client asking.
    let moved = wait_for(Duration::from_millis(500), || {
        (h3.neighbour_mac(vip_addr).as_deref() == Some(h2.mac.as_str())).then_some(())
    });
    assert!(
        moved.is_some(),
        "client's neighbour entry for {vip_addr} is {:?}, want h2 {}",
        h3.neighbour_mac(vip_addr),
        h2.mac
    );
    h3.ns
        .exec("ping", &["-c", "1", "-W", "2", vip_addr])
        .expect("client reaches the VIP on h2");
    drop(n1);
}

#[test]
fn v3_10ms_ipv4_failover_moves_vip_and_neighbours() {
    failover(3, 10, "198.18.0.100/24");
}

#[test]
fn v3_10ms_ipv6_failover_moves_vip_and_neighbours() {
    failover(3, 10, "fd18::100/64");
}

#[test]
fn v2_1s_ipv4_failover_moves_vip_and_neighbours() {
    failover(2, 1000, "198.18.0.100/24");
}

/// SIGTERM: the master sends priority 0, removes its VIP and exits 0; the
/// backup takes over after its skew time instead of Master_Down_Interval.
#[test]
fn sigterm_resigns_with_priority_zero_and_exits_cleanly() {
    require_root();
    let lan = Lan::new("hat", 2).unwrap();
    let (h1, h2) = (lan.host(1), lan.host(2));
    let dir = TempDir::new("sigterm").unwrap();
    // 1 s adverts: Master_Down_Interval 3.6 s, skew 0.6 s.
    let mut n1 = Daemon::start(
        h1,
        &dir,
        "n1",
        &instance(3, 1000, 150, "198.18.0.100/24"),
        &[],
    )
    .unwrap();
    let mut n2 = Daemon::start(
        h2,
        &dir,
        "n2",
        &instance(3, 1000, 100, "198.18.0.100/24"),
        &[],
    )
    .unwrap();
    n1.wait_state("vi", "Master", Duration::from_secs(10));
    n2.wait_state("vi", "Backup", Duration::from_secs(10));
    let t = Instant::now();
    n1.proc.signal(libc::SIGTERM);
    assert_eq!(n1.proc.wait(), Some(0), "exit status 0 after SIGTERM");
    assert!(
        !h1.addresses()
            .iter()
            .any(|a| a.starts_with("198.18.0.100/")),
        "VIP removed on exit"
    );
    n2.wait_state("vi", "Master", Duration::from_secs(3));
    let took = t.elapsed();
    let tr = n2.last_transition("vi");
    assert_eq!(tr["reason"], "MasterResigned");
    println!("takeover after SIGTERM: {took:?} (Master_Down_Interval would be 3.6 s)");
    assert!(took < mdi(3, 1000, 100), "took {took:?}");
}

/// unicast_peers: adverts go to each peer's address instead of 224.0.0.18,
/// and failover works the same.
#[test]
fn unicast_peers_advertise_point_to_point_and_fail_over() {
    require_root();
    let lan = Lan::new("hat", 2).unwrap();
    let (h1, h2) = (lan.host(1), lan.host(2));
    let dir = TempDir::new("unicast").unwrap();
    let conf = |prio: u8, peer: std::net::Ipv4Addr| {
        format!(
            "{}unicast_peers = [\"{peer}\"]\n",
            instance(3, 50, prio, "198.18.0.100/24")
        )
    };
    let mut n1 = Daemon::start(h1, &dir, "n1", &conf(150, h2.addr4), &[]).unwrap();
    let mut n2 = Daemon::start(h2, &dir, "n2", &conf(100, h1.addr4), &[]).unwrap();
    n1.wait_state("vi", "Master", Duration::from_secs(10));
    n2.wait_state("vi", "Backup", Duration::from_secs(10));
    let seen = h2
        .ns
        .exec(
            "timeout",
            &[
                "10",
                "tshark",
                "-i",
                "eth0",
                "-n",
                "-c",
                "3",
                "-f",
                "ip proto 112",
                "-T",
                "fields",
                "-e",
                "ip.src",
                "-e",
                "ip.dst",
                "-e",
                "vrrp.checksum.status",
            ],
        )
        .unwrap();
    for line in seen.lines() {
        assert_eq!(
            line,
            format!("{}\t{}\t1", h1.addr4, h2.addr4),
            "unicast advert with good checksum"
        );
    }
    assert_eq!(n2.instance("vi").unwrap()["master"], h1.addr4.to_string());
    n1.proc.signal(libc::SIGKILL);
    h1.ns.ip(&["link", "set", "eth0", "down"]).unwrap();
    n2.wait_state("vi", "Master", Duration::from_secs(2));
}
