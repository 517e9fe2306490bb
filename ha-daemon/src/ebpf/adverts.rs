//! Turns raw `ADVERTS` map entries into what a person or the VRRP core reads.
use std::{borrow::Borrow, net::IpAddr, time::Duration};

use aya::maps::{HashMap, MapData, MapError};
use ha_common::{AdvertKey, AdvertRecord};
use serde::Serialize;

use super::{clock, maps::addr_from};

/// What the kernel saw of one sender's adverts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AdvertEntry {
    pub ifindex: u32,
    pub vrid: u8,
    pub source: IpAddr,
    pub priority: u8,
    pub version: u8,
    pub vlan: u16,
    /// Advert interval the sender announced.
    pub interval: Duration,
    pub count: u64,
    /// Kernel time (CLOCK_MONOTONIC ns) of the last advert.
    pub last_ns: u64,
}

impl AdvertEntry {
    pub fn from_raw(key: &AdvertKey, rec: &AdvertRecord) -> Self {
        Self {
            ifindex: key.ifindex,
            vrid: key.vrid,
            source: addr_from(&key.addr, key.family),
            priority: rec.priority,
            version: rec.version,
            vlan: rec.vlan,
            interval: Duration::from_millis(u64::from(rec.adver_int_cs) * 10),
            count: rec.count,
            last_ns: rec.last_ns,
        }
    }

    /// Time since the last advert, on the kernel's clock.
    pub fn age(&self) -> Duration {
        clock::age(self.last_ns)
    }
}

/// Reads every entry of the map, sorted by interface, VRID and sender.
pub fn collect<T: Borrow<MapData>>(
    map: &HashMap<T, AdvertKey, AdvertRecord>,
) -> Result<Vec<AdvertEntry>, MapError> {
    let mut out = Vec::new();
    for item in map.iter() {
        let (k, v) = item?;
        out.push(AdvertEntry::from_raw(&k, &v));
    }
    out.sort_by_key(|a| (a.ifindex, a.vrid, a.source));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ha_common::{FAMILY_V4, FAMILY_V6};
    use std::net::Ipv6Addr;

    #[test]
    fn decodes_both_families_and_interval() {
        let mut key = AdvertKey {
            ifindex: 3,
            vrid: 51,
            family: FAMILY_V4,
            ..Default::default()
        };
        key.addr[..4].copy_from_slice(&[198, 18, 0, 2]);
        let rec = AdvertRecord {
            last_ns: 1,
            count: 7,
            priority: 150,
            version: 3,
            vlan: 0,
            adver_int_cs: 1,
            _pad: [0; 2],
        };
        let e = AdvertEntry::from_raw(&key, &rec);
        assert_eq!(e.source, "198.18.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(e.interval, Duration::from_millis(10));
        assert_eq!((e.vrid, e.priority, e.count), (51, 150, 7));

        let v6: Ipv6Addr = "fe80::1".parse().unwrap();
        let key6 = AdvertKey {
            family: FAMILY_V6,
            addr: v6.octets(),
            ..key
        };
        assert_eq!(AdvertEntry::from_raw(&key6, &rec).source, IpAddr::V6(v6));
    }
}
