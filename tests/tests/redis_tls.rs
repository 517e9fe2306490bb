//! Redis over TLS only (no plain port, client certificates required, TLS
//! replication): the daemons replicate, check health, run the FIN/RST probe
//! and fail over over TLS, and a client writing through the VIP over TLS
//! loses nothing.
use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use ha_testbed::{
    Lan, TempDir,
    client::{self, Writer},
    daemon::Daemon,
    redis::{self, TestTls},
    require_root, wait_for,
};

const VIP: &str = "198.18.0.100";

#[test]
fn tls_only_redis_replicates_fails_over_and_loses_nothing() {
    require_root();
    let lan = Lan::new("hat", 3).unwrap();
    let (h1, h2, h3) = (lan.host(1), lan.host(2), lan.host(3));
    let dir = TempDir::new("tls").unwrap();
    let tls = TestTls::generate(dir.path()).unwrap();
    let args = tls.server_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut r1 = redis::start_args(h1, dir.path(), "r1", None, None, &args).unwrap();
    let _r2 = redis::start_args(h2, dir.path(), "r2", None, None, &args).unwrap();
    let conf = |prio: u8| {
        format!(
            "[[instance]]\nname = \"vi\"\ninterface = \"eth0\"\nvrid = 51\npriority = {prio}\nadvert_interval_ms = 10\n\
             vips = [\"{VIP}/24\"]\n\n[instance.redis]\ntls_ca_file = \"{}\"\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
            tls.ca.display(),
            tls.cert.display(),
            tls.key.display()
        )
    };
    let mut n1 = Daemon::start(h1, &dir, "n1", &conf(150), &[]).unwrap();
    let mut n2 = Daemon::start(h2, &dir, "n2", &conf(100), &[]).unwrap();
    n1.wait_state("vi", "Master", Duration::from_secs(10));
    n2.wait_state("vi", "Backup", Duration::from_secs(10));
    // Replication, the health check and the peer connection all speak TLS:
    // the backup's Redis streams from the master's and both are healthy.
    let ready = wait_for(Duration::from_secs(10), || {
        let v = n2.instance("vi")?;
        (v["redis"]["streaming"] == true
            && v["redis"]["role"] == "replica"
            && v["redis"]["health"] == "Up"
            && n1.instance("vi")?["redis"]["health"] == "Up")
            .then_some(())
    });
    assert!(
        ready.is_some(),
        "n1 {:?}\nn2 {:?}\n{}",
        n1.instance("vi"),
        n2.instance("vi"),
        n2.proc.log()
    );
    // Plain TCP gets nowhere: the daemons really used TLS.
    let plain = h3
        .ns
        .enter(|| {
            let mut c = client::connect("198.18.0.1:6379".parse().unwrap()).ok()?;
            client::call(&mut c, &["PING"]).ok()
        })
        .unwrap();
    assert_ne!(plain.as_deref(), Some("+PONG"));

    // Clients of the master's Redis that QUIT get a FIN from it, which the
    // backup's XDP program reports: its TLS probe must find Redis alive.
    let cfg = tls.client_config().unwrap();
    for _ in 0..5 {
        let c2 = cfg.clone();
        let pong = h2
            .ns
            .enter(move || {
                let mut c = client::connect_tls("198.18.0.1:6379".parse().unwrap(), &c2).ok()?;
                let pong = client::call(&mut c, &["PING"]).ok();
                // QUIT: Redis closes, so the FIN comes from it. Read to the
                // end (its TLS close_notify) before dropping: closing with
                // unread data sends an RST, which can reach Redis before it
                // closes, and then it sends no FIN at all.
                let _ = client::call(&mut c, &["QUIT"]);
                let _ = std::io::Read::read_to_end(&mut c, &mut Vec::new());
                pong
            })
            .unwrap();
        assert_eq!(pong.as_deref(), Some("+PONG"));
        std::thread::sleep(Duration::from_millis(300));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        n2.state("vi").as_deref(),
        Some("Backup"),
        "{}",
        n2.proc.log()
    );
    let log = n2.proc.log();
    assert!(
        log.contains("from the master's Redis 198.18.0.1:6379: checking it"),
        "the XDP program saw the FINs and the daemon checked: {log}"
    );
    assert!(!log.contains("does not answer"), "{log}");

    // Over TLS through the VIP: the master's Redis dies, the backup takes over.
    let w = Writer::start_tls(
        &h3.ns,
        format!("{VIP}:6379").parse::<SocketAddr>().unwrap(),
        "counter",
        cfg.clone(),
    );
    std::thread::sleep(Duration::from_millis(500));
    let fault = Instant::now();
    r1.signal(libc::SIGKILL);
    r1.wait();
    n2.wait_state("vi", "Master", Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(1000));
    let r = w.stop();
    let after = r.acked.iter().filter(|(t, _)| *t > fault).count();
    println!(
        "TLS, master's Redis killed: {} writes acknowledged ({after} after), longest gap {:?}",
        r.acked.len(),
        r.longest_gap()
    );
    assert!(after > 100, "writes resumed over TLS: {after}");
    assert!(r.went_back().is_empty(), "{:?}", r.went_back_detail());
}
