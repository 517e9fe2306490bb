//! Typed access to the program's maps, whether just loaded or opened from
//! their pins (as `ha-daemon inspect` does, also while no daemon runs).
use std::{net::IpAddr, path::Path};

use aya::maps::{Array, HashMap, Map, MapData, MapError, PerCpuArray};
use ha_common::{
    AdvertKey, AdvertRecord, COUNTER_NAMES, COUNTERS, DROP_NAMES, DROP_REASONS, EndpointKey,
    EndpointState, FAMILY_V4, FAMILY_V6, InstanceConf, InstanceKey, Lease, MAP_ADVERTS,
    MAP_COUNTERS, MAP_DROPS, MAP_ENDPOINTS, MAP_HEARTBEAT, MAP_INSTANCES, MAP_LEASES, MAP_OWNERS,
    MAP_SETTINGS, MAP_VIPS, MAP_VOTERS, Owner, SETTING_ENFORCE, SETTING_QUORUM, Settings, VipKey,
    VipState,
};

use super::{adverts::AdvertEntry, pin};

#[derive(Debug, thiserror::Error)]
pub enum MapsError {
    #[error("the XDP object has no map {0:?}; was it built from this tree?")]
    Missing(&'static str),
    #[error("map {name:?}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: MapError,
    },
    #[error(
        "nothing pinned at {path}: no daemon with XDP has run here since boot (it may run with --no-ebpf, without CAP_BPF, or from a build without XDP; its status.json says which)"
    )]
    NothingPinned { path: String },
    #[error("opening the pinned map {path}: {source} (needs root or CAP_BPF)")]
    NotPinned {
        path: String,
        #[source]
        source: MapError,
    },
}

fn err(name: &'static str) -> impl Fn(MapError) -> MapsError {
    move |source| MapsError::Map { name, source }
}

pub struct Maps {
    pub adverts: HashMap<MapData, AdvertKey, AdvertRecord>,
    pub instances: HashMap<MapData, InstanceKey, InstanceConf>,
    pub drops: PerCpuArray<MapData, u64>,
    pub endpoints: HashMap<MapData, EndpointKey, EndpointState>,
    pub settings: Array<MapData, Settings>,
    pub vips: HashMap<MapData, VipKey, VipState>,
    pub owners: HashMap<MapData, VipKey, Owner>,
    pub leases: Array<MapData, Lease>,
    pub heartbeat: Array<MapData, u64>,
    pub voters: HashMap<MapData, VipKey, u32>,
    pub counters: PerCpuArray<MapData, u64>,
}

/// The key of an address in VIPS, OWNERS and VOTERS.
pub fn vip_key(a: IpAddr) -> VipKey {
    let (addr, family) = addr_bytes(a);
    VipKey {
        addr,
        family,
        _pad: [0; 3],
    }
}

/// One pinned map opened on its own, for a writer that must not share a
/// lock with the rest of the daemon (the lease thread, the heartbeat).
pub fn open_pinned_array<V: aya::Pod>(
    pin_dir: &Path,
    name: &'static str,
) -> Result<Array<MapData, V>, MapsError> {
    let path = pin::map_path(pin_dir, name);
    let m = MapData::from_pin(&path)
        .and_then(Map::from_map_data)
        .map_err(|source| MapsError::NotPinned {
            path: path.display().to_string(),
            source,
        })?;
    Array::try_from(m).map_err(err(name))
}

/// An address in the 16-byte form map keys use.
pub fn addr_bytes(a: IpAddr) -> ([u8; 16], u8) {
    match a {
        IpAddr::V4(v4) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&v4.octets());
            (b, FAMILY_V4)
        }
        IpAddr::V6(v6) => (v6.octets(), FAMILY_V6),
    }
}

pub fn addr_from(bytes: &[u8; 16], family: u8) -> IpAddr {
    if family == FAMILY_V4 {
        IpAddr::from([bytes[0], bytes[1], bytes[2], bytes[3]])
    } else {
        IpAddr::from(*bytes)
    }
}

impl Maps {
    /// Takes the maps out of a loaded object.
    pub fn take(ebpf: &mut aya::Ebpf) -> Result<Self, MapsError> {
        let mut take = |name: &'static str| ebpf.take_map(name).ok_or(MapsError::Missing(name));
        Ok(Self {
            adverts: HashMap::try_from(take(MAP_ADVERTS)?).map_err(err(MAP_ADVERTS))?,
            instances: HashMap::try_from(take(MAP_INSTANCES)?).map_err(err(MAP_INSTANCES))?,
            drops: PerCpuArray::try_from(take(MAP_DROPS)?).map_err(err(MAP_DROPS))?,
            endpoints: HashMap::try_from(take(MAP_ENDPOINTS)?).map_err(err(MAP_ENDPOINTS))?,
            settings: Array::try_from(take(MAP_SETTINGS)?).map_err(err(MAP_SETTINGS))?,
            vips: HashMap::try_from(take(MAP_VIPS)?).map_err(err(MAP_VIPS))?,
            owners: HashMap::try_from(take(MAP_OWNERS)?).map_err(err(MAP_OWNERS))?,
            leases: Array::try_from(take(MAP_LEASES)?).map_err(err(MAP_LEASES))?,
            heartbeat: Array::try_from(take(MAP_HEARTBEAT)?).map_err(err(MAP_HEARTBEAT))?,
            voters: HashMap::try_from(take(MAP_VOTERS)?).map_err(err(MAP_VOTERS))?,
            counters: PerCpuArray::try_from(take(MAP_COUNTERS)?).map_err(err(MAP_COUNTERS))?,
        })
    }

    /// Opens the maps pinned in `pin_dir`.
    pub fn open_pinned(pin_dir: &Path) -> Result<Self, MapsError> {
        let open = |name: &'static str| {
            let path = pin::map_path(pin_dir, name);
            if !path.exists() {
                return Err(MapsError::NothingPinned {
                    path: path.display().to_string(),
                });
            }
            MapData::from_pin(&path)
                .and_then(Map::from_map_data)
                .map_err(|source| MapsError::NotPinned {
                    path: path.display().to_string(),
                    source,
                })
        };
        Ok(Self {
            adverts: HashMap::try_from(open(MAP_ADVERTS)?).map_err(err(MAP_ADVERTS))?,
            instances: HashMap::try_from(open(MAP_INSTANCES)?).map_err(err(MAP_INSTANCES))?,
            drops: PerCpuArray::try_from(open(MAP_DROPS)?).map_err(err(MAP_DROPS))?,
            endpoints: HashMap::try_from(open(MAP_ENDPOINTS)?).map_err(err(MAP_ENDPOINTS))?,
            settings: Array::try_from(open(MAP_SETTINGS)?).map_err(err(MAP_SETTINGS))?,
            vips: HashMap::try_from(open(MAP_VIPS)?).map_err(err(MAP_VIPS))?,
            owners: HashMap::try_from(open(MAP_OWNERS)?).map_err(err(MAP_OWNERS))?,
            leases: Array::try_from(open(MAP_LEASES)?).map_err(err(MAP_LEASES))?,
            heartbeat: Array::try_from(open(MAP_HEARTBEAT)?).map_err(err(MAP_HEARTBEAT))?,
            voters: HashMap::try_from(open(MAP_VOTERS)?).map_err(err(MAP_VOTERS))?,
            counters: PerCpuArray::try_from(open(MAP_COUNTERS)?).map_err(err(MAP_COUNTERS))?,
        })
    }

    pub fn adverts(&self) -> Result<Vec<AdvertEntry>, MapsError> {
        super::adverts::collect(&self.adverts).map_err(err(MAP_ADVERTS))
    }

    /// Drops by reason, summed over CPUs, as (name, count).
    pub fn drops(&self) -> Result<Vec<(&'static str, u64)>, MapsError> {
        let mut out = Vec::with_capacity(DROP_REASONS as usize);
        for i in 0..DROP_REASONS {
            let per_cpu = self.drops.get(&i, 0).map_err(err(MAP_DROPS))?;
            out.push((DROP_NAMES[i as usize], per_cpu.iter().sum()));
        }
        Ok(out)
    }

    pub fn instances(&self) -> Result<Vec<(InstanceKey, InstanceConf)>, MapsError> {
        let mut v: Vec<_> = self
            .instances
            .iter()
            .collect::<Result<_, _>>()
            .map_err(err(MAP_INSTANCES))?;
        v.sort_by_key(|(k, _)| (k.ifindex, k.vrid, k.family));
        Ok(v)
    }

    pub fn endpoints(&self) -> Result<Vec<(EndpointKey, EndpointState)>, MapsError> {
        self.endpoints
            .iter()
            .collect::<Result<_, _>>()
            .map_err(err(MAP_ENDPOINTS))
    }

    pub fn enforcing(&self) -> bool {
        self.settings
            .get(&0, 0)
            .is_ok_and(|s| s.flags & SETTING_ENFORCE != 0)
    }

    pub fn settings(&self) -> Settings {
        self.settings.get(&0, 0).unwrap_or_default()
    }

    fn change_settings(&mut self, f: impl FnOnce(&mut Settings)) -> Result<(), MapsError> {
        let mut s = self.settings();
        f(&mut s);
        self.settings.set(0, s, 0).map_err(err(MAP_SETTINGS))
    }

    /// The daemon counts as gone after `stale_ns` without a heartbeat (its
    /// VIPs fenced), or after `quiet_ns` once another host announced them.
    pub fn set_liveness(&mut self, stale_ns: u64, quiet_ns: u64) -> Result<(), MapsError> {
        self.change_settings(|s| {
            s.stale_ns = stale_ns;
            s.quiet_ns = quiet_ns;
        })
    }

    /// With a quorum: only `voters` may send adverts and quorum datagrams
    /// (to `port`); `None` lifts that.
    pub fn set_quorum(&mut self, q: Option<(u16, &[IpAddr])>) -> Result<(), MapsError> {
        let stale: Vec<VipKey> = self.voters.keys().filter_map(Result::ok).collect();
        for k in stale {
            let _ = self.voters.remove(&k);
        }
        if let Some((_, voters)) = q {
            for v in voters {
                self.voters
                    .insert(vip_key(*v), 1, 0)
                    .map_err(err(MAP_VOTERS))?;
            }
        }
        self.change_settings(|s| match q {
            Some((port, _)) => {
                s.flags |= SETTING_QUORUM;
                s.quorum_port = port;
            }
            None => {
                s.flags &= !SETTING_QUORUM;
                s.quorum_port = 0;
            }
        })
    }

    pub fn set_vip(&mut self, addr: IpAddr, v: VipState) -> Result<(), MapsError> {
        self.vips.insert(vip_key(addr), v, 0).map_err(err(MAP_VIPS))
    }

    pub fn vip(&self, addr: IpAddr) -> Option<VipState> {
        self.vips.get(&vip_key(addr), 0).ok()
    }

    pub fn remove_vip(&mut self, addr: IpAddr) {
        let _ = self.vips.remove(&vip_key(addr));
        let _ = self.owners.remove(&vip_key(addr));
    }

    pub fn vips(&self) -> Result<Vec<(IpAddr, VipState)>, MapsError> {
        let v: Vec<(VipKey, VipState)> = self
            .vips
            .iter()
            .collect::<Result<_, _>>()
            .map_err(err(MAP_VIPS))?;
        Ok(v.into_iter()
            .map(|(k, s)| (addr_from(&k.addr, k.family), s))
            .collect())
    }

    pub fn owners(&self) -> Result<Vec<(IpAddr, Owner)>, MapsError> {
        let v: Vec<(VipKey, Owner)> = self
            .owners
            .iter()
            .collect::<Result<_, _>>()
            .map_err(err(MAP_OWNERS))?;
        Ok(v.into_iter()
            .map(|(k, s)| (addr_from(&k.addr, k.family), s))
            .collect())
    }

    pub fn set_lease(&mut self, slot: u32, until_ns: u64) -> Result<(), MapsError> {
        self.leases
            .set(slot, Lease { until_ns }, 0)
            .map_err(err(MAP_LEASES))
    }

    pub fn lease(&self, slot: u32) -> u64 {
        self.leases.get(&slot, 0).map_or(0, |l| l.until_ns)
    }

    pub fn beat(&mut self, now_ns: u64) -> Result<(), MapsError> {
        self.heartbeat.set(0, now_ns, 0).map_err(err(MAP_HEARTBEAT))
    }

    pub fn last_beat(&self) -> u64 {
        self.heartbeat.get(&0, 0).unwrap_or(0)
    }

    /// Counters by name, summed over CPUs.
    pub fn counters(&self) -> Result<Vec<(&'static str, u64)>, MapsError> {
        let mut out = Vec::with_capacity(COUNTERS as usize);
        for i in 0..COUNTERS {
            let per_cpu = self.counters.get(&i, 0).map_err(err(MAP_COUNTERS))?;
            out.push((COUNTER_NAMES[i as usize], per_cpu.iter().sum()));
        }
        Ok(out)
    }

    /// Makes INSTANCES exactly `wanted` (entries of an older config, found in
    /// pinned maps, are removed) and turns validation on.
    pub fn configure(&mut self, wanted: &[(InstanceKey, InstanceConf)]) -> Result<(), MapsError> {
        let stale: Vec<InstanceKey> = self
            .instances
            .keys()
            .filter_map(Result::ok)
            .filter(|k| !wanted.iter().any(|(w, _)| w == k))
            .collect();
        for k in stale {
            let _ = self.instances.remove(&k);
        }
        for (k, v) in wanted {
            self.instances.insert(k, v, 0).map_err(err(MAP_INSTANCES))?;
        }
        self.set_enforce(true)
    }

    pub fn set_enforce(&mut self, on: bool) -> Result<(), MapsError> {
        self.change_settings(|s| {
            if on {
                s.flags |= SETTING_ENFORCE;
            } else {
                s.flags &= !SETTING_ENFORCE;
            }
        })
    }

    /// Starts watching TCP segments from a Redis endpoint (idempotent; keeps
    /// what was already recorded).
    pub fn watch_endpoint(&mut self, addr: IpAddr, port: u16) -> Result<(), MapsError> {
        let (a, family) = addr_bytes(addr);
        let key = EndpointKey {
            addr: a,
            port,
            family,
            _pad: 0,
        };
        if self.endpoints.get(&key, 0).is_ok() {
            return Ok(());
        }
        self.endpoints
            .insert(key, EndpointState::default(), 0)
            .map_err(err(MAP_ENDPOINTS))
    }

    pub fn unwatch_endpoint(&mut self, addr: IpAddr, port: u16) {
        let (a, family) = addr_bytes(addr);
        let _ = self.endpoints.remove(&EndpointKey {
            addr: a,
            port,
            family,
            _pad: 0,
        });
    }
}
