//! Resets for the clients of the VIP's Redis port, sent by the host that
//! has (or had) the VIP: SOCK_DESTROY makes the kernel send each a reset,
//! from the VIP, so it must run while the VIP is still on the interface.
//! A reset goes out once; a lost one would leave a client without a
//! timeout waiting for ever, so tickles follow it (`REPEATS`): each draws
//! an answer from a client that missed its reset, and whoever has the VIP
//! by then has no socket for it and resets it.
use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr},
};

use super::{REPEATS, book::Client, send::Sender, track::Tracker};

/// Why this host resets its VIP's clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// It gave the VIP up: its kernel fence drops what its Redis would still
    /// answer, or its Redis hangs. A client whose request is in flight
    /// would wait for its retransmit timer (for ever, if the request got
    /// through) before it tried the new master.
    GaveUp,
    /// A killed earlier run of the daemon left the VIP and its Redis's
    /// client connections; the VIP is about to go, and with it every way
    /// for those clients to hear anything from this host.
    LeftByPreviousRun,
}

impl Why {
    fn says(self) -> &'static str {
        match self {
            Why::GaveUp => "this node gave the VIP up; they reconnect to the new master",
            Why::LeftByPreviousRun => {
                "an earlier run of the daemon left them on the VIP this run removes; they reconnect to the master"
            }
        }
    }
}

/// Resets them now (blocking: one socket-table dump and one request per
/// connection), logs how many, and returns each one's VIP and client.
pub fn now(instance: &str, vips: &[IpAddr], port: u16, why: Why) -> Vec<(IpAddr, Client)> {
    match Tracker::new().and_then(|mut t| t.destroy(vips, port)) {
        Ok(reset) => {
            if !reset.is_empty() {
                tracing::info!(
                    instance,
                    "reset {} client connection(s) to the VIP's Redis: {}",
                    reset.len(),
                    why.says()
                );
            }
            reset
        }
        Err(e) => {
            tracing::warn!(
                instance,
                "resetting the clients of the VIP's Redis ({why:?}): {e}"
            );
            Vec::new()
        }
    }
}

/// `now` on a blocking thread; the handle ends with the resets sent (and
/// says how many). The follow-up tickles run on after it (IPv4 VIPs: the
/// tickles are IPv4 only).
pub fn spawn(
    instance: String,
    vips: Vec<IpAddr>,
    port: u16,
    why: Why,
) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let name = instance.clone();
        let reset = tokio::task::spawn_blocking(move || now(&name, &vips, port, why))
            .await
            .unwrap_or_default();
        let n = reset.len();
        let by_vip = by_vip(reset);
        if !by_vip.is_empty() {
            tokio::spawn(follow_up(instance, port, by_vip));
        }
        n
    })
}

/// The reset clients of each IPv4 VIP.
fn by_vip(reset: Vec<(IpAddr, Client)>) -> BTreeMap<Ipv4Addr, Vec<Client>> {
    let mut out: BTreeMap<Ipv4Addr, Vec<Client>> = BTreeMap::new();
    for (vip, client) in reset {
        if let IpAddr::V4(v) = vip {
            out.entry(v).or_default().push(client);
        }
    }
    out
}

/// Tickles the reset clients at `REPEATS` after their resets.
async fn follow_up(instance: String, port: u16, by_vip: BTreeMap<Ipv4Addr, Vec<Client>>) {
    let sender = match Sender::new() {
        Ok(s) => std::sync::Arc::new(s),
        Err(e) => {
            tracing::debug!(instance = %instance, "no tickles after the resets: {e}");
            return;
        }
    };
    let by_vip = std::sync::Arc::new(by_vip);
    let mut at = std::time::Duration::ZERO;
    for r in REPEATS {
        tokio::time::sleep(r - at).await;
        at = r;
        let (sender, by_vip) = (sender.clone(), by_vip.clone());
        // Paced sends block: off the runtime.
        let _ = tokio::task::spawn_blocking(move || {
            for (vip, clients) in by_vip.iter() {
                let _ = sender.send(*vip, port, clients);
            }
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follow_up_tickles_go_per_ipv4_vip() {
        let v = |s: &str| -> IpAddr { s.parse().unwrap() };
        let m = by_vip(vec![
            (v("192.0.2.10"), (v("192.0.2.50"), 40000)),
            (v("2001:db8::10"), (v("2001:db8::50"), 40001)),
            (v("192.0.2.11"), (v("192.0.2.51"), 40002)),
            (v("192.0.2.10"), (v("192.0.2.52"), 40003)),
        ]);
        assert_eq!(m.len(), 2);
        assert_eq!(m[&"192.0.2.10".parse::<Ipv4Addr>().unwrap()].len(), 2);
        assert_eq!(m[&"192.0.2.11".parse::<Ipv4Addr>().unwrap()].len(), 1);
    }
}
