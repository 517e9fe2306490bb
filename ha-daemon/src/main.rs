use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use ha_daemon::{
    config::{Config, DEFAULT_PATH, WitnessConfig},
    control,
    daemon::{self, RunOptions},
    ebpf::object,
    inspect,
};

/// `status` for a person.
fn render_status(v: &serde_json::Value) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "node {}  pid {}  eBPF: {}",
        v["node"].as_str().unwrap_or("?"),
        v["pid"],
        v["ebpf"].as_str().unwrap_or("?")
    );
    if let Some(insts) = v["instances"].as_object() {
        for (name, i) in insts {
            let _ = writeln!(
                o,
                "instance {name}: {} on {} vrid {} (v{})  priority {} (configured {})  VIPs {}  master {}",
                i["state"].as_str().unwrap_or("?"),
                i["interface"].as_str().unwrap_or("?"),
                i["vrid"],
                i["version"],
                i["effective_priority"],
                i["priority"],
                i["vips"]
                    .as_array()
                    .map(|a| a
                        .iter()
                        .filter_map(|x| x.as_str())
                        .collect::<Vec<_>>()
                        .join(" "))
                    .unwrap_or_default(),
                i["master"].as_str().unwrap_or("-"),
            );
            if let Some(ms) = i["last_failover_ms"].as_u64() {
                let _ = writeln!(
                    o,
                    "  last takeover: {ms} ms after the old master's last advert"
                );
            }
            if let Some(r) = i["redis"].as_object() {
                let lag = match (r["lag_bytes"].as_u64(), r["streaming"].as_bool()) {
                    (Some(l), Some(true)) => format!("  lag {l} B"),
                    (Some(l), _) => format!("  lag {l} B (stream not flowing yet)"),
                    _ => String::new(),
                };
                let _ = writeln!(
                    o,
                    "  redis: {} offset {}{lag}  health {}  master {}  {}",
                    r["role"].as_str().unwrap_or("not answering"),
                    r["offset"],
                    r["health"].as_str().unwrap_or("?"),
                    r["master"].as_str().unwrap_or("-"),
                    r["guard"]
                        .as_str()
                        .map(|g| format!("GUARD: {g}"))
                        .unwrap_or_default()
                );
                if let Some(d) = r.get("detached").and_then(|d| d.as_str()) {
                    let _ = writeln!(o, "  DETACHED (replicates from no one): {d}");
                }
                if let Some(a) = r["last_action"].as_str() {
                    let _ = writeln!(o, "  last action: {a}");
                }
            }
            if let Some(l) = i["lease"].as_object() {
                let now = v["quorum"]["now_ns"].as_u64().unwrap_or(0);
                let holder = l["holder"].as_str().unwrap_or("nobody");
                if l["held"] == true {
                    let left = l["until_ns"].as_u64().unwrap_or(0).saturating_sub(now);
                    let _ = writeln!(
                        o,
                        "  lease: HELD, term {}, {:.1} ms left (kernel fence deadline), granted by {}",
                        l["term"],
                        left as f64 / 1e6,
                        l["granted_by"]
                            .as_array()
                            .map(|a| a
                                .iter()
                                .filter_map(|x| x.as_str())
                                .collect::<Vec<_>>()
                                .join(", "))
                            .unwrap_or_default()
                    );
                } else {
                    let _ = writeln!(
                        o,
                        "  lease: not held{}; newest term {} held by {holder}",
                        if l["wanted"] == true { " (asking)" } else { "" },
                        l["term"]
                    );
                }
                let _ = writeln!(
                    o,
                    "  lease timing: {:.1} ms lease, {:.1} ms promise, renewed every {:.1} ms; acquired {} lost {} released {}; last: {}",
                    l["lease_ms"].as_f64().unwrap_or(0.0),
                    l["promise_ms"].as_f64().unwrap_or(0.0),
                    l["renew_ms"].as_f64().unwrap_or(0.0),
                    l["acquired"],
                    l["lost"],
                    l["released"],
                    l["last_event"].as_str().unwrap_or("-")
                );
                if let Some(st) = l.get("stale").and_then(|x| {
                    serde_json::from_value::<ha_daemon::status::StaleStatus>(x.clone()).ok()
                }) {
                    let _ = writeln!(
                        o,
                        "  NO TAKEOVER: voter {} refuses this node as stale: the local Redis is {} (max_staleness_ms {}); waiting for the old master ({holder}) to return — `ha-daemon promote --accept-loss` takes over anyway",
                        st.voter,
                        st.describe(),
                        l["max_staleness_ms"]
                    );
                }
                if l["accept_loss"] == true {
                    let _ = writeln!(
                        o,
                        "  an operator accepted the loss: the next takeover is not refused for staleness"
                    );
                }
            }
            for t in i["transitions"]
                .as_array()
                .into_iter()
                .flatten()
                .rev()
                .take(5)
            {
                let ago = t["at_ms"]
                    .as_u64()
                    .map(|at| {
                        let now = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .unwrap_or_default()
                            .as_millis() as u64;
                        format!("{:.1} s ago: ", now.saturating_sub(at) as f64 / 1000.0)
                    })
                    .unwrap_or_default();
                let _ = writeln!(
                    o,
                    "  {ago}{} -> {}: {}",
                    t["from"].as_str().unwrap_or("?"),
                    t["to"].as_str().unwrap_or("?"),
                    t["why"].as_str().unwrap_or("?")
                );
            }
        }
    }
    if let Some(q) = v["quorum"].as_object() {
        let now = q["now_ns"].as_u64().unwrap_or(0);
        let ago = |ns: u64| {
            if ns == 0 {
                "never heard".to_owned()
            } else {
                format!("heard {:.0} ms ago", now.saturating_sub(ns) as f64 / 1e6)
            }
        };
        let _ = writeln!(
            o,
            "quorum: {} of {} voters (majority {}), UDP port {}, drift bound {} ppm",
            q["role"].as_str().unwrap_or("?"),
            q["voters"],
            q["majority"],
            q["port"],
            q["drift_ppm"]
        );
        for p in q["peers"].as_array().into_iter().flatten() {
            let _ = writeln!(
                o,
                "  peer {}: {}",
                p["addr"].as_str().unwrap_or("?"),
                ago(p["heard_ns"].as_u64().unwrap_or(0))
            );
        }
        let quiet = q["quiet_until_ns"].as_u64().unwrap_or(0);
        if quiet > now {
            let _ = writeln!(
                o,
                "  QUIET for {:.1} s more: restarted, grants nothing until every promise it may have made has run out",
                (quiet - now) as f64 / 1e9
            );
        }
        if let Some(r) = q["rejected"].as_object().filter(|r| !r.is_empty()) {
            let _ = writeln!(
                o,
                "  rejected datagrams: {}",
                r.iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        for (name, vote) in q["votes"].as_object().into_iter().flatten() {
            let promise = match vote["promised_to"].as_str() {
                Some(h) => format!(
                    "promised to {h} (term {}) for {:.1} ms more",
                    vote["promise_term"],
                    vote["promise_until_ns"]
                        .as_u64()
                        .unwrap_or(0)
                        .saturating_sub(now) as f64
                        / 1e6
                ),
                None => "no promise running".into(),
            };
            let _ = writeln!(
                o,
                "  vote {name}: {promise}; newest term {} to {}; granted {}, refused {}",
                vote["newest_term"],
                vote["newest_holder"].as_str().unwrap_or("-"),
                vote["granted"],
                vote["refused"]
            );
        }
    }
    o
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Fast, safe Redis failover: VRRP, a virtual IP, Redis role reconciliation.
#[derive(Parser)]
#[command(name = "ha-daemon", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon in the foreground (logs to stderr).
    Run {
        #[arg(short, long, default_value = DEFAULT_PATH)]
        config: PathBuf,
        /// Do not load the XDP program; time adverts from the socket only.
        #[arg(long)]
        no_ebpf: bool,
        /// Log level filter (tracing syntax), e.g. "info" or "ha_daemon=debug".
        #[arg(long, default_value = "info")]
        log: String,
        /// "text" for people, "json" (one object per line) for log collectors.
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// Run a witness: a quorum voter for a third host (no Redis, no VIP).
    /// FILE has `[node]` and `[quorum]` only.
    Witness {
        #[arg(short, long, default_value = DEFAULT_WITNESS_PATH)]
        config: PathBuf,
        #[arg(long, default_value = "info")]
        log: String,
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// Validate a config file (a daemon's or a witness's) and print it with
    /// defaults filled in, secrets masked.
    CheckConfig {
        #[arg(short, long, default_value = DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Show what the XDP program recorded (adverts, drops, Redis FIN/RST), from
    /// the pinned maps; works while the daemon runs and after it stopped.
    Inspect {
        #[arg(short, long, default_value = DEFAULT_PATH, conflicts_with = "pin_dir")]
        config: PathBuf,
        /// Read the maps pinned here instead of the config's bpf_pin_dir.
        #[arg(long)]
        pin_dir: Option<PathBuf>,
        #[arg(long)]
        json: bool,
        /// Refresh every second.
        #[arg(long)]
        watch: bool,
    },
    /// Show the running daemon's state: per instance state, priorities, VIPs,
    /// master, Redis role and offset, last transitions, eBPF mode.
    Status {
        #[arg(short, long, default_value = DEFAULT_PATH)]
        config: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Planned switchover with no acknowledged write lost (the old master's
    /// Redis paused and drained before the new one is promoted). On a backup:
    /// it becomes master. On the master: it hands over to its best backup.
    Switchover {
        #[arg(short, long, default_value = DEFAULT_PATH)]
        config: PathBuf,
        /// The node that should be master: this node (run on a backup), or
        /// another one (run on the master, which hands over; with several
        /// backups the one with the highest priority takes over).
        #[arg(long)]
        to: Option<String>,
        /// Only this instance (default: all).
        #[arg(long)]
        instance: Option<String>,
    },
    /// Take over although the voters refuse this node's Redis as stale
    /// (with `[quorum]`, a node whose Redis lacks more than
    /// `max_staleness_ms` of the last master's writes waits for that master
    /// to come back). Prints what is given up.
    Promote {
        #[arg(short, long, default_value = DEFAULT_PATH)]
        config: PathBuf,
        /// Accept losing the writes the last master acknowledged that this
        /// node's Redis lacks (required: say it).
        #[arg(long)]
        accept_loss: bool,
        /// Only this instance (default: all that wait to take over).
        #[arg(long)]
        instance: Option<String>,
    },
    /// Convert a keepalived.conf into an ha-daemon config; lists every line
    /// it could not convert (on stderr, and as comments in the output).
    ImportKeepalived {
        /// The keepalived.conf to read.
        file: PathBuf,
        /// Write the config here (default: stdout). An existing file is not overwritten.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// The node name (default: global_defs router_id).
        #[arg(long)]
        node: Option<String>,
    },
    /// Print the version and how this binary was built (with or without XDP).
    BuildInfo,
    /// Write the manual pages (ha-daemon(8), one per subcommand) and shell
    /// completions (bash, zsh, fish) into DIR, generated from these command
    /// definitions; for packaging.
    Generate {
        /// Where to write them (created if missing).
        dir: PathBuf,
    },
}

/// Man pages in section 8 (system administration), one per subcommand as
/// `git` has, and completions for the shells Debian ships.
fn generate(dir: &std::path::Path) -> Result<()> {
    use clap::CommandFactory;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut pages = vec![cmd.clone()];
    pages.extend(cmd.get_subcommands().filter(|c| !c.is_hide_set()).cloned());
    for page in pages {
        let path = clap_mangen::Man::new(page)
            .section("8")
            .manual("ha-daemon")
            .generate_to(dir)
            .with_context(|| format!("writing a man page into {}", dir.display()))?;
        println!("{}", path.display());
    }
    let conf = ha_daemon::manpage::config_page(
        include_str!("../../README.md"),
        include_str!("../../config/ha.toml"),
        include_str!("../../config/witness.toml"),
        env!("CARGO_PKG_VERSION"),
    )
    .map_err(anyhow::Error::msg)?;
    let path = dir.join("ha-daemon.toml.5");
    std::fs::write(&path, conf).with_context(|| format!("writing {}", path.display()))?;
    println!("{}", path.display());
    for shell in [
        clap_complete::Shell::Bash,
        clap_complete::Shell::Zsh,
        clap_complete::Shell::Fish,
    ] {
        let path = clap_complete::generate_to(shell, &mut cmd, "ha-daemon", dir)
            .with_context(|| format!("writing {shell} completions into {}", dir.display()))?;
        println!("{}", path.display());
    }
    Ok(())
}

const DEFAULT_WITNESS_PATH: &str = "/etc/ha-daemon/witness.toml";

fn init_logs(log: &str, format: LogFormat) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(log).context("--log")?;
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => fmt.init(),
        LogFormat::Json => fmt.json().flatten_event(true).init(),
    }
    Ok(())
}

/// A daemon's config or a witness's: a file with `[quorum]` and no
/// `[[instance]]` is a witness's.
enum AnyConfig {
    Daemon(Box<Config>),
    Witness(Box<WitnessConfig>),
}

impl AnyConfig {
    fn load(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        let witness = toml::from_str::<toml::Table>(&text)
            .is_ok_and(|t| t.contains_key("quorum") && !t.contains_key("instance"));
        Ok(if witness {
            AnyConfig::Witness(Box::new(WitnessConfig::parse(&text, path)?))
        } else {
            AnyConfig::Daemon(Box::new(Config::parse(&text, path)?))
        })
    }
    fn socket(&self) -> PathBuf {
        match self {
            AnyConfig::Daemon(c) => daemon::Paths::of(c).socket,
            AnyConfig::Witness(w) => w.run_dir().join("ha-daemon.sock"),
        }
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Witness {
            config,
            log,
            log_format,
        } => {
            init_logs(&log, log_format)?;
            let cfg = WitnessConfig::load(&config)?;
            tracing::info!(node = %cfg.node.name, "ha-daemon {} witness starting", env!("CARGO_PKG_VERSION"));
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(ha_daemon::quorum::witness::run(cfg))
        }
        Command::Run {
            config,
            no_ebpf,
            log,
            log_format,
        } => {
            init_logs(&log, log_format)?;
            let cfg = Config::load(&config)?;
            tracing::info!(node = %cfg.node.name, "ha-daemon {} starting: {}", env!("CARGO_PKG_VERSION"), object::describe());
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            rt.block_on(daemon::run_with(cfg, Some(config), RunOptions { no_ebpf }))
        }
        Command::CheckConfig { config } => match AnyConfig::load(&config) {
            Ok(AnyConfig::Daemon(cfg)) => {
                print!("{}", toml::to_string_pretty(&cfg)?);
                for w in cfg.warnings() {
                    eprintln!("warning: {w}");
                }
                eprintln!("{}: OK", config.display());
                Ok(())
            }
            Ok(AnyConfig::Witness(cfg)) => {
                print!("{}", toml::to_string_pretty(&cfg)?);
                eprintln!("{}: OK (a witness)", config.display());
                Ok(())
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                std::process::exit(1);
            }
        },
        Command::Inspect {
            config,
            pin_dir,
            json,
            watch,
        } => {
            // With a config, also say how the daemon runs its eBPF side.
            let (dir, status_file) = match pin_dir {
                Some(d) => (d, None),
                None => {
                    let cfg = Config::load(&config)?;
                    (cfg.bpf_pin_dir(), Some(daemon::Paths::of(&cfg).status_file))
                }
            };
            if let Some(mode) = status_file
                .and_then(|f| std::fs::read_to_string(f).ok())
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                .and_then(|v| v["ebpf"].as_str().map(str::to_owned))
                && !json
            {
                println!("daemon eBPF: {mode}");
            }
            loop {
                let r = match inspect::report(&dir) {
                    Ok(r) => r,
                    Err(e) => {
                        let hint = if unsafe { libc::geteuid() } != 0 {
                            " (reading pinned maps needs root or CAP_BPF)"
                        } else {
                            ""
                        };
                        eprintln!("error: {e}{hint}");
                        std::process::exit(1);
                    }
                };
                if json {
                    println!("{}", serde_json::to_string_pretty(&r)?);
                } else {
                    if watch {
                        print!("\x1b[2J\x1b[H");
                    }
                    print!("{}", inspect::render(&r));
                }
                if !watch {
                    return Ok(());
                }
                std::thread::sleep(inspect::WATCH_PERIOD);
            }
        }
        Command::Status { config, json } => {
            let sock = AnyConfig::load(&config)?.socket();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let reply = rt.block_on(control::request(&sock, &control::Request::Status))?;
            if json {
                print!("{reply}");
            } else {
                print!("{}", render_status(&serde_json::from_str(&reply)?));
            }
            Ok(())
        }
        Command::Switchover {
            config,
            to,
            instance,
        } => {
            let cfg = Config::load(&config)?;
            let direction = match &to {
                None => control::Direction::Either,
                Some(t) if *t == cfg.node.name => control::Direction::Here,
                Some(_) => control::Direction::Away,
            };
            let sock = daemon::Paths::of(&cfg).socket;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let reply = rt.block_on(control::request(
                &sock,
                &control::Request::Switchover {
                    instance,
                    direction,
                },
            ))?;
            let results: Vec<control::SwitchoverResult> = serde_json::from_str(&reply)?;
            let mut failed = false;
            for r in &results {
                let pause = r
                    .pause_ms
                    .map(|p| format!(", write pause {p} ms"))
                    .unwrap_or_default();
                if r.ok {
                    println!("{}: switched over — {}{pause}", r.instance, r.message);
                } else {
                    eprintln!("{}: NOT switched over — {}", r.instance, r.message);
                }
                failed |= !r.ok;
            }
            if failed {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Promote {
            config,
            accept_loss,
            instance,
        } => {
            anyhow::ensure!(
                accept_loss,
                "promote takes over with fewer writes than the last master acknowledged; say --accept-loss to accept losing them (for a move without loss: `ha-daemon switchover`)"
            );
            let cfg = Config::load(&config)?;
            let sock = daemon::Paths::of(&cfg).socket;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let reply = rt.block_on(control::request(
                &sock,
                &control::Request::Promote { instance },
            ))?;
            let results: Vec<control::PromoteResult> = serde_json::from_str(&reply)?;
            let mut failed = false;
            for r in &results {
                let lost = match &r.accepted {
                    Some(s) => match (s.behind_ms, s.behind_bytes) {
                        (Some(ms), Some(b)) => format!(
                            "the writes the last master acknowledged in its final {ms:.0} ms ({b} replication bytes, voter {}) are lost",
                            s.voter
                        ),
                        (None, Some(b)) => format!(
                            "the last master's writes past this node's data ({b} replication bytes, some older than voter {} knows) are lost",
                            s.voter
                        ),
                        _ => format!(
                            "this node's replication offset was unknown to voter {}: how much is lost is unknown",
                            s.voter
                        ),
                    },
                    None => "no voter had refused it as stale: nothing known to be lost".into(),
                };
                if r.ok {
                    println!("{}: promoted — {lost}", r.instance);
                } else {
                    eprintln!("{}: NOT promoted — {}", r.instance, r.message);
                }
                failed |= !r.ok;
            }
            if failed {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Generate { dir } => generate(&dir),
        Command::ImportKeepalived { file, output, node } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let imp = ha_daemon::import::convert(&text, node.as_deref())
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            for (l, t, why) in &imp.skipped {
                eprintln!("{}:{l}: not converted: {t}: {why}", file.display());
            }
            let toml = imp.to_toml(&file.display().to_string());
            match output {
                Some(o) => {
                    use std::io::Write;
                    use std::os::unix::fs::OpenOptionsExt;
                    // It may hold the VRRP password: owner only.
                    let mut f = std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o600)
                        .open(&o)
                        .with_context(|| {
                            format!("creating {} (it must not exist yet)", o.display())
                        })?;
                    f.write_all(toml.as_bytes())?;
                    eprintln!(
                        "wrote {}: {} instance(s), {} statement(s) not converted; check it with `ha-daemon check-config -c {}`",
                        o.display(),
                        imp.config.instances.len(),
                        imp.skipped.len(),
                        o.display()
                    );
                }
                None => print!("{toml}"),
            }
            Ok(())
        }
        Command::BuildInfo => {
            println!(
                "ha-daemon {}: {}",
                env!("CARGO_PKG_VERSION"),
                object::describe()
            );
            Ok(())
        }
    }
}
