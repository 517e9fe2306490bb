//! VRRP advertisement codec: v2 (RFC 3768) and v3 (RFC 5798 / RFC 9568).
//!
//! `decode` checks everything that is a property of the packet alone (length,
//! version, type, checksum, address count, auth type); what depends on the
//! local configuration (VRID known, password, interval) is for the receiver.
//! No input makes it panic.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const IPPROTO_VRRP: u8 = 112;
pub const MCAST_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
pub const MCAST_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
/// Fixed header: version/type, VRID, priority, count, (auth type, interval | interval), checksum.
pub const HEADER_LEN: usize = 8;
/// VRRPv2 always carries 8 bytes of authentication data after the addresses.
pub const V2_AUTH_LEN: usize = 8;
const TYPE_ADVERTISEMENT: u8 = 1;
pub const AUTH_NONE: u8 = 0;
pub const AUTH_SIMPLE: u8 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Version {
    V2,
    V3,
}

impl Version {
    pub fn number(self) -> u8 {
        match self {
            Version::V2 => 2,
            Version::V3 => 3,
        }
    }
}

/// A decoded advertisement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    pub version: Version,
    pub vrid: u8,
    pub priority: u8,
    /// Advertisement interval in centiseconds (v2's whole seconds times 100).
    pub interval_cs: u16,
    pub addrs: Vec<IpAddr>,
    /// v2 authentication: `AUTH_NONE` or `AUTH_SIMPLE` with its 8 bytes.
    pub auth_type: u8,
    pub auth_data: [u8; 8],
}

/// Why a packet is not a valid advertisement. Each is counted by reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("truncated: {len} bytes, a VRRP advert needs at least {need}")]
    Truncated { len: usize, need: usize },
    #[error("unsupported VRRP version {0} (valid: 2 or 3)")]
    Version(u8),
    #[error("unknown VRRP packet type {0} (valid: 1, advertisement)")]
    Type(u8),
    #[error("bad checksum {got:#06x}")]
    Checksum { got: u16 },
    #[error("address count {count} does not fit the {len}-byte packet")]
    AddressCount { count: u8, len: usize },
    #[error("VRRPv2 over IPv6 does not exist")]
    V2OverIpv6,
    #[error("unknown VRRPv2 authentication type {0} (valid: 0 none, 1 simple password)")]
    AuthType(u8),
    #[error("advert interval is zero")]
    ZeroInterval,
    #[error("source and destination address families differ")]
    Family,
}

impl PacketError {
    /// Short stable name, for counters and metrics labels.
    pub fn reason(&self) -> &'static str {
        match self {
            PacketError::Truncated { .. } => "truncated",
            PacketError::Version(_) => "version",
            PacketError::Type(_) => "type",
            PacketError::Checksum { .. } => "checksum",
            PacketError::AddressCount { .. } => "address_count",
            PacketError::V2OverIpv6 => "v2_over_ipv6",
            PacketError::AuthType(_) => "auth_type",
            PacketError::ZeroInterval => "zero_interval",
            PacketError::Family => "family",
        }
    }
}

use crate::net::checksum::{fold, sum as ones_sum};

/// The sum of the pseudo-header v3 checksums cover (RFC 5798 section 5.2.8).
fn pseudo_header(src: IpAddr, dst: IpAddr, len: usize) -> Result<u32, PacketError> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut acc = ones_sum(0, &s.octets());
            acc = ones_sum(acc, &d.octets());
            Ok(acc + u32::from(IPPROTO_VRRP) + len as u32)
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut acc = ones_sum(0, &s.octets());
            acc = ones_sum(acc, &d.octets());
            Ok(acc + (len as u32 >> 16) + (len as u32 & 0xffff) + u32::from(IPPROTO_VRRP))
        }
        _ => Err(PacketError::Family),
    }
}

/// Checksum for `msg` (whose checksum field is zero or ignored).
fn checksum(version: Version, msg: &[u8], src: IpAddr, dst: IpAddr) -> Result<u16, PacketError> {
    let acc = match version {
        Version::V2 => 0,
        Version::V3 => pseudo_header(src, dst, msg.len())?,
    };
    // Skip the checksum field itself.
    let acc = ones_sum(ones_sum(acc, &msg[..6]), &msg[8..]);
    Ok(fold(acc))
}

/// Decodes the VRRP payload of an IP packet from `src` to `dst`.
pub fn decode(msg: &[u8], src: IpAddr, dst: IpAddr) -> Result<Advert, PacketError> {
    if msg.len() < HEADER_LEN {
        return Err(PacketError::Truncated {
            len: msg.len(),
            need: HEADER_LEN,
        });
    }
    let version = match msg[0] >> 4 {
        2 => Version::V2,
        3 => Version::V3,
        v => return Err(PacketError::Version(v)),
    };
    if msg[0] & 0x0f != TYPE_ADVERTISEMENT {
        return Err(PacketError::Type(msg[0] & 0x0f));
    }
    let v6 = src.is_ipv6();
    if v6 != dst.is_ipv6() {
        return Err(PacketError::Family);
    }
    if version == Version::V2 && v6 {
        return Err(PacketError::V2OverIpv6);
    }
    let count = msg[3];
    let alen = if v6 { 16 } else { 4 };
    let tail = if version == Version::V2 {
        V2_AUTH_LEN
    } else {
        0
    };
    let need = HEADER_LEN + usize::from(count) * alen + tail;
    if msg.len() < need {
        // A v2 packet without its auth data, or a count larger than the packet.
        if msg.len() < HEADER_LEN + usize::from(count) * alen {
            return Err(PacketError::AddressCount {
                count,
                len: msg.len(),
            });
        }
        return Err(PacketError::Truncated {
            len: msg.len(),
            need,
        });
    }
    let got = u16::from_be_bytes([msg[6], msg[7]]);
    // Trailing bytes beyond `need` are padding some senders add; the checksum
    // covers the whole VRRP message as received.
    if checksum(version, msg, src, dst)? != got {
        return Err(PacketError::Checksum { got });
    }
    let (interval_cs, auth_type) = match version {
        Version::V2 => (u16::from(msg[5]) * 100, msg[4]),
        Version::V3 => (u16::from_be_bytes([msg[4], msg[5]]) & 0x0fff, AUTH_NONE),
    };
    if interval_cs == 0 {
        return Err(PacketError::ZeroInterval);
    }
    if auth_type > AUTH_SIMPLE {
        return Err(PacketError::AuthType(auth_type));
    }
    let mut addrs = Vec::with_capacity(usize::from(count));
    for chunk in msg[HEADER_LEN..HEADER_LEN + usize::from(count) * alen].chunks_exact(alen) {
        addrs.push(if v6 {
            let mut a = [0u8; 16];
            a.copy_from_slice(chunk);
            IpAddr::V6(Ipv6Addr::from(a))
        } else {
            IpAddr::V4(Ipv4Addr::new(chunk[0], chunk[1], chunk[2], chunk[3]))
        });
    }
    let mut auth_data = [0u8; 8];
    if version == Version::V2 {
        let start = HEADER_LEN + usize::from(count) * alen;
        auth_data.copy_from_slice(&msg[start..start + V2_AUTH_LEN]);
    }
    Ok(Advert {
        version,
        vrid: msg[1],
        priority: msg[2],
        interval_cs,
        addrs,
        auth_type,
        auth_data,
    })
}

/// Errors the encoder refuses rather than sending a packet peers would drop.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("{0} addresses do not fit in one advert (at most 255)")]
    TooManyAddresses(usize),
    #[error("address {0} is not of the advert's family")]
    MixedFamily(IpAddr),
    #[error(
        "interval {0} cs out of range for VRRP{1} (v2: 100..=25500 in whole seconds, v3: 1..=4095)"
    )]
    Interval(u16, u8),
    #[error("VRRPv2 over IPv6 does not exist")]
    V2OverIpv6,
    #[error(transparent)]
    Packet(#[from] PacketError),
}

/// Encodes `adv` for sending from `src` to `dst` (the checksum depends on both for v3).
pub fn encode(adv: &Advert, src: IpAddr, dst: IpAddr) -> Result<Vec<u8>, EncodeError> {
    let v6 = src.is_ipv6();
    if adv.addrs.len() > 255 {
        return Err(EncodeError::TooManyAddresses(adv.addrs.len()));
    }
    if let Some(a) = adv.addrs.iter().find(|a| a.is_ipv6() != v6) {
        return Err(EncodeError::MixedFamily(*a));
    }
    let mut msg = Vec::with_capacity(HEADER_LEN + adv.addrs.len() * 16 + V2_AUTH_LEN);
    match adv.version {
        Version::V2 => {
            if v6 {
                return Err(EncodeError::V2OverIpv6);
            }
            if adv.interval_cs == 0
                || !adv.interval_cs.is_multiple_of(100)
                || adv.interval_cs > 25500
            {
                return Err(EncodeError::Interval(adv.interval_cs, 2));
            }
            msg.extend_from_slice(&[
                0x20 | TYPE_ADVERTISEMENT,
                adv.vrid,
                adv.priority,
                adv.addrs.len() as u8,
                adv.auth_type,
                (adv.interval_cs / 100) as u8,
                0,
                0,
            ]);
        }
        Version::V3 => {
            if adv.interval_cs == 0 || adv.interval_cs > 0x0fff {
                return Err(EncodeError::Interval(adv.interval_cs, 3));
            }
            let i = adv.interval_cs.to_be_bytes();
            msg.extend_from_slice(&[
                0x30 | TYPE_ADVERTISEMENT,
                adv.vrid,
                adv.priority,
                adv.addrs.len() as u8,
                i[0],
                i[1],
                0,
                0,
            ]);
        }
    }
    for a in &adv.addrs {
        match a {
            IpAddr::V4(a) => msg.extend_from_slice(&a.octets()),
            IpAddr::V6(a) => msg.extend_from_slice(&a.octets()),
        }
    }
    if adv.version == Version::V2 {
        msg.extend_from_slice(&adv.auth_data);
    }
    let c = checksum(adv.version, &msg, src, dst)?;
    msg[6..8].copy_from_slice(&c.to_be_bytes());
    Ok(msg)
}

/// The 8 bytes of a v2 simple password: the first 8 bytes, zero-padded.
pub fn auth_bytes(pass: &str) -> [u8; 8] {
    let mut b = [0u8; 8];
    let n = pass.len().min(8);
    b[..n].copy_from_slice(&pass.as_bytes()[..n]);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    const S4: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1));
    const D4: IpAddr = IpAddr::V4(MCAST_V4);

    fn v3(addrs: Vec<IpAddr>) -> Advert {
        Advert {
            version: Version::V3,
            vrid: 51,
            priority: 100,
            interval_cs: 1,
            addrs,
            auth_type: AUTH_NONE,
            auth_data: [0; 8],
        }
    }

    fn v2() -> Advert {
        Advert {
            version: Version::V2,
            vrid: 52,
            priority: 120,
            interval_cs: 100,
            addrs: vec!["198.18.0.100".parse().unwrap()],
            auth_type: AUTH_SIMPLE,
            auth_data: auth_bytes("secret"),
        }
    }

    #[test]
    fn v3_ipv4_roundtrip() {
        let a = v3(vec![
            "198.18.0.100".parse().unwrap(),
            "198.18.0.101".parse().unwrap(),
        ]);
        let m = encode(&a, S4, D4).unwrap();
        assert_eq!(m.len(), 16);
        assert_eq!(decode(&m, S4, D4).unwrap(), a);
    }

    #[test]
    fn v3_ipv6_roundtrip_and_pseudo_header_matters() {
        let s: IpAddr = "fe80::1".parse().unwrap();
        let d = IpAddr::V6(MCAST_V6);
        let a = v3(vec!["fd18::100".parse().unwrap()]);
        let m = encode(&a, s, d).unwrap();
        assert_eq!(decode(&m, s, d).unwrap(), a);
        // The same bytes from another source fail: the checksum covers addresses.
        let other: IpAddr = "fe80::2".parse().unwrap();
        assert!(matches!(
            decode(&m, other, d),
            Err(PacketError::Checksum { .. })
        ));
    }

    #[test]
    fn v2_roundtrip_with_password_and_no_pseudo_header() {
        let a = v2();
        let m = encode(&a, S4, D4).unwrap();
        assert_eq!(m.len(), 8 + 4 + 8);
        assert_eq!(&m[12..], b"secret\0\0");
        // v2 checksums cover the VRRP message only: any source decodes.
        let other = IpAddr::V4(Ipv4Addr::new(10, 1, 1, 1));
        assert_eq!(decode(&m, other, D4).unwrap(), a);
    }

    /// RFC 5798 section 5.2.8 example computed by hand: a v3 advert for VRID 1,
    /// priority 100, interval 100 cs, one address 192.168.0.1 from 192.168.0.2.
    #[test]
    fn v3_checksum_matches_a_hand_computed_value() {
        let src = IpAddr::V4(Ipv4Addr::new(192, 168, 0, 2));
        let a = Advert {
            vrid: 1,
            interval_cs: 100,
            addrs: vec!["192.168.0.1".parse().unwrap()],
            ..v3(vec![])
        };
        let m = encode(&a, src, D4).unwrap();
        // Pseudo header: c0a8+0002+e000+0012+0070+000c; message: 3101+6401+0064+c0a8+0001.
        let sum: u32 = 0xc0a8
            + 0x0002
            + 0xe000
            + 0x0012
            + 0x0070
            + 0x000c
            + 0x3101
            + 0x6401
            + 0x0064
            + 0xc0a8
            + 0x0001;
        let folded = (sum & 0xffff) + (sum >> 16);
        assert_eq!(u16::from_be_bytes([m[6], m[7]]), !(folded as u16));
    }

    #[test]
    fn every_defect_has_its_error() {
        let good = encode(&v3(vec!["198.18.0.100".parse().unwrap()]), S4, D4).unwrap();
        let with = |i: usize, b: u8| {
            let mut m = good.clone();
            m[i] = b;
            decode(&m, S4, D4)
        };
        assert_eq!(with(0, 0x41), Err(PacketError::Version(4)));
        assert_eq!(with(0, 0x32), Err(PacketError::Type(2)));
        assert!(matches!(with(2, 99), Err(PacketError::Checksum { .. })));
        assert_eq!(
            with(3, 9),
            Err(PacketError::AddressCount { count: 9, len: 12 })
        );
        assert_eq!(
            decode(&good[..7], S4, D4),
            Err(PacketError::Truncated { len: 7, need: 8 })
        );
        let s6: IpAddr = "fe80::1".parse().unwrap();
        let v2m = encode(&v2(), S4, D4).unwrap();
        assert_eq!(
            decode(&v2m, s6, IpAddr::V6(MCAST_V6)),
            Err(PacketError::V2OverIpv6)
        );
        assert_eq!(
            decode(&v2m[..16], S4, D4),
            Err(PacketError::Truncated { len: 16, need: 20 })
        );
        assert_eq!(
            decode(&good, S4, IpAddr::V6(MCAST_V6)),
            Err(PacketError::Family)
        );
        let zero = Advert {
            interval_cs: 0,
            ..v3(vec![])
        };
        assert!(matches!(
            encode(&zero, S4, D4),
            Err(EncodeError::Interval(0, 3))
        ));
        let mut bad_auth = v2();
        bad_auth.auth_type = 2;
        let m = encode(&bad_auth, S4, D4).unwrap();
        assert_eq!(decode(&m, S4, D4), Err(PacketError::AuthType(2)));
    }

    #[test]
    fn encoder_refuses_what_peers_would_drop() {
        let mut a = v2();
        a.interval_cs = 150;
        assert!(matches!(
            encode(&a, S4, D4),
            Err(EncodeError::Interval(150, 2))
        ));
        let mixed = v3(vec!["fd18::1".parse().unwrap()]);
        assert!(matches!(
            encode(&mixed, S4, D4),
            Err(EncodeError::MixedFamily(_))
        ));
    }

    #[test]
    fn no_input_panics() {
        // Every length and a spread of byte values, both families.
        let s6: IpAddr = "fe80::1".parse().unwrap();
        let d6 = IpAddr::V6(MCAST_V6);
        let mut seed = 0x1234_5678u32;
        for len in 0..96 {
            for _ in 0..64 {
                let m: Vec<u8> = (0..len)
                    .map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 17;
                        seed ^= seed << 5;
                        seed as u8
                    })
                    .collect();
                let _ = decode(&m, S4, D4);
                let _ = decode(&m, s6, d6);
            }
        }
    }
}
