//! What the kernel knows of an interface: index, addresses.
use std::{
    ffi::CString,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

#[derive(Debug, thiserror::Error)]
#[error("interface {name:?} does not exist (interfaces here: {available})")]
pub struct NoSuchInterface {
    pub name: String,
    pub available: String,
}

/// Index of `name` in this network namespace, or an error listing those that exist.
pub fn index(name: &str) -> Result<u32, NoSuchInterface> {
    let c = CString::new(name).unwrap_or_default();
    // SAFETY: valid NUL-terminated string.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => Err(NoSuchInterface {
            name: name.into(),
            available: names().join(", "),
        }),
        i => Ok(i),
    }
}

/// All interface names in this namespace.
/// The interface's hardware address (from sysfs), if it has one.
pub fn mac(name: &str) -> Option<[u8; 6]> {
    let text = std::fs::read_to_string(format!("/sys/class/net/{name}/address")).ok()?;
    let mut out = [0u8; 6];
    let mut parts = text.trim().split(':');
    for b in &mut out {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// `aa:bb:cc:dd:ee:ff`.
/// The interface's driver as ethtool names it ("veth", "virtio_net",
/// "ixgbe", ...), None if it will not say.
pub fn driver(name: &str) -> Option<String> {
    // struct ethtool_drvinfo (linux/ethtool.h): cmd, then driver[32], and
    // more we do not read; 196 bytes in all.
    #[repr(C)]
    struct DrvInfo {
        cmd: u32,
        driver: [u8; 32],
        rest: [u8; 160],
    }
    const ETHTOOL_GDRVINFO: u32 = 0x0000_0003;
    const SIOCETHTOOL: libc::c_ulong = 0x8946;
    if name.len() >= libc::IFNAMSIZ {
        return None;
    }
    let mut info = DrvInfo {
        cmd: ETHTOOL_GDRVINFO,
        driver: [0; 32],
        rest: [0; 160],
    };
    // SAFETY: a zeroed ifreq is valid; the name fits (checked above).
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, b) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *d = b as libc::c_char;
    }
    ifr.ifr_ifru.ifru_data = (&mut info as *mut DrvInfo).cast();
    // SAFETY: plain socket(2); closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: SIOCETHTOOL with a valid ifreq whose data points at a
    // DrvInfo the size the kernel writes; both live across the call.
    let r = unsafe { libc::ioctl(fd, SIOCETHTOOL as _, &mut ifr) };
    // SAFETY: our fd.
    unsafe { libc::close(fd) };
    if r != 0 {
        return None;
    }
    let end = info.driver.iter().position(|b| *b == 0).unwrap_or(32);
    Some(String::from_utf8_lossy(&info.driver[..end]).into_owned())
}

pub fn fmt_mac(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The MAC this host's ARP table has for `ip` on `iface` (complete entries
/// only), from /proc/net/arp (this network namespace's).
pub fn neighbour_mac(iface: &str, ip: Ipv4Addr) -> Option<[u8; 6]> {
    arp_table_lookup(&std::fs::read_to_string("/proc/net/arp").ok()?, iface, ip)
}

fn arp_table_lookup(table: &str, iface: &str, ip: Ipv4Addr) -> Option<[u8; 6]> {
    table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let (addr, flags, hw, dev) = (f.first()?, f.get(2)?, f.get(3)?, f.get(5)?);
        let complete = u32::from_str_radix(flags.trim_start_matches("0x"), 16).ok()? & 0x2 != 0;
        if *dev != iface || addr.parse::<Ipv4Addr>().ok()? != ip || !complete {
            return None;
        }
        let mut out = [0u8; 6];
        let mut parts = hw.split(':');
        for b in &mut out {
            *b = u8::from_str_radix(parts.next()?, 16).ok()?;
        }
        Some(out)
    })
}

pub fn names() -> Vec<String> {
    let mut v: Vec<String> = pnet_datalink::interfaces()
        .into_iter()
        .map(|i| i.name)
        .collect();
    v.sort();
    v.dedup();
    v
}

/// The addresses on interface `name`.
pub fn addresses(name: &str) -> Vec<IpAddr> {
    subnets(name).into_iter().map(|(a, _)| a).collect()
}

/// The addresses on interface `name` with their prefix lengths, in the
/// kernel's order (pnet's view of getifaddrs).
pub fn subnets(name: &str) -> Vec<(IpAddr, u8)> {
    pnet_datalink::interfaces()
        .into_iter()
        .filter(|i| i.name == name)
        .flat_map(|i| i.ips)
        .map(|n| (n.ip(), n.prefix()))
        .collect()
}

/// Whether `vip` lies in one of `subnets` (other than a host route to itself):
/// a VIP outside every subnet of its interface is reachable only with extra
/// routes, which is usually a typo.
pub fn in_some_subnet(vip: IpAddr, subnets: &[(IpAddr, u8)]) -> bool {
    subnets.iter().any(|&(a, p)| {
        a != vip
            && match (a, vip) {
                (IpAddr::V4(a), IpAddr::V4(v)) => {
                    let m = u32::MAX.checked_shl(32 - u32::from(p)).unwrap_or(0);
                    u32::from(a) & m == u32::from(v) & m
                }
                (IpAddr::V6(a), IpAddr::V6(v)) => {
                    let m = u128::MAX.checked_shl(128 - u32::from(p)).unwrap_or(0);
                    u128::from(a) & m == u128::from(v) & m
                }
                _ => false,
            }
    })
}

/// Whether `a` is an IPv6 link-local address (fe80::/10).
pub fn is_link_local(a: &Ipv6Addr) -> bool {
    a.segments()[0] & 0xffc0 == 0xfe80
}

/// The primary address VRRP sends from: for IPv4 the first address of the
/// interface that is not a VIP; for IPv6 the link-local address (RFC 5798 5.1.2.1).
pub fn primary(name: &str, v6: bool, vips: &[IpAddr]) -> Option<IpAddr> {
    addresses(name).into_iter().find(|a| match a {
        IpAddr::V4(_) => !v6 && !vips.contains(a),
        IpAddr::V6(a6) => v6 && is_link_local(a6),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_arp_table_gives_complete_entries_on_the_interface_only() {
        let t = "IP address       HW type     Flags       HW address            Mask     Device
198.18.0.1       0x1         0x2         3a:72:7b:28:b0:d2     *        eth0
198.18.0.3       0x1         0x0         00:00:00:00:00:00     *        eth0
198.18.0.4       0x1         0x2         02:00:00:00:00:04     *        eth1
";
        let ip = |s: &str| s.parse().unwrap();
        assert_eq!(
            arp_table_lookup(t, "eth0", ip("198.18.0.1")),
            Some([0x3a, 0x72, 0x7b, 0x28, 0xb0, 0xd2])
        );
        assert_eq!(
            arp_table_lookup(t, "eth0", ip("198.18.0.3")),
            None,
            "incomplete"
        );
        assert_eq!(
            arp_table_lookup(t, "eth0", ip("198.18.0.4")),
            None,
            "other interface"
        );
        assert_eq!(
            fmt_mac(&[0x3a, 0x72, 0x7b, 0x28, 0xb0, 0xd2]),
            "3a:72:7b:28:b0:d2"
        );
    }

    #[test]
    fn loopback_is_listed_with_its_subnet() {
        assert!(names().iter().any(|n| n == "lo"));
        assert!(subnets("lo").contains(&("127.0.0.1".parse().unwrap(), 8)));
        assert_eq!(addresses("no-such-interface"), Vec::<IpAddr>::new());
        assert!(
            index("no-such-interface")
                .unwrap_err()
                .available
                .contains("lo")
        );
    }

    #[test]
    fn a_vip_is_checked_against_the_interface_subnets() {
        let subnets = [
            ("198.18.0.1".parse().unwrap(), 24),
            ("fe80::1".parse().unwrap(), 64),
            ("fd18::1".parse().unwrap(), 64),
        ];
        assert!(in_some_subnet("198.18.0.100".parse().unwrap(), &subnets));
        assert!(!in_some_subnet("10.0.0.100".parse().unwrap(), &subnets));
        assert!(in_some_subnet("fd18::100".parse().unwrap(), &subnets));
        assert!(!in_some_subnet("fd19::100".parse().unwrap(), &subnets));
        // The VIP itself, once added as a /32, does not count.
        assert!(!in_some_subnet(
            "10.0.0.100".parse().unwrap(),
            &[("10.0.0.100".parse().unwrap(), 32)]
        ));
        assert!(in_some_subnet(
            "10.0.0.100".parse().unwrap(),
            &[("10.0.0.1".parse().unwrap(), 0)]
        ));
    }
}
