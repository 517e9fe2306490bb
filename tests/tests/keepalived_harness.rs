//! The namespace harness end to end: keepalived (Debian's) advertises from one
//! host; the XDP program attached to the other host's interface records the
//! adverts in its map, as they arrive on the wire.
use std::{net::IpAddr, time::Duration};

use ha_daemon::ebpf::loader::{AttachMode, XdpProgram};
use ha_testbed::{Lan, TempDir, daemon::keepalived, require_root, wait_for};

#[test]
fn xdp_on_one_host_records_keepalived_adverts_from_another() {
    require_root();
    let lan = Lan::new("hat", 2).unwrap();
    let (h1, h2) = (lan.host(1), lan.host(2));
    let dir = TempDir::new("keepalived").unwrap();
    let conf = "global_defs {\n  router_id h2\n}\n\
         vrrp_instance V3 {\n  state MASTER\n  interface eth0\n  virtual_router_id 51\n  version 3\n  priority 150\n  advert_int 0.05\n  virtual_ipaddress {\n    198.18.0.100/24\n  }\n}\n\
         vrrp_instance V2 {\n  state MASTER\n  interface eth0\n  virtual_router_id 52\n  version 2\n  priority 120\n  advert_int 1\n  authentication {\n    auth_type PASS\n    auth_pass secret\n  }\n  virtual_ipaddress {\n    198.18.0.101/24\n  }\n}\n\
         vrrp_instance V6 {\n  state MASTER\n  interface eth0\n  virtual_router_id 53\n  version 3\n  priority 200\n  advert_int 0.1\n  virtual_ipaddress {\n    fd18::100/64\n  }\n}\n";
    let mut keepalived = keepalived(h2, dir.path(), "keepalived", conf).unwrap();

    let result = h1
        .ns
        .enter(|| {
            let mut prog = XdpProgram::load().expect("load the embedded XDP object");
            let at = prog.attach("eth0").expect("attach XDP to eth0");
            // On a veth the program goes in generic mode: what it sends back
            // out (redirects, resets) must reach the wire whatever runs on
            // the peer end.
            assert_eq!(at.mode, AttachMode::Generic);
            let wanted = |prog: &XdpProgram| {
                let all = prog.adverts().unwrap();
                let v3 = all
                    .iter()
                    .find(|e| e.vrid == 51 && e.source == IpAddr::V4(h2.addr4) && e.count >= 5)?
                    .clone();
                let v2 = all
                    .iter()
                    .find(|e| e.vrid == 52 && e.source == IpAddr::V4(h2.addr4))?
                    .clone();
                let v6 = all
                    .iter()
                    .find(|e| e.vrid == 53 && e.source.is_ipv6())?
                    .clone();
                Some((v3, v2, v6))
            };
            let found = wait_for(Duration::from_secs(15), || wanted(&prog));
            let first = found.clone();
            // The stamps keep moving while keepalived advertises.
            std::thread::sleep(Duration::from_millis(300));
            (first, wanted(&prog))
        })
        .unwrap();
    assert!(
        keepalived.alive(),
        "keepalived exited:\n{}",
        keepalived.log()
    );
    let (first, later) = result;
    let Some((v3, v2, v6)) = first else {
        panic!(
            "XDP map never showed keepalived's adverts; keepalived log:\n{}",
            keepalived.log()
        );
    };
    assert_eq!(
        (v3.version, v3.priority, v3.interval),
        (3, 150, Duration::from_millis(50))
    );
    assert_eq!(
        (v2.version, v2.priority, v2.interval),
        (2, 120, Duration::from_secs(1))
    );
    assert_eq!(
        (v6.version, v6.priority, v6.interval),
        (3, 200, Duration::from_millis(100))
    );
    match v6.source {
        IpAddr::V6(a) => assert_eq!(
            a.segments()[0],
            0xfe80,
            "VRRPv3 over IPv6 comes from a link-local address"
        ),
        IpAddr::V4(_) => unreachable!(),
    }
    let (v3b, _, _) = later.expect("entries still present");
    assert!(
        v3b.count > v3.count && v3b.last_ns > v3.last_ns,
        "adverts keep arriving: {v3:?} then {v3b:?}"
    );
    assert!(v3b.age() < Duration::from_secs(1));
}
