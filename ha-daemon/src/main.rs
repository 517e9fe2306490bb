use anyhow::Result;
use clap::{Parser, Subcommand};

/// Fast, safe Redis failover: VRRP, a virtual IP, Redis role reconciliation.
#[derive(Parser)]
#[command(name = "ha-daemon", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the version and how this binary was built (with or without XDP).
    BuildInfo,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::BuildInfo => {
            println!(
                "ha-daemon {}: {}",
                env!("CARGO_PKG_VERSION"),
                ha_daemon::ebpf::object::describe()
            );
        }
    }
    Ok(())
}
