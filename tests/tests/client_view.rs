//! What clients see of a failover when they have no timers of their own
//! (library defaults: no socket timeout), asserted on the mechanisms: a
//! request in flight when the master host vanishes is reset by the new
//! master's tickle long before TCP's retransmit; a reconnect sent to the old
//! host after a graceful move is carried to the new master; with the
//! master's daemon SIGKILLed only one host answers ARP for the VIP.
use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    os::fd::AsRawFd,
    time::{Duration, Instant},
};

use ha_testbed::{
    Switch,
    cluster::{Cluster, Fault, Kind, Quorum, VIP},
    frames, require_root, wait_for,
};

fn start(quorum: Quorum, extra_clients: usize) -> Cluster {
    start_on(Switch::Nic, quorum, extra_clients)
}

/// Two Redis hosts on `switch`, and `extra_clients` client hosts more.
fn start_on(switch: Switch, quorum: Quorum, extra_clients: usize) -> Cluster {
    require_root();
    Cluster::start_on(
        switch,
        Kind::Ours { advert_ms: 10 },
        2,
        quorum,
        extra_clients,
        "hac",
        false,
    )
    .expect("the cluster forms")
}

fn vip() -> SocketAddr {
    format!("{VIP}:6379").parse().unwrap()
}

fn mac(s: &str) -> [u8; 6] {
    let mut m = [0u8; 6];
    for (b, p) in m.iter_mut().zip(s.split(':')) {
        *b = u8::from_str_radix(p, 16).unwrap();
    }
    m
}

/// Node i's tickle status, once it shows the last takeover's (the status
/// file is written a moment after the round).
fn tickle(c: &Cluster, i: usize) -> serde_json::Value {
    let get = || c.status(i).map(|s| s["tickle"].clone()).unwrap_or_default();
    wait_for(Duration::from_secs(1), || {
        let t = get();
        (!t["last"].is_null()).then_some(t)
    })
    .unwrap_or_else(get)
}

/// Waits until h2 knows at least `n` of h1's client connections.
fn known_by_h2(c: &Cluster, n: u64) {
    let ok = wait_for(Duration::from_secs(10), || {
        (tickle(c, 2)["known"].as_u64().unwrap_or(0) >= n).then_some(())
    });
    assert!(
        ok.is_some(),
        "h2 never learnt h1's {n} client connection(s): {}",
        tickle(c, 2)
    );
}

/// A client's connection to the VIP, checked with a PING; library
/// defaults: no read or write timeout at all.
fn connected(c: &Cluster) -> TcpStream {
    let mut s = c
        .client()
        .ns
        .enter(|| TcpStream::connect_timeout(&vip(), Duration::from_secs(2)))
        .unwrap()
        .expect("a connection to the VIP");
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(None).unwrap();
    let mut buf = [0u8; 64];
    s.write_all(b"*1\r\n$4\r\nPING\r\n").unwrap();
    assert!(s.read(&mut buf).unwrap() > 0, "no answer to PING");
    s
}

/// A request in flight when the master host vanishes, on a connection
/// with no timeout: the client gets a reset and reconnects, where without
/// tickles it would wait for its TCP retransmit (200 ms at least) to reach
/// the new master.
fn in_flight(quorum: Quorum) {
    let c = start(quorum, 0);
    let mut s = connected(&c);
    let mut buf = [0u8; 64];
    known_by_h2(&c, 1);
    let mut c = c;
    let t0 = Instant::now();
    c.inject(Fault::HostLost).unwrap();
    // The link is down: this request goes nowhere.
    s.write_all(b"*2\r\n$4\r\nINCR\r\n$7\r\ncounter\r\n")
        .unwrap();
    let r = s.read(&mut buf);
    let reset = t0.elapsed();
    assert!(
        matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "the client expected a reset, got {r:?}"
    );
    // It reconnects and writes at once.
    let mut s2 = c
        .client()
        .ns
        .enter(|| TcpStream::connect_timeout(&vip(), Duration::from_secs(2)))
        .unwrap()
        .unwrap();
    s2.write_all(b"*2\r\n$4\r\nINCR\r\n$7\r\ncounter\r\n")
        .unwrap();
    let n = s2.read(&mut buf).unwrap();
    let served = t0.elapsed();
    let t = tickle(&c, 2);
    println!(
        "{quorum:?}: reset {reset:?} after the host vanished, written again at {served:?} ({}); h2's tickles: {}",
        String::from_utf8_lossy(&buf[..n]).trim(),
        t["last"]
    );
    assert!(
        reset < Duration::from_millis(150),
        "reset after {reset:?}: TCP's own retransmit would have done as well"
    );
    assert!(buf[0] == b':', "the write was taken");
}

#[test]
fn a_request_in_flight_when_the_master_host_vanishes_is_reset_by_the_tickle() {
    in_flight(Quorum::Off);
}

#[test]
fn with_a_quorum_too_the_request_in_flight_is_reset_by_the_tickle() {
    in_flight(Quorum::Witness);
}

/// A SIGKILLed master daemon leaves its VIP and its Redis's clients behind;
/// the next run removes the VIP, after which nothing from this host reaches
/// them. A client blocked on a request (no timeout) that nothing else
/// freed would wait for ever: here the new master's tickles are lost and
/// the Redis hosts cannot reach each other's Redis (the new master cannot
/// close the old one's clients, the old one cannot follow it, so the
/// restarted node never takes the VIP back). The new run resets them first.
#[test]
fn a_restarted_daemon_resets_the_client_connections_its_killed_predecessor_left() {
    restarted_daemon_resets(Switch::Nic);
}

#[test]
fn on_a_plain_bridge_too_a_restarted_daemon_resets_what_it_left() {
    restarted_daemon_resets(Switch::Veth);
}

/// Sends a request that blocks for ever (BLPOP on a list nobody fills).
fn block(s: &mut TcpStream) {
    s.write_all(b"*3\r\n$5\r\nBLPOP\r\n$7\r\nha:none\r\n$1\r\n0\r\n")
        .unwrap();
}

/// Reads what reaches the client within `within`, as the text of what it
/// read (empty on an error).
fn read_within(s: &mut TcpStream, within: Duration) -> (std::io::Result<usize>, String) {
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 64];
    let r = s.read(&mut buf);
    let text = String::from_utf8_lossy(&buf[..*r.as_ref().unwrap_or(&0)]).into_owned();
    (r, text)
}

fn is(r: &std::io::Result<usize>, kind: std::io::ErrorKind) -> bool {
    matches!(r, Err(e) if e.kind() == kind)
}

fn restarted_daemon_resets(switch: Switch) {
    let mut c = start_on(switch, Quorum::Off, 0);
    let mut s = connected(&c);
    known_by_h2(&c, 1);
    let (h1, h2) = (c.host(1).addr4, c.host(2).addr4);
    c.lan.drop_matching("tcp window 1234").unwrap();
    c.lan
        .drop_matching(&format!(
            "ip saddr {{ {h1}, {h2} }} ip daddr {{ {h1}, {h2} }} tcp dport 6379"
        ))
        .unwrap();
    // Blocked on h1's Redis, which nothing will answer.
    block(&mut s);
    c.inject(Fault::DaemonKilled).unwrap();
    let took = wait_for(Duration::from_secs(5), || {
        (c.status(2)?["state"] == "Master" && c.role(2).as_deref() == Some("master")).then_some(())
    });
    assert!(took.is_some(), "h2 never took over: {:?}", c.status(2));
    let (r, _) = read_within(&mut s, Duration::from_secs(1));
    assert!(
        is(&r, std::io::ErrorKind::WouldBlock),
        "the client should still wait here, got {r:?}; dropped (tickles, Redis to Redis): {:?}",
        c.lan.dropped()
    );
    let t0 = Instant::now();
    c.start_node(1).unwrap();
    let (r, text) = read_within(&mut s, Duration::from_secs(5));
    println!(
        "restarted daemon: the client read {r:?} {:?} after the start; dropped (tickles, Redis to Redis): {:?}",
        t0.elapsed(),
        c.lan.dropped()
    );
    assert!(
        is(&r, std::io::ErrorKind::ConnectionReset),
        "the client expected a reset from the restarted daemon, got {r:?} ({text})"
    );
}

/// With `[quorum]` a master that gives the VIP up resets its clients (its
/// fence drops what its Redis would answer). A reset goes out once: when it
/// is lost, and the new master's tickles too, a client blocked on a request
/// with no timeout would wait for ever. The old master's tickles follow its
/// resets (600 ms, 1.5 s later): the client answers one, and the new
/// master, which has no socket for it, resets it.
#[test]
fn a_lost_reset_is_followed_by_tickles() {
    lost_reset(Switch::Nic);
}

#[test]
fn on_a_plain_bridge_too_a_lost_reset_is_followed_by_tickles() {
    lost_reset(Switch::Veth);
}

fn lost_reset(switch: Switch) {
    let mut c = start_on(switch, Quorum::Witness, 0);
    let mut s = connected(&c);
    known_by_h2(&c, 1);
    let (m1, m2) = (c.host(1).mac.clone(), c.host(2).mac.clone());
    c.lan
        .drop_matching(&format!(
            "ether saddr {m1} ip saddr {VIP} tcp sport 6379 tcp flags & rst == rst"
        ))
        .unwrap();
    c.lan
        .drop_matching(&format!("ether saddr {m2} tcp window 1234"))
        .unwrap();
    // Blocked on h1's Redis; what it answers at its demotion is fenced.
    block(&mut s);
    // It waits (the request reached h1's Redis and was acknowledged).
    let (r, _) = read_within(&mut s, Duration::from_millis(300));
    assert!(
        is(&r, std::io::ErrorKind::WouldBlock),
        "the client should wait here, got {r:?}"
    );
    let t0 = Instant::now();
    c.inject(Fault::Switchover).unwrap();
    let (r, text) = read_within(&mut s, Duration::from_secs(4));
    let dropped = c.lan.dropped();
    println!(
        "switchover: the client read {r:?} {:?} after it began; dropped (h1's resets, h2's tickles): {dropped:?}",
        t0.elapsed()
    );
    assert!(
        dropped.first().is_some_and(|n| *n > 0),
        "h1's reset was not even sent: {dropped:?}"
    );
    assert!(
        is(&r, std::io::ErrorKind::ConnectionReset),
        "the client expected a reset, got {r:?} ({text})"
    );
}

#[test]
fn a_reconnect_to_the_old_host_after_a_graceful_move_is_carried_to_the_new_master() {
    reconnect_to_the_old_host(Switch::Nic);
}

#[test]
fn on_a_plain_bridge_too_a_reconnect_to_the_old_host_is_carried() {
    reconnect_to_the_old_host(Switch::Veth);
}

fn reconnect_to_the_old_host(switch: Switch) {
    let mut c = start_on(switch, Quorum::Off, 1);
    let old = c.host(1).mac.clone();
    // This client's ARP entry for the VIP stays on h1, as a stale cache does.
    c.client_n(1).pin_neighbour(VIP, &old).unwrap();
    let h2_id = c.run_id(2).unwrap();
    c.inject(Fault::RedisKilled).unwrap();
    wait_for(Duration::from_secs(5), || {
        (c.holds_vip(2) && !c.holds_vip(1)).then_some(())
    })
    .expect("h2 took over");
    let t0 = Instant::now();
    // A new connection, sent to h1's MAC.
    let id = c
        .client_n(1)
        .ns
        .enter(|| {
            let mut conn = ha_testbed::client::connect(vip())?;
            let id = ha_testbed::client::run_id(&mut conn)?;
            Ok::<_, std::io::Error>((id, t0.elapsed()))
        })
        .unwrap();
    let (id, took) = id.expect("the connect sent to the old host is served");
    let counters = c.daemon(1).unwrap().inspect().unwrap()["counters"].clone();
    println!("{switch:?}: served by h2 after {took:?}; h1's kernel: {counters}");
    assert_eq!(id, h2_id, "served by the new master");
    assert!(took < Duration::from_millis(100), "at once: {took:?}");
    let redirected = counters
        .as_array()
        .and_then(|a| a.iter().find(|x| x[0] == "redirected"))
        .and_then(|x| x[1].as_u64())
        .unwrap_or(0);
    assert!(redirected >= 1, "h1's XDP program carried it: {counters}");
}

#[test]
fn with_the_masters_daemon_sigkilled_only_one_host_answers_arp_for_the_vip() {
    let mut c = start(Quorum::Off, 0);
    let (client, cmac) = (c.client().addr4, mac(&c.client().mac));
    let (h1, h2) = (mac(&c.host(1).mac), mac(&c.host(2).mac));
    let vip: std::net::Ipv4Addr = VIP.parse().unwrap();
    let ask = |c: &Cluster| {
        let iface = c.client().iface.clone();
        c.client()
            .ns
            .enter(move || frames::who_has(&iface, cmac, client, vip, Duration::from_millis(20)))
            .unwrap()
            .unwrap()
    };
    assert_eq!(ask(&c), vec![h1]);
    // Asked every 5 ms from the client while h1's daemon dies.
    let iface = c.client().iface.clone();
    let probe = c
        .client()
        .ns
        .thread(move || {
            frames::who_has_over_time(
                &iface,
                cmac,
                client,
                vip,
                Duration::from_millis(5),
                Duration::from_millis(1500),
            )
        })
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let killed_at = Duration::from_millis(200);
    let pin = c.pin_dir(1).unwrap();
    c.kill_node(1);
    let answers = probe.join().unwrap().unwrap();
    let ms = |d: Duration| d.as_secs_f64() * 1e3 - killed_at.as_secs_f64() * 1e3;
    let last_h1 = answers
        .iter()
        .filter(|a| a.1 == h1)
        .map(|a| ms(a.0))
        .fold(f64::MIN, f64::max);
    let first_h2 = answers
        .iter()
        .filter(|a| a.1 == h2)
        .map(|a| ms(a.0))
        .fold(f64::MAX, f64::min);
    println!(
        "after h1's daemon was killed: h1 last answered ARP for the VIP at {last_h1:+.1} ms, h2 first at {first_h2:+.1} ms"
    );
    let kernel = netns_inspect(&pin);
    println!("h1's kernel side: {kernel}");
    assert!(
        answers.iter().all(|a| a.1 == h1 || a.1 == h2),
        "only h1 and h2 ever answer"
    );
    assert!(
        last_h1 < 50.0,
        "h1 answered ARP for the VIP {last_h1:.1} ms after its daemon died"
    );
    assert!(first_h2 < 100.0, "h2 took the VIP: {first_h2:.1} ms");
    assert!(
        answers
            .iter()
            .filter(|a| ms(a.0) > 100.0)
            .all(|a| a.1 == h2),
        "after 100 ms only h2 answers"
    );
    assert!(
        c.holds_vip(1),
        "h1's address is still configured: only XDP keeps it quiet"
    );
    let suppressed = kernel["counters"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x[0] == "arp_suppressed"))
        .and_then(|x| x[1].as_u64())
        .unwrap_or(0);
    assert!(suppressed > 0, "h1's XDP program answered for it: {kernel}");
}

/// `inspect --json` of node i's pinned maps (its daemon may be dead).
fn netns_inspect(pin: &std::path::Path) -> serde_json::Value {
    let out = std::process::Command::new(ha_testbed::daemon::binary())
        .args(["inspect", "--json", "--pin-dir"])
        .arg(pin)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    serde_json::json!({"counters": v["counters"], "vips": v["vips"], "heartbeat_age_ms": v["heartbeat_age_ms"]})
}

/// The namespace's SNMP counters (`nstat -az`).
fn nstat(ns: &ha_testbed::netns::Netns) -> std::collections::BTreeMap<String, i64> {
    ns.exec("nstat", &["-az"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some((w.next()?.to_owned(), w.next()?.parse().ok()?))
        })
        .collect()
}

/// `n` idle client connections, each with no timeout: after the master host
/// vanishes every one is reset by the tickles, at once.
fn reset_all(n: usize) -> (Duration, Duration, Duration, serde_json::Value) {
    let c = start(Quorum::Off, 0);
    let conns: Vec<TcpStream> = c
        .client()
        .ns
        .enter(|| {
            // A connect storm on the lab's 2 cores is refused now and
            // then (10,000 in a few s); try each one again, and say so.
            let mut refused = 0;
            let r = (0..n)
                .map(|_| {
                    let mut last = None;
                    for _ in 0..5 {
                        match TcpStream::connect_timeout(&vip(), Duration::from_secs(2)) {
                            Ok(s) => return Ok(s),
                            Err(e) => {
                                refused += 1;
                                last = Some(e);
                                std::thread::sleep(Duration::from_millis(50));
                            }
                        }
                    }
                    Err(last.unwrap())
                })
                .collect::<Result<Vec<_>, _>>();
            if refused > 0 {
                println!("{n} connections: {refused} connect attempts failed and were retried");
            }
            r
        })
        .unwrap()
        .expect("connections to the VIP");
    known_by_h2(&c, n as u64);
    let snap = |c: &Cluster| [nstat(&c.client().ns), nstat(&c.host(2).ns)];
    let before = snap(&c);
    let mut c = c;
    let t0 = Instant::now();
    c.inject(Fault::HostLost).unwrap();
    let mut reset_at: Vec<Option<Duration>> = vec![None; n];
    // One poll set; a reset socket's entry is switched off (fd -1).
    let mut fds: Vec<libc::pollfd> = conns
        .iter()
        .map(|s| libc::pollfd {
            fd: s.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let mut left = n;
    // The last round goes at 1.5 s; at 10,000 this lab's two cores may take
    // a second to carry it.
    while left > 0 && t0.elapsed() < Duration::from_secs(4) {
        // SAFETY: a valid array of pollfds.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 10) };
        let now = t0.elapsed();
        for (i, f) in fds.iter_mut().enumerate() {
            if f.fd >= 0 && f.revents != 0 {
                reset_at[i] = Some(now);
                f.fd = -1;
                left -= 1;
            }
            f.revents = 0;
        }
    }
    let mut times: Vec<Duration> = reset_at.iter().filter_map(|t| *t).collect();
    times.sort();
    let by = |ms: u64| {
        times
            .iter()
            .filter(|t| **t < Duration::from_millis(ms))
            .count()
    };
    println!(
        "{n}: reset within 100 ms {}, 200 ms {}, 600 ms {}, 1.5 s {}, 4 s {}; h2 tickled {}",
        by(100),
        by(200),
        by(600),
        by(1500),
        times.len(),
        tickle(&c, 2)["last"]
    );
    assert_eq!(
        times.len(),
        n,
        "every connection was reset: {left} were not"
    );
    let t = tickle(&c, 2)["last"].clone();
    // Where the lab lost frames, if it did (HA_DEBUG=1).
    if std::env::var_os("HA_DEBUG").is_some() {
        let after = snap(&c);
        for (k, who) in ["client", "h2"].iter().enumerate() {
            let d: Vec<String> = after[k]
                .iter()
                .filter(|(n, _)| {
                    n.starts_with("Tcp") || n.starts_with("IpIn") || n.starts_with("IpOut")
                })
                .filter_map(|(n, v)| {
                    let dv = v - before[k].get(n).copied().unwrap_or(0);
                    (dv != 0).then(|| format!("{n}={dv}"))
                })
                .collect();
            println!("{who}: {}", d.join(" "));
        }
    }
    (times[n / 2], times[(n * 99) / 100], times[n - 1], t)
}

#[test]
fn one_thousand_and_ten_thousand_idle_connections_are_all_reset_at_once() {
    // Room for the connections in this process and in Redis.
    let lim = libc::rlimit {
        rlim_cur: 65536,
        rlim_max: 65536,
    };
    // SAFETY: plain setrlimit.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    let ns: Vec<usize> = std::env::var("HA_TICKLE_N")
        .ok()
        .map(|v| v.split(',').filter_map(|x| x.parse().ok()).collect())
        .unwrap_or(vec![1, 1000, 10_000]);
    for n in ns {
        let (p50, p99, max, t) = reset_all(n);
        println!(
            "{n} connections: reset p50 {p50:?}, p99 {p99:?}, max {max:?} after the host vanished; tickles: {t}"
        );
        // Up to 1,000 this lab judges it; at 10,000 its two cores carry the
        // whole exchange of every host (veth delivers in the sender's CPU
        // time), and every connection must still be reset, by the repeats.
        if n <= 1000 {
            assert!(
                p99 < Duration::from_millis(200),
                "{n}: p99 {p99:?} (TCP alone never resets an idle connection)"
            );
        }
    }
}

/// Without a quorum a partition makes both hosts masters, and the backup's
/// announcements draw the client to it. At the heal it yields to the master
/// that never stopped being one, and must point the client back: the
/// redirect carries it meanwhile, but keeps its neighbour entry confirmed,
/// so without the announcement it black-holed when the window closed (a
/// client with no timeout then waited ~1 min for its entry to go stale).
#[test]
fn after_a_partition_heals_the_client_is_pointed_back_at_the_master() {
    let c = start(Quorum::Off, 0);
    let w = ha_testbed::client::Writer::start_profile(
        &c.client().ns,
        vip(),
        "counter",
        ha_testbed::client::Profile::Defaults,
        ha_testbed::cluster::PACE,
    );
    std::thread::sleep(Duration::from_millis(500));
    c.lan.cut(1, 2).unwrap();
    let took = wait_for(Duration::from_secs(3), || c.holds_vip(2).then_some(()));
    assert!(took.is_some(), "h2 took over in the partition");
    std::thread::sleep(Duration::from_secs(2));
    c.lan.heal().unwrap();
    let healed = Instant::now();
    let gone = wait_for(Duration::from_secs(3), || (!c.holds_vip(2)).then_some(()));
    assert!(gone.is_some(), "h2 yielded to h1");
    // Past the redirect window (3 s).
    std::thread::sleep(Duration::from_secs(5));
    let h1 = c.host(1).mac.clone();
    let neigh = c
        .client()
        .ns
        .exec("ip", &["neigh", "show", VIP])
        .unwrap_or_default();
    let r = w.stop();
    let after: Vec<Instant> = r
        .acked
        .iter()
        .map(|a| a.0)
        .filter(|t| *t > healed)
        .collect();
    let longest = after
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    println!(
        "after the heal: {} writes, longest gap {longest:?}; the client's entry: {}",
        after.len(),
        neigh.trim()
    );
    assert!(
        neigh.contains(&h1),
        "the client sends to h1 ({h1}): {neigh}"
    );
    assert!(
        after
            .last()
            .is_some_and(|t| t.elapsed() < Duration::from_millis(500)),
        "the client was still writing at the end"
    );
    assert!(longest < Duration::from_secs(1), "{longest:?}");
}

/// The master's Redis dies while a client with no timeout writes through
/// the VIP and reconnects at once: its SYNs hit the old host between its
/// giving the VIP up and the new master's announcement (each round, many
/// times), and each gets a reset or is carried to the new master. It writes
/// again within 50 ms, on either kind of switch: with a veth into a plain
/// bridge (a container or VM host) what XDP sends back out must reach the
/// wire too.
fn no_timeout_client_redis_killed(switch: Switch) {
    let rounds: usize = std::env::var("HA_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    for round in 0..rounds {
        let mut c = start_on(switch, Quorum::Off, 0);
        let w = ha_testbed::client::Writer::start_profile(
            &c.client().ns,
            vip(),
            "counter",
            ha_testbed::client::Profile::Defaults,
            ha_testbed::cluster::PACE,
        );
        let pcap = std::env::var_os("HA_PCAP").map(|_| {
            let mut cmd = c.client().ns.command("tcpdump");
            cmd.args([
                "-i",
                "eth0",
                "-w",
                "/tmp/redis-killed.pcap",
                "-U",
                "tcp port 6379 or arp",
            ])
            .stderr(std::process::Stdio::null());
            let p = cmd.spawn().unwrap();
            std::thread::sleep(Duration::from_millis(300));
            p
        });
        std::thread::sleep(Duration::from_millis(500));
        let fault = Instant::now();
        c.inject(Fault::RedisKilled).unwrap();
        std::thread::sleep(Duration::from_secs(2));
        let seen = c.diagnose();
        let r = w.stop();
        if let Some(mut p) = pcap {
            // SAFETY: plain kill(2) on our child.
            unsafe { libc::kill(p.id() as i32, libc::SIGINT) };
            let _ = p.wait();
        }
        // The longest time without an acknowledged write from the fault on.
        let mut prev = fault;
        let mut gap = Duration::ZERO;
        for (t, _) in r.acked.iter().filter(|a| a.0 > fault) {
            gap = gap.max(*t - prev);
            prev = *t;
        }
        let writes = r.acked.iter().filter(|a| a.0 > fault).count();
        println!(
            "{switch:?} round {round}: longest gap from the fault {gap:?} ({writes} writes after it); errors: {:?}",
            r.errors_in_longest_gap()
        );
        assert!(
            !r.blocked_at_stop && writes > 100 && gap <= Duration::from_millis(50),
            "{switch:?}: the client went {gap:?} without a write\n{:?}\n{seen}",
            r.error_log
                .iter()
                .rev()
                .take(4)
                .map(|e| &e.1)
                .collect::<Vec<_>>()
        );
    }
}

#[test]
fn a_client_with_no_timeout_writes_again_at_once_after_the_masters_redis_dies() {
    no_timeout_client_redis_killed(Switch::Nic);
}

#[test]
fn the_same_on_a_plain_bridge_as_on_a_container_host() {
    no_timeout_client_redis_killed(Switch::Veth);
}
