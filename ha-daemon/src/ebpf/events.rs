//! Reads the XDP program's ring buffer of edge events with tokio.
use std::{mem::size_of, net::IpAddr};

use aya::maps::{MapData, RingBuf};
use ha_common::{EV_FIN, EV_NEW_SENDER, EV_PRIORITY_CHANGE, EV_PRIORITY_ZERO, EV_RST, Event};
use tokio::{
    io::{Interest, unix::AsyncFd},
    sync::mpsc,
};

use super::maps::addr_from;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Kind {
    PriorityZero,
    NewSender,
    PriorityChange,
    Fin,
    Rst,
}

/// One edge the kernel saw, with its kernel time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelEvent {
    pub kind: Kind,
    pub ifindex: u32,
    pub at_ns: u64,
    pub addr: IpAddr,
    pub vrid: u8,
    pub priority: u8,
    pub old_priority: u8,
    pub port: u16,
    pub interval_cs: u16,
}

/// Decodes one ring-buffer record; `None` for a short or unknown one.
pub fn decode(bytes: &[u8]) -> Option<KernelEvent> {
    if bytes.len() < size_of::<Event>() {
        return None;
    }
    // SAFETY: length checked; Event is plain old data.
    let e: Event = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
    let kind = match e.kind {
        EV_PRIORITY_ZERO => Kind::PriorityZero,
        EV_NEW_SENDER => Kind::NewSender,
        EV_PRIORITY_CHANGE => Kind::PriorityChange,
        EV_FIN => Kind::Fin,
        EV_RST => Kind::Rst,
        _ => return None,
    };
    Some(KernelEvent {
        kind,
        ifindex: e.ifindex,
        at_ns: e.at_ns,
        addr: addr_from(&e.addr, e.family),
        vrid: e.vrid,
        priority: e.priority,
        old_priority: e.old_priority,
        port: e.port,
        interval_cs: e.adver_int_cs,
    })
}

/// Forwards every event to `tx` until the receiver goes away. Events older than
/// `since_ns` (left in a pinned buffer by a previous daemon) are skipped.
pub async fn forward(
    rb: RingBuf<MapData>,
    since_ns: u64,
    tx: mpsc::Sender<KernelEvent>,
) -> std::io::Result<()> {
    // SAFETY: the RingBuf owns its map fd for as long as the AsyncFd holds it.
    let mut fd = unsafe { AsyncFd::register_with_interest(rb, Interest::READABLE) }?;
    loop {
        let mut guard = fd.readable_mut().await?;
        let rb = guard.get_inner_mut();
        while let Some(item) = rb.next() {
            if let Some(ev) = decode(&item)
                && ev.at_ns >= since_ns
                && tx.send(ev).await.is_err()
            {
                return Ok(());
            }
        }
        guard.clear_ready();
    }
}
