//! Reads one interface's VRRP socket, validates each packet (RFC 5798 7.1)
//! and routes valid adverts to their instance by VRID. Invalid packets are
//! counted by reason and dropped; they never reach a state machine.
use std::{
    net::IpAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::sync::mpsc;

use super::{
    instance::Incoming,
    packet::{self, AUTH_NONE, AUTH_SIMPLE, Version},
    socket::{Received, VrrpSocket},
};
use crate::status::Shared;

/// The routes of one socket; a reload adds and removes instances.
pub type Routes = Arc<Mutex<Vec<Route>>>;

/// What the receiver checks on behalf of one instance.
pub struct Route {
    pub instance: String,
    pub vrid: u8,
    pub version: Version,
    /// v2 simple password, if configured.
    pub auth: Option<[u8; 8]>,
    pub interval_cs: u16,
    /// When set, adverts are accepted only from these addresses.
    pub peers: Vec<IpAddr>,
    /// With `[quorum]`: the voters. An advert from anyone else counts for
    /// nothing (the XDP program drops it first where it runs).
    pub voters: Vec<IpAddr>,
    pub tx: mpsc::Sender<Incoming>,
}

/// Why a packet was dropped: the drop is counted under this reason, either
/// for the whole interface (`None`) or for the instance it was addressed to.
pub fn check(
    r: &Received,
    local: IpAddr,
    routes: &[Route],
) -> Result<(usize, Incoming), (Option<usize>, &'static str)> {
    if r.ttl != 255 {
        return Err((None, "ttl"));
    }
    let adv = packet::decode(&r.payload, r.src, r.dst).map_err(|e| (None, e.reason()))?;
    let Some(idx) = routes.iter().position(|x| x.vrid == adv.vrid) else {
        return Err((None, "unknown_vrid"));
    };
    let route = &routes[idx];
    let fail = |why| Err((Some(idx), why));
    if r.src == local {
        return fail("own_address");
    }
    if adv.version != route.version {
        return fail("version_mismatch");
    }
    if adv.version == Version::V2 {
        let ok = match route.auth {
            Some(p) => adv.auth_type == AUTH_SIMPLE && adv.auth_data == p,
            None => adv.auth_type == AUTH_NONE,
        };
        if !ok {
            return fail("auth");
        }
        // RFC 3768 7.1: v2 routers must agree on the interval.
        if adv.interval_cs != route.interval_cs {
            return fail("interval_mismatch");
        }
    }
    if !route.peers.is_empty() && !route.peers.contains(&r.src) {
        return fail("unknown_peer");
    }
    if !route.voters.is_empty() && !route.voters.contains(&r.src) {
        return fail("not_voter");
    }
    Ok((
        idx,
        Incoming {
            from: r.src,
            priority: adv.priority,
            interval_cs: adv.interval_cs,
            at: r.at,
        },
    ))
}

pub async fn run(socket: Arc<VrrpSocket>, routes: Routes, status: Shared) {
    loop {
        let r = match socket.recv().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("receiving VRRP: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let routes = routes.lock().unwrap_or_else(|e| e.into_inner());
        match check(&r, socket.local, &routes) {
            Ok((idx, inc)) => {
                if routes[idx].tx.try_send(inc).is_err() {
                    status.drop_packet("queue_full");
                }
            }
            // Our own multicast echoing back is not an error.
            Err((Some(_), "own_address")) => {}
            Err((Some(idx), why)) => {
                tracing::debug!(instance = %routes[idx].instance, from = %r.src, "dropped advert: {why}");
                status.count_instance(&routes[idx].instance, |i| {
                    *i.drops.entry(why.to_owned()).or_default() += 1
                });
            }
            Err((None, why)) => {
                tracing::debug!(from = %r.src, "dropped packet: {why}");
                status.drop_packet(why);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vrrp::packet::{Advert, encode};

    fn received(src: [u8; 4], priority: u8) -> Received {
        let (src, dst) = (IpAddr::from(src), IpAddr::from([224, 0, 0, 18]));
        let adv = Advert {
            version: Version::V3,
            vrid: 51,
            priority,
            interval_cs: 1,
            addrs: vec![IpAddr::from([198, 18, 0, 100])],
            auth_type: AUTH_NONE,
            auth_data: [0; 8],
        };
        Received {
            src,
            dst,
            ttl: 255,
            payload: encode(&adv, src, dst).unwrap(),
            at: 0,
        }
    }

    fn route(voters: Vec<IpAddr>) -> Route {
        Route {
            instance: "vi".into(),
            vrid: 51,
            version: Version::V3,
            auth: None,
            interval_cs: 1,
            peers: Vec::new(),
            voters,
            tx: mpsc::channel(1).0,
        }
    }

    #[test]
    fn with_a_quorum_an_advert_from_outside_it_counts_for_nothing() {
        let local = IpAddr::from([198, 18, 0, 1]);
        let voters = vec![IpAddr::from([198, 18, 0, 2]), IpAddr::from([198, 18, 0, 3])];
        let routes = [route(voters)];
        let forged = received([198, 18, 0, 50], 255);
        assert!(matches!(
            check(&forged, local, &routes),
            Err((Some(0), "not_voter"))
        ));
        let peer = received([198, 18, 0, 2], 100);
        assert_eq!(check(&peer, local, &routes).unwrap().1.priority, 100);
        // Without a quorum any well-formed advert counts, as in VRRP.
        assert!(check(&forged, local, &[route(Vec::new())]).is_ok());
    }
}
