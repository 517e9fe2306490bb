//! Which clients are connected to the VIP's Redis port, from the kernel's
//! socket table (sock_diag, NETLINK_SOCK_DIAG): one dump of the host's
//! established TCP sockets, filtered here to local address ∈ VIPs and
//! local port = the Redis port. Chosen over an eBPF tracepoint on
//! `inet_sock_set_state`: that one fires for every network namespace of the
//! host and would need CO-RE to tell them apart; a dump is per namespace,
//! costs ~1 µs per socket, and its staleness is the tracking period.
use std::{collections::BTreeSet, io, net::IpAddr};

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_sock_diag::{
    SockDiagMessage,
    constants::{AF_INET, AF_INET6, IPPROTO_TCP},
    inet::{ExtensionFlags, InetRequest, SocketId, StateFlags},
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_SOCK_DIAG};

use super::book::Client;

pub struct Tracker {
    socket: Socket,
    buf: Vec<u8>,
}

impl Tracker {
    pub fn new() -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_SOCK_DIAG)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        Ok(Self {
            socket,
            buf: vec![0; 64 * 1024],
        })
    }

    /// The clients' ends of the established connections to `port` on any
    /// of `vips`.
    pub fn clients(&mut self, vips: &[IpAddr], port: u16) -> io::Result<BTreeSet<Client>> {
        let mut out = BTreeSet::new();
        for v6 in [false, true] {
            if !vips.iter().any(|v| v.is_ipv6() == v6) {
                continue;
            }
            self.dump(v6, StateFlags::ESTABLISHED, |id| {
                if id.source_port == port && vips.contains(&id.source_address.to_canonical()) {
                    out.insert((id.destination_address.to_canonical(), id.destination_port));
                }
            })?;
        }
        Ok(out)
    }

    /// Sockets on `port` of any of `vips` that may still send something
    /// (a reset, a FIN, data): every state but TIME-WAIT, FIN-WAIT-2 and
    /// closed. The kernel can send from a VIP only while it has it.
    pub fn still_sending(&mut self, vips: &[IpAddr], port: u16) -> io::Result<usize> {
        let states = StateFlags::ESTABLISHED
            | StateFlags::SYN_RECV
            | StateFlags::FIN_WAIT1
            | StateFlags::CLOSE_WAIT
            | StateFlags::LAST_ACK
            | StateFlags::CLOSING;
        let mut n = 0;
        for v6 in [false, true] {
            if !vips.iter().any(|v| v.is_ipv6() == v6) {
                continue;
            }
            self.dump(v6, states.clone(), |id| {
                if id.source_port == port && vips.contains(&id.source_address.to_canonical()) {
                    n += 1;
                }
            })?;
        }
        Ok(n)
    }

    /// Aborts the connections to `port` on any of `vips` that a client
    /// still counts on (established, closing with data or a FIN unacked):
    /// the kernel sends each client a reset (SOCK_DESTROY); `reset.rs`
    /// says when. Returns each reset connection's VIP and client.
    pub fn destroy(&mut self, vips: &[IpAddr], port: u16) -> io::Result<Vec<(IpAddr, Client)>> {
        let mut out = Vec::new();
        for v6 in [false, true] {
            if !vips.iter().any(|v| v.is_ipv6() == v6) {
                continue;
            }
            let mut ids = Vec::new();
            let states = StateFlags::ESTABLISHED | StateFlags::CLOSE_WAIT | StateFlags::FIN_WAIT1;
            self.dump(v6, states, |id| {
                if id.source_port == port && vips.contains(&id.source_address.to_canonical()) {
                    ids.push(id.clone());
                }
            })?;
            for id in ids {
                let vip = id.source_address.to_canonical();
                let client = (id.destination_address.to_canonical(), id.destination_port);
                if self.destroy_one(v6, id).is_ok() {
                    out.push((vip, client));
                }
            }
        }
        Ok(out)
    }

    fn destroy_one(&mut self, v6: bool, id: SocketId) -> io::Result<()> {
        // SOCK_DESTROY (linux/sock_diag.h): the dump request's layout, one
        // socket named in full (addresses, ports, cookie).
        const SOCK_DESTROY: u16 = 21;
        let mut hdr = NetlinkHeader::default();
        hdr.flags = NLM_F_REQUEST | NLM_F_ACK;
        let mut req = NetlinkMessage::new(
            hdr,
            SockDiagMessage::InetRequest(InetRequest {
                family: if v6 { AF_INET6 } else { AF_INET },
                protocol: IPPROTO_TCP,
                extensions: ExtensionFlags::empty(),
                states: StateFlags::all(),
                socket_id: id,
            })
            .into(),
        );
        req.finalize();
        req.header.message_type = SOCK_DESTROY;
        let mut b = vec![0; req.buffer_len()];
        req.serialize(&mut b);
        self.socket.send(&b, 0)?;
        let n = self.socket.recv(&mut &mut self.buf[..], 0)?;
        let msg = NetlinkMessage::<SockDiagMessage>::deserialize(&self.buf[..n])
            .map_err(|e| io::Error::other(format!("sock_diag reply: {e}")))?;
        match msg.payload {
            NetlinkPayload::Error(e) if e.code.is_some() => {
                Err(io::Error::other(format!("SOCK_DESTROY: {e:?}")))
            }
            _ => Ok(()),
        }
    }

    fn dump(
        &mut self,
        v6: bool,
        states: StateFlags,
        mut each: impl FnMut(&SocketId),
    ) -> io::Result<()> {
        let mut hdr = NetlinkHeader::default();
        hdr.flags = NLM_F_REQUEST | NLM_F_DUMP;
        let mut req = NetlinkMessage::new(
            hdr,
            SockDiagMessage::InetRequest(InetRequest {
                family: if v6 { AF_INET6 } else { AF_INET },
                protocol: IPPROTO_TCP,
                extensions: ExtensionFlags::empty(),
                states,
                socket_id: if v6 {
                    SocketId::new_v6()
                } else {
                    SocketId::new_v4()
                },
            })
            .into(),
        );
        req.finalize();
        let mut b = vec![0; req.buffer_len()];
        req.serialize(&mut b);
        self.socket.send(&b, 0)?;
        loop {
            let n = self.socket.recv(&mut &mut self.buf[..], 0)?;
            let mut off = 0;
            while off < n {
                let msg = NetlinkMessage::<SockDiagMessage>::deserialize(&self.buf[off..n])
                    .map_err(|e| io::Error::other(format!("sock_diag reply: {e}")))?;
                let len = msg.header.length as usize;
                match msg.payload {
                    NetlinkPayload::Done(_) => return Ok(()),
                    NetlinkPayload::Error(e) => {
                        return Err(io::Error::other(format!("sock_diag: {e:?}")));
                    }
                    NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(r)) => {
                        each(&r.header.socket_id)
                    }
                    _ => {}
                }
                if len == 0 {
                    break;
                }
                off += len;
            }
        }
    }
}
