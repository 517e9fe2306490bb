//! The XDP program with instances configured: every drop reason, every
//! recorded field, every ring-buffer event, through BPF_PROG_TEST_RUN.
use std::net::{IpAddr, Ipv4Addr};

use ha_common::{FAMILY_V4, InstanceConf, InstanceKey};
use ha_daemon::ebpf::{
    events::{self, Kind},
    loader::XdpProgram,
};
use ha_testbed::{frames::*, require_root};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
/// BPF_PROG_TEST_RUN without a context delivers on the loopback device.
const LO: u32 = 1;
const H2: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);

/// A program with VRID 51 (v3) and VRID 52 (v2, password "secret") configured.
fn configured() -> XdpProgram {
    require_root();
    let mut p = XdpProgram::load().expect("load the embedded XDP object");
    let key = |vrid| InstanceKey {
        ifindex: LO,
        vrid,
        family: FAMILY_V4,
        _pad: [0; 2],
    };
    p.maps
        .configure(&[
            (
                key(51),
                InstanceConf {
                    version: 3,
                    ..Default::default()
                },
            ),
            (
                key(52),
                InstanceConf {
                    version: 2,
                    auth_type: 1,
                    auth: ha_daemon::vrrp::packet::auth_bytes("secret"),
                    ..Default::default()
                },
            ),
        ])
        .unwrap();
    p
}

fn run(p: &XdpProgram, frame: &[u8]) -> u32 {
    p.test_run(frame, 1)
        .expect("BPF_PROG_TEST_RUN")
        .return_value
}

fn drops(p: &XdpProgram) -> Vec<(&'static str, u64)> {
    p.maps
        .drops()
        .unwrap()
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .collect()
}

fn v4_frame(ttl: u8, vrrp: &[u8]) -> Vec<u8> {
    ethernet(
        MCAST4_MAC,
        SRC_MAC,
        0x0800,
        None,
        &ipv4(H2, VRRP_MCAST4, 112, ttl, vrrp),
    )
}

fn v3(vrid: u8, prio: u8) -> Vec<u8> {
    vrrp_v3_v4(vrid, prio, 100, &[VIP], H2, VRRP_MCAST4)
}

#[test]
fn valid_adverts_pass_and_are_recorded() {
    let p = configured();
    assert_eq!(run(&p, &v4_frame(255, &v3(51, 150))), XDP_PASS);
    assert_eq!(
        run(
            &p,
            &v4_frame(255, &vrrp_v2(52, 120, 1, &[VIP], Some(b"secret")))
        ),
        XDP_PASS
    );
    let all = p.adverts().unwrap();
    assert_eq!(all.len(), 2, "{all:?}");
    assert!(
        all.iter()
            .all(|e| e.ifindex == LO && e.source == IpAddr::V4(H2))
    );
    assert!(drops(&p).is_empty());
}

#[test]
fn each_invalid_advert_is_dropped_and_counted_under_its_reason() {
    let mut bad_sum = v3(51, 150);
    bad_sum[6] ^= 0x55;
    let mut bad_sum_v2 = vrrp_v2(52, 120, 1, &[VIP], Some(b"secret"));
    bad_sum_v2[7] ^= 0x55;
    let mut version4 = v3(51, 150);
    version4[0] = 0x41;
    let mut type2 = v3(51, 150);
    type2[0] = 0x32;
    let mut count9 = v3(51, 150);
    count9[3] = 9;
    let mut odd = v3(51, 150);
    odd.push(0);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("ttl", v4_frame(254, &v3(51, 150))),
        ("version", v4_frame(255, &version4)),
        ("type", v4_frame(255, &type2)),
        ("length", v4_frame(255, &v3(51, 150)[..6])),
        ("length", v4_frame(255, &count9)),
        ("length", v4_frame(255, &odd)),
        ("unknown_vrid", v4_frame(255, &v3(77, 150))),
        (
            "version_mismatch",
            v4_frame(255, &vrrp_v2(51, 150, 1, &[VIP], None)),
        ),
        (
            "auth",
            v4_frame(255, &vrrp_v2(52, 150, 1, &[VIP], Some(b"wrong"))),
        ),
        ("auth", v4_frame(255, &vrrp_v2(52, 150, 1, &[VIP], None))),
        ("checksum", v4_frame(255, &bad_sum)),
        ("checksum", v4_frame(255, &bad_sum_v2)),
    ];
    for (reason, frame) in &cases {
        let p = configured();
        assert_eq!(run(&p, frame), XDP_DROP, "{reason}");
        assert_eq!(drops(&p), vec![(*reason, 1)], "{reason}");
        assert!(
            p.adverts().unwrap().is_empty(),
            "{reason}: nothing recorded"
        );
    }
}

#[test]
fn without_configuration_nothing_is_dropped() {
    require_root();
    let p = XdpProgram::load().unwrap();
    assert!(!p.maps.enforcing());
    assert_eq!(run(&p, &v4_frame(254, &v3(51, 150))), XDP_PASS);
    assert_eq!(run(&p, &v4_frame(255, &v3(77, 150))), XDP_PASS);
    assert!(drops(&p).is_empty());
}

#[test]
fn ring_buffer_carries_edges_only() {
    let mut p = configured();
    let mut rb = p.take_events().expect("ring buffer");
    let mut next = || rb.next().and_then(|i| events::decode(&i));
    run(&p, &v4_frame(255, &v3(51, 150)));
    let e = next().expect("new sender");
    assert_eq!(
        (e.kind, e.vrid, e.priority, e.addr),
        (Kind::NewSender, 51, 150, IpAddr::V4(H2))
    );
    assert!(e.at_ns > 0);
    // The same advert again: no edge, no event.
    for _ in 0..10 {
        run(&p, &v4_frame(255, &v3(51, 150)));
    }
    assert_eq!(next(), None);
    run(&p, &v4_frame(255, &v3(51, 90)));
    let e = next().expect("priority change");
    assert_eq!(
        (e.kind, e.priority, e.old_priority),
        (Kind::PriorityChange, 90, 150)
    );
    run(&p, &v4_frame(255, &v3(51, 0)));
    let e = next().expect("priority zero");
    assert_eq!(
        (e.kind, e.priority, e.old_priority),
        (Kind::PriorityZero, 0, 90)
    );
    // A dropped advert makes no event either.
    run(&p, &v4_frame(254, &v3(51, 200)));
    assert_eq!(next(), None);
}

#[test]
fn watched_redis_endpoint_fin_and_rst_are_stamped_and_reported() {
    let mut p = configured();
    let mut rb = p.take_events().unwrap();
    p.maps.watch_endpoint(IpAddr::V4(H2), 6379).unwrap();
    let me = Ipv4Addr::new(198, 18, 0, 1);
    // Unwatched port and a plain ACK: stamped (watched) or ignored, no events.
    assert_eq!(run(&p, &tcp_frame(H2, 6380, me, 40000, 0x01)), XDP_PASS);
    assert_eq!(run(&p, &tcp_frame(H2, 6379, me, 40000, 0x10)), XDP_PASS);
    assert!(rb.next().is_none());
    let (_, st) = p.maps.endpoints().unwrap()[0];
    assert_eq!((st.segments, st.last_fin_ns, st.last_rst_ns), (1, 0, 0));
    assert!(st.last_ns > 0);

    run(&p, &tcp_frame(H2, 6379, me, 40000, 0x11));
    let e = events::decode(&rb.next().unwrap()).unwrap();
    assert_eq!((e.kind, e.addr, e.port), (Kind::Fin, IpAddr::V4(H2), 6379));
    run(&p, &tcp_frame(H2, 6379, me, 40000, 0x04));
    let e = events::decode(&rb.next().unwrap()).unwrap();
    assert_eq!(e.kind, Kind::Rst);
    let (_, st) = p.maps.endpoints().unwrap()[0];
    assert_eq!(st.segments, 3);
    assert!(st.last_fin_ns > 0 && st.last_rst_ns >= st.last_fin_ns);
}
