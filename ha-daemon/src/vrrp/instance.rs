//! Drives one VRRP instance: feeds the state machine with adverts and timer
//! expiries, and carries out its actions on the network.
use std::{net::IpAddr, sync::Arc, time::Duration};

use tokio::sync::{mpsc, watch};

use super::{
    machine::{Action, Event, Machine, Params, State},
    packet::{self, AUTH_NONE, AUTH_SIMPLE, Advert, MCAST_V4, MCAST_V6},
    socket::VrrpSocket,
};
use crate::{
    config::{Instance, Vip},
    ebpf::clock,
    net::{
        garp::{Announcer, Burst},
        vip::Netlink,
    },
    status::{InstanceStatus, Shared, Transition},
};

/// A valid advert routed to this instance by the receiver.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub from: IpAddr,
    pub priority: u8,
    pub interval_cs: u16,
    pub at: u64,
}

pub struct Driver {
    cfg: Instance,
    ifindex: u32,
    machine: Machine,
    socket: Arc<VrrpSocket>,
    netlink: Netlink,
    announcer: Announcer,
    status: Shared,
    vips: Vec<Vip>,
}

impl Driver {
    pub fn new(
        cfg: Instance,
        ifindex: u32,
        socket: Arc<VrrpSocket>,
        netlink: Netlink,
        status: Shared,
    ) -> Self {
        let params = Params {
            version: cfg.vrrp_version(),
            priority: cfg.priority,
            interval_cs: cfg.interval_cs(),
            preempt: cfg.preempt,
            preempt_delay_ns: cfg.preempt_delay_ms * 1_000_000,
            primary: socket.local,
        };
        let vips = cfg.vip_list();
        status.update(|s| {
            s.instances.insert(
                cfg.name.clone(),
                InstanceStatus {
                    state: State::Initialize,
                    interface: cfg.interface.clone(),
                    vrid: cfg.vrid,
                    version: cfg.version,
                    priority: cfg.priority,
                    effective_priority: cfg.priority,
                    vips: cfg.vips.clone(),
                    master: None,
                    adverts_sent: 0,
                    adverts_received: 0,
                    drops: Default::default(),
                    transitions: Vec::new(),
                    errors: Vec::new(),
                },
            )
        });
        Self {
            announcer: Announcer::spawn(cfg.interface.clone(), cfg.name.clone()),
            machine: Machine::new(params),
            cfg,
            ifindex,
            socket,
            netlink,
            status,
            vips,
        }
    }

    /// Runs until `shutdown` flips to true; then resigns (priority 0 if master)
    /// and removes the VIPs before returning.
    pub async fn run(
        mut self,
        mut adverts: mpsc::Receiver<Incoming>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        // A VIP left on the interface by a crashed predecessor is not ours to
        // keep until VRRP says so.
        self.remove_vips().await;
        let acts = self.machine.handle(Event::Startup, clock::monotonic_ns());
        self.apply(acts).await;
        let refresh = Duration::from_millis(self.cfg.garp_refresh_ms);
        let mut last_refresh = tokio::time::Instant::now();
        loop {
            let sleep = match self.machine.deadline() {
                Some(d) => {
                    let wait = Duration::from_nanos(d.saturating_sub(clock::monotonic_ns()));
                    tokio::time::sleep(wait)
                }
                None => tokio::time::sleep(Duration::from_secs(3600)),
            };
            let acts = tokio::select! {
                biased;
                _ = shutdown.changed() => {
                    let acts = self.machine.handle(Event::Shutdown, clock::monotonic_ns());
                    self.apply(acts).await;
                    return;
                }
                // Adverts first: a backup that wakes late drains what arrived
                // before it looks at its timer.
                Some(a) = adverts.recv() => {
                    self.status.update(|s| {
                        if let Some(i) = s.instances.get_mut(&self.cfg.name) {
                            i.adverts_received += 1;
                        }
                    });
                    self.machine.handle(
                        Event::Advert { from: a.from, priority: a.priority, interval_cs: a.interval_cs, at: a.at },
                        clock::monotonic_ns(),
                    )
                }
                _ = sleep => self.machine.handle(Event::Timer, clock::monotonic_ns()),
            };
            self.apply(acts).await;
            if !refresh.is_zero()
                && self.machine.state() == State::Master
                && last_refresh.elapsed() >= refresh
            {
                last_refresh = tokio::time::Instant::now();
                self.announcer.announce(self.burst(1));
            }
        }
    }

    fn burst(&self, repeat: u32) -> Burst {
        Burst {
            vips: self.vips.iter().map(|v| v.addr).collect(),
            repeat,
            interval: Duration::from_millis(self.cfg.garp_interval_ms),
        }
    }

    async fn apply(&mut self, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::SendAdvert { priority } => self.send_advert(priority).await,
                Action::AddVips => {
                    for v in self.vips.clone() {
                        if let Err(e) = self.netlink.add(&self.cfg.interface, self.ifindex, v).await
                        {
                            self.error(e.to_string());
                        }
                    }
                }
                Action::RemoveVips => self.remove_vips().await,
                Action::Announce => self.announcer.announce(self.burst(self.cfg.garp_repeat)),
                Action::ArmTimer { .. } | Action::CancelTimer => {}
                Action::StateChanged { from, to, reason } => {
                    tracing::info!(instance = %self.cfg.name, vrid = self.cfg.vrid, "{from} -> {to}: {reason}");
                    let master = self.machine.master();
                    let prio = self.machine.priority();
                    self.status.update(|s| {
                        if let Some(i) = s.instances.get_mut(&self.cfg.name) {
                            i.state = to;
                            i.master = master;
                            i.effective_priority = prio;
                            i.transitions.push(Transition {
                                from,
                                to,
                                reason,
                                at_ms: std::time::SystemTime::now()
                                    .duration_since(std::time::UNIX_EPOCH)
                                    .unwrap_or_default()
                                    .as_millis(),
                            });
                            let n = i.transitions.len();
                            if n > 32 {
                                i.transitions.drain(..n - 32);
                            }
                        }
                    });
                }
            }
        }
        let master = self.machine.master();
        self.status.update(|s| {
            if let Some(i) = s.instances.get_mut(&self.cfg.name)
                && i.master != master
            {
                i.master = master;
            }
        });
    }

    async fn remove_vips(&mut self) {
        for v in self.vips.clone() {
            if let Err(e) = self
                .netlink
                .remove(&self.cfg.interface, self.ifindex, v)
                .await
            {
                self.error(e.to_string());
            }
        }
    }

    async fn send_advert(&mut self, priority: u8) {
        let (auth_type, auth_data) = match &self.cfg.auth_pass {
            Some(p) => (AUTH_SIMPLE, packet::auth_bytes(p)),
            None => (AUTH_NONE, [0; 8]),
        };
        let adv = Advert {
            version: self.cfg.vrrp_version(),
            vrid: self.cfg.vrid,
            priority,
            interval_cs: self.cfg.interval_cs(),
            addrs: self.vips.iter().map(|v| v.addr).collect(),
            auth_type,
            auth_data,
        };
        let dsts: Vec<IpAddr> = if self.cfg.unicast_peers.is_empty() {
            vec![if self.socket.local.is_ipv6() {
                IpAddr::V6(MCAST_V6)
            } else {
                IpAddr::V4(MCAST_V4)
            }]
        } else {
            self.cfg.unicast_peers.clone()
        };
        for dst in dsts {
            let sent = match packet::encode(&adv, self.socket.local, dst) {
                Ok(msg) => self.socket.send(&msg, dst).await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match sent {
                Ok(()) => self.status.update(|s| {
                    if let Some(i) = s.instances.get_mut(&self.cfg.name) {
                        i.adverts_sent += 1;
                    }
                }),
                Err(e) => self.error(format!("sending advert to {dst}: {e}")),
            }
        }
    }

    fn error(&self, e: String) {
        tracing::warn!(instance = %self.cfg.name, "{e}");
        self.status.update(|s| {
            if let Some(i) = s.instances.get_mut(&self.cfg.name) {
                i.errors.push(e);
                let n = i.errors.len();
                if n > 16 {
                    i.errors.drain(..n - 16);
                }
            }
        });
    }
}
