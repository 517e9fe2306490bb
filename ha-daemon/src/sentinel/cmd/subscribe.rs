//! `SUBSCRIBE`, `PSUBSCRIBE`, `UNSUBSCRIBE`, `PUNSUBSCRIBE`: one
//! confirmation per channel (a push frame in RESP3, an array in RESP2)
//! with the connection's subscription count. Messages come from the
//! connection loop (`message` and `pmessage`, patterns as Redis globs).
use super::Session;
use crate::sentinel::frame::Frame;

/// Subscriptions per connection (a client sends a handful; Lettuce one `*`).
pub const MAX_SUBSCRIPTIONS: usize = 1024;

pub fn apply(s: &mut Session, cmd: &str, args: &[Vec<u8>]) -> Vec<Frame> {
    let pattern = cmd.starts_with('p');
    let sub = !cmd.contains("unsub");
    if sub && args.is_empty() {
        return vec![super::wrong_args(cmd)];
    }
    let confirm = |ch: Option<&[u8]>, n: usize| {
        Frame::Push(vec![
            Frame::bulk(cmd),
            ch.map_or(Frame::Null, Frame::bulk),
            Frame::Int(n as i64),
        ])
    };
    let mut out = Vec::new();
    if sub {
        for ch in args {
            if s.subscriptions() >= MAX_SUBSCRIPTIONS {
                out.push(Frame::err(format!(
                    "ERR at most {MAX_SUBSCRIPTIONS} subscriptions per connection"
                )));
                break;
            }
            let set = if pattern {
                &mut s.patterns
            } else {
                &mut s.channels
            };
            set.insert(ch.clone());
            out.push(confirm(Some(ch), s.subscriptions()));
        }
        return out;
    }
    let names: Vec<Vec<u8>> = if args.is_empty() {
        let set = if pattern { &s.patterns } else { &s.channels };
        set.iter().cloned().collect()
    } else {
        args.to_vec()
    };
    if names.is_empty() {
        return vec![confirm(None, s.subscriptions())];
    }
    for ch in names {
        let set = if pattern {
            &mut s.patterns
        } else {
            &mut s.channels
        };
        set.remove(&ch);
        out.push(confirm(Some(&ch), s.subscriptions()));
    }
    out
}

/// The frames one published event gives a session.
pub fn deliver(s: &Session, channel: &str, msg: &str) -> Vec<Frame> {
    let mut out = Vec::new();
    if s.channels.contains(channel.as_bytes()) {
        out.push(Frame::Push(vec![
            Frame::bulk("message"),
            Frame::bulk(channel),
            Frame::bulk(msg),
        ]));
    }
    for p in &s.patterns {
        if crate::sentinel::glob::matches(p, channel.as_bytes()) {
            out.push(Frame::Push(vec![
                Frame::bulk("pmessage"),
                Frame::bulk(p),
                Frame::bulk(channel),
                Frame::bulk(msg),
            ]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sentinel::cmd::tests::{ctx, enc, run};

    #[test]
    fn confirmations_and_messages_as_redis_sends_them() {
        let c = ctx();
        let mut s = Session::new(1, true);
        assert_eq!(
            enc(&run(&c, &mut s, "SUBSCRIBE a b"), 2),
            "*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n"
        );
        run(&c, &mut s, "PSUBSCRIBE [-+]sdown");
        assert_eq!(
            enc(&deliver(&s, "+sdown", "master vi 10.0.0.1 6379"), 3),
            ">4\r\n$8\r\npmessage\r\n$9\r\n[-+]sdown\r\n$6\r\n+sdown\r\n$23\r\nmaster vi 10.0.0.1 6379\r\n"
        );
        assert!(deliver(&s, "+odown", "x").is_empty());
        assert_eq!(
            enc(&run(&c, &mut s, "UNSUBSCRIBE"), 2),
            "*3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:2\r\n*3\r\n$11\r\nunsubscribe\r\n$1\r\nb\r\n:1\r\n"
        );
        run(&c, &mut s, "PUNSUBSCRIBE");
        assert_eq!(
            enc(&run(&c, &mut s, "UNSUBSCRIBE"), 2),
            "*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n"
        );
    }
}
