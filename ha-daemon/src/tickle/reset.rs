//! Resets for the clients of the VIP's Redis port, sent by the host that
//! has (or had) the VIP: SOCK_DESTROY makes the kernel send each a reset,
//! from the VIP, so it must run while the VIP is still on the interface.
use std::net::IpAddr;

use super::track::Tracker;

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
/// connection) and logs how many.
pub fn now(instance: &str, vips: &[IpAddr], port: u16, why: Why) -> usize {
    match Tracker::new().and_then(|mut t| t.destroy(vips, port)) {
        Ok(0) => 0,
        Ok(n) => {
            tracing::info!(
                instance,
                "reset {n} client connection(s) to the VIP's Redis: {}",
                why.says()
            );
            n
        }
        Err(e) => {
            tracing::warn!(
                instance,
                "resetting the clients of the VIP's Redis ({why:?}): {e}"
            );
            0
        }
    }
}

/// `now` on a blocking thread.
pub fn spawn(
    instance: String,
    vips: Vec<IpAddr>,
    port: u16,
    why: Why,
) -> tokio::task::JoinHandle<usize> {
    tokio::task::spawn_blocking(move || now(&instance, &vips, port, why))
}
