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
#![no_std]
#![no_main]

use core::mem::size_of;

use aya_ebpf::{
    bindings::{BPF_NOEXIST, xdp_action},
    helpers::bpf_ktime_get_ns,
    macros::{map, xdp},
    maps::{Array, HashMap, PerCpuArray, RingBuf},
    programs::XdpContext,
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

const ETH_HLEN: usize = 14;
const VLAN_HLEN: usize = 4;
const IPV4_MIN_HLEN: usize = 20;
const IPV6_HLEN: usize = 40;
const IPPROTO_TCP: u8 = 6;
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
    match parse(&ctx) {
        Some(l3) if l3.proto == IPPROTO_VRRP => vrrp(&ctx, &l3),
        Some(l3) if l3.proto == IPPROTO_TCP => {
            tcp(&ctx, &l3);
            xdp_action::XDP_PASS
        }
        _ => xdp_action::XDP_PASS,
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
