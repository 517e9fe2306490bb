//! One module per command; `apply` dispatches a parsed request, checking
//! authentication and the RESP2 subscribed context first, as Redis does.
//! Replies and error texts are a real Sentinel's (Redis 7), except where a
//! module says otherwise.
use super::{Ctx, frame::Frame};

mod auth;
mod client;
mod hello;
mod info;
mod ping;
mod role;
pub mod sentinel;
pub mod subscribe;

/// What one connection carries between commands.
#[derive(Debug, Default)]
pub struct Session {
    pub id: u64,
    /// 2 or 3 (`HELLO`).
    pub proto: u8,
    pub authed: bool,
    pub name: Option<Vec<u8>>,
    pub channels: std::collections::BTreeSet<Vec<u8>>,
    pub patterns: std::collections::BTreeSet<Vec<u8>>,
    /// Close after the replies (`QUIT`).
    pub quit: bool,
}

impl Session {
    pub fn new(id: u64, authed: bool) -> Self {
        Session {
            id,
            proto: 2,
            authed,
            ..Default::default()
        }
    }

    pub fn subscriptions(&self) -> usize {
        self.channels.len() + self.patterns.len()
    }
}

pub fn lower(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_ascii_lowercase()
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub fn wrong_args(cmd: &str) -> Frame {
    Frame::err(format!("ERR wrong number of arguments for '{cmd}' command"))
}

/// Redis's reply to a command it does not have: the name as sent and the
/// first arguments, each quoted and followed by a space.
fn unknown(args: &[Vec<u8>]) -> Frame {
    let mut s = format!(
        "ERR unknown command '{}', with args beginning with: ",
        trunc(&args[0])
    );
    for a in args.iter().skip(1) {
        if s.len() > 256 {
            break;
        }
        s.push_str(&format!("'{}' ", trunc(a)));
    }
    Frame::err(s)
}

fn trunc(b: &[u8]) -> String {
    text(&b[..b.len().min(128)])
}

/// The replies to one request (a SUBSCRIBE of n channels has n).
pub fn apply(ctx: &Ctx, s: &mut Session, args: &[Vec<u8>]) -> Vec<Frame> {
    let Some(first) = args.first() else {
        return Vec::new();
    };
    let cmd = lower(first);
    let rest = &args[1..];
    if !s.authed && !matches!(cmd.as_str(), "auth" | "hello" | "quit") {
        return vec![Frame::err("NOAUTH Authentication required.")];
    }
    if s.proto == 2
        && s.subscriptions() > 0
        && !matches!(
            cmd.as_str(),
            "subscribe" | "unsubscribe" | "psubscribe" | "punsubscribe" | "ping" | "quit" | "reset"
        )
    {
        return vec![Frame::err(format!(
            "ERR Can't execute '{cmd}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"
        ))];
    }
    let one = |f: Frame| vec![f];
    match cmd.as_str() {
        "ping" => one(ping::apply(s, rest)),
        "auth" => one(auth::apply(ctx, s, rest)),
        "hello" => one(hello::apply(ctx, s, rest)),
        "client" => one(client::apply(s, rest)),
        "role" => one(role::apply(ctx, rest)),
        "info" => one(info::apply(ctx, rest)),
        "sentinel" => one(sentinel::apply(ctx, rest)),
        "subscribe" | "psubscribe" | "unsubscribe" | "punsubscribe" => {
            subscribe::apply(s, &cmd, rest)
        }
        // Sentinel 7.0 answers QUIT as an unknown command; Redis proper
        // and clients expect +OK and a close.
        "quit" => {
            s.quit = true;
            one(Frame::ok())
        }
        "reset" => {
            s.channels.clear();
            s.patterns.clear();
            s.proto = 2;
            s.name = None;
            s.authed = ctx.password.is_none();
            one(Frame::Simple("RESET".into()))
        }
        // What redis-cli asks at start; Sentinel's table is ours to omit.
        "command" => one(Frame::Array(Vec::new())),
        _ => one(unknown(args)),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn ctx() -> Ctx {
        Ctx::for_tests()
    }

    pub fn run(ctx: &Ctx, s: &mut Session, line: &str) -> Vec<Frame> {
        let args: Vec<Vec<u8>> = line.split(' ').map(|w| w.as_bytes().to_vec()).collect();
        apply(ctx, s, &args)
    }

    pub fn enc(f: &[Frame], proto: u8) -> String {
        let mut v = Vec::new();
        for x in f {
            x.encode(proto, &mut v);
        }
        String::from_utf8_lossy(&v).into_owned()
    }

    #[test]
    fn errors_are_redis_texts() {
        let c = ctx();
        let mut s = Session::new(1, true);
        assert_eq!(
            enc(&run(&c, &mut s, "ECHO x"), 2),
            "-ERR unknown command 'ECHO', with args beginning with: 'x' \r\n"
        );
        assert_eq!(
            enc(&run(&c, &mut s, "SELECT"), 2),
            "-ERR unknown command 'SELECT', with args beginning with: \r\n"
        );
        assert_eq!(
            enc(&run(&c, &mut s, "PING a b"), 2),
            "-ERR wrong number of arguments for 'ping' command\r\n"
        );
    }

    #[test]
    fn a_password_gates_everything_but_auth_hello_and_quit() {
        let mut c = ctx();
        c.password = Some("pw".into());
        let mut s = Session::new(1, false);
        assert_eq!(
            enc(&run(&c, &mut s, "PING"), 2),
            "-NOAUTH Authentication required.\r\n"
        );
        assert_eq!(
            enc(&run(&c, &mut s, "AUTH bad"), 2),
            "-WRONGPASS invalid username-password pair or user is disabled.\r\n"
        );
        assert_eq!(enc(&run(&c, &mut s, "AUTH pw"), 2), "+OK\r\n");
        assert_eq!(enc(&run(&c, &mut s, "PING"), 2), "+PONG\r\n");
    }

    #[test]
    fn resp2_subscribed_allows_only_pubsub_and_ping() {
        let c = ctx();
        let mut s = Session::new(1, true);
        run(&c, &mut s, "SUBSCRIBE +switch-master");
        assert!(enc(&run(&c, &mut s, "ROLE"), 2).starts_with("-ERR Can't execute 'role'"));
        assert_eq!(
            enc(&run(&c, &mut s, "PING"), 2),
            "*2\r\n$4\r\npong\r\n$0\r\n\r\n"
        );
        // RESP3 allows everything.
        let mut s3 = Session::new(2, true);
        run(&c, &mut s3, "HELLO 3");
        run(&c, &mut s3, "SUBSCRIBE +switch-master");
        assert!(enc(&run(&c, &mut s3, "ROLE"), 3).starts_with("*2\r\n$8\r\nsentinel"));
    }
}
