//! `ha-daemon run`: wires the configured instances to sockets, netlink, the
//! announcer and (when available) the XDP program, and shuts down cleanly.
use std::{
    collections::BTreeMap,
    net::IpAddr,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use ha_common::{FAMILY_V4, FAMILY_V6, InstanceConf, InstanceKey};
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::{mpsc, watch},
};

use crate::{
    config::{Config, Instance},
    ebpf::{
        events::{self, KernelEvent},
        loader::XdpProgram,
        object,
    },
    net::{iface, vip::Netlink},
    redis::reconcile::Agent,
    status::{Shared, Status},
    vrrp::{
        instance::Driver,
        packet,
        receiver::{self, Route, Routes},
        socket::VrrpSocket,
    },
};

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Do not load the XDP program even if this binary has it.
    pub no_ebpf: bool,
}

/// Paths a running daemon owns, all derived from the node name.
pub struct Paths {
    pub run_dir: PathBuf,
    pub pid_file: PathBuf,
    pub status_file: PathBuf,
    /// Control socket (`ha-daemon status`, `switchover`), mode 0600.
    pub socket: PathBuf,
}

impl Paths {
    pub fn of(cfg: &Config) -> Self {
        let run_dir = cfg.run_dir();
        Self {
            pid_file: run_dir.join("ha-daemon.pid"),
            status_file: run_dir.join("status.json"),
            socket: run_dir.join("ha-daemon.sock"),
            run_dir,
        }
    }
}

/// One socket per (interface, family) and the instances it serves.
struct Group {
    iface: String,
    ifindex: u32,
    local: IpAddr,
    instances: Vec<Instance>,
}

/// Resolves every interface and source address before anything is changed,
/// so a config that cannot run is refused whole.
fn plan(cfg: &Config) -> Result<Vec<Group>> {
    let mut groups: BTreeMap<(String, bool), Vec<Instance>> = BTreeMap::new();
    for i in &cfg.instances {
        groups
            .entry((i.interface.clone(), i.is_ipv6()))
            .or_default()
            .push(i.clone());
    }
    let mut out = Vec::new();
    for ((name, v6), instances) in groups {
        let ifindex =
            iface::index(&name).with_context(|| format!("instance {:?}", instances[0].name))?;
        let vips: Vec<IpAddr> = instances
            .iter()
            .flat_map(|i| i.vip_list())
            .map(|v| v.addr)
            .collect();
        let subnets = iface::subnets(&name);
        for i in &instances {
            for v in i.vip_list() {
                if !iface::in_some_subnet(v.addr, &subnets) {
                    tracing::warn!(instance = %i.name, "VIP {v} is outside every subnet of {name} ({}); clients reach it only through extra routes",
                        subnets.iter().filter(|(a, _)| !vips.contains(a)).map(|(a, p)| format!("{a}/{p}")).collect::<Vec<_>>().join(", "));
                }
            }
        }
        let Some(local) = iface::primary(&name, v6, &vips) else {
            bail!(
                "interface {name} has no {} address to send VRRP from (instance {:?}); add one (VIPs do not count)",
                if v6 { "IPv6 link-local" } else { "IPv4" },
                instances[0].name
            );
        };
        out.push(Group {
            iface: name,
            ifindex,
            local,
            instances,
        });
    }
    Ok(out)
}

type Controls = crate::control::Drivers;
type KernelTxs = Arc<Mutex<Vec<(String, mpsc::Sender<KernelEvent>)>>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A socket (interface, family) and the receiver routing its adverts.
struct SocketRt {
    socket: Arc<VrrpSocket>,
    routes: Routes,
    task: tokio::task::JoinHandle<()>,
}

/// A running instance: its config (to tell what a reload changes) and how
/// to stop it.
struct InstanceRt {
    cfg: Instance,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    agent: Option<tokio::task::JoinHandle<()>>,
    tickler: Option<tokio::task::JoinHandle<()>>,
}

/// Everything `run` started, so that a reload can change parts of it.
struct Runner {
    cfg: Config,
    status: Shared,
    netlink: Netlink,
    xdp: Option<Arc<Mutex<XdpProgram>>>,
    sockets: BTreeMap<(String, bool), SocketRt>,
    instances: BTreeMap<String, InstanceRt>,
    controls: Controls,
    kernel_txs: KernelTxs,
    /// With `[quorum]`: the quorum task, and each instance's kernel fence slot.
    quorum: Option<crate::quorum::peer::Handle>,
    slots: BTreeMap<String, u32>,
    /// Where connection lists go: the quorum task, or (`[tickle]` alone)
    /// one that only carries them.
    channel: Option<crate::quorum::peer::Handle>,
}

impl Runner {
    /// The instance's kernel fence slot: kept across reloads, the lowest free
    /// one for a new instance.
    fn slot(&mut self, name: &str) -> u32 {
        if let Some(s) = self.slots.get(name) {
            return *s;
        }
        let s = (0..)
            .find(|s| !self.slots.values().any(|x| x == s))
            .unwrap_or(0);
        self.slots.insert(name.to_owned(), s);
        s
    }

    /// Starts `inst` on its group's socket (opened now if it is new).
    async fn start_instance(&mut self, g: &Group, inst: Instance) -> Result<()> {
        let key = (g.iface.clone(), g.local.is_ipv6());
        if !self.sockets.contains_key(&key) {
            let socket = Arc::new(open_socket(g).await?);
            tracing::info!(interface = %g.iface, source = %g.local, "VRRP socket open");
            let routes: Routes = Default::default();
            let task = tokio::spawn(receiver::run(
                socket.clone(),
                routes.clone(),
                self.status.clone(),
            ));
            self.sockets.insert(
                key.clone(),
                SocketRt {
                    socket,
                    routes,
                    task,
                },
            );
        }
        // With a quorum, where the local Redis's data stands goes with every
        // lease request (a stale replica is not promoted).
        let offset = (self.quorum.is_some() && inst.redis.is_some())
            .then(crate::quorum::staleness::Offset::default);
        let quorum = match self.quorum.clone() {
            Some(h) => {
                let slot = self.slot(&inst.name);
                Some(crate::vrrp::instance::QuorumLink::register(
                    h,
                    &inst,
                    g.local,
                    slot,
                    offset.clone(),
                ))
            }
            None => None,
        };
        let srt = &self.sockets[&key];
        let (tx, rx) = mpsc::channel(1024);
        let name = inst.name.clone();
        let mut driver = Driver::new(
            inst.clone(),
            g.ifindex,
            srt.socket.clone(),
            self.netlink.clone(),
            self.status.clone(),
            self.xdp.clone(),
            quorum,
        );
        let (ptx, prx) = mpsc::channel(16);
        let mut tickler = None;
        let agent = match inst.redis.clone() {
            Some(rc) => {
                let view = driver.redis_view();
                let port = rc.port;
                let a = Agent::new(
                    name.clone(),
                    rc,
                    inst.priority,
                    g.local,
                    view.clone(),
                    ptx,
                    self.status.clone(),
                )
                .map_err(|e| anyhow::anyhow!("instance {name:?}: {e}"))?;
                let a = match offset {
                    Some(cell) => a.with_offset(
                        cell,
                        Duration::from_millis(u64::from(inst.advert_interval_ms).clamp(10, 1000)),
                    ),
                    None => a,
                };
                if let (Some(ch), Some(tc)) = (&self.channel, self.cfg.tickle_channel())
                    && !inst.is_ipv6()
                {
                    tickler = Some(tokio::spawn(
                        crate::tickle::Tickler {
                            instance: name.clone(),
                            vips: inst.vip_list().iter().map(|v| v.addr).collect(),
                            port,
                            interval: Duration::from_millis(tc.track_interval_ms),
                            view,
                            promoted: Some(a.promotions()),
                            peers: tc.peers.clone(),
                            handle: ch.clone(),
                            incoming: ch.conns(&name),
                            status: self.status.clone(),
                            fenced: self.cfg.quorum.is_some(),
                        }
                        .run(),
                    ));
                }
                Some(tokio::spawn(a.run()))
            }
            None => None,
        };
        lock(&srt.routes).push(Route {
            instance: name.clone(),
            vrid: inst.vrid,
            version: inst.vrrp_version(),
            auth: inst.auth_pass.as_deref().map(packet::auth_bytes),
            interval_cs: inst.interval_cs(),
            peers: inst.unicast_peers.clone(),
            voters: self
                .cfg
                .quorum
                .as_ref()
                .map(|q| q.peers.clone())
                .unwrap_or_default(),
            tx,
        });
        let (ktx, krx) = mpsc::channel(256);
        lock(&self.kernel_txs).push((name.clone(), ktx));
        let (ctx, crx) = mpsc::channel(4);
        lock(&self.controls).push((name.clone(), ctx));
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(driver.run(rx, krx, prx, crx, stop_rx));
        self.instances.insert(
            name,
            InstanceRt {
                cfg: inst,
                stop,
                task,
                agent,
                tickler,
            },
        );
        Ok(())
    }

    /// Stops instances (a master resigns and removes its VIPs), waiting up to
    /// 3 s, and forgets them everywhere.
    async fn stop_instances(&mut self, names: &[String]) {
        let mut tasks = Vec::new();
        for n in names {
            if let Some(rt) = self.instances.remove(n) {
                let _ = rt.stop.send(true);
                tasks.push((n.clone(), rt));
            }
        }
        for (n, rt) in tasks {
            if tokio::time::timeout(Duration::from_secs(3), rt.task)
                .await
                .is_err()
            {
                tracing::warn!(instance = %n, "did not stop within 3 s");
            }
            if let Some(a) = rt.agent {
                a.abort();
            }
            if let Some(t) = rt.tickler {
                t.abort();
            }
            for s in self.sockets.values() {
                lock(&s.routes).retain(|r| r.instance != *n);
            }
            lock(&self.controls).retain(|(x, _)| x != &n);
            lock(&self.kernel_txs).retain(|(x, _)| x != &n);
            if let Some(q) = &self.quorum {
                q.unregister(&n);
            }
            self.slots.remove(&n);
            self.status.update(|s| s.instances.remove(&n));
        }
        // Sockets no instance uses any more are closed.
        self.sockets.retain(|_, s| {
            let used = !lock(&s.routes).is_empty();
            if !used {
                s.task.abort();
            }
            used
        });
    }

    /// Applies a new config: unchanged instances keep running untouched;
    /// removed ones stop; changed and new ones (re)start. Everything that can
    /// be checked is checked before anything changes.
    async fn reload(&mut self, new: Config) -> Result<String> {
        if new.node != self.cfg.node {
            bail!(
                "[node] changed (name, run_dir, bpf_pin_dir or metrics): that needs a restart; nothing applied"
            );
        }
        if new.quorum != self.cfg.quorum
            || new.tickle != self.cfg.tickle
            || new.sentinel != self.cfg.sentinel
        {
            bail!(
                "[quorum], [tickle] or [sentinel] changed: that needs a restart; nothing applied"
            );
        }
        let groups = plan(&new)?;
        for i in &new.instances {
            if let Some(rc) = &i.redis {
                rc.read_password()
                    .map_err(|e| anyhow::anyhow!("instance {:?}: {e}", i.name))?;
            }
        }
        let wanted: BTreeMap<&str, &Instance> =
            new.instances.iter().map(|i| (i.name.as_str(), i)).collect();
        let stale: Vec<String> = self
            .instances
            .iter()
            .filter(|(n, rt)| wanted.get(n.as_str()) != Some(&&rt.cfg))
            .map(|(n, _)| n.clone())
            .collect();
        let kept = self.instances.len() - stale.len();
        self.stop_instances(&stale).await;
        if let Some(x) = &self.xdp
            && let Err(e) = configure_xdp(&mut lock(x), &new, &groups)
        {
            tracing::warn!("eBPF: reconfiguring for the new instances: {e:#}");
        }
        let mut started = 0;
        for g in &groups {
            for inst in &g.instances {
                if !self.instances.contains_key(&inst.name) {
                    self.start_instance(g, inst.clone()).await?;
                    started += 1;
                }
            }
        }
        self.cfg = new;
        Ok(format!(
            "{kept} instance(s) unchanged, {} stopped, {started} started",
            stale.len()
        ))
    }
}

pub async fn run(cfg: Config, opts: RunOptions) -> Result<()> {
    run_with(cfg, None, opts).await
}

/// Runs until SIGTERM/SIGINT. With `path`, SIGHUP reloads the config from it.
pub async fn run_with(cfg: Config, path: Option<PathBuf>, opts: RunOptions) -> Result<()> {
    let paths = Paths::of(&cfg);
    let groups = plan(&cfg)?;
    let metrics = match cfg.node.metrics {
        Some(addr) => Some(
            crate::metrics::bind(addr)
                .await
                .with_context(|| format!("[node] metrics = \"{addr}\": cannot listen there"))?,
        ),
        None => None,
    };
    let sentinel = match &cfg.sentinel {
        Some(sc) => Some(crate::sentinel::bind(sc).await.with_context(|| {
            format!("[sentinel] listen = \"{}\": cannot listen there", sc.listen)
        })?),
        None => None,
    };
    std::fs::create_dir_all(&paths.run_dir)
        .with_context(|| format!("creating run dir {}", paths.run_dir.display()))?;
    std::fs::write(&paths.pid_file, format!("{}\n", std::process::id()))
        .with_context(|| format!("writing {}", paths.pid_file.display()))?;

    let status = Shared::new(Status {
        node: cfg.node.name.clone(),
        pid: std::process::id(),
        ..Default::default()
    });
    let started_ns = crate::ebpf::clock::monotonic_ns();
    for w in cfg.warnings() {
        tracing::warn!("{w}");
    }
    let xdp = attach_xdp(&cfg, &groups, &opts, &status).map(|x| Arc::new(Mutex::new(x)));
    let mut helpers = Vec::new();
    // The kernel side of the lease: the quorum thread writes the deadline
    // through its own handle on the pinned map (no lock shared with the
    // rest of the daemon); the heartbeat likewise.
    let fence = xdp.as_ref().and_then(|_| {
        match crate::ebpf::maps::open_pinned_array::<ha_common::Lease>(
            &cfg.bpf_pin_dir(),
            ha_common::MAP_LEASES,
        ) {
            Ok(arr) => {
                let arr = Mutex::new(arr);
                let f: crate::quorum::peer::Fence = Arc::new(move |slot, until_ns| {
                    let until_ns = match until_ns {
                        0 => 0,
                        t => crate::ebpf::clock::to_kernel_boottime(t),
                    };
                    if let Err(e) = lock(&arr).set(slot, ha_common::Lease { until_ns }, 0) {
                        tracing::error!("writing the lease deadline into the kernel fence: {e}");
                    }
                });
                Some(f)
            }
            Err(e) => {
                tracing::warn!("the kernel lease fence is off: {e}");
                None
            }
        }
    });
    if let Some(beat) = xdp.as_ref().and_then(|_| {
        crate::ebpf::maps::open_pinned_array::<u64>(&cfg.bpf_pin_dir(), ha_common::MAP_HEARTBEAT)
            .map_err(|e| tracing::warn!("no heartbeat for the XDP program: {e}"))
            .ok()
    }) {
        let period = Duration::from_millis(u64::from(min_interval_ms(&cfg) / 2).max(1));
        helpers.push(tokio::spawn(heartbeat(beat, period)));
    }
    if cfg.quorum.is_some() && fence.is_none() {
        tracing::warn!(
            "[quorum] without the eBPF fence: the lease is enforced by this daemon alone, so a stalled or killed daemon's Redis is not fenced"
        );
    }
    let quorum = match &cfg.quorum {
        Some(q) => {
            let settings = crate::quorum::peer::Settings {
                port: q.port,
                peers: q.peers.clone(),
                key: q.key().map_err(|e| anyhow::anyhow!("[quorum] {e}"))?,
                drift_ppm: q.max_drift_ppm,
                run_dir: paths.run_dir.clone(),
                witness: false,
                max_stale_ns: q.max_staleness_ms.saturating_mul(1_000_000),
            };
            let handle = crate::quorum::peer::Quorum::spawn_thread(settings, fence, status.clone())
                .context("[quorum]: cannot listen")?;
            Some(handle)
        }
        None => None,
    };
    let channel = match (&quorum, cfg.tickle_channel()) {
        (Some(q), Some(_)) => Some(q.clone()),
        (None, Some(t)) => {
            let settings = crate::quorum::peer::Settings {
                port: t.port,
                peers: t.peers.clone(),
                key: crate::quorum::wire::Key::read(&t.key_file)
                    .map_err(|e| anyhow::anyhow!("[tickle] {e}"))?,
                drift_ppm: crate::quorum::timing::DEFAULT_DRIFT_PPM,
                run_dir: paths.run_dir.clone(),
                witness: false,
                max_stale_ns: u64::MAX,
            };
            Some(
                crate::quorum::peer::Quorum::spawn_thread(settings, None, status.clone())
                    .context("[tickle]: cannot listen")?,
            )
        }
        (_, None) => None,
    };
    let mut rt = Runner {
        channel,
        cfg: cfg.clone(),
        status: status.clone(),
        netlink: Netlink::connect()?,
        xdp: xdp.clone(),
        sockets: BTreeMap::new(),
        instances: BTreeMap::new(),
        controls: Default::default(),
        kernel_txs: Default::default(),
        quorum,
        slots: BTreeMap::new(),
    };
    for g in &groups {
        for inst in &g.instances {
            if let Err(e) = rt.start_instance(g, inst.clone()).await {
                let all: Vec<String> = rt.instances.keys().cloned().collect();
                rt.stop_instances(&all).await;
                return Err(e);
            }
        }
    }
    let socket_path = paths.socket.clone();
    let (control_status, controls, control_quorum) =
        (status.clone(), rt.controls.clone(), rt.quorum.clone());
    helpers.push(tokio::spawn(async move {
        if let Err(e) = crate::control::serve(
            socket_path.clone(),
            control_status,
            controls,
            control_quorum,
        )
        .await
        {
            tracing::warn!("control socket {}: {e}", socket_path.display());
        }
    }));
    // Kernel events go to every instance; each picks what concerns it.
    let events = xdp.as_ref().and_then(|x| lock(x).take_events());
    if let Some(rb) = events {
        let (etx, mut erx) = mpsc::channel::<KernelEvent>(1024);
        helpers.push(tokio::spawn(async move {
            if let Err(e) = events::forward(rb, started_ns, etx).await {
                tracing::warn!("reading XDP events: {e}");
            }
        }));
        let txs = rt.kernel_txs.clone();
        helpers.push(tokio::spawn(async move {
            while let Some(ev) = erx.recv().await {
                tracing::debug!(?ev, "kernel event");
                for (_, tx) in lock(&txs).iter() {
                    let _ = tx.try_send(ev.clone());
                }
            }
        }));
    }
    if let (Some(addr), Some(listener)) = (cfg.node.metrics, metrics) {
        let pins = xdp.as_ref().map(|_| cfg.bpf_pin_dir());
        let st = status.clone();
        helpers.push(tokio::spawn(async move {
            if let Err(e) = crate::metrics::serve(listener, st, pins).await {
                tracing::warn!("metrics on {addr}: {e}");
            }
        }));
    }
    let _sentinel = match (&cfg.sentinel, sentinel) {
        (Some(sc), Some(listener)) => Some(
            crate::sentinel::start(sc, &cfg.instances, status.clone(), listener)
                .map_err(|e| anyhow::anyhow!("[sentinel]: {e}"))?,
        ),
        _ => None,
    };
    helpers.push(tokio::spawn(
        status
            .clone()
            .writer(paths.status_file.clone(), Duration::from_millis(100)),
    ));
    helpers.push(tokio::spawn(crate::systemd::keepalive(status.clone())));
    crate::systemd::notify("READY=1");

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM: resigning and removing VIPs"); break; }
            _ = int.recv() => { tracing::info!("SIGINT: resigning and removing VIPs"); break; }
            _ = hup.recv() => {
                let Some(p) = &path else {
                    tracing::warn!("SIGHUP: no config file to reload from");
                    continue;
                };
                crate::systemd::notify("RELOADING=1");
                let result = match Config::load(p) {
                    Ok(new) => rt.reload(new).await,
                    Err(e) => Err(e.into()),
                };
                match result {
                    Ok(what) => tracing::info!("SIGHUP: reloaded {}: {what}", p.display()),
                    Err(e) => tracing::error!("SIGHUP: {e:#}; the running config is kept"),
                }
                crate::systemd::notify("READY=1");
            }
        }
    }
    crate::systemd::notify("STOPPING=1");
    let all: Vec<String> = rt.instances.keys().cloned().collect();
    // Stopped together, not one after another: each resigns at once.
    for n in &all {
        if let Some(i) = rt.instances.get(n) {
            let _ = i.stop.send(true);
        }
    }
    rt.stop_instances(&all).await;
    // notify_stop and friends finish (or hit their timeout) before we go.
    crate::notify::drain(Duration::from_secs(5)).await;
    for h in helpers {
        h.abort();
    }
    for s in rt.sockets.values() {
        s.task.abort();
    }
    status.save_now(&paths.status_file);
    let _ = std::fs::remove_file(&paths.pid_file);
    let _ = std::fs::remove_file(&paths.socket);
    Ok(())
}

/// Opens a group's socket. An IPv6 link-local address is unusable while
/// duplicate address detection runs (just after the link comes up, e.g. at
/// boot): wait for it rather than fail.
async fn open_socket(g: &Group) -> Result<VrrpSocket> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut said = false;
    loop {
        match VrrpSocket::open(&g.iface, g.ifindex, g.local) {
            Ok(s) => return Ok(s),
            Err(e)
                if e.raw_os_error() == Some(libc::EADDRNOTAVAIL)
                    && tokio::time::Instant::now() < deadline =>
            {
                if !said {
                    tracing::info!(interface = %g.iface, "waiting for {} to finish duplicate address detection", g.local);
                    said = true;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "opening the VRRP socket on {} from {} (needs CAP_NET_RAW)",
                        g.iface, g.local
                    )
                });
            }
        }
    }
}

/// Loads the XDP program with its maps pinned under the node's pin dir,
/// writes the instances it validates against, and attaches it to every VRRP
/// interface; or says once why the daemon runs from its sockets alone.
fn attach_xdp(
    cfg: &Config,
    groups: &[Group],
    opts: &RunOptions,
    status: &Shared,
) -> Option<XdpProgram> {
    let (prog, mode) = if opts.no_ebpf {
        (
            None,
            "off (--no-ebpf): adverts timed from the socket".to_owned(),
        )
    } else if object::OBJECT.is_none() {
        (None, format!("off: {}", object::describe()))
    } else {
        match load_xdp(cfg, groups) {
            Ok((p, mode)) => (Some(p), mode),
            Err(e) => (None, format!("off: {e:#}; adverts timed from the socket")),
        }
    };
    if prog.is_some() {
        tracing::info!("eBPF: {mode}");
    } else {
        tracing::warn!("eBPF: {mode}");
    }
    status.update(|s| s.ebpf = mode);
    prog
}

fn load_xdp(cfg: &Config, groups: &[Group]) -> Result<(XdpProgram, String)> {
    let pin_dir = cfg.bpf_pin_dir();
    let mut p = XdpProgram::load_pinned(&pin_dir)?;
    let modes = configure_xdp(&mut p, cfg, groups)?;
    Ok((
        p,
        format!(
            "XDP on {}, maps pinned in {}",
            modes.join(", "),
            pin_dir.display()
        ),
    ))
}

/// The smallest advert interval of the config, ms.
fn min_interval_ms(cfg: &Config) -> u32 {
    cfg.instances
        .iter()
        .map(|i| i.advert_interval_ms)
        .min()
        .unwrap_or(1000)
}

/// Writes the daemon's heartbeat into the XDP program's map: when it stops,
/// the program stops serving this node's VIPs (see `Settings::stale_ns`).
async fn heartbeat(mut beat: aya::maps::Array<aya::maps::MapData, u64>, period: Duration) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = beat.set(0, crate::ebpf::clock::monotonic_ns(), 0) {
            tracing::warn!("heartbeat: {e}");
        }
    }
}

/// Writes the instances the program validates against and attaches it to
/// every VRRP interface not yet attached; returns the new attachments.
fn configure_xdp(p: &mut XdpProgram, cfg: &Config, groups: &[Group]) -> Result<Vec<String>> {
    let interval = u64::from(min_interval_ms(cfg)) * 1_000_000;
    p.maps.set_liveness(5 * interval, 2 * interval)?;
    p.maps
        .set_quorum(cfg.quorum.as_ref().map(|q| (q.port, q.peers.as_slice())))?;
    let mut wanted = Vec::new();
    for g in groups {
        for i in &g.instances {
            let auth = i.auth_pass.as_deref().map(packet::auth_bytes);
            wanted.push((
                InstanceKey {
                    ifindex: g.ifindex,
                    vrid: i.vrid,
                    family: if g.local.is_ipv6() {
                        FAMILY_V6
                    } else {
                        FAMILY_V4
                    },
                    _pad: [0; 2],
                },
                InstanceConf {
                    version: i.version,
                    auth_type: u8::from(auth.is_some()),
                    _pad: [0; 6],
                    auth: auth.unwrap_or_default(),
                },
            ));
        }
    }
    p.maps.configure(&wanted)?;
    let mut modes = Vec::new();
    for g in groups {
        if p.attachments().iter().any(|a| a.ifindex == g.ifindex) {
            continue;
        }
        let a = p.attach(&g.iface)?;
        modes.push(format!(
            "{} {} mode{}",
            a.interface,
            a.mode,
            match &a.egress {
                Some(e) => format!(" + TC egress ({e})"),
                None => " (no TC egress)".into(),
            }
        ));
    }
    Ok(modes)
}
