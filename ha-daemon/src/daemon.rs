//! `ha-daemon run`: wires the configured instances to sockets, netlink, the
//! announcer and (when available) the XDP program, and shuts down cleanly.
use std::{collections::BTreeMap, net::IpAddr, path::PathBuf, sync::Arc, time::Duration};

use anyhow::{Context, Result, bail};
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::{mpsc, watch},
};

use crate::{
    config::{Config, Instance},
    ebpf::{loader::XdpProgram, object},
    net::{iface, vip::Netlink},
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
}

impl Paths {
    pub fn of(cfg: &Config) -> Self {
        let run_dir = cfg.run_dir();
        Self {
            pid_file: run_dir.join("ha-daemon.pid"),
            status_file: run_dir.join("status.json"),
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
    let _xdp = attach_xdp(&cfg, &opts, &status);
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
            let driver = Driver::new(
                inst,
                g.ifindex,
                socket.clone(),
                netlink.clone(),
                status.clone(),
            );
            tasks.spawn(driver.run(rx, stop_rx.clone()));
        }
        receivers.push(tokio::spawn(receiver::run(socket, routes, status.clone())));
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
    for r in receivers {
        r.abort();
    }
    writer.abort();
    status.save_now(&paths.status_file);
    let _ = std::fs::remove_file(&paths.pid_file);
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

/// Loads and attaches the XDP program to every VRRP interface, or says once
/// why the daemon runs from its sockets alone.
fn attach_xdp(cfg: &Config, opts: &RunOptions, status: &Shared) -> Option<XdpProgram> {
    let mode;
    let prog = if opts.no_ebpf {
        mode = "off (--no-ebpf): adverts timed from the socket".to_owned();
        None
    } else if object::OBJECT.is_none() {
        mode = format!("off: {}", object::describe());
        None
    } else {
        match XdpProgram::load() {
            Err(e) => {
                mode = format!("off: {e}; adverts timed from the socket");
                None
            }
            Ok(mut p) => {
                let mut ifaces: Vec<&str> =
                    cfg.instances.iter().map(|i| i.interface.as_str()).collect();
                ifaces.sort();
                ifaces.dedup();
                let mut modes = Vec::new();
                for i in ifaces {
                    match p.attach(i) {
                        Ok(a) => modes.push(format!("{i}: {}", a.mode)),
                        Err(e) => modes.push(format!("{i}: not attached ({e})")),
                    }
                }
                mode = format!("XDP {}", modes.join(", "));
                Some(p)
            }
        }
    };
    tracing::info!("eBPF: {mode}");
    status.update(|s| s.ebpf = mode);
    prog
}
