//! What the kernel knows of an interface: index, addresses.
use std::{
    ffi::{CStr, CString},
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
pub fn names() -> Vec<String> {
    let mut v: Vec<String> = addresses_all().into_iter().map(|(n, _)| n).collect();
    v.sort();
    v.dedup();
    v
}

/// Every (interface, address) pair from getifaddrs (interfaces without an
/// address appear once with `None`).
fn addresses_all() -> Vec<(String, Option<IpAddr>)> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills a list we free below; we only read it meanwhile.
    unsafe {
        if libc::getifaddrs(&mut head) != 0 {
            return out;
        }
        let mut cur = head;
        while !cur.is_null() {
            let ifa = &*cur;
            let name = CStr::from_ptr(ifa.ifa_name).to_string_lossy().into_owned();
            let addr = if ifa.ifa_addr.is_null() {
                None
            } else {
                match i32::from((*ifa.ifa_addr).sa_family) {
                    libc::AF_INET => {
                        let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                        Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                            sin.sin_addr.s_addr,
                        ))))
                    }
                    libc::AF_INET6 => {
                        let sin6 = &*(ifa.ifa_addr as *const libc::sockaddr_in6);
                        Some(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)))
                    }
                    _ => None,
                }
            };
            out.push((name, addr));
            cur = ifa.ifa_next;
        }
        libc::freeifaddrs(head);
    }
    out
}

/// The addresses on interface `name`.
pub fn addresses(name: &str) -> Vec<IpAddr> {
    addresses_all()
        .into_iter()
        .filter(|(n, _)| n == name)
        .filter_map(|(_, a)| a)
        .collect()
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
