//! The client connections of a VIP's Redis port, as the master reports them
//! and a backup keeps them (pure): the master's changes become messages, a
//! backup's book follows them, newest epoch wins.
use std::{collections::BTreeSet, net::IpAddr};

use crate::quorum::wire::Conns;

/// A client's end of a connection: address and port.
pub type Client = (IpAddr, u16);

/// Entries per datagram (postcard: about 8 bytes each for IPv4; the
/// datagram stays under 1,400 bytes).
pub const PER_MESSAGE: usize = 150;

/// The master's side: what it told the backups last.
#[derive(Debug, Default)]
pub struct Reporter {
    told: BTreeSet<Client>,
    epoch: u64,
}

impl Reporter {
    /// A new mastership: the backups must forget what an earlier one said.
    pub fn start(&mut self, epoch: u64) {
        self.epoch = epoch;
        self.told.clear();
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The changes since the last report, as messages (empty: none).
    pub fn changes(&mut self, instance: &str, now: &BTreeSet<Client>) -> Vec<Conns> {
        let add: Vec<Client> = now.difference(&self.told).copied().collect();
        let del: Vec<Client> = self.told.difference(now).copied().collect();
        self.told = now.clone();
        let mut out = Vec::new();
        for chunk in add.chunks(PER_MESSAGE) {
            out.push(self.msg(instance, false, 0, 1, chunk.to_vec(), Vec::new()));
        }
        for chunk in del.chunks(PER_MESSAGE) {
            out.push(self.msg(instance, false, 0, 1, Vec::new(), chunk.to_vec()));
        }
        out
    }

    /// The whole list (sent every few seconds, so that a backup that missed
    /// a change or just started catches up).
    pub fn snapshot(&mut self, instance: &str, now: &BTreeSet<Client>) -> Vec<Conns> {
        self.told = now.clone();
        let all: Vec<Client> = now.iter().copied().collect();
        let chunks: Vec<&[Client]> = if all.is_empty() {
            vec![&[]]
        } else {
            all.chunks(PER_MESSAGE).collect()
        };
        let parts = chunks.len().min(u16::MAX as usize) as u16;
        chunks
            .into_iter()
            .enumerate()
            .map(|(i, c)| self.msg(instance, true, i as u16, parts, c.to_vec(), Vec::new()))
            .collect()
    }

    fn msg(
        &self,
        instance: &str,
        snapshot: bool,
        part: u16,
        parts: u16,
        add: Vec<Client>,
        del: Vec<Client>,
    ) -> Conns {
        Conns {
            instance: instance.into(),
            epoch: self.epoch,
            snapshot,
            part,
            parts,
            add,
            del,
        }
    }
}

/// A backup's side: the master's clients as last reported.
#[derive(Debug, Default)]
pub struct Book {
    /// Who reported them, and its epoch.
    from: Option<(IpAddr, u64)>,
    clients: BTreeSet<Client>,
    /// A snapshot being received: its epoch, parts seen, entries so far.
    incoming: Option<(u64, BTreeSet<u16>, u16, BTreeSet<Client>)>,
}

/// How many clients a book keeps at most (a bound on memory whatever a
/// peer sends).
pub const MAX_CLIENTS: usize = 200_000;

impl Book {
    pub fn clients(&self) -> &BTreeSet<Client> {
        &self.clients
    }
    pub fn source(&self) -> Option<(IpAddr, u64)> {
        self.from
    }

    /// Applies a report from `from`. One from an older epoch (an earlier
    /// mastership) is ignored; a newer one starts over.
    pub fn apply(&mut self, from: IpAddr, c: &Conns) {
        if let Some((f, e)) = self.from
            && f == from
            && c.epoch < e
        {
            return;
        }
        if self.from != Some((from, c.epoch)) {
            // A new master or a new mastership: what was known is stale.
            self.from = Some((from, c.epoch));
            self.clients.clear();
            self.incoming = None;
        }
        if c.snapshot {
            let fresh =
                !matches!(&self.incoming, Some((e, _, p, _)) if *e == c.epoch && *p == c.parts);
            if fresh {
                self.incoming = Some((c.epoch, BTreeSet::new(), c.parts, BTreeSet::new()));
            }
            if let Some((_, seen, parts, acc)) = &mut self.incoming {
                seen.insert(c.part);
                acc.extend(c.add.iter().copied().take(MAX_CLIENTS));
                if seen.len() >= usize::from(*parts) {
                    self.clients = std::mem::take(acc);
                    self.incoming = None;
                }
            }
        } else {
            for d in &c.del {
                self.clients.remove(d);
            }
            for a in &c.add {
                if self.clients.len() < MAX_CLIENTS {
                    self.clients.insert(*a);
                }
            }
        }
    }

    /// Forgets everything (this node became master and used it).
    pub fn clear(&mut self) {
        self.from = None;
        self.clients.clear();
        self.incoming = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(i: u16) -> Client {
        (IpAddr::from([198, 18, 0, 50]), 40000 + i)
    }
    const M: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(198, 18, 0, 1));

    #[test]
    fn changes_reach_the_backup_and_a_snapshot_repairs_what_was_lost() {
        let mut r = Reporter::default();
        r.start(7);
        let mut b = Book::default();
        let now: BTreeSet<Client> = (0..400).map(c).collect();
        let msgs = r.changes("vi", &now);
        assert_eq!(msgs.len(), 3, "400 adds in datagrams of 150");
        for m in &msgs {
            b.apply(M, m);
        }
        assert_eq!(b.clients(), &now);
        // Some go, some come; the delta with the removals is lost.
        let later: BTreeSet<Client> = (100..450).map(c).collect();
        let msgs = r.changes("vi", &later);
        for m in msgs.iter().filter(|m| m.del.is_empty()) {
            b.apply(M, m);
        }
        assert_ne!(b.clients(), &later);
        for m in r.snapshot("vi", &later) {
            b.apply(M, &m);
        }
        assert_eq!(b.clients(), &later);
    }

    #[test]
    fn an_older_mastership_is_ignored_and_a_new_one_starts_over() {
        let mut b = Book::default();
        let mut r = Reporter::default();
        r.start(5);
        for m in r.snapshot("vi", &(0..10).map(c).collect()) {
            b.apply(M, &m);
        }
        let mut old = Reporter::default();
        old.start(4);
        for m in old.changes("vi", &(20..30).map(c).collect()) {
            b.apply(M, &m);
        }
        assert_eq!(b.clients().len(), 10);
        r.start(6);
        for m in r.changes("vi", &(0..3).map(c).collect()) {
            b.apply(M, &m);
        }
        assert_eq!(b.clients().len(), 3);
    }
}
