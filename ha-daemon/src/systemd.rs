//! systemd's notify protocol (`Type=notify`): READY, STATUS, RELOADING,
//! STOPPING and the watchdog, as datagrams on `$NOTIFY_SOCKET`. Without
//! that variable (not started by systemd) every call does nothing.
//!
//! Hand-written (20 lines) rather than the `sd-notify` crate: its 0.5.0
//! connects to `$NOTIFY_SOCKET` as a path, so an abstract socket (`@...`,
//! which systemd gives services in some containers) is never reached.
use std::{os::unix::net::UnixDatagram, time::Duration};

use crate::status::Shared;

/// Sends one notification (`"READY=1"`, `"STATUS=..."`); errors are ignored,
/// as systemd itself does: a daemon must not fail because nobody listens.
pub fn notify(msg: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = UnixDatagram::unbound() else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        // An abstract socket.
        use std::os::linux::net::SocketAddrExt;
        if let Ok(addr) = std::os::unix::net::SocketAddr::from_abstract_name(name) {
            let _ = sock.send_to_addr(msg.as_bytes(), &addr);
        }
    } else {
        let _ = sock.send_to(msg.as_bytes(), &path);
    }
}

/// The watchdog period systemd asked for (`WatchdogSec=`), if it is for us.
pub fn watchdog_period() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.parse::<u32>().ok()? != std::process::id()
    {
        return None;
    }
    Some(Duration::from_micros(usec))
}

/// One line for `systemctl status`: each instance's VRRP state and Redis role.
pub fn status_line(status: &Shared) -> String {
    let s = status.snapshot();
    let parts: Vec<String> = s
        .instances
        .iter()
        .map(|(n, i)| {
            let redis = i
                .redis
                .as_ref()
                .and_then(|r| r.role.clone())
                .map(|r| format!(", redis {r}"))
                .unwrap_or_default();
            format!("{n}: {}{redis}", i.state)
        })
        .collect();
    parts.join("; ")
}

/// Pets the watchdog at half its period and keeps STATUS= current (sent as
/// soon as the status changes), from the runtime: a wedged runtime stops
/// both, and systemd restarts the daemon.
pub async fn keepalive(status: Shared) {
    let wd = watchdog_period();
    let period = wd.map_or(Duration::from_secs(1), |p| {
        (p / 2).min(Duration::from_secs(1))
    });
    let mut changes = status.subscribe();
    let mut last = String::new();
    let mut pet = tokio::time::interval(period);
    pet.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let line = status_line(&status);
        if line != last {
            notify(&format!("STATUS={line}"));
            last = line;
        }
        tokio::select! {
            _ = pet.tick() => {
                if wd.is_some() {
                    notify("WATCHDOG=1");
                }
            }
            r = changes.changed() => {
                if r.is_err() {
                    pet.tick().await;
                }
            }
        }
    }
}
