//! Talking to a Redis (local or a peer) with the `redis` crate: the few
//! commands the role logic needs, each with a timeout.
use std::{fmt, time::Duration};

use redis::{
    AsyncConnectionConfig, Client, ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo,
    aio::MultiplexedConnection,
};

use super::role::{self, Role};

/// Credentials from `password_file` (and an optional ACL user). Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Auth {
    pub username: Option<String>,
    pub password: String,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Auth {{ username: {:?}, password: ******** }}",
            self.username
        )
    }
}

#[derive(Debug, Clone)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub auth: Option<Auth>,
    pub tls: Option<super::tls::Tls>,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// `CLIENT SETNAME` of every connection a daemon makes to a Redis.
pub const CLIENT_NAME: &str = "ha-daemon";

#[derive(Debug, thiserror::Error)]
#[error("Redis {endpoint}: {what}: {message}")]
pub struct RedisError {
    pub endpoint: String,
    pub what: &'static str,
    pub message: String,
}

pub struct Conn {
    pub endpoint: Endpoint,
    c: MultiplexedConnection,
}

impl Endpoint {
    pub async fn connect(&self, timeout: Duration) -> Result<Conn, RedisError> {
        let err = |what, e: &dyn fmt::Display| RedisError {
            endpoint: self.to_string(),
            what,
            message: e.to_string(),
        };
        let mut settings = RedisConnectionInfo::default();
        if let Some(a) = &self.auth {
            settings = settings.set_password(&a.password);
            if let Some(u) = &a.username {
                settings = settings.set_username(u);
            }
        }
        let addr = match &self.tls {
            None => ConnectionAddr::Tcp(self.host.clone(), self.port),
            Some(_) => ConnectionAddr::TcpTls {
                host: self.host.clone(),
                port: self.port,
                insecure: false,
                tls_params: None,
            },
        };
        let info = addr
            .into_connection_info()
            .map_err(|e| err("address", &e))?
            .set_redis_settings(settings);
        let client = match &self.tls {
            None => Client::open(info),
            Some(t) => Client::build_with_tls(info, t.certificates()),
        }
        .map_err(|e| err("client", &e))?;
        let cfg = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout.max(Duration::from_millis(500))));
        let c = client
            .get_multiplexed_async_connection_with_config(&cfg)
            .await
            .map_err(|e| err("connect", &e))?;
        // Named, so that disconnecting the clients of a demoted master spares
        // the daemons' own connections; sent without waiting (the first
        // command after it is what matters, not one more round trip).
        let mut named = c.clone();
        tokio::spawn(async move {
            let _ = redis::cmd("CLIENT")
                .arg("SETNAME")
                .arg(CLIENT_NAME)
                .query_async::<()>(&mut named)
                .await;
        });
        Ok(Conn {
            endpoint: self.clone(),
            c,
        })
    }
}

impl Conn {
    fn err(&self, what: &'static str, e: redis::RedisError) -> RedisError {
        RedisError {
            endpoint: self.endpoint.to_string(),
            what,
            message: e.to_string(),
        }
    }

    pub async fn role(&mut self) -> Result<Role, RedisError> {
        let text: String = redis::cmd("INFO")
            .arg("replication")
            .query_async(&mut self.c)
            .await
            .map_err(|e| self.err("INFO replication", e))?;
        role::parse(&text).map_err(|m| RedisError {
            endpoint: self.endpoint.to_string(),
            what: "INFO replication",
            message: m,
        })
    }

    /// Where the data stands (`INFO replication keyspace`).
    pub async fn position(&mut self) -> Result<role::Position, RedisError> {
        let text: String = redis::cmd("INFO")
            .arg("replication")
            .arg("keyspace")
            .query_async(&mut self.c)
            .await
            .map_err(|e| self.err("INFO replication", e))?;
        role::position(&text).map_err(|m| RedisError {
            endpoint: self.endpoint.to_string(),
            what: "INFO replication",
            message: m,
        })
    }

    pub async fn dbsize(&mut self) -> Result<u64, RedisError> {
        redis::cmd("DBSIZE")
            .query_async(&mut self.c)
            .await
            .map_err(|e| self.err("DBSIZE", e))
    }

    /// Gives this Redis the credentials it needs to sync from a master that
    /// requires them (`masterauth`, and `masteruser` for an ACL user).
    pub async fn set_master_auth(&mut self, auth: &Auth) -> Result<(), RedisError> {
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("masterauth")
            .arg(&auth.password)
            .query_async::<()>(&mut self.c)
            .await
            .map_err(|e| self.err("CONFIG SET masterauth", e))?;
        if let Some(u) = &auth.username {
            redis::cmd("CONFIG")
                .arg("SET")
                .arg("masteruser")
                .arg(u)
                .query_async::<()>(&mut self.c)
                .await
                .map_err(|e| self.err("CONFIG SET masteruser", e))?;
        }
        Ok(())
    }

    /// REPLICAOF, after handing over the credentials the master will ask for.
    pub async fn replicaof(&mut self, host: &str, port: u16) -> Result<(), RedisError> {
        if let Some(a) = self.endpoint.auth.clone() {
            self.set_master_auth(&a).await?;
        }
        redis::cmd("REPLICAOF")
            .arg(host)
            .arg(port)
            .query_async::<()>(&mut self.c)
            .await
            .map_err(|e| self.err("REPLICAOF", e))
    }

    pub async fn replicaof_no_one(&mut self) -> Result<(), RedisError> {
        redis::cmd("REPLICAOF")
            .arg("NO")
            .arg("ONE")
            .query_async::<()>(&mut self.c)
            .await
            .map_err(|e| self.err("REPLICAOF NO ONE", e))
    }

    /// Disconnects the application's clients (normal and Pub/Sub, not the
    /// daemons' own connections or replicas), as Sentinel does after a
    /// demotion: many clients rediscover the master only when their
    /// connection breaks, and would otherwise write to a replica and read
    /// READONLY errors for ever. Returns how many were closed.
    pub async fn disconnect_clients(&mut self) -> Result<usize, RedisError> {
        let mut ids = Vec::new();
        for ty in ["normal", "pubsub"] {
            let list: String = redis::cmd("CLIENT")
                .arg("LIST")
                .arg("TYPE")
                .arg(ty)
                .query_async(&mut self.c)
                .await
                .map_err(|e| self.err("CLIENT LIST", e))?;
            ids.extend(application_clients(&list));
        }
        let mut killed = 0;
        for id in ids {
            // One at a time: CLIENT KILL's filters AND, they do not list.
            let n: usize = redis::cmd("CLIENT")
                .arg("KILL")
                .arg("ID")
                .arg(id)
                .arg("SKIPME")
                .arg("yes")
                .query_async(&mut self.c)
                .await
                .map_err(|e| self.err("CLIENT KILL", e))?;
            killed += n;
        }
        Ok(killed)
    }

    /// Stops it acknowledging writes for up to `ms` (reads still served).
    pub async fn pause_writes(&mut self, ms: u64) -> Result<(), RedisError> {
        redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(ms)
            .arg("WRITE")
            .query_async::<()>(&mut self.c)
            .await
            .map_err(|e| self.err("CLIENT PAUSE WRITE", e))
    }

    pub async fn unpause(&mut self) -> Result<(), RedisError> {
        redis::cmd("CLIENT")
            .arg("UNPAUSE")
            .query_async::<()>(&mut self.c)
            .await
            .map_err(|e| self.err("CLIENT UNPAUSE", e))
    }

    /// Puts a few bytes into a master's replication stream without touching
    /// data: PUBLISH is propagated to replicas. Lets a backup see whether the
    /// stream reaches it.
    pub async fn probe_stream(&mut self) -> Result<(), RedisError> {
        redis::cmd("PUBLISH")
            .arg("__ha-daemon__:stream-probe")
            .arg("1")
            .query_async::<i64>(&mut self.c)
            .await
            .map(|_| ())
            .map_err(|e| self.err("PUBLISH (stream probe)", e))
    }
}

/// The ids in a `CLIENT LIST` reply of connections not named `CLIENT_NAME`.
pub fn application_clients(list: &str) -> Vec<u64> {
    list.lines()
        .filter_map(|line| {
            let field = |k: &str| {
                line.split(' ')
                    .find_map(|f| f.strip_prefix(k)?.strip_prefix('='))
            };
            (field("name") != Some(CLIENT_NAME))
                .then(|| field("id")?.parse().ok())
                .flatten()
        })
        .collect()
}

#[cfg(test)]
mod client_list_tests {
    use super::*;

    #[test]
    fn only_the_applications_clients_are_picked() {
        let list = "id=3 addr=127.0.0.1:4000 laddr=127.0.0.1:6379 fd=8 name=ha-daemon age=9 flags=N\n\
                    id=7 addr=198.18.0.9:5000 laddr=198.18.0.1:6379 fd=9 name= age=1 flags=N\n\
                    id=8 addr=198.18.0.9:5001 laddr=198.18.0.1:6379 fd=10 name=app age=1 flags=P\n\
                    garbage\n";
        assert_eq!(application_clients(list), vec![7, 8]);
    }
}
