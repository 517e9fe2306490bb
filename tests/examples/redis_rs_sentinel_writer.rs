//! The redis crate's Sentinel client (its `sentinel` feature, the async
//! API most Rust applications use), as an application uses it: a
//! `SentinelClient` for the master by name, INCR in a loop, and on an error
//! a new connection (the client asks the Sentinels again for each one).
//! Output as redis_py_writer.py writes it.
//!
//! usage: redis_rs_sentinel_writer HOST:PORT[,...] NAME KEY OUT TIMEOUT_S
//!
//! TIMEOUT_S > 0: connection and response timeouts of that many seconds on
//! the master's connections; 0: the crate's defaults (1 s and 500 ms). The
//! Sentinels are always asked with the crate's defaults. (Its blocking API
//! has no connect timeout for Sentinels: a Sentinel on a vanished host
//! stalls every rediscovery for TCP's SYN retries.)
use std::time::Duration;

use redis::{
    AsyncConnectionConfig, ConnectionAddr,
    sentinel::{SentinelClientBuilder, SentinelServerType},
};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let [sentinels, name, key, out, timeout] = a.as_slice() else {
        anyhow::bail!("usage: redis_rs_sentinel_writer HOST:PORT[,...] NAME KEY OUT TIMEOUT_S");
    };
    let timeout = Duration::from_secs_f64(timeout.parse()?);
    let addrs = sentinels
        .split(',')
        .map(|s| {
            let (h, p) = s.rsplit_once(':').unwrap_or((s, "26379"));
            Ok(ConnectionAddr::Tcp(h.to_owned(), p.parse()?))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut client =
        SentinelClientBuilder::new(addrs, name, SentinelServerType::Master)?.build()?;
    let mut config = AsyncConnectionConfig::new();
    if !timeout.is_zero() {
        config = config
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut lines = Vec::new();
    let now = ha_testbed::client::monotonic_ns;
    let mut conn = None;
    loop {
        let step = async {
            let c = match conn.as_mut() {
                Some(c) => c,
                None => match client.get_async_connection_with_config(&config).await {
                    Ok(c) => conn.insert(c),
                    Err(e) => return Err(format!("connect: {e}")),
                },
            };
            redis::cmd("INCR")
                .arg(key)
                .query_async::<i64>(c)
                .await
                .map_err(|e| {
                    // A new connection asks the Sentinels again.
                    conn = None;
                    e.to_string()
                })
        };
        tokio::select! {
            _ = term.recv() => break,
            r = step => match r {
                Ok(v) => lines.push(format!("A {} {v}", now())),
                Err(e) => {
                    lines.push(format!("E {} {e}", now()));
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
    }
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(out, text)?;
    Ok(())
}
