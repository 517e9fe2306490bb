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
}
