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
/// The VIPs this node has: whether it may serve them, and where frames for
/// them go when it may not ([`VipKey`] → [`VipState`]).
pub const MAP_VIPS: &str = "VIPS";
/// Who announced a VIP last (gratuitous ARP / unsolicited NA from another
/// MAC): written by the XDP program ([`VipKey`] → [`Owner`]).
pub const MAP_OWNERS: &str = "OWNERS";
/// Lease deadlines per instance slot ([`Lease`], CLOCK_BOOTTIME), written by
/// the quorum task; past it the VIP's Redis traffic is fenced.
pub const MAP_LEASES: &str = "LEASES";
/// The daemon's heartbeat: one u64 (CLOCK_MONOTONIC ns) it writes every
/// advert interval or so; a stale one means the daemon is gone.
pub const MAP_HEARTBEAT: &str = "HEARTBEAT";
/// With a quorum: the voters' addresses ([`VoterKey`] → u32, unused value);
/// adverts and quorum datagrams from anyone else are dropped.
pub const MAP_VOTERS: &str = "VOTERS";
/// Per-CPU counters, indexed by `COUNT_*`.
pub const MAP_COUNTERS: &str = "COUNTERS";
/// Every map, for pinning.
pub const ALL_MAPS: [&str; 12] = [
    MAP_ADVERTS,
    MAP_INSTANCES,
    MAP_DROPS,
    MAP_ENDPOINTS,
    MAP_EVENTS,
    MAP_SETTINGS,
    MAP_VIPS,
    MAP_OWNERS,
    MAP_LEASES,
    MAP_HEARTBEAT,
    MAP_VOTERS,
    MAP_COUNTERS,
];
/// The TCP window a tickle ACK carries (sequence and acknowledgment 0):
/// the daemon sends them, and the egress fence lets them out.
pub const TICKLE_WINDOW: u16 = 1234;
/// Bumped whenever a map's key or value layout changes: pinned maps are named
/// `<MAP>_v<LAYOUT>`, so a new object never reuses an incompatible pinned map.
pub const LAYOUT: u32 = 2;
pub const VIPS_MAX_ENTRIES: u32 = 256;
pub const LEASES_MAX_ENTRIES: u32 = 256;
pub const VOTERS_MAX_ENTRIES: u32 = 64;
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
/// With a quorum: an advert from an address that is not a voter.
pub const DROP_NOT_VOTER: u32 = 8;
/// With a quorum: a datagram to the quorum port from a non-voter.
pub const DROP_QUORUM_NOT_VOTER: u32 = 9;
pub const DROP_REASONS: u32 = 10;
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
    "not_voter",
    "quorum_not_voter",
];

/// Frames for a VIP this node gave up, sent on to the MAC that announced
/// it since (XDP_TX with the destination MAC rewritten).
pub const COUNT_REDIRECTED: u32 = 0;
/// Segments for a VIP's Redis port this node may not serve, answered with a
/// TCP reset (the client retries at once instead of waiting on its timer).
pub const COUNT_RESET: u32 = 1;
/// ARP requests / neighbour solicitations for a VIP this node may not serve,
/// dropped (another host answers for it).
pub const COUNT_ARP_SUPPRESSED: u32 = 2;
/// Replies from a VIP's Redis port dropped on the way out after the lease
/// ended (TC egress).
pub const COUNT_EGRESS_FENCED: u32 = 3;
/// Announcements of one of our VIPs by another MAC, recorded in OWNERS.
pub const COUNT_OWNER_SEEN: u32 = 4;
pub const COUNTERS: u32 = 5;
pub const COUNTER_NAMES: [&str; COUNTERS as usize] = [
    "redirected",
    "reset",
    "arp_suppressed",
    "egress_fenced",
    "owner_seen",
];

/// `Settings::flags`: validate adverts against [`MAP_INSTANCES`] and drop the
/// invalid ones. Off until the daemon has written its instances.
pub const SETTING_ENFORCE: u32 = 1;
/// `Settings::flags`: a quorum is configured; adverts and quorum datagrams
/// from non-voters ([`MAP_VOTERS`]) are dropped.
pub const SETTING_QUORUM: u32 = 2;

/// `VipState::flags`: this node holds the VIP (VRRP master, address added).
pub const VIP_HELD: u32 = 1;
/// `VipState::flags`: serving also needs the lease in `LEASES[slot]`.
pub const VIP_LEASE: u32 = 2;

/// Event kinds in [`MAP_EVENTS`].
pub const EV_PRIORITY_ZERO: u32 = 1;
pub const EV_NEW_SENDER: u32 = 2;
pub const EV_PRIORITY_CHANGE: u32 = 3;
pub const EV_FIN: u32 = 4;
pub const EV_RST: u32 = 5;
/// Name of the XDP program in the object file.
pub const PROG_XDP: &str = "ha_xdp";
/// Name of the TC egress program (the lease fence's outgoing half).
pub const PROG_TC_EGRESS: &str = "ha_tc_egress";
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
    /// UDP port of the quorum (with `SETTING_QUORUM`), host byte order.
    pub quorum_port: u16,
    pub _pad: u16,
    /// The daemon counts as gone when its heartbeat is older than this (ns):
    /// its VIPs are fenced.
    pub stale_ns: u64,
    /// ... or older than this and another host has announced the VIP since:
    /// frames go to that host.
    pub quiet_ns: u64,
}

/// Key of [`MAP_VIPS`], [`MAP_OWNERS`]; also of [`MAP_VOTERS`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct VipKey {
    pub addr: [u8; 16],
    pub family: u8,
    pub _pad: [u8; 3],
}

/// Value of [`MAP_VIPS`]. Written whole by the daemon.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct VipState {
    /// `VIP_*`.
    pub flags: u32,
    /// Index into [`MAP_LEASES`] (with `VIP_LEASE`).
    pub slot: u32,
    /// The Redis port behind the VIP, host byte order: fenced segments to it
    /// get a reset.
    pub redis_port: u16,
    /// This node's MAC on the VIP's interface (source of redirected frames).
    pub own_mac: [u8; 6],
    /// When this node gave the VIP up (CLOCK_MONOTONIC); 0: never.
    pub released_ns: u64,
    /// Frames for the VIP are sent on to its new owner until then.
    pub redirect_until_ns: u64,
}

/// Value of [`MAP_OWNERS`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Owner {
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
    /// When it announced the VIP (CLOCK_MONOTONIC).
    pub at_ns: u64,
}

/// Value of [`MAP_LEASES`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Lease {
    /// CLOCK_BOOTTIME ns; the VIP's Redis traffic is fenced from then on (0:
    /// fenced).
    pub until_ns: u64,
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
    unsafe impl aya::Pod for super::VipKey {}
    unsafe impl aya::Pod for super::VipState {}
    unsafe impl aya::Pod for super::Owner {}
    unsafe impl aya::Pod for super::Lease {}
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
        assert_eq!(size_of::<Settings>(), 24);
        assert_eq!(size_of::<VipKey>(), 20);
        assert_eq!(size_of::<VipState>(), 32);
        assert_eq!(align_of::<VipState>(), 8);
        assert_eq!(size_of::<Owner>(), 16);
        assert_eq!(size_of::<Lease>(), 8);
        assert_eq!(size_of::<EndpointKey>(), 20);
        assert_eq!(size_of::<EndpointState>(), 32);
        assert_eq!(size_of::<Event>(), 40);
    }
}
