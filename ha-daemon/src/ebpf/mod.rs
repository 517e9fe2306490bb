//! The XDP side of the daemon: the embedded object, loading and attaching it,
//! its maps (live or pinned), and its ring buffer of events.
pub mod adverts;
pub mod clock;
pub mod events;
pub mod loader;
pub mod maps;
pub mod object;
pub mod pin;
