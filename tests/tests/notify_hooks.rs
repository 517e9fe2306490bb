//! keepalived-style notify hooks: run on each state change with the same
//! arguments keepalived passes, off the state machine's path, killed after
//! their timeout; notify_stop runs before the daemon exits.
use std::{os::unix::fs::PermissionsExt, time::Duration};

use ha_testbed::{Lan, TempDir, daemon::Daemon, require_root, wait_for};

#[test]
fn hooks_run_on_transitions_with_keepalived_arguments_and_never_block() {
    require_root();
    let lan = Lan::new("hat", 1).unwrap();
    let h1 = lan.host(1);
    let dir = TempDir::new("notify").unwrap();
    let log = dir.path().join("notify.log");
    let script = |name: &str, body: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p.display().to_string()
    };
    let all = script("all.sh", &format!("echo \"$@\" >> {}", log.display()));
    let master = script(
        "master.sh",
        &format!("echo master-hook >> {}", log.display()),
    );
    // A hook that hangs: it must not hold up the state machine, and is killed.
    let hang = script("hang.sh", "exec sleep 30");
    let conf = format!(
        "[[instance]]\nname = \"vi\"\ninterface = \"eth0\"\nvrid = 51\npriority = 150\nadvert_interval_ms = 10\n\
         vips = [\"198.18.0.100/24\"]\n\n[instance.notify]\nall = \"{all}\"\nmaster = \"{master}\"\nbackup = \"{hang}\"\ntimeout_ms = 300\n"
    );
    let mut n1 = Daemon::start(h1, &dir, "n1", &conf, &[]).unwrap();
    // The hanging backup hook did not delay the takeover (Master_Down_Interval 36 ms).
    n1.wait_state("vi", "Master", Duration::from_secs(2));
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    let seen = wait_for(Duration::from_secs(3), || {
        let l = read();
        (l.contains("INSTANCE vi BACKUP 150")
            && l.contains("INSTANCE vi MASTER 150")
            && l.contains("master-hook"))
        .then_some(l)
    });
    assert!(
        seen.is_some(),
        "hook calls: {:?}\n{}",
        read(),
        n1.proc.log()
    );
    let hanging = || {
        let out = std::process::Command::new("pgrep")
            .args(["-f", "^sleep 30$"])
            .output()
            .unwrap();
        !out.stdout.is_empty()
    };
    let killed = wait_for(Duration::from_secs(3), || {
        (!hanging() && n1.proc.log().contains("killed after")).then_some(())
    });
    assert!(
        killed.is_some(),
        "the hanging hook was not killed after its timeout (still running: {})",
        hanging()
    );
    n1.proc.signal(libc::SIGTERM);
    assert_eq!(n1.proc.wait(), Some(0));
    assert!(
        read().contains("INSTANCE vi STOP 150"),
        "notify_stop ran before exit: {}",
        read()
    );
}
