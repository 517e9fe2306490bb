//! Per instance, a loop that makes the local Redis's role follow the VRRP
//! state — re-checked every `check_interval_ms` and after every transition,
//! with `INFO replication` as the truth; idempotent, never a fixed sleep.
//!
//! - Master: the local Redis is promoted. When the old master still answers,
//!   it first stops taking writes (CLIENT PAUSE WRITE), the local replica
//!   catches up to its offset (deadline `catchup_timeout_ms`), then the local
//!   one is promoted and the old one made its replica: a client with a stale
//!   ARP entry sees a pause or READONLY, not an acknowledged write later lost.
//! - Backup: the local Redis follows the VRRP master's Redis (advert source,
//!   `port`), but only once that one really is a master — two nodes never end
//!   up replicas of each other — and never an empty one while the local
//!   dataset is not (the empty-master guard).
use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use tokio::sync::{mpsc, watch};

use super::{
    client::{Auth, Conn, Endpoint},
    detach::{self, Vouch},
    health::{self, Check, Health, Policy},
    role::Role,
    stream::StreamCheck,
};
use crate::{
    config::RedisConf,
    status::{RedisStatus, Shared},
    vrrp::machine::{Reason, State},
};

/// What the VRRP side says, for the Redis side to follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct View {
    pub state: State,
    pub master: Option<IpAddr>,
    /// Why the VRRP side entered `state`.
    pub reason: Option<Reason>,
    /// With `[quorum]`, this node does not hold the lease: a local Redis
    /// that is a master must not take writes (it is paused until it follows
    /// the newest term's master).
    pub fenced: bool,
}

/// What the Redis side tells the VRRP side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// The priority to advertise (health checks).
    Priority(u8),
    /// Hold preemption: the local Redis is not in sync with the master yet.
    HoldPreempt(bool),
}

const PEER_TIMEOUT: Duration = Duration::from_millis(300);
/// A live old master (preempted, switched over, its daemon gone) answers in
/// well under 1 ms on a LAN; this bounds a peer that is slow, not dead.
const OLD_MASTER_CONNECT: Duration = Duration::from_millis(100);
/// After the master went silent (no adverts: most likely its host is gone),
/// how long the promotion gives its Redis to answer, while it prepares the
/// local side: a live peer on the LAN answers in a few ms, a dead one never,
/// and every ms spent here is a ms without a writable master.
const SILENT_MASTER_PROBE: Duration = Duration::from_millis(5);
/// A master that resigned (priority 0: its Redis is gone or hung, or its
/// daemon shuts down): a live Redis behind a shutting-down daemon answers
/// in well under a ms; a hung one accepts the connection (the kernel does)
/// and never answers, so waiting longer only keeps clients waiting.
const RESIGNED_MASTER_PROBE: Duration = Duration::from_millis(30);

pub struct Agent {
    instance: String,
    cfg: RedisConf,
    local: Endpoint,
    auth: Option<Auth>,
    tls: Option<super::tls::Tls>,
    /// Our address as peers see it: where an old master is pointed after a promotion.
    self_addr: IpAddr,
    view: watch::Receiver<View>,
    signals: mpsc::Sender<Signal>,
    status: Shared,
    policy: Policy,
    /// Last HoldPreempt sent.
    holding: Option<bool>,
    /// A promotion refused by the empty-master guard: not retried before this.
    promote_backoff: Option<Instant>,
    /// This mastership term has lifted any pause on the local Redis (see
    /// `unpause_once`).
    unpaused: bool,
    /// With `[quorum]`: when the local Redis, a master on a node without
    /// the lease, was last paused for writes.
    fence_paused: Option<Instant>,
    conn: Option<Conn>,
    /// Whether the master's stream reaches the local replica (own task).
    stream: StreamCheck,
    guard_logged: Option<String>,
    /// Promotions so far, for whoever waits on one (the tickles).
    promoted: watch::Sender<u64>,
    /// With `[quorum]`: where the local data stands is sampled into this,
    /// every period, for the lease's renewals and takeover requests.
    offset: Option<(crate::quorum::staleness::Offset, Duration)>,
    /// Whether the daemon can still vouch for the master its Redis follows.
    vouch: Vouch,
    /// Why and from which master this run of the daemon detached the local
    /// Redis (see `detach`).
    detached: Option<Detached>,
}

struct Detached {
    from: Endpoint,
    at: Instant,
    why: String,
}

impl Agent {
    pub fn new(
        instance: String,
        cfg: RedisConf,
        base_priority: u8,
        self_addr: IpAddr,
        view: watch::Receiver<View>,
        signals: mpsc::Sender<Signal>,
        status: Shared,
    ) -> Result<Self, String> {
        let (host, port) = cfg
            .local()
            .ok_or_else(|| format!("redis.address {:?}", cfg.address))?;
        let auth = cfg.read_password()?.map(|password| Auth {
            username: cfg.username.clone(),
            password,
        });
        let tls = cfg.tls()?;
        let stream = StreamCheck::spawn(
            instance.clone(),
            Endpoint {
                host: String::new(),
                port: cfg.port,
                auth: auth.clone(),
                tls: tls.clone(),
            },
        );
        Ok(Self {
            stream,
            policy: Policy::new(base_priority, cfg.weight, cfg.fall, cfg.rise),
            local: Endpoint {
                host,
                port,
                auth: auth.clone(),
                tls: tls.clone(),
            },
            auth,
            tls,
            instance,
            cfg,
            self_addr,
            view,
            signals,
            status,
            holding: None,
            promote_backoff: None,
            unpaused: false,
            fence_paused: None,
            conn: None,
            guard_logged: None,
            promoted: watch::channel(0).0,
            offset: None,
            vouch: Vouch::default(),
            detached: None,
        })
    }

    /// Samples the local Redis's replication offset into `cell` every
    /// `period` (the lease's renewal period).
    pub fn with_offset(mut self, cell: crate::quorum::staleness::Offset, period: Duration) -> Self {
        self.offset = Some((cell, period));
        self
    }

    /// Promotions of the local Redis so far; changes on each one.
    pub fn promotions(&self) -> watch::Receiver<u64> {
        self.promoted.subscribe()
    }

    /// How long the daemon may lose sight of the master its Redis follows
    /// before it detaches it: a few checks, so a busy host's slow answer
    /// does not detach a replica that streams fine.
    fn unseen(&self) -> Duration {
        Duration::from_millis((5 * self.cfg.check_interval_ms).max(500))
    }

    fn peer(&self, addr: IpAddr) -> Endpoint {
        Endpoint {
            host: addr.to_string(),
            port: self.cfg.port,
            auth: self.auth.clone(),
            tls: self.tls.clone(),
        }
    }

    fn set_status(&self, f: impl FnOnce(&mut RedisStatus)) {
        self.status.instance(&self.instance, |i| {
            f(i.redis.get_or_insert_with(Default::default))
        });
    }

    pub async fn run(mut self) {
        let (htx, hrx) = mpsc::channel(16);
        let interval = Duration::from_millis(self.cfg.check_interval_ms);
        tokio::spawn(health::watch(
            self.local.host.clone(),
            self.local.port,
            self.auth.clone().map(|a| (a.username, a.password)),
            self.tls.clone(),
            interval,
            htx,
        ));
        // The checks become priorities on a task of their own: a reconcile
        // pass waiting on a hung local Redis must not hold the news back.
        let (health_tx, mut health) = watch::channel(Health::Up);
        tokio::spawn(judge(
            self.instance.clone(),
            self.local.to_string(),
            self.policy.clone(),
            u64::from(self.cfg.fall) * self.cfg.check_interval_ms,
            hrx,
            self.signals.clone(),
            self.status.clone(),
            health_tx,
        ));
        let mut was = Health::Up;
        if let Some((cell, period)) = self.offset.clone() {
            tokio::spawn(super::offset::sample(
                self.instance.clone(),
                self.local.clone(),
                period,
                cell,
            ));
        }
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                r = health.changed() => {
                    if r.is_err() {
                        return;
                    }
                    let h = *health.borrow_and_update();
                    if h == Health::Gone {
                        self.conn = None;
                    }
                    // A Redis that just came back (restarted) starts as an
                    // empty master: fix its role now, not at the next tick.
                    if was == Health::Gone && h != Health::Gone {
                        self.reconcile().await;
                    }
                    was = h;
                }
                r = self.view.changed() => {
                    if r.is_err() {
                        return;
                    }
                    self.reconcile().await;
                }
                _ = tick.tick() => self.reconcile().await,
            }
        }
    }

    async fn local_conn(&mut self) -> Option<&mut Conn> {
        if self.conn.is_none() {
            match self.local.connect(PEER_TIMEOUT).await {
                Ok(c) => self.conn = Some(c),
                Err(e) => {
                    tracing::debug!(instance = %self.instance, "{e}");
                    return None;
                }
            }
        }
        self.conn.as_mut()
    }

    async fn local_role(&mut self) -> Option<Role> {
        let c = self.local_conn().await?;
        match c.role().await {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::debug!(instance = %self.instance, "{e}");
                self.conn = None;
                None
            }
        }
    }

    /// One pass: look at the local Redis and the VRRP state, fix what differs.
    pub async fn reconcile(&mut self) {
        let view = *self.view.borrow();
        let Some(role) = self.local_role().await else {
            // Cannot confirm the local data is in sync: never preempt on it.
            self.hold(view.state == State::Backup).await;
            // Status shows no role rather than the last one a dead Redis had.
            self.set_status(|r| {
                r.role = None;
                r.link_up = None;
                r.lag_bytes = None;
                r.streaming = None;
            });
            return;
        };
        // `None`: nothing to change, the role just read is still the truth.
        let attempt = match (view.state, &role) {
            (State::Master, Role::Replica { .. })
                if self.promote_backoff.is_some_and(|t| Instant::now() < t) =>
            {
                None
            }
            (
                State::Master,
                Role::Replica {
                    master_host,
                    master_port,
                    ..
                },
            ) => {
                let old = match &self.detached {
                    Some(d) if detach::parked(&role) => d.from.clone(),
                    _ => Endpoint {
                        host: master_host.clone(),
                        port: *master_port,
                        auth: self.auth.clone(),
                        tls: self.tls.clone(),
                    },
                };
                Some(self.promote(old, detach::parked(&role)).await)
            }
            (State::Backup, _) => match view.master {
                // A detached Redis re-attaches once the daemon has read the
                // master since (a cut master would hold this pass up).
                Some(m) if detach::parked(&role) && !self.seen_since_detached(m) => None,
                Some(m) if !role.replicates(&m.to_string(), self.cfg.port) => {
                    Some(self.follow(m, &role).await)
                }
                _ => None,
            },
            _ => None,
        };
        let role = match attempt {
            None => Some(role),
            Some(result) => {
                if let Err(e) = result {
                    tracing::warn!(instance = %self.instance, "{e}");
                    self.conn = None;
                }
                // Something may have changed: read it again.
                self.local_role().await
            }
        };
        let role = self.detach_unvouched(&view, role).await;
        if role.as_ref().is_some_and(|r| !detach::parked(r)) {
            self.detached = None;
        }
        if view.state != State::Master {
            if self.unpaused {
                self.set_status(|r| r.writable = false);
            }
            self.unpaused = false;
        } else if matches!(role, Some(Role::Master { .. })) {
            let was_fenced = self.fence_paused.take().is_some();
            self.unpause_once().await;
            if was_fenced {
                // Writable now, as after a promotion: the tickler waits for it.
                self.promoted.send_modify(|n| *n += 1);
                tracing::info!(instance = %self.instance, "lease and VRRP master: the local Redis (a master already, self-fenced) takes writes again");
                self.set_status(|r| {
                    r.last_action =
                        Some("CLIENT UNPAUSE (master with the lease; was self-fenced)".into())
                });
            }
        }
        self.self_fence(&view, role.as_ref()).await;
        let port = self.cfg.port;
        if let Some(role) = role {
            // Preempting is for a Redis in sync with the master it replaces.
            let linked = match (&role, view.master) {
                (
                    Role::Replica {
                        link_up: true,
                        syncing: false,
                        ..
                    },
                    Some(m),
                ) if view.state == State::Backup && role.replicates(&m.to_string(), port) => {
                    Some(m)
                }
                _ => None,
            };
            // The master the local Redis follows is watched whatever its
            // link says (a cut leaves Redis's link up); a detached one's
            // VRRP master, to know when to re-attach.
            let watch = match &role {
                Role::Replica { .. } if detach::parked(&role) => {
                    view.master.filter(|_| view.state == State::Backup)
                }
                Role::Replica { master_host, .. } => master_host.parse().ok(),
                Role::Master { .. } => None,
            };
            self.stream.check(watch.map(|m| (m, role.offset())));
            let seen = self.stream.seen();
            let flowing = linked.is_some() && seen.master == linked && seen.streaming;
            let lag = if linked.is_some() && seen.master == linked {
                seen.lag
            } else {
                None
            };
            let hold = view.state == State::Backup && !flowing;
            let streaming = linked.map(|_| flowing);
            self.hold(hold).await;
            self.set_status(|r| {
                r.role = Some(role.name().into());
                r.offset = role.offset();
                r.replicas = match &role {
                    Role::Master { replicas, .. } => replicas
                        .iter()
                        .map(|x| crate::status::ReplicaStatus {
                            ip: x.ip.clone(),
                            port: x.port,
                            online: x.online,
                            offset: x.offset,
                        })
                        .collect(),
                    Role::Replica { .. } => Vec::new(),
                };
                r.detached = self.detached.as_ref().map(|d| d.why.clone()).or_else(|| {
                    detach::parked(&role)
                        .then(|| "detached by an earlier run of the daemon".to_string())
                });
                if let Role::Replica {
                    master_host,
                    master_port,
                    link_up,
                    ..
                } = &role
                    && !detach::parked(&role)
                {
                    r.master = Some(format!("{master_host}:{master_port}"));
                    r.link_up = Some(*link_up);
                } else {
                    r.master = None;
                    r.link_up = None;
                }
                let settled = match view.state {
                    State::Master => matches!(role, Role::Master { .. }),
                    State::Backup => view
                        .master
                        .is_some_and(|m| role.replicates(&m.to_string(), port)),
                    State::Initialize => false,
                };
                if settled {
                    r.guard = None;
                }
                r.lag_bytes = lag;
                r.streaming = streaming;
            });
        }
    }

    /// Whether the stream check has read `m` as a master since the local
    /// Redis was detached.
    fn seen_since_detached(&self, m: IpAddr) -> bool {
        let seen = self.stream.seen();
        seen.master == Some(m)
            && seen
                .at
                .is_some_and(|t| self.detached.as_ref().is_none_or(|d| t > d.at))
    }

    /// Not master: a local replica whose master the daemon can no longer
    /// vouch for is pointed nowhere (`detach`), before its link heals and
    /// it full-syncs whatever that master now holds.
    async fn detach_unvouched(&mut self, view: &View, role: Option<Role>) -> Option<Role> {
        let r = role?;
        if view.state == State::Master {
            self.vouch = Vouch::default();
            return Some(r);
        }
        let (host, port) = match &r {
            Role::Replica {
                master_host,
                master_port,
                ..
            } => (master_host.clone(), *master_port),
            Role::Master { .. } => (String::new(), 0),
        };
        let ip: Option<IpAddr> = host.parse().ok();
        let seen = self.stream.seen();
        let seen_at = seen.at.filter(|_| ip.is_some() && seen.master == ip);
        let Some(why) = self
            .vouch
            .observe(Instant::now(), &r, seen_at, self.unseen())
        else {
            return Some(r);
        };
        let from = Endpoint {
            host,
            port,
            auth: self.auth.clone(),
            tls: self.tls.clone(),
        };
        let Some(c) = self.local_conn().await else {
            return Some(r);
        };
        if let Err(e) = c.replicaof(detach::PARK.0, detach::PARK.1).await {
            tracing::warn!(instance = %self.instance, "detaching the local Redis from {from}: {e}");
            self.conn = None;
            return Some(r);
        }
        tracing::warn!(instance = %self.instance, "detached the local Redis from {from}: {why}; it keeps its data and re-attaches through the empty-master guard once {from} answers as a master");
        self.set_status(|s| s.last_action = Some(format!("detached from {from}: {why}")));
        self.detached = Some(Detached {
            from,
            at: Instant::now(),
            why: format!("{why} (detached so that it cannot resync by itself)"),
        });
        self.vouch = Vouch::default();
        self.local_role().await
    }

    /// With `[quorum]`, a node without the lease whose Redis is a master (it
    /// lost the lease, or started that way) keeps that Redis from taking
    /// writes until it follows the newest term's master; the kernel fence
    /// covers the VIP, this covers everything else (local clients, a
    /// direct address). Once it replicates, the pause is lifted.
    async fn self_fence(&mut self, view: &View, role: Option<&Role>) {
        const FOR: Duration = Duration::from_secs(30);
        match role {
            Some(Role::Master { .. }) if view.fenced && view.state != State::Master => {
                if self.fence_paused.is_some_and(|t| t.elapsed() < FOR / 3) {
                    return;
                }
                let Some(c) = self.local_conn().await else {
                    return;
                };
                match c.pause_writes(FOR.as_millis() as u64).await {
                    Ok(()) => {
                        if self.fence_paused.is_none() {
                            tracing::warn!(instance = %self.instance, "no lease: the local Redis (a master) takes no writes until it follows the newest term's master");
                            self.set_status(|r| {
                                r.last_action =
                                    Some("CLIENT PAUSE WRITE (no lease; self-fenced)".into())
                            });
                        }
                        self.fence_paused = Some(Instant::now());
                    }
                    Err(e) => {
                        tracing::warn!(instance = %self.instance, "self-fence: {e}");
                        self.conn = None;
                    }
                }
            }
            Some(Role::Replica { .. }) if self.fence_paused.is_some() => {
                let Some(c) = self.local_conn().await else {
                    return;
                };
                if c.unpause().await.is_ok() {
                    self.fence_paused = None;
                }
            }
            _ => {}
        }
    }

    async fn hold(&mut self, hold: bool) {
        if self.holding != Some(hold) {
            self.holding = Some(hold);
            tracing::debug!(instance = %self.instance, "preemption {}", if hold { "held: local Redis not in sync" } else { "allowed" });
            let _ = self.signals.send(Signal::HoldPreempt(hold)).await;
        }
    }

    /// Once per mastership term, with the local Redis a master: lift a write
    /// pause left on it. A peer that paused it to take over from us and died
    /// before unpausing leaves it for `catchup_timeout_ms` + 2 s, and writes
    /// through the VIP would wait that long on the new master. Only at the
    /// start of a term: later, a pause comes from a peer preempting us.
    async fn unpause_once(&mut self) {
        if self.unpaused {
            return;
        }
        let Some(c) = self.local_conn().await else {
            return;
        };
        match c.unpause().await {
            Ok(()) => {
                self.unpaused = true;
                self.set_status(|r| r.writable = true);
            }
            Err(e) => {
                tracing::warn!(instance = %self.instance, "{e}");
                self.conn = None;
            }
        }
    }

    /// Backup: replicate from the VRRP master's Redis, if it is a master and
    /// not an empty one replacing our data.
    async fn follow(
        &mut self,
        m: IpAddr,
        local_role: &Role,
    ) -> Result<(), super::client::RedisError> {
        let peer = self.peer(m);
        let mut pc = peer.connect(PEER_TIMEOUT).await?;
        let prole = pc.role().await?;
        if !matches!(prole, Role::Master { .. }) {
            // Its promotion has not happened yet; replicating now could make
            // two replicas of each other. Next pass.
            tracing::debug!(instance = %self.instance, "{peer} is not a master yet");
            return Ok(());
        }
        let theirs = pc.dbsize().await?;
        let ours = match self.local_conn().await {
            Some(c) => c.dbsize().await?,
            None => return Ok(()),
        };
        if theirs == 0 && ours > 0 && !self.cfg.allow_empty_master {
            let why = format!(
                "refusing to replicate from {peer}: its dataset is empty and the local one has {ours} keys (set redis.allow_empty_master to override)"
            );
            if self.guard_logged.as_deref() != Some(why.as_str()) {
                tracing::error!(instance = %self.instance, "{why}");
                self.guard_logged = Some(why.clone());
            }
            self.set_status(|r| r.guard = Some(why));
            return Ok(());
        }
        self.guard_logged = None;
        let Some(c) = self.local_conn().await else {
            return Ok(());
        };
        c.replicaof(&peer.host, peer.port).await?;
        // A demoted master's clients still write here; those that rediscover
        // only on a broken connection (most Sentinel-aware ones) must see one.
        let disconnected = match local_role {
            Role::Master { .. } => Some(c.disconnect_clients().await),
            _ => None,
        };
        let was = if detach::parked(local_role) {
            "detached"
        } else {
            local_role.name()
        };
        tracing::info!(instance = %self.instance, "local Redis ({was}) now replicates from {peer}");
        match disconnected {
            Some(Ok(n)) => {
                tracing::info!(instance = %self.instance, "disconnected {n} clients of the demoted master")
            }
            Some(Err(e)) => tracing::warn!(instance = %self.instance, "{e}"),
            None => {}
        }
        self.set_status(|r| {
            r.guard = None;
            r.last_action = Some(format!("REPLICAOF {peer} (was {was})"));
        });
        Ok(())
    }

    /// Master: promote the local Redis, pausing and draining the old master first
    /// when it still answers.
    /// `parked`: the local Redis is detached (`detach`), `old` the master
    /// it was detached from.
    async fn promote(
        &mut self,
        old: Endpoint,
        parked: bool,
    ) -> Result<(), super::client::RedisError> {
        let start = Instant::now();
        let mut deadline = Duration::from_millis(self.cfg.catchup_timeout_ms);
        let budget = match self.view.borrow().reason {
            Some(Reason::MasterDown | Reason::MasterRedisDown) => SILENT_MASTER_PROBE,
            Some(Reason::MasterResigned) => RESIGNED_MASTER_PROBE,
            _ => OLD_MASTER_CONNECT,
        };
        // The old master is asked while the local connection is made ready:
        // a dead one costs at most `budget`, not a TCP timeout before the
        // local promotion.
        let probe_ep = old.clone();
        let probe = tokio::spawn(async move {
            tokio::time::timeout(budget, async {
                let mut oc = probe_ep.connect(budget).await?;
                let role = oc.role().await?;
                Ok::<_, super::client::RedisError>((oc, role))
            })
            .await
        });
        let _ = self.local_conn().await;
        let mut old_conn = match probe.await {
            Ok(Ok(Ok((oc, Role::Master { .. })))) => Some(oc),
            Ok(Ok(Ok(_))) => None,
            Ok(Ok(Err(e))) => {
                tracing::debug!(instance = %self.instance, "after {:?}: {e}", start.elapsed());
                None
            }
            Ok(Err(_)) => {
                tracing::info!(instance = %self.instance, "the old master {old} did not answer within {budget:?}: promoting without it");
                None
            }
            Err(e) => {
                tracing::warn!(instance = %self.instance, "probing the old master {old}: {e}");
                None
            }
        };
        // Still master? A transient double master (two backups' timers firing
        // together) is over by now; promoting anyway would only churn.
        if self.view.borrow().state != State::Master {
            return Ok(());
        }
        let Some(oc) = old_conn.as_mut() else {
            let c = match self.local_conn().await {
                Some(c) => c,
                None => return Ok(()),
            };
            c.replicaof_no_one().await?;
            self.promoted.send_modify(|n| *n += 1);
            tracing::info!(instance = %self.instance, "promoted the local Redis at once: the old master {old} does not answer");
            self.set_status(|r| {
                r.promotions += 1;
                r.last_action = Some(format!("REPLICAOF NO ONE (old master {old} gone)"))
            });
            return Ok(());
        };
        if parked {
            // Detached, it cannot catch up: re-attached to the old master
            // (behind the guard) it does, and the next pass promotes it. An
            // empty old master is not followed: the local data wins and the
            // old master becomes its replica, without a catch-up.
            let theirs = oc.dbsize().await?;
            let allow = self.cfg.allow_empty_master;
            let Some(c) = self.local_conn().await else {
                return Ok(());
            };
            if theirs > 0 || c.dbsize().await? == 0 || allow {
                c.replicaof(&old.host, old.port).await?;
                tracing::info!(instance = %self.instance, "the old master {old} answers: the detached local Redis re-attaches to catch up before its promotion");
                return Ok(());
            }
            deadline = Duration::ZERO;
        }
        // 1. The old master stops acknowledging writes. Whatever happens in
        // the steps after, it is unpaused here, once.
        oc.pause_writes(deadline.as_millis() as u64 + 2000).await?;
        let result = self.promote_paused(oc, &old, start, deadline).await;
        let _ = oc.unpause().await;
        result
    }

    /// Steps 2-4 of a promotion, with the old master paused by the caller.
    async fn promote_paused(
        &mut self,
        oc: &mut Conn,
        old: &Endpoint,
        start: Instant,
        deadline: Duration,
    ) -> Result<(), super::client::RedisError> {
        let target = oc.role().await?.offset();
        // 2. The local replica catches up to everything it acknowledged.
        let mut caught = 0;
        while start.elapsed() < deadline {
            let Some(c) = self.local_conn().await else {
                break;
            };
            caught = c.role().await?.offset();
            if caught >= target {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        // The guard: never point an old master that has data at an empty one.
        let theirs = oc.dbsize().await?;
        let ours = match self.local_conn().await {
            Some(c) => c.dbsize().await?,
            None => return Ok(()),
        };
        if ours == 0 && theirs > 0 && !self.cfg.allow_empty_master {
            let why = format!(
                "not promoting: the local Redis is empty and the old master {old} has {theirs} keys (it would replicate from an empty master); set redis.allow_empty_master to override"
            );
            tracing::error!(instance = %self.instance, "{why}");
            self.promote_backoff = Some(Instant::now() + Duration::from_secs(1));
            self.set_status(|r| r.guard = Some(why));
            return Ok(());
        }
        // Still master after the catch-up? A master that was only late with
        // its adverts is back and we yielded: promoting now would only make it
        // take its Redis back through the same pause (the caller unpauses it).
        if self.view.borrow().state != State::Master {
            tracing::info!(instance = %self.instance, "promotion abandoned: no longer VRRP master; old master {old} unpaused");
            return Ok(());
        }
        // 3. Promote; 4. the old master follows us; its paused clients get READONLY.
        let Some(c) = self.local_conn().await else {
            return Ok(());
        };
        c.replicaof_no_one().await?;
        self.promoted.send_modify(|n| *n += 1);
        let me = self.self_addr.to_string();
        let repointed = oc.replicaof(&me, self.cfg.port).await;
        // Its clients (paused until now) are cut off rather than answered
        // READONLY: most Sentinel-aware ones ask again only on a broken
        // connection. Its own daemon would not see the demotion (it finds
        // its Redis a replica already).
        let disconnected = match &repointed {
            Ok(()) => Some(oc.disconnect_clients().await),
            Err(_) => None,
        };
        let pause = start.elapsed();
        let lag = target.saturating_sub(caught);
        if lag == 0 {
            tracing::info!(instance = %self.instance, "promoted the local Redis: old master {old} paused {pause:?}, caught up to offset {target}");
        } else {
            tracing::error!(instance = %self.instance, "promoted the local Redis after {pause:?} still {lag} bytes behind the old master {old}: its last writes are lost");
        }
        repointed?;
        match disconnected {
            Some(Ok(n)) => {
                tracing::info!(instance = %self.instance, "disconnected {n} clients of the old master {old}")
            }
            Some(Err(e)) => tracing::warn!(instance = %self.instance, "{e}"),
            None => {}
        }
        self.set_status(|r| {
            r.promotions += 1;
            r.last_pause_ms = Some(pause.as_millis() as u64);
            r.last_action = Some(format!(
                "promoted; old master {old} paused {} ms, lag {lag} bytes, now its replica",
                pause.as_millis()
            ));
        });
        Ok(())
    }
}

/// Health checks in, priorities out (to the VRRP side), state to status
/// and to the agent.
#[allow(clippy::too_many_arguments)]
async fn judge(
    instance: String,
    local: String,
    mut policy: Policy,
    silent_ms: u64,
    mut checks: mpsc::Receiver<Check>,
    signals: mpsc::Sender<Signal>,
    status: Shared,
    health: watch::Sender<Health>,
) {
    while let Some(c) = checks.recv().await {
        if let Some(p) = policy.observe(c) {
            match policy.state() {
                Health::Up => {
                    tracing::info!(instance = %instance, "local Redis {local} healthy again: priority {p}")
                }
                Health::Failing => {
                    tracing::warn!(instance = %instance, "local Redis {local} failing its checks: priority {p}")
                }
                Health::Hung => {
                    tracing::warn!(instance = %instance, "local Redis {local} has answered nothing for {silent_ms} ms: hung; priority 0, the peer takes over")
                }
                Health::Gone => {
                    tracing::warn!(instance = %instance, "local Redis {local} is gone: priority 0, the peer takes over")
                }
            }
            let _ = signals.send(Signal::Priority(p)).await;
        }
        let h = policy.state();
        status.instance(&instance, |i| {
            i.redis.get_or_insert_with(Default::default).health = Some(h);
        });
        health.send_if_modified(|cur| {
            let changed = *cur != h;
            *cur = h;
            changed
        });
        if c == Check::Gone {
            // Seen by the agent even when the state stays Gone.
            health.send_modify(|_| {});
        }
    }
}
