//! `cargo xtask chaos`: the fault campaign of `ha_testbed::chaos` on a
//! fresh cluster; exit 0 only when no acknowledged write was lost beyond
//! the bound and no two Redis acknowledged writes at once.
use std::time::Duration;

use anyhow::{Context, Result, bail};
use ha_testbed::{Switch, chaos};

fn main() -> Result<()> {
    let mut o = chaos::Options {
        minutes: 1.0,
        seed: 7,
        hosts: 2,
        switch: Switch::Nic,
        plant: None,
        verbose: true,
    };
    let mut json = None;
    let mut schedule_only = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--minutes" => o.minutes = val()?.parse().context("--minutes")?,
            "--seed" => o.seed = val()?.parse().context("--seed")?,
            "--hosts" => o.hosts = val()?.parse().context("--hosts")?,
            "--switch" => {
                o.switch = match val()?.as_str() {
                    "nic" => Switch::Nic,
                    "veth" => Switch::Veth,
                    s => bail!("--switch {s}: nic or veth"),
                }
            }
            "--plant" => o.plant = Some(val()?),
            "--json" => json = Some(val()?),
            "--schedule" => schedule_only = true,
            "--quiet" => o.verbose = false,
            _ => bail!(
                "unknown argument {a}; usage: chaos [--minutes N] [--seed S] [--hosts 2|3] [--switch nic|veth] [--plant no-staleness] [--json FILE] [--schedule] [--quiet]"
            ),
        }
    }
    if !(2..=3).contains(&o.hosts) {
        bail!("--hosts {}: 2 (with a witness) or 3", o.hosts);
    }
    if schedule_only {
        for p in chaos::schedule(
            o.seed,
            Duration::from_secs_f64(o.minutes * 60.0),
            o.hosts,
            o.hosts == 2,
        ) {
            println!("+{:>6} ms  {:?}", p.at.as_millis(), p.fault);
        }
        return Ok(());
    }
    let v = chaos::run(&o)?;
    print!("{}", v.render());
    if let Some(path) = json {
        std::fs::write(&path, serde_json::to_string_pretty(&v)?)
            .with_context(|| format!("writing {path}"))?;
    }
    if !v.ok {
        std::process::exit(1);
    }
    Ok(())
}
