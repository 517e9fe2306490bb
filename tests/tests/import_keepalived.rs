//! `ha-daemon import-keepalived` on keepalived.conf files written the way the
//! keepalived + Redis guides write them: each converts to a config that
//! `check-config` accepts, with the settings carried over and every line it
//! could not convert listed with its line number.
use std::{os::unix::fs::PermissionsExt, path::Path, process::Command};

use ha_testbed::{TempDir, daemon::binary, workspace_root};

/// Copies a fixture into `dir`, pointing its scripts at `dir`, and writes
/// those scripts (the guides' role scripts run REPLICAOF).
fn fixture(dir: &Path, name: &str) -> std::path::PathBuf {
    let script = |n: &str, body: &str| {
        let p = dir.join(n);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    script("redis_master.sh", "redis-cli REPLICAOF NO ONE");
    script("redis_backup.sh", "redis-cli SLAVEOF 10.0.0.1 6379");
    script("redis_fault.sh", "logger redis fault");
    script("log_stop.sh", "logger keepalived stopped");
    script("notify.sh", "logger \"$@\"");
    let text = std::fs::read_to_string(
        workspace_root()
            .join("tests/fixtures/keepalived")
            .join(name),
    )
    .unwrap()
    .replace("@DIR@", dir.to_str().unwrap());
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn import(conf: &Path, out: &Path) -> String {
    let o = Command::new(binary())
        .arg("import-keepalived")
        .arg(conf)
        .arg("-o")
        .arg(out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{err}");
    let check = Command::new(binary())
        .args(["check-config", "-c"])
        .arg(out)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "check-config on the import: {}\n{}",
        String::from_utf8_lossy(&check.stderr),
        std::fs::read_to_string(out).unwrap()
    );
    err
}

fn table(out: &Path) -> toml::Value {
    toml::from_str(&std::fs::read_to_string(out).unwrap()).unwrap()
}

#[test]
fn the_guides_master_with_health_script_and_role_scripts() {
    let dir = TempDir::new("import").unwrap();
    let conf = fixture(dir.path(), "guide-master.conf");
    let out = dir.path().join("ha.toml");
    let err = import(&conf, &out);
    let t = table(&out);
    assert_eq!(t["node"]["name"].as_str(), Some("redis01"));
    let i = &t["instance"][0];
    assert_eq!(i["name"].as_str(), Some("VI_1"));
    assert_eq!(i["interface"].as_str(), Some("eth0"));
    assert_eq!(i["vrid"].as_integer(), Some(51));
    assert_eq!(i["version"].as_integer(), Some(2));
    assert_eq!(i["priority"].as_integer(), Some(101));
    assert_eq!(i["advert_interval_ms"].as_integer(), Some(1000));
    assert_eq!(i["vips"][0].as_str(), Some("10.0.0.100/24"));
    // The VRRP password is carried over (the file is 0600), never shown.
    assert_eq!(i["auth_pass"].as_str(), Some("redis123"));
    assert!(!err.contains("redis123"));
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&out).unwrap().mode() & 0o777, 0o600);
    // The PING script became the Redis health settings.
    let r = &i["redis"];
    assert_eq!(r["address"].as_str(), Some("127.0.0.1:6379"));
    assert_eq!(r["weight"].as_integer(), Some(20));
    assert_eq!(
        (r["fall"].as_integer(), r["rise"].as_integer()),
        (Some(2), Some(1))
    );
    // Role scripts are replaced; the others kept.
    let n = &i["notify"];
    assert!(
        n.get("master").is_none() && n.get("backup").is_none(),
        "{n}"
    );
    assert!(n["fault"].as_str().unwrap().ends_with("redis_fault.sh"));
    assert!(n["stop"].as_str().unwrap().ends_with("log_stop.sh"));
    let file = conf.display();
    for want in [
        format!("{file}:6: not converted: notification_email {{ ... }}: no ha-daemon equivalent"),
        format!("{file}:9: not converted: smtp_server 127.0.0.1: no ha-daemon equivalent"),
        format!(
            "{file}:14: not converted: interval 2: ha-daemon checks every redis.check_interval_ms (100)"
        ),
        format!(
            "{file}:21: not converted: state MASTER: the initial state comes from the priority"
        ),
        format!(
            "{file}:36: not converted: notify_master {}/redis_master.sh: runs REPLICAOF/SLAVEOF: replaced by [instance.redis]",
            dir.path().display()
        ),
        format!(
            "{file}:37: not converted: notify_backup {}/redis_backup.sh: runs REPLICAOF/SLAVEOF",
            dir.path().display()
        ),
    ] {
        assert!(err.contains(&want), "missing {want:?} in\n{err}");
    }
    // The same list heads the output file.
    assert!(
        std::fs::read_to_string(&out)
            .unwrap()
            .contains("#   21: state MASTER:")
    );
}

#[test]
fn a_unicast_v3_backup_with_nopreempt_and_unrelated_blocks() {
    let dir = TempDir::new("import").unwrap();
    let conf = fixture(dir.path(), "guide-backup-unicast.conf");
    let out = dir.path().join("ha.toml");
    let err = import(&conf, &out);
    let t = table(&out);
    assert_eq!(t["node"]["name"].as_str(), Some("redis-02"));
    let i = &t["instance"][0];
    assert_eq!(i["version"].as_integer(), Some(3));
    assert_eq!(i["advert_interval_ms"].as_integer(), Some(100));
    assert_eq!(i["preempt"].as_bool(), Some(false));
    assert_eq!(i["unicast_peers"][0].as_str(), Some("10.1.0.11"));
    assert_eq!(i["vips"][0].as_str(), Some("10.1.0.200/24"));
    // A positive weight is added while healthy: base 90 + 10, taken off on failure.
    assert_eq!(i["priority"].as_integer(), Some(100));
    assert_eq!(i["redis"]["weight"].as_integer(), Some(10));
    assert_eq!(i["redis"]["address"].as_str(), Some("127.0.0.1:6380"));
    assert_eq!(i["redis"]["port"].as_integer(), Some(6380));
    assert!(i["notify"]["all"].as_str().unwrap().ends_with("notify.sh"));
    let file = conf.display();
    for want in [
        format!(
            "{file}:11: not converted: script /usr/local/bin/redis-cli -h 127.0.0.1 -p 6380 -a ******** PING: the password on the command line"
        ),
        format!(
            "{file}:18: not converted: script /usr/local/bin/check_disk.sh: not a redis-cli PING"
        ),
        format!(
            "{file}:29: not converted: unicast_src_ip 10.1.0.12: ha-daemon sends from the interface's primary address"
        ),
        format!(
            "{file}:34: not converted: 10.1.0.200/24 dev ens5 label ens5:vip: `dev ens5 label ens5:vip` dropped"
        ),
        format!("{file}:38: not converted: check_disk: not a redis-cli PING script: not tracked"),
        format!("{file}:41: not converted: garp_master_delay 1: no ha-daemon equivalent"),
        format!(
            "{file}:44: not converted: virtual_server 10.1.0.200 6379 {{ ... }}: no ha-daemon equivalent"
        ),
    ] {
        assert!(err.contains(&want), "missing {want:?} in\n{err}");
    }
    // The password from the command line is never written out.
    assert!(!std::fs::read_to_string(&out).unwrap().contains("s3cret"));
    assert!(!err.contains("s3cret"));
}
