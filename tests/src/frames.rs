//! Hand-built Ethernet frames for feeding the XDP program and the daemon.
//!
//! Written from RFC 3768 / RFC 5798 independently of the daemon's own codec,
//! so the tests check one implementation against another.
use std::net::{Ipv4Addr, Ipv6Addr};

pub const VRRP_MCAST4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
pub const VRRP_MCAST6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
pub const SRC_MAC: [u8; 6] = [0x02, 0, 0x5e, 0, 0, 0x01];
/// 01:00:5e:00:00:12, the Ethernet group of 224.0.0.18.
pub const MCAST4_MAC: [u8; 6] = [0x01, 0, 0x5e, 0, 0, 0x12];
/// 33:33:00:00:00:12, the Ethernet group of ff02::12.
pub const MCAST6_MAC: [u8; 6] = [0x33, 0x33, 0, 0, 0, 0x12];

/// Internet checksum (RFC 1071) over `data`, starting from `sum`: the daemon's.
pub use ha_daemon::net::checksum::checksum;

fn pseudo_sum(parts: &[&[u8]]) -> u32 {
    let mut sum = 0u32;
    for p in parts {
        for c in p.chunks(2) {
            let hi = c[0];
            let lo = c.get(1).copied().unwrap_or(0);
            sum += u32::from(u16::from_be_bytes([hi, lo]));
        }
    }
    sum
}

/// A VRRPv2 advert (RFC 3768 section 5.1): IPv4 only, interval in seconds,
/// `auth` = Some(password) for simple-text authentication (type 1).
pub fn vrrp_v2(
    vrid: u8,
    priority: u8,
    interval_s: u8,
    addrs: &[Ipv4Addr],
    auth: Option<&[u8]>,
) -> Vec<u8> {
    let mut p = vec![
        0x21,
        vrid,
        priority,
        addrs.len() as u8,
        auth.map_or(0, |_| 1),
        interval_s,
        0,
        0,
    ];
    for a in addrs {
        p.extend_from_slice(&a.octets());
    }
    let mut pass = [0u8; 8];
    if let Some(a) = auth {
        let n = a.len().min(8);
        pass[..n].copy_from_slice(&a[..n]);
    }
    p.extend_from_slice(&pass);
    let c = checksum(0, &p);
    p[6..8].copy_from_slice(&c.to_be_bytes());
    p
}

/// A VRRPv3 advert over IPv4 (RFC 5798 section 5.1): interval in centiseconds,
/// checksum over the IPv4 pseudo-header.
pub fn vrrp_v3_v4(
    vrid: u8,
    priority: u8,
    interval_cs: u16,
    addrs: &[Ipv4Addr],
    src: Ipv4Addr,
    dst: Ipv4Addr,
) -> Vec<u8> {
    let mut p = vrrp_v3_head(vrid, priority, interval_cs, addrs.len());
    for a in addrs {
        p.extend_from_slice(&a.octets());
    }
    let len = (p.len() as u16).to_be_bytes();
    let sum = pseudo_sum(&[&src.octets(), &dst.octets(), &[0, 112], &len]);
    let c = checksum(sum, &p);
    p[6..8].copy_from_slice(&c.to_be_bytes());
    p
}

/// A VRRPv3 advert over IPv6, checksum over the IPv6 pseudo-header.
pub fn vrrp_v3_v6(
    vrid: u8,
    priority: u8,
    interval_cs: u16,
    addrs: &[Ipv6Addr],
    src: Ipv6Addr,
    dst: Ipv6Addr,
) -> Vec<u8> {
    let mut p = vrrp_v3_head(vrid, priority, interval_cs, addrs.len());
    for a in addrs {
        p.extend_from_slice(&a.octets());
    }
    let len = (p.len() as u32).to_be_bytes();
    let sum = pseudo_sum(&[&src.octets(), &dst.octets(), &len, &[0, 0, 0, 112]]);
    let c = checksum(sum, &p);
    p[6..8].copy_from_slice(&c.to_be_bytes());
    p
}

fn vrrp_v3_head(vrid: u8, priority: u8, interval_cs: u16, count: usize) -> Vec<u8> {
    let int = (interval_cs & 0x0fff).to_be_bytes();
    vec![0x31, vrid, priority, count as u8, int[0], int[1], 0, 0]
}

/// An IPv4 packet (no options) around `payload`.
pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, ttl: u8, payload: &[u8]) -> Vec<u8> {
    let total = (20 + payload.len()) as u16;
    let mut h = vec![0x45, 0xc0];
    h.extend_from_slice(&total.to_be_bytes());
    h.extend_from_slice(&[0, 0, 0, 0, ttl, proto, 0, 0]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    let c = checksum(0, &h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

/// An IPv6 packet (no extension headers) around `payload`.
pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, hop_limit: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    h.extend_from_slice(&[next, hop_limit]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    h.extend_from_slice(payload);
    h
}

/// An Ethernet frame, with one 802.1Q tag when `vlan` is set.
pub fn ethernet(
    dst: [u8; 6],
    src: [u8; 6],
    ethertype: u16,
    vlan: Option<u16>,
    payload: &[u8],
) -> Vec<u8> {
    let mut f = Vec::with_capacity(18 + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    if let Some(id) = vlan {
        f.extend_from_slice(&0x8100u16.to_be_bytes());
        f.extend_from_slice(&(id & 0x0fff).to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A complete multicast VRRPv2 advert frame from `src`.
pub fn advert_v2_frame(
    src: Ipv4Addr,
    vrid: u8,
    priority: u8,
    interval_s: u8,
    vips: &[Ipv4Addr],
    auth: Option<&[u8]>,
    vlan: Option<u16>,
) -> Vec<u8> {
    let vrrp = vrrp_v2(vrid, priority, interval_s, vips, auth);
    ethernet(
        MCAST4_MAC,
        SRC_MAC,
        0x0800,
        vlan,
        &ipv4(src, VRRP_MCAST4, 112, 255, &vrrp),
    )
}

/// A complete multicast VRRPv3 advert frame over IPv4 from `src`.
pub fn advert_v3_frame(
    src: Ipv4Addr,
    vrid: u8,
    priority: u8,
    interval_cs: u16,
    vips: &[Ipv4Addr],
    vlan: Option<u16>,
) -> Vec<u8> {
    let vrrp = vrrp_v3_v4(vrid, priority, interval_cs, vips, src, VRRP_MCAST4);
    ethernet(
        MCAST4_MAC,
        SRC_MAC,
        0x0800,
        vlan,
        &ipv4(src, VRRP_MCAST4, 112, 255, &vrrp),
    )
}

/// A complete multicast VRRPv3 advert frame over IPv6 from `src`.
pub fn advert_v3_frame6(
    src: Ipv6Addr,
    vrid: u8,
    priority: u8,
    interval_cs: u16,
    vips: &[Ipv6Addr],
    vlan: Option<u16>,
) -> Vec<u8> {
    let vrrp = vrrp_v3_v6(vrid, priority, interval_cs, vips, src, VRRP_MCAST6);
    ethernet(
        MCAST6_MAC,
        SRC_MAC,
        0x86dd,
        vlan,
        &ipv6(src, VRRP_MCAST6, 112, 255, &vrrp),
    )
}

/// Sends whole Ethernet frames out of `iface` with an AF_PACKET socket, in
/// batches of `sendmmsg` and bypassing the qdisc, so one thread can flood.
/// Call it from inside a namespace (`Netns::enter`); returns how many were sent.
pub fn send_raw(iface: &str, frames: &[Vec<u8>]) -> std::io::Result<usize> {
    use std::{ffi::CString, io, mem::size_of};
    let name = CString::new(iface).map_err(io::Error::other)?;
    // SAFETY: plain libc calls on buffers that outlive them; fd closed below.
    unsafe {
        let idx = libc::if_nametoindex(name.as_ptr());
        if idx == 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let one: libc::c_int = 1;
        libc::setsockopt(
            fd,
            libc::SOL_PACKET,
            libc::PACKET_QDISC_BYPASS,
            (&one as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as u32,
        );
        let mut sll: libc::sockaddr_ll = std::mem::zeroed();
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_ifindex = idx as i32;
        sll.sll_halen = 6;
        let mut sent = 0;
        for chunk in frames.chunks(256) {
            let mut iovs: Vec<libc::iovec> = chunk
                .iter()
                .map(|f| libc::iovec {
                    iov_base: f.as_ptr() as *mut libc::c_void,
                    iov_len: f.len(),
                })
                .collect();
            let mut msgs: Vec<libc::mmsghdr> = iovs
                .iter_mut()
                .map(|iov| {
                    let mut m: libc::mmsghdr = std::mem::zeroed();
                    m.msg_hdr.msg_name = (&mut sll as *mut libc::sockaddr_ll).cast();
                    m.msg_hdr.msg_namelen = size_of::<libc::sockaddr_ll>() as u32;
                    m.msg_hdr.msg_iov = iov;
                    m.msg_hdr.msg_iovlen = 1;
                    m
                })
                .collect();
            let mut off = 0;
            while off < msgs.len() {
                let r = libc::sendmmsg(fd, msgs[off..].as_mut_ptr(), (msgs.len() - off) as u32, 0);
                if r < 0 {
                    let e = io::Error::last_os_error();
                    // A full queue under a flood: skip the rest of this batch.
                    if e.raw_os_error() == Some(libc::ENOBUFS) {
                        break;
                    }
                    libc::close(fd);
                    return Err(e);
                }
                off += r as usize;
                sent += r as usize;
            }
        }
        libc::close(fd);
        Ok(sent)
    }
}

/// A TCP segment (20-byte header, no payload) from `src:sport` to `dst:dport`
/// with `flags` (0x01 FIN, 0x02 SYN, 0x04 RST, 0x10 ACK), over IPv4.
pub fn tcp_frame(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, flags: u8) -> Vec<u8> {
    let mut t = Vec::with_capacity(20);
    t.extend_from_slice(&sport.to_be_bytes());
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    ethernet(
        [2, 0, 0, 0, 0, 2],
        SRC_MAC,
        0x0800,
        None,
        &ipv4(src, dst, 6, 64, &t),
    )
}

/// From host `from`, at the host with MAC `to_mac` (to the VRRP group
/// address): 100k bogus adverts per second for `seconds` — bad checksums
/// claiming priority 250 for `vrid`, unknown VRIDs, TTL 254, in equal parts.
/// Returns (frames sent, time taken).
pub fn flood_bogus_adverts(
    from: &crate::Host,
    to_mac: &str,
    vrid: u8,
    seconds: u32,
) -> (usize, std::time::Duration) {
    use std::time::{Duration, Instant};
    let src = from.addr4;
    let vip = Ipv4Addr::new(198, 18, 0, 100);
    let mac: Vec<u8> = to_mac
        .split(':')
        .filter_map(|x| u8::from_str_radix(x, 16).ok())
        .collect();
    let dst_mac: [u8; 6] = mac.try_into().expect("a MAC address");
    let v3 = |vrid: u8, prio: u8| vrrp_v3_v4(vrid, prio, 1, &[vip], src, VRRP_MCAST4);
    let frame = |ttl: u8, vrrp: &[u8]| {
        ethernet(
            dst_mac,
            SRC_MAC,
            0x0800,
            None,
            &ipv4(src, VRRP_MCAST4, 112, ttl, vrrp),
        )
    };
    let mut bad = v3(vrid, 250);
    bad[6] ^= 0xff;
    let kinds = [
        frame(255, &bad),
        frame(255, &v3(vrid.wrapping_add(26), 250)),
        frame(254, &v3(vrid, 250)),
    ];
    let batch: Vec<Vec<u8>> = (0..1000).map(|i| kinds[i % 3].clone()).collect();
    from.ns
        .enter(|| {
            // Two senders (the kernel's per-frame work runs in the sender's
            // context), each 50 batches of 1000 per second, paced.
            let start = Instant::now();
            let sent: usize = std::thread::scope(|s| {
                let workers: Vec<_> = (0..2)
                    .map(|_| {
                        s.spawn(|| {
                            let mut sent = 0;
                            for b in 0..50 * seconds {
                                let due = start + Duration::from_millis(20) * b;
                                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                                    std::thread::sleep(wait);
                                }
                                sent += send_raw("eth0", &batch).unwrap_or(0);
                            }
                            sent
                        })
                    })
                    .collect();
                workers.into_iter().map(|w| w.join().unwrap_or(0)).sum()
            });
            (sent, start.elapsed())
        })
        .expect("entering the flooding host")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_verify_to_zero() {
        let src = Ipv4Addr::new(198, 18, 0, 1);
        let v3 = vrrp_v3_v4(
            1,
            100,
            100,
            &[Ipv4Addr::new(198, 18, 0, 100)],
            src,
            VRRP_MCAST4,
        );
        let len = (v3.len() as u16).to_be_bytes();
        let sum = pseudo_sum(&[&src.octets(), &VRRP_MCAST4.octets(), &[0, 112], &len]);
        assert_eq!(checksum(sum, &v3), 0);
        let ip = ipv4(src, VRRP_MCAST4, 112, 255, &v3);
        assert_eq!(checksum(0, &ip[..20]), 0);
        let v2 = vrrp_v2(
            1,
            100,
            1,
            &[Ipv4Addr::new(198, 18, 0, 100)],
            Some(b"secret"),
        );
        assert_eq!(checksum(0, &v2), 0);
    }
}

/// A TCP segment in an Ethernet frame, checksums right: from `src_mac` to
/// `dst_mac`, with the given flags, sequence and acknowledgment numbers.
#[allow(clippy::too_many_arguments)]
pub fn tcp_segment(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: Ipv4Addr,
    sport: u16,
    dst: Ipv4Addr,
    dport: u16,
    flags: u8,
    seq: u32,
    ack: u32,
    payload: &[u8],
) -> Vec<u8> {
    let mut t = Vec::with_capacity(20 + payload.len());
    t.extend_from_slice(&sport.to_be_bytes());
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&seq.to_be_bytes());
    t.extend_from_slice(&ack.to_be_bytes());
    t.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    t.extend_from_slice(payload);
    let len = (t.len() as u16).to_be_bytes();
    let ps = pseudo_sum(&[&src.octets(), &dst.octets(), &[0, 6], &len]);
    let c = checksum(ps, &t);
    t[16..18].copy_from_slice(&c.to_be_bytes());
    ethernet(dst_mac, src_mac, 0x0800, None, &ipv4(src, dst, 6, 64, &t))
}

/// A UDP datagram in an Ethernet frame (checksum 0: none, as IPv4 allows).
pub fn udp_frame(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: Ipv4Addr,
    sport: u16,
    dst: Ipv4Addr,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut u = Vec::with_capacity(8 + payload.len());
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    ethernet(dst_mac, src_mac, 0x0800, None, &ipv4(src, dst, 17, 64, &u))
}

/// An ARP packet (Ethernet/IPv4) in a broadcast frame: `op` 1 request, 2
/// reply; a gratuitous one has `spa == tpa`.
pub fn arp(op: u16, sha: [u8; 6], spa: Ipv4Addr, tha: [u8; 6], tpa: Ipv4Addr) -> Vec<u8> {
    let mut a = vec![0, 1, 8, 0, 6, 4];
    a.extend_from_slice(&op.to_be_bytes());
    a.extend_from_slice(&sha);
    a.extend_from_slice(&spa.octets());
    a.extend_from_slice(&tha);
    a.extend_from_slice(&tpa.octets());
    ethernet([0xff; 6], sha, 0x0806, None, &a)
}

/// The fields of a TCP/IPv4 frame as a test reads them back: MACs,
/// addresses, ports, seq, ack, flags, and whether both checksums hold.
#[derive(Debug, PartialEq, Eq)]
pub struct Segment {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub ttl: u8,
    pub checksums_ok: bool,
    pub len: usize,
}

pub fn parse_segment(f: &[u8]) -> Option<Segment> {
    if f.len() < 54 || f[12..14] != [8, 0] {
        return None;
    }
    let ip = &f[14..34];
    let total = u16::from_be_bytes([ip[2], ip[3]]) as usize;
    let tcp = f.get(34..14 + total)?;
    let ip_ok = checksum(0, ip) == 0;
    let len = (tcp.len() as u16).to_be_bytes();
    let ps = pseudo_sum(&[&ip[12..16], &ip[16..20], &[0, 6], &len]);
    let tcp_ok = checksum(ps, tcp) == 0;
    let b4 = |x: &[u8]| u32::from_be_bytes([x[0], x[1], x[2], x[3]]);
    Some(Segment {
        dst_mac: f[0..6].try_into().ok()?,
        src_mac: f[6..12].try_into().ok()?,
        src: Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]),
        dst: Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]),
        sport: u16::from_be_bytes([tcp[0], tcp[1]]),
        dport: u16::from_be_bytes([tcp[2], tcp[3]]),
        seq: b4(&tcp[4..8]),
        ack: b4(&tcp[8..12]),
        flags: tcp[13],
        ttl: ip[8],
        checksums_ok: ip_ok && tcp_ok,
        len: f.len(),
    })
}

/// Asks "who has `target`?" on `iface` every `every` for `for_`, and
/// returns each answer: (time since the start, the MAC that answered).
/// One socket throughout: closing a packet socket waits for an RCU grace
/// period (tens of ms here), which would space the questions out.
pub fn who_has_over_time(
    iface: &str,
    src_mac: [u8; 6],
    src: Ipv4Addr,
    target: Ipv4Addr,
    every: std::time::Duration,
    for_: std::time::Duration,
) -> std::io::Result<Vec<(std::time::Duration, [u8; 6])>> {
    let sock = ArpSocket::open(iface)?;
    let start = std::time::Instant::now();
    let mut out = Vec::new();
    while start.elapsed() < for_ {
        let at = start.elapsed();
        for mac in sock.ask(src_mac, src, target, every)? {
            out.push((at, mac));
        }
    }
    Ok(out)
}

/// Asks "who has `target`?" on `iface` (from `src_mac` / `src`) and returns
/// every MAC that answers within `wait`: more than one means two hosts
/// answer for the address. Run inside the host's namespace.
pub fn who_has(
    iface: &str,
    src_mac: [u8; 6],
    src: Ipv4Addr,
    target: Ipv4Addr,
    wait: std::time::Duration,
) -> std::io::Result<Vec<[u8; 6]>> {
    ArpSocket::open(iface)?.ask(src_mac, src, target, wait)
}

/// A packet socket for ARP on one interface.
struct ArpSocket {
    fd: std::os::fd::OwnedFd,
    sll: libc::sockaddr_ll,
}

impl ArpSocket {
    fn open(iface: &str) -> std::io::Result<Self> {
        use std::{ffi::CString, io, os::fd::FromRawFd};
        let name = CString::new(iface).map_err(io::Error::other)?;
        // SAFETY: plain libc calls on values that outlive them; the fd is
        // owned from here on.
        unsafe {
            let idx = libc::if_nametoindex(name.as_ptr());
            if idx == 0 {
                return Err(io::Error::last_os_error());
            }
            let proto = (0x0806u16).to_be();
            let raw = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto));
            if raw < 0 {
                return Err(io::Error::last_os_error());
            }
            let fd = std::os::fd::OwnedFd::from_raw_fd(raw);
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = proto;
            sll.sll_ifindex = idx as i32;
            sll.sll_halen = 6;
            if libc::bind(
                raw,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            // Short: `ask` loops until its own deadline.
            let tv = libc::timeval {
                tv_sec: 0,
                tv_usec: 1_000,
            };
            libc::setsockopt(
                raw,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            );
            Ok(ArpSocket { fd, sll })
        }
    }

    fn ask(
        &self,
        src_mac: [u8; 6],
        src: Ipv4Addr,
        target: Ipv4Addr,
        wait: std::time::Duration,
    ) -> std::io::Result<Vec<[u8; 6]>> {
        use std::{os::fd::AsRawFd, time::Instant};
        let fd = self.fd.as_raw_fd();
        let req = arp(1, src_mac, src, [0; 6], target);
        // SAFETY: sendto/recv on our socket with buffers that outlive them.
        unsafe {
            if libc::sendto(
                fd,
                req.as_ptr().cast(),
                req.len(),
                0,
                (&self.sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            ) < 0
            {
                return Err(std::io::Error::last_os_error());
            }
        }
        let mut seen = Vec::new();
        let end = Instant::now() + wait;
        let mut buf = [0u8; 1514];
        while Instant::now() < end {
            // SAFETY: as above.
            let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 42 {
                continue;
            }
            let a = &buf[14..42];
            let op = u16::from_be_bytes([a[6], a[7]]);
            if op == 2 && a[14..18] == target.octets() {
                let mut mac = [0u8; 6];
                mac.copy_from_slice(&a[8..14]);
                if !seen.contains(&mac) {
                    seen.push(mac);
                }
            }
        }
        Ok(seen)
    }
}
