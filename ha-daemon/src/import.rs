//! `ha-daemon import-keepalived`: converts a keepalived.conf (as the
//! keepalived + Redis guides write them) into our TOML, and lists every line
//! it did not convert, with why.
//!
//! Converted: `global_defs` (router_id → node name, vrrp_version),
//! `vrrp_instance` (interface, virtual_router_id, priority, advert_int,
//! nopreempt, preempt_delay, version, authentication PASS,
//! virtual_ipaddress, unicast_peer, track_script, notify*), and
//! `vrrp_script` when it is a redis-cli PING (→ `[instance.redis]` health:
//! weight, fall, rise). Notify scripts that run REPLICAOF / SLAVEOF are what
//! `[instance.redis]` replaces: they are dropped, and said so.
use std::{collections::BTreeMap, path::Path};

use crate::{
    config::{Config, Instance, Node, RedisConf},
    notify::NotifyConf,
};

/// One statement: words on a line, and a `{ ... }` block if it has one.
#[derive(Debug, Clone)]
struct Stmt {
    line: usize,
    words: Vec<String>,
    block: Option<Vec<Stmt>>,
}

impl Stmt {
    fn key(&self) -> &str {
        self.words.first().map_or("", String::as_str)
    }
    fn arg(&self, i: usize) -> Option<&str> {
        self.words.get(i).map(String::as_str)
    }
    fn text(&self) -> String {
        let mut t = self.words.join(" ");
        if self.block.is_some() {
            t.push_str(" { ... }");
        }
        t
    }
}

#[derive(Debug, PartialEq)]
enum Tok {
    Word(String),
    Open,
    Close,
}

fn tokenize(text: &str) -> Vec<(usize, Tok)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let mut chars = line.chars().peekable();
        while let Some(&c) = chars.peek() {
            match c {
                '#' | '!' => break,
                '{' => {
                    chars.next();
                    out.push((n + 1, Tok::Open));
                }
                '}' => {
                    chars.next();
                    out.push((n + 1, Tok::Close));
                }
                '"' => {
                    chars.next();
                    let mut w = String::new();
                    for c in chars.by_ref() {
                        if c == '"' {
                            break;
                        }
                        w.push(c);
                    }
                    out.push((n + 1, Tok::Word(w)));
                }
                c if c.is_whitespace() => {
                    chars.next();
                }
                _ => {
                    let mut w = String::new();
                    while let Some(&c) = chars.peek() {
                        if c.is_whitespace() || matches!(c, '{' | '}' | '"' | '#' | '!') {
                            break;
                        }
                        w.push(c);
                        chars.next();
                    }
                    out.push((n + 1, Tok::Word(w)));
                }
            }
        }
    }
    out
}

/// Statements until the matching `}` (or the end); `i` moves past it.
fn parse_block(toks: &[(usize, Tok)], i: &mut usize) -> Vec<Stmt> {
    let mut out = Vec::new();
    while *i < toks.len() {
        let (line, ref t) = toks[*i];
        match t {
            Tok::Close => {
                *i += 1;
                return out;
            }
            Tok::Open => {
                // A block with no statement before it: keep its contents.
                *i += 1;
                let block = parse_block(toks, i);
                out.push(Stmt {
                    line,
                    words: Vec::new(),
                    block: Some(block),
                });
            }
            Tok::Word(_) => {
                let mut words = Vec::new();
                while let Some((l, Tok::Word(w))) = toks.get(*i) {
                    if *l != line {
                        break;
                    }
                    words.push(w.clone());
                    *i += 1;
                }
                let block = if matches!(toks.get(*i), Some((_, Tok::Open))) {
                    *i += 1;
                    Some(parse_block(toks, i))
                } else {
                    None
                };
                out.push(Stmt { line, words, block });
            }
        }
    }
    out
}

/// The result: our config, and what was left out or changed, by line.
#[derive(Debug)]
pub struct Import {
    pub config: Config,
    /// `(line, text, why)` for every statement not converted as such.
    pub skipped: Vec<(usize, String, String)>,
}

impl Import {
    /// The config as TOML, headed by the list of what was not converted.
    pub fn to_toml(&self, source: &str) -> String {
        let mut out = format!("# Converted from {source} by `ha-daemon import-keepalived`.\n");
        if !self.skipped.is_empty() {
            out.push_str("# Not converted (line: statement: why):\n");
            for (l, t, why) in &self.skipped {
                out.push_str(&format!("#   {l}: {t}: {why}\n"));
            }
        }
        out.push('\n');
        let text = toml::to_string_pretty(&self.config).unwrap_or_default();
        // Printing masks passwords; the config being written needs them.
        let mut doc: toml_edit::DocumentMut = match text.parse() {
            Ok(d) => d,
            Err(_) => return out + &text,
        };
        if let Some(arr) = doc
            .get_mut("instance")
            .and_then(|i| i.as_array_of_tables_mut())
        {
            for (t, inst) in arr.iter_mut().zip(&self.config.instances) {
                if let Some(p) = &inst.auth_pass {
                    t["auth_pass"] = toml_edit::value(p.as_str());
                }
            }
        }
        out + &doc.to_string()
    }
}

#[derive(Debug, Default, Clone)]
struct Script {
    redis: Option<RedisConf>,
    /// keepalived adds a positive weight while the script succeeds.
    raise: u8,
}

/// Whether a notify script is the keepalived+Redis role-switch hook: it runs
/// REPLICAOF / SLAVEOF (read from the file when it is readable here), or,
/// when it is not, its name says redis.
fn is_role_script(cmd: &str) -> bool {
    let t = cmd.to_ascii_lowercase();
    let body = cmd
        .split_whitespace()
        .next()
        .and_then(|p| std::fs::read_to_string(p).ok());
    match body {
        Some(b) => {
            let all = format!("{t}\n{}", b.to_ascii_lowercase());
            all.contains("replicaof") || all.contains("slaveof")
        }
        None => t.contains("replicaof") || t.contains("slaveof") || t.contains("redis"),
    }
}

/// `redis-cli [-h H] [-p P] [-a PASS] ping` → the local Redis address.
fn redis_ping(cmd: &str) -> Option<(String, u16, bool)> {
    let words: Vec<&str> = cmd.split_whitespace().collect();
    let cli = words.iter().position(|w| w.ends_with("redis-cli"))?;
    if !words[cli..].iter().any(|w| w.eq_ignore_ascii_case("ping")) {
        return None;
    }
    let (mut host, mut port, mut pass) = ("127.0.0.1".to_owned(), 6379, false);
    let mut it = words[cli + 1..].iter();
    while let Some(w) = it.next() {
        match *w {
            "-h" => host = it.next()?.to_string(),
            "-p" => port = it.next()?.parse().ok()?,
            "-a" => {
                it.next()?;
                pass = true;
            }
            _ => {}
        }
    }
    Some((host, port, pass))
}

/// A statement's text with passwords (after `-a`, `--pass`, `auth_pass`)
/// replaced: the list of unconverted lines is printed and written out.
fn masked(text: &str) -> String {
    let mut out = Vec::new();
    let mut hide = false;
    for w in text.split(' ') {
        out.push(if hide { "********" } else { w });
        hide = matches!(w, "-a" | "--pass" | "auth_pass");
    }
    out.join(" ")
}

fn num<T: std::str::FromStr>(s: &Stmt, i: usize) -> Result<T, String> {
    s.arg(i)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("expected a number after {}", s.key()))
}

pub fn convert(text: &str, node_name: Option<&str>) -> Result<Import, String> {
    let toks = tokenize(text);
    let mut i = 0;
    let top = parse_block(&toks, &mut i);
    let mut skipped = Vec::new();
    let mut skip = |s: &Stmt, why: &str| skipped.push((s.line, masked(&s.text()), why.to_owned()));
    let mut router_id = None;
    let mut version = 2u8;
    let mut scripts: BTreeMap<String, Script> = BTreeMap::new();
    // Globals and scripts first: instances refer to them.
    for s in &top {
        match (s.key(), &s.block) {
            ("global_defs", Some(b)) => {
                for g in b {
                    match g.key() {
                        "router_id" => router_id = g.arg(1).map(str::to_owned),
                        "vrrp_version" => version = num(g, 1)?,
                        _ => skip(g, "no ha-daemon equivalent"),
                    }
                }
            }
            ("vrrp_script", Some(b)) => {
                let name = s.arg(1).unwrap_or("").to_owned();
                let mut sc = Script::default();
                let mut conf: Option<RedisConf> = None;
                let (mut weight, mut fall, mut rise) = (None, None, None);
                for x in b {
                    match x.key() {
                        "script" => {
                            let cmd = x.words[1..].join(" ");
                            match redis_ping(&cmd) {
                                Some((host, port, pass)) => {
                                    let mut rc: RedisConf =
                                        toml::from_str("").map_err(|e| e.to_string())?;
                                    rc.address = if host.contains(':') {
                                        format!("[{host}]:{port}")
                                    } else {
                                        format!("{host}:{port}")
                                    };
                                    rc.port = port;
                                    if pass {
                                        skip(
                                            x,
                                            "the password on the command line: put it in a file and set redis.password_file",
                                        );
                                    }
                                    conf = Some(rc);
                                }
                                None => skip(
                                    x,
                                    "not a redis-cli PING: ha-daemon checks only the local Redis",
                                ),
                            }
                        }
                        "weight" => weight = Some(num::<i32>(x, 1)?),
                        "fall" => fall = Some(num::<u32>(x, 1)?),
                        "rise" => rise = Some(num::<u32>(x, 1)?),
                        "interval" | "timeout" => skip(
                            x,
                            "ha-daemon checks every redis.check_interval_ms (100) on one persistent connection",
                        ),
                        _ => skip(x, "no ha-daemon equivalent"),
                    }
                }
                if let Some(mut rc) = conf {
                    if let Some(w) = weight {
                        rc.weight = w.unsigned_abs().min(254) as u8;
                        if w > 0 {
                            sc.raise = rc.weight;
                        }
                    }
                    if let Some(f) = fall {
                        rc.fall = f;
                    }
                    if let Some(r) = rise {
                        rc.rise = r;
                    }
                    sc.redis = Some(rc);
                }
                scripts.insert(name, sc);
            }
            _ => {}
        }
    }
    let mut instances = Vec::new();
    for s in &top {
        match (s.key(), &s.block) {
            ("global_defs" | "vrrp_script", Some(_)) => {}
            ("vrrp_instance", Some(b)) => {
                instances.push(instance(s, b, version, &scripts, &mut skip)?)
            }
            _ => skip(s, "no ha-daemon equivalent"),
        }
    }
    let name: String = node_name
        .map(str::to_owned)
        .or(router_id)
        .unwrap_or_else(|| "node1".into())
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(32)
        .collect();
    let config = Config {
        node: Node {
            name,
            run_dir: None,
            bpf_pin_dir: None,
            metrics: None,
        },
        quorum: None,
        tickle: None,
        sentinel: None,
        instances,
    };
    // The result must be a config we accept.
    let text = toml::to_string(&config).map_err(|e| e.to_string())?;
    Config::parse(&text, Path::new("(converted)"))
        .map_err(|e| format!("the converted config is not valid: {e}"))?;
    Ok(Import { config, skipped })
}

fn instance(
    s: &Stmt,
    b: &[Stmt],
    global_version: u8,
    scripts: &BTreeMap<String, Script>,
    skip: &mut impl FnMut(&Stmt, &str),
) -> Result<Instance, String> {
    let name = s.arg(1).unwrap_or("vi").to_owned();
    let mut inst: Instance = toml::from_str(&format!(
        "name = {name:?}\ninterface = \"\"\nvrid = 1\nvips = []\n"
    ))
    .map_err(|e| e.to_string())?;
    inst.version = global_version;
    let mut advert_s: f64 = 1.0;
    let mut notify = NotifyConf::default();
    for x in b {
        match x.key() {
            "interface" => inst.interface = x.arg(1).unwrap_or("").into(),
            "virtual_router_id" => inst.vrid = num(x, 1)?,
            "priority" => inst.priority = num(x, 1)?,
            "advert_int" => advert_s = num(x, 1)?,
            "version" => inst.version = num(x, 1)?,
            "nopreempt" => inst.preempt = false,
            "preempt" => inst.preempt = true,
            "preempt_delay" => inst.preempt_delay_ms = (num::<f64>(x, 1)? * 1000.0) as u64,
            "state" => skip(
                x,
                "the initial state comes from the priority (RFC 5798), as with keepalived's priority",
            ),
            "authentication" => {
                for a in x.block.iter().flatten() {
                    match (a.key(), a.arg(1)) {
                        ("auth_type", Some("PASS")) => {}
                        ("auth_pass", Some(p)) => inst.auth_pass = Some(p.into()),
                        _ => skip(a, "only auth_type PASS is supported (AH is deprecated)"),
                    }
                }
            }
            "virtual_ipaddress" => {
                for v in x.block.iter().flatten() {
                    let addr = v.key();
                    if v.words.len() > 1 {
                        let extra = v.words[1..].join(" ");
                        let same_dev = v.words.len() == 3
                            && v.arg(1) == Some("dev")
                            && v.arg(2) == Some(inst.interface.as_str());
                        if !same_dev {
                            skip(
                                v,
                                &format!("`{extra}` dropped: VIPs go on the instance's interface"),
                            );
                        }
                    }
                    inst.vips.push(addr.into());
                }
            }
            "unicast_peer" => {
                for p in x.block.iter().flatten() {
                    match p.key().parse() {
                        Ok(a) => inst.unicast_peers.push(a),
                        Err(_) => skip(p, "not an IP address"),
                    }
                }
            }
            "unicast_src_ip" => skip(x, "ha-daemon sends from the interface's primary address"),
            "track_script" => {
                for t in x.block.iter().flatten() {
                    match scripts
                        .get(t.key())
                        .and_then(|sc| sc.redis.clone().map(|r| (r, sc.raise)))
                    {
                        Some((r, raise)) => {
                            inst.priority = inst.priority.saturating_add(raise).min(254);
                            inst.redis = Some(r);
                        }
                        None => skip(t, "not a redis-cli PING script: not tracked"),
                    }
                }
            }
            k @ ("notify_master" | "notify_backup" | "notify_fault" | "notify_stop" | "notify") => {
                let cmd = x.words[1..].join(" ");
                if is_role_script(&cmd) {
                    skip(
                        x,
                        "runs REPLICAOF/SLAVEOF: replaced by [instance.redis] (promotion with catch-up, fencing)",
                    );
                    continue;
                }
                let prog = cmd.split_whitespace().next().unwrap_or("");
                if !Path::new(prog).is_file() {
                    skip(
                        x,
                        &format!(
                            "{prog} does not exist here; add it under [instance.notify] where it does"
                        ),
                    );
                    continue;
                }
                let slot = match k {
                    "notify_master" => &mut notify.master,
                    "notify_backup" => &mut notify.backup,
                    "notify_fault" => &mut notify.fault,
                    "notify_stop" => &mut notify.stop,
                    _ => &mut notify.all,
                };
                *slot = Some(cmd);
            }
            _ => skip(x, "no ha-daemon equivalent"),
        }
    }
    inst.advert_interval_ms = (advert_s * 1000.0).round() as u32;
    inst.notify = notify;
    if inst.version == 3 && inst.auth_pass.is_some() {
        inst.auth_pass = None;
        skip(s, "authentication dropped: VRRPv3 has none");
    }
    if inst.redis.is_none()
        && b.iter()
            .any(|x| x.key().starts_with("notify") && is_role_script(&x.words[1..].join(" ")))
    {
        // The guides' setup without a health script: the role scripts tell
        // us Redis is local on the default port.
        inst.redis = Some(toml::from_str("").map_err(|e| e.to_string())?);
    }
    Ok(inst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_on_one_line_and_comments() {
        let toks = tokenize("a { b 1 } # c\n! d\n\"x y\" {\n}\n");
        let mut i = 0;
        let t = parse_block(&toks, &mut i);
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].words, ["a"]);
        assert_eq!(t[0].block.as_ref().unwrap()[0].words, ["b", "1"]);
        assert_eq!(t[1].words, ["x y"]);
        assert_eq!(t[1].line, 3);
    }

    /// Any prefix of a real file (unbalanced braces, cut words) gives a
    /// result or an error, never a panic.
    #[test]
    fn no_panic_on_truncated_input() {
        for text in [
            include_str!("../../tests/fixtures/keepalived/guide-master.conf"),
            include_str!("../../tests/fixtures/keepalived/guide-backup-unicast.conf"),
        ] {
            for (i, _) in text.char_indices() {
                let _ = convert(&text[..i], None);
                let _ = convert(&text[i..], Some("n"));
            }
        }
    }

    #[test]
    fn redis_cli_ping_is_recognised() {
        assert_eq!(
            redis_ping("/usr/bin/redis-cli -h 10.0.0.1 -p 6380 ping"),
            Some(("10.0.0.1".into(), 6380, false))
        );
        assert_eq!(
            redis_ping("redis-cli -a s3cret PING"),
            Some(("127.0.0.1".into(), 6379, true))
        );
        assert_eq!(redis_ping("killall -0 redis-server"), None);
        assert_eq!(
            masked("redis-cli -a s3cret ping"),
            "redis-cli -a ******** ping"
        );
    }
}
