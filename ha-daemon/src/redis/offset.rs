//! Where the local Redis's data stands, for the lease: its replication
//! offset (`master_repl_offset` on a master, `slave_repl_offset` on a
//! replica), read once per renewal period on a connection of its own and
//! left where the lease thread picks it up. A master's renewals carry it to
//! the voters; a node that asks to take over is judged by it
//! (`quorum::staleness`).
use std::time::Duration;

use super::client::Endpoint;
use crate::quorum::staleness::Offset;

/// After a read that got no answer (a hung Redis): wait this long before
/// connecting again, so a stalled Redis's accept queue is not filled.
const BACKOFF: Duration = Duration::from_millis(100);

/// How long an answer may take before the read counts as failed (a busy
/// host's Redis is slow to answer now and then).
const ANSWER: Duration = Duration::from_millis(100);
/// A position is kept this long after the last good read: an older one is
/// no longer where the data stands (the Redis is gone or hung).
const KEEP: Duration = Duration::from_millis(200);

/// Samples `local` every `period` into `out` until the task is dropped.
/// Unknown (`None`) once nothing was read for `KEEP`. Until then the last
/// position read stays: for a node that asks to take over an older offset
/// only looks staler, and the master's reports lag at most that much.
pub async fn sample(instance: String, local: Endpoint, period: Duration, out: Offset) {
    let mut conn = None;
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut said = false;
    let mut good = tokio::time::Instant::now();
    let forget = |out: &Offset, good: tokio::time::Instant| {
        if good.elapsed() > KEEP {
            out.set(None);
        }
    };
    loop {
        tick.tick().await;
        if conn.is_none() {
            match tokio::time::timeout(ANSWER, local.connect(ANSWER)).await {
                Ok(Ok(c)) => conn = Some(c),
                _ => {
                    forget(&out, good);
                    tokio::time::sleep(BACKOFF).await;
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        match tokio::time::timeout(ANSWER, c.position()).await {
            Ok(Ok(p)) => {
                out.set(Some(p));
                good = tokio::time::Instant::now();
                said = false;
            }
            other => {
                if !said {
                    let why = match other {
                        Ok(Err(e)) => e.to_string(),
                        _ => format!("no answer within {period:?}"),
                    };
                    tracing::debug!(instance = %instance, "replication offset of the local Redis unknown: {why}");
                    said = true;
                }
                forget(&out, good);
                conn = None;
                tokio::time::sleep(BACKOFF).await;
            }
        }
    }
}
