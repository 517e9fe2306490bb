//! What voters and candidates say to each other over UDP, and how it is
//! authenticated: every datagram is `magic ‖ postcard(envelope) ‖ HMAC-SHA256`
//! under the shared `key_file`. The envelope binds the message to its
//! instance and term (inside the body) and carries a freshness stamp
//! (sender incarnation, sequence number, and the last challenge nonce the
//! sender got from us), so a replayed or forged packet grants nothing.
//!
//! Parsing is total: any input gives a message or a reason it was rejected.
use std::net::IpAddr;

use ring::hmac;
use serde::{Deserialize, Serialize};

use super::voter::{Answer, Request};

/// Version 2: requests carry the replication offset and the staleness a
/// takeover may have; a version-1 peer is rejected (`magic`), never misread.
pub const MAGIC: [u8; 4] = *b"HAQ2";
const TAG_LEN: usize = 32;
/// Largest datagram sent or accepted.
pub const MAX_DATAGRAM: usize = 1400;
/// Longest instance name on the wire.
pub const MAX_NAME: usize = 64;
/// The shortest key accepted from `key_file`.
pub const MIN_KEY_LEN: usize = 16;

/// The shared secret. Never printed.
#[derive(Clone)]
pub struct Key(hmac::Key);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(********)")
    }
}

impl Key {
    pub fn new(secret: &[u8]) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }

    /// Reads `key_file`: its bytes, without a trailing newline, at least
    /// `MIN_KEY_LEN` of them.
    pub fn read(path: &std::path::Path) -> Result<Self, String> {
        let mut b = crate::secret::read(path, "key_file")?;
        while b.last().is_some_and(|c| *c == b'\n' || *c == b'\r') {
            b.pop();
        }
        if b.len() < MIN_KEY_LEN {
            return Err(format!(
                "key_file {}: {} bytes; the shared key must have at least {MIN_KEY_LEN} (e.g. `(umask 077; openssl rand -hex 32 > {})`)",
                path.display(),
                b.len(),
                path.display()
            ));
        }
        Ok(Self::new(&b))
    }
}

/// One instance's connections to the master's Redis port, as the master sees
/// them (for tickles after a takeover).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conns {
    pub instance: String,
    /// The master's term of mastership these describe; a backup replaces
    /// what it has from an older epoch.
    pub epoch: u64,
    /// A full list (in `parts` datagrams, this being `part`) or a change.
    pub snapshot: bool,
    pub part: u16,
    pub parts: u16,
    pub add: Vec<(IpAddr, u16)>,
    pub del: Vec<(IpAddr, u16)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body {
    Request {
        instance: String,
        req: Request,
    },
    Answer {
        instance: String,
        id: u64,
        answer: Answer,
    },
    Release {
        instance: String,
        holder: IpAddr,
        term: u64,
    },
    /// "Prove you are live": echo this nonce in your next message.
    Challenge {
        nonce: u64,
    },
    Conns(Conns),
}

impl Body {
    pub fn instance(&self) -> Option<&str> {
        match self {
            Body::Request { instance, .. }
            | Body::Answer { instance, .. }
            | Body::Release { instance, .. } => Some(instance),
            Body::Conns(c) => Some(&c.instance),
            Body::Challenge { .. } => None,
        }
    }
    pub fn kind(&self) -> &'static str {
        match self {
            Body::Request { .. } => "request",
            Body::Answer { .. } => "answer",
            Body::Release { .. } => "release",
            Body::Challenge { .. } => "challenge",
            Body::Conns(_) => "conns",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The sender's run: larger for a later start of the same node.
    pub incarnation: u64,
    /// Strictly increasing within an incarnation.
    pub seq: u64,
    /// The last challenge nonce the sender received from the receiver (0: none).
    pub echo: u64,
    pub body: Body,
}

/// Why a datagram was dropped; counted by these names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reject {
    /// Shorter than magic + tag, or longer than any we send.
    Length,
    Magic,
    /// The HMAC does not match: forged, corrupted, or another key.
    Mac,
    /// Authentic but not a message of this version.
    Decode,
    /// Authentic, but not fresh: a replay (answered with a challenge).
    Replay,
    /// From an address that is not a voter (also dropped in XDP).
    NotVoter,
    /// About an instance this node does not run.
    UnknownInstance,
    /// An instance name longer than `MAX_NAME`.
    Name,
}

impl Reject {
    pub fn name(&self) -> &'static str {
        match self {
            Reject::Length => "length",
            Reject::Magic => "magic",
            Reject::Mac => "bad_mac",
            Reject::Decode => "decode",
            Reject::Replay => "replay",
            Reject::NotVoter => "not_voter",
            Reject::UnknownInstance => "unknown_instance",
            Reject::Name => "name",
        }
    }
}

/// The HMAC-SHA256 tag of `msg` under `key` (what `seal` appends).
pub fn sign(key: &Key, msg: &[u8]) -> Vec<u8> {
    hmac::sign(&key.0, msg).as_ref().to_vec()
}

/// Seals an envelope into a datagram.
pub fn seal(key: &Key, env: &Envelope) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    // Serialising our own types into a Vec cannot fail.
    out.extend(postcard::to_stdvec(env).unwrap_or_default());
    let tag = hmac::sign(&key.0, &out);
    out.extend_from_slice(tag.as_ref());
    out
}

/// Opens a datagram: checks length, magic and HMAC, then decodes.
pub fn open(key: &Key, data: &[u8]) -> Result<Envelope, Reject> {
    if data.len() < MAGIC.len() + TAG_LEN || data.len() > MAX_DATAGRAM + 512 {
        return Err(Reject::Length);
    }
    if data[..MAGIC.len()] != MAGIC {
        return Err(Reject::Magic);
    }
    let (msg, tag) = data.split_at(data.len() - TAG_LEN);
    hmac::verify(&key.0, msg, tag).map_err(|_| Reject::Mac)?;
    let env: Envelope = postcard::from_bytes(&msg[MAGIC.len()..]).map_err(|_| Reject::Decode)?;
    if env.body.instance().is_some_and(|i| i.len() > MAX_NAME) {
        return Err(Reject::Name);
    }
    Ok(env)
}

/// Per sender: the newest (incarnation, seq) accepted, and the challenge
/// outstanding. A message is fresh when it is newer than everything accepted
/// from that sender, or when it echoes our challenge (after either side
/// restarted); otherwise the sender is challenged and the message dropped.
#[derive(Debug, Default, Clone)]
pub struct Freshness {
    seen: std::collections::HashMap<IpAddr, Seen>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    newest: Option<(u64, u64)>,
    nonce: u64,
    /// The nonce before `nonce`: an echo is a round trip behind.
    prev: u64,
    challenged_at: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Fresh,
    /// Not fresh: send this challenge (if `Some`; rate-limited) and drop it.
    Stale(Option<u64>),
}

/// Challenges to one sender at most this often.
const CHALLENGE_EVERY_NS: u64 = 50_000_000;
/// Senders remembered (voters only ever: a handful).
const MAX_SENDERS: usize = 256;

impl Freshness {
    /// `now` (ns) rate-limits challenges; `nonce` is a fresh random value
    /// used if a challenge is sent.
    pub fn check(&mut self, from: IpAddr, env: &Envelope, now: u64, nonce: u64) -> Verdict {
        if self.seen.len() >= MAX_SENDERS && !self.seen.contains_key(&from) {
            return Verdict::Stale(None);
        }
        let s = self.seen.entry(from).or_default();
        let stamp = (env.incarnation, env.seq);
        let newer = s.newest.is_some_and(|n| stamp > n);
        let answered = env.echo != 0 && (env.echo == s.nonce || env.echo == s.prev);
        if newer || answered {
            s.newest = Some(stamp);
            if answered {
                s.nonce = 0;
                s.prev = 0;
            }
            return Verdict::Fresh;
        }
        if s.nonce != 0 && now < s.challenged_at + CHALLENGE_EVERY_NS {
            return Verdict::Stale(None);
        }
        s.prev = s.nonce;
        s.nonce = nonce.max(1);
        s.challenged_at = now;
        Verdict::Stale(Some(s.nonce))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(seq: u64, echo: u64) -> Envelope {
        Envelope {
            incarnation: 7,
            seq,
            echo,
            body: Body::Release {
                instance: "vi".into(),
                holder: IpAddr::from([198, 18, 0, 1]),
                term: 3,
            },
        }
    }

    #[test]
    fn sealed_messages_open_and_any_change_is_caught() {
        let k = Key::new(b"0123456789abcdef");
        let e = env(1, 0);
        let d = seal(&k, &e);
        assert_eq!(open(&k, &d), Ok(e));
        for i in 0..d.len() {
            let mut t = d.clone();
            t[i] ^= 0x40;
            assert!(open(&k, &t).is_err(), "flipped byte {i} accepted");
        }
        assert_eq!(open(&Key::new(b"another key 12345"), &d), Err(Reject::Mac));
        assert_eq!(open(&k, &d[..10]), Err(Reject::Length));
    }

    #[test]
    fn no_input_panics_and_garbage_is_rejected() {
        let k = Key::new(b"0123456789abcdef");
        let mut x: u32 = 1;
        for len in 0..200 {
            let v: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            assert!(open(&k, &v).is_err());
            let mut m = MAGIC.to_vec();
            m.extend(&v);
            assert!(open(&k, &m).is_err());
        }
        // Authentic but undecodable.
        let mut m = MAGIC.to_vec();
        m.extend([0xff; 20]);
        let tag = hmac::sign(&k.0, &m);
        m.extend_from_slice(tag.as_ref());
        assert_eq!(open(&k, &m), Err(Reject::Decode));
    }

    #[test]
    fn replays_are_challenged_and_a_restart_is_let_in_by_the_echo() {
        let from = IpAddr::from([198, 18, 0, 2]);
        let mut f = Freshness::default();
        // First contact: challenged.
        assert_eq!(f.check(from, &env(5, 0), 0, 99), Verdict::Stale(Some(99)));
        // The answer carries the nonce.
        assert_eq!(f.check(from, &env(6, 99), 1, 1), Verdict::Fresh);
        assert_eq!(f.check(from, &env(7, 99), 2, 1), Verdict::Fresh);
        // A replay of seq 6 or 7, however often: dropped, challenged at most
        // once per 50 ms.
        assert_eq!(f.check(from, &env(6, 99), 3, 42), Verdict::Stale(Some(42)));
        assert_eq!(f.check(from, &env(7, 99), 4, 43), Verdict::Stale(None));
        // The sender restarted with a smaller stamp: its echo lets it in.
        let mut e = env(1, 42);
        e.incarnation = 1;
        assert_eq!(f.check(from, &e, 5, 1), Verdict::Fresh);
    }
}
