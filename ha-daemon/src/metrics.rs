//! Prometheus metrics, encoded by the official client (`prometheus-client`,
//! OpenMetrics text) and served by hyper's HTTP/1 server on `[node]
//! metrics` (off by default): `GET /metrics` only, requests bounded in size
//! and time. What to show is a pure function of a status snapshot.
use std::{convert::Infallible, net::SocketAddr, path::PathBuf, time::Duration};

use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode, body::Bytes};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
    registry::Registry,
};
use tokio::net::TcpListener;

use crate::{
    inspect,
    redis::health::Health,
    status::{Shared, Status},
    vrrp::machine::State,
};

/// OpenMetrics text, as `prometheus_client::encoding::text` writes it.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A label value, escaped as the format wants (the client writes label
/// values as given).
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A sample's value as the client encodes it.
#[derive(Debug, Clone, Copy)]
enum Num {
    U(u64),
    I(i64),
    F(f64),
}

macro_rules! num_from {
    ($($t:ty => $v:ident),*) => {$(
        impl From<$t> for Num {
            fn from(x: $t) -> Self {
                Num::$v(x as _)
            }
        }
    )*};
}
num_from!(u8 => U, u16 => U, u32 => U, u64 => U, usize => U, i32 => I, i64 => I, f32 => F, f64 => F);

impl From<&u64> for Num {
    fn from(x: &u64) -> Self {
        Num::U(*x)
    }
}

/// One metric family: its descriptor and samples.
#[derive(Debug)]
struct Family {
    name: &'static str,
    kind: MetricType,
    help: &'static str,
    samples: Vec<(Vec<(String, String)>, Num)>,
}

/// The families of one scrape, handed to the client's registry.
#[derive(Debug, Default)]
struct Out(Vec<Family>);

impl Out {
    fn head(&mut self, name: &'static str, kind: &str, help: &'static str) {
        let kind = if kind == "counter" {
            MetricType::Counter
        } else {
            MetricType::Gauge
        };
        // OpenMetrics names a counter's family without `_total`; its samples
        // get it back from the encoder.
        let name = match kind {
            MetricType::Counter => name.strip_suffix("_total").unwrap_or(name),
            _ => name,
        };
        self.0.push(Family {
            name,
            kind,
            help,
            samples: Vec::new(),
        });
    }

    fn line(&mut self, name: &str, labels: &[(&str, &str)], v: impl Into<Num>) {
        let Some(f) = self.0.last_mut() else { return };
        debug_assert!(
            name.starts_with(f.name),
            "{name} outside its family {}",
            f.name
        );
        let labels = labels
            .iter()
            .map(|(k, x)| ((*k).to_owned(), esc(x)))
            .collect();
        f.samples.push((labels, v.into()));
    }

    fn encode(self) -> String {
        let mut reg = Registry::default();
        reg.register_collector(Box::new(self));
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &reg);
        text
    }
}

impl Collector for Out {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for f in &self.0 {
            let mut me = enc.encode_descriptor(f.name, f.help, None, f.kind)?;
            for (labels, v) in &f.samples {
                let se = me.encode_family(labels)?;
                match (f.kind, *v) {
                    (MetricType::Counter, Num::U(x)) => ConstCounter::new(x).encode(se)?,
                    (MetricType::Counter, Num::I(x)) => {
                        ConstCounter::new(x.max(0) as u64).encode(se)?
                    }
                    (MetricType::Counter, Num::F(x)) => ConstCounter::new(x).encode(se)?,
                    (_, Num::U(x)) => ConstGauge::new(x).encode(se)?,
                    (_, Num::I(x)) => ConstGauge::new(x).encode(se)?,
                    (_, Num::F(x)) => ConstGauge::new(x).encode(se)?,
                }
            }
        }
        Ok(())
    }
}

/// The metrics for a status snapshot and, when the XDP program runs, what
/// its maps recorded.
pub fn render(s: &Status, xdp: Option<&inspect::Report>) -> String {
    let mut o = Out::default();
    let insts = &s.instances;
    o.head(
        "ha_vrrp_state",
        "gauge",
        "VRRP state of the instance (1 for the current state).",
    );
    for (n, i) in insts {
        for st in [State::Initialize, State::Backup, State::Master] {
            let name = st.to_string().to_lowercase();
            o.line(
                "ha_vrrp_state",
                &[("vrrp_instance", n), ("state", &name)],
                u8::from(i.state == st),
            );
        }
    }
    o.head(
        "ha_vrrp_priority",
        "gauge",
        "Priority advertised now (after Redis health).",
    );
    for (n, i) in insts {
        o.line(
            "ha_vrrp_priority",
            &[("vrrp_instance", n)],
            i.effective_priority,
        );
    }
    o.head(
        "ha_vrrp_base_priority",
        "gauge",
        "Priority from the configuration.",
    );
    for (n, i) in insts {
        o.line("ha_vrrp_base_priority", &[("vrrp_instance", n)], i.priority);
    }
    o.head(
        "ha_vrrp_transitions_total",
        "counter",
        "VRRP state changes since the daemon started.",
    );
    for (n, i) in insts {
        o.line(
            "ha_vrrp_transitions_total",
            &[("vrrp_instance", n)],
            i.transitions_total,
        );
    }
    o.head("ha_vrrp_adverts_sent_total", "counter", "Adverts sent.");
    for (n, i) in insts {
        o.line(
            "ha_vrrp_adverts_sent_total",
            &[("vrrp_instance", n)],
            i.adverts_sent,
        );
    }
    o.head(
        "ha_vrrp_adverts_received_total",
        "counter",
        "Valid adverts received.",
    );
    for (n, i) in insts {
        o.line(
            "ha_vrrp_adverts_received_total",
            &[("vrrp_instance", n)],
            i.adverts_received,
        );
    }
    o.head(
        "ha_vrrp_last_failover_seconds",
        "gauge",
        "Last takeover by this node: from the last advert of the old master to becoming master.",
    );
    for (n, i) in insts {
        if let Some(ms) = i.last_failover_ms {
            o.line(
                "ha_vrrp_last_failover_seconds",
                &[("vrrp_instance", n)],
                ms as f64 / 1000.0,
            );
        }
    }
    o.head(
        "ha_drops_total",
        "counter",
        "Packets dropped by the daemon, by instance (empty before routing) and reason.",
    );
    for (r, c) in &s.drops {
        o.line("ha_drops_total", &[("vrrp_instance", ""), ("reason", r)], c);
    }
    for (n, i) in insts {
        for (r, c) in &i.drops {
            o.line("ha_drops_total", &[("vrrp_instance", n), ("reason", r)], c);
        }
    }
    if let Some(x) = xdp {
        o.head(
            "ha_xdp_drops_total",
            "counter",
            "Adverts dropped in XDP, by reason.",
        );
        for (r, c) in &x.drops {
            o.line("ha_xdp_drops_total", &[("reason", r)], c);
        }
    }
    if let Some(x) = xdp {
        o.head(
            "ha_kernel_fence_total",
            "counter",
            "What the pinned XDP/TC programs did for the VIPs: frames redirected to a new owner, resets sent past the lease, ARP suppressed, replies fenced.",
        );
        for (r, c) in &x.counters {
            o.line("ha_kernel_fence_total", &[("action", r)], c);
        }
        if let Some(age) = x.heartbeat_age_ms {
            o.head(
                "ha_kernel_heartbeat_age_seconds",
                "gauge",
                "Age of the daemon's heartbeat as the kernel side sees it.",
            );
            o.line("ha_kernel_heartbeat_age_seconds", &[], age / 1000.0);
        }
    }
    lease_and_tickles(&mut o, s);
    o.head(
        "ha_redis_up",
        "gauge",
        "Local Redis health: 1 up, 0 failing its checks or gone.",
    );
    for (n, i) in insts {
        if let Some(h) = i.redis.as_ref().and_then(|r| r.health) {
            o.line(
                "ha_redis_up",
                &[("vrrp_instance", n)],
                u8::from(h == Health::Up),
            );
        }
    }
    o.head(
        "ha_redis_master",
        "gauge",
        "1 when the local Redis is a master, 0 when a replica.",
    );
    for (n, i) in insts {
        if let Some(role) = i.redis.as_ref().and_then(|r| r.role.as_deref()) {
            o.line(
                "ha_redis_master",
                &[("vrrp_instance", n)],
                u8::from(role == "master"),
            );
        }
    }
    o.head(
        "ha_redis_detached",
        "gauge",
        "1 while the daemon keeps the local Redis from replicating by itself (it could not vouch for its master).",
    );
    for (n, i) in insts {
        if let Some(r) = &i.redis {
            o.line(
                "ha_redis_detached",
                &[("vrrp_instance", n)],
                u8::from(r.detached.is_some()),
            );
        }
    }
    o.head(
        "ha_redis_offset_bytes",
        "gauge",
        "Replication offset of the local Redis.",
    );
    for (n, i) in insts {
        if let Some(r) = &i.redis {
            o.line("ha_redis_offset_bytes", &[("vrrp_instance", n)], r.offset);
        }
    }
    o.head(
        "ha_redis_lag_bytes",
        "gauge",
        "Backup: bytes of the master's stream not yet applied by the local replica.",
    );
    for (n, i) in insts {
        if let Some(l) = i.redis.as_ref().and_then(|r| r.lag_bytes) {
            o.line("ha_redis_lag_bytes", &[("vrrp_instance", n)], l);
        }
    }
    o.head(
        "ha_redis_last_promotion_pause_seconds",
        "gauge",
        "Write pause of the last promotion that paused an old master.",
    );
    for (n, i) in insts {
        if let Some(ms) = i.redis.as_ref().and_then(|r| r.last_pause_ms) {
            o.line(
                "ha_redis_last_promotion_pause_seconds",
                &[("vrrp_instance", n)],
                ms as f64 / 1000.0,
            );
        }
    }
    o.encode()
}

/// The quorum side (a node's and a witness's) and the tickles.
fn lease_and_tickles(o: &mut Out, s: &Status) {
    let insts = &s.instances;
    let leases: Vec<(&String, &crate::status::LeaseStatus)> = insts
        .iter()
        .filter_map(|(n, i)| i.lease.as_ref().map(|l| (n, l)))
        .collect();
    if !leases.is_empty() {
        o.head(
            "ha_lease_held",
            "gauge",
            "1 while this node holds the instance's quorum lease.",
        );
        for (n, l) in &leases {
            o.line("ha_lease_held", &[("vrrp_instance", n)], u8::from(l.held));
        }
        o.head("ha_lease_term", "gauge", "Newest lease term known.");
        for (n, l) in &leases {
            o.line("ha_lease_term", &[("vrrp_instance", n)], l.term);
        }
        o.head(
            "ha_lease_remaining_seconds",
            "gauge",
            "Time left on this node's lease (0 when it holds none).",
        );
        let now = crate::ebpf::clock::boottime_ns();
        for (n, l) in &leases {
            let left = if l.held {
                l.until_ns.saturating_sub(now) as f64 / 1e9
            } else {
                0.0
            };
            o.line("ha_lease_remaining_seconds", &[("vrrp_instance", n)], left);
        }
        o.head(
            "ha_lease_granted_by",
            "gauge",
            "Voters whose promises back this node's lease now.",
        );
        for (n, l) in &leases {
            o.line(
                "ha_lease_granted_by",
                &[("vrrp_instance", n)],
                l.granted_by.len(),
            );
        }
        o.head(
            "ha_lease_events_total",
            "counter",
            "Leases acquired, lost (not renewed in time) and released.",
        );
        for (n, l) in &leases {
            for (ev, c) in [
                ("acquired", l.acquired),
                ("lost", l.lost),
                ("released", l.released),
            ] {
                o.line(
                    "ha_lease_events_total",
                    &[("vrrp_instance", n), ("event", ev)],
                    c,
                );
            }
        }
        o.head(
            "ha_lease_stale_refusals_total",
            "counter",
            "Takeover requests a voter refused because the local Redis lacked more than max_staleness_ms of the last master's writes.",
        );
        for (n, l) in &leases {
            o.line(
                "ha_lease_stale_refusals_total",
                &[("vrrp_instance", n)],
                l.stale_refusals,
            );
        }
        o.head(
            "ha_lease_staleness_seconds",
            "gauge",
            "While a takeover is refused as stale: how far the local Redis is behind the last master's acknowledged writes, as the voter said (-1: its offset unknown); 0 otherwise.",
        );
        for (n, l) in &leases {
            let v = match &l.stale {
                Some(st) => st.behind_ms.map_or(-1.0, |ms| ms / 1e3),
                None => 0.0,
            };
            o.line("ha_lease_staleness_seconds", &[("vrrp_instance", n)], v);
        }
    }
    if let Some(q) = &s.quorum {
        o.head(
            "ha_quorum_voters",
            "gauge",
            "Voters in the quorum and the majority a lease needs.",
        );
        o.line("ha_quorum_voters", &[("kind", "all")], q.voters);
        o.line("ha_quorum_voters", &[("kind", "majority")], q.majority);
        o.head(
            "ha_quorum_peer_heard_seconds",
            "gauge",
            "Time since the last authentic datagram from each voter (-1: never).",
        );
        for p in &q.peers {
            let age = if p.heard_ns == 0 {
                -1.0
            } else {
                q.now_ns.saturating_sub(p.heard_ns) as f64 / 1e9
            };
            o.line(
                "ha_quorum_peer_heard_seconds",
                &[("peer", &p.addr.to_string())],
                age,
            );
        }
        o.head(
            "ha_quorum_rejected_total",
            "counter",
            "Quorum datagrams dropped, by reason (bad_mac, replay, not_voter, ...).",
        );
        for (r, c) in &q.rejected {
            o.line("ha_quorum_rejected_total", &[("reason", r)], c);
        }
        o.head(
            "ha_quorum_grants_total",
            "counter",
            "Promises this voter granted, per instance.",
        );
        for (n, v) in &q.votes {
            o.line("ha_quorum_grants_total", &[("vrrp_instance", n)], v.granted);
        }
        o.head(
            "ha_quorum_refusals_total",
            "counter",
            "Promises this voter refused, per instance and reason.",
        );
        for (n, v) in &q.votes {
            for (r, c) in &v.refused {
                o.line(
                    "ha_quorum_refusals_total",
                    &[("vrrp_instance", n), ("reason", r)],
                    c,
                );
            }
        }
    }
    let tickles: Vec<(&String, &crate::status::TickleStatus)> = insts
        .iter()
        .filter_map(|(n, i)| i.tickle.as_ref().map(|t| (n, t)))
        .collect();
    if !tickles.is_empty() {
        o.head(
            "ha_tickle_clients",
            "gauge",
            "Client connections to the VIP's Redis port: tracked (master) and known from the master (backup).",
        );
        for (n, t) in &tickles {
            o.line(
                "ha_tickle_clients",
                &[("vrrp_instance", n), ("kind", "tracked")],
                t.tracked,
            );
            o.line(
                "ha_tickle_clients",
                &[("vrrp_instance", n), ("kind", "known")],
                t.known,
            );
        }
        o.head(
            "ha_tickle_last_sent",
            "gauge",
            "Tickles sent in the first round of the last takeover.",
        );
        for (n, t) in &tickles {
            if let Some(l) = &t.last {
                o.line("ha_tickle_last_sent", &[("vrrp_instance", n)], l.sent);
            }
        }
        o.head(
            "ha_tickle_last_send_seconds",
            "gauge",
            "How long the last takeover's first round of tickles took to send.",
        );
        for (n, t) in &tickles {
            if let Some(l) = &t.last {
                o.line(
                    "ha_tickle_last_send_seconds",
                    &[("vrrp_instance", n)],
                    l.send_ms / 1000.0,
                );
            }
        }
    }
}

/// Binds the metrics address: a busy or invalid one stops the daemon at
/// start rather than later.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let l = TcpListener::bind(addr).await?;
    tracing::info!("metrics on http://{addr}/metrics");
    Ok(l)
}

/// A request's head (line and headers) must fit in this; hyper's smallest.
const MAX_HEAD: usize = 8192;
/// A client that has not sent its whole request head by then is dropped.
const HEAD_TIMEOUT: Duration = Duration::from_secs(2);
/// At most this many scrapes at once; more wait in the listen queue.
const MAX_CONNS: usize = 64;

/// The reply to one request: the metrics for `GET /metrics`, 404 for any
/// other path, 405 for any other method.
fn reply(
    req: &Request<hyper::body::Incoming>,
    status: &Shared,
    pin_dir: Option<&std::path::Path>,
) -> Response<Full<Bytes>> {
    let plain = |code: StatusCode, text: &'static str| {
        let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
        *r.status_mut() = code;
        r.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        r
    };
    if req.uri().path() != "/metrics" {
        return plain(
            StatusCode::NOT_FOUND,
            "not found: metrics are at /metrics\n",
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
        r.headers_mut().insert(
            hyper::header::ALLOW,
            hyper::header::HeaderValue::from_static("GET, HEAD"),
        );
        return r;
    }
    let xdp = pin_dir.and_then(|d| inspect::report(d).ok());
    let mut r = Response::new(Full::new(Bytes::from(render(
        &status.snapshot(),
        xdp.as_ref(),
    ))));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(CONTENT_TYPE),
    );
    r
}

/// Serves the metrics until the task is aborted.
pub async fn serve(
    listener: TcpListener,
    status: Shared,
    pin_dir: Option<PathBuf>,
) -> std::io::Result<()> {
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONNS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return Ok(());
        };
        let (sock, _) = listener.accept().await?;
        let status = status.clone();
        let pin_dir = pin_dir.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let svc = hyper::service::service_fn(move |req| {
                let r = reply(&req, &status, pin_dir.as_deref());
                async move { Ok::<_, Infallible>(r) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .max_buf_size(MAX_HEAD)
                .keep_alive(true)
                .serve_connection(hyper_util::rt::TokioIo::new(sock), svc);
            // A whole connection (keep-alive included) is bounded too: a
            // scraper comes back every few seconds on a new one if need be.
            let _ = tokio::time::timeout(Duration::from_secs(60), conn).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::InstanceStatus;

    #[test]
    fn text_format_with_escaped_labels() {
        let mut s = Status::default();
        let i = InstanceStatus {
            state: State::Master,
            effective_priority: 150,
            transitions_total: 3,
            drops: [("auth".to_owned(), 2)].into(),
            ..Default::default()
        };
        s.instances.insert("we\"ird".into(), i);
        let t = render(&s, None);
        assert!(t.contains("ha_vrrp_state{vrrp_instance=\"we\\\"ird\",state=\"master\"} 1\n"));
        assert!(t.contains("ha_vrrp_state{vrrp_instance=\"we\\\"ird\",state=\"backup\"} 0\n"));
        assert!(t.contains("ha_vrrp_priority{vrrp_instance=\"we\\\"ird\"} 150\n"));
        assert!(t.contains("ha_vrrp_transitions_total{vrrp_instance=\"we\\\"ird\"} 3\n"));
        assert!(t.contains("ha_drops_total{vrrp_instance=\"we\\\"ird\",reason=\"auth\"} 2\n"));
        // Every sample line belongs to a declared metric (a counter's
        // samples add `_total` to its family's name), and the text ends as
        // OpenMetrics wants.
        for l in t.lines().filter(|l| !l.starts_with('#')) {
            let name = l.split(['{', ' ']).next().unwrap();
            let family = name.strip_suffix("_total").unwrap_or(name);
            assert!(t.contains(&format!("# TYPE {family} ")), "{l}");
        }
        assert!(t.ends_with("# EOF\n"));
    }

    #[test]
    fn lease_quorum_and_tickles_are_shown_grouped_by_family() {
        use crate::status::{LeaseStatus, PeerStatus, QuorumStatus, VoteStatus};
        let mut s = Status::default();
        let i = InstanceStatus {
            lease: Some(LeaseStatus {
                held: true,
                term: 7,
                until_ns: u64::MAX,
                granted_by: vec!["self".into(), "198.18.0.9".into()],
                acquired: 2,
                lost: 1,
                ..Default::default()
            }),
            tickle: Some(crate::status::TickleStatus {
                tracked: 12,
                last: Some(crate::status::LastTickle {
                    sent: 1000,
                    send_ms: 20.0,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        s.instances.insert("vi".into(), i);
        s.quorum = Some(QuorumStatus {
            voters: 3,
            majority: 2,
            peers: vec![PeerStatus {
                addr: "198.18.0.9".parse().unwrap(),
                heard_ns: 0,
            }],
            rejected: [("bad_mac".to_owned(), 4)].into(),
            votes: [(
                "vi".to_owned(),
                VoteStatus {
                    granted: 9,
                    refused: [("held_by_other".to_owned(), 1)].into(),
                    ..Default::default()
                },
            )]
            .into(),
            ..Default::default()
        });
        let t = render(&s, None);
        for want in [
            "ha_lease_held{vrrp_instance=\"vi\"} 1\n",
            "ha_lease_term{vrrp_instance=\"vi\"} 7\n",
            "ha_lease_granted_by{vrrp_instance=\"vi\"} 2\n",
            "ha_lease_events_total{vrrp_instance=\"vi\",event=\"lost\"} 1\n",
            "ha_quorum_voters{kind=\"majority\"} 2\n",
            "ha_quorum_peer_heard_seconds{peer=\"198.18.0.9\"} -1.0\n",
            "ha_quorum_rejected_total{reason=\"bad_mac\"} 4\n",
            "ha_quorum_refusals_total{vrrp_instance=\"vi\",reason=\"held_by_other\"} 1\n",
            "ha_tickle_clients{vrrp_instance=\"vi\",kind=\"tracked\"} 12\n",
            "ha_tickle_last_sent{vrrp_instance=\"vi\"} 1000\n",
            "ha_tickle_last_send_seconds{vrrp_instance=\"vi\"} 0.02\n",
        ] {
            assert!(t.contains(want), "{want} missing from\n{t}");
        }
        // A family's samples follow its own TYPE line, none other's.
        let mut current = "";
        for l in t.lines() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                current = rest.split(' ').next().unwrap();
            } else if !l.starts_with('#') {
                let name = l.split(['{', ' ']).next().unwrap();
                assert_eq!(name.strip_suffix("_total").unwrap_or(name), current, "{l}");
            }
        }
    }
}
