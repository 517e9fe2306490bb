//! What `INFO replication` says, parsed. Pure, for tests and for the
//! reconcile loop, which treats it as the truth about a Redis.
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Role {
    Master {
        /// master_repl_offset
        offset: u64,
        connected_replicas: u32,
        /// Its `slaveN:` lines: the replicas it streams to.
        replicas: Vec<Replica>,
    },
    Replica {
        master_host: String,
        master_port: u16,
        /// master_link_status:up
        link_up: bool,
        /// A full sync is under way.
        syncing: bool,
        /// slave_repl_offset: how far it has applied the master's stream.
        offset: u64,
    },
}

impl Role {
    pub fn name(&self) -> &'static str {
        match self {
            Role::Master { .. } => "master",
            Role::Replica { .. } => "replica",
        }
    }

    pub fn offset(&self) -> u64 {
        match self {
            Role::Master { offset, .. } | Role::Replica { offset, .. } => *offset,
        }
    }

    /// Whether it is a replica of `host:port` (whatever the link state).
    pub fn replicates(&self, host: &str, port: u16) -> bool {
        matches!(self, Role::Replica { master_host, master_port, .. } if master_host == host && *master_port == port)
    }
}

/// A replica as its master's `INFO replication` lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Replica {
    pub ip: String,
    pub port: u16,
    /// `state=online` (not syncing, not waiting for a sync).
    pub online: bool,
    pub offset: u64,
}

/// `slaveN:ip=...,port=...,state=online,offset=...,lag=...` lines.
fn replicas(info: &str) -> Vec<Replica> {
    info.lines()
        .filter_map(|l| {
            let (k, v) = l.trim().split_once(':')?;
            let n = k.strip_prefix("slave")?;
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let f: HashMap<&str, &str> = v.split(',').filter_map(|x| x.split_once('=')).collect();
            Some(Replica {
                ip: f.get("ip")?.to_string(),
                port: f.get("port")?.parse().ok()?,
                online: f.get("state") == Some(&"online"),
                offset: f.get("offset").and_then(|o| o.parse().ok()).unwrap_or(0),
            })
        })
        // A Redis lists at most its clients; a status shows at most 64.
        .take(64)
        .collect()
}

/// Where a Redis's data stands: its replication history (`master_replid`,
/// and `master_replid2`, the history it continues after a promotion) and
/// its offset in it. Offsets compare only within one history: a Redis
/// restarted from its AOF starts a new one at 0 with the same data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// The first 64 bits of the replication id (never 0; 0: unknown).
    pub replid: u64,
    pub replid2: u64,
    pub offset: u64,
    /// The dataset has no key (`INFO keyspace` lists no database).
    pub empty: bool,
}

/// A replication id (40 hex digits) as 64 bits.
pub fn replid_tag(id: &str) -> u64 {
    match u64::from_str_radix(id.get(..16).unwrap_or(""), 16) {
        Ok(0) => 1,
        Ok(v) => v,
        Err(_) => 0,
    }
}

/// Parses the position out of the text of `INFO replication`.
pub fn position(info: &str) -> Result<Position, String> {
    let role = parse(info)?;
    let kv: HashMap<&str, &str> = info
        .lines()
        .filter_map(|l| l.trim().split_once(':'))
        .collect();
    let tag = |k: &str| kv.get(k).map_or(0, |v| replid_tag(v));
    Ok(Position {
        replid: tag("master_replid"),
        // All zeros when there is none.
        replid2: match tag("master_replid2") {
            1 => 0,
            t => t,
        },
        offset: role.offset(),
        // `INFO replication keyspace`: a `dbN:keys=...` line per database
        // with keys.
        empty: !info
            .lines()
            .any(|l| l.starts_with("db") && l.contains(":keys=") && !l.contains(":keys=0,")),
    })
}

/// Parses the text of `INFO replication`.
pub fn parse(info: &str) -> Result<Role, String> {
    let kv: HashMap<&str, &str> = info
        .lines()
        .filter_map(|l| l.trim().split_once(':'))
        .collect();
    let num = |k: &str| kv.get(k).and_then(|v| v.parse::<u64>().ok());
    match kv.get("role").copied() {
        Some("master") => Ok(Role::Master {
            offset: num("master_repl_offset").unwrap_or(0),
            connected_replicas: num("connected_slaves").unwrap_or(0) as u32,
            replicas: replicas(info),
        }),
        Some("slave") => Ok(Role::Replica {
            master_host: kv.get("master_host").unwrap_or(&"").to_string(),
            master_port: num("master_port").unwrap_or(0) as u16,
            link_up: kv.get("master_link_status") == Some(&"up"),
            syncing: kv.get("master_sync_in_progress") == Some(&"1"),
            offset: num("slave_repl_offset").unwrap_or(0),
        }),
        other => Err(format!("INFO replication has no known role: {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_and_replica() {
        let m = "# Replication\r\nrole:master\r\nconnected_slaves:1\r\nslave0:ip=198.18.0.2,port=6379,state=online,offset=1234,lag=0\r\nmaster_repl_offset:1234\r\n";
        assert_eq!(
            parse(m).unwrap(),
            Role::Master {
                offset: 1234,
                connected_replicas: 1,
                replicas: vec![Replica {
                    ip: "198.18.0.2".into(),
                    port: 6379,
                    online: true,
                    offset: 1234
                }],
            }
        );
        let r = "role:slave\r\nmaster_host:198.18.0.1\r\nmaster_port:6379\r\nmaster_link_status:up\r\nmaster_sync_in_progress:0\r\nslave_repl_offset:1200\r\n";
        let role = parse(r).unwrap();
        assert!(role.replicates("198.18.0.1", 6379));
        assert!(!role.replicates("198.18.0.1", 6380));
        assert_eq!(role.offset(), 1200);
        assert!(matches!(
            role,
            Role::Replica {
                link_up: true,
                syncing: false,
                ..
            }
        ));
        assert!(parse("nothing").is_err());
    }

    #[test]
    fn position_with_history_and_keyspace() {
        let m = "# Replication\r\nrole:master\r\nconnected_slaves:0\r\nmaster_replid:583c780858bd6a7b90e61f8f27c8e6885c6fad7c\r\nmaster_replid2:0000000000000000000000000000000000000000\r\nmaster_repl_offset:1234\r\n\r\n# Keyspace\r\ndb0:keys=3,expires=0,avg_ttl=0\r\n";
        let p = position(m).unwrap();
        assert_eq!(p.replid, 0x583c780858bd6a7b);
        assert_eq!((p.replid2, p.offset, p.empty), (0, 1234, false));
        let empty = "role:master\r\nmaster_replid:0000000000000000ffff\r\nmaster_repl_offset:0\r\n# Keyspace\r\n";
        let p = position(empty).unwrap();
        assert!(p.empty);
        assert_eq!(p.replid, 1, "an all-zero prefix is still an id");
    }
}
