//! What both sides of the eBPF maps agree on: map names, keys, values, constants.
//!
//! Every type is `#[repr(C)]` with its padding spelled out as fields, so the XDP
//! program can zero-initialise a key completely (the verifier rejects map keys
//! with uninitialised bytes) and both sides see the same layout.
#![no_std]

/// IP protocol number / IPv6 next header of VRRP (RFC 5798 section 5.1.1.4).
pub const IPPROTO_VRRP: u8 = 112;
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;

/// Name of the per-sender advert map in the object file.
pub const MAP_ADVERTS: &str = "ADVERTS";
/// Name of the XDP program in the object file.
pub const PROG_XDP: &str = "ha_xdp";
/// Room for adverts from this many (interface, VRID, sender) triples.
pub const ADVERTS_MAX_ENTRIES: u32 = 1024;

/// Address family tag used in map keys.
pub const FAMILY_V4: u8 = 4;
pub const FAMILY_V6: u8 = 6;

/// Key of [`MAP_ADVERTS`]: one entry per interface, VRID and sender address.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct AdvertKey {
    /// Interface the advert arrived on.
    pub ifindex: u32,
    pub vrid: u8,
    /// [`FAMILY_V4`] or [`FAMILY_V6`].
    pub family: u8,
    pub _pad: [u8; 2],
    /// Source address; an IPv4 address fills the first 4 bytes, the rest are zero.
    pub addr: [u8; 16],
}

/// Value of [`MAP_ADVERTS`]: what the last advert from that sender said and when.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct AdvertRecord {
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) when the last advert arrived.
    pub last_ns: u64,
    /// Adverts seen from this sender since the entry was created.
    pub count: u64,
    /// Priority field of the last advert.
    pub priority: u8,
    /// VRRP version of the last advert (2 or 3).
    pub version: u8,
    /// 802.1Q VLAN id the advert carried, 0 when untagged.
    pub vlan: u16,
    /// Advertisement interval of the last advert in centiseconds
    /// (v3: the 12-bit field as sent; v2: whole seconds times 100).
    pub adver_int_cs: u16,
    pub _pad: [u8; 2],
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain #[repr(C)] structs of integers with explicit padding fields:
    // every bit pattern is valid and there are no implicit padding bytes.
    unsafe impl aya::Pod for super::AdvertKey {}
    unsafe impl aya::Pod for super::AdvertRecord {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{align_of, size_of};

    // The eBPF side is compiled by another compiler for another target; pin the
    // layout so a field change that shifts offsets fails here, not in the kernel.
    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<AdvertKey>(), 24);
        assert_eq!(align_of::<AdvertKey>(), 4);
        assert_eq!(size_of::<AdvertRecord>(), 24);
        assert_eq!(align_of::<AdvertRecord>(), 8);
    }
}
