//! `HELLO [protover [AUTH username password] [SETNAME name]]`: switches the
//! connection to RESP2 or RESP3 and says who we are, as a Sentinel does
//! (`mode` "sentinel", no `role`). redis-py 8 and node-redis 6 require it.
use super::{Session, auth, lower};
use crate::sentinel::{Ctx, VERSION, frame::Frame};

pub fn apply(ctx: &Ctx, s: &mut Session, args: &[Vec<u8>]) -> Frame {
    let mut proto = s.proto;
    let mut rest = args;
    if let Some(v) = args.first() {
        match super::text(v).parse::<i64>() {
            Ok(v @ 2..=3) => proto = v as u8,
            Ok(_) => return Frame::err("NOPROTO unsupported protocol version"),
            Err(_) => {
                return Frame::err("ERR Protocol version is not an integer or out of range");
            }
        }
        rest = &args[1..];
    }
    let mut name = None;
    let mut authed = s.authed;
    let mut i = 0;
    while i < rest.len() {
        let more = rest.len() - i - 1;
        match lower(&rest[i]).as_str() {
            "auth" if more >= 2 => {
                if !auth::check(ctx, Some(&super::text(&rest[i + 1])), &rest[i + 2]) {
                    return Frame::err(auth::WRONGPASS);
                }
                authed = true;
                i += 3;
            }
            "setname" if more >= 1 => {
                name = Some(rest[i + 1].clone());
                i += 2;
            }
            _ => {
                return Frame::err(format!(
                    "ERR Syntax error in HELLO option '{}'",
                    super::text(&rest[i])
                ));
            }
        }
    }
    if !authed {
        return Frame::err(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time",
        );
    }
    s.authed = true;
    s.proto = proto;
    if name.is_some() {
        s.name = name;
    }
    Frame::Map(vec![
        (Frame::bulk("server"), Frame::bulk("redis")),
        (Frame::bulk("version"), Frame::bulk(VERSION)),
        (Frame::bulk("proto"), Frame::Int(i64::from(proto))),
        (Frame::bulk("id"), Frame::Int(s.id as i64)),
        (Frame::bulk("mode"), Frame::bulk("sentinel")),
        (Frame::bulk("modules"), Frame::Array(Vec::new())),
    ])
}

#[cfg(test)]
mod tests {
    use crate::sentinel::cmd::{
        Session,
        tests::{ctx, enc, run},
    };

    #[test]
    fn hello_switches_protocol_and_names_the_mode() {
        let c = ctx();
        let mut s = Session::new(7, true);
        let r = enc(&run(&c, &mut s, "HELLO 3 SETNAME app"), 3);
        assert!(
            r.starts_with("%6\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n"),
            "{r}"
        );
        assert!(r.contains("$5\r\nproto\r\n:3\r\n$2\r\nid\r\n:7\r\n$4\r\nmode\r\n$8\r\nsentinel\r\n$7\r\nmodules\r\n*0\r\n"), "{r}");
        assert_eq!(s.proto, 3);
        assert_eq!(s.name.as_deref(), Some(b"app".as_slice()));
        assert_eq!(
            enc(&run(&c, &mut s, "HELLO 4"), 3),
            "-NOPROTO unsupported protocol version\r\n"
        );
        assert!(enc(&run(&c, &mut s, "HELLO 2"), 2).starts_with("*12\r\n"));
        assert_eq!(
            enc(&run(&c, &mut s, "HELLO 3 AUTH someone x"), 3),
            "-WRONGPASS invalid username-password pair or user is disabled.\r\n"
        );
        assert!(enc(&run(&c, &mut s, "HELLO 3 AUTH default x"), 3).starts_with("%6"));
    }
}
