//! Redis's glob patterns for PSUBSCRIBE: `*`, `?`, `[abc]`, `[^a-z]`, `\x`.
//! Iterative (a `*` backtracks to its last position only), so a hostile
//! pattern costs at most pattern × subject steps and no recursion.

/// Whether `s` matches `pat`.
pub fn matches(pat: &[u8], s: &[u8]) -> bool {
    let (mut p, mut i) = (0, 0);
    // Where to resume after the last `*`: (pattern after it, subject pos).
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        let step = match pat.get(p) {
            Some(b'*') => {
                star = Some((p + 1, i));
                p += 1;
                continue;
            }
            Some(b'?') => Some(p + 1),
            Some(b'[') => class(pat, p, s[i]),
            Some(b'\\') if p + 1 < pat.len() => (pat[p + 1] == s[i]).then_some(p + 2),
            Some(&c) => (c == s[i]).then_some(p + 1),
            None => None,
        };
        match (step, star) {
            (Some(next), _) => {
                p = next;
                i += 1;
            }
            (None, Some((sp, si))) => {
                p = sp;
                i = si + 1;
                star = Some((sp, si + 1));
            }
            (None, None) => return false,
        }
    }
    pat[p.min(pat.len())..].iter().all(|&c| c == b'*')
}

/// A `[...]` class at `p` against `c`: where the pattern goes on, if it matches.
fn class(pat: &[u8], p: usize, c: u8) -> Option<usize> {
    let mut q = p + 1;
    let not = pat.get(q) == Some(&b'^');
    if not {
        q += 1;
    }
    let mut hit = false;
    loop {
        match pat.get(q) {
            // Unclosed: Redis treats the rest as the class.
            None => break,
            Some(b']') => {
                q += 1;
                break;
            }
            Some(b'\\') if q + 1 < pat.len() => {
                hit |= pat[q + 1] == c;
                q += 2;
            }
            Some(&a) if pat.get(q + 1) == Some(&b'-') && q + 2 < pat.len() => {
                let b = pat[q + 2];
                let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
                hit |= (lo..=hi).contains(&c);
                q += 3;
            }
            Some(&a) => {
                hit |= a == c;
                q += 1;
            }
        }
    }
    (hit != not).then_some(q)
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn the_patterns_clients_send() {
        let m = |p: &str, s: &str| matches(p.as_bytes(), s.as_bytes());
        assert!(m("*", "+switch-master"));
        assert!(m("[-+]sdown", "+sdown") && m("[-+]sdown", "-sdown"));
        assert!(!m("[-+]sdown", "+odown"));
        assert!(!m("switch-master", "+switch-master"));
        assert!(m("+switch-*", "+switch-master"));
        assert!(m("h?llo", "hello") && !m("h?llo", "hllo"));
        assert!(m("h[^e]llo", "hallo") && !m("h[^e]llo", "hello"));
        assert!(m("h[a-b]llo", "hbllo") && !m("h[a-b]llo", "hcllo"));
        assert!(m("a\\*b", "a*b") && !m("a\\*b", "axb"));
        assert!(m("*a*b", "xxaxxb") && !m("*a*b", "xxaxx"));
        assert!(m("", "") && !m("", "a") && m("**", ""));
    }

    #[test]
    fn a_hostile_pattern_is_cheap() {
        let p = "*a".repeat(500) + "b";
        let s = "a".repeat(5000);
        assert!(!matches(p.as_bytes(), s.as_bytes()));
    }
}
