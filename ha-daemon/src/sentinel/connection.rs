//! One client connection: requests in (bounded, in order, pipelined),
//! replies out, and the events it subscribed to. A request that stays
//! incomplete for `PARTIAL_TIMEOUT` (a slow-loris client), more than
//! `MAX_PENDING` bytes buffered, a protocol error, a client that does not
//! read its replies or falls behind its messages: the connection is
//! closed.
use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::{broadcast::error::RecvError, watch},
    time::Instant,
};

use super::{
    Ctx,
    cmd::{self, Session, subscribe::deliver},
    frame::Frame,
    parse::parse,
};

/// Bytes buffered from a client before a request completes.
pub const MAX_PENDING: usize = 1024 * 1024;
/// A request must complete this long after its first byte.
pub const PARTIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// A client must take its replies within this.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a question about the master waits while this daemon knows no
/// live master (`hold`).
pub const HOLD: Duration = Duration::from_millis(40);

/// While this daemon knows no live master — most often a takeover in
/// flight, a few ms to tens of ms — a question about it waits up to `HOLD`
/// for the outcome rather than answering "down" at once: some clients
/// sleep on "down" (node-redis: 1 s) where the answer a moment later names
/// the new master. Short enough for clients with 50 ms timeouts.
async fn hold(ctx: &Ctx, name: Option<&[u8]>) {
    let mut views = ctx.views.subscribe();
    let asked = |v: &Vec<super::model::MasterView>| {
        v.iter()
            .filter(|m| name.is_none_or(|n| m.name.as_bytes() == n))
            .all(|m| m.up)
    };
    let _ = tokio::time::timeout(HOLD, views.wait_for(asked)).await;
}

pub async fn run(stream: TcpStream, ctx: Arc<Ctx>, mut shutdown: watch::Receiver<bool>) {
    struct Count(Arc<Ctx>);
    impl Drop for Count {
        fn drop(&mut self) {
            self.0.conns.fetch_sub(1, Ordering::Relaxed);
        }
    }
    let _count = Count(ctx.clone());
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let mut s = Session::new(
        ctx.next_id.fetch_add(1, Ordering::Relaxed),
        ctx.password.is_none(),
    );
    let mut events = ctx.events.subscribe();
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let mut out = Vec::new();
    let mut partial_since: Option<Instant> = None;
    loop {
        let mut close = false;
        loop {
            match parse(&buf) {
                Ok(Some((args, used))) => {
                    buf.drain(..used);
                    if let Some(name) = cmd::sentinel::asks_for_master(&args) {
                        hold(&ctx, name).await;
                    }
                    for f in cmd::apply(&ctx, &mut s, &args) {
                        f.encode(s.proto, &mut out);
                    }
                    if s.quit {
                        close = true;
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    Frame::err(format!("ERR {e}")).encode(s.proto, &mut out);
                    close = true;
                    break;
                }
            }
        }
        if !close && buf.len() > MAX_PENDING {
            Frame::err("ERR Protocol error: request too large").encode(s.proto, &mut out);
            close = true;
        }
        if !out.is_empty() {
            let w = tokio::time::timeout(WRITE_TIMEOUT, wr.write_all(&out)).await;
            if !matches!(w, Ok(Ok(()))) {
                return;
            }
            out.clear();
        }
        if close {
            let _ = wr.shutdown().await;
            return;
        }
        partial_since = if buf.is_empty() {
            None
        } else {
            partial_since.or(Some(Instant::now()))
        };
        let slow = async {
            match partial_since {
                Some(t) => tokio::time::sleep_until(t + PARTIAL_TIMEOUT).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = rd.read(&mut chunk) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            },
            ev = events.recv() => match ev {
                Ok((ch, msg)) => {
                    for f in deliver(&s, &ch, &msg) {
                        f.encode(s.proto, &mut out);
                    }
                }
                // A subscriber that fell 1024 events behind is dropped (as
                // Redis's pubsub output limit drops it); others skip them.
                Err(RecvError::Lagged(_)) if s.subscriptions() > 0 => return,
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            },
            _ = slow => return,
            _ = shutdown.changed() => return,
        }
    }
}
