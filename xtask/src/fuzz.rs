//! `cargo xtask fuzz`: libFuzzer on the VRRP decoder (ha-daemon/fuzz).
use anyhow::Result;

use crate::util::{cargo, root, step};

pub fn run(seconds: u64) -> Result<()> {
    step(
        &format!("fuzz the VRRP decoder for {seconds} s"),
        cargo(Some("nightly"))
            .current_dir(root().join("ha-daemon"))
            .args([
                "fuzz",
                "run",
                "vrrp_decode",
                "--",
                &format!("-max_total_time={seconds}"),
                "-print_final_stats=1",
            ]),
    )
}
