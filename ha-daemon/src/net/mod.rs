//! Network I/O around the VRRP core: interfaces, VIPs, announcements.
pub mod checksum;
pub mod garp;
pub mod iface;
pub mod vip;
