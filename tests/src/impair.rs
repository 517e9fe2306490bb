//! A bad link between a host and the switch: frames lost, duplicated,
//! delayed and reordered, as netem would do (this kernel has no netem).
//!
//! The host's switch port is taken out of the bridge and a relay in the
//! switch's namespace copies frames between it and a new veth pair whose
//! other end is the bridge port now (`x<N>`), both ways, through AF_PACKET
//! sockets: each frame is dropped, sent once or twice, each copy after a
//! delay drawn from the spec (spread delays reorder). Partitions keep
//! working: the switch's cut rules name both ports of a host.
use std::{
    cmp::Reverse,
    collections::BinaryHeap,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::Result;
use rand::{Rng, SeedableRng, rngs::StdRng};

use crate::Lan;

/// What the link does to each frame, both ways.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spec {
    /// Probability a frame is dropped.
    pub loss: f64,
    /// Probability a frame that is not dropped is sent twice.
    pub dup: f64,
    /// Each copy waits a delay drawn uniformly from this range: a spread
    /// reorders frames.
    pub delay: (Duration, Duration),
}

impl std::fmt::Display for Spec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "loss {:.0} %, duplication {:.0} %, delay {:?}..{:?}",
            self.loss * 100.0,
            self.dup * 100.0,
            self.delay.0,
            self.delay.1
        )
    }
}

/// Counts of what the relay did.
#[derive(Debug, Default)]
pub struct Counts {
    pub frames: AtomicU64,
    pub dropped: AtomicU64,
    pub duplicated: AtomicU64,
}

/// An impaired link; dropping it puts the host's port back into the bridge.
pub struct Impairment {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    bridge: String,
    port: String,
    relay_port: String,
    pub counts: Arc<Counts>,
}

/// The bridge port that stands for host `name` while its link is impaired.
pub fn relay_port(host_port: &str) -> String {
    format!("x{}", host_port.trim_start_matches('h'))
}

impl Lan {
    /// Impairs the link of host `i` (both ways) until the returned value is
    /// dropped; `seed` makes its random choices repeatable.
    pub fn impair(&self, i: usize, spec: Spec, seed: u64) -> Result<Impairment> {
        let port = self.host(i).name.clone();
        let xp = relay_port(&port);
        let yp = format!("y{}", port.trim_start_matches('h'));
        let br = &self.bridge;
        br.ip(&["link", "add", &xp, "type", "veth", "peer", "name", &yp])?;
        for l in [&xp, &yp] {
            br.ip(&["link", "set", l, "up"])?;
        }
        let counts = Arc::new(Counts::default());
        let stop = Arc::new(AtomicBool::new(false));
        // The relay's sockets are open before the port leaves the bridge.
        let (a, b) = br.enter(|| Ok::<_, std::io::Error>((open(&port)?, open(&yp)?)))??;
        let mut threads = Vec::new();
        for (k, (from, to)) in [(a, b), (b, a)].into_iter().enumerate() {
            let (stop, counts) = (stop.clone(), counts.clone());
            let rng = StdRng::seed_from_u64(seed.wrapping_mul(31).wrapping_add(k as u64));
            threads.push(std::thread::spawn(move || {
                relay(from, to, spec, rng, &stop, &counts)
            }));
        }
        br.ip(&["link", "set", &xp, "master", "br0"])?;
        br.ip(&["link", "set", &port, "nomaster"])?;
        Ok(Impairment {
            stop,
            threads,
            bridge: br.name().to_owned(),
            port,
            relay_port: xp,
            counts,
        })
    }
}

impl Drop for Impairment {
    fn drop(&mut self) {
        let ip = |args: &[&str]| {
            let mut full = vec!["-n", self.bridge.as_str()];
            full.extend_from_slice(args);
            let _ = std::process::Command::new("ip").args(full).output();
        };
        ip(&["link", "set", &self.port, "master", "br0"]);
        ip(&["link", "del", &self.relay_port]);
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A raw socket on `iface` (every protocol), with room for bursts.
fn open(iface: &str) -> std::io::Result<i32> {
    let ifindex = ha_daemon::net::iface::index(iface).map_err(std::io::Error::other)?;
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain socket(2); the fd is owned by the relay threads, which
    // close it when they stop (the second of the two).
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto)) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a zeroed sockaddr_ll is valid; bind with its size.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = ifindex as i32;
    let size = 4 << 20;
    // SAFETY: valid fd, option value and sizes.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const i32).cast(),
            4,
        );
        if libc::bind(
            fd,
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        ) != 0
        {
            let e = std::io::Error::last_os_error();
            libc::close(fd);
            return Err(e);
        }
    }
    Ok(fd)
}

/// Copies frames arriving on `from` out of `to`, impaired, until `stop`.
fn relay(from: i32, to: i32, spec: Spec, mut rng: StdRng, stop: &AtomicBool, counts: &Counts) {
    let mut buf = vec![0u8; 65536];
    let mut due: BinaryHeap<Reverse<(Instant, u64, Vec<u8>)>> = BinaryHeap::new();
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        while due.peek().is_some_and(|Reverse((t, _, _))| *t <= now) {
            let Some(Reverse((_, _, f))) = due.pop() else {
                break;
            };
            // SAFETY: a bound packet socket and a whole frame.
            unsafe { libc::send(to, f.as_ptr().cast(), f.len(), 0) };
        }
        let wait = due
            .peek()
            .map_or(Duration::from_millis(5), |Reverse((t, _, _))| {
                t.saturating_duration_since(now)
            })
            .min(Duration::from_millis(5));
        let mut pfd = libc::pollfd {
            fd: from,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, wait.as_millis() as i32) };
        if r <= 0 {
            continue;
        }
        // SAFETY: a zeroed sockaddr_ll is valid for recvfrom to fill.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
        // SAFETY: valid buffer and address of the given sizes.
        let n = unsafe {
            libc::recvfrom(
                from,
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
                (&mut sll as *mut libc::sockaddr_ll).cast(),
                &mut len,
            )
        };
        // What this socket's own interface sends (our relaying) comes back
        // as PACKET_OUTGOING: not a frame to carry.
        if n <= 0 || sll.sll_pkttype == libc::PACKET_OUTGOING {
            continue;
        }
        counts.frames.fetch_add(1, Ordering::Relaxed);
        if rng.random_bool(spec.loss.clamp(0.0, 1.0)) {
            counts.dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let copies = if rng.random_bool(spec.dup.clamp(0.0, 1.0)) {
            counts.duplicated.fetch_add(1, Ordering::Relaxed);
            2
        } else {
            1
        };
        for _ in 0..copies {
            let (lo, hi) = spec.delay;
            let d = if hi > lo {
                lo + (hi - lo).mul_f64(rng.random::<f64>())
            } else {
                lo
            };
            seq += 1;
            due.push(Reverse((
                Instant::now() + d,
                seq,
                buf[..n as usize].to_vec(),
            )));
        }
    }
    // Both directions share the two sockets; each thread closes the one it
    // read from.
    // SAFETY: our fd, closed once.
    unsafe { libc::close(from) };
}
