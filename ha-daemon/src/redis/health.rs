//! Health of the local Redis, and what it does to the VRRP priority — like
//! keepalived's vrrp_script: `weight` off after `fall` failed checks, back after
//! `rise` good ones; and priority 0 the moment Redis is gone (connection
//! refused or closed), so the peer takes over after its skew time. A Redis
//! that answers nothing at all for `fall` check intervals (stopped, stuck
//! in a long command or a disk write) is hung: priority 0 too. It
//! acknowledges no write meanwhile, so a takeover loses nothing, and the
//! lease or the VIP's removal fences it before it wakes up.
use std::time::Duration;

use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
    sync::mpsc,
};

use super::tls::Tls;

/// One health observation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    Ok,
    /// Answered with an error (LOADING, MISCONF...), or TLS failed.
    Failed,
    /// No answer for another whole check interval.
    NoAnswer,
    /// Connection refused or closed: nothing listens.
    Gone,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Health {
    Up,
    /// `fall` failures in a row.
    Failing,
    /// No answer at all for `fall` check intervals.
    Hung,
    Gone,
}

/// The policy, pure.
#[derive(Debug, Clone)]
pub struct Policy {
    base: u8,
    weight: u8,
    fall: u32,
    rise: u32,
    fails: u32,
    /// Of `fails`, how many in a row were no answer at all.
    silent: u32,
    oks: u32,
    state: Health,
}

impl Policy {
    pub fn new(base: u8, weight: u8, fall: u32, rise: u32) -> Self {
        Self {
            base,
            weight,
            fall: fall.max(1),
            rise: rise.max(1),
            fails: 0,
            silent: 0,
            oks: 0,
            state: Health::Up,
        }
    }

    pub fn state(&self) -> Health {
        self.state
    }

    /// The priority VRRP should advertise now.
    pub fn priority(&self) -> u8 {
        match self.state {
            Health::Up => self.base,
            // The address owner (255) is never lowered, as keepalived does.
            Health::Failing if self.base == 255 => 255,
            Health::Failing => self.base.saturating_sub(self.weight).max(1),
            Health::Hung | Health::Gone => 0,
        }
    }

    /// Takes one observation; returns the new priority when it changes.
    pub fn observe(&mut self, c: Check) -> Option<u8> {
        let before = self.priority();
        match c {
            Check::Gone => {
                self.state = Health::Gone;
                self.oks = 0;
            }
            Check::Failed => {
                self.oks = 0;
                self.fails += 1;
                self.silent = 0;
                if self.state == Health::Up && self.fails >= self.fall {
                    self.state = Health::Failing;
                }
            }
            Check::NoAnswer => {
                self.oks = 0;
                self.fails += 1;
                self.silent += 1;
                if self.state != Health::Gone && self.silent >= self.fall {
                    self.state = Health::Hung;
                } else if self.state == Health::Up && self.fails >= self.fall {
                    self.state = Health::Failing;
                }
            }
            Check::Ok => {
                self.fails = 0;
                self.silent = 0;
                self.oks += 1;
                if self.state != Health::Up && self.oks >= self.rise {
                    self.state = Health::Up;
                }
            }
        }
        let after = self.priority();
        (after != before).then_some(after)
    }
}

const GONE_RETRY: Duration = Duration::from_millis(20);

/// Keeps one connection to the local Redis, PINGs it every `interval`, and
/// reports each result; a closed connection is seen the moment it closes.
pub async fn watch(
    host: String,
    port: u16,
    auth: Option<(Option<String>, String)>,
    tls: Option<Tls>,
    interval: Duration,
    tx: mpsc::Sender<Check>,
) {
    let mut tls_error_logged = false;
    loop {
        let conn = tokio::time::timeout(
            interval.max(Duration::from_millis(100)),
            TcpStream::connect((host.as_str(), port)),
        )
        .await;
        let stream = match conn {
            Ok(Ok(s)) => s,
            Ok(Err(_)) => {
                if tx.send(Check::Gone).await.is_err() {
                    return;
                }
                // Refused: nothing listens. Retry soon — a restarted Redis
                // is an empty master until the daemon sees it and fixes its
                // role; a refused local connect costs next to nothing.
                tokio::time::sleep(interval.min(GONE_RETRY)).await;
                continue;
            }
            Err(_) => {
                // A Redis that does not even accept is as hung as one that
                // does not answer.
                if tx.send(Check::NoAnswer).await.is_err() {
                    return;
                }
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let stream: Box<dyn Stream> = match &tls {
            None => Box::new(stream),
            Some(t) => match t.connect(stream, &host).await {
                Ok(s) => {
                    tls_error_logged = false;
                    Box::new(s)
                }
                Err(e) => {
                    // Redis listens but the TLS settings do not match: it
                    // fails its checks (weight), and the log says why once.
                    if !tls_error_logged {
                        tracing::warn!("TLS to the local Redis {host}:{port}: {e}");
                        tls_error_logged = true;
                    }
                    if tx.send(Check::Failed).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(interval).await;
                    continue;
                }
            },
        };
        let (r, mut w) = tokio::io::split(stream);
        let mut r = BufReader::new(r);
        if let Some((user, pass)) = &auth {
            let cmd = match user {
                Some(u) => resp(&["AUTH", u, pass]),
                None => resp(&["AUTH", pass]),
            };
            let mut line = String::new();
            if w.write_all(&cmd).await.is_err() || r.read_line(&mut line).await.unwrap_or(0) == 0 {
                let _ = tx.send(Check::Gone).await;
                continue;
            }
        }
        // Named, so a demotion's CLIENT KILL spares it; its +OK is the
        // first line read below, skipped.
        let name = resp(&["CLIENT", "SETNAME", super::client::CLIENT_NAME]);
        if w.write_all(&name).await.is_err() {
            let _ = tx.send(Check::Gone).await;
            continue;
        }
        let mut name_reply = true;
        // A PING every interval while the last one was answered; with one
        // outstanding, each whole interval since the last answer is one
        // failed check (so `fall` of them are `fall` intervals of silence,
        // counted from the last answer, not from the next PING).
        let mut next_ping = tokio::time::Instant::now();
        let mut last_answer = tokio::time::Instant::now();
        let mut silent_reported = 0u32;
        let mut outstanding = false;
        let mut line = String::new();
        loop {
            let wake = if outstanding {
                last_answer + interval * (silent_reported + 1)
            } else {
                next_ping
            };
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {
                    if outstanding {
                        silent_reported += 1;
                        if tx.send(Check::NoAnswer).await.is_err() { return; }
                        continue;
                    }
                    if w.write_all(b"*1\r\n$4\r\nPING\r\n").await.is_err() {
                        let _ = tx.send(Check::Gone).await;
                        break;
                    }
                    outstanding = true;
                    next_ping += interval;
                }
                n = r.read_line(&mut line) => {
                    match n {
                        Ok(0) | Err(_) => {
                            // Closed under us: Redis went away.
                            if tx.send(Check::Gone).await.is_err() { return; }
                            break;
                        }
                        Ok(_) if std::mem::take(&mut name_reply) => line.clear(),
                        Ok(_) => {
                            let c = if line.starts_with("+PONG") { Check::Ok } else { Check::Failed };
                            outstanding = false;
                            silent_reported = 0;
                            last_answer = tokio::time::Instant::now();
                            // After a silence, the next PING goes at once.
                            next_ping = next_ping.max(last_answer);
                            line.clear();
                            if tx.send(c).await.is_err() { return; }
                        }
                    }
                }
            }
        }
    }
}

/// A plain or TLS connection, as one type.
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Stream for T {}

/// Connect (and TLS handshake) + PING with a short timeout. Any reply, even
/// an error such as NOAUTH, means a Redis is there.
pub async fn answers(
    addr: std::net::IpAddr,
    port: u16,
    tls: Option<&Tls>,
    timeout: Duration,
) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let check = async {
        let tcp = tokio::net::TcpStream::connect((addr, port)).await?;
        let mut s: Box<dyn Stream> = match tls {
            None => Box::new(tcp),
            Some(t) => Box::new(t.connect(tcp, &addr.to_string()).await?),
        };
        s.write_all(b"PING\r\n").await?;
        let mut buf = [0u8; 16];
        let n = s.read(&mut buf).await?;
        Ok::<bool, std::io::Error>(n > 0 && (buf[0] == b'+' || buf[0] == b'-'))
    };
    matches!(tokio::time::timeout(timeout, check).await, Ok(Ok(true)))
}

/// A command as Redis reads it: an array of bulk strings.
fn resp(args: &[&str]) -> Vec<u8> {
    let mut v = Vec::new();
    crate::resp::Frame::Array(args.iter().map(crate::resp::Frame::bulk).collect())
        .encode(2, &mut v);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fall_rise_weight_and_gone() {
        let mut p = Policy::new(150, 50, 2, 2);
        assert_eq!(p.observe(Check::Failed), None, "one failure is not a fall");
        assert_eq!(p.observe(Check::Failed), Some(100));
        assert_eq!(p.observe(Check::Failed), None);
        assert_eq!(p.observe(Check::Ok), None, "one success is not a rise");
        assert_eq!(p.observe(Check::Ok), Some(150));
        assert_eq!(p.observe(Check::Gone), Some(0), "gone: priority 0 at once");
        assert_eq!(p.state(), Health::Gone);
        assert_eq!(p.observe(Check::Ok), None);
        assert_eq!(p.observe(Check::Ok), Some(150));
    }

    #[test]
    fn no_answer_for_fall_intervals_is_hung_priority_zero() {
        let mut p = Policy::new(150, 50, 2, 2);
        assert_eq!(p.observe(Check::NoAnswer), None);
        assert_eq!(
            p.observe(Check::NoAnswer),
            Some(0),
            "hung: the peer takes over"
        );
        assert_eq!(p.state(), Health::Hung);
        assert_eq!(p.observe(Check::Ok), None);
        assert_eq!(p.observe(Check::Ok), Some(150));
        // An error reply among them: failing, not hung.
        let mut p = Policy::new(150, 50, 2, 2);
        p.observe(Check::Failed);
        assert_eq!(p.observe(Check::NoAnswer), Some(100));
        assert_eq!(p.observe(Check::NoAnswer), Some(0));
    }

    #[test]
    fn never_below_one_when_failing_and_owner_kept() {
        let mut p = Policy::new(30, 50, 1, 1);
        assert_eq!(p.observe(Check::Failed), Some(1));
        let mut o = Policy::new(255, 50, 1, 1);
        assert_eq!(o.observe(Check::Failed), None);
        assert_eq!(o.observe(Check::Gone), Some(0));
    }
}
