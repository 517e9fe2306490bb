//! The listener: at most `MAX_CONNECTIONS` clients (Sentinel's default
//! maxclients), one task each; stops accepting and closes every
//! connection when `shutdown` turns true.
use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use tokio::{io::AsyncWriteExt, net::TcpListener, sync::watch};

use super::{Ctx, connection};

pub const MAX_CONNECTIONS: usize = 10_000;

pub async fn serve(listener: TcpListener, ctx: Arc<Ctx>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((mut stream, _)) => {
                    if ctx.conns.fetch_add(1, Ordering::Relaxed) >= ctx.max_conns {
                        ctx.conns.fetch_sub(1, Ordering::Relaxed);
                        let _ = stream.try_write(b"-ERR max number of clients reached\r\n");
                        let _ = stream.shutdown().await;
                        continue;
                    }
                    tokio::spawn(connection::run(stream, ctx.clone(), shutdown.clone()));
                }
                Err(e) => {
                    // Out of file descriptors, say: wait instead of spinning.
                    tracing::warn!("sentinel: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => return,
        }
    }
}
