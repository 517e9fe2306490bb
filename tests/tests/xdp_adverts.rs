//! The real XDP object, loaded into the kernel and fed crafted frames with
//! BPF_PROG_TEST_RUN; the assertions are on what it leaves in its map.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ha_daemon::ebpf::{adverts::AdvertEntry, clock, loader::XdpProgram};
use ha_testbed::{frames::*, require_root};

const XDP_PASS: u32 = 2;
const H2: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);

fn load() -> XdpProgram {
    require_root();
    XdpProgram::load().expect("load the embedded XDP object (built by `cargo xtask build-ebpf`)")
}

/// Runs one frame through the program, asserting it is passed on.
fn feed(prog: &XdpProgram, frame: &[u8]) {
    let r = prog.test_run(frame, 1).expect("BPF_PROG_TEST_RUN");
    assert_eq!(r.return_value, XDP_PASS, "every frame must be passed on");
}

fn only_entry(prog: &XdpProgram) -> AdvertEntry {
    let all = prog.adverts().unwrap();
    assert_eq!(
        all.len(),
        1,
        "expected exactly one advert entry, got {all:?}"
    );
    all.into_iter().next().unwrap()
}

#[test]
fn v2_advert_is_recorded_with_priority_interval_and_kernel_time() {
    let prog = load();
    let frame = advert_v2_frame(H2, 52, 120, 1, &[VIP], Some(b"secret"), None);
    let before = clock::monotonic_ns();
    feed(&prog, &frame);
    let after = clock::monotonic_ns();
    let e = only_entry(&prog);
    assert_eq!(e.source, IpAddr::V4(H2));
    assert_eq!(
        (e.vrid, e.priority, e.version, e.vlan, e.count),
        (52, 120, 2, 0, 1)
    );
    assert_eq!(e.interval.as_millis(), 1000);
    // The stamp is on CLOCK_MONOTONIC, taken while the program ran.
    assert!(
        before <= e.last_ns && e.last_ns <= after,
        "{before} <= {} <= {after}",
        e.last_ns
    );

    feed(
        &prog,
        &advert_v2_frame(H2, 52, 90, 1, &[VIP], Some(b"secret"), None),
    );
    let e2 = only_entry(&prog);
    assert_eq!(
        (e2.count, e2.priority),
        (2, 90),
        "count grows, priority follows the last advert"
    );
    assert!(e2.last_ns > e.last_ns);
}

#[test]
fn v3_advert_is_recorded_with_centisecond_interval() {
    let prog = load();
    feed(&prog, &advert_v3_frame(H2, 51, 150, 1, &[VIP], None));
    let e = only_entry(&prog);
    assert_eq!((e.vrid, e.priority, e.version, e.count), (51, 150, 3, 1));
    assert_eq!(e.interval.as_millis(), 10);
}

#[test]
fn ipv6_advert_is_keyed_by_its_ipv6_source() {
    let prog = load();
    let src: Ipv6Addr = "fe80::2".parse().unwrap();
    let vip: Ipv6Addr = "fd18::100".parse().unwrap();
    feed(&prog, &advert_v3_frame6(src, 53, 200, 4095, &[vip], None));
    let e = only_entry(&prog);
    assert_eq!(e.source, IpAddr::V6(src));
    assert_eq!((e.vrid, e.priority, e.version), (53, 200, 3));
    assert_eq!(
        e.interval.as_millis(),
        40_950,
        "the 12-bit maximum interval"
    );
}

#[test]
fn vlan_tagged_adverts_are_recorded_with_their_vlan() {
    let prog = load();
    feed(&prog, &advert_v3_frame(H2, 51, 100, 100, &[VIP], Some(42)));
    let src: Ipv6Addr = "fe80::2".parse().unwrap();
    feed(
        &prog,
        &advert_v3_frame6(src, 51, 100, 100, &["fd18::100".parse().unwrap()], Some(43)),
    );
    let all = prog.adverts().unwrap();
    assert_eq!(all.len(), 2, "{all:?}");
    let v4 = all.iter().find(|e| e.source == IpAddr::V4(H2)).unwrap();
    let v6 = all.iter().find(|e| e.source == IpAddr::V6(src)).unwrap();
    assert_eq!((v4.vlan, v6.vlan), (42, 43));
}

#[test]
fn senders_and_vrids_get_separate_entries() {
    let prog = load();
    feed(&prog, &advert_v3_frame(H2, 51, 100, 100, &[VIP], None));
    feed(
        &prog,
        &advert_v3_frame(Ipv4Addr::new(198, 18, 0, 3), 51, 90, 100, &[VIP], None),
    );
    feed(&prog, &advert_v3_frame(H2, 52, 100, 100, &[VIP], None));
    let all = prog.adverts().unwrap();
    assert_eq!(all.len(), 3, "{all:?}");
}

/// Cuts a valid frame short at every length up to the end of the fixed VRRP
/// header: nothing may be recorded, and each frame must still pass. (The kernel
/// refuses test frames shorter than an Ethernet header, so those start at 14.)
fn assert_truncations_ignored(frame: &[u8], vrrp_end: usize) {
    let prog = load();
    for len in 14..vrrp_end {
        feed(&prog, &frame[..len]);
        let all = prog.adverts().unwrap();
        assert!(
            all.is_empty(),
            "frame cut at {len} of {} bytes was recorded: {all:?}",
            frame.len()
        );
    }
    feed(&prog, &frame[..vrrp_end]);
    assert_eq!(
        prog.adverts().unwrap().len(),
        1,
        "the full fixed header is enough"
    );
}

#[test]
fn truncated_ipv4_frames_are_ignored_at_every_boundary() {
    // Ethernet 14 + IPv4 20 + VRRP fixed 8.
    assert_truncations_ignored(&advert_v3_frame(H2, 51, 100, 100, &[VIP], None), 42);
}

#[test]
fn truncated_vlan_frames_are_ignored_at_every_boundary() {
    assert_truncations_ignored(&advert_v2_frame(H2, 51, 100, 1, &[VIP], None, Some(7)), 46);
}

#[test]
fn truncated_ipv6_frames_are_ignored_at_every_boundary() {
    let src: Ipv6Addr = "fe80::2".parse().unwrap();
    let f = advert_v3_frame6(src, 51, 100, 100, &["fd18::100".parse().unwrap()], None);
    // Ethernet 14 + IPv6 40 + VRRP fixed 8.
    assert_truncations_ignored(&f, 62);
}

#[test]
fn non_vrrp_frames_pass_and_leave_no_trace() {
    let prog = load();
    // UDP over IPv4, an ARP request, VRRP version 4, protocol 112 inside IPv6
    // hop-by-hop space but another next header.
    let udp = ethernet(
        MCAST4_MAC,
        SRC_MAC,
        0x0800,
        None,
        &ipv4(H2, VRRP_MCAST4, 17, 64, &[0u8; 16]),
    );
    let arp = ethernet([0xff; 6], SRC_MAC, 0x0806, None, &[0u8; 28]);
    let mut v4 = advert_v3_frame(H2, 51, 100, 100, &[VIP], None);
    v4[34] = 0x41;
    let tcp6 = ethernet(
        MCAST6_MAC,
        SRC_MAC,
        0x86dd,
        None,
        &ipv6("fe80::2".parse().unwrap(), VRRP_MCAST6, 6, 255, &[0u8; 20]),
    );
    for f in [&udp, &arp, &v4, &tcp6] {
        feed(&prog, f);
    }
    assert!(prog.adverts().unwrap().is_empty());
}
