//! VRRP v2/v3: the pure parts (packet codec, state machine) and the thin I/O
//! around them (socket, instance driver).
pub mod damping;
pub mod instance;
pub mod machine;
pub mod packet;
pub mod receiver;
pub mod socket;
