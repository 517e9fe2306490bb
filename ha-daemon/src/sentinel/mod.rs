//! `[sentinel]`: the part of the Redis Sentinel protocol that
//! Sentinel-aware clients use (redis-py `Sentinel`, Jedis, Lettuce,
//! go-redis, ioredis, node-redis, redis-rs), answered from this daemon's
//! own view, so an application moves from Sentinel to ha-daemon by
//! changing addresses only, and a cloud deployment finds its master
//! without a VIP.
//!
//! Laid out like tokio's mini-redis: `frame` (replies), `parse`
//! (requests, pure and fuzzed), `cmd/` (one module per command),
//! `connection`, `server`. `model` turns the status model into what the
//! face says, and the events a change publishes; `glob` matches
//! PSUBSCRIBE patterns.
use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize},
    },
    time::Instant,
};

use tokio::sync::{broadcast, watch};

use crate::status::Shared;

pub mod cmd;
pub mod connection;
/// The RESP encoder, shared with the daemon's own Redis commands.
pub use crate::resp as frame;
pub mod glob;
pub mod model;
pub mod parse;
pub mod server;

/// The Redis version HELLO and INFO report: ≥ 6 keeps StackExchange.Redis
/// on HELLO, ≥ 5 makes it ask for REPLICAS, 7.2 has `CLIENT SETINFO`.
pub const VERSION: &str = "7.2.0";

/// What every connection shares.
pub struct Ctx {
    pub myid: String,
    pub run_id: String,
    /// The port this face listens on (INFO's `tcp_port`).
    pub port: u16,
    /// `[sentinel] password_file`: Sentinel's `requirepass`.
    pub password: Option<String>,
    /// The current view of every instance (the publisher task writes it).
    pub views: watch::Sender<Vec<model::MasterView>>,
    /// Published events: (channel, message).
    pub events: broadcast::Sender<(String, String)>,
    /// The other daemons' Sentinel endpoints.
    pub sentinels: Vec<SocketAddr>,
    pub started: Instant,
    pub next_id: AtomicU64,
    pub conns: AtomicUsize,
    /// At most this many clients at once (`connection_budget`).
    pub max_conns: usize,
}

impl Ctx {
    pub fn new(announce: SocketAddr, password: Option<String>, sentinels: Vec<SocketAddr>) -> Self {
        let myid = id_for(&announce);
        Ctx {
            run_id: id_for(&SocketAddr::new(
                announce.ip(),
                // Differs per process start, as Sentinel's run_id does.
                (std::process::id() as u16) ^ announce.port(),
            )),
            myid,
            port: announce.port(),
            password,
            views: watch::channel(Vec::new()).0,
            events: broadcast::channel(1024).0,
            sentinels,
            started: Instant::now(),
            next_id: AtomicU64::new(1),
            conns: AtomicUsize::new(0),
            max_conns: server::MAX_CONNECTIONS,
        }
    }

    #[cfg(test)]
    pub fn for_tests() -> Self {
        let c = Ctx::new(
            "10.0.0.1:26379".parse().unwrap(),
            None,
            vec![
                "10.0.0.2:26379".parse().unwrap(),
                "10.0.0.3:26379".parse().unwrap(),
            ],
        );
        c.views.send_replace(vec![model::MasterView {
            name: "vi".into(),
            ip: "10.0.0.1".parse().unwrap(),
            port: 6379,
            up: true,
            epoch: 1,
            replicas: vec![model::ReplicaView {
                ip: "10.0.0.2".into(),
                port: 6379,
                up: true,
                offset: 10,
            }],
        }]);
        c
    }

    #[cfg(test)]
    pub fn set_up(&self, up: bool) {
        self.views.send_modify(|v| v[0].up = up);
    }
}

/// A stable 40-hex id for a Sentinel endpoint: every daemon derives the
/// same one for a peer as the peer does for itself (`SENTINEL MYID`).
pub fn id_for(addr: &SocketAddr) -> String {
    let key = addr.to_string();
    // FNV-1a, three seeds: an identifier, not a secret.
    let h = |seed: u64| {
        key.bytes().fold(seed, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    };
    let s = format!(
        "{:016x}{:016x}{:016x}",
        h(0xcbf2_9ce4_8422_2325),
        h(0x8422_2325_cbf2_9ce4),
        h(0x1234_5678_9abc_def0)
    );
    s[..40].to_owned()
}

/// The running face: dropping it closes the listener and every connection.
pub struct Face {
    _shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Face {
    fn drop(&mut self) {
        let _ = self._shutdown.send(true);
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Binds `[sentinel] listen` (before anything else starts, so a taken
/// port fails the start).
pub async fn bind(conf: &crate::config::SentinelConf) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(conf.listen).await
}

/// File descriptors the daemon keeps for itself (sockets, netlink, BPF maps,
/// Redis connections, logs) whatever the Sentinel face's clients take.
const RESERVED_FDS: u64 = 512;

/// How many clients the face may hold: Sentinel's 10,000, within the open
/// file limit (raised to its hard limit first, as Redis does for
/// maxclients: systemd starts services with a soft limit of 1,024), so a
/// flood of connections cannot take the descriptors failover needs.
pub fn connection_budget() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on a valid rlimit struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit {
                rlim_cur: lim.rlim_max.min(1 << 20),
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                lim.rlim_cur = want.rlim_cur;
            }
        }
    }
    let budget = lim.rlim_cur.saturating_sub(RESERVED_FDS) as usize;
    if budget < server::MAX_CONNECTIONS {
        tracing::warn!(
            "sentinel: the open file limit ({}) leaves room for {budget} clients (Sentinel's default is {}); raise LimitNOFILE",
            lim.rlim_cur,
            server::MAX_CONNECTIONS
        );
    }
    budget.min(server::MAX_CONNECTIONS)
}

/// Starts the face on `listener` once the instances are registered in
/// `status` (their addresses name this endpoint when `listen` is a
/// wildcard).
pub fn start(
    conf: &crate::config::SentinelConf,
    instances: &[crate::config::Instance],
    status: Shared,
    listener: tokio::net::TcpListener,
) -> Result<Face, String> {
    let password = conf.read_password()?;
    let ip = if conf.listen.ip().is_unspecified() {
        let snap = status.snapshot();
        instances
            .iter()
            .find_map(|i| snap.instances.get(&i.name)?.address)
            .unwrap_or(conf.listen.ip())
    } else {
        conf.listen.ip()
    };
    let ports: Vec<(String, u16)> = instances
        .iter()
        .filter_map(|i| Some((i.name.clone(), i.redis.as_ref()?.port)))
        .collect();
    let mut ctx = Ctx::new(
        SocketAddr::new(ip, conf.listen.port()),
        password,
        conf.peer_endpoints(instances),
    );
    ctx.max_conns = connection_budget();
    let ctx = Arc::new(ctx);
    tracing::info!(
        "sentinel: listening on {} (myid {}), {} instance(s), {} other daemon(s)",
        conf.listen,
        ctx.myid,
        ports.len(),
        ctx.sentinels.len()
    );
    let (tx, rx) = watch::channel(false);
    Ok(Face {
        _shutdown: tx,
        tasks: vec![
            tokio::spawn(publisher(ctx.clone(), status, ports)),
            tokio::spawn(server::serve(listener, ctx, rx)),
        ],
    })
}

/// Keeps `ctx.views` current and publishes the events of each change, as
/// soon as the status model changes.
pub async fn publisher(ctx: Arc<Ctx>, status: Shared, ports: Vec<(String, u16)>) {
    let mut changes = status.subscribe();
    loop {
        let prev = ctx.views.borrow().clone();
        let next = model::views(&status.snapshot(), &ports, &prev);
        if next != prev {
            for (ch, msg) in model::events(&prev, &next) {
                tracing::info!("sentinel: {ch} {msg}");
                let _ = ctx.events.send((ch, msg));
            }
            ctx.views.send_replace(next);
        }
        if changes.changed().await.is_err() {
            return;
        }
    }
}
