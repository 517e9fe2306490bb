//! What clients see when a master vanishes: the master keeps the list of
//! client connections to its VIP's Redis port and shares it with the
//! backups (signed, over the quorum channel or `[tickle]`'s own); a backup
//! that takes over after the master went silent sends each of those clients
//! a tickle ACK right after the VIP is its own and its Redis promoted, so
//! the clients reset and reconnect now instead of at their retransmit timer.
pub mod book;
pub mod reset;
pub mod send;
pub mod track;

use std::{
    collections::BTreeSet,
    net::{IpAddr, Ipv4Addr},
    time::{Duration, Instant},
};

use tokio::sync::{mpsc, watch};

use crate::{
    quorum::{peer::Handle, wire::Body, wire::Conns},
    redis::reconcile::View,
    status::{LastTickle, Shared, TickleStatus},
    vrrp::machine::{Reason, State},
};
use book::{Book, Client, Reporter};

/// Rounds after the first: the client's kernel answers an out-of-window
/// segment at most once per 500 ms per connection (tcp_invalid_ratelimit),
/// so repeats closer than that are wasted.
pub(crate) const REPEATS: [Duration; 2] = [Duration::from_millis(600), Duration::from_millis(1500)];
/// How long the first round waits for the local Redis to be promoted (a
/// client that reconnects before that gets READONLY).
const PROMOTION_WAIT: Duration = Duration::from_millis(100);
/// A full list this often, besides the changes.
const SNAPSHOT_EVERY: Duration = Duration::from_secs(5);

pub struct Tickler {
    pub instance: String,
    pub vips: Vec<IpAddr>,
    pub port: u16,
    pub interval: Duration,
    pub view: watch::Receiver<View>,
    /// Promotions of the local Redis so far (the Agent's counter).
    pub promoted: Option<watch::Receiver<u64>>,
    pub peers: Vec<IpAddr>,
    pub handle: Handle,
    pub incoming: mpsc::UnboundedReceiver<(IpAddr, Conns)>,
    pub status: Shared,
    /// `[quorum]`: an old master fences itself when it gives the lease up,
    /// so its replies (and the resets of a dying Redis) no longer reach its
    /// clients, whatever the reason of the takeover.
    pub fenced: bool,
}

impl Tickler {
    /// Counts as a counter does: status.json shows it within its period
    /// (nobody is woken; a quiet update alone would not reach the file
    /// until something else changed, and on a backup whose adverts the
    /// kernel reads that can be never).
    fn set(&self, f: impl FnOnce(&mut TickleStatus)) {
        self.status.count(|s| {
            if let Some(i) = s.instances.get_mut(&self.instance) {
                f(i.tickle.get_or_insert_with(Default::default));
            }
        });
    }

    pub async fn run(mut self) {
        let mut tracker = match track::Tracker::new() {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::warn!(instance = %self.instance, "tickles: cannot read the socket table (sock_diag): {e}; no client list is kept");
                None
            }
        };
        let sender = match send::Sender::new() {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(instance = %self.instance, "tickles: no raw socket ({e}; needs CAP_NET_RAW): clients of a vanished master wait for their own timers");
                None
            }
        };
        let sender = std::sync::Arc::new(sender);
        let mut reporter = Reporter::default();
        let mut book = Book::default();
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut state = self.view.borrow().state;
        let mut last_snapshot = Instant::now();
        loop {
            tokio::select! {
                r = self.view.changed() => {
                    if r.is_err() {
                        return;
                    }
                    let v = *self.view.borrow();
                    if v.state == state {
                        continue;
                    }
                    state = v.state;
                    if v.state == State::Master {
                        reporter.start(crate::ebpf::clock::boottime_ns());
                        last_snapshot = Instant::now() - SNAPSHOT_EVERY;
                        // After a silent master: its clients heard nothing.
                        // After a resignation neither when it was for a hung
                        // Redis (a request in flight waits for an answer that
                        // never comes). Without a quorum, after a dead Redis
                        // or a switchover they were told (FIN, RST,
                        // READONLY); with one, the old master's fence drops
                        // what would tell them.
                        if matches!(v.reason, Some(Reason::MasterDown | Reason::MasterResigned))
                            || self.fenced
                        {
                            let clients: Vec<Client> = book.clients().iter().copied().collect();
                            self.tickle(clients, sender.clone());
                        }
                        book.clear();
                    }
                }
                Some((from, c)) = self.incoming.recv() => {
                    if state != State::Master {
                        book.apply(from, &c);
                        let (n, src) = (book.clients().len(), book.source().map(|s| s.0));
                        self.set(|t| {
                            t.known = n;
                            t.known_from = src;
                        });
                    }
                }
                _ = tick.tick() => {
                    if state != State::Master {
                        continue;
                    }
                    let Some(mut tr) = tracker.take() else { continue };
                    let (vips, port) = (self.vips.clone(), self.port);
                    let started = Instant::now();
                    let (tr, now) = match tokio::task::spawn_blocking(move || {
                        let r = tr.clients(&vips, port);
                        (tr, r)
                    })
                    .await
                    {
                        Ok(x) => x,
                        Err(_) => continue,
                    };
                    tracker = Some(tr);
                    let now: BTreeSet<Client> = match now {
                        Ok(n) => n,
                        Err(e) => {
                            tracing::debug!(instance = %self.instance, "sock_diag: {e}");
                            continue;
                        }
                    };
                    let took = started.elapsed().as_micros() as u64;
                    let msgs = if last_snapshot.elapsed() >= SNAPSHOT_EVERY {
                        last_snapshot = Instant::now();
                        reporter.snapshot(&self.instance, &now)
                    } else {
                        reporter.changes(&self.instance, &now)
                    };
                    for m in msgs {
                        self.handle.send(self.peers.clone(), Body::Conns(m));
                    }
                    let n = now.len();
                    self.set(|t| {
                        t.tracked = n;
                        t.last_dump_us = took;
                    });
                }
            }
        }
    }

    /// Tickles `clients` once the local Redis is promoted (or after
    /// `PROMOTION_WAIT`), then twice more, 600 ms and 1.5 s later.
    fn tickle(&self, clients: Vec<Client>, sender: std::sync::Arc<Option<send::Sender>>) {
        if clients.is_empty() {
            return;
        }
        let Some(vip) = v4(&self.vips) else {
            return;
        };
        let (port, instance, status) = (self.port, self.instance.clone(), self.status.clone());
        let mut promoted = self.promoted.clone();
        tokio::spawn(async move {
            let taken = Instant::now();
            if let Some(p) = promoted.as_mut() {
                let before = *p.borrow();
                let _ = tokio::time::timeout(PROMOTION_WAIT, p.wait_for(|n| *n > before)).await;
            }
            let after = taken.elapsed();
            if sender.is_none() {
                return;
            }
            let clients = std::sync::Arc::new(clients);
            // Paced sends block: off the runtime.
            let send = |sender: std::sync::Arc<Option<send::Sender>>,
                        clients: std::sync::Arc<Vec<Client>>| async move {
                tokio::task::spawn_blocking(move || {
                    let t = Instant::now();
                    let r = match sender.as_ref() {
                        Some(s) => s.send(vip, port, &clients),
                        None => Ok(0),
                    };
                    (r, t.elapsed())
                })
                .await
                .unwrap_or((Ok(0), Duration::ZERO))
            };
            let (r, took) = send(sender.clone(), clients.clone()).await;
            let sent = match r {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(instance = %instance, "tickles to {} clients: {e}", clients.len());
                    0
                }
            };
            tracing::info!(instance = %instance, "tickled {sent} of {} client connections in {took:?}, {after:?} after taking over", clients.len());
            let last = LastTickle {
                clients: clients.len(),
                sent,
                send_ms: took.as_secs_f64() * 1e3,
                after_takeover_ms: after.as_secs_f64() * 1e3,
                rounds: 1,
            };
            let set = |l: LastTickle| {
                status.update(|st| {
                    if let Some(i) = st.instances.get_mut(&instance) {
                        i.tickle.get_or_insert_with(Default::default).last = Some(l);
                    }
                })
            };
            set(last.clone());
            let mut at = Duration::ZERO;
            for (k, r) in REPEATS.iter().enumerate() {
                tokio::time::sleep(*r - at).await;
                at = *r;
                let _ = send(sender.clone(), clients.clone()).await;
                set(LastTickle {
                    rounds: k + 2,
                    ..last.clone()
                });
            }
        });
    }
}

/// A tickle's source address for IPv4 VIPs (IPv6 VIPs get none: see the
/// README's limits).
pub fn v4(vips: &[IpAddr]) -> Option<Ipv4Addr> {
    vips.iter().find_map(|v| match v {
        IpAddr::V4(a) => Some(*a),
        IpAddr::V6(_) => None,
    })
}
