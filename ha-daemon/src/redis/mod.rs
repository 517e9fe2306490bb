//! The local Redis and its role: health checks, role reconciliation with the
//! VRRP state, safe promotion.
pub mod client;
pub mod detach;
pub mod health;
pub mod offset;
pub mod reconcile;
pub mod role;
pub mod stream;
pub mod tls;
