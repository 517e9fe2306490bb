//! `CLIENT SETNAME|GETNAME|SETINFO|ID`: what clients send while they
//! connect (redis-py, Jedis, go-redis send SETINFO and ignore errors).
use super::{Session, lower, text};
use crate::sentinel::frame::Frame;

pub fn apply(s: &mut Session, args: &[Vec<u8>]) -> Frame {
    let Some(sub) = args.first() else {
        return super::wrong_args("client");
    };
    let name = lower(sub);
    let rest = &args[1..];
    let arity = |n: usize| rest.len() == n;
    let wrong = || super::wrong_args(&format!("client|{name}"));
    match name.as_str() {
        "setname" if arity(1) => {
            let n = &rest[0];
            if n.iter().any(|&c| !(b'!'..=b'~').contains(&c)) {
                return Frame::err(
                    "ERR Client names cannot contain spaces, newlines or special characters.",
                );
            }
            s.name = (!n.is_empty()).then(|| n.clone());
            Frame::ok()
        }
        "getname" if arity(0) => match &s.name {
            Some(n) => Frame::Bulk(n.clone()),
            None => Frame::Null,
        },
        "id" if arity(0) => Frame::Int(s.id as i64),
        "setinfo" if arity(2) => match lower(&rest[0]).as_str() {
            "lib-name" | "lib-ver" => Frame::ok(),
            _ => Frame::err(format!("ERR Unrecognized option '{}'", text(&rest[0]))),
        },
        "setname" | "getname" | "id" | "setinfo" => wrong(),
        _ => Frame::err(format!(
            "ERR unknown subcommand '{}'. Try CLIENT HELP.",
            text(&sub[..sub.len().min(128)])
        )),
    }
}
