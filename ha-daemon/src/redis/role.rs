//! What `INFO replication` says, parsed. Pure, for tests and for the
//! reconcile loop, which treats it as the truth about a Redis.
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Role {
    Master {
        /// master_repl_offset
        offset: u64,
        connected_replicas: u32,
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
                connected_replicas: 1
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
}
