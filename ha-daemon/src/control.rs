//! The daemon's Unix socket (`<run_dir>/ha-daemon.sock`, mode 0600): one JSON
//! request per line, one JSON reply per line. `ha-daemon status` and
//! `ha-daemon switchover` talk to it.
use std::{os::unix::fs::PermissionsExt, path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::UnixListener,
    sync::{mpsc, oneshot},
};

use crate::status::Shared;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    Status,
    /// Planned switchover of `instance` (all instances when `None`): a
    /// backup takes over; a master hands over to its best backup.
    Switchover {
        instance: Option<String>,
        #[serde(default)]
        direction: Direction,
    },
    /// Take over although the voters refuse this node as stale: an operator
    /// accepts losing the writes its Redis lacks (`promote --accept-loss`).
    Promote {
        instance: Option<String>,
    },
}

/// Which way a switchover goes, from the CLI's `--to`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// No `--to`: a backup takes over, a master hands over.
    #[default]
    Either,
    /// `--to` this node.
    Here,
    /// `--to` another node: only a master can hand over.
    Away,
}

/// What a driver did with a switchover request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Started {
    /// This node is master now (it took over, or already was), or with
    /// `[quorum]` becomes it once the voters grant it the lease.
    Master,
    /// This master advertises priority 1 until a backup takes over.
    HandingOver,
}

/// What the socket asks of an instance driver.
#[derive(Debug)]
pub enum Command {
    Switchover {
        direction: Direction,
        reply: oneshot::Sender<Result<Started, String>>,
    },
    /// No backup took over from a hand-over in time: advertise the real
    /// priority again.
    CancelHandOver,
}

/// How long a switchover may take before it is reported as failed (and a
/// hand-over cancelled).
const SWITCHOVER_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SwitchoverResult {
    pub instance: String,
    pub ok: bool,
    pub message: String,
    /// How long the old master's Redis was paused for writes, if it was.
    pub pause_ms: Option<u64>,
}

/// The instance drivers by name, as they are now (a reload changes them).
pub type Drivers = std::sync::Arc<std::sync::Mutex<Vec<(String, mpsc::Sender<Command>)>>>;

/// What `promote --accept-loss` did for one instance.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PromoteResult {
    pub instance: String,
    pub ok: bool,
    pub message: String,
    /// The last refusal the loss was accepted over: which voter, how far
    /// behind the last master's acknowledged writes.
    pub accepted: Option<crate::status::StaleStatus>,
}

/// Serves the socket until the task is dropped.
pub async fn serve(
    path: PathBuf,
    status: Shared,
    drivers: Drivers,
    quorum: Option<crate::quorum::peer::Handle>,
) -> std::io::Result<()> {
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    loop {
        let (conn, _) = listener.accept().await?;
        // The drivers as they are now (a reload changes them).
        let drivers = drivers.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let status = status.clone();
        let quorum = quorum.clone();
        tokio::spawn(async move {
            let (r, mut w) = conn.into_split();
            let mut line = String::new();
            if BufReader::new(r).read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let reply = match serde_json::from_str::<Request>(&line) {
                Ok(Request::Status) => serde_json::to_string(&status.snapshot()),
                Ok(Request::Switchover {
                    instance,
                    direction,
                }) => serde_json::to_string(
                    &switchover(&status, &drivers, instance.as_deref(), direction).await,
                ),
                Ok(Request::Promote { instance }) => serde_json::to_string(
                    &promote(&status, &drivers, quorum.as_ref(), instance.as_deref()).await,
                ),
                Err(e) => serde_json::to_string(
                    &serde_json::json!({ "error": format!("bad request: {e}") }),
                ),
            };
            if let Ok(mut text) = reply {
                text.push('\n');
                let _ = w.write_all(text.as_bytes()).await;
            }
        });
    }
}

async fn switchover(
    status: &Shared,
    drivers: &[(String, mpsc::Sender<Command>)],
    only: Option<&str>,
    direction: Direction,
) -> Vec<SwitchoverResult> {
    let mut out = Vec::new();
    for (name, tx) in drivers.iter().filter(|(n, _)| only.is_none_or(|o| o == n)) {
        let before = status
            .snapshot()
            .instances
            .get(name)
            .and_then(|i| i.redis.as_ref().map(|r| r.promotions));
        let (reply, rx) = oneshot::channel();
        let sent = tx
            .send(Command::Switchover { direction, reply })
            .await
            .is_ok();
        let res = match (sent, rx.await) {
            (true, Ok(r)) => r,
            _ => Err("the instance is not running".into()),
        };
        if res == Ok(Started::HandingOver) {
            out.push(hand_over(status, name, tx).await);
            continue;
        }
        let res = res.map(|_| ());
        let mut r = SwitchoverResult {
            instance: name.clone(),
            ok: res.is_ok(),
            message: res.clone().err().unwrap_or_else(|| "master".into()),
            pause_ms: None,
        };
        // With a Redis side, done when the local Redis has been promoted.
        let has_redis = status
            .snapshot()
            .instances
            .get(name)
            .is_some_and(|i| i.redis.is_some());
        if r.ok && has_redis {
            let deadline = tokio::time::Instant::now() + SWITCHOVER_TIMEOUT;
            let mut changes = status.subscribe();
            loop {
                let snap = status.snapshot();
                let red = snap
                    .instances
                    .get(name)
                    .and_then(|i| i.redis.clone())
                    .unwrap_or_default();
                if red.role.as_deref() == Some("master")
                    && (Some(red.promotions) != before || red.writable)
                {
                    r.message = red.last_action.unwrap_or_default();
                    r.pause_ms = red.last_pause_ms;
                    break;
                }
                if tokio::time::Instant::now() > deadline {
                    r.ok = false;
                    let inst = snap.instances.get(name);
                    let state = inst.map(|i| i.state);
                    r.message = if state == Some(crate::vrrp::machine::State::Master) {
                        format!(
                            "VRRP master, but the local Redis was not promoted within 10 s: {:?}",
                            red.guard.or(red.detached).or(red.last_action)
                        )
                    } else {
                        // Started, but the takeover did not happen (or did
                        // not last): say what the node is and why.
                        let lease = inst.and_then(|i| i.lease.as_ref());
                        let why = lease
                            .and_then(|l| {
                                l.stale.as_ref().map(|s| {
                                    format!("the voters refused it: its Redis is {}", s.describe())
                                })
                            })
                            .or_else(|| lease.and_then(|l| l.last_event.clone()))
                            .unwrap_or_else(|| "no takeover".into());
                        format!(
                            "not VRRP master 10 s after the switchover started (state {}): {why}",
                            state.map_or("unknown".to_string(), |s| s.to_string())
                        )
                    };
                    break;
                }
                next_change(&mut changes).await;
            }
        }
        out.push(r);
    }
    if out.is_empty() {
        out.push(SwitchoverResult {
            instance: only.unwrap_or("").into(),
            ok: false,
            message: "no such instance".into(),
            pause_ms: None,
        });
    }
    out
}

/// `promote --accept-loss`: for each instance (or `only`) that waits to
/// take over, the next takeover is not refused for staleness; waits for the
/// promotion.
async fn promote(
    status: &Shared,
    drivers: &[(String, mpsc::Sender<Command>)],
    quorum: Option<&crate::quorum::peer::Handle>,
    only: Option<&str>,
) -> Vec<PromoteResult> {
    let mut out = Vec::new();
    for (name, _) in drivers.iter().filter(|(n, _)| only.is_none_or(|o| o == n)) {
        let mut r = PromoteResult {
            instance: name.clone(),
            ok: false,
            message: String::new(),
            accepted: None,
        };
        let Some(q) = quorum else {
            r.message =
                "no [quorum]: nothing refuses a stale takeover, so there is nothing to accept"
                    .into();
            out.push(r);
            continue;
        };
        let snap = status.snapshot();
        let Some(i) = snap.instances.get(name) else {
            continue;
        };
        let lease = i.lease.clone().unwrap_or_default();
        if lease.held {
            r.message = "this node holds the lease and is master already".into();
            out.push(r);
            continue;
        }
        if !lease.wanted {
            r.message = format!(
                "this node is not trying to take over ({}: a master it follows is alive, or its own priority is 0); nothing to accept",
                i.state
            );
            out.push(r);
            continue;
        }
        let before = i.redis.as_ref().map(|x| x.promotions);
        match q.accept_loss(name).await {
            Ok(stale) => r.accepted = stale,
            Err(e) => {
                r.message = e;
                out.push(r);
                continue;
            }
        }
        let deadline = tokio::time::Instant::now() + SWITCHOVER_TIMEOUT;
        let mut changes = status.subscribe();
        loop {
            let snap = status.snapshot();
            let Some(i) = snap.instances.get(name) else {
                r.message = "the instance stopped".into();
                break;
            };
            let red = i.redis.clone().unwrap_or_default();
            let promoted = i.redis.is_none() || Some(red.promotions) != before || red.writable;
            if i.state == crate::vrrp::machine::State::Master
                && promoted
                && (i.redis.is_none() || red.role.as_deref() == Some("master"))
            {
                r.ok = true;
                r.message = "master".into();
                break;
            }
            if tokio::time::Instant::now() > deadline {
                let why = i
                    .lease
                    .as_ref()
                    .and_then(|l| l.last_event.clone())
                    .unwrap_or_default();
                r.message = format!(
                    "not master within {} s (state {}, lease: {why}): a majority of voters must still answer",
                    SWITCHOVER_TIMEOUT.as_secs(),
                    i.state
                );
                break;
            }
            next_change(&mut changes).await;
        }
        out.push(r);
    }
    if out.is_empty() {
        out.push(PromoteResult {
            instance: only.unwrap_or("").into(),
            ok: false,
            message: "no such instance".into(),
            accepted: None,
        });
    }
    out
}

/// Waits until a backup has taken over from this master (and, with a Redis
/// side, the local Redis replicates from it); cancels the hand-over when none
/// does in time.
async fn hand_over(status: &Shared, name: &str, tx: &mpsc::Sender<Command>) -> SwitchoverResult {
    let deadline = tokio::time::Instant::now() + SWITCHOVER_TIMEOUT;
    let mut changes = status.subscribe();
    let mut r = SwitchoverResult {
        instance: name.to_owned(),
        ok: false,
        message: String::new(),
        pause_ms: None,
    };
    loop {
        let snap = status.snapshot();
        let Some(i) = snap.instances.get(name) else {
            r.message = "the instance stopped during the hand-over".into();
            return r;
        };
        let master = i.master.map(|m| m.to_string());
        let yielded = i.state == crate::vrrp::machine::State::Backup && master.is_some();
        let replica = i.redis.as_ref().is_none_or(|red| {
            red.role.as_deref() == Some("replica")
                && master.as_deref().is_some_and(|m| {
                    red.master
                        .as_deref()
                        .is_some_and(|x| x.starts_with(&format!("{m}:")))
                })
        });
        if yielded && replica {
            r.ok = true;
            r.message = format!(
                "handed over to {}{}; the new master paused this node's Redis for writes while it caught up (its `ha-daemon status` shows the pause)",
                master.unwrap_or_default(),
                if i.redis.is_some() {
                    ", the local Redis is its replica"
                } else {
                    ""
                }
            );
            return r;
        }
        if tokio::time::Instant::now() > deadline {
            if !yielded {
                let _ = tx.send(Command::CancelHandOver).await;
                r.message = format!(
                    "no backup took over within {} s, still master (advertising priority {} again): a backup takes over from a live master only with preempt on, after its preempt_delay, and once its Redis streams from this one",
                    SWITCHOVER_TIMEOUT.as_secs(),
                    i.priority
                );
            } else {
                r.message = format!(
                    "{} took over, but the local Redis does not replicate from it yet: {:?}",
                    master.unwrap_or_default(),
                    i.redis.as_ref().and_then(|x| x
                        .guard
                        .clone()
                        .or(x.detached.clone())
                        .or(x.last_action.clone()))
                );
            }
            return r;
        }
        next_change(&mut changes).await;
    }
}

/// The next status change (status pushes them), or 100 ms as a safety net.
async fn next_change(changes: &mut tokio::sync::watch::Receiver<u64>) {
    let _ = tokio::time::timeout(Duration::from_millis(100), changes.changed()).await;
}

/// Client side: one request, one reply.
pub async fn request(path: &std::path::Path, req: &Request) -> anyhow::Result<String> {
    use anyhow::Context;
    let conn = tokio::net::UnixStream::connect(path)
        .await
        .with_context(|| {
            format!(
                "connecting to {} (is the daemon running? root needed)",
                path.display()
            )
        })?;
    let (r, mut w) = conn.into_split();
    let mut text = serde_json::to_string(req)?;
    text.push('\n');
    w.write_all(text.as_bytes()).await?;
    let mut line = String::new();
    BufReader::new(r).read_line(&mut line).await?;
    anyhow::ensure!(
        !line.is_empty(),
        "the daemon closed the connection without a reply"
    );
    Ok(line)
}
