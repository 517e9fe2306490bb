//! ha-daemon: VRRP failover for Redis with kernel-side advert timing.
//!
//! The binary (`main.rs`) is a thin edge over these modules; integration tests
//! and `cargo xtask` use them directly.
pub mod config;
pub mod control;
pub mod daemon;
pub mod ebpf;
pub mod import;
pub mod inspect;
pub mod manpage;
pub mod metrics;
pub mod net;
pub mod notify;
pub mod quorum;
pub mod redis;
pub mod resp;
pub mod secret;
pub mod sentinel;
pub mod status;
pub mod systemd;
pub mod tickle;
pub mod vrrp;
