//! Prometheus metrics in the text exposition format, served over plain HTTP
//! on `[node] metrics` (off by default). Rendering is pure; the server is a
//! few lines of tokio: one short request, one reply, close.
use std::{fmt::Write, net::SocketAddr, path::PathBuf, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

use crate::{
    inspect,
    redis::health::Health,
    status::{Shared, Status},
    vrrp::machine::State,
};

/// A label value, escaped as the format wants.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

struct Out(String);

impl Out {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }
    fn line(&mut self, name: &str, labels: &[(&str, &str)], v: impl std::fmt::Display) {
        let l: Vec<String> = labels
            .iter()
            .map(|(k, x)| format!("{k}=\"{}\"", esc(x)))
            .collect();
        if l.is_empty() {
            let _ = writeln!(self.0, "{name} {v}");
        } else {
            let _ = writeln!(self.0, "{name}{{{}}} {v}", l.join(","));
        }
    }
}

/// The metrics for a status snapshot and, when the XDP program runs, what
/// its maps recorded.
pub fn render(s: &Status, xdp: Option<&inspect::Report>) -> String {
    let mut o = Out(String::new());
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
                &[("instance", n), ("state", &name)],
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
        o.line("ha_vrrp_priority", &[("instance", n)], i.effective_priority);
    }
    o.head(
        "ha_vrrp_base_priority",
        "gauge",
        "Priority from the configuration.",
    );
    for (n, i) in insts {
        o.line("ha_vrrp_base_priority", &[("instance", n)], i.priority);
    }
    o.head(
        "ha_vrrp_transitions_total",
        "counter",
        "VRRP state changes since the daemon started.",
    );
    for (n, i) in insts {
        o.line(
            "ha_vrrp_transitions_total",
            &[("instance", n)],
            i.transitions_total,
        );
    }
    o.head("ha_vrrp_adverts_sent_total", "counter", "Adverts sent.");
    for (n, i) in insts {
        o.line(
            "ha_vrrp_adverts_sent_total",
            &[("instance", n)],
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
            &[("instance", n)],
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
                &[("instance", n)],
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
        o.line("ha_drops_total", &[("instance", ""), ("reason", r)], c);
    }
    for (n, i) in insts {
        for (r, c) in &i.drops {
            o.line("ha_drops_total", &[("instance", n), ("reason", r)], c);
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
            o.line("ha_redis_up", &[("instance", n)], u8::from(h == Health::Up));
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
                &[("instance", n)],
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
                &[("instance", n)],
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
            o.line("ha_redis_offset_bytes", &[("instance", n)], r.offset);
        }
    }
    o.head(
        "ha_redis_lag_bytes",
        "gauge",
        "Backup: bytes of the master's stream not yet applied by the local replica.",
    );
    for (n, i) in insts {
        if let Some(l) = i.redis.as_ref().and_then(|r| r.lag_bytes) {
            o.line("ha_redis_lag_bytes", &[("instance", n)], l);
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
                &[("instance", n)],
                ms as f64 / 1000.0,
            );
        }
    }
    o.0
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
            o.line("ha_lease_held", &[("instance", n)], u8::from(l.held));
        }
        o.head("ha_lease_term", "gauge", "Newest lease term known.");
        for (n, l) in &leases {
            o.line("ha_lease_term", &[("instance", n)], l.term);
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
            o.line("ha_lease_remaining_seconds", &[("instance", n)], left);
        }
        o.head(
            "ha_lease_granted_by",
            "gauge",
            "Voters whose promises back this node's lease now.",
        );
        for (n, l) in &leases {
            o.line(
                "ha_lease_granted_by",
                &[("instance", n)],
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
                    &[("instance", n), ("event", ev)],
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
                &[("instance", n)],
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
            o.line("ha_lease_staleness_seconds", &[("instance", n)], v);
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
            o.line("ha_quorum_grants_total", &[("instance", n)], v.granted);
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
                    &[("instance", n), ("reason", r)],
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
                &[("instance", n), ("kind", "tracked")],
                t.tracked,
            );
            o.line(
                "ha_tickle_clients",
                &[("instance", n), ("kind", "known")],
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
                o.line("ha_tickle_last_sent", &[("instance", n)], l.sent);
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
                    &[("instance", n)],
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

/// Serves `GET /metrics` (any path) until the task is aborted.
pub async fn serve(
    listener: TcpListener,
    status: Shared,
    pin_dir: Option<PathBuf>,
) -> std::io::Result<()> {
    loop {
        let (mut sock, _) = listener.accept().await?;
        let status = status.clone();
        let pin_dir = pin_dir.clone();
        tokio::spawn(async move {
            // The request line is all we need; a slow client gets 2 s.
            let mut buf = [0u8; 2048];
            let read = tokio::time::timeout(Duration::from_secs(2), sock.read(&mut buf)).await;
            let Ok(Ok(n)) = read else { return };
            let req = String::from_utf8_lossy(&buf[..n]);
            let (code, body) = if req.starts_with("GET ") {
                let xdp = pin_dir.as_deref().and_then(|d| inspect::report(d).ok());
                ("200 OK", render(&status.snapshot(), xdp.as_ref()))
            } else {
                ("405 Method Not Allowed", "GET only\n".to_owned())
            };
            let reply = format!(
                "HTTP/1.1 {code}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(reply.as_bytes()).await;
            let _ = sock.shutdown().await;
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
        assert!(t.contains("ha_vrrp_state{instance=\"we\\\"ird\",state=\"master\"} 1\n"));
        assert!(t.contains("ha_vrrp_state{instance=\"we\\\"ird\",state=\"backup\"} 0\n"));
        assert!(t.contains("ha_vrrp_priority{instance=\"we\\\"ird\"} 150\n"));
        assert!(t.contains("ha_vrrp_transitions_total{instance=\"we\\\"ird\"} 3\n"));
        assert!(t.contains("ha_drops_total{instance=\"we\\\"ird\",reason=\"auth\"} 2\n"));
        // Every sample line belongs to a declared metric.
        for l in t.lines().filter(|l| !l.starts_with('#')) {
            let name = l.split(['{', ' ']).next().unwrap();
            assert!(t.contains(&format!("# TYPE {name} ")), "{l}");
        }
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
            "ha_lease_held{instance=\"vi\"} 1\n",
            "ha_lease_term{instance=\"vi\"} 7\n",
            "ha_lease_granted_by{instance=\"vi\"} 2\n",
            "ha_lease_events_total{instance=\"vi\",event=\"lost\"} 1\n",
            "ha_quorum_voters{kind=\"majority\"} 2\n",
            "ha_quorum_peer_heard_seconds{peer=\"198.18.0.9\"} -1\n",
            "ha_quorum_rejected_total{reason=\"bad_mac\"} 4\n",
            "ha_quorum_refusals_total{instance=\"vi\",reason=\"held_by_other\"} 1\n",
            "ha_tickle_clients{instance=\"vi\",kind=\"tracked\"} 12\n",
            "ha_tickle_last_sent{instance=\"vi\"} 1000\n",
            "ha_tickle_last_send_seconds{instance=\"vi\"} 0.02\n",
        ] {
            assert!(t.contains(want), "{want} missing from\n{t}");
        }
        // A family's samples follow its own TYPE line, none other's.
        let mut current = "";
        for l in t.lines() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                current = rest.split(' ').next().unwrap();
            } else if !l.starts_with('#') {
                assert_eq!(l.split(['{', ' ']).next().unwrap(), current, "{l}");
            }
        }
    }
}
