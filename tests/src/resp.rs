//! A raw RESP2/RESP3 reply reader for differential tests: it keeps what a
//! client library would blur (a null array from a null bulk, a simple
//! string from a bulk one, a verbatim string from a bulk one), and
//! compares two replies by shape, type and error text.
use std::io::{BufRead, Write};

#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    NullBulk,
    Array(Vec<Reply>),
    NullArray,
    Map(Vec<(Reply, Reply)>),
    Set(Vec<Reply>),
    Push(Vec<Reply>),
    Null,
    Bool(bool),
    Double(String),
    Verbatim(String),
    BigNumber(String),
}

/// Replies nested deeper than this, or longer: a broken peer.
const MAX_DEPTH: usize = 16;
const MAX_LEN: i64 = 1 << 20;

fn line(r: &mut dyn BufRead) -> std::io::Result<String> {
    let mut l = String::new();
    if r.read_line(&mut l)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(l.trim_end_matches("\r\n").to_owned())
}

fn bad(what: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what)
}

pub fn read(r: &mut impl BufRead) -> std::io::Result<Reply> {
    read_at(r, 0)
}

fn read_at(r: &mut dyn BufRead, depth: usize) -> std::io::Result<Reply> {
    if depth > MAX_DEPTH {
        return Err(bad("nested too deep".into()));
    }
    let l = line(r)?;
    let (kind, rest) = l
        .split_at_checked(1)
        .ok_or_else(|| bad("empty line".into()))?;
    let n = || -> std::io::Result<i64> {
        let n: i64 = rest.parse().map_err(|_| bad(format!("length {rest:?}")))?;
        if n > MAX_LEN {
            return Err(bad(format!("length {n}")));
        }
        Ok(n)
    };
    let many = |r: &mut dyn BufRead, k: i64| -> std::io::Result<Vec<Reply>> {
        (0..k).map(|_| read_at(r, depth + 1)).collect()
    };
    let bytes = |r: &mut dyn BufRead, k: i64| -> std::io::Result<Vec<u8>> {
        let mut b = vec![0; k as usize + 2];
        r.read_exact(&mut b)?;
        b.truncate(k as usize);
        Ok(b)
    };
    Ok(match kind {
        "+" => Reply::Simple(rest.into()),
        "-" => Reply::Error(rest.into()),
        ":" => Reply::Int(rest.parse().map_err(|_| bad(format!("integer {rest:?}")))?),
        "$" => match n()? {
            -1 => Reply::NullBulk,
            k => Reply::Bulk(bytes(r, k)?),
        },
        "*" => match n()? {
            -1 => Reply::NullArray,
            k => Reply::Array(many(r, k)?),
        },
        "%" => {
            let k = n()?;
            let v = many(r, 2 * k)?;
            Reply::Map(v.chunks(2).map(|p| (p[0].clone(), p[1].clone())).collect())
        }
        "~" => Reply::Set(many(r, n()?)?),
        ">" => Reply::Push(many(r, n()?)?),
        "_" => Reply::Null,
        "#" => Reply::Bool(rest == "t"),
        "," => Reply::Double(rest.into()),
        "(" => Reply::BigNumber(rest.into()),
        "=" => Reply::Verbatim(String::from_utf8_lossy(&bytes(r, n()?)?).into_owned()),
        "!" => Reply::Error(String::from_utf8_lossy(&bytes(r, n()?)?).into_owned()),
        k => return Err(bad(format!("reply type {k:?}"))),
    })
}

/// One command as Redis reads it (an array of bulk strings), by the
/// daemon's own encoder.
pub fn command(args: &[&str]) -> Vec<u8> {
    use ha_daemon::resp::Frame;
    let mut b = Vec::new();
    Frame::Array(args.iter().map(Frame::bulk).collect()).encode(2, &mut b);
    b
}

/// Sends one command.
pub fn send(w: &mut impl Write, args: &[&str]) -> std::io::Result<()> {
    w.write_all(&command(args))
}

impl Reply {
    pub fn kind(&self) -> &'static str {
        match self {
            Reply::Simple(_) => "simple string",
            Reply::Error(_) => "error",
            Reply::Int(_) => "integer",
            Reply::Bulk(_) => "bulk string",
            Reply::NullBulk => "null bulk",
            Reply::Array(_) => "array",
            Reply::NullArray => "null array",
            Reply::Map(_) => "map",
            Reply::Set(_) => "set",
            Reply::Push(_) => "push",
            Reply::Null => "null",
            Reply::Bool(_) => "boolean",
            Reply::Double(_) => "double",
            Reply::Verbatim(_) => "verbatim string",
            Reply::BigNumber(_) => "big number",
        }
    }

    fn text(&self) -> Option<String> {
        match self {
            Reply::Simple(s) | Reply::Verbatim(s) => Some(s.clone()),
            Reply::Bulk(b) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }

    /// Field/value pairs, if this is a record: a map, or an array of an even
    /// number of items whose keys are strings (Sentinel's records in RESP2).
    fn record(&self) -> Option<Vec<(String, &Reply)>> {
        let pairs: Vec<(&Reply, &Reply)> = match self {
            Reply::Map(m) => m.iter().map(|(k, v)| (k, v)).collect(),
            Reply::Array(a) if a.len() >= 6 && a.len() % 2 == 0 => {
                a.chunks(2).map(|p| (&p[0], &p[1])).collect()
            }
            _ => return None,
        };
        pairs
            .into_iter()
            .map(|(k, v)| {
                let k = k.text()?;
                // A record's keys are field names, not values such as IPs.
                (!k.is_empty()
                    && k.bytes()
                        .all(|b| b.is_ascii_lowercase() || b == b'-' || b == b'_'))
                .then_some((k, v))
            })
            .collect()
    }
}

/// Where `ours` differs from `real` (the reference): type at every level,
/// error texts, and for records the fields `real` has that `ours` lacks.
/// Lists may differ in length (another number of replicas, say): their
/// first items are compared.
pub fn differences(path: &str, real: &Reply, ours: &Reply) -> Vec<String> {
    let mut out = Vec::new();
    if real.kind() != ours.kind() {
        out.push(format!(
            "{path}: {} where Sentinel sends {} ({real:?} / {ours:?})",
            ours.kind(),
            real.kind()
        ));
        return out;
    }
    match (real, ours) {
        (Reply::Error(a), Reply::Error(b)) if a != b => {
            out.push(format!("{path}: error {b:?} where Sentinel says {a:?}"));
        }
        _ => {}
    }
    if let (Some(ra), Some(ob)) = (real.record(), ours.record()) {
        for (k, v) in &ra {
            match ob.iter().find(|(o, _)| o == k) {
                None => out.push(format!("{path}: field {k:?} missing")),
                Some((_, ov)) => out.extend(differences(&format!("{path}.{k}"), v, ov)),
            }
        }
        return out;
    }
    let items = |r: &Reply| -> Option<Vec<Reply>> {
        match r {
            Reply::Array(a) | Reply::Set(a) | Reply::Push(a) => Some(a.clone()),
            _ => None,
        }
    };
    if let (Some(a), Some(b)) = (items(real), items(ours)) {
        for (i, (x, y)) in a.iter().zip(b.iter()).enumerate() {
            out.extend(differences(&format!("{path}[{i}]"), x, y));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Reply {
        read(&mut std::io::BufReader::new(s.as_bytes())).unwrap()
    }

    #[test]
    fn reads_both_protocols_and_finds_what_differs() {
        let rec = "*6\r\n$4\r\nname\r\n$2\r\nvi\r\n$2\r\nip\r\n$8\r\n10.0.0.1\r\n$5\r\nflags\r\n$6\r\nmaster\r\n";
        let short =
            "*6\r\n$4\r\nname\r\n$2\r\nvi\r\n$2\r\nip\r\n$8\r\n10.0.0.2\r\n$4\r\nport\r\n:6379\r\n";
        assert!(differences("r", &parse(rec), &parse(rec)).is_empty());
        let d = differences("r", &parse(rec), &parse(short));
        assert_eq!(d, vec!["r: field \"flags\" missing".to_owned()]);
        let d = differences("x", &parse("*-1\r\n"), &parse("$-1\r\n"));
        assert!(
            d[0].contains("null bulk where Sentinel sends null array"),
            "{d:?}"
        );
        let d = differences("e", &parse("-ERR a\r\n"), &parse("-ERR b\r\n"));
        assert_eq!(d.len(), 1);
        assert_eq!(
            parse("%1\r\n+proto\r\n:3\r\n"),
            Reply::Map(vec![(Reply::Simple("proto".into()), Reply::Int(3))])
        );
        assert_eq!(
            parse("=7\r\ntxt:abc\r\n"),
            Reply::Verbatim("txt:abc".into())
        );
    }
}
