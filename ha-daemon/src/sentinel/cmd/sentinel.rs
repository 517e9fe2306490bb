//! `SENTINEL <subcommand>`: the discovery commands clients send, answered
//! from the daemon's own view. Records are Sentinel's field lists with
//! every value a bulk string; a master this daemon cannot vouch for is
//! flagged `s_down,o_down` (and its address is withheld from
//! GET-MASTER-ADDR-BY-NAME), so clients ask another daemon.
use super::{lower, text};
use crate::sentinel::{
    Ctx,
    frame::Frame,
    id_for,
    model::{MasterView, ReplicaView},
};

/// `SENTINEL MASTER|MASTERS|GET-MASTER-ADDR-BY-NAME ...`: the questions
/// whose answer names a master (the connection may hold them briefly).
/// `Some(Some(name))` for one master, `Some(None)` for all of them.
pub fn asks_for_master(args: &[Vec<u8>]) -> Option<Option<&[u8]>> {
    if args.len() < 2 || lower(&args[0]) != "sentinel" {
        return None;
    }
    match (lower(&args[1]).as_str(), args.get(2)) {
        ("masters", None) => Some(None),
        ("master" | "get-master-addr-by-name", Some(n)) if args.len() == 3 => Some(Some(n)),
        _ => None,
    }
}

pub fn apply(ctx: &Ctx, args: &[Vec<u8>]) -> Frame {
    let Some(sub) = args.first() else {
        return super::wrong_args("sentinel");
    };
    let name = lower(sub);
    let rest = &args[1..];
    let views = ctx.views.borrow().clone();
    let find = |n: &[u8]| views.iter().find(|v| v.name.as_bytes() == n);
    let no_such = || Frame::err("ERR No such master with that name");
    let wrong = || super::wrong_args(&format!("sentinel|{name}"));
    match (name.as_str(), rest) {
        ("masters", []) => Frame::Array(views.iter().map(|v| master(ctx, v)).collect()),
        ("master", [n]) => find(n).map_or_else(no_such, |v| master(ctx, v)),
        ("replicas" | "slaves", [n]) => find(n).map_or_else(no_such, |v| {
            Frame::Array(v.replicas.iter().map(|r| replica(v, r)).collect())
        }),
        ("sentinels", [n]) => find(n).map_or_else(no_such, |_| {
            Frame::Array(ctx.sentinels.iter().map(sentinel).collect())
        }),
        ("get-master-addr-by-name", [n]) => match find(n) {
            Some(v) if v.up => Frame::Array(vec![
                Frame::bulk(v.ip.to_string()),
                Frame::bulk(v.port.to_string()),
            ]),
            _ => Frame::NullArray,
        },
        ("myid", []) => Frame::bulk(&ctx.myid),
        ("ckquorum", [n]) => match find(n) {
            Some(v) if v.up => Frame::Simple(format!(
                "OK {} usable Sentinels. Quorum and failover authorization can be reached",
                ctx.sentinels.len() + 1
            )),
            Some(_) => Frame::err(
                "NOQUORUM this daemon knows no live master for it: it is cut off, or in a minority",
            ),
            None => no_such(),
        },
        (
            "masters"
            | "master"
            | "replicas"
            | "slaves"
            | "sentinels"
            | "get-master-addr-by-name"
            | "myid"
            | "ckquorum",
            _,
        ) => wrong(),
        (
            "reset"
            | "failover"
            | "set"
            | "monitor"
            | "remove"
            | "flushconfig"
            | "config"
            | "is-master-down-by-addr"
            | "simulate-failure"
            | "debug"
            | "info-cache"
            | "pending-scripts",
            _,
        ) => Frame::err(format!(
            "ERR SENTINEL {} is not available: ha-daemon elects and configures the master itself (its config file, `ha-daemon switchover`)",
            text(sub).to_uppercase()
        )),
        _ => Frame::err(format!(
            "ERR unknown subcommand '{}'. Try SENTINEL HELP.",
            text(&sub[..sub.len().min(128)])
        )),
    }
}

/// The fields every Sentinel instance record starts with, in its order.
fn head(
    name: String,
    ip: String,
    port: u16,
    runid: String,
    flags: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("name", name),
        ("ip", ip),
        ("port", port.to_string()),
        ("runid", runid),
        ("flags", flags.into()),
        ("link-pending-commands", "0".into()),
        ("link-refcount", "1".into()),
        ("last-ping-sent", "0".into()),
        ("last-ok-ping-reply", "0".into()),
        ("last-ping-reply", "0".into()),
    ]
}

fn master(ctx: &Ctx, v: &MasterView) -> Frame {
    let flags = if v.up {
        "master"
    } else {
        "s_down,o_down,master"
    };
    let mut f = head(
        v.name.clone(),
        v.ip.to_string(),
        v.port,
        String::new(),
        flags,
    );
    if !v.up {
        f.push(("s-down-time", "0".into()));
        f.push(("o-down-time", "0".into()));
    }
    f.extend([
        ("down-after-milliseconds", "0".into()),
        ("info-refresh", "0".into()),
        ("role-reported", "master".into()),
        ("role-reported-time", "0".into()),
        ("config-epoch", v.epoch.to_string()),
        ("num-slaves", v.replicas.len().to_string()),
        ("num-other-sentinels", ctx.sentinels.len().to_string()),
        ("quorum", (ctx.sentinels.len() / 2 + 1).to_string()),
        ("failover-timeout", "0".into()),
        ("parallel-syncs", "1".into()),
    ]);
    Frame::record(f)
}

fn replica(m: &MasterView, r: &ReplicaView) -> Frame {
    let flags = if r.up {
        "slave"
    } else {
        "s_down,slave,disconnected"
    };
    let mut f = head(
        format!("{}:{}", r.ip, r.port),
        r.ip.clone(),
        r.port,
        String::new(),
        flags,
    );
    if !r.up {
        f.push(("s-down-time", "0".into()));
    }
    f.extend([
        ("down-after-milliseconds", "0".into()),
        ("info-refresh", "0".into()),
        ("role-reported", "slave".into()),
        ("role-reported-time", "0".into()),
        ("master-link-down-time", "0".into()),
        ("master-link-status", if r.up { "ok" } else { "err" }.into()),
        ("master-host", m.ip.to_string()),
        ("master-port", m.port.to_string()),
        ("slave-priority", "100".into()),
        ("slave-repl-offset", r.offset.to_string()),
        ("replica-announced", "1".into()),
    ]);
    Frame::record(f)
}

fn sentinel(peer: &std::net::SocketAddr) -> Frame {
    let id = id_for(peer);
    let mut f = head(
        id.clone(),
        peer.ip().to_string(),
        peer.port(),
        id,
        "sentinel",
    );
    f.extend([
        ("down-after-milliseconds", "0".into()),
        ("last-hello-message", "0".into()),
        ("voted-leader", "?".into()),
        ("voted-leader-epoch", "0".into()),
    ]);
    Frame::record(f)
}

#[cfg(test)]
mod tests {
    use crate::sentinel::cmd::{
        Session,
        tests::{ctx, enc, run},
    };

    #[test]
    fn discovery_replies() {
        let c = ctx();
        let mut s = Session::new(1, true);
        assert_eq!(
            enc(&run(&c, &mut s, "SENTINEL get-master-addr-by-name vi"), 2),
            "*2\r\n$8\r\n10.0.0.1\r\n$4\r\n6379\r\n"
        );
        assert_eq!(
            enc(&run(&c, &mut s, "SENTINEL get-master-addr-by-name nope"), 2),
            "*-1\r\n"
        );
        assert_eq!(
            enc(&run(&c, &mut s, "SENTINEL MASTER nope"), 2),
            "-ERR No such master with that name\r\n"
        );
        assert_eq!(
            enc(&run(&c, &mut s, "SENTINEL MASTER"), 2),
            "-ERR wrong number of arguments for 'sentinel|master' command\r\n"
        );
        assert_eq!(
            enc(&run(&c, &mut s, "SENTINEL FOO"), 2),
            "-ERR unknown subcommand 'FOO'. Try SENTINEL HELP.\r\n"
        );
        let m = enc(&run(&c, &mut s, "SENTINEL MASTERS"), 2);
        assert!(m.starts_with("*1\r\n*40\r\n$4\r\nname\r\n$2\r\nvi\r\n$2\r\nip\r\n$8\r\n10.0.0.1\r\n$4\r\nport\r\n$4\r\n6379\r\n"), "{m}");
        assert!(m.contains("$5\r\nflags\r\n$6\r\nmaster\r\n"), "{m}");
        assert!(
            m.contains("$19\r\nnum-other-sentinels\r\n$1\r\n2\r\n"),
            "{m}"
        );
        let r = enc(&run(&c, &mut s, "SENTINEL REPLICAS vi"), 3);
        assert!(r.starts_with("*1\r\n%"), "{r}");
        assert!(r.contains("$5\r\nflags\r\n$5\r\nslave\r\n"), "{r}");
        let p = enc(&run(&c, &mut s, "SENTINEL SENTINELS vi"), 2);
        assert!(p.starts_with("*2\r\n*28\r\n"), "{p}");
        assert_eq!(enc(&run(&c, &mut s, "SENTINEL MYID"), 2).len(), 5 + 40 + 2);
    }

    #[test]
    fn a_master_no_one_vouches_for_is_down_and_has_no_address() {
        let c = ctx();
        c.set_up(false);
        let mut s = Session::new(1, true);
        assert_eq!(
            enc(&run(&c, &mut s, "SENTINEL get-master-addr-by-name vi"), 3),
            "_\r\n"
        );
        let m = enc(&run(&c, &mut s, "SENTINEL MASTER vi"), 2);
        assert!(
            m.contains("$5\r\nflags\r\n$20\r\ns_down,o_down,master\r\n"),
            "{m}"
        );
    }
}

#[cfg(test)]
mod hold_tests {
    use super::asks_for_master;

    fn args(v: &[&str]) -> Vec<Vec<u8>> {
        v.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    #[test]
    fn only_questions_naming_a_master_are_held() {
        assert_eq!(asks_for_master(&args(&["SENTINEL", "masters"])), Some(None));
        assert_eq!(
            asks_for_master(&args(&["sentinel", "GET-MASTER-ADDR-BY-NAME", "vi"])),
            Some(Some(&b"vi"[..]))
        );
        assert_eq!(
            asks_for_master(&args(&["SENTINEL", "MASTER", "vi"])),
            Some(Some(&b"vi"[..]))
        );
        for other in [
            &["SENTINEL", "REPLICAS", "vi"][..],
            &["SENTINEL", "MASTER"],
            &["SENTINEL", "MASTERS", "x"],
            &["PING"],
            &["SENTINEL"],
        ] {
            assert_eq!(asks_for_master(&args(other)), None, "{other:?}");
        }
    }
}
