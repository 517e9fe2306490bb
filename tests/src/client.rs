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
    /// It was still waiting on a reply or a connect when the run ended.
    pub blocked_at_stop: bool,
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

    /// Acknowledged writes a counter whose final value is `final_value` no
    /// longer has: every step back of the counter, plus what was
    /// acknowledged above its final value.
    pub fn lost(&self, final_value: i64) -> i64 {
        let back: i64 = self.went_back().iter().map(|(a, b)| a - b + 1).sum();
        back + (self.last() - final_value).max(0)
    }

    pub fn last(&self) -> i64 {
        self.acked.last().map_or(0, |a| a.1)
    }
}

/// How a client is set up: its own timers can hide what the failover does,
/// so the bench runs each fault with all of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Profile {
    /// 50 ms connect, read and write timeouts: a tuned client.
    Tight,
    /// No socket timeout at all and a blocking connect: hiredis', ioredis'
    /// and most applications' defaults.
    Defaults,
    /// redis-py as it ships (its own 5 s timeouts, retries with backoff).
    RedisPy,
}

impl Profile {
    pub const ALL: [Profile; 3] = [Profile::Tight, Profile::Defaults, Profile::RedisPy];

    pub fn label(&self) -> &'static str {
        match self {
            Profile::Tight => "50 ms timeouts",
            Profile::Defaults => "no timeouts",
            Profile::RedisPy => "redis-py defaults",
        }
    }

    fn timeout(&self) -> Option<Duration> {
        match self {
            Profile::Tight => Some(Duration::from_millis(50)),
            _ => None,
        }
    }
}

/// What a writer writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `INCR key`: a counter that must never go back.
    Incr,
    /// `RPUSH key n`: a unique element per write.
    Push,
}

/// A writer of any profile.
pub enum ProfileWriter {
    Rust(Writer),
    Py(LibWriter),
}

impl ProfileWriter {
    /// Starts a `profile` client writing INCR `key` at `addr` from `ns`,
    /// at most one write per `pace`.
    pub fn start(
        ns: &Netns,
        addr: SocketAddr,
        key: &str,
        profile: Profile,
        pace: Duration,
    ) -> std::io::Result<ProfileWriter> {
        Ok(match profile {
            Profile::RedisPy => ProfileWriter::Py(LibWriter::start(ns, addr, key, pace)?),
            p => ProfileWriter::Rust(Writer::start_profile(ns, addr, key, p, pace)),
        })
    }

    pub fn stop(self) -> Report {
        match self {
            ProfileWriter::Rust(w) => w.stop(),
            ProfileWriter::Py(p) => p.stop(),
        }
    }
}

/// A client library no one here wrote, writing from a namespace:
/// redis-py (in the venv `cargo xtask setup` makes) running
/// tests/fixtures/redis_py_writer.py, or a Sentinel-aware client
/// (`SentinelLib`).
pub struct LibWriter {
    child: std::process::Child,
    out: std::path::PathBuf,
}

/// The Sentinel-aware clients the discovery tests run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SentinelLib {
    /// redis-py from PyPI (the venv).
    RedisPy,
    /// Debian's python3-redis.
    DebianRedisPy,
    /// ioredis from npm.
    Ioredis,
    /// node-redis (`redis`) from npm.
    NodeRedis,
    /// The redis crate's `sentinel` feature (tests/examples/redis_rs_sentinel_writer.rs).
    RedisRs,
}

/// Where `cargo xtask setup` installs the npm packages.
pub const NODE_MODULES: &str = "target/node/node_modules";

/// The Python that has redis-py.
pub fn python() -> std::path::PathBuf {
    crate::workspace_root().join("target/py/bin/python")
}

impl LibWriter {
    pub fn start(ns: &Netns, addr: SocketAddr, key: &str, pace: Duration) -> std::io::Result<Self> {
        Self::spawn(
            ns,
            "redis_py_writer.py",
            [
                addr.ip().to_string(),
                addr.port().to_string(),
                key.to_owned(),
            ],
            format!("{}", pace.as_secs_f64()),
        )
    }

    /// A Sentinel-aware client library (`lib`) asking `sentinels` for master
    /// `name` and writing INCR to `key`, with socket and connect timeouts of
    /// `timeout` (zero: the library's defaults).
    pub fn start_sentinel(
        lib: SentinelLib,
        ns: &Netns,
        sentinels: &[SocketAddr],
        name: &str,
        key: &str,
        timeout: Duration,
    ) -> std::io::Result<Self> {
        let list: Vec<String> = sentinels.iter().map(|a| a.to_string()).collect();
        let fixtures = crate::workspace_root().join("tests/fixtures");
        let (program, script, env): (std::path::PathBuf, Option<std::path::PathBuf>, _) = match lib
        {
            SentinelLib::RedisPy => (
                python(),
                Some(fixtures.join("redis_py_sentinel_writer.py")),
                vec![],
            ),
            SentinelLib::DebianRedisPy => (
                "/usr/bin/python3".into(),
                Some(fixtures.join("redis_py_sentinel_writer.py")),
                vec![],
            ),
            SentinelLib::Ioredis | SentinelLib::NodeRedis => (
                "/usr/bin/node".into(),
                Some(fixtures.join("node").join(if lib == SentinelLib::Ioredis {
                    "ioredis_sentinel_writer.js"
                } else {
                    "node_redis_sentinel_writer.js"
                })),
                vec![(
                    "NODE_PATH",
                    crate::workspace_root().join(NODE_MODULES).into_os_string(),
                )],
            ),
            SentinelLib::RedisRs => (
                crate::workspace_root().join("target/debug/examples/redis_rs_sentinel_writer"),
                None,
                vec![],
            ),
        };
        Self::spawn_program(
            ns,
            &program,
            script,
            env,
            [list.join(","), name.to_owned(), key.to_owned()],
            format!("{}", timeout.as_secs_f64()),
        )
    }

    /// Runs fixture `script` with `head`, then its output file, then `last`.
    fn spawn(ns: &Netns, script: &str, head: [String; 3], last: String) -> std::io::Result<Self> {
        Self::spawn_program(
            ns,
            &python(),
            Some(crate::workspace_root().join("tests/fixtures").join(script)),
            vec![],
            head,
            last,
        )
    }

    fn spawn_program(
        ns: &Netns,
        program: &std::path::Path,
        script: Option<std::path::PathBuf>,
        env: Vec<(&str, std::ffi::OsString)>,
        head: [String; 3],
        last: String,
    ) -> std::io::Result<Self> {
        if !program.exists() {
            return Err(std::io::Error::other(format!(
                "{} missing: `cargo xtask setup` installs the client libraries (and `cargo build -p ha-tests --examples` the Rust one)",
                program.display()
            )));
        }
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let out = std::env::temp_dir().join(format!(
            "ha-libwriter-{}-{}.txt",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let mut cmd = ns.command(&program.to_string_lossy());
        cmd.args(script)
            .args(head)
            .arg(&out)
            .arg(last)
            .envs(env)
            .stdin(std::process::Stdio::null());
        let child = cmd.spawn()?;
        Ok(LibWriter { child, out })
    }

    /// Stops it and reads what it saw.
    pub fn stop(mut self) -> Report {
        // `ip netns exec` execs the program: the child is Python itself.
        // SAFETY: plain kill(2) on our child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        if let Some(dir) = std::env::var_os("HA_KEEP_CLIENT_OUTPUT") {
            // Debugging aid: what the client wrote, traces included.
            let _ = std::fs::copy(
                &self.out,
                std::path::Path::new(&dir).join(self.out.file_name().unwrap_or_default()),
            );
        }
        let _ = std::fs::remove_file(&self.out);
        parse_py(&text)
    }
}

/// CLOCK_MONOTONIC now, ns: what Instant and Python's monotonic_ns read.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime into a valid timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn parse_py(text: &str) -> Report {
    let (now_i, now_ns) = (Instant::now(), monotonic_ns());
    let at = |ns: u64| now_i.checked_sub(Duration::from_nanos(now_ns.saturating_sub(ns)));
    let mut r = Report::default();
    for line in text.lines() {
        let mut w = line.splitn(3, ' ');
        let (kind, ns, rest) = (w.next(), w.next(), w.next().unwrap_or(""));
        let Some(t) = ns.and_then(|n| n.parse().ok()).and_then(at) else {
            continue;
        };
        match kind {
            Some("A") => {
                if let Ok(v) = rest.parse() {
                    r.acked.push((t, v));
                }
            }
            Some("E") => {
                r.errors += 1;
                if r.error_log.len() < ERROR_LOG_MAX {
                    r.error_log.push((t, rest.to_owned()));
                }
            }
            _ => {}
        }
    }
    r
}

pub struct Writer {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Report>>,
    /// The profile writer's connection, to unblock a client with no
    /// timeout that still waits when the run ends.
    current: Option<Arc<std::sync::Mutex<Option<TcpStream>>>>,
}

fn cmd(args: &[&str]) -> Vec<u8> {
    crate::resp::command(args)
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

    /// A client configured as `profile` says (Tight or Defaults), one
    /// INCR per `pace` at most: several can share a run.
    pub fn start_profile(
        ns: &Netns,
        addr: SocketAddr,
        key: &str,
        profile: Profile,
        pace: Duration,
    ) -> Writer {
        Self::start_profile_op(ns, addr, key, profile, pace, Op::Incr, false)
    }

    /// A `profile` client that appends a unique element to the list `key`
    /// per write (`RPUSH key <n>`, n = 1, 2, ...): every acknowledged write
    /// can be found again. `acked` holds (time, n); each write is tagged
    /// with the Redis (run_id) that acknowledged it.
    pub fn start_pushing(
        ns: &Netns,
        addr: SocketAddr,
        key: &str,
        profile: Profile,
        pace: Duration,
    ) -> Writer {
        Self::start_profile_op(ns, addr, key, profile, pace, Op::Push, true)
    }

    fn start_profile_op(
        ns: &Netns,
        addr: SocketAddr,
        key: &str,
        profile: Profile,
        pace: Duration,
        op: Op,
        tagged: bool,
    ) -> Writer {
        let timeout = profile.timeout();
        let current: Arc<std::sync::Mutex<Option<TcpStream>>> = Arc::default();
        let slot = current.clone();
        let mut w = Self::start_paced(ns, key, None, tagged, pace, op, move || {
            let s = match timeout {
                Some(t) => {
                    let s = TcpStream::connect_timeout(&addr, t)?;
                    s.set_read_timeout(Some(t))?;
                    s.set_write_timeout(Some(t))?;
                    s
                }
                // Blocking connect (Linux gives up after ~2 min of SYN
                // retries) and no read or write timeout.
                None => TcpStream::connect(addr)?,
            };
            s.set_nodelay(true)?;
            *slot.lock().unwrap_or_else(|e| e.into_inner()) = s.try_clone().ok();
            Ok(BufReader::new(Box::new(s) as Box<dyn Stream>))
        });
        w.current = Some(current);
        w
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
        Self::start_paced(ns, key, password, tagged, Duration::ZERO, Op::Incr, connect)
    }

    fn start_paced(
        ns: &Netns,
        key: &str,
        password: Option<String>,
        tagged: bool,
        pace: Duration,
        op: Op,
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
                let mut next = 0i64;
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
                    next += 1;
                    let n = next.to_string();
                    let sent = match op {
                        Op::Incr => call(c, &["INCR", &key]),
                        Op::Push => call(c, &["RPUSH", &key, &n]),
                    };
                    match sent {
                        Ok(line) if line.starts_with(':') => {
                            let v = match op {
                                Op::Incr => line[1..].parse().ok(),
                                Op::Push => Some(next),
                            };
                            if let Some(v) = v {
                                r.acked.push((Instant::now(), v));
                                if tagged {
                                    r.acked_by.push(server);
                                }
                            }
                            if !pace.is_zero() {
                                std::thread::sleep(pace);
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
            current: None,
        }
    }

    pub fn stop(mut self) -> Report {
        self.stop.store(true, Ordering::Relaxed);
        let handle = self.handle.take().expect("running");
        let mut blocked = false;
        if let Some(cur) = &self.current {
            // A client with no timeout may wait forever (that is what it
            // does); the run is over, so cut its connection.
            let t = Instant::now();
            while !handle.is_finished() && t.elapsed() < Duration::from_secs(1) {
                std::thread::sleep(Duration::from_millis(5));
            }
            if !handle.is_finished() {
                blocked = true;
                if let Some(s) = cur.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                    let _ = s.shutdown(std::net::Shutdown::Both);
                }
            }
        }
        let mut r = handle.join().expect("writer thread");
        r.blocked_at_stop = blocked;
        r
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
