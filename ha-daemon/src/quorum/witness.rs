//! `ha-daemon witness -c FILE`: a voter and nothing else — no Redis, no VIP,
//! no XDP — for a third small host, so that two Redis nodes have a majority
//! that a partition between them cannot split. Same status socket, metrics
//! and systemd integration as the daemon.
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::signal::unix::{SignalKind, signal};

use super::peer::{Quorum, Settings};
use crate::{
    config::WitnessConfig,
    status::{Shared, Status},
};

pub async fn run(cfg: WitnessConfig) -> Result<()> {
    let run_dir = cfg.run_dir();
    std::fs::create_dir_all(&run_dir)
        .with_context(|| format!("creating run dir {}", run_dir.display()))?;
    let pid_file = run_dir.join("ha-daemon.pid");
    let status_file = run_dir.join("status.json");
    let socket = run_dir.join("ha-daemon.sock");
    std::fs::write(&pid_file, format!("{}\n", std::process::id()))
        .with_context(|| format!("writing {}", pid_file.display()))?;
    let metrics = match cfg.node.metrics {
        Some(addr) => Some(
            crate::metrics::bind(addr)
                .await
                .with_context(|| format!("[node] metrics = \"{addr}\": cannot listen there"))?,
        ),
        None => None,
    };
    let status = Shared::new(Status {
        node: cfg.node.name.clone(),
        pid: std::process::id(),
        ebpf: "not used (a witness only votes)".into(),
        ..Default::default()
    });
    let q = &cfg.quorum;
    let settings = Settings {
        port: q.port,
        peers: q.peers.clone(),
        key: q.key().map_err(|e| anyhow::anyhow!("[quorum] {e}"))?,
        drift_ppm: q.max_drift_ppm,
        run_dir: run_dir.clone(),
        witness: true,
        // A witness asks for nothing; it judges what askers allow.
        max_stale_ns: 0,
    };
    if let Err(e) = super::peer::realtime(super::peer::RT_PRIORITY) {
        tracing::warn!(
            "witness: cannot run at real-time priority ({e}); a busy host may delay its answers"
        );
    }
    let (task, _handle) = Quorum::bind(settings, None, status.clone())
        .await
        .context("[quorum]: cannot listen")?;
    tracing::info!(
        node = %cfg.node.name,
        "witness: voting for {} Redis node(s) on UDP port {}",
        q.peers.len(),
        q.port
    );
    let mut helpers = vec![tokio::spawn(task.run())];
    let (sock, st) = (socket.clone(), status.clone());
    helpers.push(tokio::spawn(async move {
        if let Err(e) = crate::control::serve(sock.clone(), st, Default::default(), None).await {
            tracing::warn!("control socket {}: {e}", sock.display());
        }
    }));
    if let (Some(addr), Some(listener)) = (cfg.node.metrics, metrics) {
        let st = status.clone();
        helpers.push(tokio::spawn(async move {
            if let Err(e) = crate::metrics::serve(listener, st, None).await {
                tracing::warn!("metrics on {addr}: {e}");
            }
        }));
    }
    helpers.push(tokio::spawn(
        status
            .clone()
            .writer(status_file.clone(), Duration::from_millis(100)),
    ));
    helpers.push(tokio::spawn(crate::systemd::keepalive(status.clone())));
    crate::systemd::notify("READY=1");
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM: stopping"); break; }
            _ = int.recv() => { tracing::info!("SIGINT: stopping"); break; }
            _ = hup.recv() => {
                tracing::warn!("SIGHUP: a witness does not reload; restart it to apply a new config (its promises are kept across the restart)");
            }
        }
    }
    crate::systemd::notify("STOPPING=1");
    for h in helpers {
        h.abort();
    }
    status.save_now(&status_file);
    let _ = std::fs::remove_file(&pid_file);
    let _ = std::fs::remove_file(&socket);
    Ok(())
}
