//! Any bytes a client sends to the Sentinel endpoint must give replies or a
//! protocol error, never a panic, with bounded work and allocation: the
//! parser consumes request after request, each is run as a command on one
//! session (RESP2 and RESP3 replies encoded), and the PSUBSCRIBE patterns a
//! client may send are matched against a channel.
#![no_main]

use ha_daemon::sentinel::{
    Ctx,
    cmd::{self, Session},
    glob,
    parse::{MAX_ARGS, MAX_BULK, parse},
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let ctx = Ctx::new(
        "10.0.0.1:26379".parse().unwrap(),
        Some("pw".into()),
        vec!["10.0.0.2:26379".parse().unwrap()],
    );
    let mut s = Session::new(1, true);
    let mut rest = data;
    let mut out = Vec::new();
    while let Ok(Some((args, used))) = parse(rest) {
        assert!(used > 0 && used <= rest.len());
        assert!(args.len() <= MAX_ARGS && args.iter().all(|a| a.len() <= MAX_BULK));
        rest = &rest[used..];
        for f in cmd::apply(&ctx, &mut s, &args) {
            f.encode(s.proto, &mut out);
            f.encode(2, &mut out);
        }
        if let [p, ch, ..] = args.as_slice() {
            let _ = glob::matches(p, ch);
        }
        out.clear();
    }
});
