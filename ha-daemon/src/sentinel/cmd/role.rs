//! `ROLE`: `["sentinel", [master names]]` (redis-rs checks it).
use crate::sentinel::{Ctx, frame::Frame};

pub fn apply(ctx: &Ctx, args: &[Vec<u8>]) -> Frame {
    if !args.is_empty() {
        return super::wrong_args("role");
    }
    let names = ctx
        .views
        .borrow()
        .iter()
        .map(|v| Frame::bulk(&v.name))
        .collect();
    Frame::Array(vec![Frame::bulk("sentinel"), Frame::Array(names)])
}
