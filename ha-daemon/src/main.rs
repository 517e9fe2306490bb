use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use ha_daemon::{
    config::{Config, DEFAULT_PATH},
    daemon::{self, RunOptions},
    ebpf::object,
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
