//! Drives one VRRP instance: feeds the state machine with adverts and timer
//! expiries, and carries out its actions on the network.
use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::sync::{mpsc, watch};

use super::{
    machine::{Action, Event, Machine, Params, Reason, State},
    packet::{self, AUTH_NONE, AUTH_SIMPLE, Advert, MCAST_V4, MCAST_V6},
    socket::VrrpSocket,
};
use crate::{
    config::{Instance, Vip},
    control::{Command, Direction, Started},
    ebpf::{
        clock,
        events::{KernelEvent, Kind},
        loader::XdpProgram,
    },
    net::{
        garp::{Announcer, Burst},
        vip::Netlink,
    },
    notify::Hook,
    quorum::{candidate::Want, peer::LeaseEvent},
    redis::{
        health,
        reconcile::{Signal, View},
    },
    status::{InstanceStatus, Shared, Transition},
    tickle::reset,
};

/// A valid advert routed to this instance by the receiver.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub from: IpAddr,
    pub priority: u8,
    pub interval_cs: u16,
    pub at: u64,
}

/// How long a new master waits for its first GARP round before advertising.
const FIRST_ANNOUNCE_WAIT: Duration = Duration::from_millis(20);
/// How long the active check of a master's Redis may take after a FIN / RST.
const REDIS_CHECK_TIMEOUT: Duration = Duration::from_millis(300);

/// The XDP program, shared by the daemon's tasks (short map syscalls only).
pub type SharedXdp = Arc<Mutex<XdpProgram>>;

pub struct Driver {
    cfg: Instance,
    kernel: Option<SharedXdp>,
    /// Kernel stamp of the last advert per sender already handed to the machine.
    fed: HashMap<IpAddr, u64>,
    /// The master Redis endpoint the XDP program watches for us.
    watched: Option<(IpAddr, u16)>,
    /// What the Redis side follows (state and master), when it exists.
    view_tx: Option<watch::Sender<View>>,
    /// FIN / RST from the master's Redis are ignored until then: while a check
    /// runs and shortly after one succeeds (the check's own connection ends
    /// with a FIN from that Redis; every closed client connection does).
    check_quiet_until: Option<tokio::time::Instant>,
    ifindex: u32,
    machine: Machine,
    socket: Arc<VrrpSocket>,
    netlink: Netlink,
    announcer: Announcer,
    status: Shared,
    vips: Vec<Vip>,
    /// TLS to the master's Redis, for the FIN/RST check.
    redis_tls: Option<crate::redis::tls::Tls>,
    /// Why the machine entered its current state (the Redis side promotes
    /// differently after a silent master).
    entered_for: Option<Reason>,
    /// With `[quorum]`: the lease side.
    quorum: Option<QuorumLink>,
    /// The interface's MAC: the source of frames the XDP program sends on.
    own_mac: [u8; 6],
    /// The VIPs are given up (the kernel side says so) but stay on the
    /// interface until the sockets on them have sent what they must: until
    /// this deadline, or (`true`) sooner once no socket on them may send.
    linger: Option<(tokio::time::Instant, bool)>,
}

/// How long a given-up VIP stays on the interface for the kernel to send
/// what its sockets still owe: the resets and FINs of a Redis that just
/// died, the replies (READONLY, or a paused write's answer) of one that was
/// demoted. Once the address is gone the kernel cannot send from it, and a
/// client whose request was acknowledged waits for ever if it has no
/// timeout. Meanwhile XDP sends everything arriving for the VIP on.
const LINGER_MAX: Duration = Duration::from_millis(50);
const LINGER_POLL: Duration = Duration::from_millis(1);

/// An instance's link to the quorum task.
pub struct QuorumLink {
    pub handle: crate::quorum::peer::Handle,
    /// The instance's slot in the kernel's lease map.
    pub slot: u32,
    events: Option<mpsc::Receiver<LeaseEvent>>,
    /// The newest term known and its holder: the only master the local
    /// Redis may follow.
    newest: (u64, Option<IpAddr>),
}

impl QuorumLink {
    /// Registers the instance with the quorum task.
    pub fn register(
        handle: crate::quorum::peer::Handle,
        cfg: &Instance,
        holder: IpAddr,
        slot: u32,
        offset: Option<crate::quorum::staleness::Offset>,
    ) -> Self {
        let events = handle.register(
            &cfg.name,
            holder,
            u64::from(cfg.advert_interval_ms) * 1_000_000,
            slot,
            offset,
        );
        Self {
            handle,
            slot,
            events: Some(events),
            newest: (0, None),
        }
    }
}

async fn lease_event(rx: &mut Option<mpsc::Receiver<LeaseEvent>>) -> Option<LeaseEvent> {
    match rx {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

impl Driver {
    pub fn new(
        cfg: Instance,
        ifindex: u32,
        socket: Arc<VrrpSocket>,
        netlink: Netlink,
        status: Shared,
        kernel: Option<SharedXdp>,
        quorum: Option<QuorumLink>,
    ) -> Self {
        let params = Params {
            version: cfg.vrrp_version(),
            priority: cfg.priority,
            interval_cs: cfg.interval_cs(),
            preempt: cfg.preempt,
            preempt_delay_ns: cfg.preempt_delay_ms * 1_000_000,
            primary: socket.local,
            gated: quorum.is_some(),
            flap_hold_max_ns: cfg.flap_hold_max_ms.saturating_mul(1_000_000),
        };
        let vips = cfg.vip_list();
        // Checked when the config was loaded.
        let cfg_redis_tls = cfg.redis.as_ref().and_then(|r| r.tls().ok().flatten());
        let own_mac = crate::net::iface::mac(&cfg.interface).unwrap_or_default();
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
                    address: Some(socket.local),
                    ..Default::default()
                },
            )
        });
        Self {
            announcer: Announcer::spawn(cfg.interface.clone(), cfg.name.clone()),
            machine: Machine::new(params),
            kernel,
            fed: HashMap::new(),
            watched: None,
            view_tx: None,
            check_quiet_until: None,
            cfg,
            ifindex,
            socket,
            netlink,
            status,
            vips,
            redis_tls: cfg_redis_tls,
            entered_for: None,
            own_mac,
            linger: None,
            quorum,
        }
    }

    /// Lets a Redis agent follow this instance: returns what it watches.
    pub fn redis_view(&mut self) -> watch::Receiver<View> {
        // Until the Redis side says its data is in sync, do not preempt.
        self.machine.handle(Event::PreemptHold(true), 0);
        let (tx, rx) = watch::channel(View {
            state: State::Initialize,
            master: None,
            reason: None,
            fenced: self.quorum.is_some(),
        });
        self.view_tx = Some(tx);
        rx
    }

    /// Runs until `shutdown` flips to true; then resigns (priority 0 if master)
    /// and removes the VIPs before returning.
    pub async fn run(
        mut self,
        mut adverts: mpsc::Receiver<Incoming>,
        mut kernel_events: mpsc::Receiver<KernelEvent>,
        mut signals: mpsc::Receiver<Signal>,
        mut control: mpsc::Receiver<Command>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let (failed_tx, mut failed) = mpsc::channel::<IpAddr>(4);
        let mut lease_rx = self.quorum.as_mut().and_then(|q| q.events.take());
        // A VIP left on the interface by a crashed predecessor is not ours to
        // keep until VRRP says so.
        self.kernel_vips(false);
        // Its clients too: once the VIP is gone nothing from this host
        // reaches them, and one whose request is in flight would wait for
        // ever (library defaults have no timeout).
        if let Some(done) = self.reset_clients(reset::Why::LeftByPreviousRun) {
            let _ = done.await;
        }
        self.remove_vips().await;
        let acts = self.machine.handle(Event::Startup, clock::monotonic_ns());
        self.apply(acts).await;
        self.publish_view();
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
                    if self.linger.take().is_some() {
                        self.remove_vips().await;
                    }
                    return;
                }
                // Polled only while the sockets' state can end it early.
                _ = tokio::time::sleep_until(match self.linger {
                    Some((until, false)) => until,
                    _ => tokio::time::Instant::now() + LINGER_POLL,
                }), if self.linger.is_some() => {
                    self.linger_done().await;
                    Vec::new()
                }
                // Adverts first: a backup that wakes late drains what arrived
                // before it looks at its timer.
                Some(a) = adverts.recv() => {
                    self.status.count_instance(&self.cfg.name, |i| i.adverts_received += 1);
                    self.machine.handle(
                        Event::Advert { from: a.from, priority: a.priority, interval_cs: a.interval_cs, at: a.at },
                        clock::monotonic_ns(),
                    )
                }
                Some(ev) = kernel_events.recv() => self.on_kernel_event(ev, &failed_tx),
                Some(cmd) = control.recv() => match cmd {
                    Command::Switchover { direction, reply } => {
                        let res = self.switchover(direction).await;
                        tracing::info!(instance = %self.cfg.name, "switchover requested: {res:?}");
                        let _ = reply.send(res);
                        Vec::new()
                    }
                    Command::CancelHandOver => {
                        tracing::warn!(instance = %self.cfg.name, "hand-over cancelled: no backup took over in time");
                        self.machine.handle(Event::CancelHandOver, clock::monotonic_ns())
                    }
                },
                Some(sig) = signals.recv() => match sig {
                    Signal::Priority(p) => {
                        self.status.instance(&self.cfg.name, |i| i.effective_priority = p);
                        let was = self.machine.priority();
                        let acts = self.machine.handle(Event::Priority(p), clock::monotonic_ns());
                        // A backup that loses or regains its Redis changes no
                        // VRRP state; keepalived would say FAULT / BACKUP.
                        let changes = acts.iter().any(|a| matches!(a, Action::StateChanged { .. }));
                        if self.machine.state() == State::Backup && !changes && (was == 0) != (p == 0) {
                            let hook = if p == 0 { Hook::Fault } else { Hook::Backup };
                            self.cfg.notify.fire(&self.cfg.name, hook, p);
                        }
                        acts
                    }
                    Signal::HoldPreempt(h) => self.machine.handle(Event::PreemptHold(h), clock::monotonic_ns()),
                },
                Some(ev) = lease_event(&mut lease_rx) => self.on_lease(ev),
                Some(from) = failed.recv() => {
                    tracing::warn!(instance = %self.cfg.name, master = %from, "the master's Redis closed its connections and does not answer: taking over");
                    self.machine.handle(Event::MasterFailed { from }, clock::monotonic_ns())
                }
                _ = sleep => {
                    // Before deciding the master is down, look at what the
                    // kernel saw: a daemon that was scheduled late must not
                    // take over from a master that kept advertising.
                    let now = clock::monotonic_ns();
                    let mut acts = Vec::new();
                    if self.machine.state() == State::Backup {
                        for inc in self.kernel_adverts() {
                            acts.extend(self.machine.handle(
                                Event::Advert { from: inc.from, priority: inc.priority, interval_cs: inc.interval_cs, at: inc.at },
                                now,
                            ));
                        }
                    }
                    acts.extend(self.machine.handle(Event::Timer, now));
                    acts
                }
            };
            self.apply(acts).await;
            self.follow_master_redis();
            self.publish_view();
            if !refresh.is_zero()
                && self.machine.state() == State::Master
                && last_refresh.elapsed() >= refresh
            {
                last_refresh = tokio::time::Instant::now();
                drop(self.announcer.announce(self.burst(1)));
            }
        }
    }

    /// Whether an advert seen by the kernel passes the checks the XDP program
    /// does not make (unicast peers, v2 interval).
    /// A backup takes over (one above the master's priority); a master hands
    /// over (advertises 1 until a backup takes over, which the control socket
    /// waits for).
    async fn switchover(&mut self, direction: Direction) -> Result<Started, String> {
        let state = self.machine.state();
        let now = clock::monotonic_ns();
        match (state, direction) {
            (State::Master, Direction::Here) => Ok(Started::Master),
            (State::Master, Direction::Either | Direction::Away) => {
                if self.machine.priority() == 0 {
                    return Err("this master is resigning (priority 0) already".into());
                }
                let acts = self.machine.handle(Event::HandOver, now);
                self.apply(acts).await;
                Ok(Started::HandingOver)
            }
            (_, Direction::Away) => Err(format!(
                "this node is {state}, not master: run `ha-daemon switchover` on the node that should become master, or on the master to hand over"
            )),
            (_, Direction::Either | Direction::Here) => {
                let acts = self.machine.handle(Event::Switchover, now);
                self.apply(acts).await;
                match self.machine.state() {
                    State::Master => Ok(Started::Master),
                    // Gated: it asked the quorum for the lease, and the
                    // master to release it; the control socket waits for
                    // the promotion that follows.
                    State::Backup if self.machine.pending() == Some(Reason::Switchover) => {
                        Ok(Started::Master)
                    }
                    s => Err(format!(
                        "refused in state {s}: own priority {}, master {:?}; a master advertising 254, or priority 0 here, cannot be switched over from",
                        self.machine.priority(),
                        self.machine.master()
                    )),
                }
            }
        }
    }

    fn acceptable(&self, from: IpAddr, interval_cs: u16) -> bool {
        from != self.socket.local
            && from.is_ipv6() == self.socket.local.is_ipv6()
            && (self.cfg.unicast_peers.is_empty() || self.cfg.unicast_peers.contains(&from))
            && (self.cfg.version == 3 || interval_cs == self.cfg.interval_cs())
    }

    /// Adverts for this instance the kernel stamped after what the machine saw.
    fn kernel_adverts(&mut self) -> Vec<Incoming> {
        let Some(k) = &self.kernel else {
            return Vec::new();
        };
        let entries = match k.lock().unwrap_or_else(|e| e.into_inner()).maps.adverts() {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(instance = %self.cfg.name, "reading advert stamps: {e}");
                return Vec::new();
            }
        };
        let mut out: Vec<Incoming> = entries
            .into_iter()
            .filter(|e| e.ifindex == self.ifindex && e.vrid == self.cfg.vrid)
            .filter(|e| self.acceptable(e.source, (e.interval.as_millis() / 10) as u16))
            .filter(|e| e.last_ns > self.fed.get(&e.source).copied().unwrap_or(0))
            .map(|e| Incoming {
                from: e.source,
                priority: e.priority,
                interval_cs: (e.interval.as_millis() / 10) as u16,
                at: e.last_ns,
            })
            .collect();
        out.sort_by_key(|i| i.at);
        for i in &out {
            self.fed.insert(i.from, i.at);
        }
        out
    }

    fn on_kernel_event(&mut self, ev: KernelEvent, failed: &mpsc::Sender<IpAddr>) -> Vec<Action> {
        match ev.kind {
            // The master resigned: start the skew-time takeover now, whatever
            // the socket path is doing.
            Kind::PriorityZero
                if ev.ifindex == self.ifindex
                    && ev.vrid == self.cfg.vrid
                    && self.acceptable(ev.addr, ev.interval_cs) =>
            {
                self.machine.handle(
                    Event::Advert {
                        from: ev.addr,
                        priority: 0,
                        interval_cs: ev.interval_cs,
                        at: ev.at_ns,
                    },
                    clock::monotonic_ns(),
                )
            }
            Kind::Fin | Kind::Rst
                if self.watched == Some((ev.addr, ev.port))
                    && self.machine.state() == State::Backup =>
            {
                let now = tokio::time::Instant::now();
                if self.check_quiet_until.is_some_and(|t| now < t) {
                    return Vec::new();
                }
                // Quiet while the check runs and for a second after: the
                // check's own connection ends with a FIN from that Redis, as
                // every closed client connection does.
                self.check_quiet_until = Some(now + REDIS_CHECK_TIMEOUT + Duration::from_secs(1));
                tracing::debug!(instance = %self.cfg.name, "{:?} from the master's Redis {}:{}: checking it", ev.kind, ev.addr, ev.port);
                let (addr, port, tx, kind) = (ev.addr, ev.port, failed.clone(), ev.kind);
                let tls = self.redis_tls.clone();
                tokio::spawn(async move {
                    if !health::answers(addr, port, tls.as_ref(), REDIS_CHECK_TIMEOUT).await {
                        tracing::warn!(
                            "{kind:?} from the master's Redis {addr}:{port} and it does not answer"
                        );
                        let _ = tx.send(addr).await;
                    }
                });
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    fn on_lease(&mut self, ev: LeaseEvent) -> Vec<Action> {
        let now = clock::monotonic_ns();
        match ev {
            LeaseEvent::Acquired { .. } => self.machine.handle(Event::Lease(true), now),
            LeaseEvent::Lost { .. } => self.machine.handle(Event::Lease(false), now),
            LeaseEvent::YieldRequest { from, priority } => {
                tracing::info!(instance = %self.cfg.name, "{from} asks for the lease (priority {priority})");
                self.machine.handle(Event::YieldTo { from, priority }, now)
            }
            LeaseEvent::Newest { term, holder } => {
                if let Some(q) = &mut self.quorum {
                    q.newest = (term, holder);
                }
                Vec::new()
            }
        }
    }

    fn publish_view(&self) {
        if let Some(tx) = &self.view_tx {
            // With a quorum, the only master to follow is the newest term's
            // holder: never an older one that came back.
            let master = match &self.quorum {
                Some(q) => self.machine.master().filter(|m| q.newest.1 == Some(*m)),
                None => self.machine.master(),
            };
            let v = View {
                state: self.machine.state(),
                master,
                reason: self.entered_for,
                fenced: self.quorum.is_some() && self.machine.state() != State::Master,
            };
            tx.send_if_modified(|cur| {
                let changed = *cur != v;
                *cur = v;
                changed
            });
        }
    }

    /// Keeps the XDP program watching the current master's Redis.
    fn follow_master_redis(&mut self) {
        let (Some(k), Some(redis)) = (&self.kernel, &self.cfg.redis) else {
            return;
        };
        let want = match (self.machine.state(), self.machine.master()) {
            (State::Backup, Some(m)) => Some((m, redis.port)),
            _ => None,
        };
        if want == self.watched {
            return;
        }
        let mut x = k.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((a, p)) = self.watched.take() {
            x.maps.unwatch_endpoint(a, p);
        }
        if let Some((a, p)) = want {
            match x.maps.watch_endpoint(a, p) {
                Ok(()) => {
                    tracing::debug!(instance = %self.cfg.name, "XDP watches the master's Redis {a}:{p} for FIN/RST");
                    self.watched = want;
                }
                Err(e) => tracing::warn!(instance = %self.cfg.name, "watching {a}:{p}: {e}"),
            }
        }
    }

    fn burst(&self, repeat: u32) -> Burst {
        Burst {
            vips: self.vips.iter().map(|v| v.addr).collect(),
            repeat,
            interval: Duration::from_millis(self.cfg.garp_interval_ms),
            for_mac: None,
        }
    }

    /// This node yielded to a master that did not take the VIP from it (both
    /// were masters: a partition healed, or adverts were lost for a moment):
    /// the clients this node's announcements drew to it still send here, and
    /// keep doing so while the redirect carries them (their neighbour entries
    /// stay confirmed), until the window ends and they black-hole. Point
    /// them at the master's MAC, from our neighbour table (it is our Redis
    /// replication peer) or the MAC the XDP program saw announce the VIP.
    fn announce_for_master(&self) {
        let Some(IpAddr::V4(master)) = self.machine.master() else {
            return;
        };
        let own = self.own_mac;
        let mac = crate::net::iface::neighbour_mac(&self.cfg.interface, master).or_else(|| {
            let k = self.kernel.as_ref()?;
            let x = k.lock().unwrap_or_else(|e| e.into_inner());
            let owners = x.maps.owners().ok()?;
            let vip = self.vips.first()?.addr;
            owners
                .into_iter()
                .find(|(a, _)| *a == vip)
                .map(|(_, o)| o.mac)
        });
        match mac {
            Some(m) if m != own && m != [0; 6] => {
                tracing::info!(instance = %self.cfg.name, "announcing the VIPs at the master {master}'s MAC {}", crate::net::iface::fmt_mac(&m));
                let mut b = self.burst(self.cfg.garp_repeat);
                b.for_mac = Some(m);
                // The burst is queued by now; its first-frame signal is not needed.
                drop(self.announcer.announce(b));
            }
            _ => {
                tracing::debug!(instance = %self.cfg.name, "master {master}'s MAC unknown: not announcing for it")
            }
        }
    }

    async fn apply(&mut self, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::SendAdvert { priority } => self.send_advert(priority).await,
                Action::AddVips => {
                    self.linger = None;
                    for v in self.vips.clone() {
                        if let Err(e) = self.netlink.add(&self.cfg.interface, self.ifindex, v).await
                        {
                            self.error(e.to_string());
                        }
                    }
                    self.kernel_vips(true);
                }
                Action::RemoveVips => {
                    // The kernel stops serving first: what still arrives
                    // is reset or sent on to the new master, not dropped.
                    self.kernel_vips(false);
                    self.abort_clients();
                    if self.machine.priority() == 0 {
                        // The local Redis is gone, maybe still closing its
                        // sockets: the run loop removes the VIPs once they
                        // are done (and meanwhile XDP handles every frame
                        // that arrives for them).
                        self.announcer.cancel();
                        self.linger = Some((tokio::time::Instant::now() + LINGER_MAX, true));
                    } else if self.kernel.is_some() {
                        // A live Redis answers what it has read before it
                        // follows the new master; XDP (which keeps the
                        // address quiet) sends the rest on.
                        self.announcer.cancel();
                        self.linger = Some((tokio::time::Instant::now() + LINGER_MAX, false));
                    } else {
                        self.linger = None;
                        self.remove_vips().await;
                    }
                }
                Action::Announce => {
                    // The advert that follows makes a live old master drop
                    // the VIP: let the first round reach the clients first.
                    let first = self.announcer.announce(self.burst(self.cfg.garp_repeat));
                    let _ = tokio::time::timeout(FIRST_ANNOUNCE_WAIT, first).await;
                }
                Action::ArmTimer { .. } | Action::CancelTimer => {}
                Action::Damped {
                    master,
                    flaps,
                    hold_ns,
                } => {
                    tracing::warn!(instance = %self.cfg.name, "flapping: master {master} came back after this node took over (or was about to): {flaps} flap(s) in the last seconds; a silent master is now waited for {} ms more before a takeover", hold_ns / 1_000_000);
                    self.status.instance(&self.cfg.name, |i| {
                        i.flaps = flaps;
                        i.flap_hold_ms = hold_ns / 1_000_000;
                    });
                }
                Action::WantLease { preempt, priority } => {
                    if let Some(q) = &self.quorum {
                        q.handle.want(&self.cfg.name, Want { preempt, priority });
                    }
                }
                Action::DropLease => {
                    if let Some(q) = &self.quorum {
                        q.handle.unwant(&self.cfg.name);
                    }
                }
                Action::StateChanged { from, to, reason } => {
                    self.entered_for = Some(reason);
                    if from == State::Master
                        && to == State::Backup
                        && matches!(reason, Reason::HigherPriorityAdvert | Reason::TieBreak)
                    {
                        self.announce_for_master();
                    }
                    tracing::info!(instance = %self.cfg.name, vrid = self.cfg.vrid, "{from} -> {to}: {reason}");
                    let hook = match to {
                        State::Master => Hook::Master,
                        State::Backup if self.machine.priority() == 0 => Hook::Fault,
                        State::Backup => Hook::Backup,
                        State::Initialize => Hook::Stop,
                    };
                    self.cfg
                        .notify
                        .fire(&self.cfg.name, hook, self.machine.priority());
                    let master = self.machine.master();
                    let prio = self.machine.priority();
                    let failover_ms = match (from, to, self.machine.last_advert()) {
                        (State::Backup, State::Master, Some(last)) => {
                            Some(clock::monotonic_ns().saturating_sub(last) / 1_000_000)
                        }
                        _ => None,
                    };
                    self.status.instance(&self.cfg.name, |i| {
                        i.transitions_total += 1;
                        if failover_ms.is_some() {
                            i.last_failover_ms = failover_ms;
                        }
                        i.state = to;
                        i.master = master;
                        i.effective_priority = prio;
                        i.transitions.push(Transition {
                            from,
                            to,
                            reason,
                            why: reason.to_string(),
                            at_ms: std::time::SystemTime::now()
                                .duration_since(std::time::UNIX_EPOCH)
                                .unwrap_or_default()
                                .as_millis(),
                        });
                        let n = i.transitions.len();
                        if n > 32 {
                            i.transitions.drain(..n - 32);
                        }
                    });
                }
            }
        }
        let master = self.machine.master();
        let heard = self.machine.master_heard(clock::monotonic_ns());
        self.status.instance(&self.cfg.name, |i| {
            i.master = master;
            i.master_heard = heard;
        });
    }

    /// Tells the XDP program whether this node holds its VIPs. Giving them
    /// up opens the redirect window (`redirect_grace_ms`).
    fn kernel_vips(&mut self, held: bool) {
        let Some(k) = &self.kernel else {
            return;
        };
        let now = clock::monotonic_ns();
        let mut flags = if held { ha_common::VIP_HELD } else { 0 };
        if self.quorum.is_some() {
            flags |= ha_common::VIP_LEASE;
        }
        let slot = self.quorum.as_ref().map_or(0, |q| q.slot);
        let port = self.cfg.redis.as_ref().map_or(0, |r| r.port);
        let grace = self.cfg.redirect_grace_ms * 1_000_000;
        let mut x = k.lock().unwrap_or_else(|e| e.into_inner());
        for v in &self.vips {
            let prev = x.maps.vip(v.addr);
            let was_held = prev.is_some_and(|p| p.flags & ha_common::VIP_HELD != 0);
            let (released_ns, redirect_until_ns) = match (held, was_held, prev) {
                (true, _, _) => (0, 0),
                (false, true, _) => (now, now + grace),
                (false, false, Some(p)) => (p.released_ns, p.redirect_until_ns),
                (false, false, None) => (0, 0),
            };
            let st = ha_common::VipState {
                flags,
                slot,
                redis_port: port,
                own_mac: self.own_mac,
                released_ns,
                redirect_until_ns,
            };
            if let Err(e) = x.maps.set_vip(v.addr, st) {
                tracing::warn!(instance = %self.cfg.name, "VIP {} in the XDP map: {e}", v.addr);
            }
        }
    }

    /// With `[quorum]` and the kernel fence: the fence drops whatever the
    /// local Redis would still answer through the VIP, so its clients are
    /// reset now (the reset passes the fence), while the VIP is still on
    /// the interface to send from. Without it, only when this node resigned
    /// (priority 0) because its Redis hangs.
    fn abort_clients(&self) {
        let fenced = self.quorum.is_some() && self.kernel.is_some();
        if fenced || self.machine.priority() == 0 {
            self.reset_clients(reset::Why::GaveUp);
        }
    }

    /// Resets the clients of the VIPs' Redis port (none without `[redis]`),
    /// on a blocking thread.
    fn reset_clients(&self, why: reset::Why) -> Option<tokio::task::JoinHandle<usize>> {
        let port = self.cfg.redis.as_ref()?.port;
        let vips: Vec<IpAddr> = self.vips.iter().map(|v| v.addr).collect();
        Some(reset::spawn(self.cfg.name.clone(), vips, port, why))
    }

    /// Removes lingering VIPs once no socket on them may still send, or at
    /// the deadline.
    async fn linger_done(&mut self) {
        let Some((until, early)) = self.linger else {
            return;
        };
        if !early && tokio::time::Instant::now() < until {
            return; // woken early by another branch
        }
        let port = self.cfg.redis.as_ref().map_or(0, |r| r.port);
        let vips: Vec<IpAddr> = self.vips.iter().map(|v| v.addr).collect();
        let open = if early {
            crate::tickle::track::Tracker::new()
                .and_then(|mut t| t.still_sending(&vips, port))
                .unwrap_or(0)
        } else {
            0
        };
        if open > 0 && tokio::time::Instant::now() < until {
            return;
        }
        if open > 0 {
            tracing::debug!(instance = %self.cfg.name, "{open} socket(s) on the VIPs still open after {LINGER_MAX:?}: removing the VIPs anyway");
        }
        self.linger = None;
        self.remove_vips().await;
    }

    async fn remove_vips(&mut self) {
        self.announcer.cancel();
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
                Ok(()) => self
                    .status
                    .count_instance(&self.cfg.name, |i| i.adverts_sent += 1),
                Err(e) => self.error(format!("sending advert to {dst}: {e}")),
            }
        }
    }

    fn error(&self, e: String) {
        tracing::warn!(instance = %self.cfg.name, "{e}");
        self.status.instance(&self.cfg.name, |i| {
            i.errors.push(e);
            let n = i.errors.len();
            if n > 16 {
                i.errors.drain(..n - 16);
            }
        });
    }
}
