//! The VRRP decoder must not panic on any bytes from the network, and what it
//! accepts must re-encode to a packet that decodes to the same advert.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ha_daemon::vrrp::packet::{decode, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, msg)) = data.split_first() else {
        return;
    };
    let (src, dst) = if sel & 1 == 0 {
        (
            IpAddr::V4(Ipv4Addr::new(198, 18, 0, sel)),
            IpAddr::V4(Ipv4Addr::new(224, 0, 0, 18)),
        )
    } else {
        (
            IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, u16::from(sel))),
            IpAddr::V6(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12)),
        )
    };
    if let Ok(adv) = decode(msg, src, dst) {
        // Only canonical packets round-trip byte for byte (padding, reserved
        // bits); the advert itself must survive.
        if let Ok(again) = encode(&adv, src, dst) {
            assert_eq!(decode(&again, src, dst).as_ref(), Ok(&adv));
        }
    }
});
