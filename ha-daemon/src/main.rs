use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use ha_daemon::{
    config::{Config, DEFAULT_PATH},
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
            if let Some(r) = i["redis"].as_object() {
                let _ = writeln!(
                    o,
                    "  redis: {} offset {}  health {}  master {}  {}",
                    r["role"].as_str().unwrap_or("?"),
                    r["offset"],
                    r["health"].as_str().unwrap_or("?"),
                    r["master"].as_str().unwrap_or("-"),
                    r["guard"]
                        .as_str()
                        .map(|g| format!("GUARD: {g}"))
                        .unwrap_or_default()
                );
                if let Some(a) = r["last_action"].as_str() {
                    let _ = writeln!(o, "  last action: {a}");
                }
            }
            for t in i["transitions"]
                .as_array()
                .into_iter()
                .flatten()
                .rev()
                .take(5)
            {
                let _ = writeln!(
                    o,
                    "  {} -> {}: {}",
                    t["from"].as_str().unwrap_or("?"),
                    t["to"].as_str().unwrap_or("?"),
                    t["reason"].as_str().unwrap_or("?")
                );
            }
        }
    }
    o
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
    },
    /// Validate a config file and print it with defaults filled in, secrets masked.
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
    /// Planned switchover: make this node master (its Redis promoted with the
    /// old master paused and drained first: no acknowledged write lost).
    /// Run it on the node that should become master.
    Switchover {
        #[arg(short, long, default_value = DEFAULT_PATH)]
        config: PathBuf,
        /// The node to switch to; must be this node (the one the config names).
        #[arg(long)]
        to: Option<String>,
        /// Only this instance (default: all).
        #[arg(long)]
        instance: Option<String>,
    },
    /// Print the version and how this binary was built (with or without XDP).
    BuildInfo,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            config,
            no_ebpf,
            log,
        } => {
            tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::try_new(&log).context("--log")?)
                .with_writer(std::io::stderr)
                .init();
            let cfg = Config::load(&config)?;
            tracing::info!(node = %cfg.node.name, "ha-daemon {} starting: {}", env!("CARGO_PKG_VERSION"), object::describe());
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            rt.block_on(daemon::run(cfg, RunOptions { no_ebpf }))
        }
        Command::CheckConfig { config } => match Config::load(&config) {
            Ok(cfg) => {
                print!("{}", toml::to_string_pretty(&cfg)?);
                eprintln!("{}: OK", config.display());
                Ok(())
            }
            Err(e) => {
                eprintln!("error: {e}");
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
            let cfg = Config::load(&config)?;
            let sock = daemon::Paths::of(&cfg).socket;
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
            if let Some(t) = to
                && t != cfg.node.name
            {
                anyhow::bail!(
                    "switchover makes the local node master: run it on {t}'s host (this config is node {:?})",
                    cfg.node.name
                );
            }
            let sock = daemon::Paths::of(&cfg).socket;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let reply = rt.block_on(control::request(
                &sock,
                &control::Request::Switchover { instance },
            ))?;
            let results: Vec<control::SwitchoverResult> = serde_json::from_str(&reply)?;
            let mut failed = false;
            for r in &results {
                let pause = r
                    .pause_ms
                    .map(|p| format!(", write pause {p} ms"))
                    .unwrap_or_default();
                println!(
                    "{}: {} — {}{pause}",
                    r.instance,
                    if r.ok {
                        "switched over"
                    } else {
                        "NOT switched over"
                    },
                    r.message
                );
                failed |= !r.ok;
            }
            if failed {
                std::process::exit(1);
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
