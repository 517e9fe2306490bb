//! The Debian package as an operator meets it: `cargo xtask deb` (with the
//! debug binary the other tests use, uncompressed), installed with dpkg into
//! a fresh root, its examples accepted by `check-config`, its units by
//! `systemd-analyze verify`, upgraded over itself with a local edit kept,
//! removed leaving only the conffiles, purged leaving nothing.
use std::{
    collections::BTreeSet,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use ha_testbed::{TempDir, require_root, workspace_root};

/// dpkg on the root at `root`, maintainer scripts run outside it (they
/// honour `DPKG_ROOT` and touch no running system then).
fn dpkg(root: &Path, args: &[&str]) -> std::process::Output {
    let out = Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args([
            "--force-script-chrootless",
            "--force-depends",
            "--log=/dev/null",
        ])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("dpkg");
    assert!(
        out.status.success(),
        "dpkg {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Every path under `root` but dpkg's own database and log dir.
fn tree(root: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().to_string();
            if rel == "var" || rel.starts_with("var/lib") || rel.starts_with("var/log") {
                continue;
            }
            if p.is_dir() {
                todo.push(p.clone());
            }
            out.insert(rel);
        }
    }
    out
}

fn check_config(bin: &Path, conf: &Path) {
    let out = Command::new(bin)
        .args(["check-config", "-c"])
        .arg(conf)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "check-config {}: {}",
        conf.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_package_installs_upgrades_and_removes_cleanly() {
    require_root();
    let xtask = workspace_root().join("target/debug/xtask");
    assert!(
        xtask.is_file(),
        "{} missing: `cargo xtask test` builds it (or `cargo build -p xtask`)",
        xtask.display()
    );
    let tmp = TempDir::new("deb").unwrap();
    let out_dir = tmp.path().join("out");
    let built = Command::new(&xtask)
        .args(["deb", "--fast", "--binary"])
        .arg(ha_testbed::daemon::binary())
        .arg("--out")
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "cargo xtask deb: {}{}",
        String::from_utf8_lossy(&built.stdout),
        String::from_utf8_lossy(&built.stderr)
    );
    let deb: PathBuf = std::fs::read_dir(&out_dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .expect("a .deb");
    let name = deb.file_name().unwrap().to_string_lossy().to_string();
    assert!(
        name.starts_with("ha-daemon_") && name.ends_with("_amd64.deb"),
        "{name}"
    );

    // A fresh root: an empty dpkg database and nothing else.
    let root = tmp.path().join("root");
    for d in ["var/lib/dpkg/info", "var/lib/dpkg/updates", "var/log"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    for f in ["var/lib/dpkg/status", "var/lib/dpkg/available"] {
        std::fs::write(root.join(f), "").unwrap();
    }
    let deb_s = deb.to_str().unwrap();
    dpkg(&root, &["-i", deb_s]);
    let installed = tree(&root);
    for f in [
        "usr/sbin/ha-daemon",
        "lib/systemd/system/ha-daemon.service",
        "lib/systemd/system/ha-witness.service",
        "etc/ha-daemon/ha.toml",
        "etc/ha-daemon/witness.toml",
        "usr/share/doc/ha-daemon/README.md",
        "usr/share/doc/ha-daemon/copyright",
        "usr/share/doc/ha-daemon/examples/prometheus/ha-daemon.rules.yml",
        "usr/share/doc/ha-daemon/examples/prometheus/ha-daemon.grafana.json",
        "usr/share/man/man8/ha-daemon.8.gz",
        "usr/share/man/man8/ha-daemon-switchover.8.gz",
        "usr/share/man/man5/ha-daemon.toml.5.gz",
        "usr/share/bash-completion/completions/ha-daemon",
        "usr/share/zsh/vendor-completions/_ha-daemon",
        "usr/share/fish/vendor_completions.d/ha-daemon.fish",
    ] {
        assert!(installed.contains(f), "{f} not installed: {installed:?}");
    }
    // The config dir is not world-readable and holds no key.
    let mode = std::fs::metadata(root.join("etc/ha-daemon"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o750, "/etc/ha-daemon is {mode:o}");
    assert!(
        !installed.iter().any(|f| f.ends_with(".key")),
        "the package ships no key: {installed:?}"
    );
    let conffiles =
        std::fs::read_to_string(root.join("var/lib/dpkg/info/ha-daemon.conffiles")).unwrap();
    assert!(
        conffiles.contains("/etc/ha-daemon/ha.toml")
            && conffiles.contains("/etc/ha-daemon/witness.toml")
    );

    // The shipped examples pass check-config (the witness's once given the
    // key it names, made as an operator would: 0600).
    let bin = root.join("usr/sbin/ha-daemon");
    check_config(&bin, &root.join("etc/ha-daemon/ha.toml"));
    let key = root.join("etc/ha-daemon/quorum.key");
    std::fs::write(&key, "0123456789abcdef0123456789abcdef\n").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let witness = tmp.path().join("witness.toml");
    std::fs::write(
        &witness,
        std::fs::read_to_string(root.join("etc/ha-daemon/witness.toml"))
            .unwrap()
            .replace("/etc/ha-daemon/quorum.key", key.to_str().unwrap()),
    )
    .unwrap();
    check_config(&bin, &witness);
    std::fs::remove_file(&key).unwrap();

    // The installed units pass systemd's check (their binary path pointed
    // into the root, the host's systemd judging the rest).
    for unit in ["ha-daemon.service", "ha-witness.service"] {
        let text = std::fs::read_to_string(root.join("lib/systemd/system").join(unit)).unwrap();
        assert!(text.contains("ExecStart=/usr/sbin/ha-daemon "), "{unit}");
        let staged = tmp.path().join(unit);
        std::fs::write(
            &staged,
            text.replace("/usr/sbin/ha-daemon", bin.to_str().unwrap()),
        )
        .unwrap();
        let v = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&staged)
            .output()
            .expect("systemd-analyze");
        assert!(
            v.status.success() && v.stderr.is_empty(),
            "systemd-analyze verify {unit}: {}",
            String::from_utf8_lossy(&v.stderr)
        );
    }

    // No maintainer script starts, restarts or enables a service.
    for script in ["postinst", "prerm", "postrm"] {
        let text =
            std::fs::read_to_string(root.join(format!("var/lib/dpkg/info/ha-daemon.{script}")))
                .unwrap();
        // What it runs, not what it says or explains.
        let text: String = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.starts_with('#') && !l.starts_with("echo"))
            .collect::<Vec<_>>()
            .join("\n");
        for verb in [
            "start",
            "restart",
            "try-restart",
            "enable",
            "reload-or-restart",
        ] {
            assert!(
                !text.contains(&format!("systemctl {verb}")),
                "{script} runs systemctl {verb}"
            );
        }
    }

    // Upgrade (the same version over itself): an operator's edit stays.
    let conf = root.join("etc/ha-daemon/ha.toml");
    let edited = format!(
        "{}\n# edited by the operator\n",
        std::fs::read_to_string(&conf).unwrap()
    );
    std::fs::write(&conf, &edited).unwrap();
    dpkg(&root, &["-i", deb_s]);
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), edited);

    // Remove: only the conffiles (and their dir) stay; purge: nothing.
    dpkg(&root, &["-r", "ha-daemon"]);
    let left = tree(&root);
    let expected: BTreeSet<String> = [
        "etc",
        "etc/ha-daemon",
        "etc/ha-daemon/ha.toml",
        "etc/ha-daemon/witness.toml",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(left, expected, "after dpkg -r");
    dpkg(&root, &["--purge", "ha-daemon"]);
    let left = tree(&root);
    assert!(left.is_empty(), "after dpkg --purge: {left:?}");
}
