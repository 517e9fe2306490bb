//! ha-daemon's XDP program.
//!
//! It timestamps every VRRP advertisement (IPv4 protocol 112, IPv6 next header
//! 112, untagged or with one 802.1Q / 802.1ad tag) in the `ADVERTS` map, keyed by
//! (ifindex, VRID, source address), on the kernel's clock at arrival. The daemon
//! decides master-down from these timestamps, so a daemon that is scheduled late
//! does not mistake its own lateness for a dead master. Every packet is passed on.
#![no_std]
#![no_main]

use core::mem::size_of;

use aya_ebpf::{
    bindings::{BPF_NOEXIST, xdp_action},
    helpers::bpf_ktime_get_ns,
    macros::{map, xdp},
    maps::HashMap,
    programs::XdpContext,
};
use ha_common::{
    ADVERTS_MAX_ENTRIES, AdvertKey, AdvertRecord, ETH_P_8021AD, ETH_P_8021Q, ETH_P_IP, ETH_P_IPV6,
    FAMILY_V4, FAMILY_V6, IPPROTO_VRRP,
};

#[map(name = "ADVERTS")]
static ADVERTS: HashMap<AdvertKey, AdvertRecord> =
    HashMap::with_max_entries(ADVERTS_MAX_ENTRIES, 0);

const ETH_HLEN: usize = 14;
const VLAN_HLEN: usize = 4;
const IPV4_MIN_HLEN: usize = 20;
const IPV6_HLEN: usize = 40;
/// Fixed part of a VRRP header common to v2 and v3: version/type, VRID,
/// priority, address count, and (v2) auth type + interval or (v3) interval.
const VRRP_FIXED_LEN: usize = 8;

#[xdp]
pub fn ha_xdp(ctx: XdpContext) -> u32 {
    // Observation only: whatever the parse finds, the packet goes on.
    let _ = observe(&ctx);
    xdp_action::XDP_PASS
}

/// What the parse of one frame found: where the VRRP header starts and who sent it.
struct Vrrp {
    off: usize,
    family: u8,
    addr: [u8; 16],
    vlan: u16,
}

#[inline(always)]
fn observe(ctx: &XdpContext) -> Option<()> {
    let v = parse(ctx)?;
    let hdr: [u8; VRRP_FIXED_LEN] = read(ctx, v.off)?;
    let version = hdr[0] >> 4;
    if version != 2 && version != 3 {
        return None;
    }
    let adver_int_cs = if version == 3 {
        (u16::from_be_bytes([hdr[4], hdr[5]])) & 0x0fff
    } else {
        hdr[5] as u16 * 100
    };
    let key = AdvertKey {
        ifindex: unsafe { (*ctx.ctx).ingress_ifindex },
        vrid: hdr[1],
        family: v.family,
        _pad: [0; 2],
        addr: v.addr,
    };
    let now = unsafe { bpf_ktime_get_ns() };
    if let Some(rec) = ADVERTS.get_ptr_mut(key) {
        // SAFETY: the pointer is into the map value, valid for this program run.
        // The increment is not atomic (core has no atomics for this target); one
        // sender's adverts hash to one RX queue, so two CPUs racing on one key
        // would take two senders with the same address.
        unsafe {
            (*rec).last_ns = now;
            (*rec).priority = hdr[2];
            (*rec).version = version;
            (*rec).vlan = v.vlan;
            (*rec).adver_int_cs = adver_int_cs;
            (*rec).count += 1;
        }
    } else {
        let rec = AdvertRecord {
            last_ns: now,
            count: 1,
            priority: hdr[2],
            version,
            vlan: v.vlan,
            adver_int_cs,
            _pad: [0; 2],
        };
        // NOEXIST: another CPU may have created it meanwhile; losing one count
        // then is harmless, overwriting its count is not.
        let _ = ADVERTS.insert(key, rec, BPF_NOEXIST as u64);
    }
    Some(())
}

/// Finds a VRRP header after Ethernet, at most one VLAN tag, and IPv4 or IPv6.
#[inline(always)]
fn parse(ctx: &XdpContext) -> Option<Vrrp> {
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
    let mut addr = [0u8; 16];
    if proto == ETH_P_IP {
        let ip: [u8; IPV4_MIN_HLEN] = read(ctx, off)?;
        if ip[0] >> 4 != 4 || ip[9] != IPPROTO_VRRP {
            return None;
        }
        let ihl = ((ip[0] & 0x0f) as usize) * 4;
        if ihl < IPV4_MIN_HLEN {
            return None;
        }
        addr[..4].copy_from_slice(&ip[12..16]);
        Some(Vrrp {
            off: off + ihl,
            family: FAMILY_V4,
            addr,
            vlan,
        })
    } else if proto == ETH_P_IPV6 {
        let ip: [u8; IPV6_HLEN] = read(ctx, off)?;
        if ip[0] >> 4 != 6 || ip[6] != IPPROTO_VRRP {
            return None;
        }
        addr.copy_from_slice(&ip[8..24]);
        Some(Vrrp {
            off: off + IPV6_HLEN,
            family: FAMILY_V6,
            addr,
            vlan,
        })
    } else {
        None
    }
}

/// Copies `T` out of the packet at `off`, or `None` when the frame is too short.
#[inline(always)]
fn read<T: Copy>(ctx: &XdpContext, off: usize) -> Option<T> {
    let start = ctx.data();
    let end = ctx.data_end();
    // Bounding the offset keeps the verifier's range tracking finite.
    if off > 128 {
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
