//! `ha-daemon inspect`: what the XDP program recorded, read from the pinned
//! maps; works while the daemon runs and after it stopped.
use std::{ffi::CStr, net::IpAddr, path::Path, time::Duration};

use serde::Serialize;

use crate::ebpf::{
    clock,
    maps::{Maps, MapsError, addr_from},
};

#[derive(Debug, Serialize)]
pub struct Report {
    pub pin_dir: String,
    /// Whether the program validates and drops (the daemon configured it).
    pub validating: bool,
    pub instances: Vec<InstanceReport>,
    pub drops: Vec<(String, u64)>,
    pub endpoints: Vec<EndpointReport>,
    /// The VIPs the program holds the line for.
    pub vips: Vec<VipReport>,
    /// Frames redirected, resets sent, ARP suppressed, replies fenced.
    pub counters: Vec<(String, u64)>,
    /// Age of the daemon's last heartbeat (None: never written).
    pub heartbeat_age_ms: Option<f64>,
    /// With a quorum: the voters adverts are accepted from.
    pub voters: Vec<IpAddr>,
}

#[derive(Debug, Serialize)]
pub struct VipReport {
    pub address: IpAddr,
    /// This node holds it (VRRP master).
    pub held: bool,
    /// Serving also needs the lease (`[quorum]`).
    pub lease: bool,
    /// Time left on the lease, ms (negative: over, fenced).
    pub lease_left_ms: Option<f64>,
    pub redis_port: u16,
    /// Given up this long ago (None: never).
    pub released_age_ms: Option<f64>,
    /// Frames are sent on to the new owner for this long still.
    pub redirect_left_ms: Option<f64>,
    /// Who announced it last, and how long ago.
    pub owner: Option<String>,
    pub owner_age_ms: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct InstanceReport {
    pub interface: String,
    pub ifindex: u32,
    pub vrid: u8,
    pub version: u8,
    pub senders: Vec<SenderReport>,
}

#[derive(Debug, Serialize)]
pub struct SenderReport {
    pub address: IpAddr,
    pub priority: u8,
    pub interval_ms: u64,
    pub last_advert_age_ms: f64,
    pub adverts: u64,
}

#[derive(Debug, Serialize)]
pub struct EndpointReport {
    pub address: IpAddr,
    pub port: u16,
    pub segments: u64,
    pub last_segment_age_ms: Option<f64>,
    pub last_fin_age_ms: Option<f64>,
    pub last_rst_age_ms: Option<f64>,
}

fn age_ms(ns: u64) -> Option<f64> {
    (ns != 0).then(|| clock::age(ns).as_secs_f64() * 1000.0)
}

fn ifname(ifindex: u32) -> String {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buffer of IF_NAMESIZE as the call requires.
    let p = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    if p.is_null() {
        format!("if{ifindex}")
    } else {
        // SAFETY: if_indextoname wrote a NUL-terminated name.
        unsafe { CStr::from_ptr(buf.as_ptr()) }
            .to_string_lossy()
            .into_owned()
    }
}

/// Reads the maps pinned in `pin_dir`.
pub fn report(pin_dir: &Path) -> Result<Report, MapsError> {
    let maps = Maps::open_pinned(pin_dir)?;
    let adverts = maps.adverts()?;
    let mut instances: Vec<InstanceReport> = maps
        .instances()?
        .into_iter()
        .map(|(k, c)| InstanceReport {
            interface: ifname(k.ifindex),
            ifindex: k.ifindex,
            vrid: k.vrid,
            version: c.version,
            senders: Vec::new(),
        })
        .collect();
    for a in adverts {
        let s = SenderReport {
            address: a.source,
            priority: a.priority,
            interval_ms: a.interval.as_millis() as u64,
            last_advert_age_ms: a.age().as_secs_f64() * 1000.0,
            adverts: a.count,
        };
        match instances
            .iter_mut()
            .find(|i| i.ifindex == a.ifindex && i.vrid == a.vrid)
        {
            Some(i) => i.senders.push(s),
            None => instances.push(InstanceReport {
                interface: ifname(a.ifindex),
                ifindex: a.ifindex,
                vrid: a.vrid,
                version: a.version,
                senders: vec![s],
            }),
        }
    }
    let endpoints = maps
        .endpoints()?
        .into_iter()
        .map(|(k, v)| EndpointReport {
            address: addr_from(&k.addr, k.family),
            port: k.port,
            segments: v.segments,
            last_segment_age_ms: age_ms(v.last_ns),
            last_fin_age_ms: age_ms(v.last_fin_ns),
            last_rst_age_ms: age_ms(v.last_rst_ns),
        })
        .collect();
    let now = clock::monotonic_ns();
    let boot = clock::kernel_boottime_ns();
    let owners = maps.owners()?;
    let vips = maps
        .vips()?
        .into_iter()
        .map(|(a, v)| {
            let o = owners.iter().find(|(x, _)| *x == a).map(|(_, o)| *o);
            let lease = v.flags & ha_common::VIP_LEASE != 0;
            VipReport {
                address: a,
                held: v.flags & ha_common::VIP_HELD != 0,
                lease,
                lease_left_ms: lease.then(|| (maps.lease(v.slot) as f64 - boot as f64) / 1e6),
                redis_port: v.redis_port,
                released_age_ms: age_ms(v.released_ns),
                redirect_left_ms: (v.redirect_until_ns > now)
                    .then(|| (v.redirect_until_ns - now) as f64 / 1e6),
                owner: o.map(|o| {
                    o.mac
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect::<Vec<_>>()
                        .join(":")
                }),
                owner_age_ms: o.and_then(|o| age_ms(o.at_ns)),
            }
        })
        .collect();
    let voters = maps
        .voters
        .keys()
        .filter_map(Result::ok)
        .map(|k| addr_from(&k.addr, k.family))
        .collect();
    Ok(Report {
        vips,
        counters: maps
            .counters()?
            .into_iter()
            .map(|(n, c)| (n.to_owned(), c))
            .collect(),
        heartbeat_age_ms: age_ms(maps.last_beat()),
        voters,
        pin_dir: pin_dir.display().to_string(),
        validating: maps.enforcing(),
        instances,
        drops: maps
            .drops()?
            .into_iter()
            .map(|(n, c)| (n.to_owned(), c))
            .collect(),
        endpoints,
    })
}

fn ms(v: Option<f64>) -> String {
    v.map_or("never".into(), |v| format!("{v:.1} ms ago"))
}

/// The report as a person reads it.
pub fn render(r: &Report) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "pinned maps: {}   validation: {}",
        r.pin_dir,
        if r.validating {
            "on (invalid adverts dropped in XDP)"
        } else {
            "off"
        }
    );
    for i in &r.instances {
        let _ = writeln!(
            o,
            "instance {} vrid {} (VRRPv{})",
            i.interface, i.vrid, i.version
        );
        if i.senders.is_empty() {
            let _ = writeln!(o, "  no adverts seen");
        }
        for s in &i.senders {
            let _ = writeln!(
                o,
                "  {:<28} priority {:>3}  interval {:>5} ms  last advert {:>10.1} ms ago  adverts {}",
                s.address, s.priority, s.interval_ms, s.last_advert_age_ms, s.adverts
            );
        }
    }
    let drops: Vec<String> = r.drops.iter().map(|(n, c)| format!("{n} {c}")).collect();
    let _ = writeln!(o, "drops: {}", drops.join(", "));
    if !r.voters.is_empty() {
        let v: Vec<String> = r.voters.iter().map(|a| a.to_string()).collect();
        let _ = writeln!(
            o,
            "quorum voters (adverts from anyone else dropped): {}",
            v.join(", ")
        );
    }
    let _ = writeln!(o, "daemon heartbeat: {}", ms(r.heartbeat_age_ms));
    for v in &r.vips {
        let mut what = vec![if v.held {
            "held".to_owned()
        } else {
            "not held".into()
        }];
        if let Some(l) = v.lease_left_ms {
            what.push(if l > 0.0 {
                format!("lease {l:.1} ms left")
            } else {
                "lease over: fenced".into()
            });
        }
        if let Some(r) = v.released_age_ms {
            what.push(format!("given up {:.1} s ago", r / 1000.0));
        }
        if let Some(r) = v.redirect_left_ms {
            what.push(format!("redirecting for {:.1} s more", r / 1000.0));
        }
        if let (Some(m), Some(a)) = (&v.owner, v.owner_age_ms) {
            what.push(format!("announced by {m} {:.1} s ago", a / 1000.0));
        }
        let _ = writeln!(
            o,
            "VIP {} (redis port {}): {}",
            v.address,
            v.redis_port,
            what.join(", ")
        );
    }
    let c: Vec<String> = r.counters.iter().map(|(n, c)| format!("{n} {c}")).collect();
    let _ = writeln!(o, "kernel: {}", c.join(", "));
    if r.endpoints.is_empty() {
        let _ = writeln!(o, "redis endpoints watched: none");
    }
    for e in &r.endpoints {
        let _ = writeln!(
            o,
            "redis {}:{}  segments {}  last {}  FIN {}  RST {}",
            e.address,
            e.port,
            e.segments,
            ms(e.last_segment_age_ms),
            ms(e.last_fin_age_ms),
            ms(e.last_rst_age_ms)
        );
    }
    o
}

/// A refresh period for `--watch`.
pub const WATCH_PERIOD: Duration = Duration::from_secs(1);
