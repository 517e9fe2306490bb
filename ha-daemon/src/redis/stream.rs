//! Whether the master's command stream really reaches the local replica.
//!
//! After a full sync Redis (7.0) starts streaming to the replica only on its
//! next REPLCONF ACK, up to 1 s later; a replica that reports `link up` may
//! meanwhile miss every write. Until the stream is seen, each check PUBLISHes
//! a probe into it (replicated, no data touched); the replica is streaming
//! once its offset reaches what the master had, probe included, at the
//! previous check.
//!
//! The checks talk to the master over the network, so they run in their own
//! task: a master that just died must never hold up the reconcile loop that
//! is about to promote the local Redis.
use std::{net::IpAddr, time::Duration};

use tokio::sync::watch;

use super::{
    client::{Conn, Endpoint},
    role::Role,
};

/// A master's network round trip is far below this; a dead one is given up
/// on quickly (the next check tries again).
const TIMEOUT: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Seen {
    /// The master the last check was about.
    pub master: Option<IpAddr>,
    /// Its stream was seen reaching the local replica.
    pub streaming: bool,
    /// The master's offset minus the local one at the last check.
    pub lag: Option<u64>,
    /// When the daemon last read it as a master.
    pub at: Option<std::time::Instant>,
}

/// The reconcile loop's side: ask (never waits), read the latest answer.
pub struct StreamCheck {
    ask: watch::Sender<Option<(IpAddr, u64)>>,
    seen: watch::Receiver<Seen>,
}

impl StreamCheck {
    /// `peer`: how to reach a master (its host is replaced by the master's address).
    pub fn spawn(instance: String, peer: Endpoint) -> Self {
        let (ask, asks) = watch::channel(None);
        let (tell, seen) = watch::channel(Seen::default());
        tokio::spawn(run(instance, peer, asks, tell));
        Self { ask, seen }
    }

    /// The local replica follows master `m` and is at `local_offset` (None:
    /// it follows nobody now).
    pub fn check(&self, about: Option<(IpAddr, u64)>) {
        self.ask.send_replace(about);
    }

    pub fn seen(&self) -> Seen {
        *self.seen.borrow()
    }
}

async fn run(
    instance: String,
    peer: Endpoint,
    mut asks: watch::Receiver<Option<(IpAddr, u64)>>,
    tell: watch::Sender<Seen>,
) {
    let mut conn: Option<(IpAddr, Conn)> = None;
    let mut before: Option<(IpAddr, u64)> = None;
    let mut seen = Seen::default();
    while asks.changed().await.is_ok() {
        let Some((m, local)) = *asks.borrow_and_update() else {
            (conn, before, seen) = (None, None, Seen::default());
            tell.send_replace(seen);
            continue;
        };
        if seen.master != Some(m) {
            // A new master: nothing read of it yet.
            seen = Seen {
                master: Some(m),
                ..Default::default()
            };
            before = None;
        }
        if conn.as_ref().is_none_or(|(a, _)| *a != m) {
            let ep = Endpoint {
                host: m.to_string(),
                ..peer.clone()
            };
            conn = match tokio::time::timeout(TIMEOUT, ep.connect(TIMEOUT)).await {
                Ok(Ok(c)) => Some((m, c)),
                _ => None,
            };
        }
        let Some((_, pc)) = conn.as_mut() else {
            continue;
        };
        let probe = async {
            if !seen.streaming
                && let Err(e) = pc.probe_stream().await
            {
                // Without it an idle master proves nothing; with writes it still works.
                tracing::debug!(instance = %instance, "{e}");
            }
            pc.role().await
        };
        let theirs = match tokio::time::timeout(TIMEOUT, probe).await {
            Ok(Ok(Role::Master { offset, .. })) => offset,
            Ok(Ok(_)) => continue,
            Ok(Err(e)) => {
                tracing::debug!(instance = %instance, "{e}");
                conn = None;
                continue;
            }
            Err(_) => {
                conn = None;
                continue;
            }
        };
        if let Some((pm, b)) = before
            && pm == m
            && local >= b
            && !seen.streaming
        {
            tracing::debug!(instance = %instance, "the stream from {m} reaches the local replica (offset {local})");
            seen.streaming = true;
        }
        before = Some((m, theirs));
        seen.at = Some(std::time::Instant::now());
        seen.lag = Some(theirs.saturating_sub(local));
        tell.send_replace(seen);
    }
}
