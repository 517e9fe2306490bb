use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use ha_daemon::{
    config::{Config, DEFAULT_PATH},
    daemon::{self, RunOptions},
    ebpf::object,
    inspect,
};

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
