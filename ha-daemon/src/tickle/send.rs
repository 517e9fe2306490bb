//! Tickle ACKs (the trick of Samba's CTDB): to each client of the old master,
//! from the VIP's Redis port, a bare ACK with sequence and acknowledgment 0.
//! It is out of the client's window, so its kernel answers at once with a
//! duplicate ACK carrying its real numbers; this host now holds the VIP and
//! has no socket for that connection, so its kernel answers that with a
//! reset whose sequence number is exactly what the client expects (RFC
//! 5961), and the client reconnects now instead of after its retransmit
//! timer (200 ms at least, for a request in flight; never, for an idle
//! connection without keepalive).
//!
//! Hand-written: a 40-byte IPv4 header and TCP header per client, sent with
//! `sendmmsg` on an IPPROTO_RAW socket, is smaller than any crate for it.
use std::{
    io,
    net::{IpAddr, Ipv4Addr},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

use super::book::Client;

/// The window value tickles carry: easy to spot in a capture, and the egress
/// fence lets them out by it.
pub const WINDOW: u16 = ha_common::TICKLE_WINDOW;
/// Datagrams per sendmmsg call, and the pause between calls: a burst of
/// thousands overruns a TX ring (a veth's peer ring holds 256) or a switch
/// port's buffer, and a lost tickle costs its client 600 ms (the next
/// round). 128 per 100 µs is 1.3 Mpps, 10,000 clients in ~10 ms.
const BATCH: usize = 128;
const PAUSE: std::time::Duration = std::time::Duration::from_micros(100);
/// A full device queue (ENOBUFS, which IP_RECVERR makes visible instead of
/// a silent drop): wait this long for it to drain, and retry; give up after
/// `STALL` of no progress.
const BACKOFF: std::time::Duration = std::time::Duration::from_micros(500);
const STALL: std::time::Duration = std::time::Duration::from_millis(200);

use crate::net::checksum::{fold, sum};

/// The tickle from `vip:port` to `client`, IPv4 and TCP headers.
pub fn packet(vip: Ipv4Addr, port: u16, client: Ipv4Addr, client_port: u16) -> [u8; 40] {
    let mut p = [0u8; 40];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&40u16.to_be_bytes());
    p[6] = 0x40;
    p[8] = 64;
    p[9] = 6;
    p[12..16].copy_from_slice(&vip.octets());
    p[16..20].copy_from_slice(&client.octets());
    let c = fold(sum(0, &p[..20]));
    p[10..12].copy_from_slice(&c.to_be_bytes());
    let t = &mut p[20..];
    t[0..2].copy_from_slice(&port.to_be_bytes());
    t[2..4].copy_from_slice(&client_port.to_be_bytes());
    // seq 0, ack 0
    t[12] = 5 << 4;
    t[13] = 0x10;
    t[14..16].copy_from_slice(&WINDOW.to_be_bytes());
    let mut ps = sum(0, &vip.octets());
    ps = sum(ps, &client.octets());
    ps += 6 + 20;
    let c = fold(sum(ps, t));
    t[16..18].copy_from_slice(&c.to_be_bytes());
    p
}

/// A raw socket to send tickles on (CAP_NET_RAW).
pub struct Sender {
    fd: OwnedFd,
}

impl Sender {
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain socket(2); the fd is owned right away.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh, valid descriptor.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // Room for a whole round (10,000 tickles are ~10 MB of socket
        // memory): a full buffer makes sendmmsg wait for the device.
        let size: libc::c_int = 16 << 20;
        for opt in [libc::SO_SNDBUFFORCE, libc::SO_SNDBUF] {
            // SAFETY: setsockopt with a valid int.
            let r = unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    opt,
                    (&size as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as u32,
                )
            };
            if r == 0 {
                break;
            }
        }
        // Without it a raw socket hides ENOBUFS (a full queue drops the
        // tickle and sendmmsg says it went).
        let on: libc::c_int = 1;
        // SAFETY: setsockopt with a valid int.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_RECVERR,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as u32,
            )
        };
        Ok(Self { fd })
    }

    /// Sends one tickle to each IPv4 client, paced; returns how many left.
    /// Blocks (for about 1 ms per 1,000 clients).
    pub fn send(&self, vip: Ipv4Addr, port: u16, clients: &[Client]) -> io::Result<usize> {
        let v4: Vec<(Ipv4Addr, u16)> = clients
            .iter()
            .filter_map(|(a, p)| match a {
                IpAddr::V4(a) => Some((*a, *p)),
                IpAddr::V6(_) => None,
            })
            .collect();
        let mut sent = 0;
        for (k, chunk) in v4.chunks(BATCH).enumerate() {
            if k > 0 {
                std::thread::sleep(PAUSE);
            }
            let mut pkts: Vec<[u8; 40]> = chunk
                .iter()
                .map(|(a, p)| packet(vip, port, *a, *p))
                .collect();
            let mut addrs: Vec<libc::sockaddr_in> = chunk
                .iter()
                .map(|(a, _)| libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: 0,
                    sin_addr: libc::in_addr {
                        s_addr: u32::from_ne_bytes(a.octets()),
                    },
                    sin_zero: [0; 8],
                })
                .collect();
            let mut iovs: Vec<libc::iovec> = pkts
                .iter_mut()
                .map(|p| libc::iovec {
                    iov_base: p.as_mut_ptr().cast(),
                    iov_len: p.len(),
                })
                .collect();
            let mut msgs: Vec<libc::mmsghdr> = iovs
                .iter_mut()
                .zip(addrs.iter_mut())
                .map(|(iov, addr)| {
                    // SAFETY: a zeroed msghdr is valid; the fields set point
                    // into buffers that outlive the call.
                    let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
                    h.msg_name = (addr as *mut libc::sockaddr_in).cast();
                    h.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
                    h.msg_iov = iov;
                    h.msg_iovlen = 1;
                    libc::mmsghdr {
                        msg_hdr: h,
                        msg_len: 0,
                    }
                })
                .collect();
            let mut done = 0;
            let mut stalled = std::time::Duration::ZERO;
            while done < msgs.len() {
                // SAFETY: msgs[done..] are valid mmsghdrs over live buffers.
                let n = unsafe {
                    libc::sendmmsg(
                        self.fd.as_raw_fd(),
                        msgs[done..].as_mut_ptr(),
                        (msgs.len() - done) as u32,
                        0,
                    )
                };
                if n < 0 {
                    let e = io::Error::last_os_error();
                    if e.kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    if e.raw_os_error() == Some(libc::ENOBUFS) && stalled < STALL {
                        std::thread::sleep(BACKOFF);
                        stalled += BACKOFF;
                        continue;
                    }
                    return if sent > 0 { Ok(sent) } else { Err(e) };
                }
                stalled = std::time::Duration::ZERO;
                done += n as usize;
                sent += n as usize;
            }
        }
        Ok(sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tickle_is_a_bare_ack_with_seq_and_ack_zero_and_right_checksums() {
        let p = packet(
            Ipv4Addr::new(198, 18, 0, 100),
            6379,
            Ipv4Addr::new(198, 18, 0, 50),
            40000,
        );
        assert_eq!(fold(sum(0, &p[..20])), 0, "IP checksum");
        let mut ps = sum(0, &p[12..20]);
        ps += 6 + 20;
        assert_eq!(fold(sum(ps, &p[20..])), 0, "TCP checksum");
        assert_eq!(&p[24..32], &[0; 8], "seq and ack 0");
        assert_eq!(p[33], 0x10, "ACK only");
        assert_eq!(u16::from_be_bytes([p[34], p[35]]), WINDOW);
        assert_eq!(u16::from_be_bytes([p[20], p[21]]), 6379);
        assert_eq!(u16::from_be_bytes([p[22], p[23]]), 40000);
    }
}
