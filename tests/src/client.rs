//! A Redis client on a test host writing INCR through the VIP as fast as one
//! connection allows: what an application sees of a failover.
use std::{
    io::{BufRead, BufReader, Write},
    net::{SocketAddr, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crate::Netns;

/// What the writer saw.
#[derive(Debug, Default, Clone)]
pub struct Report {
    /// Every acknowledged INCR: when, and the value Redis returned.
    pub acked: Vec<(Instant, i64)>,
    /// With `Writer::start_tagged`: which Redis (index into `servers`)
    /// acknowledged each write in `acked`.
    pub acked_by: Vec<u16>,
    /// The run_id of each Redis this writer was connected to.
    pub servers: Vec<String>,
    pub errors: u64,
    /// What went wrong and when (up to `ERROR_LOG_MAX`), to explain a gap.
    pub error_log: Vec<(Instant, String)>,
}

/// Enough for the lab's six faults (a failover is a few hundred READONLY
/// replies at most); a few MB at worst.
const ERROR_LOG_MAX: usize = 50_000;

impl Report {
    /// Acknowledged values that were not above the one before: writes the
    /// cluster acknowledged and then forgot.
    pub fn went_back(&self) -> Vec<(i64, i64)> {
        self.acked
            .windows(2)
            .filter(|w| w[1].1 <= w[0].1)
            .map(|w| (w[0].1, w[1].1))
            .collect()
    }

    /// Longest time between two acknowledged writes.
    /// Each step back with its wall-clock time (UTC, as the daemons log it)
    /// and the values acknowledged right after it: enough to line it up with
    /// the daemon and Redis logs.
    pub fn went_back_detail(&self) -> Vec<String> {
        let now_i = Instant::now();
        let now_s = std::time::SystemTime::now();
        self.acked
            .windows(2)
            .enumerate()
            .filter(|(_, w)| w[1].1 <= w[0].1)
            .map(|(i, w)| {
                let wall = now_s - (now_i - w[1].0);
                let ms = wall
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_millis();
                let next: Vec<i64> = self.acked[i + 1..].iter().take(4).map(|a| a.1).collect();
                format!(
                    "{} -> {} at {:02}:{:02}:{:02}.{:03}Z ({:?} after the previous ack), then {next:?}",
                    w[0].1,
                    w[1].1,
                    ms / 3_600_000 % 24,
                    ms / 60_000 % 60,
                    ms / 1000 % 60,
                    ms % 1000,
                    w[1].0 - w[0].0
                )
            })
            .collect()
    }

    fn error(&mut self, what: String) {
        self.errors += 1;
        self.log(what);
    }

    /// Into the error log, not counted as an error (a reconnect).
    fn log(&mut self, what: String) {
        if self.error_log.len() < ERROR_LOG_MAX {
            self.error_log.push((Instant::now(), what));
        }
    }

    /// The errors inside the longest gap, with their time into it; a run of
    /// the same error is one line with its count.
    pub fn errors_in_longest_gap(&self) -> Vec<String> {
        let Some(w) = self.acked.windows(2).max_by_key(|w| w[1].0 - w[0].0) else {
            return Vec::new();
        };
        let mut out: Vec<(Duration, &str, usize)> = Vec::new();
        for (t, e) in self
            .error_log
            .iter()
            .filter(|(t, _)| *t > w[0].0 && *t < w[1].0)
        {
            match out.last_mut() {
                Some(last) if last.1 == e => last.2 += 1,
                _ => out.push((*t - w[0].0, e, 1)),
            }
        }
        out.into_iter()
            .map(|(t, e, n)| match n {
                1 => format!("+{} ms {e}", t.as_millis()),
                n => format!("+{} ms {e} (×{n})", t.as_millis()),
            })
            .collect()
    }

    pub fn longest_gap(&self) -> Duration {
        self.acked
            .windows(2)
            .map(|w| w[1].0 - w[0].0)
            .max()
            .unwrap_or_default()
    }

    pub fn last(&self) -> i64 {
        self.acked.last().map_or(0, |a| a.1)
    }
}

pub struct Writer {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Report>>,
}

fn cmd(args: &[&str]) -> Vec<u8> {
    let mut v = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        v.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    v
}

/// Sends one command and reads a one-line reply (integer, status or error).
/// A plain or TLS connection to Redis.
pub trait Stream: std::io::Read + Write + Send {}
impl<T: std::io::Read + Write + Send> Stream for T {}
pub type Conn = BufReader<Box<dyn Stream>>;

/// The Redis's run_id (`INFO server`): which server a connection reached.
pub fn run_id(s: &mut Conn) -> std::io::Result<String> {
    s.get_mut().write_all(&cmd(&["INFO", "server"]))?;
    let mut line = String::new();
    s.read_line(&mut line)?;
    let len: usize = line
        .trim()
        .strip_prefix('$')
        .and_then(|l| l.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("INFO server: {line:?}")))?;
    let mut body = vec![0u8; len + 2];
    std::io::Read::read_exact(s, &mut body)?;
    String::from_utf8_lossy(&body)
        .lines()
        .find_map(|l| l.trim().strip_prefix("run_id:").map(str::to_owned))
        .ok_or_else(|| std::io::Error::other("INFO server has no run_id"))
}

pub fn call(s: &mut Conn, args: &[&str]) -> std::io::Result<String> {
    s.get_mut().write_all(&cmd(args))?;
    let mut line = String::new();
    if s.read_line(&mut line)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    if line.starts_with('$') {
        // Bulk string: the value is on the next line ($-1: none).
        if line.starts_with("$-1") {
            return Ok(String::new());
        }
        let mut v = String::new();
        s.read_line(&mut v)?;
        return Ok(v.trim_end().to_owned());
    }
    Ok(line.trim_end().to_owned())
}

fn tcp(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_millis(200))?;
    s.set_read_timeout(Some(Duration::from_millis(500)))?;
    s.set_write_timeout(Some(Duration::from_millis(500)))?;
    s.set_nodelay(true)?;
    Ok(s)
}

pub fn connect(addr: SocketAddr) -> std::io::Result<Conn> {
    Ok(BufReader::new(Box::new(tcp(addr)?)))
}

/// A TLS connection (the handshake done, so a refusal shows here), the
/// server verified by its IP address.
pub fn connect_tls(addr: SocketAddr, cfg: &Arc<rustls::ClientConfig>) -> std::io::Result<Conn> {
    let sock = tcp(addr)?;
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    let conn = rustls::ClientConnection::new(cfg.clone(), name).map_err(std::io::Error::other)?;
    let mut s = rustls::StreamOwned::new(conn, sock);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock)?;
    }
    Ok(BufReader::new(Box::new(s)))
}

impl Writer {
    /// Starts writing `INCR key` to `addr` from namespace `ns`.
    pub fn start(ns: &Netns, addr: SocketAddr, key: &str) -> Writer {
        Self::start_auth(ns, addr, key, None)
    }

    /// The same, authenticating with `password` on every connection.
    /// Writes over TLS.
    pub fn start_tls(
        ns: &Netns,
        addr: SocketAddr,
        key: &str,
        cfg: Arc<rustls::ClientConfig>,
    ) -> Writer {
        Self::start_with(ns, key, None, false, move || connect_tls(addr, &cfg))
    }

    pub fn start_auth(ns: &Netns, addr: SocketAddr, key: &str, password: Option<String>) -> Writer {
        Self::start_with(ns, key, password, false, move || connect(addr))
    }

    /// The same, noting which Redis (its run_id, asked on every connect)
    /// acknowledged each write.
    pub fn start_tagged(ns: &Netns, addr: SocketAddr, key: &str) -> Writer {
        Self::start_with(ns, key, None, true, move || connect(addr))
    }

    fn start_with(
        ns: &Netns,
        key: &str,
        password: Option<String>,
        tagged: bool,
        connect: impl Fn() -> std::io::Result<Conn> + Send + 'static,
    ) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let key = key.to_owned();
        let handle = ns
            .thread(move || {
                let mut r = Report::default();
                let mut conn: Option<Conn> = None;
                let mut server = 0u16;
                while !flag.load(Ordering::Relaxed) {
                    if conn.is_none() {
                        let authed = connect().and_then(|mut c| {
                            if let Some(p) = &password {
                                let r = call(&mut c, &["AUTH", p])?;
                                if !r.starts_with("+OK") {
                                    return Err(std::io::Error::other(r));
                                }
                            }
                            Ok(c)
                        });
                        let authed = match authed {
                            Ok(mut c) if tagged => match run_id(&mut c) {
                                Ok(id) => {
                                    server = match r.servers.iter().position(|s| *s == id) {
                                        Some(i) => i as u16,
                                        None => {
                                            r.servers.push(id);
                                            (r.servers.len() - 1) as u16
                                        }
                                    };
                                    Ok(c)
                                }
                                Err(e) => Err(e),
                            },
                            other => other,
                        };
                        match authed {
                            Ok(c) => {
                                // Not an error, but when it happened explains a gap.
                                if r.errors > 0 {
                                    r.log("(connected)".into());
                                }
                                conn = Some(c);
                            }
                            Err(e) => {
                                r.error(format!("connect: {e}"));
                                std::thread::sleep(Duration::from_millis(2));
                                continue;
                            }
                        }
                    }
                    let c = conn.as_mut().expect("connected");
                    match call(c, &["INCR", &key]) {
                        Ok(line) if line.starts_with(':') => {
                            if let Ok(v) = line[1..].parse() {
                                r.acked.push((Instant::now(), v));
                                if tagged {
                                    r.acked_by.push(server);
                                }
                            }
                        }
                        // READONLY, LOADING, ...: the write was not taken.
                        Ok(reply) => {
                            r.error(reply);
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        Err(e) => {
                            r.error(format!("INCR: {e}"));
                            conn = None;
                        }
                    }
                }
                r
            })
            .expect("writer thread");
        Writer {
            stop,
            handle: Some(handle),
        }
    }

    pub fn stop(mut self) -> Report {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .take()
            .expect("running")
            .join()
            .expect("writer thread")
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
