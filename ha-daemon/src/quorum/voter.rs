//! A voter's side of the lease, for one instance: pure, no I/O, no clock of
//! its own. Every node of a `[quorum]` runs one per instance, and so does a
//! witness for every instance it is asked about.
//!
//! Rules:
//! - one holder at a time: while a promise to a holder runs, no other holder
//!   gets one (its request is refused, naming the holder);
//! - a term is granted to one holder ever: a request must carry a term above
//!   every term granted so far, or equal to it from the holder it went to,
//!   so "term T" names one lease history everywhere;
//! - a voter that may have forgotten promises (it restarted) is quiet, grants
//!   nothing, until every promise it could have made has run out;
//! - a node that would take over from another holder is refused while its
//!   Redis lacks more of the last master's acknowledged writes than the
//!   request allows (`max_stale_ns`): the holder's replication offset comes
//!   with every renewal (`staleness`), so the voters know where the data
//!   stands to within one renewal.
use std::net::IpAddr;

use super::{
    Nanos,
    staleness::{Behind, History, Position},
    timing::MAX_PROMISE_NS,
};

/// What a voter promised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Promise {
    pub holder: IpAddr,
    pub term: u64,
    /// Local time until which no other holder is granted.
    pub until: Nanos,
}

/// A lease request as the voter sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Request {
    /// Who wants to hold (its VRRP source address).
    pub holder: IpAddr,
    pub term: u64,
    /// Identifies the request: an answer is matched to it, and only counts
    /// for the lease computed from its send time.
    pub id: u64,
    /// How long the voter is asked to promise.
    pub promise_ns: Nanos,
    /// The holder-to-be wants to replace a live master (preemption,
    /// switchover): the current holder is told, and may release.
    pub preempt: bool,
    /// The priority it would advertise.
    pub priority: u8,
    /// The asker's Redis replication offset (None: its Redis does not
    /// answer). From a holder, where the master's data stands.
    pub offset: Option<u64>,
    /// The replication history the offset counts in (`replid_tag` of
    /// `master_replid`; 0: unknown) and the one it continues
    /// (`master_replid2`, after a promotion; 0: none).
    pub replid: u64,
    pub replid2: u64,
    /// Its Redis has no key at all.
    pub empty: bool,
    /// The asker holds the lease of `term` (a renewal), granted by a
    /// majority: a voter that knows nothing of the data may grant it.
    pub holding: bool,
    /// A takeover is refused when the asker lacks writes the last master
    /// acknowledged longer than this before its last report (`u64::MAX`:
    /// any, an operator accepted the loss).
    pub max_stale_ns: Nanos,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Refusal {
    /// A promise to another holder runs.
    Promised,
    /// The term is not above the newest one granted (or went to another holder).
    StaleTerm,
    /// The voter restarted and may have forgotten promises.
    Quiet,
    /// The promise asked for is longer than any voter gives.
    TooLong,
    /// The asker's Redis lacks too much of the last master's data.
    Stale(Behind),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Answer {
    Grant {
        term: u64,
    },
    /// Refused; with the newest term this voter granted and to whom, so the
    /// candidate learns who holds.
    Refuse {
        why: Refusal,
        term: u64,
        holder: Option<IpAddr>,
    },
}

/// What a voter knows that a restart of its daemon (within the boot) must
/// not forget: the newest term and holder, and where the data stands. The
/// daemon keeps it in `<run_dir>/quorum-state`, written as it changes (at
/// most every `MEMORY_EVERY`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Memory {
    pub max_term: u64,
    pub max_holder: Option<IpAddr>,
    pub data_holder: Option<IpAddr>,
    /// The newest samples of the history (CLOCK_BOOTTIME, offset).
    pub samples: Vec<(Nanos, u64)>,
    /// The replication ids they count in.
    #[serde(default)]
    pub ids: Vec<u64>,
}

/// Samples a restart keeps: at 10 ms renewals with writes in each, 640 ms.
pub const MEMORY_SAMPLES: usize = 64;
/// How stale the kept memory may be: it is written at most this often.
pub const MEMORY_EVERY_NS: Nanos = 20_000_000;

#[derive(Debug, Clone)]
pub struct Voter {
    promise: Option<Promise>,
    /// Newest term granted, and to whom.
    max_term: u64,
    max_holder: Option<IpAddr>,
    quiet_until: Nanos,
    /// The replication offsets of the last node seen holding the lease (its
    /// renewals, `holding`), and that node: where the master's data stands.
    /// Only renewals count: a grant that never made a lease (a node that
    /// could not win a majority voting for itself) says nothing of the data.
    history: History,
    data_holder: Option<IpAddr>,
    /// It restarted within this boot: it voted before and forgot what it
    /// knew of terms and data.
    restarted: bool,
}

impl Voter {
    /// A voter that grants nothing before `quiet_until` (0: at once).
    pub fn new(quiet_until: Nanos) -> Self {
        Self {
            promise: None,
            max_term: 0,
            max_holder: None,
            quiet_until,
            history: History::default(),
            data_holder: None,
            restarted: false,
        }
    }

    /// A voter that ran before in this boot (its horizon file says so): it
    /// forgot terms and data, and vouches for no takeover until it has seen
    /// a holder renew — unless it kept its memory (`restore`).
    pub fn restarted(quiet_until: Nanos) -> Self {
        Self {
            restarted: true,
            ..Self::new(quiet_until)
        }
    }

    /// A voter that ran before in this boot, with what it kept.
    pub fn restore(quiet_until: Nanos, m: &Memory) -> Self {
        Self {
            max_term: m.max_term,
            max_holder: m.max_holder,
            data_holder: m.data_holder,
            history: History::from_samples(&m.samples, &m.ids),
            ..Self::restarted(quiet_until)
        }
    }

    /// What a restart of the daemon must not forget.
    pub fn memory(&self) -> Memory {
        Memory {
            max_term: self.max_term,
            max_holder: self.max_holder,
            data_holder: self.data_holder,
            samples: self.history.tail(MEMORY_SAMPLES),
            ids: self.history.ids(),
        }
    }

    /// The last node seen renewing a lease (whose data the history tracks).
    pub fn data_holder(&self) -> Option<IpAddr> {
        self.data_holder
    }

    /// Where the master's data stands, as reported to this voter.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// The promise running at `now`, if any.
    pub fn promise(&self, now: Nanos) -> Option<Promise> {
        self.promise.filter(|p| now < p.until)
    }

    /// The newest term granted and its holder.
    pub fn newest(&self) -> (u64, Option<IpAddr>) {
        (self.max_term, self.max_holder)
    }

    /// The latest time any promise made so far runs to (what a restart must
    /// wait out).
    pub fn horizon(&self) -> Nanos {
        self.promise.map_or(0, |p| p.until)
    }

    pub fn quiet_until(&self) -> Nanos {
        self.quiet_until
    }

    pub fn request(&mut self, now: Nanos, r: &Request) -> Answer {
        let refuse = |why, s: &Self| Answer::Refuse {
            why,
            term: s.max_term,
            holder: s.max_holder,
        };
        if now < self.quiet_until {
            return refuse(Refusal::Quiet, self);
        }
        if r.promise_ns > MAX_PROMISE_NS || r.promise_ns == 0 {
            return refuse(Refusal::TooLong, self);
        }
        if let Some(p) = self.promise(now)
            && p.holder != r.holder
        {
            return Answer::Refuse {
                why: Refusal::Promised,
                term: self.max_term.max(p.term),
                holder: Some(p.holder),
            };
        }
        let same_history = r.term == self.max_term && self.max_holder == Some(r.holder);
        if r.term < self.max_term || (r.term == self.max_term && !same_history) {
            return refuse(Refusal::StaleTerm, self);
        }
        // Taking over: not with less of the last holder's data than
        // allowed. The last holder itself is the reference (after a lapse
        // it holds the newest writes), as long as its Redis still counts in
        // the same replication history: one restarted since (empty, or from
        // an older disk) cannot be told from one with every write, and the
        // data must not go to it on trust. A renewal (`holding`) is of a
        // lease a majority granted, each of its voters having judged the
        // data: not judged again here.
        if !r.holding
            && r.max_stale_ns != u64::MAX
            && let Some(h) = self.data_holder
        {
            let pos = r.offset.map(|offset| Position {
                replid: r.replid,
                replid2: r.replid2,
                offset,
                empty: r.empty,
            });
            let behind = if h == r.holder {
                match pos {
                    Some(p) if self.history.comparable(p.replid) => None,
                    _ if self.history.is_empty() => None,
                    // Restarted from its own disk: trusted with it. Back
                    // empty (a lost disk, no persistence): not.
                    Some(_) if !r.empty => None,
                    _ => Some(Behind::UNKNOWN),
                }
            } else {
                self.history.behind_pos(pos)
            };
            if let Some(b) = behind
                && b.ns > r.max_stale_ns
            {
                return refuse(Refusal::Stale(b), self);
            }
        }
        // A voter that ran before in this boot and forgot where the data
        // stands cannot vouch for a takeover: there may have been a holder
        // whose data the asker lacks. It grants a holder's renewals (and so
        // learns). A fresh voter (first start since boot, as in a new
        // cluster) has nothing to forget and grants.
        if self.restarted && self.data_holder.is_none() && !r.holding && r.max_stale_ns != u64::MAX
        {
            return refuse(Refusal::Stale(Behind::UNKNOWN), self);
        }
        let until = now.saturating_add(r.promise_ns);
        let until = match self.promise {
            Some(p) if p.holder == r.holder && p.term == r.term => p.until.max(until),
            _ => until,
        };
        self.promise = Some(Promise {
            holder: r.holder,
            term: r.term,
            until,
        });
        self.max_term = r.term;
        self.max_holder = Some(r.holder);
        // Where the data stands: from the holder's renewals, and from the
        // last holder taking a new term with more of the same history (a
        // lease contested by a peer's requests is re-taken term after term,
        // each time with its offset; kept only from renewals, the history
        // stopped at the first new term and a peer that fell behind since
        // looked current: the 30-minute campaign of 2026-12-07 lost 418
        // writes so). A new term never starts a new history here: that
        // takes a renewal (a lease a majority granted).
        let extends = self.data_holder == Some(r.holder)
            && r.offset.is_some_and(|o| {
                self.history.comparable(r.replid)
                    && self.history.newest().is_some_and(|(_, last)| o >= last)
            });
        if r.holding || extends {
            self.data_holder = Some(r.holder);
            if let Some(offset) = r.offset {
                self.history.record_at(
                    now,
                    Position {
                        replid: r.replid,
                        replid2: r.replid2,
                        offset,
                        empty: r.empty,
                    },
                );
            }
        }
        Answer::Grant { term: r.term }
    }

    /// The holder gave its lease up: its promise ends now. Only the lease of
    /// that holder and term (a replayed release of an older term does nothing).
    pub fn release(&mut self, holder: IpAddr, term: u64) -> bool {
        match self.promise {
            Some(p) if p.holder == holder && p.term == term => {
                self.promise = None;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([198, 18, 0, n])
    }
    fn req(holder: u8, term: u64) -> Request {
        Request {
            holder: ip(holder),
            term,
            id: 1,
            promise_ns: 40,
            preempt: false,
            priority: 100,
            offset: None,
            replid: 0,
            replid2: 0,
            empty: false,
            holding: false,
            max_stale_ns: u64::MAX,
        }
    }

    #[test]
    fn one_holder_at_a_time() {
        let mut v = Voter::new(0);
        assert_eq!(v.request(0, &req(1, 1)), Answer::Grant { term: 1 });
        assert!(matches!(
            v.request(39, &req(2, 2)),
            Answer::Refuse {
                why: Refusal::Promised,
                holder: Some(h),
                ..
            } if h == ip(1)
        ));
        // Renewals by the holder extend it.
        assert_eq!(v.request(30, &req(1, 1)), Answer::Grant { term: 1 });
        assert!(matches!(v.request(69, &req(2, 2)), Answer::Refuse { .. }));
        assert_eq!(v.request(70, &req(2, 2)), Answer::Grant { term: 2 });
    }

    #[test]
    fn a_term_belongs_to_one_holder() {
        let mut v = Voter::new(0);
        assert_eq!(v.request(0, &req(1, 5)), Answer::Grant { term: 5 });
        // After the promise ran out, term 5 still is node 1's.
        assert!(matches!(
            v.request(100, &req(2, 5)),
            Answer::Refuse {
                why: Refusal::StaleTerm,
                term: 5,
                ..
            }
        ));
        assert!(matches!(
            v.request(100, &req(2, 4)),
            Answer::Refuse {
                why: Refusal::StaleTerm,
                ..
            }
        ));
        assert_eq!(v.request(100, &req(2, 6)), Answer::Grant { term: 6 });
        // And the old holder cannot come back with its old term.
        assert!(matches!(v.request(200, &req(1, 5)), Answer::Refuse { .. }));
    }

    #[test]
    fn quiet_after_a_restart_and_no_overlong_promise() {
        let mut v = Voter::new(50);
        assert!(matches!(
            v.request(49, &req(1, 1)),
            Answer::Refuse {
                why: Refusal::Quiet,
                ..
            }
        ));
        let mut long = req(1, 1);
        long.promise_ns = MAX_PROMISE_NS + 1;
        assert!(matches!(
            v.request(50, &long),
            Answer::Refuse {
                why: Refusal::TooLong,
                ..
            }
        ));
        assert_eq!(v.request(50, &req(1, 1)), Answer::Grant { term: 1 });
    }

    #[test]
    fn release_ends_only_that_lease() {
        let mut v = Voter::new(0);
        v.request(0, &req(1, 3));
        assert!(!v.release(ip(1), 2), "an older term's release");
        assert!(!v.release(ip(2), 3), "another node's release");
        assert!(v.release(ip(1), 3));
        assert_eq!(v.request(1, &req(2, 4)), Answer::Grant { term: 4 });
    }

    #[test]
    fn the_last_holder_retaking_new_terms_still_reports_where_the_data_stands() {
        const MS: Nanos = 1_000_000;
        let mut v = Voter::new(0);
        let mut r1 = req(1, 1);
        r1.holding = true;
        r1.offset = Some(1000);
        assert!(matches!(v.request(0, &r1), Answer::Grant { .. }));
        // Its lease contested, node 1 takes a new term every 10 ms instead
        // of renewing; its data grows meanwhile.
        for i in 1..=50u64 {
            let mut again = req(1, 1 + i);
            again.offset = Some(1000 + 100 * i);
            assert!(matches!(
                v.request(i * 40 * MS, &again),
                Answer::Grant { .. }
            ));
        }
        // Node 2 has the data of 40 ms in: 1.96 s behind.
        let mut r2 = req(2, 100);
        r2.offset = Some(1100);
        r2.max_stale_ns = 100 * MS;
        match v.request(2_100 * MS, &r2) {
            Answer::Refuse {
                why: Refusal::Stale(b),
                ..
            } => assert_eq!(b.ns, 1_960 * MS),
            a => panic!("granted a node 1.96 s behind: {a:?}"),
        }
    }

    #[test]
    fn a_stale_asker_is_refused_until_the_old_holder_returns() {
        const MS: Nanos = 1_000_000;
        let mut v = Voter::new(0);
        let mut r1 = req(1, 1);
        r1.holding = true;
        // Node 1 holds and renews; its Redis offset grows by 100 per renewal.
        for i in 0..100u64 {
            r1.offset = Some(1000 + 100 * i);
            assert!(matches!(v.request(i * 10 * MS, &r1), Answer::Grant { .. }));
        }
        // Node 2 stopped receiving at offset 1000 + 100*10 (replication
        // cut 890 ms before node 1's last report); node 1 then goes silent.
        let mut r2 = req(2, 2);
        r2.offset = Some(2000);
        r2.max_stale_ns = 100 * MS;
        let at = 2_000 * MS;
        match v.request(at, &r2) {
            Answer::Refuse {
                why: Refusal::Stale(b),
                holder,
                ..
            } => {
                assert_eq!(b.ns, 890 * MS);
                assert_eq!(b.bytes, 100 * 99 - 1000);
                assert_eq!(holder, Some(ip(1)), "it names the holder with the data");
            }
            a => panic!("{a:?}"),
        }
        // Unknown offset: refused too; an operator who accepts the loss is not.
        r2.offset = None;
        assert!(matches!(
            v.request(at, &r2),
            Answer::Refuse {
                why: Refusal::Stale(b),
                ..
            } if b == Behind::UNKNOWN
        ));
        // Node 1 back, with its data: granted (the data is its).
        r1.holding = false;
        r1.term = 3;
        r1.offset = Some(1000 + 100 * 99);
        assert!(matches!(v.request(at, &r1), Answer::Grant { .. }));
        // A fresh node 2 (caught up) may take over later.
        let mut r2 = req(2, 4);
        r2.offset = Some(1000 + 100 * 99);
        r2.max_stale_ns = 100 * MS;
        assert!(matches!(v.request(at + 50 * MS, &r2), Answer::Grant { .. }));
    }

    #[test]
    fn an_operator_may_accept_the_loss() {
        let mut v = Voter::new(0);
        let mut r1 = req(1, 1);
        r1.holding = true;
        r1.offset = Some(10);
        v.request(0, &r1);
        r1.offset = Some(500);
        v.request(10_000_000_000, &r1);
        let mut r2 = req(2, 2);
        r2.offset = Some(5);
        r2.max_stale_ns = 0;
        assert!(matches!(
            v.request(20_000_000_000, &r2),
            Answer::Refuse {
                why: Refusal::Stale(_),
                ..
            }
        ));
        r2.max_stale_ns = u64::MAX;
        assert!(matches!(
            v.request(20_000_000_000, &r2),
            Answer::Grant { .. }
        ));
        // Its data is the reference once it renews.
        r2.holding = true;
        v.request(20_010_000_000, &r2);
        assert_eq!(v.history().newest().map(|n| n.1), Some(5));
    }

    #[test]
    fn a_restarted_voter_does_not_vouch_for_a_takeover_until_it_sees_a_holder() {
        let mut v = Voter::new(0);
        // A new cluster: granted.
        let mut r = req(2, 1);
        r.max_stale_ns = 100;
        r.offset = Some(7);
        assert!(matches!(v.request(0, &r), Answer::Grant { .. }));
        // After a restart it may have forgotten a holder whose data the
        // asker lacks.
        let mut v = Voter::restarted(0);
        r.term = 9;
        assert!(matches!(
            v.request(0, &r),
            Answer::Refuse {
                why: Refusal::Stale(b),
                ..
            } if b == Behind::UNKNOWN
        ));
        // A holder's renewal is granted, and teaches it.
        let mut h = req(1, 9);
        h.holding = true;
        h.offset = Some(100);
        assert!(matches!(v.request(0, &h), Answer::Grant { .. }));
        assert_eq!(v.data_holder(), Some(ip(1)));
        // A grant that made no lease (no renewal follows) teaches nothing.
        let mut other = req(3, 10);
        other.offset = Some(100);
        other.max_stale_ns = 100;
        assert!(matches!(v.request(100, &other), Answer::Grant { .. }));
        assert_eq!(v.data_holder(), Some(ip(1)));
        assert_eq!(v.history().newest(), Some((0, 100)));
    }

    #[test]
    fn the_last_holder_whose_redis_restarted_is_not_the_reference() {
        let mut v = Voter::new(0);
        let mut r1 = req(1, 1);
        r1.holding = true;
        (r1.replid, r1.offset) = (0xa, Some(100));
        v.request(0, &r1);
        r1.offset = Some(200);
        v.request(10, &r1);
        // Its lease lapsed; it asks again with the same history: fine.
        let mut again = req(1, 2);
        (again.replid, again.offset, again.max_stale_ns) = (0xa, Some(200), 100);
        assert!(matches!(v.request(1_000, &again), Answer::Grant { .. }));
        // Its Redis restarted from its disk (a new id, offset 0): trusted.
        let mut back = req(1, 3);
        (back.replid, back.offset, back.max_stale_ns) = (0xb, Some(0), 100);
        assert!(matches!(v.request(1_500, &back), Answer::Grant { .. }));
        v.release(ip(1), 3);
        // Back empty (a lost disk): not the reference.
        let mut back = req(1, 4);
        (back.replid, back.offset, back.max_stale_ns, back.empty) = (0xc, Some(0), 100, true);
        assert!(matches!(
            v.request(2_000, &back),
            Answer::Refuse {
                why: Refusal::Stale(b),
                ..
            } if b == Behind::UNKNOWN
        ));
        // A replica of the old history, caught up, may take over.
        let mut r2 = req(2, 5);
        (r2.replid, r2.offset, r2.max_stale_ns) = (0xa, Some(200), 100);
        assert!(matches!(v.request(3_000, &r2), Answer::Grant { .. }));
    }
}
