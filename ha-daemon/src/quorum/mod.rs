//! Partition safety: a lease that a majority of voters (the Redis nodes and
//! any witnesses) grant, so that at most one node serves writes at a time,
//! whatever the network does.
//!
//! The protocol cores (`voter`, `candidate`) are pure, like the VRRP
//! machine, and are checked by a seeded simulation (`sim`, in tests).
pub mod candidate;
pub mod horizon;
pub mod memory;
pub mod peer;
pub mod staleness;
pub mod timing;
pub mod voter;
pub mod wire;
pub mod witness;

#[cfg(test)]
mod sim;

/// Nanoseconds on CLOCK_MONOTONIC (each node's own).
pub type Nanos = u64;

/// A majority of `voters`.
pub fn majority(voters: usize) -> usize {
    voters / 2 + 1
}

/// Test seam: `HA_TEST_PLANT=<bug>` plants a known bug, so that the fault
/// campaign (`cargo xtask chaos`) can show it finds it. The only one:
/// `no-staleness`, a node asks to take over as if an operator had accepted
/// any loss (the staleness check removed). Logged loudly at start.
pub fn planted(bug: &str) -> bool {
    static PLANT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    PLANT
        .get_or_init(|| {
            let b = std::env::var("HA_TEST_PLANT").ok()?;
            tracing::error!("test seam HA_TEST_PLANT={b}: a known bug is planted in this daemon");
            Some(b)
        })
        .as_deref()
        == Some(bug)
}
