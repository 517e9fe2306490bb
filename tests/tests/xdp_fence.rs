//! The kernel side of the VIPs, through BPF_PROG_TEST_RUN on the real
//! object: serving, the lease fence (a reset for the Redis port, the
//! egress drop), a given-up VIP's frames sent on to its new owner, ARP
//! suppression, the daemon's heartbeat, and quorum voter filtering.
use std::net::{IpAddr, Ipv4Addr};

use ha_common::{FAMILY_V4, InstanceConf, InstanceKey, VIP_HELD, VIP_LEASE, VipState};
use ha_daemon::ebpf::{
    clock::{boottime_ns, monotonic_ns},
    loader::XdpProgram,
};
use ha_testbed::{frames::*, require_root};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
const TC_ACT_OK: u32 = 0;
const TC_ACT_SHOT: u32 = 2;
const LO: u32 = 1;
const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 50);
const H2: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const H3: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 3);
const OWN: [u8; 6] = [2, 0, 0, 0, 0, 1];
const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x50];
const NEW_OWNER: [u8; 6] = [2, 0, 0, 0, 0, 2];
const ACK: u8 = 0x10;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;

fn program() -> XdpProgram {
    require_root();
    let mut p = XdpProgram::load().expect("load the embedded XDP object");
    p.maps
        .configure(&[(
            InstanceKey {
                ifindex: LO,
                vrid: 51,
                family: FAMILY_V4,
                _pad: [0; 2],
            },
            InstanceConf {
                version: 3,
                ..Default::default()
            },
        )])
        .unwrap();
    p
}

fn vip(p: &mut XdpProgram, flags: u32, released_ns: u64, redirect_until_ns: u64) {
    p.maps
        .set_vip(
            IpAddr::V4(VIP),
            VipState {
                flags,
                slot: 3,
                redis_port: 6379,
                own_mac: OWN,
                released_ns,
                redirect_until_ns,
            },
        )
        .unwrap();
}

/// A client's segment to the VIP's Redis port.
fn to_redis(flags: u8, seq: u32, ack: u32, payload: &[u8]) -> Vec<u8> {
    tcp_segment(
        OWN, CLIENT_MAC, CLIENT, 40000, VIP, 6379, flags, seq, ack, payload,
    )
}

fn run(p: &XdpProgram, f: &[u8]) -> (u32, Vec<u8>) {
    p.test_run_frame(f).expect("BPF_PROG_TEST_RUN")
}

fn counter(p: &XdpProgram, name: &str) -> u64 {
    p.maps
        .counters()
        .unwrap()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map_or(0, |(_, v)| v)
}

#[test]
fn a_vip_served_here_passes() {
    let mut p = program();
    vip(&mut p, VIP_HELD, 0, 0);
    assert_eq!(
        run(&p, &to_redis(ACK | PSH, 1000, 5000, b"PING")).0,
        XDP_PASS
    );
    // With the lease flag and a lease that runs: still served.
    vip(&mut p, VIP_HELD | VIP_LEASE, 0, 0);
    p.maps.set_lease(3, boottime_ns() + 10_000_000_000).unwrap();
    assert_eq!(
        run(&p, &to_redis(ACK | PSH, 1000, 5000, b"PING")).0,
        XDP_PASS
    );
    // Other addresses are none of its business.
    let other = tcp_segment(OWN, CLIENT_MAC, CLIENT, 1, H2, 6379, ACK, 1, 1, b"");
    assert_eq!(run(&p, &other).0, XDP_PASS);
}

#[test]
fn past_the_lease_the_redis_port_answers_with_a_reset_the_client_accepts() {
    let mut p = program();
    vip(&mut p, VIP_HELD | VIP_LEASE, 0, 0);
    p.maps.set_lease(3, boottime_ns() - 1).unwrap();
    // A request on an established connection: RST with seq = its ack
    // (the client's rcv_nxt, an exact match for RFC 5961).
    let (v, out) = run(
        &p,
        &to_redis(ACK | PSH, 1000, 5000, b"*1\r\n$4\r\nPING\r\n"),
    );
    assert_eq!(v, XDP_TX);
    let s = parse_segment(&out).expect("a TCP frame");
    assert_eq!(
        (s.dst_mac, s.src_mac, s.src, s.dst, s.sport, s.dport),
        (CLIENT_MAC, OWN, VIP, CLIENT, 6379, 40000)
    );
    assert_eq!((s.flags, s.seq), (RST, 5000));
    assert!(s.checksums_ok, "{s:?}");
    assert_eq!(s.len, 54, "headers only: the payload is cut off");
    // A connect: RST|ACK acknowledging the SYN (ECONNREFUSED at once).
    let (v, out) = run(&p, &to_redis(SYN, 777, 0, b""));
    assert_eq!(v, XDP_TX);
    let s = parse_segment(&out).unwrap();
    assert_eq!((s.flags, s.seq, s.ack), (RST | ACK, 0, 778));
    assert!(s.checksums_ok);
    // A reset is never answered.
    assert_eq!(run(&p, &to_redis(RST, 1, 0, b"")).0, XDP_DROP);
    assert_eq!(counter(&p, "reset"), 2);
    // Traffic to other ports of the VIP is left to the kernel.
    let ssh = tcp_segment(OWN, CLIENT_MAC, CLIENT, 1, VIP, 22, ACK, 1, 1, b"");
    assert_eq!(run(&p, &ssh).0, XDP_PASS);
    // And the replies still leaving are dropped on the way out.
    let reply = tcp_segment(
        CLIENT_MAC,
        OWN,
        VIP,
        6379,
        CLIENT,
        40000,
        ACK | PSH,
        5000,
        1000,
        b"+PONG\r\n",
    );
    assert_eq!(p.test_run_egress(&reply).unwrap(), TC_ACT_SHOT);
    p.maps.set_lease(3, boottime_ns() + 10_000_000_000).unwrap();
    assert_eq!(p.test_run_egress(&reply).unwrap(), TC_ACT_OK);
    assert_eq!(
        run(&p, &to_redis(ACK | PSH, 1000, 5000, b"PING")).0,
        XDP_PASS
    );
}

#[test]
fn egress_drops_only_the_vips_redis_replies_and_only_with_a_lease() {
    let mut p = program();
    vip(&mut p, VIP_HELD | VIP_LEASE, 0, 0);
    p.maps.set_lease(3, 0).unwrap();
    let from =
        |src, sport| tcp_segment(CLIENT_MAC, OWN, src, sport, CLIENT, 40000, ACK, 1, 1, b"x");
    assert_eq!(p.test_run_egress(&from(VIP, 6379)).unwrap(), TC_ACT_SHOT);
    assert_eq!(p.test_run_egress(&from(VIP, 22)).unwrap(), TC_ACT_OK);
    // A reset carries no answer: the old master aborting its clients'
    // connections (SOCK_DESTROY) gets out, so they reconnect at once.
    let rst = tcp_segment(
        CLIENT_MAC,
        OWN,
        VIP,
        6379,
        CLIENT,
        40000,
        RST | ACK,
        1,
        1,
        b"",
    );
    assert_eq!(p.test_run_egress(&rst).unwrap(), TC_ACT_OK);
    // So do the tickles that follow those resets (a bare ACK, sequence and
    // acknowledgment 0, window 1234); a bare ACK of Redis's does not.
    let bare = |seq: u32, window: u16| {
        let mut f = tcp_segment(CLIENT_MAC, OWN, VIP, 6379, CLIENT, 40000, ACK, seq, 0, b"");
        f[14 + 20 + 14..14 + 20 + 16].copy_from_slice(&window.to_be_bytes());
        f
    };
    assert_eq!(p.test_run_egress(&bare(0, 1234)).unwrap(), TC_ACT_OK);
    assert_eq!(p.test_run_egress(&bare(0, 65535)).unwrap(), TC_ACT_SHOT);
    assert_eq!(p.test_run_egress(&bare(7, 1234)).unwrap(), TC_ACT_SHOT);
    assert_eq!(
        p.test_run_egress(&from(H2, 6379)).unwrap(),
        TC_ACT_OK,
        "replication to a host address"
    );
    // Without [quorum] (no lease flag) nothing is fenced on the way out.
    vip(&mut p, VIP_HELD, 0, 0);
    assert_eq!(p.test_run_egress(&from(VIP, 6379)).unwrap(), TC_ACT_OK);
    assert!(counter(&p, "egress_fenced") >= 1);
}

#[test]
fn a_given_up_vip_is_reset_until_announced_then_sent_on_to_its_new_owner() {
    let mut p = program();
    let now = monotonic_ns();
    vip(&mut p, 0, now - 1_000_000, now + 5_000_000_000);
    // Nobody has announced it yet: a connect gets a reset (retry now).
    let (v, out) = run(&p, &to_redis(SYN, 10, 0, b""));
    assert_eq!(v, XDP_TX);
    assert_eq!(parse_segment(&out).unwrap().flags, RST | ACK);
    // The new owner's gratuitous ARP is noted, and passes.
    assert_eq!(run(&p, &arp(1, NEW_OWNER, VIP, [0; 6], VIP)).0, XDP_PASS);
    let owners = p.maps.owners().unwrap();
    assert_eq!(owners.len(), 1);
    assert_eq!(owners[0].1.mac, NEW_OWNER);
    // Now a connect goes there, untouched but for the MACs.
    let syn = to_redis(SYN, 10, 0, b"");
    let (v, out) = run(&p, &syn);
    assert_eq!(v, XDP_TX);
    assert_eq!(&out[0..6], &NEW_OWNER);
    assert_eq!(&out[6..12], &OWN);
    assert_eq!(&out[12..], &syn[12..]);
    // Any other segment goes there too: a connection made through here
    // lives on there, and one this host had is reset by the new owner.
    let seg = to_redis(ACK | PSH, 1, 99, b"x");
    let (v, out) = run(&p, &seg);
    assert_eq!((v, &out[0..6]), (XDP_TX, &NEW_OWNER[..]));
    assert_eq!(&out[12..], &seg[12..]);
    // Other traffic for the VIP goes on too.
    let ping = udp_frame(OWN, CLIENT_MAC, CLIENT, 5000, VIP, 53, b"x");
    assert_eq!(run(&p, &ping).0, XDP_TX);
    assert!(counter(&p, "redirected") >= 2);
    // A frame from the new owner itself is never bounced back to it (no
    // ping-pong between two hosts): it gets the reset a closed port gives.
    let looped = tcp_segment(OWN, NEW_OWNER, CLIENT, 40000, VIP, 6379, SYN, 1, 0, b"");
    let (v, out) = run(&p, &looped);
    assert_eq!((v, parse_segment(&out).unwrap().flags), (XDP_TX, RST | ACK));
    // After the window the kernel decides alone.
    vip(&mut p, 0, now - 1_000_000, now - 1);
    assert_eq!(run(&p, &syn).0, XDP_PASS);
}

/// A preempting node (or a switchover's) announces the VIP just before its
/// advert makes this one give it up: that announcement names the new owner.
/// One long before does not (a stale owner gets the reset instead).
#[test]
fn an_announcement_just_before_the_release_names_the_new_owner() {
    let mut p = program();
    let now = monotonic_ns();
    vip(&mut p, VIP_HELD, 0, 0);
    assert_eq!(run(&p, &arp(1, NEW_OWNER, VIP, [0; 6], VIP)).0, XDP_PASS);
    // Released 20 ms after the announcement (ours: monotonic_ns() moved on).
    let released = monotonic_ns() + 20_000_000;
    vip(&mut p, 0, released, released + 3_000_000_000);
    let (v, out) = run(&p, &to_redis(SYN, 10, 0, b""));
    assert_eq!((v, &out[0..6]), (XDP_TX, &NEW_OWNER[..]), "sent on");
    // Released long (500 ms) after it: that owner is stale.
    let late = now + 500_000_000;
    vip(&mut p, 0, late, late + 3_000_000_000);
    let (v, out) = run(&p, &to_redis(SYN, 10, 0, b""));
    assert_eq!((v, parse_segment(&out).unwrap().flags), (XDP_TX, RST | ACK));
}

/// A switch floods frames for a MAC it lost track of (the owner's link went
/// down) to every port: this host neither answers nor carries those.
#[test]
fn frames_for_another_hosts_mac_are_left_to_the_kernel() {
    let mut p = program();
    let now = monotonic_ns();
    let elsewhere = |flags, seq, ack| {
        tcp_segment(
            NEW_OWNER, CLIENT_MAC, CLIENT, 40000, VIP, 6379, flags, seq, ack, b"",
        )
    };
    // In the window where frames to this host get a reset ...
    vip(&mut p, 0, now - 1_000_000, now + 5_000_000_000);
    assert_eq!(run(&p, &to_redis(SYN, 10, 0, b"")).0, XDP_TX);
    assert_eq!(run(&p, &elsewhere(SYN, 10, 0)).0, XDP_PASS);
    assert_eq!(run(&p, &elsewhere(ACK | PSH, 1, 99)).0, XDP_PASS);
    // ... and past the lease.
    vip(&mut p, VIP_HELD | VIP_LEASE, 0, 0);
    p.maps.set_lease(3, boottime_ns() - 1).unwrap();
    assert_eq!(run(&p, &elsewhere(ACK | PSH, 1, 99)).0, XDP_PASS);
    assert_eq!(counter(&p, "reset"), 1, "only the frame for this host");
}

#[test]
fn arp_for_a_vip_is_answered_only_where_it_is_served() {
    let mut p = program();
    let who_has = arp(1, CLIENT_MAC, CLIENT, [0; 6], VIP);
    vip(&mut p, VIP_HELD, 0, 0);
    assert_eq!(run(&p, &who_has).0, XDP_PASS);
    vip(&mut p, VIP_HELD | VIP_LEASE, 0, 0);
    p.maps.set_lease(3, 0).unwrap();
    assert_eq!(run(&p, &who_has).0, XDP_DROP);
    assert_eq!(counter(&p, "arp_suppressed"), 1);
    // Other ARP traffic passes.
    assert_eq!(run(&p, &arp(1, CLIENT_MAC, CLIENT, [0; 6], H2)).0, XDP_PASS);
}

#[test]
fn a_dead_daemons_vip_is_fenced_and_goes_to_whoever_announced_it() {
    let mut p = program();
    p.maps.set_liveness(50_000_000, 20_000_000).unwrap();
    vip(&mut p, VIP_HELD, 0, 0);
    let req = to_redis(ACK | PSH, 1000, 5000, b"PING");
    let who_has = arp(1, CLIENT_MAC, CLIENT, [0; 6], VIP);
    p.maps.beat(monotonic_ns()).unwrap();
    assert_eq!(run(&p, &req).0, XDP_PASS, "a live daemon");
    // Quiet for 30 ms, and another host announced the VIP since: its
    // connects go there, ARP is left to it.
    p.maps.beat(monotonic_ns() - 30_000_000).unwrap();
    assert_eq!(run(&p, &req).0, XDP_PASS, "quiet, nobody else has it");
    run(&p, &arp(2, NEW_OWNER, VIP, [0xff; 6], VIP));
    let (v, out) = run(&p, &to_redis(SYN, 5, 0, b""));
    assert_eq!((v, &out[0..6]), (XDP_TX, &NEW_OWNER[..]));
    assert_eq!(run(&p, &who_has).0, XDP_DROP);
    // Gone for good (past stale_ns) with nobody else: fenced with resets.
    p.maps.remove_vip(IpAddr::V4(VIP));
    vip(&mut p, VIP_HELD, 0, 0);
    p.maps.beat(monotonic_ns() - 100_000_000).unwrap();
    let (v, out) = run(&p, &req);
    assert_eq!((v, parse_segment(&out).unwrap().flags), (XDP_TX, RST));
    // Back: served again.
    p.maps.beat(monotonic_ns()).unwrap();
    assert_eq!(run(&p, &req).0, XDP_PASS);
}

#[test]
fn with_a_quorum_adverts_and_votes_from_outside_count_for_nothing() {
    let mut p = program();
    p.maps.set_quorum(Some((5940, &[IpAddr::V4(H2)]))).unwrap();
    let advert = |src| {
        ethernet(
            MCAST4_MAC,
            SRC_MAC,
            0x0800,
            None,
            &ipv4(
                src,
                VRRP_MCAST4,
                112,
                255,
                &vrrp_v3_v4(51, 255, 1, &[VIP], src, VRRP_MCAST4),
            ),
        )
    };
    assert_eq!(
        run(&p, &advert(H3)).0,
        XDP_DROP,
        "a forged priority-255 advert"
    );
    assert_eq!(run(&p, &advert(H2)).0, XDP_PASS);
    let vote = |src| udp_frame(OWN, SRC_MAC, src, 5940, H2, 5940, b"HAQ2");
    assert_eq!(run(&p, &vote(H3)).0, XDP_DROP);
    assert_eq!(run(&p, &vote(H2)).0, XDP_PASS);
    let drops: Vec<(&str, u64)> = p
        .maps
        .drops()
        .unwrap()
        .into_iter()
        .filter(|d| d.1 > 0)
        .collect();
    assert_eq!(drops, vec![("not_voter", 1), ("quorum_not_voter", 1)]);
    // Without a quorum, anyone's advert is judged on its contents alone.
    p.maps.set_quorum(None).unwrap();
    assert_eq!(run(&p, &advert(H3)).0, XDP_PASS);
}
