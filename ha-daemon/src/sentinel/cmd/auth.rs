//! `AUTH [username] password`, against `[sentinel] password_file` (the
//! `default` user, as Sentinel's `requirepass`).
use super::{Session, text};
use crate::sentinel::{Ctx, frame::Frame};

pub const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";

pub fn apply(ctx: &Ctx, s: &mut Session, args: &[Vec<u8>]) -> Frame {
    let (user, pass) = match args {
        [p] => (None, p),
        [u, p] => (Some(u), p),
        [] => return super::wrong_args("auth"),
        _ => return Frame::err("ERR syntax error"),
    };
    if ctx.password.is_none() && user.is_none() {
        return Frame::err(
            "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
        );
    }
    match check(ctx, user.map(|u| text(u)).as_deref(), pass) {
        true => {
            s.authed = true;
            Frame::ok()
        }
        false => Frame::err(WRONGPASS),
    }
}

/// The `default` user only; with no password it takes any (as Redis's
/// `nopass` default user does).
pub fn check(ctx: &Ctx, user: Option<&str>, pass: &[u8]) -> bool {
    if user.is_some_and(|u| u != "default") {
        return false;
    }
    match &ctx.password {
        None => true,
        Some(p) => constant_time_eq(p.as_bytes(), pass),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
