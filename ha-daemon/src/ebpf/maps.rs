//! Typed access to the program's maps, whether just loaded or opened from
//! their pins (as `ha-daemon inspect` does, also while no daemon runs).
use std::{net::IpAddr, path::Path};

use aya::maps::{Array, HashMap, Map, MapData, MapError, PerCpuArray};
use ha_common::{
    AdvertKey, AdvertRecord, DROP_NAMES, DROP_REASONS, EndpointKey, EndpointState, FAMILY_V4,
    FAMILY_V6, InstanceConf, InstanceKey, MAP_ADVERTS, MAP_DROPS, MAP_ENDPOINTS, MAP_INSTANCES,
    MAP_SETTINGS, SETTING_ENFORCE, Settings,
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
        let flags = if on { SETTING_ENFORCE } else { 0 };
        self.settings
            .set(0, Settings { flags, _pad: 0 }, 0)
            .map_err(err(MAP_SETTINGS))
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
