//! Requests: RESP multibulk arrays of bulk strings, as every client sends,
//! and inline commands (`PING\r\n`, for telnet and `redis-cli` pipes).
//! Pure, bounded and fuzzed: a request is at most `MAX_ARGS` arguments of
//! at most `MAX_BULK` bytes, and nothing is allocated before its bytes
//! arrived. Error texts are Redis's; after one the connection is closed,
//! as Redis does.

/// Arguments per request (Redis allows 1M; a Sentinel client sends a
/// handful, a SUBSCRIBE a few dozen channels).
pub const MAX_ARGS: usize = 1024;
/// Bytes per argument (Redis: 512 MB).
pub const MAX_BULK: usize = 64 * 1024;
/// An inline request's line (Redis's own limit).
pub const MAX_INLINE: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("Protocol error: invalid multibulk length")]
    MultibulkLength,
    #[error("Protocol error: invalid bulk length")]
    BulkLength,
    #[error("Protocol error: expected '$', got '{0}'")]
    ExpectedDollar(char),
    #[error("Protocol error: too big mbulk count string")]
    BigCount,
    #[error("Protocol error: too big inline request")]
    BigInline,
    #[error("Protocol error: unbalanced quotes in request")]
    Quotes,
}

/// A request's arguments and the bytes it took, once all of it arrived.
pub type Parsed = Result<Option<(Vec<Vec<u8>>, usize)>, ParseError>;

/// A complete request at the start of `buf`: its arguments (empty for an
/// empty line or `*0`, which Redis ignores) and the bytes it took; `None`
/// until all of it arrived.
pub fn parse(buf: &[u8]) -> Parsed {
    match buf.first() {
        None => Ok(None),
        Some(b'*') => multibulk(buf),
        Some(_) => inline(buf),
    }
}

/// A number line starting at `at` (after its type byte): the number and
/// where the next line starts.
fn number(buf: &[u8], at: usize, big: ParseError) -> Result<Option<(i64, usize)>, ParseError> {
    let rest = &buf[at.min(buf.len())..];
    let Some(nl) = rest.iter().take(32).position(|&b| b == b'\r') else {
        return if rest.len() >= 32 { Err(big) } else { Ok(None) };
    };
    if rest.len() < nl + 2 {
        return Ok(None);
    }
    let n = std::str::from_utf8(&rest[..nl])
        .ok()
        .and_then(|s| s.parse::<i64>().ok());
    Ok(Some((n.unwrap_or(i64::MIN), at + nl + 2)))
}

fn multibulk(buf: &[u8]) -> Parsed {
    let Some((n, mut at)) = number(buf, 1, ParseError::BigCount)? else {
        return Ok(None);
    };
    if n == i64::MIN || n > MAX_ARGS as i64 {
        return Err(ParseError::MultibulkLength);
    }
    if n <= 0 {
        return Ok(Some((Vec::new(), at)));
    }
    // First find the end without allocating: the bytes must all be here.
    let mut spans = Vec::with_capacity(n as usize);
    for _ in 0..n {
        match buf.get(at) {
            None => return Ok(None),
            Some(b'$') => {}
            Some(&c) => return Err(ParseError::ExpectedDollar(c as char)),
        }
        let Some((len, start)) = number(buf, at + 1, ParseError::BulkLength)? else {
            return Ok(None);
        };
        if !(0..=MAX_BULK as i64).contains(&len) {
            return Err(ParseError::BulkLength);
        }
        let end = start + len as usize;
        if buf.len() < end + 2 {
            return Ok(None);
        }
        spans.push((start, end));
        at = end + 2;
    }
    Ok(Some((
        spans.into_iter().map(|(s, e)| buf[s..e].to_vec()).collect(),
        at,
    )))
}

fn inline(buf: &[u8]) -> Parsed {
    let Some(nl) = buf.iter().take(MAX_INLINE + 1).position(|&b| b == b'\n') else {
        return if buf.len() > MAX_INLINE {
            Err(ParseError::BigInline)
        } else {
            Ok(None)
        };
    };
    let line = buf[..nl].strip_suffix(b"\r").unwrap_or(&buf[..nl]);
    Ok(Some((split_args(line)?, nl + 1)))
}

/// Words separated by blanks; a double-quoted word may hold blanks and the
/// escapes `\"`, `\\`, `\n`, `\r`, `\t`; a single-quoted one is literal.
fn split_args(line: &[u8]) -> Result<Vec<Vec<u8>>, ParseError> {
    let mut args = Vec::new();
    let mut i = 0;
    while i < line.len() {
        while i < line.len() && line[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == line.len() {
            break;
        }
        if args.len() == MAX_ARGS {
            return Err(ParseError::MultibulkLength);
        }
        let mut word = Vec::new();
        match line[i] {
            q @ (b'"' | b'\'') => {
                i += 1;
                loop {
                    let Some(&c) = line.get(i) else {
                        return Err(ParseError::Quotes);
                    };
                    i += 1;
                    if c == q {
                        break;
                    }
                    if c == b'\\' && q == b'"' {
                        let Some(&e) = line.get(i) else {
                            return Err(ParseError::Quotes);
                        };
                        i += 1;
                        word.push(match e {
                            b'n' => b'\n',
                            b'r' => b'\r',
                            b't' => b'\t',
                            other => other,
                        });
                    } else {
                        word.push(c);
                    }
                }
                // A closing quote must end the word.
                if line.get(i).is_some_and(|c| !c.is_ascii_whitespace()) {
                    return Err(ParseError::Quotes);
                }
            }
            _ => {
                while i < line.len() && !line[i].is_ascii_whitespace() {
                    word.push(line[i]);
                    i += 1;
                }
            }
        }
        args.push(word);
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(v: &[&str]) -> Vec<Vec<u8>> {
        v.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    #[test]
    fn multibulk_whole_and_in_pieces() {
        let req = b"*2\r\n$4\r\nPING\r\n$2\r\nhi\r\n*1\r\n";
        let (args, used) = parse(req).unwrap().unwrap();
        assert_eq!(args, words(&["PING", "hi"]));
        assert_eq!(&req[used..], b"*1\r\n");
        for cut in 0..used {
            assert_eq!(parse(&req[..cut]).unwrap(), None, "cut at {cut}");
        }
    }

    #[test]
    fn inline_requests() {
        assert_eq!(
            parse(b"SENTINEL masters\r\n").unwrap().unwrap().0,
            words(&["SENTINEL", "masters"])
        );
        assert_eq!(
            parse(b"ping \"a b\" 'c\\n'\n").unwrap().unwrap().0,
            words(&["ping", "a b", "c\\n"])
        );
        assert_eq!(parse(b"\r\n").unwrap().unwrap().0, Vec::<Vec<u8>>::new());
        assert_eq!(parse(b"ping \"a\n"), Err(ParseError::Quotes));
        assert_eq!(parse(b"PING"), Ok(None));
    }

    #[test]
    fn hostile_lengths_are_refused_before_any_allocation() {
        assert_eq!(parse(b"*1073741824\r\n"), Err(ParseError::MultibulkLength));
        assert_eq!(parse(b"*1\r\n$1073741824\r\n"), Err(ParseError::BulkLength));
        assert_eq!(parse(b"*1\r\n$-5\r\n"), Err(ParseError::BulkLength));
        assert_eq!(parse(b"*x\r\n"), Err(ParseError::MultibulkLength));
        assert_eq!(parse(b"*1\r\n:1\r\n"), Err(ParseError::ExpectedDollar(':')));
        assert_eq!(
            parse(&[b"*".as_slice(), &[b'1'; 40]].concat()),
            Err(ParseError::BigCount)
        );
        assert_eq!(
            parse(&vec![b'a'; MAX_INLINE + 1]),
            Err(ParseError::BigInline)
        );
        // Deep nesting is no nesting: an array inside is a protocol error.
        assert_eq!(parse(b"*1\r\n*1\r\n"), Err(ParseError::ExpectedDollar('*')));
    }
}
