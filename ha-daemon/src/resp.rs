//! RESP frames: the Sentinel face's replies, rendered per connection in
//! the protocol it negotiated (`HELLO 2|3`), and the commands the health
//! watcher writes to Redis (an array of bulk strings). A map is a flat
//! array in RESP2, a push an array, a null `$-1` or `*-1` (RESP2) or `_`
//! (RESP3). Hand-written rather than a RESP crate:
//! Sentinel's exact shapes (bulk-string numbers, the null array, maps
//! flattened in RESP2) are the point, and the encoder is 60 lines.
use std::io::Write as _;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    /// A missing value: `$-1` in RESP2.
    Null,
    /// A missing array (`SENTINEL GET-MASTER-ADDR-BY-NAME` of an unknown
    /// master): `*-1` in RESP2.
    NullArray,
    Array(Vec<Frame>),
    Map(Vec<(Frame, Frame)>),
    /// Out-of-band (pub/sub messages): `>` in RESP3, an array in RESP2.
    Push(Vec<Frame>),
}

impl Frame {
    pub fn ok() -> Frame {
        Frame::Simple("OK".into())
    }

    pub fn bulk(s: impl AsRef<[u8]>) -> Frame {
        Frame::Bulk(s.as_ref().to_vec())
    }

    pub fn err(s: impl Into<String>) -> Frame {
        Frame::Error(s.into())
    }

    /// A record of bulk-string fields, as Sentinel sends its instance
    /// records (every value a bulk string, numbers too).
    pub fn record<K: AsRef<str>, V: AsRef<str>>(fields: impl IntoIterator<Item = (K, V)>) -> Frame {
        Frame::Map(
            fields
                .into_iter()
                .map(|(k, v)| (Frame::bulk(k.as_ref()), Frame::bulk(v.as_ref())))
                .collect(),
        )
    }

    /// Appends the frame's bytes in protocol `proto` (2 or 3).
    pub fn encode(&self, proto: u8, out: &mut Vec<u8>) {
        let resp3 = proto >= 3;
        match self {
            Frame::Simple(s) => {
                out.push(b'+');
                out.extend_from_slice(clean(s).as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            Frame::Error(s) => {
                out.push(b'-');
                out.extend_from_slice(clean(s).as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            Frame::Int(n) => {
                let _ = write!(out, ":{n}\r\n");
            }
            Frame::Bulk(b) => {
                let _ = write!(out, "${}\r\n", b.len());
                out.extend_from_slice(b);
                out.extend_from_slice(b"\r\n");
            }
            Frame::Null if resp3 => out.extend_from_slice(b"_\r\n"),
            Frame::Null => out.extend_from_slice(b"$-1\r\n"),
            Frame::NullArray if resp3 => out.extend_from_slice(b"_\r\n"),
            Frame::NullArray => out.extend_from_slice(b"*-1\r\n"),
            Frame::Array(v) => {
                let _ = write!(out, "*{}\r\n", v.len());
                for f in v {
                    f.encode(proto, out);
                }
            }
            Frame::Push(v) => {
                let _ = write!(out, "{}{}\r\n", if resp3 { '>' } else { '*' }, v.len());
                for f in v {
                    f.encode(proto, out);
                }
            }
            Frame::Map(kv) => {
                if resp3 {
                    let _ = write!(out, "%{}\r\n", kv.len());
                } else {
                    let _ = write!(out, "*{}\r\n", kv.len() * 2);
                }
                for (k, v) in kv {
                    k.encode(proto, out);
                    v.encode(proto, out);
                }
            }
        }
    }
}

/// Simple strings and errors are one line.
fn clean(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains(['\r', '\n']) {
        s.replace(['\r', '\n'], " ").into()
    } else {
        s.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(f: &Frame, proto: u8) -> String {
        let mut v = Vec::new();
        f.encode(proto, &mut v);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn nulls_and_maps_follow_the_protocol() {
        assert_eq!(enc(&Frame::NullArray, 2), "*-1\r\n");
        assert_eq!(enc(&Frame::Null, 2), "$-1\r\n");
        assert_eq!(enc(&Frame::NullArray, 3), "_\r\n");
        let r = Frame::record([("ip", "10.0.0.1"), ("port", "6379")]);
        assert_eq!(
            enc(&r, 2),
            "*4\r\n$2\r\nip\r\n$8\r\n10.0.0.1\r\n$4\r\nport\r\n$4\r\n6379\r\n"
        );
        assert_eq!(
            enc(&r, 3),
            "%2\r\n$2\r\nip\r\n$8\r\n10.0.0.1\r\n$4\r\nport\r\n$4\r\n6379\r\n"
        );
        let p = Frame::Push(vec![Frame::bulk("message"), Frame::Int(1)]);
        assert_eq!(enc(&p, 2), "*2\r\n$7\r\nmessage\r\n:1\r\n");
        assert_eq!(enc(&p, 3), ">2\r\n$7\r\nmessage\r\n:1\r\n");
        assert_eq!(enc(&Frame::err("ERR a\r\nb"), 2), "-ERR a  b\r\n");
    }
}
