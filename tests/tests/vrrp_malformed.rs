//! Malformed adverts sent into the LAN from another host are counted by reason
//! and ignored: each carries a higher priority than the master's, so a single
//! one accepted would demote it. A valid one at the end proves the path works.
use std::{net::Ipv4Addr, time::Duration};

use ha_testbed::{Lan, TempDir, daemon::Daemon, frames::*, require_root, wait_for};

const VIP3: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
const VIP2: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 101);
const N: usize = 5;

#[test]
fn malformed_adverts_are_counted_by_reason_and_change_nothing() {
    require_root();
    let lan = Lan::new("hat", 2).unwrap();
    let (h1, h2) = (lan.host(1), lan.host(2));
    let dir = TempDir::new("malformed").unwrap();
    let conf = "[[instance]]\nname = \"v3\"\ninterface = \"eth0\"\nvrid = 51\nversion = 3\npriority = 100\n\
                advert_interval_ms = 100\nvips = [\"198.18.0.100/24\"]\n\n\
                [[instance]]\nname = \"v2\"\ninterface = \"eth0\"\nvrid = 52\nversion = 2\npriority = 100\n\
                advert_interval_ms = 1000\nauth_pass = \"right\"\nvips = [\"198.18.0.101/24\"]\n";
    let mut n1 = Daemon::start(h1, dir.path(), "n1", conf, &[]).unwrap();
    n1.wait_state("v3", "Master", Duration::from_secs(10));
    n1.wait_state("v2", "Master", Duration::from_secs(10));

    let src = h2.addr4;
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
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("checksum", frame(255, &bad_sum)),
        ("ttl", frame(254, &v3(51, 250))),
        ("version", frame(255, &version4)),
        ("unknown_vrid", frame(255, &v3(77, 250))),
        ("truncated", frame(255, &v3(51, 250)[..6])),
    ];
    let wrong_pass = frame(255, &vrrp_v2(52, 250, 1, &[VIP2], Some(b"wrong")));
    let frames: Vec<Vec<u8>> = cases
        .iter()
        .flat_map(|(_, f)| std::iter::repeat_n(f.clone(), N))
        .chain(std::iter::repeat_n(wrong_pass, N))
        .collect();
    let sent = h2.ns.enter(|| send_raw("eth0", &frames)).unwrap().unwrap();
    assert_eq!(sent, frames.len());

    let counted = |reason: &str, instance: Option<&str>| -> u64 {
        let s = n1.status().unwrap_or_default();
        let d = match instance {
            None => &s["drops"],
            Some(i) => &s["instances"][i]["drops"],
        };
        d[reason].as_u64().unwrap_or(0)
    };
    let all_counted = wait_for(Duration::from_secs(3), || {
        (cases.iter().all(|(r, _)| counted(r, None) == N as u64)
            && counted("auth", Some("v2")) == N as u64)
            .then_some(())
    });
    assert!(
        all_counted.is_some(),
        "drops by reason: {:?}",
        n1.status()
            .map(|s| (s["drops"].clone(), s["instances"]["v2"]["drops"].clone()))
    );
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

    // Control: the same advert, valid, does demote the master.
    h2.ns
        .enter(|| send_raw("eth0", &[frame(255, &v3(51, 250))]))
        .unwrap()
        .unwrap();
    n1.wait_state("v3", "Backup", Duration::from_secs(2));
    assert_eq!(n1.state("v2").as_deref(), Some("Master"));
}
