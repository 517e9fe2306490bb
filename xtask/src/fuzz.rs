//! `cargo xtask fuzz`: libFuzzer (cargo-fuzz, nightly) on every decoder of
//! network input (ha-daemon/fuzz): the VRRP decoder, the quorum datagram
//! (votes, releases, challenges, connection lists), the Sentinel endpoint's
//! requests, and sequences of quorum datagrams through the pure cores, as a
//! network that loses, duplicates and reorders delivers them.
use anyhow::Result;

use crate::util::{cargo, root, step};

/// The targets, each run for its share of the time.
pub const TARGETS: &[&str] = &[
    "vrrp_decode",
    "quorum_datagram",
    "quorum_sequence",
    "sentinel_request",
];

pub fn run(seconds: u64) -> Result<()> {
    let each = (seconds / TARGETS.len() as u64).max(1);
    for t in TARGETS {
        step(
            &format!("fuzz {t} for {each} s"),
            cargo(Some("nightly"))
                .current_dir(root().join("ha-daemon"))
                .args([
                    "fuzz",
                    "run",
                    t,
                    "--",
                    &format!("-max_total_time={each}"),
                    "-print_final_stats=1",
                ]),
        )?;
    }
    Ok(())
}
