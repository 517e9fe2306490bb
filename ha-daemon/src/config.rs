//! The TOML configuration: parsing, defaults, validation.
//!
//! A config is accepted whole or rejected whole; every error names the file,
//! the instance and the key, and says what would be valid.
use std::{
    collections::HashSet,
    net::IpAddr,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::{notify::NotifyConf, vrrp::packet::Version};

pub const DEFAULT_PATH: &str = "/etc/ha-daemon/ha.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// TOML syntax, a type, an unknown or missing key: the message from the
    /// parser already carries the line and column.
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}:{line}: {key}: {message}", line = line.map_or("?".into(), |l| l.to_string()))]
    Invalid {
        path: PathBuf,
        /// 1-based line of the offending key (of its table when the key is absent).
        line: Option<usize>,
        /// Where, as a reader finds it: `[[instance]] "web" advert_interval_ms`.
        key: String,
        message: String,
    },
}

/// A semantic defect, before it is placed in the file.
#[derive(Debug)]
struct Bad {
    /// Index of the `[[instance]]` table, None for top-level keys.
    instance: Option<usize>,
    /// Dotted key inside it (`redis.port`), or a top-level one (`node.name`).
    key: String,
    message: String,
}

/// The 1-based line where `key` (dotted) of the `instance`-th `[[instance]]`
/// (or of the document) is written; the closest enclosing table if it is not.
fn locate(text: &str, instance: Option<usize>, key: &str) -> Option<usize> {
    let doc = toml_edit::ImDocument::parse(text).ok()?;
    let mut table: &dyn toml_edit::TableLike = doc.as_table();
    let mut span = None;
    if let Some(i) = instance {
        let t = doc.get("instance")?.as_array_of_tables()?.get(i)?;
        span = t.span();
        table = t;
    }
    for part in key.split('.') {
        if let Some((k, item)) = table.get_key_value(part) {
            span = k.span().or_else(|| item.span()).or(span);
            match item.as_table_like() {
                Some(t) => table = t,
                None => break,
            }
        } else {
            break;
        }
    }
    let at = span?.start;
    Some(text[..at.min(text.len())].matches('\n').count() + 1)
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub node: Node,
    /// Partition safety: a lease granted by a majority of voters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum: Option<QuorumConf>,
    /// Tickles after a takeover (on by default with `[quorum]`, which then
    /// carries the connection lists; without it this table names the peers
    /// and the key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tickle: Option<TickleConf>,
    /// The Sentinel-compatible discovery endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sentinel: Option<SentinelConf>,
    #[serde(rename = "instance", default)]
    pub instances: Vec<Instance>,
}

/// `[sentinel]`: answer Sentinel-aware clients (discovery, events).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SentinelConf {
    /// Where to listen, e.g. `0.0.0.0:26379`.
    pub listen: std::net::SocketAddr,
    /// First line: the password clients must give (`AUTH`, `HELLO ...
    /// AUTH default <password>`), as Sentinel's `requirepass`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// The other daemons' Sentinel endpoints (`SENTINEL SENTINELS`); by
    /// default every instance's unicast peer at this port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<std::net::SocketAddr>,
}

impl SentinelConf {
    pub fn read_password(&self) -> Result<Option<String>, String> {
        self.password_file
            .as_deref()
            .map(crate::secret::read_password)
            .transpose()
    }

    /// The other daemons' endpoints: `peers`, or every instance's unicast
    /// peers at this port.
    pub fn peer_endpoints(&self, instances: &[Instance]) -> Vec<std::net::SocketAddr> {
        if !self.peers.is_empty() {
            return self.peers.clone();
        }
        let mut v: Vec<std::net::SocketAddr> = instances
            .iter()
            .flat_map(|i| i.unicast_peers.iter())
            .map(|a| std::net::SocketAddr::new(*a, self.listen.port()))
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

/// `[quorum]`: who votes, and the key their votes are signed with.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct QuorumConf {
    /// Every other voter: the other Redis nodes (their address on the VRRP
    /// interface, the adverts' source) and the witnesses.
    pub peers: Vec<IpAddr>,
    /// The shared secret, the same on every voter (at least 16 bytes).
    pub key_file: PathBuf,
    /// UDP port every voter listens on.
    #[serde(default = "d_quorum_port")]
    pub port: u16,
    /// Bound on how far any node's clock rate may stray from real time, in
    /// parts per million (NTP slewing included); sets the lease's margin.
    #[serde(default = "d_drift_ppm")]
    pub max_drift_ppm: u32,
    /// A node may take over only while its Redis lacks no write the last
    /// master acknowledged longer than this before its last renewal; a
    /// staler one waits for the old master (or for `promote --accept-loss`).
    #[serde(default = "d_max_staleness_ms")]
    pub max_staleness_ms: u64,
}

/// The default `max_staleness_ms`: well above what a streaming replica lags
/// (a few ms under load here) plus the sampling (one renewal), so a single
/// fault never waits; well below a broken replication link's first second.
pub const DEFAULT_MAX_STALENESS_MS: u64 = 100;
/// The largest `max_staleness_ms` accepted (an hour).
pub const MAX_STALENESS_MS: u64 = 3_600_000;

fn d_max_staleness_ms() -> u64 {
    DEFAULT_MAX_STALENESS_MS
}

pub const DEFAULT_QUORUM_PORT: u16 = 5940;

fn d_quorum_port() -> u16 {
    DEFAULT_QUORUM_PORT
}
fn d_drift_ppm() -> u32 {
    crate::quorum::timing::DEFAULT_DRIFT_PPM
}

impl QuorumConf {
    /// Voters in all: the peers and this node.
    pub fn voters(&self) -> usize {
        self.peers.len() + 1
    }

    pub fn key(&self) -> Result<crate::quorum::wire::Key, String> {
        crate::quorum::wire::Key::read(&self.key_file)
    }

    /// Checks what does not depend on the instances.
    fn validate(&self) -> Result<(), (String, String)> {
        let bad = |k: &str, m: String| Err((format!("quorum.{k}"), m));
        if self.peers.is_empty() {
            return bad(
                "peers",
                "empty; list every other voter (the other Redis nodes and the witnesses)".into(),
            );
        }
        let mut seen = HashSet::new();
        for p in &self.peers {
            if p.is_unspecified() || p.is_multicast() || p.is_loopback() {
                return bad(
                    "peers",
                    format!(
                        "{p} is not a voter's address (valid: a unicast address of another host)"
                    ),
                );
            }
            if !seen.insert(*p) {
                return bad("peers", format!("{p} is listed twice"));
            }
        }
        if self.voters() < 3 {
            return bad(
                "peers",
                format!(
                    "{} peer(s) make {} voters with this node; a majority of two is both, so one lost node (or a partition) would stop every write, and without it either side could take over alone. Add a witness (`ha-daemon witness` on a third small host) to peers, or a third Redis node",
                    self.peers.len(),
                    self.voters()
                ),
            );
        }
        if self.port == 0 {
            return bad("port", "0; valid: 1..=65535".into());
        }
        let max = crate::quorum::timing::MAX_DRIFT_PPM;
        if self.max_drift_ppm > max {
            return bad(
                "max_drift_ppm",
                format!("{}; valid: 0..={max}", self.max_drift_ppm),
            );
        }
        if self.max_staleness_ms > MAX_STALENESS_MS {
            return bad(
                "max_staleness_ms",
                format!(
                    "{}; valid: 0..={MAX_STALENESS_MS} (to take over with any loss once, run `ha-daemon promote --accept-loss`)",
                    self.max_staleness_ms
                ),
            );
        }
        if let Err(e) = self.key() {
            return bad("key_file", e);
        }
        Ok(())
    }
}

/// `[tickle]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TickleConf {
    #[serde(default = "d_true")]
    pub enabled: bool,
    /// The other Redis nodes (default, and with `[quorum]` always: its peers).
    #[serde(default)]
    pub peers: Vec<IpAddr>,
    /// Signs the connection lists (default, and with `[quorum]` always: its key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// UDP port (with `[quorum]`: its port).
    #[serde(default = "d_quorum_port")]
    pub port: u16,
    /// How often the master reads its connection table.
    #[serde(default = "d_track_interval")]
    pub track_interval_ms: u64,
}

fn d_track_interval() -> u64 {
    100
}

/// Where the connection lists go and how they are signed, once the config
/// is checked: from `[quorum]`, or from `[tickle]` alone.
#[derive(Debug, Clone)]
pub struct TickleChannel {
    pub peers: Vec<IpAddr>,
    pub key_file: PathBuf,
    pub port: u16,
    pub track_interval_ms: u64,
    /// The channel is the quorum's (else its own).
    pub shared: bool,
}

impl Config {
    /// Whether tickles run, and over which channel.
    pub fn tickle_channel(&self) -> Option<TickleChannel> {
        let t = self.tickle.clone();
        if t.as_ref().is_some_and(|t| !t.enabled) {
            return None;
        }
        let interval = t
            .as_ref()
            .map_or(d_track_interval(), |t| t.track_interval_ms);
        match (&self.quorum, t) {
            (Some(q), _) => Some(TickleChannel {
                peers: q.peers.clone(),
                key_file: q.key_file.clone(),
                port: q.port,
                track_interval_ms: interval,
                shared: true,
            }),
            (None, Some(t)) => Some(TickleChannel {
                peers: t.peers.clone(),
                key_file: t.key_file.clone()?,
                port: t.port,
                track_interval_ms: interval,
                shared: false,
            }),
            (None, None) => None,
        }
    }
}

/// A witness's file: `[node]` and `[quorum]` only.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WitnessConfig {
    pub node: Node,
    pub quorum: QuorumConf,
}

impl WitnessConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let cfg: WitnessConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.into(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        let invalid = |key: String, message: String| ConfigError::Invalid {
            path: path.into(),
            line: locate(text, None, &key),
            key,
            message,
        };
        validate_node(&cfg.node).map_err(|(k, m)| invalid(k, m))?;
        cfg.quorum.validate().map_err(|(k, m)| invalid(k, m))?;
        Ok(cfg)
    }

    pub fn run_dir(&self) -> PathBuf {
        self.node
            .run_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("/run/ha-daemon").join(&self.node.name))
    }

    pub fn bpf_pin_dir(&self) -> PathBuf {
        self.node
            .bpf_pin_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("/sys/fs/bpf/ha").join(&self.node.name))
    }
}

fn validate_node(n: &Node) -> Result<(), (String, String)> {
    let name = &n.name;
    if name.is_empty()
        || name.len() > 32
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err((
            "node.name".into(),
            format!(
                "{name:?}: must be 1-32 characters of letters, digits, '-' or '_' (it names paths)"
            ),
        ));
    }
    Ok(())
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// Unique per host; names the run dir, pin dir and status socket.
    pub name: String,
    pub run_dir: Option<PathBuf>,
    pub bpf_pin_dir: Option<PathBuf>,
    /// Prometheus metrics on this address (`GET /metrics`); off when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<std::net::SocketAddr>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Instance {
    pub name: String,
    pub interface: String,
    pub vrid: u8,
    #[serde(default = "d_version")]
    pub version: u8,
    #[serde(default = "d_priority")]
    pub priority: u8,
    #[serde(default = "d_interval")]
    pub advert_interval_ms: u32,
    #[serde(default = "d_true")]
    pub preempt: bool,
    #[serde(default)]
    pub preempt_delay_ms: u64,
    pub vips: Vec<String>,
    #[serde(default)]
    pub unicast_peers: Vec<IpAddr>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "mask"
    )]
    pub auth_pass: Option<String>,
    #[serde(default = "d_garp_repeat")]
    pub garp_repeat: u32,
    #[serde(default = "d_garp_interval")]
    pub garp_interval_ms: u64,
    #[serde(default)]
    pub garp_refresh_ms: u64,
    /// After this node gives the VIP up with its host alive (its Redis died,
    /// a switchover, a hand-over, a reload), frames still arriving for the
    /// VIP (stale ARP caches) are sent on to the new master this long.
    #[serde(default = "d_redirect_grace")]
    pub redirect_grace_ms: u64,
    /// Without `[quorum]`: after a takeover from a silent master that came
    /// back (a flapping link), a silent master is waited for longer, 3, 6,
    /// 12... × Master_Down_Interval after each such flap, decaying with a
    /// 10 s half-life, at most this long (0: off). With `[quorum]` the lease
    /// keeps a live master and this is not used.
    #[serde(default = "d_flap_hold_max")]
    pub flap_hold_max_ms: u64,
    /// Redis settings of this instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisConf>,
    /// Scripts run on state changes (`[instance.notify]`).
    #[serde(default, skip_serializing_if = "NotifyConf::is_empty")]
    pub notify: NotifyConf,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RedisConf {
    /// The local Redis, host:port.
    #[serde(default = "d_redis_address")]
    pub address: String,
    /// The peers' Redis port. The master's Redis is at its advert source
    /// address and this port; the XDP program watches it for FIN / RST.
    #[serde(default = "d_redis_port")]
    pub port: u16,
    /// Health check period of the local Redis.
    #[serde(default = "d_check_interval")]
    pub check_interval_ms: u64,
    /// File holding the Redis password (first line); read at start-up.
    pub password_file: Option<PathBuf>,
    /// ACL user to authenticate as (with the password from `password_file`).
    pub username: Option<String>,
    /// Priority taken off while the local Redis fails its checks.
    #[serde(default = "d_weight")]
    pub weight: u8,
    /// Failed checks in a row before the weight comes off.
    #[serde(default = "d_fall_rise")]
    pub fall: u32,
    /// Good checks in a row before it goes back on.
    #[serde(default = "d_fall_rise")]
    pub rise: u32,
    /// How long a promotion waits for the local replica to catch up with the
    /// paused old master's offset.
    #[serde(default = "d_catchup")]
    pub catchup_timeout_ms: u64,
    /// Replicate from a master whose dataset is empty even when the local one
    /// is not (off: refuse, and say so in the log and status).
    #[serde(default)]
    pub allow_empty_master: bool,
    /// TLS to every Redis (theirs is a `tls-port`): the CA that signed their
    /// certificates, PEM. Unset: plain TCP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM), for Redis with `tls-auth-clients`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key_file: Option<PathBuf>,
}

fn d_redis_address() -> String {
    "127.0.0.1:6379".into()
}
fn d_redis_port() -> u16 {
    6379
}
fn d_check_interval() -> u64 {
    100
}
fn d_weight() -> u8 {
    50
}
fn d_fall_rise() -> u32 {
    2
}
fn d_catchup() -> u64 {
    1000
}

impl RedisConf {
    /// The local Redis address split into host and port.
    pub fn local(&self) -> Option<(String, u16)> {
        let (h, p) = self.address.rsplit_once(':')?;
        let h = h.trim_start_matches('[').trim_end_matches(']');
        Some((h.to_owned(), p.parse().ok()?))
    }

    /// The TLS material, read and checked, when `tls_ca_file` is set.
    pub fn tls(&self) -> Result<Option<crate::redis::tls::Tls>, String> {
        match (&self.tls_ca_file, &self.tls_cert_file, &self.tls_key_file) {
            (None, None, None) => Ok(None),
            (None, _, _) => Err(
                "tls_cert_file / tls_key_file need tls_ca_file (the CA that signed the Redis certificates)"
                    .into(),
            ),
            (Some(ca), cert, key) => {
                crate::redis::tls::Tls::load(ca, cert.as_deref(), key.as_deref()).map(Some)
            }
        }
    }

    /// Reads the password file, if one is configured.
    pub fn read_password(&self) -> Result<Option<String>, String> {
        self.password_file
            .as_deref()
            .map(crate::secret::read_password)
            .transpose()
    }
}

fn d_version() -> u8 {
    3
}
fn d_priority() -> u8 {
    100
}
fn d_interval() -> u32 {
    1000
}
fn d_true() -> bool {
    true
}
fn d_garp_repeat() -> u32 {
    3
}
fn d_garp_interval() -> u64 {
    20
}
fn d_redirect_grace() -> u64 {
    3000
}
fn d_flap_hold_max() -> u64 {
    2000
}
/// The longest `flap_hold_max_ms` accepted.
pub const MAX_FLAP_HOLD_MS: u64 = 60_000;

/// Secrets never leave the process in clear, not even in `check-config`.
fn mask<S: serde::Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(_) => s.serialize_str("********"),
        None => s.serialize_none(),
    }
}

/// A virtual address with its prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Vip {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl std::fmt::Display for Vip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Vip {
    pub fn parse(s: &str) -> Result<Self, String> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a.trim().parse().map_err(|_| {
            format!("{s:?} is not an IP address (valid: \"10.0.0.100/24\" or \"fd00::100/64\")")
        })?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: prefix length must be 0..={max}"))?,
        };
        Ok(Self { addr, prefix })
    }
}

impl Instance {
    pub fn vrrp_version(&self) -> Version {
        if self.version == 2 {
            Version::V2
        } else {
            Version::V3
        }
    }

    pub fn interval_cs(&self) -> u16 {
        (self.advert_interval_ms / 10) as u16
    }

    /// The VIPs, parsed (validated at load, so this cannot fail afterwards).
    pub fn vip_list(&self) -> Vec<Vip> {
        self.vips
            .iter()
            .filter_map(|v| Vip::parse(v).ok())
            .collect()
    }

    /// The instance's family: its VIPs', or without VIPs its unicast peers'.
    pub fn is_ipv6(&self) -> bool {
        match self.vip_list().first() {
            Some(v) => v.addr.is_ipv6(),
            None => self.unicast_peers.first().is_some_and(IpAddr::is_ipv6),
        }
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.into(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        cfg.validate().map_err(|b| ConfigError::Invalid {
            path: path.into(),
            line: locate(text, b.instance, &b.key),
            key: match b.instance {
                Some(i) => format!(
                    "[[instance]] {:?} {}",
                    cfg.instances.get(i).map_or("", |x| x.name.as_str()),
                    b.key
                ),
                None => b.key,
            },
            message: b.message,
        })?;
        Ok(cfg)
    }

    pub fn run_dir(&self) -> PathBuf {
        self.node
            .run_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("/run/ha-daemon").join(&self.node.name))
    }

    pub fn bpf_pin_dir(&self) -> PathBuf {
        self.node
            .bpf_pin_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("/sys/fs/bpf/ha").join(&self.node.name))
    }

    /// What is allowed but risky, for `check-config` and the start-up log.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if self.quorum.is_none() && self.instances.iter().any(|i| i.redis.is_some()) {
            w.push(
                "no [quorum]: a network partition between the Redis hosts makes both of them masters, and the writes acknowledged on one side are lost when it heals; add a witness (`ha-daemon witness` on a third host) and a [quorum] table (README, \"Partition safety\")".into(),
            );
        }
        w
    }

    fn validate(&self) -> Result<(), Bad> {
        if let Err((key, message)) = validate_node(&self.node) {
            return Err(Bad {
                instance: None,
                key,
                message,
            });
        }
        if let Some(t) = &self.sentinel {
            let bad = |key: &str, message: String| {
                Err(Bad {
                    instance: None,
                    key: format!("sentinel.{key}"),
                    message,
                })
            };
            if t.listen.port() == 0 {
                return bad(
                    "listen",
                    "port 0; valid: 1..=65535 (Sentinel's is 26379)".into(),
                );
            }
            if let Err(e) = t.read_password() {
                return bad("password_file", e);
            }
            if t.peers.len() > 64 {
                return bad("peers", format!("{} endpoints; at most 64", t.peers.len()));
            }
            if !self.instances.iter().any(|i| i.redis.is_some()) {
                return bad(
                    "listen",
                    "no instance has an [instance.redis] table: there is no master to tell clients about".into(),
                );
            }
        }
        if let Some(t) = &self.tickle {
            let bad = |key: &str, message: String| {
                Err(Bad {
                    instance: None,
                    key: format!("tickle.{key}"),
                    message,
                })
            };
            if t.track_interval_ms < 10 || t.track_interval_ms > 10_000 {
                return bad(
                    "track_interval_ms",
                    format!("{}; valid: 10..=10000", t.track_interval_ms),
                );
            }
            if self.quorum.is_some() {
                if !t.peers.is_empty() || t.key_file.is_some() {
                    return bad(
                        if t.peers.is_empty() {
                            "key_file"
                        } else {
                            "peers"
                        },
                        "with [quorum], tickles use its peers, key and port; remove it here".into(),
                    );
                }
            } else if t.enabled {
                if t.peers.is_empty() {
                    return bad(
                        "peers",
                        "empty; list the other Redis nodes (the connection lists go to them), or add [quorum]".into(),
                    );
                }
                match &t.key_file {
                    None => {
                        return bad(
                            "key_file",
                            "missing; the connection lists are signed with a shared key (at least 16 bytes)".into(),
                        );
                    }
                    Some(k) => {
                        if let Err(e) = crate::quorum::wire::Key::read(k) {
                            return bad("key_file", e);
                        }
                    }
                }
                if t.port == 0 {
                    return bad("port", "0; valid: 1..=65535".into());
                }
            }
        }
        if let Some(q) = &self.quorum {
            if let Err((key, message)) = q.validate() {
                return Err(Bad {
                    instance: None,
                    key,
                    message,
                });
            }
            let max = crate::quorum::timing::MAX_PROMISE_NS
                / crate::quorum::timing::PROMISE_INTERVALS
                / 1_000_000;
            for (i, inst) in self.instances.iter().enumerate() {
                if u64::from(inst.advert_interval_ms) > max {
                    return Err(Bad {
                        instance: Some(i),
                        key: "advert_interval_ms".into(),
                        message: format!(
                            "{} with [quorum]: at most {max} (a voter's promise lasts {} intervals and at most 10 s)",
                            inst.advert_interval_ms,
                            crate::quorum::timing::PROMISE_INTERVALS
                        ),
                    });
                }
                if inst.is_ipv6() {
                    return Err(Bad {
                        instance: Some(i),
                        key: "vips".into(),
                        message: "[quorum] covers IPv4 instances: an IPv6 instance's adverts come from a link-local address, which is no voter's address".into(),
                    });
                }
            }
        }
        if self.instances.is_empty() {
            return Err(Bad {
                instance: None,
                key: "instance".into(),
                message: "no [[instance]]: at least one is needed".into(),
            });
        }
        let mut names = HashSet::new();
        let mut vrids = HashSet::new();
        for (i, inst) in self.instances.iter().enumerate() {
            let bad = |key: &str, message: String| {
                Err(Bad {
                    instance: Some(i),
                    key: key.into(),
                    message,
                })
            };
            if inst.name.is_empty() {
                return bad("name", "must not be empty".into());
            }
            if !names.insert(inst.name.clone()) {
                return bad(
                    "name",
                    "used by an earlier instance; names must be unique".into(),
                );
            }
            if inst.interface.is_empty() || inst.interface.len() > 15 {
                return bad(
                    "interface",
                    format!(
                        "{:?} is not an interface name (1-15 characters)",
                        inst.interface
                    ),
                );
            }
            if inst.vrid == 0 {
                return bad("vrid", "0 is reserved; valid: 1..=255".into());
            }
            if inst.priority == 0 {
                return bad(
                    "priority",
                    "0 is reserved for a master that resigns; valid: 1..=255 (255 = address owner)"
                        .into(),
                );
            }
            match inst.version {
                2 => {
                    let ms = inst.advert_interval_ms;
                    if !(1000..=255_000).contains(&ms) || !ms.is_multiple_of(1000) {
                        return bad(
                            "advert_interval_ms",
                            format!(
                                "{ms} is not valid for VRRPv2: whole seconds from 1000 to 255000"
                            ),
                        );
                    }
                }
                3 => {
                    let ms = inst.advert_interval_ms;
                    if !(10..=40_950).contains(&ms) || !ms.is_multiple_of(10) {
                        return bad(
                            "advert_interval_ms",
                            format!(
                                "{ms} is not valid for VRRPv3: 10 to 40950 in steps of 10 (centiseconds)"
                            ),
                        );
                    }
                }
                v => return bad("version", format!("{v}; valid: 2 or 3")),
            }
            if let Some(p) = &inst.auth_pass {
                if inst.version != 2 {
                    return bad(
                        "auth_pass",
                        "authentication exists only in VRRPv2 (version = 2)".into(),
                    );
                }
                if p.is_empty() || p.len() > 8 {
                    return bad(
                        "auth_pass",
                        format!("{} bytes; valid: 1 to 8 bytes", p.len()),
                    );
                }
            }
            if inst.vips.is_empty() && self.sentinel.is_none() {
                return bad(
                    "vips",
                    "at least one virtual address is needed (or a [sentinel] endpoint, where clients find the master by asking)".into(),
                );
            }
            if inst.vips.is_empty() && inst.redis.is_none() {
                return bad(
                    "vips",
                    "empty, and no [instance.redis]: without a VIP the instance exists only to tell clients its Redis master".into(),
                );
            }
            // Without VIPs (discovery through [sentinel]) the family is the
            // unicast peers' (IPv4 when there are none).
            let mut fam = inst
                .vips
                .is_empty()
                .then(|| inst.unicast_peers.first().is_some_and(IpAddr::is_ipv6));
            for v in &inst.vips {
                let vip = match Vip::parse(v) {
                    Ok(v) => v,
                    Err(e) => return bad("vips", e),
                };
                if inst.version == 2 && vip.addr.is_ipv6() {
                    return bad(
                        "vips",
                        format!("{v}: VRRPv2 is IPv4 only; use version = 3 for IPv6"),
                    );
                }
                if *fam.get_or_insert(vip.addr.is_ipv6()) != vip.addr.is_ipv6() {
                    return bad(
                        "vips",
                        "mixes IPv4 and IPv6; use one instance per family (RFC 5798)".into(),
                    );
                }
            }
            if inst.vips.len() > 255 {
                return bad(
                    "vips",
                    "more than 255 addresses do not fit in an advert".into(),
                );
            }
            for p in &inst.unicast_peers {
                if Some(p.is_ipv6()) != fam {
                    return bad(
                        "unicast_peers",
                        format!("{p} is not of the VIPs' address family"),
                    );
                }
            }
            if !vrids.insert((inst.interface.clone(), inst.vrid, fam)) {
                return bad(
                    "vrid",
                    format!(
                        "{} is already used on interface {} by another instance of the same family; VRIDs must be unique per interface",
                        inst.vrid, inst.interface
                    ),
                );
            }
            if let Some(r) = &inst.redis {
                if r.local().is_none() {
                    return bad(
                        "redis.address",
                        format!(
                            "{:?} is not host:port (valid: \"127.0.0.1:6379\")",
                            r.address
                        ),
                    );
                }
                if r.check_interval_ms < 10 {
                    return bad(
                        "redis.check_interval_ms",
                        format!("{}; valid: 10 or more", r.check_interval_ms),
                    );
                }
                if let Err(e) = r.read_password() {
                    return bad("redis.password_file", e);
                }
                if let Err(e) = r.tls() {
                    let key = match (&r.tls_ca_file, e.split_whitespace().next()) {
                        (Some(_), Some(k @ ("tls_cert_file" | "tls_key_file"))) => k,
                        (Some(_), _) => "tls_ca_file",
                        (None, _) => "tls_cert_file",
                    };
                    return bad(&format!("redis.{key}"), e);
                }
            }
            for prog in inst.notify.programs() {
                if !prog.is_file() {
                    return bad(
                        "notify",
                        format!(
                            "{} is not a file (valid: the path of an executable)",
                            prog.display()
                        ),
                    );
                }
            }
            if inst.garp_interval_ms == 0 && inst.garp_repeat > 1 {
                return bad(
                    "garp_interval_ms",
                    "must be > 0 when garp_repeat > 1".into(),
                );
            }
            if inst.flap_hold_max_ms > MAX_FLAP_HOLD_MS {
                return bad(
                    "flap_hold_max_ms",
                    format!(
                        "{}; valid: 0 (off) ..={MAX_FLAP_HOLD_MS}",
                        inst.flap_hold_max_ms
                    ),
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Config, String> {
        Config::parse(s, Path::new("ha.toml")).map_err(|e| e.to_string())
    }

    const GOOD: &str = r#"
[node]
name = "h1"

[[instance]]
name = "redis-main"
interface = "eth0"
vrid = 51
advert_interval_ms = 10
vips = ["10.0.0.100/24"]
"#;

    #[test]
    fn defaults_are_filled_and_paths_derive_from_the_node_name() {
        let c = parse(GOOD).unwrap();
        let i = &c.instances[0];
        assert_eq!(
            (i.version, i.priority, i.preempt, i.garp_repeat),
            (3, 100, true, 3)
        );
        assert_eq!(c.run_dir(), PathBuf::from("/run/ha-daemon/h1"));
        assert_eq!(c.bpf_pin_dir(), PathBuf::from("/sys/fs/bpf/ha/h1"));
        assert_eq!(
            i.vip_list(),
            vec![Vip {
                addr: "10.0.0.100".parse().unwrap(),
                prefix: 24
            }]
        );
    }

    #[test]
    fn each_defect_is_named_with_its_key() {
        let cases = [
            (
                GOOD.replace("vrid = 51", "vrid = 51\nvridd = 3"),
                "unknown field `vridd`",
            ),
            (
                GOOD.replace("advert_interval_ms = 10", "advert_interval_ms = 15"),
                "advert_interval_ms: 15 is not valid for VRRPv3",
            ),
            (
                GOOD.replace(
                    "advert_interval_ms = 10",
                    "advert_interval_ms = 10\nversion = 2",
                ),
                "whole seconds",
            ),
            (GOOD.replace("vrid = 51", "vrid = 0"), "vrid: 0 is reserved"),
            (GOOD.replace("vrid = 51", "vrid = 300"), "vrid"),
            (
                GOOD.replace("10.0.0.100/24", "10.0.0.300/24"),
                "is not an IP address",
            ),
            (
                GOOD.replace("10.0.0.100/24", "10.0.0.100/33"),
                "prefix length must be 0..=32",
            ),
            (
                GOOD.replace(
                    "vips = [\"10.0.0.100/24\"]",
                    "vips = [\"10.0.0.100/24\", \"fd00::1/64\"]",
                ),
                "mixes IPv4 and IPv6",
            ),
            (
                GOOD.replace("advert_interval_ms = 10", "auth_pass = \"x\""),
                "only in VRRPv2",
            ),
            (GOOD.replace("name = \"h1\"", "name = \"a/b\""), "node.name"),
            (
                format!(
                    "{GOOD}\n{}",
                    &GOOD[GOOD.find("[[instance]]").unwrap()..].replace("redis-main", "other")
                ),
                "already used on interface eth0",
            ),
        ];
        for (text, want) in cases {
            let err = parse(&text).expect_err(want);
            assert!(err.contains(want), "error {err:?} should contain {want:?}");
            assert!(err.starts_with("ha.toml"), "error names the file: {err:?}");
        }
    }

    /// The exact messages an operator sees: file, line, instance and key,
    /// what is wrong, what would be valid.
    #[test]
    fn errors_name_file_line_and_key() {
        let cases = [
            (
                GOOD.replace("advert_interval_ms = 10", "advert_interval_ms = 15"),
                "ha.toml:9: [[instance]] \"redis-main\" advert_interval_ms: 15 is not valid for VRRPv3: 10 to 40950 in steps of 10 (centiseconds)",
            ),
            (
                GOOD.replace(
                    "advert_interval_ms = 10",
                    "version = 2\nadvert_interval_ms = 1500",
                ),
                "ha.toml:10: [[instance]] \"redis-main\" advert_interval_ms: 1500 is not valid for VRRPv2: whole seconds from 1000 to 255000",
            ),
            (
                GOOD.replace(
                    "advert_interval_ms = 10",
                    "version = 2\nadvert_interval_ms = 1000\nauth_pass = \"123456789\"",
                ),
                "ha.toml:11: [[instance]] \"redis-main\" auth_pass: 9 bytes; valid: 1 to 8 bytes",
            ),
            (
                format!(
                    "{GOOD}\n{}",
                    &GOOD[GOOD.find("[[instance]]").unwrap()..].replace("redis-main", "other")
                ),
                "ha.toml:15: [[instance]] \"other\" vrid: 51 is already used on interface eth0 by another instance of the same family; VRIDs must be unique per interface",
            ),
            (
                format!("{GOOD}[instance.redis]\npassword_file = \"/nonexistent/redis.pass\"\n"),
                "ha.toml:12: [[instance]] \"redis-main\" redis.password_file: password_file /nonexistent/redis.pass: No such file or directory (os error 2)",
            ),
            (
                format!("{GOOD}[instance.redis]\ntls_ca_file = \"/nonexistent/ca.crt\"\n"),
                "ha.toml:12: [[instance]] \"redis-main\" redis.tls_ca_file: tls_ca_file /nonexistent/ca.crt: No such file or directory (os error 2)",
            ),
            (
                format!("{GOOD}[instance.redis]\ntls_cert_file = \"/etc/c.crt\"\n"),
                "ha.toml:12: [[instance]] \"redis-main\" redis.tls_cert_file: tls_cert_file / tls_key_file need tls_ca_file (the CA that signed the Redis certificates)",
            ),
            (
                GOOD.replace("name = \"h1\"", "name = \"a/b\""),
                "ha.toml:3: node.name: \"a/b\": must be 1-32 characters of letters, digits, '-' or '_' (it names paths)",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(parse(&text).expect_err(want), want);
        }
        // Unknown keys and syntax: the parser's own message with line and column.
        let e = parse(&GOOD.replace("vrid = 51", "vrid = 51\nvridd = 3")).unwrap_err();
        assert!(
            e.starts_with("ha.toml: TOML parse error at line 9, column 1")
                && e.contains("unknown field `vridd`, expected one of"),
            "{e}"
        );
    }

    #[test]
    fn v2_password_longer_than_8_bytes_is_rejected() {
        let t = GOOD.replace(
            "advert_interval_ms = 10",
            "advert_interval_ms = 1000\nversion = 2\nauth_pass = \"123456789\"",
        );
        assert!(
            parse(&t)
                .unwrap_err()
                .contains("auth_pass: 9 bytes; valid: 1 to 8 bytes")
        );
    }

    #[test]
    fn the_password_is_masked_when_printed() {
        let t = GOOD.replace(
            "advert_interval_ms = 10",
            "advert_interval_ms = 1000\nversion = 2\nauth_pass = \"s3cret\"",
        );
        let c = parse(&t).unwrap();
        let shown = toml::to_string(&c).unwrap();
        assert!(!shown.contains("s3cret") && shown.contains("********"));
    }

    /// A key file for the quorum tests (removed with the dir).
    fn key_file(dir: &Path, bytes: usize) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join(format!("key{bytes}"));
        std::fs::write(&p, "k".repeat(bytes)).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        p
    }

    fn test_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ha-config-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn quorum_defects_are_named_and_say_what_is_valid() {
        let dir = test_dir("quorum");
        let key = key_file(&dir, 32);
        let with = |q: &str| format!("{GOOD}\n[quorum]\n{q}\n");
        let k = format!("key_file = {:?}", key.display().to_string());
        let cases = [
            (
                with(&format!("peers = [\"10.0.0.2\"]\n{k}")),
                "a majority of two is both",
            ),
            (with(&format!("peers = []\n{k}")), "list every other voter"),
            (
                with(&format!("peers = [\"10.0.0.2\", \"10.0.0.2\"]\n{k}")),
                "listed twice",
            ),
            (
                with(&format!("peers = [\"127.0.0.1\", \"10.0.0.9\"]\n{k}")),
                "is not a voter's address",
            ),
            (
                with(&format!(
                    "peers = [\"10.0.0.2\", \"10.0.0.9\"]\n{k}\nport = 0"
                )),
                "quorum.port: 0; valid: 1..=65535",
            ),
            (
                with(&format!(
                    "peers = [\"10.0.0.2\", \"10.0.0.9\"]\n{k}\nmax_drift_ppm = 900000"
                )),
                "max_drift_ppm: 900000; valid",
            ),
            (
                with(&format!(
                    "peers = [\"10.0.0.2\", \"10.0.0.9\"]\nkey_file = {:?}",
                    key_file(&dir, 4).display().to_string()
                )),
                "quorum.key_file",
            ),
            (
                with(
                    "peers = [\"10.0.0.2\", \"10.0.0.9\"]\nkey_file = \"/nonexistent/quorum.key\"",
                ),
                "quorum.key_file",
            ),
            (
                with(&format!(
                    "peers = [\"10.0.0.2\", \"10.0.0.9\"]\n{k}\n[tickle]\npeers = [\"10.0.0.2\"]"
                )),
                "tickles use its peers",
            ),
        ];
        for (text, want) in cases {
            let e = parse(&text).expect_err(want);
            assert!(e.contains(want), "{want:?} not in {e:?}");
        }
        let ok = parse(&with(&format!("peers = [\"10.0.0.2\", \"10.0.0.9\"]\n{k}"))).unwrap();
        let q = ok.quorum.as_ref().unwrap();
        assert_eq!((q.port, q.voters()), (DEFAULT_QUORUM_PORT, 3));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn without_a_quorum_a_redis_set_up_is_warned_about_partitions() {
        let redis = format!("{GOOD}\n[instance.redis]\naddress = \"127.0.0.1:6379\"\n");
        let w = parse(&redis).unwrap().warnings();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("partition") && w[0].contains("witness"),
            "{w:?}"
        );
        // VRRP alone has no Redis data to lose.
        assert!(parse(GOOD).unwrap().warnings().is_empty());
    }

    #[test]
    fn tickle_needs_its_peers_and_key_without_a_quorum() {
        let dir = test_dir("tickle");
        let key = key_file(&dir, 32);
        let t = |body: &str| format!("{GOOD}\n[tickle]\n{body}\n");
        let e = parse(&t("")).unwrap_err();
        assert!(
            e.contains("tickle.peers") && e.contains("list the other Redis nodes"),
            "{e}"
        );
        let e = parse(&t("peers = [\"10.0.0.2\"]")).unwrap_err();
        assert!(e.contains("tickle.key_file: missing"), "{e}");
        let e = parse(&t(&format!(
            "peers = [\"10.0.0.2\"]\nkey_file = {:?}\ntrack_interval_ms = 1",
            key.display().to_string()
        )))
        .unwrap_err();
        assert!(e.contains("track_interval_ms: 1; valid: 10..=10000"), "{e}");
        let ok = parse(&t(&format!(
            "peers = [\"10.0.0.2\"]\nkey_file = {:?}",
            key.display().to_string()
        )))
        .unwrap();
        let ch = ok.tickle_channel().unwrap();
        assert!(!ch.shared && ch.peers.len() == 1);
        // Switched off: nothing else needed.
        assert!(
            parse(&t("enabled = false"))
                .unwrap()
                .tickle_channel()
                .is_none()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_witness_file_has_node_and_quorum_only() {
        let dir = test_dir("witness");
        let key = key_file(&dir, 32);
        let base = format!(
            "[node]\nname = \"w\"\n[quorum]\npeers = [\"10.0.0.1\", \"10.0.0.2\"]\nkey_file = {:?}\n",
            key.display().to_string()
        );
        let w = WitnessConfig::parse(&base, Path::new("witness.toml")).unwrap();
        assert_eq!(w.run_dir(), PathBuf::from("/run/ha-daemon/w"));
        let e = WitnessConfig::parse(
            &format!("{base}[[instance]]\nname = \"x\"\n"),
            Path::new("witness.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("unknown field `instance`"), "{e}");
        let e = WitnessConfig::parse(
            &base.replace("\"10.0.0.1\", ", ""),
            Path::new("witness.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("witness.toml") && e.contains("majority of two"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn vips_may_be_empty_only_where_clients_find_the_master_through_sentinel() {
        let none = GOOD.replace("vips = [\"10.0.0.100/24\"]", "vips = []")
            + "[instance.redis]\naddress = \"127.0.0.1:6379\"\n";
        let e = parse(&none).unwrap_err();
        assert!(
            e.contains("vips") && e.contains("[sentinel]"),
            "the error names the key and the way out: {e}"
        );
        let c = parse(&format!("{none}\n[sentinel]\nlisten = \"0.0.0.0:26379\"\n")).unwrap();
        assert!(c.instances[0].vip_list().is_empty());
        assert!(!c.instances[0].is_ipv6());
        let v6 = none.replace("vips = []", "vips = []\nunicast_peers = [\"fd00::2\"]");
        let c = parse(&format!("{v6}\n[sentinel]\nlisten = \"[::]:26379\"\n")).unwrap();
        assert!(c.instances[0].is_ipv6(), "the family follows the peers");
    }
}
