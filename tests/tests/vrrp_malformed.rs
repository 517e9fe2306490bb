//! Malformed adverts sent into the LAN from another host are counted by reason
//! and ignored: each carries a higher priority than the master's, so a single
//! one accepted would demote it. A valid one at the end proves the path works.
//!
//! With XDP the program drops them before the socket (counted in `inspect`);
//! with `--no-ebpf` the daemon's socket path drops them (counted in status.json).
use std::{net::Ipv4Addr, time::Duration};

use ha_testbed::{Lan, TempDir, daemon::Daemon, frames::*, require_root, wait_for};

const VIP3: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
const VIP2: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 101);
const N: u64 = 5;

const CONF: &str = "[[instance]]\nname = \"v3\"\ninterface = \"eth0\"\nvrid = 51\nversion = 3\npriority = 100\n\
    advert_interval_ms = 100\nvips = [\"198.18.0.100/24\"]\n\n\
    [[instance]]\nname = \"v2\"\ninterface = \"eth0\"\nvrid = 52\nversion = 2\npriority = 100\n\
    advert_interval_ms = 1000\nauth_pass = \"right\"\nvips = [\"198.18.0.101/24\"]\n";

/// (reason in XDP, reason on the socket path, frame)
fn cases(src: Ipv4Addr) -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let v3 = |vrid: u8, prio: u8| vrrp_v3_v4(vrid, prio, 100, &[VIP3], src, VRRP_MCAST4);
    let frame = |ttl: u8, vrrp: &[u8]| {
        ethernet(
            MCAST4_MAC,
            SRC_MAC,
            0x0800,
            None,
            &ipv4(src, VRRP_MCAST4, 112, ttl, vrrp),
        )
    };
    let mut bad_sum = v3(51, 250);
    bad_sum[6] ^= 0xff;
    let mut version4 = v3(51, 250);
    version4[0] = 0x41;
    vec![
        ("checksum", "checksum", frame(255, &bad_sum)),
        ("ttl", "ttl", frame(254, &v3(51, 250))),
        ("version", "version", frame(255, &version4)),
        ("unknown_vrid", "unknown_vrid", frame(255, &v3(77, 250))),
        ("length", "truncated", frame(255, &v3(51, 250)[..6])),
        (
            "auth",
            "auth",
            frame(255, &vrrp_v2(52, 250, 1, &[VIP2], Some(b"wrong"))),
        ),
    ]
}

fn malformed(xdp: bool) {
    require_root();
    let lan = Lan::new("hat", 2).unwrap();
    let (h1, h2) = (lan.host(1), lan.host(2));
    let dir = TempDir::new("malformed").unwrap();
    let args: &[&str] = if xdp { &[] } else { &["--no-ebpf"] };
    let mut n1 = Daemon::start(h1, &dir, "n1", CONF, args).unwrap();
    n1.wait_state("v3", "Master", Duration::from_secs(10));
    n1.wait_state("v2", "Master", Duration::from_secs(10));
    let ebpf = n1.status().unwrap()["ebpf"].as_str().unwrap().to_owned();
    assert_eq!(ebpf.starts_with("XDP on eth0"), xdp, "eBPF mode: {ebpf}");

    let cases = cases(h2.addr4);
    let frames: Vec<Vec<u8>> = cases
        .iter()
        .flat_map(|(_, _, f)| std::iter::repeat_n(f.clone(), N as usize))
        .collect();
    let sent = h2.ns.enter(|| send_raw("eth0", &frames)).unwrap().unwrap();
    assert_eq!(sent, frames.len());

    let socket_count = |reason: &str| -> u64 {
        let s = n1.status().unwrap_or_default();
        let by_daemon = s["drops"][reason].as_u64().unwrap_or(0);
        let by_instance: u64 = ["v2", "v3"]
            .iter()
            .map(|i| s["instances"][i]["drops"][reason].as_u64().unwrap_or(0))
            .sum();
        by_daemon + by_instance
    };
    let counted = |(x, s, _): &(&str, &str, Vec<u8>)| {
        if xdp {
            n1.xdp_drops(x)
        } else {
            socket_count(s)
        }
    };
    let all = wait_for(Duration::from_secs(3), || {
        cases.iter().all(|c| counted(c) == N).then_some(())
    });
    let shown: Vec<(&str, u64)> = cases.iter().map(|c| (c.0, counted(c))).collect();
    assert!(all.is_some(), "drops by reason, want {N} each: {shown:?}");
    if xdp {
        // Dropped in the kernel: the socket path never saw them.
        for (_, s, _) in &cases {
            assert_eq!(socket_count(s), 0, "{s} reached the socket");
        }
    }
    // Nothing changed: both still master, VIPs in place, no transition since.
    for i in ["v3", "v2"] {
        let st = n1.instance(i).unwrap();
        assert_eq!(st["state"], "Master", "{i}");
        assert_eq!(
            st["transitions"].as_array().unwrap().len(),
            2,
            "{i}: only INIT->BACKUP->MASTER"
        );
        assert_eq!(
            st["adverts_received"], 0,
            "{i}: nothing reached the state machine"
        );
    }
    let addrs = h1.addresses();
    assert!(
        addrs.iter().any(|a| a.starts_with("198.18.0.100/"))
            && addrs.iter().any(|a| a.starts_with("198.18.0.101/"))
    );

    // Control: a valid advert with that priority does demote the master.
    let valid = vrrp_v3_v4(51, 250, 100, &[VIP3], h2.addr4, VRRP_MCAST4);
    let f = ethernet(
        MCAST4_MAC,
        SRC_MAC,
        0x0800,
        None,
        &ipv4(h2.addr4, VRRP_MCAST4, 112, 255, &valid),
    );
    h2.ns.enter(|| send_raw("eth0", &[f])).unwrap().unwrap();
    n1.wait_state("v3", "Backup", Duration::from_secs(2));
    assert_eq!(n1.state("v2").as_deref(), Some("Master"));
}

#[test]
fn malformed_adverts_are_dropped_in_xdp_and_counted_by_reason() {
    malformed(true);
}

#[test]
fn without_ebpf_the_socket_path_drops_and_counts_them() {
    malformed(false);
}
