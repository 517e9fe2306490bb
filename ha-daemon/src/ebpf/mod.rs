//! The XDP side of the daemon: the embedded object, loading and attaching it,
//! and reading what it records.
pub mod adverts;
pub mod clock;
pub mod loader;
pub mod object;
