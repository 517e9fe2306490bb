//! `PING [message]`: `+PONG` or the message; in a RESP2 subscribed
//! connection `["pong", message or ""]`.
use super::{Session, wrong_args};
use crate::sentinel::frame::Frame;

pub fn apply(s: &Session, args: &[Vec<u8>]) -> Frame {
    if args.len() > 1 {
        return wrong_args("ping");
    }
    if s.proto == 2 && s.subscriptions() > 0 {
        return Frame::Array(vec![
            Frame::bulk("pong"),
            Frame::bulk(args.first().map(Vec::as_slice).unwrap_or(b"")),
        ]);
    }
    match args.first() {
        Some(m) => Frame::Bulk(m.clone()),
        None => Frame::Simple("PONG".into()),
    }
}
