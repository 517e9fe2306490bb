//! Adds and removes virtual addresses with rtnetlink.
use std::net::IpAddr;

use futures::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags};

use crate::config::Vip;

#[derive(Debug, thiserror::Error)]
pub enum VipError {
    #[error("opening an rtnetlink socket: {0}")]
    Connect(#[source] std::io::Error),
    #[error("adding {vip} on interface {iface}: {source}")]
    Add {
        vip: Vip,
        iface: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("removing {vip} from interface {iface}: {source}")]
    Remove {
        vip: Vip,
        iface: String,
        #[source]
        source: rtnetlink::Error,
    },
}

/// An rtnetlink handle, shared by all instances of a daemon.
#[derive(Clone)]
pub struct Netlink {
    handle: rtnetlink::Handle,
}

impl Netlink {
    /// Opens the socket and spawns its driver on the current tokio runtime.
    pub fn connect() -> Result<Self, VipError> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(VipError::Connect)?;
        tokio::spawn(conn);
        Ok(Self { handle })
    }

    /// Adds `vip` to the interface. An address already there is adopted
    /// (NLM_F_REPLACE), not an error. IPv6 VIPs skip duplicate address
    /// detection so they answer at once.
    pub async fn add(&self, iface: &str, ifindex: u32, vip: Vip) -> Result<(), VipError> {
        let mut req = self
            .handle
            .address()
            .add(ifindex, vip.addr, vip.prefix)
            .replace();
        if vip.addr.is_ipv6() {
            req.message_mut()
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        req.execute().await.map_err(|source| VipError::Add {
            vip,
            iface: iface.into(),
            source,
        })
    }

    /// Removes `vip` from the interface; absent is fine.
    pub async fn remove(&self, iface: &str, ifindex: u32, vip: Vip) -> Result<(), VipError> {
        let err = |source| VipError::Remove {
            vip,
            iface: iface.into(),
            source,
        };
        let mut found = self
            .handle
            .address()
            .get()
            .set_link_index_filter(ifindex)
            .set_address_filter(vip.addr)
            .execute();
        while let Some(msg) = found.try_next().await.map_err(err)? {
            if msg.header.prefix_len != vip.prefix {
                continue;
            }
            if let Err(e) = self.handle.address().del(msg).execute().await {
                // Gone meanwhile (someone else removed it): what we wanted.
                if !is_absent(&e) {
                    return Err(err(e));
                }
            }
        }
        Ok(())
    }

    /// Whether `addr` is configured on the interface.
    pub async fn present(&self, ifindex: u32, addr: IpAddr) -> bool {
        let mut found = self
            .handle
            .address()
            .get()
            .set_link_index_filter(ifindex)
            .set_address_filter(addr)
            .execute();
        matches!(found.try_next().await, Ok(Some(_)))
    }
}

fn is_absent(e: &rtnetlink::Error) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m)
        if m.raw_code() == -libc::EADDRNOTAVAIL || m.raw_code() == -libc::ENOENT || m.raw_code() == -libc::ENODEV)
}
