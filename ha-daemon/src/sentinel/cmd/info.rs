//! `INFO [section ...]`: `# Server` (with `redis_mode:sentinel`, which
//! StackExchange.Redis looks for) and `# Sentinel`; other sections are
//! empty, as on a Sentinel.
use std::fmt::Write as _;

use super::lower;
use crate::sentinel::{Ctx, VERSION, frame::Frame};

pub fn apply(ctx: &Ctx, args: &[Vec<u8>]) -> Frame {
    let wanted: Vec<String> = args.iter().map(|a| lower(a)).collect();
    let all = wanted.is_empty()
        || wanted
            .iter()
            .any(|w| matches!(w.as_str(), "all" | "default" | "everything"));
    let want = |s: &str| all || wanted.iter().any(|w| w == s);
    let mut out = String::new();
    if want("server") {
        let _ = write!(
            out,
            "# Server\r\nredis_version:{VERSION}\r\nredis_mode:sentinel\r\nos:Linux\r\narch_bits:64\r\nprocess_id:{}\r\nrun_id:{}\r\ntcp_port:{}\r\nuptime_in_seconds:{}\r\nuptime_in_days:{}\r\nexecutable:ha-daemon\r\n",
            std::process::id(),
            ctx.run_id,
            ctx.port,
            ctx.started.elapsed().as_secs(),
            ctx.started.elapsed().as_secs() / 86400
        );
    }
    if want("sentinel") {
        if !out.is_empty() {
            out.push_str("\r\n");
        }
        let views = ctx.views.borrow();
        let _ = write!(
            out,
            "# Sentinel\r\nsentinel_masters:{}\r\nsentinel_tilt:0\r\nsentinel_tilt_since_seconds:-1\r\nsentinel_running_scripts:0\r\nsentinel_scripts_queue_length:0\r\nsentinel_simulate_failure_flags:0\r\n",
            views.len()
        );
        for (n, v) in views.iter().enumerate() {
            let _ = write!(
                out,
                "master{n}:name={},status={},address={}:{},slaves={},sentinels={}\r\n",
                v.name,
                if v.up { "ok" } else { "odown" },
                v.ip,
                v.port,
                v.replicas.len(),
                ctx.sentinels.len() + 1
            );
        }
    }
    Frame::Bulk(out.into_bytes())
}
