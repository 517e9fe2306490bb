//! ha-daemon and Debian's keepalived in one VRRP group, both ways round, v2 and
//! v3: each takes over when the other dies and gives back (preempt) when it
//! returns. tshark, an implementation independent of ours, decodes the adverts
//! ha-daemon sends and finds their checksums good.
use std::{net::Ipv4Addr, time::Duration};

use ha_testbed::{
    Host, Lan, Proc, TempDir,
    daemon::{Daemon, keepalived},
    require_root, wait_for,
};

const VIP: &str = "198.18.0.100";
const SETTLE: Duration = Duration::from_secs(15);

struct Group {
    version: u8,
    /// keepalived's advert_int, in seconds.
    interval: &'static str,
    interval_ms: u32,
    auth: Option<&'static str>,
}

impl Group {
    fn keepalived_conf(&self, state: &str, priority: u8) -> String {
        let auth = self
            .auth
            .map(|p| format!("  authentication {{\n    auth_type PASS\n    auth_pass {p}\n  }}\n"))
            .unwrap_or_default();
        format!(
            "global_defs {{\n  router_id ka\n}}\nvrrp_instance VI {{\n  state {state}\n  interface eth0\n  virtual_router_id 51\n  version {}\n  priority {priority}\n  advert_int {}\n{auth}  virtual_ipaddress {{\n    {VIP}/24\n  }}\n}}\n",
            self.version, self.interval
        )
    }

    fn ha_conf(&self, priority: u8) -> String {
        let auth = self
            .auth
            .map(|p| format!("auth_pass = \"{p}\"\n"))
            .unwrap_or_default();
        format!(
            "[[instance]]\nname = \"vi\"\ninterface = \"eth0\"\nvrid = 51\nversion = {}\npriority = {priority}\nadvert_interval_ms = {}\nvips = [\"{VIP}/24\"]\n{auth}",
            self.version, self.interval_ms
        )
    }
}

fn has_vip(h: &Host) -> bool {
    h.addresses()
        .iter()
        .any(|a| a.starts_with(&format!("{VIP}/")))
}

fn wait_vip(h: &Host, want: bool, what: &str, logs: &[&Proc]) {
    if wait_for(SETTLE, || (has_vip(h) == want).then_some(())).is_none() {
        let logs: Vec<String> = logs
            .iter()
            .map(|p| format!("--- {}\n{}", p.name, p.log()))
            .collect();
        panic!(
            "{what}: VIP on {} is {}, want {want}\n{}",
            h.name,
            has_vip(h),
            logs.join("\n")
        );
    }
}

/// Kills every keepalived process of a host (keepalived forks its VRRP child).
fn kill_keepalived(h: &Host, ka: &mut Proc) {
    ka.kill();
    h.ns.kill_all();
}

/// tshark on `h` decodes `count` adverts from `src`; returns their fields.
fn tshark_decode(h: &Host, src: Ipv4Addr, count: usize) -> Vec<Vec<String>> {
    let out =
        h.ns.exec(
            "timeout",
            &[
                "20",
                "tshark",
                "-i",
                "eth0",
                "-n",
                "-c",
                &count.to_string(),
                "-f",
                &format!("ip proto 112 and src host {src}"),
                "-o",
                "vrrp.v3_checksum_as_in_v2:FALSE",
                "-T",
                "fields",
                "-e",
                "vrrp.version",
                "-e",
                "vrrp.virt_rtr_id",
                "-e",
                "vrrp.prio",
                "-e",
                "vrrp.checksum.status",
                "-e",
                "ip.ttl",
                "-e",
                "vrrp.ip_addr",
                "-e",
                "vrrp.auth_string",
            ],
        )
        .expect("tshark captured our adverts");
    out.lines()
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect()
}

fn check_decoded(g: &Group, rows: &[Vec<String>], priority: u8) {
    assert!(!rows.is_empty());
    for r in rows {
        assert_eq!(r[0], g.version.to_string(), "version: {r:?}");
        assert_eq!(r[1], "51", "vrid: {r:?}");
        assert_eq!(r[2], priority.to_string(), "priority: {r:?}");
        // Wireshark's checksum status: 1 = good (0 = bad, 2 = unverified).
        assert_eq!(r[3], "1", "checksum status: {r:?}");
        assert_eq!(r[4], "255", "TTL: {r:?}");
        assert_eq!(r[5], VIP, "address: {r:?}");
        if let Some(p) = g.auth {
            assert_eq!(r[6], p, "v2 password: {r:?}");
        }
    }
}

/// keepalived master, ha-daemon backup; keepalived dies, comes back.
fn keepalived_master_ha_backup(g: Group) {
    require_root();
    let lan = Lan::new("hat", 2).unwrap();
    let (h1, h2) = (lan.host(1), lan.host(2));
    let dir = TempDir::new("interop").unwrap();
    let mut ka = keepalived(
        h1,
        dir.path(),
        "keepalived",
        &g.keepalived_conf("MASTER", 150),
    )
    .unwrap();
    wait_vip(h1, true, "keepalived master", &[&ka]);
    let mut n2 = Daemon::start(h2, &dir, "n2", &g.ha_conf(100), &[]).unwrap();
    n2.wait_state("vi", "Backup", SETTLE);
    // Follows keepalived: its advert source is the master we know.
    std::thread::sleep(Duration::from_millis(3 * u64::from(g.interval_ms)));
    assert_eq!(n2.instance("vi").unwrap()["master"], h1.addr4.to_string());
    assert_eq!(
        n2.state("vi").as_deref(),
        Some("Backup"),
        "stays backup under a live keepalived master"
    );
    assert!(!has_vip(h2));

    // keepalived dies with its host's address: ha-daemon takes over.
    kill_keepalived(h1, &mut ka);
    h1.ns
        .ip(&["addr", "del", &format!("{VIP}/24"), "dev", "eth0"])
        .ok();
    n2.wait_state("vi", "Master", SETTLE);
    wait_vip(h2, true, "ha-daemon took over", &[&n2.proc]);
    let rows = tshark_decode(h1, h2.addr4, 3);
    check_decoded(&g, &rows, 100);

    // keepalived returns with a higher priority: ha-daemon gives back.
    let ka2 = keepalived(
        h1,
        dir.path(),
        "keepalived2",
        &g.keepalived_conf("BACKUP", 150),
    )
    .unwrap();
    n2.wait_state("vi", "Backup", SETTLE);
    wait_vip(h2, false, "ha-daemon gave back", &[&n2.proc, &ka2]);
    wait_vip(h1, true, "keepalived master again", &[&ka2]);
}

/// ha-daemon master, keepalived backup; ha-daemon dies, comes back.
fn ha_master_keepalived_backup(g: Group) {
    require_root();
    let lan = Lan::new("hat", 2).unwrap();
    let (h1, h2) = (lan.host(1), lan.host(2));
    let dir = TempDir::new("interop").unwrap();
    let mut n1 = Daemon::start(h1, &dir, "n1", &g.ha_conf(150), &[]).unwrap();
    n1.wait_state("vi", "Master", SETTLE);
    let ka = keepalived(
        h2,
        dir.path(),
        "keepalived",
        &g.keepalived_conf("BACKUP", 100),
    )
    .unwrap();
    // keepalived accepts our adverts and stays backup.
    std::thread::sleep(
        Duration::from_millis(5 * u64::from(g.interval_ms)).max(Duration::from_secs(2)),
    );
    assert!(
        !has_vip(h2),
        "keepalived took the VIP from a live ha-daemon master:\n{}",
        ka.log()
    );
    assert!(has_vip(h1));
    let rows = tshark_decode(h2, h1.addr4, 3);
    check_decoded(&g, &rows, 150);

    // ha-daemon dies with its address: keepalived takes over.
    n1.proc.signal(libc::SIGKILL);
    n1.proc.wait();
    h1.ns
        .ip(&["addr", "del", &format!("{VIP}/24"), "dev", "eth0"])
        .unwrap();
    wait_vip(h2, true, "keepalived took over", &[&ka]);

    // ha-daemon returns with the higher priority and preempts.
    let mut n1b = Daemon::start(h1, &dir, "n1b", &g.ha_conf(150), &[]).unwrap();
    n1b.wait_state("vi", "Master", SETTLE);
    wait_vip(h1, true, "ha-daemon master again", &[&n1b.proc]);
    wait_vip(h2, false, "keepalived gave back", &[&ka]);
}

const V3: Group = Group {
    version: 3,
    interval: "0.1",
    interval_ms: 100,
    auth: None,
};
const V2: Group = Group {
    version: 2,
    interval: "1",
    interval_ms: 1000,
    auth: Some("s3cret"),
};

#[test]
fn v3_keepalived_master_ha_daemon_backup() {
    keepalived_master_ha_backup(V3);
}

#[test]
fn v3_ha_daemon_master_keepalived_backup() {
    ha_master_keepalived_backup(V3);
}

#[test]
fn v2_keepalived_master_ha_daemon_backup() {
    keepalived_master_ha_backup(V2);
}

#[test]
fn v2_ha_daemon_master_keepalived_backup() {
    ha_master_keepalived_backup(V2);
}
