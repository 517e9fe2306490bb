//! A Redis node's side of the lease, for one instance: asks every voter
//! (itself included) for a promise each renewal period while it wants to be
//! master, and holds the lease while a majority has promised. Pure: events
//! and the time in, messages and lease changes out.
use std::net::IpAddr;

use super::{
    Nanos,
    staleness::Behind,
    timing::Timing,
    voter::{Answer, Refusal, Request},
};

/// Who answered: this node's own voter, or a peer (by address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum From {
    Me,
    Peer(IpAddr),
}

/// What the VRRP side wants the lease for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Want {
    /// To replace a live master: the holder is asked to release.
    pub preempt: bool,
    pub priority: u8,
}

/// The lease this node holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Held {
    pub term: u64,
    /// Local time at which it ends (the kernel fence's deadline).
    pub until: Nanos,
    /// The voters whose promises back `until`.
    pub granted_by: Vec<From>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum LostWhy {
    /// Not renewed in time: the daemon steps down before the lease ends.
    Expired,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Out {
    /// Send this request to every peer and to the own voter.
    Request(Request),
    /// Tell every voter (the own one too) that the lease of `term` is given up.
    Release { term: u64 },
    /// The lease is ours (a new term), until the given local time.
    Acquired { term: u64, until: Nanos },
    /// Renewed: it now runs until then.
    Extended { term: u64, until: Nanos },
    /// No longer ours: step down now.
    Lost { term: u64, why: LostWhy },
}

#[derive(Debug, Clone)]
struct Pending {
    id: u64,
    sent_at: Nanos,
    term: u64,
    granted: Vec<From>,
}

#[derive(Debug, Clone)]
pub struct Candidate {
    id: IpAddr,
    voters: usize,
    timing: Timing,
    want: Option<Want>,
    held: Option<Held>,
    /// Newest term heard of, and its holder.
    term_seen: u64,
    holder_seen: Option<IpAddr>,
    next_id: u64,
    next_send: Nanos,
    pending: Vec<Pending>,
    /// A voter refused the held term as stale (it granted a newer one to a
    /// node that could not win): renew under a newer term, so that voter
    /// counts again.
    bump: bool,
    /// The end of the last lease held (the kernel fence's deadline): until
    /// then this node may still serve, so its own vote cannot go elsewhere.
    served_until: Nanos,
    /// How much of the last master's writes a takeover may lack.
    max_stale_ns: Nanos,
    /// An operator accepted losing what this node lacks: the next takeover
    /// is not refused for staleness.
    accept_loss: bool,
    /// The last refusal for staleness while taking over: who, how far behind.
    stale: Option<(From, Behind, Nanos)>,
}

impl Candidate {
    /// `id`: this node's address as holder; `voters`: how many vote in all,
    /// this node included; `first_id`: where request ids start (random per
    /// daemon start, so answers to an earlier run never match).
    pub fn new(id: IpAddr, voters: usize, timing: Timing, first_id: u64) -> Self {
        Self {
            id,
            voters,
            timing,
            want: None,
            held: None,
            term_seen: 0,
            holder_seen: None,
            next_id: first_id,
            next_send: 0,
            pending: Vec::new(),
            bump: false,
            served_until: 0,
            max_stale_ns: u64::MAX,
            accept_loss: false,
            stale: None,
        }
    }

    /// How much of the last master's acknowledged writes a takeover by this
    /// node may lack (`[quorum] max_staleness_ms`).
    pub fn with_max_stale(mut self, ns: Nanos) -> Self {
        self.max_stale_ns = ns;
        self
    }

    /// An operator accepts what this node's Redis lacks: its next takeover
    /// is not refused for staleness (once; cleared when it holds).
    pub fn accept_loss(&mut self) {
        self.accept_loss = true;
    }

    pub fn accepting_loss(&self) -> bool {
        self.accept_loss
    }

    /// The last time a voter refused this node's takeover for staleness:
    /// which voter, how far behind, when (local time). Cleared once it holds.
    pub fn refused_stale(&self) -> Option<(From, Behind, Nanos)> {
        self.stale
    }

    /// This node's address as holder.
    pub fn id(&self) -> IpAddr {
        self.id
    }
    pub fn majority(&self) -> usize {
        self.voters / 2 + 1
    }
    pub fn timing(&self) -> &Timing {
        &self.timing
    }
    pub fn held(&self) -> Option<&Held> {
        self.held.as_ref()
    }
    pub fn wants(&self) -> Option<Want> {
        self.want
    }
    /// Newest term and holder this node has heard of.
    pub fn newest(&self) -> (u64, Option<IpAddr>) {
        match &self.held {
            Some(h) => (h.term, Some(self.id)),
            None => (self.term_seen, self.holder_seen),
        }
    }

    /// When `tick` next has something to do.
    pub fn next_wakeup(&self) -> Option<Nanos> {
        let renew = self.want.map(|_| self.next_send);
        let lapse = self
            .held
            .as_ref()
            .map(|h| h.until.saturating_sub(self.timing.step_down_ns));
        match (renew, lapse) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Start (or keep) asking for the lease.
    pub fn want(&mut self, now: Nanos, w: Want, out: &mut Vec<Out>) {
        let new = self.want.is_none();
        self.want = Some(w);
        if new {
            self.next_send = now;
        }
        self.tick(now, out);
    }

    /// Ask again at once (a holder just released, a challenge was answered).
    pub fn hurry(&mut self, now: Nanos, out: &mut Vec<Out>) {
        if self.want.is_some() {
            self.next_send = now;
            self.tick(now, out);
        }
    }

    /// Give the lease up (the caller has fenced the local Redis first).
    pub fn unwant(&mut self, out: &mut Vec<Out>) {
        self.want = None;
        self.accept_loss = false;
        self.stale = None;
        self.pending.clear();
        if let Some(h) = self.held.take() {
            // The caller fences the kernel now: nothing is served past it.
            self.served_until = 0;
            out.push(Out::Release { term: h.term });
        }
    }

    pub fn tick(&mut self, now: Nanos, out: &mut Vec<Out>) {
        if let Some(h) = &self.held
            && now.saturating_add(self.timing.step_down_ns) >= h.until
        {
            let term = h.term;
            self.held = None;
            out.push(Out::Lost {
                term,
                why: LostWhy::Expired,
            });
        }
        let lease = self.timing.lease_ns;
        self.pending.retain(|p| p.sent_at + lease > now);
        let Some(w) = self.want else { return };
        if now < self.next_send {
            return;
        }
        let term = match &self.held {
            Some(h) if !self.bump => h.term,
            Some(h) => h.term.max(self.term_seen) + 1,
            None => self.term_seen + 1,
        };
        self.bump = false;
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        self.pending.push(Pending {
            id,
            sent_at: now,
            term,
            granted: Vec::new(),
        });
        self.next_send = now + self.timing.renew_ns;
        out.push(Out::Request(Request {
            holder: self.id,
            term,
            id,
            promise_ns: self.timing.promise_ns,
            preempt: w.preempt && self.held.is_none(),
            priority: w.priority,
            holding: self.held.as_ref().is_some_and(|h| h.term == term),
            // Where the local data stands is the driver's to fill in as it
            // sends (it reads the local Redis; this core does no I/O).
            offset: None,
            replid: 0,
            replid2: 0,
            empty: false,
            max_stale_ns: if self.accept_loss {
                u64::MAX
            } else {
                self.max_stale_ns
            },
        }));
    }

    /// A voter answered request `id`.
    pub fn answer(&mut self, now: Nanos, from: From, id: u64, a: Answer, out: &mut Vec<Out>) {
        let Some(i) = self.pending.iter().position(|p| p.id == id) else {
            // Not ours, or too old to count: a replayed grant confers nothing.
            return;
        };
        match a {
            Answer::Grant { term } if term == self.pending[i].term => {
                let majority = self.majority();
                let p = &mut self.pending[i];
                if !p.granted.contains(&from) {
                    p.granted.push(from);
                }
                if p.granted.len() < majority {
                    return;
                }
                let until = p.sent_at + self.timing.lease_ns;
                if now.saturating_add(self.timing.step_down_ns) >= until {
                    return;
                }
                let (term, granted_by) = (p.term, p.granted.clone());
                match &mut self.held {
                    Some(h) if h.term == term => {
                        if until > h.until {
                            h.until = until;
                            h.granted_by = granted_by;
                            self.served_until = self.served_until.max(until);
                            out.push(Out::Extended { term, until });
                        }
                    }
                    // Renewed under a newer term: the same lease goes on.
                    Some(h) if term > h.term => {
                        h.term = term;
                        h.until = h.until.max(until);
                        h.granted_by = granted_by;
                        self.served_until = self.served_until.max(h.until);
                        self.term_seen = self.term_seen.max(term);
                        out.push(Out::Extended {
                            term,
                            until: h.until,
                        });
                    }
                    Some(_) => {}
                    None if self.want.is_some() => {
                        self.accept_loss = false;
                        self.stale = None;
                        self.term_seen = self.term_seen.max(term);
                        self.holder_seen = Some(self.id);
                        self.held = Some(Held {
                            term,
                            until,
                            granted_by,
                        });
                        self.served_until = self.served_until.max(until);
                        out.push(Out::Acquired { term, until });
                    }
                    // Granted after we stopped wanting it: give it back.
                    None => out.push(Out::Release { term }),
                }
            }
            Answer::Grant { .. } => {}
            Answer::Refuse { why, term, holder } => {
                if let Refusal::Stale(b) = why {
                    self.stale = Some((from, b, now));
                }
                // Not holding, and the newest attempt asked a term a voter has
                // already seen: ask above it now rather than a renewal period
                // later (a takeover after a release would otherwise wait 10 ms
                // for a term number). Once per attempt: the new request is the
                // newest, and the old one's other refusals no longer match.
                let retry = why == Refusal::StaleTerm
                    && self.held.is_none()
                    && self.want.is_some()
                    && self.pending.last().is_some_and(|p| p.id == id)
                    && term >= self.pending[i].term;
                if term > self.term_seen || (term == self.term_seen && holder.is_some()) {
                    self.term_seen = term;
                    self.holder_seen = holder;
                }
                if why == Refusal::Promised
                    && let Some(h) = holder
                {
                    self.holder_seen = Some(h);
                }
                // That voter granted a newer term, or this very term to
                // another node (a minority's self-grant in a partition): renew
                // under a term above it, so it counts again and knows who holds.
                if self
                    .held
                    .as_ref()
                    .is_some_and(|h| term > h.term || (term == h.term && holder != Some(self.id)))
                {
                    self.bump = true;
                }
                // A newer term seen in a refusal ends nothing: a minority
                // (the asker's own voter, in a partition) grants one too.
                // This lease ends when a majority stops renewing it.
                if retry {
                    self.next_send = now;
                    self.tick(now, out);
                }
            }
        }
    }

    /// Whether a request from another node should win over this node's own
    /// attempt (a split vote): it ranks higher (priority, then address, as
    /// VRRP ranks masters), and this node does not hold the lease.
    /// Never while a lease of its own may still be served (up to its end,
    /// after the step-down).
    pub fn yields_to(&self, now: Nanos, r: &Request) -> bool {
        match self.want {
            Some(w) if self.held.is_none() && r.holder != self.id && now >= self.served_until => {
                (r.priority, r.holder) > (w.priority, self.id)
            }
            _ => false,
        }
    }

    /// Gives up the current attempt so that its own voter can vote for a
    /// higher-ranked node: every grant collected so far is forgotten (none
    /// can then make a lease), and it asks again only after `backoff`.
    pub fn withdraw(&mut self, now: Nanos, backoff: Nanos) {
        self.pending.clear();
        self.next_send = self.next_send.max(now + backoff);
    }

    /// Another node told the voters it holds (or gave up) term `term`: what
    /// this node knows of the newest holder.
    pub fn heard_of(&mut self, holder: IpAddr, term: u64) {
        if term >= self.term_seen {
            self.term_seen = term;
            self.holder_seen = Some(holder);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quorum::timing::{DEFAULT_DRIFT_PPM, Timing};

    const MS: u64 = 1_000_000;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([198, 18, 0, n])
    }
    fn cand() -> Candidate {
        Candidate::new(ip(1), 3, Timing::derive(10 * MS, DEFAULT_DRIFT_PPM), 100)
    }
    fn request(out: &[Out]) -> Request {
        out.iter()
            .find_map(|o| match o {
                Out::Request(r) => Some(*r),
                _ => None,
            })
            .expect("a request")
    }
    const W: Want = Want {
        preempt: false,
        priority: 100,
    };

    #[test]
    fn holds_with_a_majority_from_the_send_time() {
        let mut c = cand();
        let mut out = Vec::new();
        c.want(0, W, &mut out);
        let r = request(&out);
        assert_eq!(r.term, 1);
        out.clear();
        c.answer(MS, From::Me, r.id, Answer::Grant { term: 1 }, &mut out);
        assert!(out.is_empty(), "one of three is no majority");
        c.answer(
            2 * MS,
            From::Peer(ip(2)),
            r.id,
            Answer::Grant { term: 1 },
            &mut out,
        );
        let lease = c.timing().lease_ns;
        assert_eq!(
            out,
            vec![Out::Acquired {
                term: 1,
                until: lease
            }]
        );
        // The same voter twice is still two votes, not three.
        out.clear();
        c.answer(
            3 * MS,
            From::Peer(ip(2)),
            r.id,
            Answer::Grant { term: 1 },
            &mut out,
        );
        assert!(out.is_empty());
    }

    #[test]
    fn renews_and_steps_down_before_the_end_when_it_cannot() {
        let mut c = cand();
        let mut out = Vec::new();
        c.want(0, W, &mut out);
        let r = request(&out);
        c.answer(0, From::Me, r.id, Answer::Grant { term: 1 }, &mut out);
        c.answer(
            0,
            From::Peer(ip(3)),
            r.id,
            Answer::Grant { term: 1 },
            &mut out,
        );
        out.clear();
        c.tick(10 * MS, &mut out);
        let r2 = request(&out);
        assert_eq!(r2.term, 1, "a renewal keeps the term");
        c.answer(
            11 * MS,
            From::Me,
            r2.id,
            Answer::Grant { term: 1 },
            &mut out,
        );
        c.answer(
            11 * MS,
            From::Peer(ip(2)),
            r2.id,
            Answer::Grant { term: 1 },
            &mut out,
        );
        let until = 10 * MS + c.timing().lease_ns;
        assert!(out.contains(&Out::Extended { term: 1, until }));
        // No answers from now on: lost half an interval before the end.
        out.clear();
        c.tick(until - c.timing().step_down_ns - 1, &mut out);
        assert!(!out.iter().any(|o| matches!(o, Out::Lost { .. })));
        c.tick(until - c.timing().step_down_ns, &mut out);
        assert!(out.contains(&Out::Lost {
            term: 1,
            why: LostWhy::Expired
        }));
    }

    #[test]
    fn a_stale_or_unknown_grant_counts_for_nothing() {
        let mut c = cand();
        let mut out = Vec::new();
        c.want(0, W, &mut out);
        let r = request(&out);
        out.clear();
        // A grant for a request never sent (a replay from another run).
        c.answer(0, From::Me, 7, Answer::Grant { term: 1 }, &mut out);
        c.answer(0, From::Peer(ip(2)), 7, Answer::Grant { term: 1 }, &mut out);
        // A grant of another term.
        c.answer(0, From::Me, r.id, Answer::Grant { term: 9 }, &mut out);
        c.answer(
            0,
            From::Peer(ip(2)),
            r.id,
            Answer::Grant { term: 9 },
            &mut out,
        );
        assert!(out.is_empty());
        // Grants that arrive after the lease they would give is over.
        let late = c.timing().lease_ns;
        c.answer(late, From::Me, r.id, Answer::Grant { term: 1 }, &mut out);
        c.answer(
            late,
            From::Peer(ip(2)),
            r.id,
            Answer::Grant { term: 1 },
            &mut out,
        );
        assert!(out.iter().all(|o| matches!(o, Out::Request(_))), "{out:?}");
    }

    #[test]
    fn learns_the_holder_and_tries_a_newer_term() {
        let mut c = cand();
        let mut out = Vec::new();
        c.want(0, W, &mut out);
        let r = request(&out);
        c.answer(
            0,
            From::Peer(ip(2)),
            r.id,
            Answer::Refuse {
                why: Refusal::Promised,
                term: 7,
                holder: Some(ip(2)),
            },
            &mut out,
        );
        assert_eq!(c.newest(), (7, Some(ip(2))));
        out.clear();
        c.tick(10 * MS, &mut out);
        assert_eq!(request(&out).term, 8);
    }

    #[test]
    fn its_own_term_given_to_another_node_moves_the_holder_on() {
        // A partitioned peer's own voter gave "term 1" to that peer: the
        // holder's next renewal goes above it, so that voter grants it again.
        let mut c = cand();
        let mut out = Vec::new();
        c.want(0, W, &mut out);
        let r = request(&out);
        c.answer(0, From::Me, r.id, Answer::Grant { term: 1 }, &mut out);
        c.answer(
            0,
            From::Peer(ip(3)),
            r.id,
            Answer::Grant { term: 1 },
            &mut out,
        );
        out.clear();
        c.tick(10 * MS, &mut out);
        let r2 = request(&out);
        c.answer(
            10 * MS,
            From::Peer(ip(2)),
            r2.id,
            Answer::Refuse {
                why: Refusal::StaleTerm,
                term: 1,
                holder: Some(ip(2)),
            },
            &mut out,
        );
        out.clear();
        c.tick(20 * MS, &mut out);
        assert_eq!(request(&out).term, 2);
    }

    #[test]
    fn a_stale_term_is_asked_again_above_at_once_and_only_once() {
        let mut c = cand();
        let mut out = Vec::new();
        c.want(0, W, &mut out);
        let r = request(&out);
        assert_eq!(r.term, 1);
        out.clear();
        let stale = Answer::Refuse {
            why: Refusal::StaleTerm,
            term: 2,
            holder: Some(ip(2)),
        };
        c.answer(MS, From::Peer(ip(2)), r.id, stale, &mut out);
        let r2 = request(&out);
        assert_eq!(r2.term, 3, "above the term the voter has seen, now");
        out.clear();
        // The same refusal from another voter of the old request: no storm.
        c.answer(MS, From::Peer(ip(3)), r.id, stale, &mut out);
        assert!(out.is_empty(), "{out:?}");
        // Other refusals wait for the renewal period.
        let promised = Answer::Refuse {
            why: Refusal::Promised,
            term: 3,
            holder: Some(ip(2)),
        };
        c.answer(2 * MS, From::Peer(ip(2)), r2.id, promised, &mut out);
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn release_gives_it_back_and_a_newer_term_seen_ends_nothing() {
        let mut c = cand();
        let mut out = Vec::new();
        c.want(0, W, &mut out);
        let r = request(&out);
        c.answer(0, From::Me, r.id, Answer::Grant { term: 1 }, &mut out);
        c.answer(
            0,
            From::Peer(ip(2)),
            r.id,
            Answer::Grant { term: 1 },
            &mut out,
        );
        out.clear();
        c.unwant(&mut out);
        assert_eq!(out, vec![Out::Release { term: 1 }]);
        assert!(c.held().is_none());

        // A partitioned peer's own voter granted it term 2: this lease,
        // renewed by the others, goes on.
        let mut c = cand();
        let mut out = Vec::new();
        c.want(0, W, &mut out);
        let r = request(&out);
        c.answer(0, From::Me, r.id, Answer::Grant { term: 1 }, &mut out);
        c.answer(
            0,
            From::Peer(ip(3)),
            r.id,
            Answer::Grant { term: 1 },
            &mut out,
        );
        out.clear();
        c.tick(10 * MS, &mut out);
        let r2 = request(&out);
        c.answer(
            10 * MS,
            From::Peer(ip(2)),
            r2.id,
            Answer::Refuse {
                why: Refusal::Promised,
                term: 2,
                holder: Some(ip(2)),
            },
            &mut out,
        );
        c.answer(
            10 * MS,
            From::Me,
            r2.id,
            Answer::Grant { term: 1 },
            &mut out,
        );
        c.answer(
            10 * MS,
            From::Peer(ip(3)),
            r2.id,
            Answer::Grant { term: 1 },
            &mut out,
        );
        assert!(
            !out.iter().any(|o| matches!(o, Out::Lost { .. })),
            "{out:?}"
        );
        assert!(out.iter().any(|o| matches!(o, Out::Extended { .. })));
        assert_eq!(c.held().map(|h| h.term), Some(1));
        // The next renewal moves past that term, so that voter counts again.
        out.clear();
        c.tick(20 * MS, &mut out);
        let r3 = request(&out);
        assert_eq!(r3.term, 3);
        c.answer(
            20 * MS,
            From::Me,
            r3.id,
            Answer::Grant { term: 3 },
            &mut out,
        );
        c.answer(
            20 * MS,
            From::Peer(ip(2)),
            r3.id,
            Answer::Grant { term: 3 },
            &mut out,
        );
        assert_eq!(c.held().map(|h| h.term), Some(3));
        assert!(out.contains(&Out::Extended {
            term: 3,
            until: 20 * MS + c.timing().lease_ns
        }));
    }
}
