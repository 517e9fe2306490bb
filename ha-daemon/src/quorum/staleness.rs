//! Where the master's data stands, as a voter learns it: every renewal
//! carries the holder's Redis replication offset, and the voter keeps when
//! (on its own clock) each new offset was first reported. A node that asks
//! to take over reports its own offset; the writes it lacks are those past
//! it, and how long ago the first of them was reported tells how much of
//! the master's acknowledged writes a promotion would throw away.
//!
//! Pure, no clock of its own; bounded (a fixed number of samples).
use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
};

use super::Nanos;
pub use crate::redis::role::Position;

/// Where the local Redis's data stands, written by the Redis side as it
/// samples it, read by the lease thread for each request (a lock held for
/// a copy only).
#[derive(Debug, Clone, Default)]
pub struct Offset(Arc<Mutex<Option<Position>>>);

impl Offset {
    /// None: the local Redis does not answer (or has not been read yet).
    pub fn get(&self) -> Option<Position> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
    pub fn set(&self, p: Option<Position>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = p;
    }
}

/// Replication histories a voter's samples span, at most (a promotion
/// continues the history under a new id).
const MAX_IDS: usize = 16;

/// Samples kept: at 10 ms renewals with writes in every interval, 40 s of
/// history; beyond it a node is at least that stale (refused anyway).
pub const MAX_SAMPLES: usize = 4096;

/// How far behind the master's data a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Behind {
    /// From the last report the node was not behind of to the last report,
    /// on the voter's clock: the writes it lacks were all acknowledged in
    /// that span (or in the lease after it); `u64::MAX` when unknown (its
    /// offset is, or it lacks writes older than the voter's history).
    pub ns: Nanos,
    /// Replication bytes it lacks (`u64::MAX`: unknown).
    pub bytes: u64,
}

impl Behind {
    pub const UNKNOWN: Behind = Behind {
        ns: u64::MAX,
        bytes: u64::MAX,
    };

    pub fn describe(&self) -> String {
        if self.bytes == u64::MAX {
            return "its replication offset is unknown".into();
        }
        if self.ns == u64::MAX {
            return format!(
                "{} bytes behind the last master's acknowledged writes, some older than this voter knows",
                self.bytes
            );
        }
        format!(
            "{} ms ({} bytes) behind the last master's acknowledged writes",
            self.ns / 1_000_000,
            self.bytes
        )
    }
}

/// A master's replication offsets over time, as reported to one voter.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// (first reported, offset), both strictly increasing.
    samples: VecDeque<(Nanos, u64)>,
    /// The replication ids (`replid_tag`) the samples' offsets belong to:
    /// one, and one more per promotion that continued it (0: unknown,
    /// matches any, as in the simulation).
    ids: VecDeque<u64>,
}

impl History {
    /// The holder reported its position at `now`. A new replication id that
    /// continues ours (`replid2`: a promoted replica) keeps the samples;
    /// any other starts the history over (a Redis restarted from its AOF
    /// has the data but counts from 0 again).
    pub fn record_at(&mut self, now: Nanos, p: Position) {
        let known = |ids: &VecDeque<u64>, id: u64| id == 0 || ids.contains(&id) || ids.contains(&0);
        if self.ids.is_empty() || known(&self.ids, p.replid) {
            // Same history.
        } else if p.replid2 != 0 && known(&self.ids, p.replid2) {
            if self.ids.len() >= MAX_IDS {
                self.ids.pop_front();
            }
            self.ids.push_back(p.replid);
        } else {
            self.samples.clear();
            self.ids.clear();
        }
        if self.ids.is_empty() {
            self.ids.push_back(p.replid);
        }
        self.record(now, p.offset);
    }

    /// Whether a node at `replid` can be compared with this history.
    pub fn comparable(&self, replid: u64) -> bool {
        replid == 0 || self.ids.is_empty() || self.ids.contains(&replid) || self.ids.contains(&0)
    }

    /// The ids, for a restart's memory.
    pub fn ids(&self) -> Vec<u64> {
        self.ids.iter().copied().collect()
    }

    /// The holder reported `offset` at `now`. A report below the last one
    /// starts a new history from there: a new master whose data ends there
    /// (what lay beyond was lost with the old one, or was never its).
    pub fn record(&mut self, now: Nanos, offset: u64) {
        while self.samples.back().is_some_and(|s| s.1 > offset) {
            self.samples.pop_back();
        }
        match self.samples.back() {
            Some(s) if s.1 == offset => {}
            _ => {
                if self.samples.len() >= MAX_SAMPLES {
                    self.samples.pop_front();
                }
                self.samples.push_back((now.max(self.last_time()), offset));
            }
        }
    }

    fn last_time(&self) -> Nanos {
        self.samples.back().map_or(0, |s| s.0)
    }

    /// The last `n` samples (what a restart keeps, `Voter::memory`).
    pub fn tail(&self, n: usize) -> Vec<(Nanos, u64)> {
        self.samples
            .iter()
            .skip(self.samples.len().saturating_sub(n))
            .copied()
            .collect()
    }

    /// A history of these samples (increasing; others are skipped).
    pub fn from_samples(samples: &[(Nanos, u64)], ids: &[u64]) -> Self {
        let mut h = History {
            ids: ids.iter().copied().collect(),
            ..Default::default()
        };
        for &(t, o) in samples {
            if h.samples.back().is_none_or(|l| t >= l.0 && o > l.1) {
                h.samples.push_back((t, o));
            }
        }
        h
    }

    /// The newest offset known, and when it was first reported.
    pub fn newest(&self) -> Option<(Nanos, u64)> {
        self.samples.back().copied()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// How far behind a node at position `p` is (None: not behind, or
    /// nothing is known to compare with). One of another replication
    /// history cannot be compared: unknown.
    pub fn behind_pos(&self, p: Option<Position>) -> Option<Behind> {
        self.samples.back()?;
        match p {
            Some(p) if self.comparable(p.replid) => self.behind(Some(p.offset)),
            _ => Some(Behind::UNKNOWN),
        }
    }

    /// How far behind a node at `offset` is, in this history's offsets.
    pub fn behind(&self, offset: Option<u64>) -> Option<Behind> {
        let &(last_t, last_o) = self.samples.back()?;
        let Some(offset) = offset else {
            return Some(Behind::UNKNOWN);
        };
        if offset >= last_o {
            return None;
        }
        // The last report at or below `offset`: the first write the node
        // lacks was made after it (a report lost on the way only makes this
        // earlier, never later). Below every report: it lacks writes older
        // than all this voter knows (it may have started since), of an
        // unknown age.
        let i = self.samples.partition_point(|s| s.1 <= offset);
        let ns = match i {
            0 => u64::MAX,
            i => last_t - self.samples[i - 1].0,
        };
        Some(Behind {
            ns,
            bytes: last_o - offset,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Nanos = 1_000_000;

    #[test]
    fn a_replica_is_behind_by_the_age_of_the_first_write_it_lacks() {
        let mut h = History::default();
        assert_eq!(h.behind(Some(0)), None, "nothing known: not behind");
        for i in 0..100u64 {
            h.record(i * 10 * MS, 1000 + i * 50);
        }
        // At or past the newest: fresh.
        assert_eq!(h.behind(Some(1000 + 99 * 50)), None);
        assert_eq!(h.behind(Some(1_000_000)), None);
        // Lacks the last report only: up to one renewal of writes.
        assert_eq!(
            h.behind(Some(1000 + 98 * 50)),
            Some(Behind {
                ns: 10 * MS,
                bytes: 50
            })
        );
        // In between two reports: from the one it had.
        assert_eq!(h.behind(Some(1000 + 98 * 50 + 1)).unwrap().ns, 10 * MS);
        // Stopped at the 10th sample, reported 890 ms before the last.
        let b = h.behind(Some(1000 + 10 * 50)).unwrap();
        assert_eq!(b.ns, 890 * MS);
        assert_eq!(b.bytes, 89 * 50);
        // Below every sample: lacking writes of an unknown age.
        assert_eq!(h.behind(Some(10)).unwrap().ns, u64::MAX);
        assert_eq!(h.behind(None), Some(Behind::UNKNOWN));
    }

    #[test]
    fn repeated_and_lower_offsets() {
        let mut h = History::default();
        h.record(0, 100);
        h.record(5 * MS, 100);
        h.record(10 * MS, 200);
        assert_eq!(h.newest(), Some((10 * MS, 200)));
        // A new master whose data ends at 150: what was past it is gone.
        h.record(20 * MS, 150);
        assert_eq!(h.newest(), Some((20 * MS, 150)));
        assert_eq!(h.behind(Some(150)), None);
        assert_eq!(h.behind(Some(120)).unwrap().ns, 20 * MS);
        assert_eq!(h.behind(Some(99)).unwrap().ns, u64::MAX);
    }

    #[test]
    fn bounded() {
        let mut h = History::default();
        for i in 0..(MAX_SAMPLES as u64 * 3) {
            h.record(i, i);
        }
        assert_eq!(h.samples.len(), MAX_SAMPLES);
        // Older than what is kept: of an unknown age.
        assert_eq!(h.behind(Some(5)).unwrap().ns, u64::MAX);
    }

    fn pos(replid: u64, replid2: u64, offset: u64) -> Position {
        Position {
            replid,
            replid2,
            offset,
            empty: false,
        }
    }

    #[test]
    fn offsets_compare_within_one_replication_history() {
        let mut h = History::default();
        for i in 0..10u64 {
            h.record_at(i * 10 * MS, pos(0xa, 0, 1000 + i * 100));
        }
        // A replica of that history, behind.
        assert!(h.behind_pos(Some(pos(0xa, 0, 1200))).is_some());
        // A promoted replica continues it (replid2 = the old id).
        h.record_at(100 * MS, pos(0xb, 0xa, 1850));
        assert_eq!(h.behind_pos(Some(pos(0xb, 0xa, 1850))), None);
        assert!(h.behind_pos(Some(pos(0xa, 0, 1200))).unwrap().ns < u64::MAX);
        // The master's Redis restarted from its AOF: same data, offsets
        // from 0 under a new id. Nothing of the old history compares.
        h.record_at(200 * MS, pos(0xc, 0, 5));
        assert_eq!(
            h.behind_pos(Some(pos(0xa, 0, 1_000_000))),
            Some(Behind::UNKNOWN)
        );
        assert_eq!(h.behind_pos(Some(pos(0xc, 0, 5))), None);
    }
}
