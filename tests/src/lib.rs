//! A test bed of hosts in network namespaces on one bridge, and the processes
//! run on them. Used by the integration tests and by `cargo xtask lab`.
//!
//! Everything lives in namespaces this process made: the bridge is inside its
//! own namespace, no interface is added to the root namespace, and every
//! namespace is deleted (its processes killed first) when its guard drops,
//! also when a test panics. Namespaces left by a run that was killed are
//! removed by the next run (their names carry the dead run's pid).
pub mod chaos;
pub mod client;
pub mod cluster;
pub mod daemon;
pub mod frames;
pub mod impair;
pub mod netns;
pub mod proc;
pub mod redis;
pub mod resp;

pub use netns::{Host, Lan, Netns, Switch};
pub use proc::Proc;

use std::path::PathBuf;

/// Root of the workspace (where `target/` is).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Fails the test with a clear message unless run as root: namespaces and
/// eBPF need it, and a test that cannot run must fail, not pass by skipping.
pub fn require_root() {
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test needs root (network namespaces, XDP, raw sockets): run `sudo -E cargo xtask test`"
    );
}

/// A fresh scratch directory under target/, removed when dropped.
pub struct TempDir(PathBuf);

/// A bpf filesystem for the daemons' pinned maps, mounted once under target/.
///
/// `ip netns exec` gives each daemon a private mount namespace with /sys
/// remounted, so a bpffs the daemon mounts on /sys/fs/bpf itself vanishes with
/// it; this one is mounted in the test's namespace and outlives daemons, as
/// /sys/fs/bpf does on a real host.
pub fn bpffs() -> PathBuf {
    static ONCE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _g = ONCE.lock().unwrap_or_else(|e| e.into_inner());
    let dir = workspace_root().join("target/testbed/bpffs");
    std::fs::create_dir_all(&dir).expect("create target/testbed/bpffs");
    if !ha_daemon::ebpf::pin::is_bpffs(&dir) {
        let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
        let fs = std::ffi::CString::new("bpf").unwrap();
        // SAFETY: valid C strings, no data.
        let r = unsafe { libc::mount(fs.as_ptr(), c.as_ptr(), fs.as_ptr(), 0, std::ptr::null()) };
        assert_eq!(
            r,
            0,
            "mount bpffs on {}: {}",
            dir.display(),
            std::io::Error::last_os_error()
        );
    }
    dir
}

impl TempDir {
    pub fn new(tag: &str) -> anyhow::Result<Self> {
        let p = workspace_root().join("target/testbed").join(format!(
            "{}-{}-{}",
            tag,
            std::process::id(),
            netns::next_id()
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p)?;
        Ok(Self(p))
    }
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }

    /// This directory's counterpart on the test bpffs, for pinned maps.
    pub fn pin_root(&self) -> PathBuf {
        bpffs().join(self.0.file_name().expect("named"))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Pinned maps hold kernel memory: always unpin.
        let pins = workspace_root()
            .join("target/testbed/bpffs")
            .join(self.0.file_name().expect("named"));
        let _ = std::fs::remove_dir_all(pins);
        // Kept for a post-mortem when a test failed, or on request.
        if !std::thread::panicking() && std::env::var_os("HA_KEEP_TESTBED").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Polls `f` every 10 ms until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(timeout: std::time::Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// User + system CPU time a process has used so far (0 if it is gone).
pub fn proc_cpu(pid: i32) -> std::time::Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name start at field 3 (state);
    // utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| {
        f.get(n - 3)
            .and_then(|x| x.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // SAFETY: sysconf is always safe to call.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    std::time::Duration::from_millis((field(14) + field(15)) * 1000 / hz)
}
