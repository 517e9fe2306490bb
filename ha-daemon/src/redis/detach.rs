//! When a backup's Redis must stop replicating by itself.
//!
//! A replica whose link breaks reconnects on its own, and if the master it
//! reconnects to restarted with an empty (or different) dataset, it
//! full-syncs that and drops everything it held — whatever the daemon's
//! empty-master guard would have said, since no `REPLICAOF` of the daemon's
//! is involved. So once the daemon can no longer vouch for the master its
//! Redis follows (the link is down, the VRRP side no longer names that
//! master, or the daemon has not reached it as a master for a while), it
//! points its Redis at an address nothing listens on ([`PARK`]): a
//! read-only replica that keeps its data, its replication id and offset
//! (the voters still judge it by them) and cannot sync from anyone. It
//! comes back only through the daemon's `REPLICAOF`, behind the guard; a
//! master that kept its history answers that with a partial resync.
//!
//! Pure: the agent feeds it what it read, with the time.
use std::time::{Duration, Instant};

use super::role::Role;

/// Where a detached Redis points: connecting to port 0 is refused at once
/// on every host, so nothing can ever answer as its master.
pub const PARK: (&str, u16) = ("127.0.0.1", 0);

/// Whether `role` is a Redis the daemon detached.
pub fn parked(role: &Role) -> bool {
    role.replicates(PARK.0, PARK.1)
}

/// What the daemon knows of the master its Redis follows.
#[derive(Debug, Default)]
pub struct Vouch {
    /// The master (host, port) and when this agent first saw its Redis follow it.
    following: Option<(String, u16, Instant)>,
    link_was_up: bool,
    /// Last time the daemon read it as a master.
    seen: Option<Instant>,
    /// The local replica's offset, and when it last grew.
    offset: Option<(u64, Instant)>,
}

impl Vouch {
    /// One reconcile pass's reading: the local `role` and when the daemon
    /// last read the master it follows as a master. Whether the VRRP side
    /// names that master does not count: under `[quorum]` a contested lease
    /// hides the master from the view for a while, and a replica detached
    /// then only fell behind (the 30-minute campaign of 2026-12-07). Nor
    /// does a master the daemon fails to read while the local replica's
    /// offset still grows: its stream flows, so it is that master, alive
    /// (on a loaded host the daemon's reads time out now and then, and a
    /// streaming replica detached for it fell behind: the three-host lab
    /// then lost 68 ms of writes in a takeover).
    ///
    /// Returns why the local Redis must be detached, or None while the
    /// daemon can vouch for its master (or it follows none). `unseen`
    /// bounds each silence, and a link not up yet after a new `REPLICAOF`
    /// is given as long.
    pub fn observe(
        &mut self,
        now: Instant,
        role: &Role,
        seen: Option<Instant>,
        unseen: Duration,
    ) -> Option<String> {
        let Role::Replica {
            master_host,
            master_port,
            link_up,
            syncing,
            offset,
        } = role
        else {
            self.following = None;
            return None;
        };
        if parked(role) {
            self.following = None;
            return None;
        }
        let since = match &self.following {
            Some((h, p, t)) if h == master_host && p == master_port => *t,
            _ => {
                *self = Vouch {
                    following: Some((master_host.clone(), *master_port, now)),
                    ..Default::default()
                };
                now
            }
        };
        if *link_up {
            self.link_was_up = true;
        }
        if let Some(t) = seen {
            self.seen = Some(self.seen.map_or(t, |s| s.max(t)));
        }
        match self.offset {
            Some((o, _)) if *offset <= o => {}
            _ => self.offset = Some((*offset, now)),
        }
        let grew = self.offset.map(|(_, t)| t);
        let quiet =
            |last: Option<Instant>| now.saturating_duration_since(last.unwrap_or(since).max(since));
        let master = format!("{master_host}:{master_port}");
        if !*link_up && !*syncing && (self.link_was_up || quiet(None) > unseen) {
            return Some(format!("its replication link to {master} is down"));
        }
        let q = quiet(self.seen);
        if q > unseen && quiet(grew) > unseen {
            return Some(format!(
                "{master} has not answered this node as a master for {} ms",
                q.as_millis()
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica(host: &str, link_up: bool) -> Role {
        Role::Replica {
            master_host: host.into(),
            master_port: 6379,
            link_up,
            syncing: false,
            offset: 10,
        }
    }

    const U: Duration = Duration::from_millis(500);

    #[test]
    fn a_vouched_master_is_kept() {
        let t0 = Instant::now();
        let mut v = Vouch::default();
        for i in 0..50 {
            let now = t0 + Duration::from_millis(100 * i);
            assert_eq!(
                v.observe(now, &replica("10.0.0.1", true), Some(now), U),
                None
            );
        }
    }

    #[test]
    fn a_broken_link_detaches_at_once_once_it_was_up() {
        let t0 = Instant::now();
        let mut v = Vouch::default();
        assert!(
            v.observe(t0, &replica("10.0.0.1", true), Some(t0), U)
                .is_none()
        );
        let t = t0 + Duration::from_millis(100);
        let why = v.observe(t, &replica("10.0.0.1", false), Some(t0), U);
        assert!(why.unwrap().contains("link to 10.0.0.1:6379 is down"));
    }

    #[test]
    fn a_new_link_gets_time_to_come_up() {
        let t0 = Instant::now();
        let mut v = Vouch::default();
        let down = replica("10.0.0.1", false);
        assert!(v.observe(t0, &down, None, U).is_none());
        let t = t0 + Duration::from_millis(400);
        assert!(v.observe(t, &down, Some(t), U).is_none());
        let t = t0 + Duration::from_millis(600);
        assert!(v.observe(t, &down, Some(t), U).is_some());
        // A full sync under way is not a broken link.
        let mut v = Vouch::default();
        let syncing = Role::Replica {
            master_host: "10.0.0.1".into(),
            master_port: 6379,
            link_up: false,
            syncing: true,
            offset: 0,
        };
        for i in 0..20 {
            let now = t0 + Duration::from_millis(100 * i);
            assert!(v.observe(now, &syncing, Some(now), U).is_none());
        }
    }

    #[test]
    fn a_master_not_seen_is_given_up_after_unseen() {
        // The link still looks up to Redis (a cut: no FIN, no RST), but the
        // daemon reaches the master no more.
        let t0 = Instant::now();
        let mut v = Vouch::default();
        let up = replica("10.0.0.1", true);
        assert!(v.observe(t0, &up, Some(t0), U).is_none());
        let t = t0 + Duration::from_millis(450);
        assert!(v.observe(t, &up, Some(t0), U).is_none());
        let t = t0 + Duration::from_millis(550);
        let why = v.observe(t, &up, Some(t0), U).unwrap();
        assert!(why.contains("has not answered this node"), "{why}");
        // Answering, it is kept whatever VRRP says.
        let mut v = Vouch::default();
        for i in 0..20 {
            let t = t0 + Duration::from_millis(100 * i);
            assert!(v.observe(t, &up, Some(t), U).is_none());
        }
    }

    #[test]
    fn a_replica_whose_offset_grows_is_kept_though_the_master_is_not_read() {
        let t0 = Instant::now();
        let mut v = Vouch::default();
        for i in 0..30u64 {
            let t = t0 + Duration::from_millis(100 * i);
            let r = Role::Replica {
                master_host: "10.0.0.1".into(),
                master_port: 6379,
                link_up: true,
                syncing: false,
                offset: 1000 + i,
            };
            assert_eq!(v.observe(t, &r, Some(t0), U), None, "at {i}");
        }
        // The stream stops too: given up once both are quiet for `unseen`.
        let still = Role::Replica {
            master_host: "10.0.0.1".into(),
            master_port: 6379,
            link_up: true,
            syncing: false,
            offset: 1029,
        };
        let t = t0 + Duration::from_millis(2900 + 450);
        assert_eq!(v.observe(t, &still, Some(t0), U), None);
        let t = t0 + Duration::from_millis(2900 + 550);
        assert!(v.observe(t, &still, Some(t0), U).is_some());
    }

    #[test]
    fn following_another_master_starts_afresh_and_a_parked_one_is_left_alone() {
        let t0 = Instant::now();
        let mut v = Vouch::default();
        assert!(
            v.observe(t0, &replica("10.0.0.1", true), Some(t0), U)
                .is_none()
        );
        let t = t0 + Duration::from_secs(5);
        assert!(v.observe(t, &replica("10.0.0.2", false), None, U).is_none());
        let parked = replica(PARK.0, false);
        let parked = match parked {
            Role::Replica {
                master_host,
                link_up,
                syncing,
                offset,
                ..
            } => Role::Replica {
                master_host,
                master_port: PARK.1,
                link_up,
                syncing,
                offset,
            },
            r => r,
        };
        assert!(super::parked(&parked));
        assert!(v.observe(t, &parked, None, U).is_none());
        let master = Role::Master {
            offset: 1,
            connected_replicas: 0,
            replicas: vec![],
        };
        assert!(v.observe(t, &master, None, U).is_none());
    }
}
