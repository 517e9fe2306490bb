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
        receiver::{self, Route},
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

pub async fn run(cfg: Config, opts: RunOptions) -> Result<()> {
    let paths = Paths::of(&cfg);
    let groups = plan(&cfg)?;
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
    let xdp = attach_xdp(&cfg, &groups, &opts, &status).map(|x| Arc::new(Mutex::new(x)));
    let mut kernel_txs: Vec<mpsc::Sender<KernelEvent>> = Vec::new();
    let mut controls: Vec<(String, mpsc::Sender<crate::control::Command>)> = Vec::new();
    let netlink = Netlink::connect()?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    let mut receivers = Vec::new();
    for g in groups {
        let socket = Arc::new(open_socket(&g).await?);
        tracing::info!(interface = %g.iface, source = %g.local, "VRRP socket open");
        let mut routes = Vec::new();
        for inst in g.instances {
            let (tx, rx) = mpsc::channel(1024);
            routes.push(Route {
                instance: inst.name.clone(),
                vrid: inst.vrid,
                version: inst.vrrp_version(),
                auth: inst.auth_pass.as_deref().map(packet::auth_bytes),
                interval_cs: inst.interval_cs(),
                peers: inst.unicast_peers.clone(),
                tx,
            });
            let redis_cfg = inst.redis.clone();
            let (inst_name, base_priority) = (inst.name.clone(), inst.priority);
            let mut driver = Driver::new(
                inst,
                g.ifindex,
                socket.clone(),
                netlink.clone(),
                status.clone(),
                xdp.clone(),
            );
            let (ktx, krx) = mpsc::channel(256);
            kernel_txs.push(ktx);
            let (ptx, prx) = mpsc::channel(16);
            if let Some(rc) = redis_cfg {
                let agent = Agent::new(
                    inst_name.clone(),
                    rc,
                    base_priority,
                    g.local,
                    driver.redis_view(),
                    ptx,
                    status.clone(),
                )
                .map_err(|e| anyhow::anyhow!("instance {inst_name:?}: {e}"))?;
                receivers.push(tokio::spawn(agent.run()));
            }
            let (ctx, crx) = mpsc::channel(4);
            controls.push((inst_name.clone(), ctx));
            tasks.spawn(driver.run(rx, krx, prx, crx, stop_rx.clone()));
        }
        receivers.push(tokio::spawn(receiver::run(socket, routes, status.clone())));
    }
    let socket_path = paths.socket.clone();
    let control_status = status.clone();
    receivers.push(tokio::spawn(async move {
        if let Err(e) = crate::control::serve(socket_path.clone(), control_status, controls).await {
            tracing::warn!("control socket {}: {e}", socket_path.display());
        }
    }));
    // Kernel events go to every instance; each picks what concerns it.
    let events = xdp
        .as_ref()
        .and_then(|x| x.lock().unwrap_or_else(|e| e.into_inner()).take_events());
    if let Some(rb) = events {
        let (etx, mut erx) = mpsc::channel::<KernelEvent>(1024);
        receivers.push(tokio::spawn(async move {
            if let Err(e) = events::forward(rb, started_ns, etx).await {
                tracing::warn!("reading XDP events: {e}");
            }
        }));
        receivers.push(tokio::spawn(async move {
            while let Some(ev) = erx.recv().await {
                tracing::debug!(?ev, "kernel event");
                for tx in &kernel_txs {
                    let _ = tx.try_send(ev.clone());
                }
            }
        }));
    }
    let writer = tokio::spawn(
        status
            .clone()
            .writer(paths.status_file.clone(), Duration::from_millis(100)),
    );

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: resigning and removing VIPs"),
        _ = int.recv() => tracing::info!("SIGINT: resigning and removing VIPs"),
    }
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(Duration::from_secs(3), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("some instances did not stop within 3 s");
    }
    // notify_stop and friends finish (or hit their timeout) before we go.
    crate::notify::drain(Duration::from_secs(5)).await;
    for r in receivers {
        r.abort();
    }
    writer.abort();
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
        modes.push(format!("{} {} mode", a.interface, a.mode));
    }
    Ok((
        p,
        format!(
            "XDP on {}, maps pinned in {}",
            modes.join(", "),
            pin_dir.display()
        ),
    ))
}
