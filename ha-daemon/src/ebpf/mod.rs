//! The XDP side of the daemon: the embedded object, loading and attaching it,
//! its maps (live or pinned), and its ring buffer of events.
pub mod adverts;
pub mod clock;
pub mod events;
pub mod loader;
pub mod maps;
pub mod object;
pub mod pin;

/// The 8 bytes of a v2 simple password as the XDP program compares them.
pub fn vrrp_auth(pass: &str) -> [u8; 8] {
    crate::vrrp::packet::auth_bytes(pass)
}
