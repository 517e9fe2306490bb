//! Partition safety: a lease that a majority of voters (the Redis nodes and
//! any witnesses) grant, so that at most one node serves writes at a time,
//! whatever the network does.
//!
//! The protocol cores (`voter`, `candidate`) are pure, like the VRRP
//! machine, and are checked by a seeded simulation (`sim`, in tests).
pub mod candidate;
pub mod horizon;
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
