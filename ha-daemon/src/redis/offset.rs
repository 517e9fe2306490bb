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

/// Samples `local` every `period` into `out` until the task is dropped.
/// Unknown (`None`) whenever the Redis does not answer within the period.
pub async fn sample(instance: String, local: Endpoint, period: Duration, out: Offset) {
    let mut conn = None;
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut said = false;
    loop {
        tick.tick().await;
        if conn.is_none() {
            match tokio::time::timeout(period, local.connect(period)).await {
                Ok(Ok(c)) => conn = Some(c),
                _ => {
                    out.set(None);
                    tokio::time::sleep(BACKOFF).await;
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        match tokio::time::timeout(period.max(Duration::from_millis(5)), c.role()).await {
            Ok(Ok(role)) => {
                out.set(Some(role.offset()));
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
                out.set(None);
                conn = None;
                tokio::time::sleep(BACKOFF).await;
            }
        }
    }
}
