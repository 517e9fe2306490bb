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
/// Configured instances the program validates adverts against.
pub const MAP_INSTANCES: &str = "INSTANCES";
/// Per-CPU drop counters, indexed by `DROP_*`.
pub const MAP_DROPS: &str = "DROPS";
/// Watched Redis endpoints and what was last seen from them.
pub const MAP_ENDPOINTS: &str = "ENDPOINTS";
/// Edge events for the daemon (ring buffer of [`Event`]).
pub const MAP_EVENTS: &str = "EVENTS";
/// Program settings, one [`Settings`] at index 0.
pub const MAP_SETTINGS: &str = "SETTINGS";
/// Every map, for pinning.
pub const ALL_MAPS: [&str; 6] = [
    MAP_ADVERTS,
    MAP_INSTANCES,
    MAP_DROPS,
    MAP_ENDPOINTS,
    MAP_EVENTS,
    MAP_SETTINGS,
];
/// Bumped whenever a map's key or value layout changes: pinned maps are named
/// `<MAP>_v<LAYOUT>`, so a new object never reuses an incompatible pinned map.
pub const LAYOUT: u32 = 1;
pub const INSTANCES_MAX_ENTRIES: u32 = 256;
pub const ENDPOINTS_MAX_ENTRIES: u32 = 64;
pub const EVENTS_BYTES: u32 = 64 * 1024;

/// Why the program dropped a packet: index into [`MAP_DROPS`].
pub const DROP_TTL: u32 = 0;
pub const DROP_VERSION: u32 = 1;
pub const DROP_TYPE: u32 = 2;
pub const DROP_LENGTH: u32 = 3;
pub const DROP_UNKNOWN_VRID: u32 = 4;
pub const DROP_AUTH: u32 = 5;
pub const DROP_CHECKSUM: u32 = 6;
pub const DROP_VERSION_MISMATCH: u32 = 7;
pub const DROP_REASONS: u32 = 8;
/// Names of the drop reasons, by index (same words as the daemon's socket path).
pub const DROP_NAMES: [&str; DROP_REASONS as usize] = [
    "ttl",
    "version",
    "type",
    "length",
    "unknown_vrid",
    "auth",
    "checksum",
    "version_mismatch",
];

/// `Settings::flags`: validate adverts against [`MAP_INSTANCES`] and drop the
/// invalid ones. Off until the daemon has written its instances.
pub const SETTING_ENFORCE: u32 = 1;

/// Event kinds in [`MAP_EVENTS`].
pub const EV_PRIORITY_ZERO: u32 = 1;
pub const EV_NEW_SENDER: u32 = 2;
pub const EV_PRIORITY_CHANGE: u32 = 3;
pub const EV_FIN: u32 = 4;
pub const EV_RST: u32 = 5;
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

/// Key of [`MAP_INSTANCES`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct InstanceKey {
    pub ifindex: u32,
    pub vrid: u8,
    pub family: u8,
    pub _pad: [u8; 2],
}

/// Value of [`MAP_INSTANCES`]: what a valid advert for the instance looks like.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct InstanceConf {
    /// 2 or 3.
    pub version: u8,
    /// v2: 0 none, 1 simple password.
    pub auth_type: u8,
    pub _pad: [u8; 6],
    /// v2 simple password, zero-padded.
    pub auth: [u8; 8],
}

/// Value at index 0 of [`MAP_SETTINGS`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Settings {
    pub flags: u32,
    pub _pad: u32,
}

/// Key of [`MAP_ENDPOINTS`]: a Redis server the program watches (its address
/// and port as the TCP source of the segments it sends).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct EndpointKey {
    pub addr: [u8; 16],
    /// Host byte order.
    pub port: u16,
    pub family: u8,
    pub _pad: u8,
}

/// Value of [`MAP_ENDPOINTS`]: kernel times (CLOCK_MONOTONIC ns, 0 = never).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct EndpointState {
    pub last_ns: u64,
    pub last_fin_ns: u64,
    pub last_rst_ns: u64,
    pub segments: u64,
}

/// One record of [`MAP_EVENTS`]: an edge, never one per packet.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Event {
    /// `EV_*`.
    pub kind: u32,
    pub ifindex: u32,
    pub at_ns: u64,
    /// Advert sender, or the Redis endpoint.
    pub addr: [u8; 16],
    pub family: u8,
    pub vrid: u8,
    pub priority: u8,
    pub old_priority: u8,
    /// Endpoint port (FIN / RST), host byte order.
    pub port: u16,
    /// Advert interval in centiseconds.
    pub adver_int_cs: u16,
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain #[repr(C)] structs of integers with explicit padding fields:
    // every bit pattern is valid and there are no implicit padding bytes.
    unsafe impl aya::Pod for super::AdvertKey {}
    unsafe impl aya::Pod for super::AdvertRecord {}
    unsafe impl aya::Pod for super::InstanceKey {}
    unsafe impl aya::Pod for super::InstanceConf {}
    unsafe impl aya::Pod for super::Settings {}
    unsafe impl aya::Pod for super::EndpointKey {}
    unsafe impl aya::Pod for super::EndpointState {}
    unsafe impl aya::Pod for super::Event {}
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
        assert_eq!(size_of::<InstanceKey>(), 8);
        assert_eq!(size_of::<InstanceConf>(), 16);
        assert_eq!(size_of::<Settings>(), 8);
        assert_eq!(size_of::<EndpointKey>(), 20);
        assert_eq!(size_of::<EndpointState>(), 32);
        assert_eq!(size_of::<Event>(), 40);
    }
}
