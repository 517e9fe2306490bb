//! Gratuitous ARP and unsolicited neighbour advertisements, sent with pnet's
//! datalink channel so switches and neighbours learn the new VIP holder at once.
//!
//! pnet's channel blocks, and an open AF_PACKET socket copies every received
//! frame, so each instance has its own thread that opens the channel for a
//! burst and closes it afterwards; the async side only queues requests.
use super::checksum;
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
        mpsc,
    },
    time::Duration,
};

use pnet_datalink::{Channel, Config, NetworkInterface};

/// What to announce, how many times, how far apart.
#[derive(Debug, Clone)]
pub struct Burst {
    pub vips: Vec<IpAddr>,
    pub repeat: u32,
    pub interval: Duration,
    /// Announce the VIPs at this MAC instead of ours (IPv4): a node that
    /// yields to a master that never stopped being one (a partition healed)
    /// points the clients it drew away back at that master, which sees no
    /// reason to announce itself.
    pub for_mac: Option<[u8; 6]>,
}

/// Handle to an instance's announcer thread.
pub struct Announcer {
    tx: mpsc::Sender<(u64, Burst, tokio::sync::oneshot::Sender<()>)>,
    /// Bumped by `cancel`: bursts queued or running under an older value stop.
    generation: Arc<AtomicU64>,
}

impl Announcer {
    /// Starts the thread for `iface`. Errors of a burst are logged, not fatal:
    /// the VIP is up either way and neighbours will ARP for it.
    pub fn spawn(iface: String, instance: String) -> Self {
        let (tx, rx) = mpsc::channel::<(u64, Burst, tokio::sync::oneshot::Sender<()>)>();
        let generation = Arc::new(AtomicU64::new(0));
        let current = generation.clone();
        std::thread::Builder::new()
            .name(format!("garp-{instance}"))
            .spawn(move || {
                while let Ok((g, b, first)) = rx.recv() {
                    let live = || current.load(Ordering::Relaxed) == g;
                    if !live() {
                        continue;
                    }
                    if let Err(e) = send_burst(&iface, &b, &live, first) {
                        tracing::warn!(instance, iface, "announcing {:?}: {e}", b.vips);
                    }
                }
            })
            .expect("spawn announcer thread");
        Self { tx, generation }
    }

    /// Queues a burst; the receiver fires once its first round is out (or
    /// it failed or was cancelled).
    pub fn announce(&self, burst: Burst) -> tokio::sync::oneshot::Receiver<()> {
        let (first, sent) = tokio::sync::oneshot::channel();
        let _ = self
            .tx
            .send((self.generation.load(Ordering::Relaxed), burst, first));
        sent
    }

    /// Stops announcing: the rest of a running burst and any queued one are
    /// dropped. Called when the VIPs go: a node that was master for a moment
    /// (two backups' timers firing together) must not keep pulling clients'
    /// neighbour entries to itself after it gave the VIP up.
    pub fn cancel(&self) {
        self.generation.fetch_add(1, Ordering::Relaxed);
    }
}

fn send_burst(
    iface: &str,
    b: &Burst,
    live: &dyn Fn() -> bool,
    first: tokio::sync::oneshot::Sender<()>,
) -> std::io::Result<()> {
    let mut first = Some(first);
    let nic = pnet_datalink::interfaces()
        .into_iter()
        .find(|i| i.name == iface)
        .ok_or_else(|| std::io::Error::other(format!("interface {iface} not found")))?;
    let mac = nic
        .mac
        .ok_or_else(|| std::io::Error::other(format!("interface {iface} has no MAC address")))?
        .octets();
    let link_local = link_local_of(&nic);
    let frames: Vec<Vec<u8>> = b
        .vips
        .iter()
        .flat_map(|vip| match (vip, b.for_mac) {
            (IpAddr::V4(a), None) => vec![arp(mac, *a, 1), arp(mac, *a, 2)],
            (IpAddr::V4(a), Some(other)) => {
                vec![arp_for(mac, other, *a, 1), arp_for(mac, other, *a, 2)]
            }
            (IpAddr::V6(a), None) => vec![unsolicited_na(mac, link_local.unwrap_or(*a), *a)],
            (IpAddr::V6(_), Some(_)) => Vec::new(),
        })
        .collect();
    let cfg = Config {
        read_timeout: Some(Duration::from_millis(1)),
        ..Config::default()
    };
    let mut tx = match pnet_datalink::channel(&nic, cfg)? {
        Channel::Ethernet(tx, _rx) => tx,
        _ => return Err(std::io::Error::other("not an Ethernet channel")),
    };
    for round in 0..b.repeat.max(1) {
        if round > 0 {
            std::thread::sleep(b.interval);
        }
        if !live() {
            break;
        }
        for f in &frames {
            if let Some(r) = tx.send_to(f, None) {
                r?;
            }
        }
        if let Some(f) = first.take() {
            let _ = f.send(());
        }
    }
    Ok(())
}

fn link_local_of(nic: &NetworkInterface) -> Option<Ipv6Addr> {
    nic.ips.iter().find_map(|n| match n.ip() {
        IpAddr::V6(a) if super::iface::is_link_local(&a) => Some(a),
        _ => None,
    })
}

/// A gratuitous ARP for `vip` from `mac`, broadcast: `op` 1 is the request
/// form (target = sender), 2 the reply form; some neighbours heed only one.
pub fn arp(mac: [u8; 6], vip: Ipv4Addr, op: u8) -> Vec<u8> {
    arp_for(mac, mac, vip, op)
}

/// The same, sent from `from` (the Ethernet source, so switches keep
/// learning each MAC on its own port) for `vip` at `at`.
pub fn arp_for(from: [u8; 6], at: [u8; 6], vip: Ipv4Addr, op: u8) -> Vec<u8> {
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&from);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, op]);
    f.extend_from_slice(&at);
    f.extend_from_slice(&vip.octets());
    f.extend_from_slice(if op == 1 { &[0; 6] } else { &[0xff; 6] });
    f.extend_from_slice(&vip.octets());
    f
}

/// An unsolicited neighbour advertisement (RFC 4861 7.2.6) for `target` to
/// all-nodes, Override set, with the target link-layer address option.
pub fn unsolicited_na(mac: [u8; 6], src: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
    let dst = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
    let mut icmp = vec![136, 0, 0, 0, 0x20, 0, 0, 0];
    icmp.extend_from_slice(&target.octets());
    icmp.extend_from_slice(&[2, 1]);
    icmp.extend_from_slice(&mac);
    // The ICMPv6 pseudo-header: source, destination, length, next header.
    let pseudo = checksum::sum(
        checksum::sum(icmp.len() as u32 + 58, &src.octets()),
        &dst.octets(),
    );
    let c = checksum::checksum(pseudo, &icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let mut f = Vec::with_capacity(14 + 40 + icmp.len());
    f.extend_from_slice(&[0x33, 0x33, 0, 0, 0, 1]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
    f.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
    f.extend_from_slice(&[58, 255]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    f.extend_from_slice(&icmp);
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arp_forms() {
        let mac = [2, 0, 0, 0, 0, 1];
        let vip = Ipv4Addr::new(198, 18, 0, 100);
        let req = arp(mac, vip, 1);
        assert_eq!(req.len(), 42);
        assert_eq!(&req[20..22], &[0, 1]);
        assert_eq!(&req[28..32], &vip.octets(), "sender IP = VIP");
        assert_eq!(&req[38..42], &vip.octets(), "target IP = VIP");
        assert_eq!(&arp(mac, vip, 2)[20..22], &[0, 2]);
    }

    #[test]
    fn na_checksum_verifies() {
        let mac = [2, 0, 0, 0, 0, 1];
        let src: Ipv6Addr = "fe80::1".parse().unwrap();
        let f = unsolicited_na(mac, src, "fd18::100".parse().unwrap());
        let icmp = &f[54..];
        let dst = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
        let pseudo = checksum::sum(
            checksum::sum(icmp.len() as u32 + 58, &src.octets()),
            &dst.octets(),
        );
        assert_eq!(checksum::checksum(pseudo, icmp), 0);
        assert_eq!(icmp[0], 136);
        assert_eq!(icmp[4] & 0x20, 0x20, "override flag");
    }
}
