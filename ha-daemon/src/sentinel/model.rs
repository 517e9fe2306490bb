//! What the Sentinel face says about each instance, derived from the status
//! model (pure): the master (as `InstanceStatus::master_for_clients` rules),
//! whether this node vouches for it, its replicas, and the events a change
//! from one view to the next publishes, in `sentinel.c`'s formats.
use std::net::IpAddr;

use crate::status::{InstanceStatus, Status};

#[derive(Debug, Clone, PartialEq)]
pub struct MasterView {
    /// The instance name: the master name clients ask for.
    pub name: String,
    /// The master's Redis: the one this node vouches for, else the last one
    /// it knew (flagged down).
    pub ip: IpAddr,
    pub port: u16,
    /// This node vouches for it now.
    pub up: bool,
    /// Moves when the master changes (the lease term under `[quorum]`).
    pub epoch: u64,
    pub replicas: Vec<ReplicaView>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaView {
    pub ip: String,
    pub port: u16,
    pub up: bool,
    pub offset: u64,
}

/// The views of every instance with a Redis side, given the previous ones
/// (a master no one vouches for keeps its last known address).
pub fn views(status: &Status, ports: &[(String, u16)], prev: &[MasterView]) -> Vec<MasterView> {
    ports
        .iter()
        .filter_map(|(name, port)| {
            let i = status.instances.get(name)?;
            let before = prev.iter().find(|v| &v.name == name);
            Some(view(name, *port, i, before))
        })
        .collect()
}

fn view(name: &str, port: u16, i: &InstanceStatus, before: Option<&MasterView>) -> MasterView {
    let serving = i.master_for_clients();
    let ip = serving
        .or(before.map(|b| b.ip))
        .or(i.master)
        .or(i.address)
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let changed = before.is_some_and(|b| b.ip != ip);
    let epoch = match &i.lease {
        Some(l) => l.term,
        None => before.map_or(0, |b| b.epoch) + u64::from(changed),
    };
    let mut replicas = Vec::new();
    if serving.is_some() && serving == i.address {
        // This node is the master: its Redis lists its replicas.
        if let Some(r) = &i.redis {
            replicas = r
                .replicas
                .iter()
                .map(|x| ReplicaView {
                    ip: x.ip.clone(),
                    port: x.port,
                    up: x.online,
                    offset: x.offset,
                })
                .collect();
        }
    } else if let (Some(r), Some(me)) = (&i.redis, i.address) {
        // A backup knows itself: a replica of the master it follows.
        let master = format!("{ip}:{port}");
        if r.role.as_deref() == Some("replica") && r.master.as_deref() == Some(master.as_str()) {
            replicas.push(ReplicaView {
                ip: me.to_string(),
                port,
                up: r.link_up == Some(true),
                offset: r.offset,
            });
        }
    }
    MasterView {
        name: name.to_owned(),
        ip,
        port,
        up: serving.is_some(),
        epoch,
        replicas,
    }
}

/// The events (channel, message) going from `old` to `new`, in order.
pub fn events(old: &[MasterView], new: &[MasterView]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut ev = |ch: &str, msg: String| out.push((ch.to_owned(), msg));
    for n in new {
        let at = |v: &MasterView| format!("master {} {} {}", v.name, v.ip, v.port);
        let Some(o) = old.iter().find(|o| o.name == n.name) else {
            continue;
        };
        if o.ip != n.ip && n.up {
            ev("+failover-end", at(o));
            ev(
                "+switch-master",
                format!("{} {} {} {} {}", n.name, o.ip, o.port, n.ip, n.port),
            );
        } else if o.up && !n.up {
            ev("+sdown", at(n));
            ev("+odown", format!("{} #quorum 1/1", at(n)));
        } else if !o.up && n.up {
            ev("-odown", at(n));
            ev("-sdown", at(n));
        }
        for r in &n.replicas {
            let was = o.replicas.iter().find(|x| x.ip == r.ip && x.port == r.port);
            let who = format!(
                "slave {}:{} {} {} @ {} {} {}",
                r.ip, r.port, r.ip, r.port, n.name, n.ip, n.port
            );
            match (was.map(|w| w.up), r.up) {
                (None, _) if o.ip == n.ip => ev("+slave", who),
                (None, _) => {
                    ev("+slave", who.clone());
                    ev("+slave-reconf-done", who);
                }
                (Some(true), false) => ev("+sdown", who),
                (Some(false), true) => ev("-sdown", who),
                _ => {}
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        status::{LeaseStatus, RedisStatus, ReplicaStatus},
        vrrp::machine::State,
    };

    const A: [u8; 4] = [10, 0, 0, 1];
    const B: [u8; 4] = [10, 0, 0, 2];

    fn status(state: State, heard: Option<[u8; 4]>, lease: Option<LeaseStatus>) -> Status {
        let mut s = Status::default();
        s.instances.insert(
            "vi".into(),
            InstanceStatus {
                state,
                address: Some(IpAddr::from(A)),
                master: heard.map(IpAddr::from),
                master_heard: heard.map(IpAddr::from),
                lease,
                redis: Some(RedisStatus {
                    role: Some("master".into()),
                    replicas: vec![ReplicaStatus {
                        ip: "10.0.0.2".into(),
                        port: 6379,
                        online: true,
                        offset: 5,
                    }],
                    ..Default::default()
                }),
                ..Default::default()
            },
        );
        s
    }

    fn ports() -> Vec<(String, u16)> {
        vec![("vi".into(), 6379)]
    }

    #[test]
    fn the_master_vouches_for_itself_only_with_the_lease() {
        let v = views(&status(State::Master, None, None), &ports(), &[]);
        assert!(v[0].up && v[0].ip == IpAddr::from(A));
        assert_eq!(v[0].replicas.len(), 1);
        let lost = LeaseStatus {
            held: false,
            holder: Some(IpAddr::from(A)),
            ..Default::default()
        };
        let v = views(&status(State::Master, None, Some(lost)), &ports(), &v);
        assert!(!v[0].up, "a master without the lease may be fenced");
        assert_eq!(v[0].ip, IpAddr::from(A), "the last known address stays");
    }

    #[test]
    fn a_backup_vouches_for_the_master_it_hears_and_the_lease_holder_only() {
        let v = views(&status(State::Backup, Some(B), None), &ports(), &[]);
        assert!(v[0].up && v[0].ip == IpAddr::from(B));
        let v = views(&status(State::Backup, None, None), &ports(), &v);
        assert!(!v[0].up && v[0].ip == IpAddr::from(B));
        let other = LeaseStatus {
            holder: Some(IpAddr::from([10, 0, 0, 9])),
            ..Default::default()
        };
        let v = views(&status(State::Backup, Some(B), Some(other)), &ports(), &v);
        assert!(!v[0].up, "adverts from a node that is not the lease holder");
    }

    #[test]
    fn a_new_master_is_a_switch_and_a_lost_one_is_down() {
        let a = views(&status(State::Backup, Some(B), None), &ports(), &[]);
        let gone = views(&status(State::Backup, None, None), &ports(), &a);
        let e = events(&a, &gone);
        assert_eq!(e[0], ("+sdown".into(), "master vi 10.0.0.2 6379".into()));
        assert_eq!(e[1].0, "+odown");
        let me = views(&status(State::Master, None, None), &ports(), &gone);
        let e = events(&gone, &me);
        assert!(e.contains(&(
            "+switch-master".into(),
            "vi 10.0.0.2 6379 10.0.0.1 6379".into()
        )));
        assert!(
            e.iter().any(|(c, m)| c == "+slave"
                && m == "slave 10.0.0.2:6379 10.0.0.2 6379 @ vi 10.0.0.1 6379")
        );
        assert!(me[0].epoch > a[0].epoch);
        assert!(events(&me, &me).is_empty());
    }
}
