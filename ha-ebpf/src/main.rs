//! ha-daemon's XDP program.
//!
//! - Timestamps every VRRP advertisement (IPv4 protocol 112, IPv6 next header
//!   112, untagged or with one 802.1Q / 802.1ad tag) in `ADVERTS`, keyed by
//!   (ifindex, VRID, source), on the kernel clock at arrival: the daemon decides
//!   master-down from these stamps, so its own lateness is not a dead master.
//! - Once the daemon has written its instances and set `SETTING_ENFORCE`, drops
//!   invalid adverts here (TTL, version, type, length, unknown VRID, version
//!   mismatch, v2 password, checksum), counted per reason in `DROPS`, so a flood
//!   of bogus adverts never reaches userspace. Valid adverts pass on.
//! - Watches TCP segments from the Redis endpoints in `ENDPOINTS`: last
//!   segment, last FIN, last RST.
//! - Reports edges (priority 0, new sender, priority change, FIN, RST) on the
//!   `EVENTS` ring buffer; never one event per packet.
//! - Holds the line for the VIPs in `VIPS` when the daemon cannot: a VIP
//!   this node may not serve (given up, its lease over, its daemon gone)
//!   gets no ARP/NS answer from here, its Redis port's segments a TCP reset
//!   (the client reconnects at once), and, once another host has announced
//!   it, new connections and other traffic go to that host (destination MAC
//!   rewritten, XDP_TX). `ha_tc_egress` drops the Redis port's replies from
//!   a VIP once its lease has run out.
//! - With a quorum, drops adverts and quorum datagrams from non-voters.
#![no_std]
#![no_main]

use core::mem::size_of;

use aya_ebpf::{
    bindings::{BPF_NOEXIST, TC_ACT_OK, TC_ACT_SHOT, xdp_action},
    helpers::{
        bpf_ktime_get_boot_ns, bpf_ktime_get_ns, bpf_xdp_adjust_tail, bpf_xdp_load_bytes,
        bpf_xdp_store_bytes,
    },
    macros::{classifier, map, xdp},
    maps::{Array, HashMap, PerCpuArray, RingBuf},
    programs::{TcContext, XdpContext},
};
use ha_common::*;

#[map(name = "ADVERTS")]
static ADVERTS: HashMap<AdvertKey, AdvertRecord> =
    HashMap::with_max_entries(ADVERTS_MAX_ENTRIES, 0);
#[map(name = "INSTANCES")]
static INSTANCES: HashMap<InstanceKey, InstanceConf> =
    HashMap::with_max_entries(INSTANCES_MAX_ENTRIES, 0);
#[map(name = "DROPS")]
static DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(DROP_REASONS, 0);
#[map(name = "ENDPOINTS")]
static ENDPOINTS: HashMap<EndpointKey, EndpointState> =
    HashMap::with_max_entries(ENDPOINTS_MAX_ENTRIES, 0);
#[map(name = "EVENTS")]
static EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_BYTES, 0);
#[map(name = "SETTINGS")]
static SETTINGS: Array<Settings> = Array::with_max_entries(1, 0);
#[map(name = "VIPS")]
static VIPS: HashMap<VipKey, VipState> = HashMap::with_max_entries(VIPS_MAX_ENTRIES, 0);
#[map(name = "OWNERS")]
static OWNERS: HashMap<VipKey, Owner> = HashMap::with_max_entries(VIPS_MAX_ENTRIES, 0);
#[map(name = "LEASES")]
static LEASES: Array<Lease> = Array::with_max_entries(LEASES_MAX_ENTRIES, 0);
#[map(name = "HEARTBEAT")]
static HEARTBEAT: Array<u64> = Array::with_max_entries(1, 0);
#[map(name = "VOTERS")]
static VOTERS: HashMap<VipKey, u32> = HashMap::with_max_entries(VOTERS_MAX_ENTRIES, 0);
#[map(name = "COUNTERS")]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(ha_common::COUNTERS, 0);

const ETH_HLEN: usize = 14;
const VLAN_HLEN: usize = 4;
const IPV4_MIN_HLEN: usize = 20;
const IPV6_HLEN: usize = 40;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ICMPV6: u8 = 58;
const ETH_P_ARP: u16 = 0x0806;
const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;
/// Fixed VRRP header: version/type, VRID, priority, count, (auth type,
/// interval | interval), checksum.
const VRRP_FIXED_LEN: usize = 8;
/// Longest VRRP message whose checksum is verified here (bounded loop for the
/// verifier); longer ones are checked by the daemon.
const CSUM_MAX: usize = 128;
/// Largest offset `read` accepts; keeps the verifier's ranges finite.
const MAX_OFF: usize = 1536;

#[xdp]
pub fn ha_xdp(ctx: XdpContext) -> u32 {
    if let Some(r) = arp(&ctx) {
        return r;
    }
    match parse(&ctx) {
        Some(l3) if l3.proto == IPPROTO_VRRP => vrrp(&ctx, &l3),
        Some(l3) => {
            if l3.proto == IPPROTO_TCP {
                tcp(&ctx, &l3);
            } else if l3.proto == IPPROTO_UDP && !quorum_voter_ok(&ctx, &l3) {
                return reject(true, DROP_QUORUM_NOT_VOTER);
            } else if l3.proto == IPPROTO_ICMPV6
                && let Some(r) = ndp(&ctx, &l3)
            {
                return r;
            }
            vip(&ctx, &l3)
        }
        None => xdp_action::XDP_PASS,
    }
}

/// The IP layer of a frame.
struct L3 {
    family: u8,
    src: [u8; 16],
    dst: [u8; 16],
    /// TTL or hop limit.
    ttl: u8,
    proto: u8,
    /// Offset of the IP payload in the frame.
    off: usize,
    /// Offset of the IP header (after Ethernet and any VLAN tag).
    ip_off: usize,
    /// IPv4 header length (0 for IPv6).
    ihl: usize,
    /// Length of the IP payload as the IP header states it.
    len: usize,
    vlan: u16,
}

#[inline(always)]
fn parse(ctx: &XdpContext) -> Option<L3> {
    let eth: [u8; ETH_HLEN] = read(ctx, 0)?;
    let mut proto = u16::from_be_bytes([eth[12], eth[13]]);
    let mut off = ETH_HLEN;
    let mut vlan = 0u16;
    if proto == ETH_P_8021Q || proto == ETH_P_8021AD {
        let tag: [u8; VLAN_HLEN] = read(ctx, off)?;
        vlan = u16::from_be_bytes([tag[0], tag[1]]) & 0x0fff;
        proto = u16::from_be_bytes([tag[2], tag[3]]);
        off += VLAN_HLEN;
    }
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    if proto == ETH_P_IP {
        let ip: [u8; IPV4_MIN_HLEN] = read(ctx, off)?;
        if ip[0] >> 4 != 4 {
            return None;
        }
        let ihl = ((ip[0] & 0x0f) as usize) * 4;
        let total = u16::from_be_bytes([ip[2], ip[3]]) as usize;
        if ihl < IPV4_MIN_HLEN || total < ihl {
            return None;
        }
        src[..4].copy_from_slice(&ip[12..16]);
        dst[..4].copy_from_slice(&ip[16..20]);
        Some(L3 {
            family: FAMILY_V4,
            src,
            dst,
            ttl: ip[8],
            proto: ip[9],
            off: off + ihl,
            ip_off: off,
            ihl,
            len: total - ihl,
            vlan,
        })
    } else if proto == ETH_P_IPV6 {
        let ip: [u8; IPV6_HLEN] = read(ctx, off)?;
        if ip[0] >> 4 != 6 {
            return None;
        }
        src.copy_from_slice(&ip[8..24]);
        dst.copy_from_slice(&ip[24..40]);
        Some(L3 {
            family: FAMILY_V6,
            src,
            dst,
            ttl: ip[7],
            proto: ip[6],
            off: off + IPV6_HLEN,
            ip_off: off,
            ihl: 0,
            len: u16::from_be_bytes([ip[4], ip[5]]) as usize,
            vlan,
        })
    } else {
        None
    }
}

#[inline(always)]
fn enforcing() -> bool {
    SETTINGS
        .get(0)
        .is_some_and(|s| s.flags & SETTING_ENFORCE != 0)
}

/// Counts a drop; drops only when the daemon asked for enforcement.
#[inline(always)]
fn reject(enforce: bool, reason: u32) -> u32 {
    if !enforce {
        return xdp_action::XDP_PASS;
    }
    if let Some(c) = DROPS.get_ptr_mut(reason) {
        // SAFETY: per-CPU slot, valid for this run.
        unsafe { *c += 1 };
    }
    xdp_action::XDP_DROP
}

#[inline(always)]
fn vrrp(ctx: &XdpContext, l3: &L3) -> u32 {
    let enforce = enforcing();
    let Some(hdr) = read::<[u8; VRRP_FIXED_LEN]>(ctx, l3.off) else {
        return reject(enforce, DROP_LENGTH);
    };
    if l3.len < VRRP_FIXED_LEN {
        return reject(enforce, DROP_LENGTH);
    }
    if l3.ttl != 255 {
        return reject(enforce, DROP_TTL);
    }
    let version = hdr[0] >> 4;
    if version != 2 && version != 3 {
        return reject(enforce, DROP_VERSION);
    }
    if hdr[0] & 0x0f != 1 {
        return reject(enforce, DROP_TYPE);
    }
    if enforce && quorum() && !is_voter(l3.family, &l3.src) {
        return reject(enforce, DROP_NOT_VOTER);
    }
    if enforce {
        let ikey = InstanceKey {
            ifindex: unsafe { (*ctx.ctx).ingress_ifindex },
            vrid: hdr[1],
            family: l3.family,
            _pad: [0; 2],
        };
        // SAFETY: read-only use of the value within this run.
        let Some(conf) = (unsafe { INSTANCES.get(ikey) }) else {
            return reject(enforce, DROP_UNKNOWN_VRID);
        };
        if conf.version != version {
            return reject(enforce, DROP_VERSION_MISMATCH);
        }
        let alen = if l3.family == FAMILY_V4 { 4 } else { 16 };
        let addrs = hdr[3] as usize * alen;
        let tail = if version == 2 { 8 } else { 0 };
        // Every valid advert has an even length (v2: 16 + 4n, v3: 8 + 4n or
        // 8 + 16n), which also keeps the checksum loop to whole words.
        if l3.len < VRRP_FIXED_LEN + addrs + tail || l3.len % 2 == 1 {
            return reject(enforce, DROP_LENGTH);
        }
        if version == 2 {
            if hdr[4] != conf.auth_type {
                return reject(enforce, DROP_AUTH);
            }
            if conf.auth_type == 1 {
                match read::<[u8; 8]>(ctx, l3.off + VRRP_FIXED_LEN + addrs) {
                    Some(p) if p == conf.auth => {}
                    _ => return reject(enforce, DROP_AUTH),
                }
            }
        }
        if l3.len <= CSUM_MAX && !checksum_ok(ctx, l3, version) {
            return reject(enforce, DROP_CHECKSUM);
        }
    }
    let adver_int_cs = if version == 3 {
        u16::from_be_bytes([hdr[4], hdr[5]]) & 0x0fff
    } else {
        hdr[5] as u16 * 100
    };
    record(ctx, l3, hdr[1], hdr[2], version, adver_int_cs);
    xdp_action::XDP_PASS
}

/// RFC 1071 sum over the VRRP message (and, for v3, the pseudo-header).
#[inline(always)]
fn checksum_ok(ctx: &XdpContext, l3: &L3, version: u8) -> bool {
    let len = l3.len;
    let mut sum: u32 = 0;
    if version == 3 {
        let n = if l3.family == FAMILY_V4 { 2 } else { 8 };
        let mut i = 0;
        while i < 8 {
            if i < n {
                sum += u16::from_be_bytes([l3.src[2 * i], l3.src[2 * i + 1]]) as u32;
                sum += u16::from_be_bytes([l3.dst[2 * i], l3.dst[2 * i + 1]]) as u32;
            }
            i += 1;
        }
        sum += IPPROTO_VRRP as u32 + len as u32;
    }
    let mut i = 0usize;
    while i < CSUM_MAX / 2 {
        if 2 * i + 2 > len {
            break;
        }
        match read::<[u8; 2]>(ctx, l3.off + 2 * i) {
            Some(w) => sum += u16::from_be_bytes(w) as u32,
            None => return false,
        }
        i += 1;
    }
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum == 0xffff
}

#[inline(always)]
fn record(ctx: &XdpContext, l3: &L3, vrid: u8, priority: u8, version: u8, adver_int_cs: u16) {
    let ifindex = unsafe { (*ctx.ctx).ingress_ifindex };
    let key = AdvertKey {
        ifindex,
        vrid,
        family: l3.family,
        _pad: [0; 2],
        addr: l3.src,
    };
    let now = unsafe { bpf_ktime_get_ns() };
    let mut ev = Event {
        kind: 0,
        ifindex,
        at_ns: now,
        addr: l3.src,
        family: l3.family,
        vrid,
        priority,
        old_priority: 0,
        port: 0,
        adver_int_cs,
    };
    if let Some(rec) = ADVERTS.get_ptr_mut(key) {
        // SAFETY: the pointer is into the map value, valid for this run. The
        // increment is not atomic (core has no atomics for this target); one
        // sender's adverts hash to one RX queue, so two CPUs racing on one key
        // would take two senders with the same address.
        unsafe {
            let old = (*rec).priority;
            if old != priority {
                ev.kind = if priority == 0 {
                    EV_PRIORITY_ZERO
                } else {
                    EV_PRIORITY_CHANGE
                };
                ev.old_priority = old;
            }
            (*rec).last_ns = now;
            (*rec).priority = priority;
            (*rec).version = version;
            (*rec).vlan = l3.vlan;
            (*rec).adver_int_cs = adver_int_cs;
            (*rec).count += 1;
        }
    } else {
        let rec = AdvertRecord {
            last_ns: now,
            count: 1,
            priority,
            version,
            vlan: l3.vlan,
            adver_int_cs,
            _pad: [0; 2],
        };
        // NOEXIST: another CPU may have created it meanwhile; losing one count
        // then is harmless, overwriting its count is not.
        let _ = ADVERTS.insert(key, rec, BPF_NOEXIST as u64);
        ev.kind = if priority == 0 {
            EV_PRIORITY_ZERO
        } else {
            EV_NEW_SENDER
        };
    }
    if ev.kind != 0 {
        let _ = EVENTS.output::<Event>(&ev, 0);
    }
}

/// Segments from a watched Redis endpoint: stamp them, and report FIN / RST.
#[inline(always)]
fn tcp(ctx: &XdpContext, l3: &L3) {
    let Some(th) = read::<[u8; 14]>(ctx, l3.off) else {
        return;
    };
    let key = EndpointKey {
        addr: l3.src,
        port: u16::from_be_bytes([th[0], th[1]]),
        family: l3.family,
        _pad: 0,
    };
    let Some(st) = ENDPOINTS.get_ptr_mut(key) else {
        return;
    };
    let now = unsafe { bpf_ktime_get_ns() };
    let flags = th[13];
    let mut kind = 0;
    // SAFETY: pointer into the map value, valid for this run.
    unsafe {
        (*st).last_ns = now;
        (*st).segments += 1;
        if flags & 0x04 != 0 {
            (*st).last_rst_ns = now;
            kind = EV_RST;
        } else if flags & 0x01 != 0 {
            (*st).last_fin_ns = now;
            kind = EV_FIN;
        }
    }
    if kind != 0 {
        let ev = Event {
            kind,
            ifindex: unsafe { (*ctx.ctx).ingress_ifindex },
            at_ns: now,
            addr: l3.src,
            family: l3.family,
            port: key.port,
            ..Event::default()
        };
        let _ = EVENTS.output::<Event>(&ev, 0);
    }
}

#[inline(always)]
fn count(i: u32) {
    if let Some(c) = COUNTERS.get_ptr_mut(i) {
        // SAFETY: per-CPU slot, valid for this run.
        unsafe { *c += 1 };
    }
}

#[inline(always)]
fn settings() -> Settings {
    SETTINGS.get(0).copied().unwrap_or_default()
}

#[inline(always)]
fn quorum() -> bool {
    settings().flags & SETTING_QUORUM != 0
}

#[inline(always)]
fn key_of(family: u8, addr: &[u8; 16]) -> VipKey {
    VipKey {
        addr: *addr,
        family,
        _pad: [0; 3],
    }
}

#[inline(always)]
fn is_voter(family: u8, addr: &[u8; 16]) -> bool {
    // SAFETY: read-only lookup.
    unsafe { VOTERS.get(key_of(family, addr)) }.is_some()
}

/// With a quorum, a datagram to the quorum port must come from a voter.
#[inline(always)]
fn quorum_voter_ok(ctx: &XdpContext, l3: &L3) -> bool {
    let s = settings();
    if s.flags & SETTING_QUORUM == 0 || !enforcing() {
        return true;
    }
    let Some(uh) = load::<[u8; 4]>(ctx, l3.off) else {
        return true;
    };
    if u16::from_be_bytes([uh[2], uh[3]]) != s.quorum_port {
        return true;
    }
    is_voter(l3.family, &l3.src)
}

/// The daemon's heartbeat, if it ever wrote one.
#[inline(always)]
fn heartbeat() -> u64 {
    HEARTBEAT.get(0).copied().unwrap_or(0)
}

/// Whether this node may serve the VIP now: it holds it, its daemon is
/// alive, and (with a quorum) its lease runs. `owner_at`: when another host
/// last announced it (0: never).
#[inline(always)]
fn serving(e: &VipState, now: u64, owner_at: u64) -> bool {
    if e.flags & VIP_HELD == 0 {
        return false;
    }
    let s = settings();
    let hb = heartbeat();
    if hb != 0 && s.stale_ns != 0 && now > hb + s.stale_ns {
        return false;
    }
    // Gone quiet, and someone else has taken the VIP since.
    if hb != 0 && s.quiet_ns != 0 && now > hb + s.quiet_ns && owner_at > hb {
        return false;
    }
    if e.flags & VIP_LEASE != 0 {
        let until = LEASES.get(e.slot).map_or(0, |l| l.until_ns);
        // SAFETY: no arguments.
        if unsafe { bpf_ktime_get_boot_ns() } >= until {
            return false;
        }
    }
    true
}

/// Since when frames for a VIP we do not serve may go to a new owner.
#[inline(always)]
fn fenced_since(e: &VipState) -> u64 {
    if e.flags & VIP_HELD != 0 {
        heartbeat()
    } else {
        // A node that preempts or takes a switchover announces the VIP
        // just before its advert makes this one give it up.
        e.released_ns.saturating_sub(ANNOUNCE_LEAD_NS)
    }
}

/// How long before our release another host's announcement still names
/// the VIP's new owner.
const ANNOUNCE_LEAD_NS: u64 = 100_000_000;

/// Gratuitous ARP from another host for one of our VIPs: it owns it now.
/// ARP requests for a VIP we may not serve: not answered from here.
#[inline(always)]
fn arp(ctx: &XdpContext) -> Option<u32> {
    let eth: [u8; ETH_HLEN] = load(ctx, 0)?;
    let mut proto = u16::from_be_bytes([eth[12], eth[13]]);
    let mut off = ETH_HLEN;
    if proto == ETH_P_8021Q || proto == ETH_P_8021AD {
        let tag: [u8; VLAN_HLEN] = load(ctx, off)?;
        proto = u16::from_be_bytes([tag[2], tag[3]]);
        off += VLAN_HLEN;
    }
    if proto != ETH_P_ARP {
        return None;
    }
    let a: [u8; 28] = load(ctx, off)?;
    // Ethernet / IPv4 only.
    if a[0..2] != [0, 1] || a[2..4] != [8, 0] || a[4] != 6 || a[5] != 4 {
        return Some(xdp_action::XDP_PASS);
    }
    let op = u16::from_be_bytes([a[6], a[7]]);
    let mut sha = [0u8; 6];
    sha.copy_from_slice(&a[8..14]);
    let mut spa = [0u8; 16];
    spa[..4].copy_from_slice(&a[14..18]);
    let mut tpa = [0u8; 16];
    tpa[..4].copy_from_slice(&a[24..28]);
    // SAFETY: no arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    let skey = key_of(FAMILY_V4, &spa);
    // SAFETY: read-only lookup within this run.
    if let Some(e) = unsafe { VIPS.get(skey) }
        && sha != e.own_mac
    {
        learn_owner(&skey, sha, now);
    }
    if op == 1 && spa != tpa {
        let tkey = key_of(FAMILY_V4, &tpa);
        // SAFETY: read-only lookup within this run.
        if let Some(e) = unsafe { VIPS.get(tkey) } {
            let owner_at = owner(&tkey).map_or(0, |o| o.at_ns);
            if !serving(e, now, owner_at) {
                count(COUNT_ARP_SUPPRESSED);
                return Some(xdp_action::XDP_DROP);
            }
        }
    }
    Some(xdp_action::XDP_PASS)
}

#[inline(always)]
fn learn_owner(key: &VipKey, mac: [u8; 6], now: u64) {
    let o = Owner {
        mac,
        _pad: [0; 2],
        at_ns: now,
    };
    let _ = OWNERS.insert(key, o, 0);
    count(COUNT_OWNER_SEEN);
}

#[inline(always)]
fn owner(key: &VipKey) -> Option<Owner> {
    // SAFETY: read-only lookup, copied out.
    unsafe { OWNERS.get(*key) }.copied()
}

/// IPv6: an unsolicited neighbour advertisement for a VIP from another MAC
/// (it owns it now); a solicitation for a VIP we may not serve (dropped).
#[inline(always)]
fn ndp(ctx: &XdpContext, l3: &L3) -> Option<u32> {
    let icmp: [u8; 24] = load(ctx, l3.off)?;
    let mut target = [0u8; 16];
    target.copy_from_slice(&icmp[8..24]);
    let key = key_of(FAMILY_V6, &target);
    // SAFETY: read-only lookup within this run.
    let e = unsafe { VIPS.get(key) }?;
    // SAFETY: no arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    let eth: [u8; 12] = load(ctx, 0)?;
    let mut src_mac = [0u8; 6];
    src_mac.copy_from_slice(&eth[6..12]);
    match icmp[0] {
        136 if src_mac != e.own_mac => {
            learn_owner(&key, src_mac, now);
            Some(xdp_action::XDP_PASS)
        }
        135 => {
            let owner_at = owner(&key).map_or(0, |o| o.at_ns);
            if serving(e, now, owner_at) {
                Some(xdp_action::XDP_PASS)
            } else {
                count(COUNT_ARP_SUPPRESSED);
                Some(xdp_action::XDP_DROP)
            }
        }
        _ => None,
    }
}

/// A frame for one of our VIPs: served here, sent on to the VIP's new
/// owner, or (its Redis port) answered with a reset.
#[inline(always)]
fn vip(ctx: &XdpContext, l3: &L3) -> u32 {
    let key = key_of(l3.family, &l3.dst);
    // SAFETY: read-only lookup within this run.
    let Some(e) = (unsafe { VIPS.get(key) }) else {
        return xdp_action::XDP_PASS;
    };
    // SAFETY: no arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    let o = owner(&key);
    let owner_at = o.map_or(0, |o| o.at_ns);
    if serving(e, now, owner_at) {
        return xdp_action::XDP_PASS;
    }
    let held = e.flags & VIP_HELD != 0;
    if !held && now >= e.redirect_until_ns {
        // Not ours, and the hand-over window is past: the kernel decides.
        return xdp_action::XDP_PASS;
    }
    let eth: [u8; 12] = match load(ctx, 0) {
        Some(x) => x,
        None => return xdp_action::XDP_PASS,
    };
    // Only what is sent to this host: a switch floods frames for a MAC it
    // has lost track of (the owner's link went down) to every port, and
    // those are not ours to answer or carry.
    if eth[0..6] != e.own_mac {
        return xdp_action::XDP_PASS;
    }
    let redis = if l3.proto == IPPROTO_TCP {
        load::<[u8; 14]>(ctx, l3.off)
            .filter(|th| u16::from_be_bytes([th[2], th[3]]) == e.redis_port)
            .map(|th| th[13])
    } else {
        None
    };
    let new_owner =
        o.filter(|o| o.at_ns > fenced_since(e) && o.mac != e.own_mac && o.mac[..] != eth[6..12]);
    match (redis, new_owner) {
        // The VIP has a new home: everything for it goes there (it resets
        // what it has no socket for; connections made through here live).
        (_, Some(o)) => redirect(ctx, &o, e),
        (Some(f), None) if f & TCP_RST != 0 => xdp_action::XDP_DROP,
        // Nobody has it yet (or here it is fenced): reset, so the client
        // reconnects at once instead of waiting on its timer.
        (Some(_), None) => reset(ctx, l3, e),
        (None, None) => xdp_action::XDP_PASS,
    }
}

/// Sends the frame on to `o` out of the interface it came in on.
#[inline(always)]
fn redirect(ctx: &XdpContext, o: &Owner, e: &VipState) -> u32 {
    if write(ctx, 0, &o.mac).is_none() || write(ctx, 6, &e.own_mac).is_none() {
        return xdp_action::XDP_PASS;
    }
    count(COUNT_REDIRECTED);
    xdp_action::XDP_TX
}

/// Folds a 32-bit one's-complement sum.
#[inline(always)]
fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

#[inline(always)]
fn sum16(data: &[u8], mut sum: u32) -> u32 {
    let mut i = 0;
    while i + 1 < data.len() {
        sum += u16::from_be_bytes([data[i], data[i + 1]]) as u32;
        i += 2;
    }
    sum
}

/// Turns a TCP segment into the reset a closed port answers it with, and
/// sends it back out (RFC 793: a reset's sequence number is the segment's
/// acknowledgment number, or it acknowledges the segment).
#[inline(always)]
fn reset(ctx: &XdpContext, l3: &L3, e: &VipState) -> u32 {
    let Some(th) = load::<[u8; 20]>(ctx, l3.off) else {
        return xdp_action::XDP_DROP;
    };
    let flags = th[13];
    let doff = ((th[12] >> 4) as usize) * 4;
    if doff < 20 || l3.len < doff {
        return xdp_action::XDP_DROP;
    }
    let payload = (l3.len - doff) as u32;
    let seq = u32::from_be_bytes([th[4], th[5], th[6], th[7]]);
    let ack = u32::from_be_bytes([th[8], th[9], th[10], th[11]]);
    let mut t = [0u8; 20];
    t[0..2].copy_from_slice(&th[2..4]);
    t[2..4].copy_from_slice(&th[0..2]);
    if flags & TCP_ACK != 0 {
        t[4..8].copy_from_slice(&ack.to_be_bytes());
        t[13] = TCP_RST;
    } else {
        let plus = payload + u32::from(flags & TCP_SYN != 0) + u32::from(flags & TCP_FIN != 0);
        t[8..12].copy_from_slice(&seq.wrapping_add(plus).to_be_bytes());
        t[13] = TCP_RST | TCP_ACK;
    }
    t[12] = 5 << 4;
    let Some(eth) = load::<[u8; 12]>(ctx, 0) else {
        return xdp_action::XDP_DROP;
    };
    let mut m = [0u8; 12];
    m[0..6].copy_from_slice(&eth[6..12]);
    m[6..12].copy_from_slice(&e.own_mac);
    let end = if l3.family == FAMILY_V4 {
        if l3.ihl != IPV4_MIN_HLEN {
            return xdp_action::XDP_DROP;
        }
        let mut ip = [0u8; 20];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&40u16.to_be_bytes());
        ip[6] = 0x40;
        ip[8] = 64;
        ip[9] = IPPROTO_TCP;
        ip[12..16].copy_from_slice(&l3.dst[..4]);
        ip[16..20].copy_from_slice(&l3.src[..4]);
        let c = fold(sum16(&ip, 0));
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        let mut ps = sum16(&ip[12..20], 0);
        ps += IPPROTO_TCP as u32 + 20;
        let c = fold(sum16(&t, ps));
        t[16..18].copy_from_slice(&c.to_be_bytes());
        if write(ctx, l3.ip_off, &ip).is_none() {
            return xdp_action::XDP_DROP;
        }
        l3.ip_off + 20
    } else {
        let Some(h) = load::<[u8; 8]>(ctx, l3.ip_off) else {
            return xdp_action::XDP_DROP;
        };
        let mut ip = [0u8; 8];
        ip[0..4].copy_from_slice(&h[0..4]);
        ip[4..6].copy_from_slice(&20u16.to_be_bytes());
        ip[6] = IPPROTO_TCP;
        ip[7] = 64;
        let mut ps = sum16(&l3.src, 0);
        ps = sum16(&l3.dst, ps);
        ps += IPPROTO_TCP as u32 + 20;
        let c = fold(sum16(&t, ps));
        t[16..18].copy_from_slice(&c.to_be_bytes());
        if write(ctx, l3.ip_off, &ip).is_none()
            || write(ctx, l3.ip_off + 8, &l3.dst).is_none()
            || write(ctx, l3.ip_off + 24, &l3.src).is_none()
        {
            return xdp_action::XDP_DROP;
        }
        l3.ip_off + IPV6_HLEN
    };
    if write(ctx, end, &t).is_none() || write(ctx, 0, &m).is_none() {
        return xdp_action::XDP_DROP;
    }
    let len = ctx.data_end() - ctx.data();
    let want = end + 20;
    if len > want {
        // SAFETY: shrinking the frame to what was just written.
        if unsafe { bpf_xdp_adjust_tail(ctx.ctx, -((len - want) as i32)) } != 0 {
            return xdp_action::XDP_DROP;
        }
    }
    count(COUNT_RESET);
    xdp_action::XDP_TX
}

/// Writes `v` into the packet at `off` (a helper call: no packet pointer
/// for the verifier to track), or `None` when the frame is too short.
#[inline(always)]
fn write<T: Copy>(ctx: &XdpContext, off: usize, v: &T) -> Option<()> {
    if off > MAX_OFF {
        return None;
    }
    let mut b = *v;
    // SAFETY: the helper checks the bounds; `b` is a valid buffer of T.
    let r = unsafe {
        bpf_xdp_store_bytes(
            ctx.ctx,
            off as u32,
            (&mut b as *mut T).cast(),
            size_of::<T>() as u32,
        )
    };
    (r == 0).then_some(())
}

/// Copies `T` out of the packet at `off` with a helper call (used where
/// the code between reading and writing would make the verifier lose a
/// packet pointer's range).
#[inline(always)]
fn load<T: Copy + Default>(ctx: &XdpContext, off: usize) -> Option<T> {
    if off > MAX_OFF {
        return None;
    }
    let mut b = T::default();
    // SAFETY: the helper checks the bounds; `b` is a valid buffer of T.
    let r = unsafe {
        bpf_xdp_load_bytes(
            ctx.ctx,
            off as u32,
            (&mut b as *mut T).cast(),
            size_of::<T>() as u32,
        )
    };
    (r == 0).then_some(b)
}

/// Replies from a VIP's Redis port after its lease ran out are dropped on
/// the way out: no write is acknowledged past the lease, even one that
/// came in before it ended or that a stalled Redis answers late.
#[classifier]
pub fn ha_tc_egress(ctx: TcContext) -> i32 {
    match egress(&ctx) {
        Some(true) => {
            count(COUNT_EGRESS_FENCED);
            TC_ACT_SHOT
        }
        _ => TC_ACT_OK,
    }
}

#[inline(always)]
fn egress(ctx: &TcContext) -> Option<bool> {
    let eth: [u8; ETH_HLEN] = ctx.load(0).ok()?;
    let mut proto = u16::from_be_bytes([eth[12], eth[13]]);
    let mut off = ETH_HLEN;
    if proto == ETH_P_8021Q || proto == ETH_P_8021AD {
        let tag: [u8; VLAN_HLEN] = ctx.load(off).ok()?;
        proto = u16::from_be_bytes([tag[2], tag[3]]);
        off += VLAN_HLEN;
    }
    let mut src = [0u8; 16];
    let (family, l4) = if proto == ETH_P_IP {
        let ip: [u8; IPV4_MIN_HLEN] = ctx.load(off).ok()?;
        if ip[9] != IPPROTO_TCP {
            return None;
        }
        src[..4].copy_from_slice(&ip[12..16]);
        (FAMILY_V4, off + ((ip[0] & 0x0f) as usize) * 4)
    } else if proto == ETH_P_IPV6 {
        let ip: [u8; IPV6_HLEN] = ctx.load(off).ok()?;
        if ip[6] != IPPROTO_TCP {
            return None;
        }
        src.copy_from_slice(&ip[8..24]);
        (FAMILY_V6, off + IPV6_HLEN)
    } else {
        return None;
    };
    // SAFETY: read-only lookup within this run.
    let e = unsafe { VIPS.get(key_of(family, &src)) }?;
    if e.flags & VIP_LEASE == 0 {
        return None;
    }
    let th: [u8; 16] = ctx.load(l4).ok()?;
    if u16::from_be_bytes([th[0], th[1]]) != e.redis_port {
        return None;
    }
    // A reset carries no reply: the old master aborting its clients'
    // connections (so that they reconnect to the new one at once) goes out.
    // So do the tickles that follow those resets (a bare ACK, sequence and
    // acknowledgment 0, the tickles' window): a lost reset is not the end.
    let tickle = th[13] == TCP_ACK
        && th[4..12] == [0u8; 8]
        && u16::from_be_bytes([th[14], th[15]]) == TICKLE_WINDOW;
    if th[13] & TCP_RST != 0 || tickle {
        return Some(false);
    }
    let until = LEASES.get(e.slot).map_or(0, |l| l.until_ns);
    // SAFETY: no arguments.
    Some(unsafe { bpf_ktime_get_boot_ns() } >= until)
}

/// Copies `T` out of the packet at `off`, or `None` when the frame is too short.
#[inline(always)]
fn read<T: Copy>(ctx: &XdpContext, off: usize) -> Option<T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if off > MAX_OFF {
        return None;
    }
    if start + off + size_of::<T>() > end {
        return None;
    }
    // SAFETY: bounds checked against data_end just above.
    Some(unsafe { core::ptr::read_unaligned((start + off) as *const T) })
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // SAFETY: the verifier proves the program cannot panic at run time.
    unsafe { core::hint::unreachable_unchecked() }
}
