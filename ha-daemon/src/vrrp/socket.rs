//! The raw IP socket for protocol 112 on one interface and address family.
//!
//! Multicast group joined on that interface only; TTL / hop limit 255 on send
//! and reported on receive (the receiver drops anything else, RFC 5798 7.1).
use std::{
    io,
    mem::{MaybeUninit, size_of},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6},
    os::fd::AsRawFd,
};

use socket2::{Domain, InterfaceIndexOrAddress, Protocol, SockAddr, Socket, Type};
use tokio::io::{Interest, unix::AsyncFd};

use super::packet::{IPPROTO_VRRP, MCAST_V4, MCAST_V6};
use crate::ebpf::clock;

/// One received VRRP packet with what the IP layer said about it.
#[derive(Debug, Clone)]
pub struct Received {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// TTL (IPv4) or hop limit (IPv6) it arrived with.
    pub ttl: u8,
    pub payload: Vec<u8>,
    /// CLOCK_MONOTONIC when it was read.
    pub at: u64,
}

pub struct VrrpSocket {
    fd: AsyncFd<Socket>,
    v6: bool,
    ifindex: u32,
    /// Source address of our adverts (primary IPv4, or IPv6 link-local).
    pub local: IpAddr,
}

fn setsockopt_int(s: &Socket, level: i32, opt: i32, val: i32) -> io::Result<()> {
    // SAFETY: valid fd, pointer to an int of the given size.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            level,
            opt,
            (&val as *const i32).cast(),
            size_of::<i32>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

impl VrrpSocket {
    /// Opens the socket on `iface` (index `ifindex`), sending from `local`.
    pub fn open(iface: &str, ifindex: u32, local: IpAddr) -> io::Result<Self> {
        let v6 = local.is_ipv6();
        let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
        let s = Socket::new(
            domain,
            Type::RAW,
            Some(Protocol::from(i32::from(IPPROTO_VRRP))),
        )?;
        s.set_nonblocking(true)?;
        s.bind_device(Some(iface.as_bytes()))?;
        match local {
            IpAddr::V4(l) => {
                s.join_multicast_v4_n(&MCAST_V4, &InterfaceIndexOrAddress::Index(ifindex))?;
                s.set_multicast_if_v4(&l)?;
                s.set_multicast_ttl_v4(255)?;
                s.set_ttl_v4(255)?;
                s.set_multicast_loop_v4(false)?;
                // Internetwork control, as keepalived sends.
                s.set_tos_v4(0xc0)?;
            }
            IpAddr::V6(l) => {
                s.join_multicast_v6(&MCAST_V6, ifindex)?;
                s.set_multicast_if_v6(ifindex)?;
                s.set_multicast_hops_v6(255)?;
                s.set_unicast_hops_v6(255)?;
                s.set_multicast_loop_v6(false)?;
                setsockopt_int(&s, libc::IPPROTO_IPV6, libc::IPV6_RECVHOPLIMIT, 1)?;
                setsockopt_int(&s, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)?;
                // Binding the link-local address makes it the source of our adverts.
                s.bind(&SockAddr::from(SocketAddrV6::new(l, 0, 0, ifindex)))?;
            }
        }
        // SAFETY: the Socket owns its fd for as long as the AsyncFd holds it.
        let fd = unsafe { AsyncFd::register_with_interest(s, Interest::READABLE) }?;
        Ok(Self {
            fd,
            v6,
            ifindex,
            local,
        })
    }

    /// Sends one VRRP message to `dst` (multicast group or a unicast peer).
    pub async fn send(&self, msg: &[u8], dst: IpAddr) -> io::Result<()> {
        let addr: SockAddr = match dst {
            IpAddr::V4(a) => SocketAddr::new(IpAddr::V4(a), 0).into(),
            IpAddr::V6(a) => {
                let scope = if crate::net::iface::is_link_local(&a) || a.is_multicast() {
                    self.ifindex
                } else {
                    0
                };
                SocketAddrV6::new(a, 0, 0, scope).into()
            }
        };
        // Raw sends do not block in practice; a full buffer is reported, not awaited.
        self.fd.get_ref().send_to(msg, &addr).map(|_| ())
    }

    /// Waits for the next packet.
    pub async fn recv(&self) -> io::Result<Received> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|s| {
                if self.v6 {
                    recv_v6(s.get_ref())
                } else {
                    recv_v4(s.get_ref())
                }
            }) {
                Ok(Ok(Some(r))) => return Ok(r),
                // Not an IP packet we can read (too short): skip it.
                Ok(Ok(None)) => continue,
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }
}

/// IPv4 raw sockets hand over the IP header too.
fn recv_v4(s: &Socket) -> io::Result<Option<Received>> {
    let mut buf = [MaybeUninit::<u8>::uninit(); 2048];
    let (n, _) = s.recv_from(&mut buf)?;
    let at = clock::monotonic_ns();
    // SAFETY: recv_from initialised the first n bytes.
    let b: &[u8] = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast(), n) };
    if b.len() < 20 || b[0] >> 4 != 4 {
        return Ok(None);
    }
    let ihl = usize::from(b[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([b[2], b[3]])).min(b.len());
    if ihl < 20 || total < ihl {
        return Ok(None);
    }
    Ok(Some(Received {
        src: IpAddr::V4(Ipv4Addr::new(b[12], b[13], b[14], b[15])),
        dst: IpAddr::V4(Ipv4Addr::new(b[16], b[17], b[18], b[19])),
        ttl: b[8],
        payload: b[ihl..total].to_vec(),
        at,
    }))
}

/// IPv6 raw sockets give the payload; hop limit and destination come as
/// control messages.
fn recv_v6(s: &Socket) -> io::Result<Option<Received>> {
    let mut buf = [0u8; 2048];
    let mut cbuf = [0u64; 32];
    // SAFETY: zeroed sockaddr_in6 is valid.
    let mut from: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: zeroed msghdr, then every pointer set to live buffers above.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut from as *mut libc::sockaddr_in6).cast();
    msg.msg_namelen = size_of::<libc::sockaddr_in6>() as u32;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = size_of::<[u64; 32]>();
    // SAFETY: msg points to valid buffers for the call's duration.
    let n = unsafe { libc::recvmsg(s.as_raw_fd(), &mut msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let at = clock::monotonic_ns();
    let mut ttl = 0u8;
    let mut dst = Ipv6Addr::UNSPECIFIED;
    // SAFETY: standard CMSG walk over the buffer the kernel filled.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            let data = libc::CMSG_DATA(c);
            if (*c).cmsg_level == libc::IPPROTO_IPV6 {
                if (*c).cmsg_type == libc::IPV6_HOPLIMIT {
                    ttl = std::ptr::read_unaligned(data.cast::<i32>()) as u8;
                } else if (*c).cmsg_type == libc::IPV6_PKTINFO {
                    let pi = std::ptr::read_unaligned(data.cast::<libc::in6_pktinfo>());
                    dst = Ipv6Addr::from(pi.ipi6_addr.s6_addr);
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok(Some(Received {
        src: IpAddr::V6(Ipv6Addr::from(from.sin6_addr.s6_addr)),
        dst: IpAddr::V6(dst),
        ttl,
        payload: buf[..n as usize].to_vec(),
        at,
    }))
}
