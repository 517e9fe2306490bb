//! What an operator runs and reads, against a running daemon: `status`,
//! Prometheus metrics, JSON logs, systemd notifications, SIGHUP reload
//! (valid and invalid), and the errors a config that cannot run gets.
use std::{
    io::{Read, Write},
    net::TcpStream,
    os::unix::net::UnixDatagram,
    time::Duration,
};

use ha_testbed::{Lan, TempDir, daemon::Daemon, require_root, wait_for};

fn instance(name: &str, vrid: u8, priority: u8, vip: &str) -> String {
    format!(
        "[[instance]]\nname = \"{name}\"\ninterface = \"eth0\"\nvrid = {vrid}\npriority = {priority}\n\
         advert_interval_ms = 100\nvips = [\"{vip}/24\"]\n\n"
    )
}

fn ha(host: &ha_testbed::Host, args: &[&str]) -> std::process::Output {
    let mut cmd = host
        .ns
        .command(ha_testbed::daemon::binary().to_str().unwrap());
    cmd.args(args).output().expect("run ha-daemon")
}

/// One HTTP exchange with `addr` from `host`'s namespace: what came back
/// until the server closed (empty if it closed without a word).
fn http(host: &ha_testbed::Host, addr: &str, request: &[u8]) -> String {
    host.ns
        .enter(|| {
            let mut s = TcpStream::connect(addr)?;
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            // The server may close before reading all of an oversized request.
            let _ = s.write_all(request);
            let mut r = Vec::new();
            let _ = s.read_to_end(&mut r);
            Ok::<_, std::io::Error>(String::from_utf8_lossy(&r).into_owned())
        })
        .unwrap()
        .expect("HTTP exchange")
}

#[test]
fn status_metrics_json_logs_and_systemd_notifications_of_a_running_daemon() {
    require_root();
    let lan = Lan::new("hat", 1).unwrap();
    let h1 = lan.host(1);
    let dir = TempDir::new("ops").unwrap();
    // systemd's side of Type=notify: a datagram socket the daemon reports to.
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut n1 = Daemon::start_with(
        h1,
        &dir,
        "n1",
        "metrics = \"198.18.0.1:9405\"\n",
        &instance("vi", 51, 150, "198.18.0.100"),
        &["--log-format", "json"],
        &[
            ("NOTIFY_SOCKET", notify_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "400000"),
        ],
    )
    .unwrap();
    n1.wait_state("vi", "Master", Duration::from_secs(5));

    // systemd: READY, a STATUS line with the state, and the watchdog.
    let mut got = Vec::new();
    let all = wait_for(Duration::from_secs(5), || {
        let mut b = [0u8; 512];
        if let Ok(n) = notify.recv(&mut b) {
            got.push(String::from_utf8_lossy(&b[..n]).into_owned());
        }
        (got.iter().any(|m| m == "READY=1")
            && got.iter().any(|m| m.starts_with("STATUS=vi: MASTER"))
            && got.iter().any(|m| m == "WATCHDOG=1"))
        .then_some(())
    });
    assert!(all.is_some(), "notifications: {got:?}");

    // status, for a person and as JSON.
    let cfg = n1.config.to_str().unwrap().to_owned();
    let out = ha(h1, &["status", "-c", &cfg]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("-> Master: master down"), "{text}");
    assert!(
        text.contains("instance vi: Master on eth0 vrid 51 (v3)  priority 150 (configured 150)  VIPs 198.18.0.100/24"),
        "{text}"
    );
    let out = ha(h1, &["status", "-c", &cfg, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status --json");
    assert_eq!(v["instances"]["vi"]["state"], "Master");
    assert!(v["ebpf"].as_str().unwrap().starts_with("XDP on eth0"));

    // Metrics: scrape, parse every sample, check the ones that matter.
    let body = http(
        h1,
        "198.18.0.1:9405",
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let (head, body) = body.split_once("\r\n\r\n").expect("HTTP reply");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text; version=1.0.0"),
        "{head}"
    );
    assert!(
        body.ends_with("# EOF\n"),
        "OpenMetrics text ends with # EOF"
    );
    // Only /metrics, only GET (and HEAD), a bounded request head.
    let r = http(
        h1,
        "198.18.0.1:9405",
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(r.starts_with("HTTP/1.1 404"), "{r}");
    let r = http(
        h1,
        "198.18.0.1:9405",
        b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert!(r.starts_with("HTTP/1.1 405"), "{r}");
    let mut huge = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 64 * 1024));
    huge.extend(b"\r\nConnection: close\r\n\r\n");
    let r = http(h1, "198.18.0.1:9405", &huge);
    assert!(
        r.is_empty() || r.starts_with("HTTP/1.1 431"),
        "a 64 KiB header: {r:.200}"
    );
    let mut samples = std::collections::HashMap::new();
    for l in body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (k, v) = l.rsplit_once(' ').expect("sample line");
        let v: f64 = v.parse().unwrap_or_else(|_| panic!("value in {l:?}"));
        samples.insert(k.to_owned(), v);
    }
    assert_eq!(
        samples.get("ha_vrrp_state{vrrp_instance=\"vi\",state=\"master\"}"),
        Some(&1.0)
    );
    assert_eq!(
        samples.get("ha_vrrp_state{vrrp_instance=\"vi\",state=\"backup\"}"),
        Some(&0.0)
    );
    assert_eq!(
        samples.get("ha_vrrp_priority{vrrp_instance=\"vi\"}"),
        Some(&150.0)
    );
    assert!(samples["ha_vrrp_adverts_sent_total{vrrp_instance=\"vi\"}"] >= 1.0);
    assert!(samples["ha_vrrp_transitions_total{vrrp_instance=\"vi\"}"] >= 2.0);
    assert!(samples.contains_key("ha_xdp_drops_total{reason=\"ttl\"}"));

    // JSON logs: every line an object; the state change has its reason.
    let log = n1.proc.log();
    let mut changes = Vec::new();
    for l in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        if let Some(m) = v["message"].as_str()
            && m.contains("-> MASTER")
        {
            changes.push(v.clone());
        }
    }
    assert!(
        changes.iter().any(|c| c["message"]
            .as_str()
            .unwrap()
            .contains("BACKUP -> MASTER: master down")
            && c["instance"] == "vi"),
        "{changes:?}"
    );
}

#[test]
fn sighup_keeps_unchanged_instances_applies_changes_and_rejects_an_invalid_config() {
    require_root();
    let lan = Lan::new("hat", 1).unwrap();
    let h1 = lan.host(1);
    let dir = TempDir::new("reload").unwrap();
    let a = instance("a", 51, 150, "198.18.0.101");
    let b = instance("b", 52, 150, "198.18.0.102");
    let mut n1 = Daemon::start(h1, &dir, "n1", &format!("{a}{b}"), &[]).unwrap();
    n1.wait_state("a", "Master", Duration::from_secs(5));
    n1.wait_state("b", "Master", Duration::from_secs(5));
    let a_before = n1.instance("a").unwrap()["transitions_total"].clone();
    let text = std::fs::read_to_string(&n1.config).unwrap();
    let node = &text[..text.find("[[instance]]").unwrap()];

    // b changes (a new VIP), c is added, a is untouched.
    let b2 = instance("b", 52, 150, "198.18.0.112");
    let c = instance("c", 53, 150, "198.18.0.103");
    std::fs::write(&n1.config, format!("{node}{a}{b2}{c}")).unwrap();
    // Watch a's VIP through the reload: it must never go away.
    let watch = {
        let ns = h1.ns.name().to_owned();
        std::thread::spawn(move || {
            let mut missing = 0;
            for _ in 0..100 {
                let out = std::process::Command::new("ip")
                    .args(["-n", &ns, "-o", "addr", "show", "dev", "eth0"])
                    .output()
                    .unwrap();
                if !String::from_utf8_lossy(&out.stdout).contains("198.18.0.101/24") {
                    missing += 1;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            missing
        })
    };
    n1.proc.signal(libc::SIGHUP);
    n1.wait_state("c", "Master", Duration::from_secs(5));
    let b_vips = wait_for(Duration::from_secs(5), || {
        let v = n1.instance("b")?;
        (v["state"] == "Master" && v["vips"][0] == "198.18.0.112/24").then_some(())
    });
    assert!(
        b_vips.is_some(),
        "b restarted with its new VIP: {:?}",
        n1.instance("b")
    );
    assert_eq!(
        watch.join().unwrap(),
        0,
        "a's VIP disappeared during the reload"
    );
    assert_eq!(n1.instance("a").unwrap()["transitions_total"], a_before);
    let addrs = h1.addresses();
    assert!(
        !addrs.iter().any(|x| x.starts_with("198.18.0.102/")),
        "b's old VIP removed: {addrs:?}"
    );
    assert!(
        n1.proc.log().contains("reloaded")
            && n1
                .proc
                .log()
                .contains("1 instance(s) unchanged, 1 stopped, 2 started"),
        "{}",
        n1.proc.log()
    );

    // An invalid config is rejected whole: nothing changes, the error is logged.
    let bad = instance("d", 0, 150, "198.18.0.104");
    std::fs::write(&n1.config, format!("{node}{a}{bad}")).unwrap();
    n1.proc.signal(libc::SIGHUP);
    let logged = wait_for(Duration::from_secs(5), || {
        n1.proc
            .log()
            .lines()
            .find(|l| l.contains("the running config is kept"))
            .map(str::to_owned)
    })
    .expect("the rejection is logged");
    assert!(
        logged.contains("vrid: 0 is reserved") && logged.contains(".toml:"),
        "{logged}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(n1.proc.alive());
    for i in ["a", "b", "c"] {
        assert_eq!(n1.state(i).as_deref(), Some("Master"), "{i} kept");
    }
    assert!(n1.instance("d").is_none());
}

#[test]
fn a_config_that_cannot_run_here_says_what_exists() {
    require_root();
    let lan = Lan::new("hat", 1).unwrap();
    let h1 = lan.host(1);
    let dir = TempDir::new("runerr").unwrap();
    // An interface that does not exist: refused, with the list of those that do.
    let conf = instance("vi", 51, 150, "198.18.0.100").replace("\"eth0\"", "\"eth9\"");
    let mut n1 = Daemon::start(h1, &dir, "n1", &conf, &[]).unwrap();
    let code = n1.proc.wait();
    assert_ne!(code, Some(0));
    let log = n1.proc.log();
    assert!(
        log.contains("interface \"eth9\" does not exist (interfaces here: eth0, lo)"),
        "{log}"
    );
    // A VIP outside every subnet of its interface runs, with a warning.
    let conf = instance("vi", 51, 150, "10.9.9.9");
    let mut n2 = Daemon::start(h1, &dir, "n2", &conf, &[]).unwrap();
    n2.wait_state("vi", "Master", Duration::from_secs(5));
    assert!(
        n2.proc
            .log()
            .contains("VIP 10.9.9.9/24 is outside every subnet of eth0 (198.18.0.1/24"),
        "{}",
        n2.proc.log()
    );
}

#[test]
fn check_config_prints_the_effective_config_with_secrets_masked() {
    require_root();
    let lan = Lan::new("hat", 1).unwrap();
    let h1 = lan.host(1);
    let dir = TempDir::new("check").unwrap();
    let path = dir.path().join("ha.toml");
    std::fs::write(
        &path,
        "[node]\nname = \"h1\"\n\n[[instance]]\nname = \"vi\"\ninterface = \"eth0\"\nvrid = 51\nversion = 2\n\
         vips = [\"198.18.0.100/24\"]\nauth_pass = \"s3cret\"\n",
    )
    .unwrap();
    let out = ha(h1, &["check-config", "-c", path.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        !text.contains("s3cret") && text.contains("auth_pass = \"********\""),
        "{text}"
    );
    // Defaults are filled in.
    for want in [
        "priority = 100",
        "advert_interval_ms = 1000",
        "preempt = true",
        "garp_repeat = 3",
    ] {
        assert!(text.contains(want), "{want} in {text}");
    }
    std::fs::write(
        &path,
        std::fs::read_to_string(&path)
            .unwrap()
            .replace("version = 2", "version = 2\nadvert_interval_ms = 1500"),
    )
    .unwrap();
    let out = ha(h1, &["check-config", "-c", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}:9: [[instance]] \"vi\" advert_interval_ms: 1500 is not valid for VRRPv2",
            path.display()
        )),
        "{err}"
    );
}

/// Reads `config/NAME`, stages it with this build's binary in a temp dir
/// and asserts that `systemd-analyze verify` accepts it without a word;
/// returns the unit's text and the dir.
fn verified_unit(name: &str) -> (String, TempDir) {
    let unit =
        std::fs::read_to_string(ha_testbed::workspace_root().join("config").join(name)).unwrap();
    let dir = TempDir::new("unit").unwrap();
    let staged = dir.path().join(name);
    let bin = ha_testbed::daemon::binary();
    std::fs::write(
        &staged,
        unit.replace("/usr/local/bin/ha-daemon", bin.to_str().unwrap()),
    )
    .unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&staged)
        .output()
        .expect("systemd-analyze");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (unit, dir)
}

/// The unit in config/ passes systemd's own check, and the daemon does its
/// whole job (raw sockets, VIPs, XDP with pinned maps) with no more than the
/// capabilities the unit grants.
#[test]
fn the_systemd_unit_is_valid_and_its_capabilities_are_enough() {
    require_root();
    let (unit, dir) = verified_unit("ha-daemon.service");
    let bin = ha_testbed::daemon::binary();
    let caps: Vec<String> = unit
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("CapabilityBoundingSet")
        .split_whitespace()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect();
    assert!(!caps.iter().any(|c| c == "+sys_admin"), "{caps:?}");

    let lan = Lan::new("hat", 1).unwrap();
    let h1 = lan.host(1);
    let pin_dir = dir.pin_root().join("n1");
    let run_dir = dir.path().join("run-n1");
    let conf = dir.path().join("n1.toml");
    std::fs::write(
        &conf,
        format!(
            "[node]\nname = \"n1\"\nrun_dir = \"{}\"\nbpf_pin_dir = \"{}\"\n\n{}",
            run_dir.display(),
            pin_dir.display(),
            instance("vi", 51, 150, "198.18.0.100")
        ),
    )
    .unwrap();
    let mut cmd = h1.ns.command("setpriv");
    cmd.arg(format!("--bounding-set=-all,{}", caps.join(",")))
        .arg(&bin)
        .args(["run", "-c"])
        .arg(&conf);
    let mut p = h1
        .ns
        .spawn("ha-daemon (unit caps)", cmd, dir.path().join("n1.log"))
        .unwrap();
    let status = || -> Option<serde_json::Value> {
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("status.json")).ok()?).ok()
    };
    let master = wait_for(Duration::from_secs(5), || {
        let s = status()?;
        (s["instances"]["vi"]["state"] == "Master").then_some(s)
    });
    let s =
        master.unwrap_or_else(|| panic!("not master with the unit's capabilities\n{}", p.log()));
    assert!(
        s["ebpf"].as_str().unwrap().starts_with("XDP on eth0"),
        "{}\n{}",
        s["ebpf"],
        p.log()
    );
    assert!(
        h1.addresses()
            .iter()
            .any(|a| a.starts_with("198.18.0.100/"))
    );
    p.signal(libc::SIGTERM);
    assert_eq!(p.wait(), Some(0), "{}", p.log());
}

#[test]
fn a_master_with_no_backup_to_hand_over_to_says_so_and_stays_master() {
    require_root();
    let lan = Lan::new("hat", 1).unwrap();
    let h1 = lan.host(1);
    let dir = TempDir::new("ops").unwrap();
    let mut n1 = Daemon::start(
        h1,
        &dir,
        "n1",
        &instance("vi", 51, 150, "198.18.0.100"),
        &[],
    )
    .unwrap();
    n1.wait_state("vi", "Master", Duration::from_secs(5));
    let cfg = n1.config.to_str().unwrap().to_owned();
    let out = ha(h1, &["switchover", "-c", &cfg]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("NOT switched over") && err.contains("no backup took over"),
        "{err}"
    );
    assert_eq!(n1.state("vi").as_deref(), Some("Master"));
    assert!(h1.addresses().iter().any(|a| a == "198.18.0.100/24"));
    let log = n1.proc.log();
    assert!(log.contains("hand-over cancelled"), "{log}");
}

/// The witness's unit passes systemd's check, and a witness runs with none
/// of the capabilities it drops (an empty bounding set): it votes, shows its
/// status and metrics, in a few MB.
#[test]
fn the_witness_unit_is_valid_and_a_witness_needs_no_capability() {
    require_root();
    let (unit, dir) = verified_unit("ha-witness.service");
    let bin = ha_testbed::daemon::binary();
    assert!(
        unit.contains("\nCapabilityBoundingSet=\n"),
        "no capabilities"
    );

    let lan = Lan::new("hat", 1).unwrap();
    let h1 = lan.host(1);
    let key = dir.path().join("quorum.key");
    std::fs::write(&key, "0123456789abcdef0123456789abcdef").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let run_dir = dir.path().join("run-w");
    let conf = dir.path().join("witness.toml");
    std::fs::write(
        &conf,
        format!(
            "[node]\nname = \"w\"\nrun_dir = \"{}\"\nmetrics = \"198.18.0.1:9406\"\n\n[quorum]\npeers = [\"198.18.0.2\", \"198.18.0.3\"]\nkey_file = \"{}\"\n",
            run_dir.display(),
            key.display()
        ),
    )
    .unwrap();
    let check = ha(h1, &["check-config", "-c", conf.to_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&check.stderr).contains("OK (a witness)"),
        "{check:?}"
    );
    // A key others can read is refused, as OpenSSH refuses such a private
    // key, naming the mode and the fix.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let bad = ha(h1, &["check-config", "-c", conf.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&bad.stderr);
        assert!(!bad.status.success(), "a 0644 key is accepted: {err}");
        assert!(
            err.contains("key_file") && err.contains("mode 0644") && err.contains("chmod 600"),
            "{err}"
        );
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let mut cmd = h1.ns.command("setpriv");
    cmd.args(["--bounding-set=-all", "--inh-caps=-all"])
        .arg(&bin)
        .args(["witness", "-c"])
        .arg(&conf);
    let mut p = h1
        .ns
        .spawn("witness (no caps)", cmd, dir.path().join("w.log"))
        .unwrap();
    let status = wait_for(Duration::from_secs(5), || {
        let s: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(run_dir.join("status.json")).ok()?)
                .ok()?;
        (s["quorum"]["role"] == "witness").then_some(s)
    })
    .unwrap_or_else(|| panic!("no witness status\n{}", p.log()));
    assert_eq!(status["quorum"]["voters"], 3);
    assert_eq!(status["quorum"]["majority"], 2);
    let metrics = http(
        h1,
        "198.18.0.1:9406",
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(
        metrics.contains("ha_quorum_voters{kind=\"majority\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ha_quorum_peer_heard_seconds{peer=\"198.18.0.2\"} -1"),
        "{metrics}"
    );
    let rss_kb: u64 = std::fs::read_to_string(format!("/proc/{}/status", p.pid()))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    println!("witness RSS: {rss_kb} kB");
    // A few MB: ~8 MB for the release build, ~17 MB for the debug one the
    // tests run (its larger binary is mapped in).
    assert!(rss_kb < 24 * 1024, "a witness in a few MB: {rss_kb} kB");
    p.signal(libc::SIGTERM);
    assert_eq!(p.wait(), Some(0), "{}", p.log());
}

/// `ha-daemon generate DIR`: a man page in section 8 for the command and
/// each subcommand and ha-daemon.toml(5), which groff renders without a
/// warning, and completions
/// for bash (valid syntax), zsh and fish that know the subcommands.
#[test]
fn man_pages_and_completions_are_generated_from_the_command_definitions() {
    let dir = TempDir::new("hgen").unwrap();
    let out = std::process::Command::new(ha_testbed::daemon::binary())
        .arg("generate")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for page in [
        "ha-daemon",
        "ha-daemon-run",
        "ha-daemon-witness",
        "ha-daemon-check-config",
        "ha-daemon-status",
        "ha-daemon-switchover",
        "ha-daemon-promote",
        "ha-daemon-inspect",
        "ha-daemon-import-keepalived",
        "ha-daemon.toml",
    ] {
        let file = if page.ends_with(".toml") {
            format!("{page}.5")
        } else {
            format!("{page}.8")
        };
        let path = dir.path().join(&file);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(text.contains(".TH"), "{file} is a man page");
        let g = std::process::Command::new("groff")
            .args(["-man", "-ww", "-z"])
            .arg(&path)
            .output()
            .expect("groff (groff-base) renders man pages");
        assert!(
            g.status.success() && g.stderr.is_empty(),
            "{file}: {}",
            String::from_utf8_lossy(&g.stderr)
        );
    }
    // ha-daemon.toml(5) is the README's Configuration section: every key
    // of the README's table is in it.
    let conf = std::fs::read_to_string(dir.path().join("ha-daemon.toml.5")).unwrap();
    for key in [
        "max_staleness_ms",
        "allow_empty_master",
        "flap_hold_max_ms",
        "track_interval_ms",
    ] {
        assert!(conf.contains(key), "ha-daemon.toml(5) lacks {key}");
    }
    let main = std::fs::read_to_string(dir.path().join("ha-daemon.8")).unwrap();
    assert!(
        main.contains("switchover") && main.contains("witness"),
        "the subcommands are listed"
    );
    let bash = dir.path().join("ha-daemon.bash");
    let check = std::process::Command::new("bash")
        .arg("-n")
        .arg(&bash)
        .status()
        .unwrap();
    assert!(check.success(), "the bash completion parses");
    for f in ["ha-daemon.bash", "_ha-daemon", "ha-daemon.fish"] {
        let t = std::fs::read_to_string(dir.path().join(f)).unwrap();
        assert!(
            t.contains("switchover") && t.contains("accept-loss"),
            "{f} completes subcommands and flags"
        );
    }
}

/// The alert rules pass `promtool check rules` and their unit tests
/// (`promtool test rules`: they fire on the series they are for and stay
/// quiet on a healthy cluster), and the rules and the Grafana dashboard
/// name only metrics the daemon exports.
#[test]
fn alert_rules_and_dashboard_check_out() {
    let root = ha_testbed::workspace_root();
    let promtool = root.join("target/tools/promtool");
    assert!(
        promtool.is_file(),
        "{} missing: `cargo xtask setup` installs it",
        promtool.display()
    );
    let rules = root.join("config/prometheus/ha-daemon.rules.yml");
    for args in [
        vec![
            "check".to_string(),
            "rules".into(),
            rules.display().to_string(),
        ],
        vec![
            "test".into(),
            "rules".into(),
            root.join("tests/fixtures/prometheus/ha-daemon.rules.test.yml")
                .display()
                .to_string(),
        ],
    ] {
        let out = std::process::Command::new(&promtool)
            .args(&args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let dashboard_path = root.join("config/prometheus/ha-daemon.grafana.json");
    let dashboard = std::fs::read_to_string(&dashboard_path).unwrap();
    let d: serde_json::Value = serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    assert!(d["panels"].as_array().is_some_and(|p| p.len() >= 10));
    let exported = std::fs::read_to_string(root.join("ha-daemon/src/metrics.rs")).unwrap();
    let text = format!("{}\n{dashboard}", std::fs::read_to_string(&rules).unwrap());
    let mut named = 0;
    for (i, _) in text.match_indices("ha_") {
        let name: String = text[i..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        assert!(
            exported.contains(&format!("\"{name}\"")),
            "{name} is not a metric the daemon exports"
        );
        named += 1;
    }
    assert!(named > 20);
}
