//! Network namespaces, a bridge between them, and hosts on it.
use std::{
    fs::File,
    net::{Ipv4Addr, Ipv6Addr},
    os::fd::AsRawFd,
    path::PathBuf,
    process::{Command, Output},
    sync::{
        Once,
        atomic::{AtomicU32, Ordering},
    },
};

use anyhow::{Context, Result, bail};

use crate::proc::Proc;

static NEXT_ID: AtomicU32 = AtomicU32::new(1);

/// A number unique within this process, for names.
pub fn next_id() -> u32 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// Runs a command to completion; an error carries its stderr.
pub fn run(cmd: &mut Command) -> Result<Output> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

fn ip(args: &[&str]) -> Result<String> {
    let out = run(Command::new("ip").args(args))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A network namespace made by this process; deleted with its processes on drop.
pub struct Netns {
    name: String,
}

impl Netns {
    pub fn create(name: &str) -> Result<Self> {
        if name.len() > 60 {
            bail!("namespace name {name:?} too long");
        }
        ip(&["netns", "add", name])?;
        let ns = Self { name: name.into() };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n NAME ARGS...`
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        ip(&full)
    }

    /// A command that runs `program` inside this namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Runs `program args` inside the namespace to completion and returns stdout.
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<String> {
        let out = run(self.command(program).args(args))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Starts a long-running `cmd` (built with [`Netns::command`]), logging to `log`.
    pub fn spawn(&self, name: &str, cmd: Command, log: PathBuf) -> Result<Proc> {
        Proc::spawn(name, cmd, log)
    }

    /// Runs `f` on a thread whose network namespace is this one: for in-process
    /// work such as attaching XDP or opening sockets there.
    pub fn enter<R: Send, F: FnOnce() -> R + Send>(&self, f: F) -> Result<R> {
        let path = format!("/run/netns/{}", self.name);
        let file = File::open(&path).with_context(|| format!("opening {path}"))?;
        std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: setns on a valid namespace fd; affects only this thread.
                if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    bail!("setns into {}: {}", path, std::io::Error::last_os_error());
                }
                Ok(f())
            })
            .join()
            .map_err(|e| std::panic::resume_unwind(e))
            .and_then(|r| r)
        })
    }

    /// Starts a thread whose network namespace is this one.
    pub fn thread<R: Send + 'static, F: FnOnce() -> R + Send + 'static>(
        &self,
        f: F,
    ) -> Result<std::thread::JoinHandle<R>> {
        let path = format!("/run/netns/{}", self.name);
        let file = File::open(&path).with_context(|| format!("opening {path}"))?;
        Ok(std::thread::spawn(move || {
            // SAFETY: setns on a valid namespace fd; affects only this thread.
            let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(
                r,
                0,
                "setns into {path}: {}",
                std::io::Error::last_os_error()
            );
            f()
        }))
    }

    /// Kills every process in the namespace.
    pub fn kill_all(&self) {
        if let Ok(pids) = ip(&["netns", "pids", &self.name]) {
            for pid in pids
                .split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
            {
                // SAFETY: plain kill(2).
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.kill_all();
        for _ in 0..50 {
            if ip(&["netns", "del", &self.name]).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        eprintln!("warning: could not delete namespace {}", self.name);
    }
}

/// Deletes namespaces named `PREFIX<pid>x...` whose creating process is gone:
/// what a killed test run left behind.
pub fn remove_stale(prefix: &str) {
    let Ok(dir) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(prefix) else {
            continue;
        };
        let pid: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        if pid.is_empty() || std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        drop(Netns { name });
    }
}

/// One host on the LAN: its namespace, interface and addresses.
pub struct Host {
    pub ns: Netns,
    /// Name of the host (h1, h2, ...), also the bridge port's name.
    pub name: String,
    /// The host's interface to the LAN (always `eth0` inside its namespace).
    pub iface: String,
    pub addr4: Ipv4Addr,
    pub addr6: Ipv6Addr,
    pub mac: String,
}

impl Host {
    /// Reads the host's neighbour entry for `addr` (`ip neigh`), if any.
    pub fn neighbour_mac(&self, addr: &str) -> Option<String> {
        let out = self
            .ns
            .ip(&["neigh", "show", "to", addr, "dev", &self.iface])
            .ok()?;
        let mut words = out.split_whitespace();
        while let Some(w) = words.next() {
            if w == "lladdr" {
                return words.next().map(str::to_owned);
            }
        }
        None
    }

    /// Pins `addr` to `mac` in this host's neighbour table (gratuitous ARP
    /// does not move it): the host keeps sending to that MAC.
    pub fn pin_neighbour(&self, addr: &str, mac: &str) -> Result<()> {
        self.ns.ip(&[
            "neigh",
            "replace",
            addr,
            "lladdr",
            mac,
            "dev",
            &self.iface,
            "nud",
            "permanent",
        ])?;
        Ok(())
    }

    /// The addresses on the host's LAN interface (`ip -br addr`).
    pub fn addresses(&self) -> Vec<String> {
        self.ns
            .ip(&["-br", "addr", "show", "dev", &self.iface])
            .map(|o| o.split_whitespace().skip(2).map(str::to_owned).collect())
            .unwrap_or_default()
    }
}

/// What the hosts' links are plugged into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Switch {
    /// As a NIC on a switch: each switch port runs an XDP program, so a
    /// veth delivers what an XDP program on the host's end sends back out
    /// (XDP_TX: the VIP redirect, the resets) — a veth does that only when
    /// its peer has NAPI (veth_xdp_flush); a NIC needs nothing of the kind.
    #[default]
    Nic,
    /// As a container or VM host plugs a veth into its bridge: nothing on
    /// the switch ports, so native-mode XDP_TX on the host's end would be
    /// dropped.
    Veth,
}

/// Hosts on one Ethernet segment: a bridge in its own namespace, a veth per host.
///
/// Addresses: host i (from 1) is 198.18.0.i/24 and fd18::i/64 (RFC 2544
/// benchmarking and unique-local ranges, only ever inside these namespaces).
pub struct Lan {
    pub hosts: Vec<Host>,
    /// With `Switch::Nic`, an XDP program that passes everything on each
    /// switch port (see `Switch`).
    switch_xdp: Option<ha_daemon::ebpf::loader::XdpProgram>,
    pub switch: Switch,
    // Dropped after the hosts: deleting a host namespace removes its veth pair.
    pub bridge: Netns,
}

impl Lan {
    /// `prefix` names the namespaces (`PREFIX<pid>x<id>h1` ...); keep it short.
    pub fn new(prefix: &str, hosts: usize) -> Result<Self> {
        Self::with_switch(prefix, hosts, Switch::Nic)
    }

    /// The same, with the hosts plugged into `switch`.
    pub fn with_switch(prefix: &str, hosts: usize, switch: Switch) -> Result<Self> {
        static CLEAN: Once = Once::new();
        CLEAN.call_once(|| remove_stale(prefix));
        let base = format!("{prefix}{}x{}", std::process::id(), next_id());
        let bridge = Netns::create(&format!("{base}br"))?;
        // Multicast snooping off: VRRP's 224.0.0.18 must reach every port.
        bridge.ip(&[
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ])?;
        bridge.ip(&["link", "set", "br0", "up"])?;
        let mut lan = Self {
            hosts: Vec::new(),
            switch_xdp: None,
            switch,
            bridge,
        };
        for i in 1..=hosts {
            lan.add_host(&base, i)?;
        }
        let ports: Vec<String> = lan.hosts.iter().map(|h| h.name.clone()).collect();
        if switch == Switch::Nic {
            lan.switch_xdp = Some(
                lan.bridge
                    .enter(|| {
                        let mut p = ha_daemon::ebpf::loader::XdpProgram::load()?;
                        for port in &ports {
                            p.attach(port)?;
                        }
                        Ok::<_, ha_daemon::ebpf::loader::LoaderError>(p)
                    })?
                    .context("XDP on the switch ports")?,
            );
        }
        // Ready for partitions: a cut is then one nft call.
        lan.partition_table()?;
        Ok(lan)
    }

    fn add_host(&mut self, base: &str, i: usize) -> Result<()> {
        let name = format!("h{i}");
        let ns = Netns::create(&format!("{base}{name}"))?;
        // Test hosts need no duplicate address detection: addresses usable at once.
        ns.exec(
            "sysctl",
            &[
                "-qw",
                "net.ipv6.conf.all.accept_dad=0",
                "net.ipv6.conf.default.accept_dad=0",
            ],
        )?;
        ns.ip(&[
            "link",
            "add",
            "eth0",
            "type",
            "veth",
            "peer",
            "name",
            &name,
            "netns",
            self.bridge.name(),
        ])?;
        self.bridge
            .ip(&["link", "set", &name, "master", "br0", "up"])?;
        let addr4 = Ipv4Addr::new(198, 18, 0, i as u8);
        let addr6: Ipv6Addr = format!("fd18::{i}").parse()?;
        ns.ip(&["addr", "add", &format!("{addr4}/24"), "dev", "eth0"])?;
        ns.ip(&[
            "addr",
            "add",
            &format!("{addr6}/64"),
            "dev",
            "eth0",
            "nodad",
        ])?;
        ns.ip(&["link", "set", "eth0", "up"])?;
        // Whole checksums on every frame, as a NIC puts them on the wire: a
        // veth leaves them to "hardware" (partial), and a frame an XDP
        // program sends on (the VIP redirect) loses the note that says so.
        ns.exec("ethtool", &["-K", "eth0", "tx", "off"])?;
        // A queue in front of each end, as a NIC and a switch port have: a
        // veth has none, and drops what its peer's ring (256 frames, when
        // the peer runs XDP) cannot take; with one the ring pushes back.
        ns.exec(
            "tc",
            &[
                "qdisc", "replace", "dev", "eth0", "root", "pfifo", "limit", "1000",
            ],
        )?;
        self.bridge.exec(
            "tc",
            &[
                "qdisc", "replace", "dev", &name, "root", "pfifo", "limit", "1000",
            ],
        )?;
        let mac = ns
            .exec("cat", &["/sys/class/net/eth0/address"])?
            .trim()
            .to_owned();
        self.hosts.push(Host {
            ns,
            name,
            iface: "eth0".into(),
            addr4,
            addr6,
            mac,
        });
        Ok(())
    }

    pub fn host(&self, i: usize) -> &Host {
        &self.hosts[i - 1]
    }

    /// The switch drops every frame from host `a` to host `b` (one way; also
    /// multicast and broadcast, which the bridge floods port by port), with
    /// an nftables bridge-family rule in the switch's namespace.
    pub fn cut_one_way(&self, a: usize, b: usize) -> Result<()> {
        self.partition_table()?;
        let pairs = self.port_pairs(a, b);
        self.nft(&format!(
            "add element bridge hatest cuts {{ {} }}",
            pairs.join(", ")
        ))
    }

    /// The switch ports host `a`'s frames to host `b` may cross, as set
    /// elements: each host's own port, and the relay's while its link is
    /// impaired (`impair`).
    fn port_pairs(&self, a: usize, b: usize) -> Vec<String> {
        let ports = |i: usize| {
            let p = self.host(i).name.clone();
            [crate::impair::relay_port(&p), p]
        };
        let mut out = Vec::new();
        for x in ports(a) {
            for y in ports(b) {
                out.push(format!("\"{x}\" . \"{y}\""));
            }
        }
        out
    }

    /// Cuts hosts `a` and `b` apart, both ways; every other path stays.
    pub fn cut(&self, a: usize, b: usize) -> Result<()> {
        self.isolate(a, &[b])
    }

    /// Cuts host `a` from each host in `others`, both ways, in one step
    /// (one nft transaction: every link goes at the same instant).
    pub fn isolate(&self, a: usize, others: &[usize]) -> Result<()> {
        self.partition_table()?;
        let pairs: Vec<String> = others
            .iter()
            .flat_map(|&b| {
                let mut p = self.port_pairs(a, b);
                p.extend(self.port_pairs(b, a));
                p
            })
            .collect();
        self.nft(&format!(
            "add element bridge hatest cuts {{ {} }}",
            pairs.join(", ")
        ))
    }

    /// Heals the cuts `isolate(a, others)` made (other cuts stay).
    pub fn uncut(&self, a: usize, others: &[usize]) -> Result<()> {
        let pairs: Vec<String> = others
            .iter()
            .flat_map(|&b| {
                let mut p = self.port_pairs(a, b);
                p.extend(self.port_pairs(b, a));
                p
            })
            .collect();
        self.uncut_pairs(&pairs)
    }

    /// Heals what `cut_one_way(a, b)` made.
    pub fn uncut_one_way(&self, a: usize, b: usize) -> Result<()> {
        let pairs = self.port_pairs(a, b);
        self.uncut_pairs(&pairs)
    }

    fn uncut_pairs(&self, pairs: &[String]) -> Result<()> {
        // One by one: deleting an element that is not there is an error, and
        // one failure would undo the whole transaction.
        for p in pairs {
            let _ = self.nft(&format!("delete element bridge hatest cuts {{ {p} }}"));
        }
        Ok(())
    }

    /// Every cut healed.
    pub fn heal(&self) -> Result<()> {
        if self.nft("list set bridge hatest cuts").is_ok() {
            self.nft("flush set bridge hatest cuts")?;
        }
        Ok(())
    }

    /// The switch drops every frame that `matches` (an nftables bridge
    /// expression, e.g. `tcp window 1234`: every tickle), from now on.
    pub fn drop_matching(&self, matches: &str) -> Result<()> {
        self.nft(&format!(
            "add table bridge hatestdrop\n\
             add chain bridge hatestdrop fw {{ type filter hook forward priority -1; policy accept; }}\n\
             add rule bridge hatestdrop fw {matches} counter drop"
        ))
    }

    /// How many frames `drop_matching` dropped so far, per rule in order.
    pub fn dropped(&self) -> Vec<u64> {
        let out = self
            .bridge
            .exec("nft", &["list", "table", "bridge", "hatestdrop"])
            .unwrap_or_default();
        let w: Vec<&str> = out.split_whitespace().collect();
        w.windows(2)
            .filter(|p| p[0] == "packets")
            .filter_map(|p| p[1].parse().ok())
            .collect()
    }

    fn partition_table(&self) -> Result<()> {
        if self.nft("list set bridge hatest cuts").is_ok() {
            return Ok(());
        }
        self.nft(
            "add table bridge hatest\n\
             add set bridge hatest cuts { type ifname . ifname; }\n\
             add chain bridge hatest cutfw { type filter hook forward priority 0; policy accept; }\n\
             add rule bridge hatest cutfw iifname . oifname @cuts counter drop",
        )
    }

    fn nft(&self, script: &str) -> Result<()> {
        let mut child = self
            .bridge
            .command("nft")
            .args(["-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .context("running nft (package nftables)")?;
        use std::io::Write;
        child
            .stdin
            .take()
            .context("nft stdin")?
            .write_all(script.as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "nft {script:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }
}
