//! A sequence of authentic quorum datagrams, as a network that loses,
//! duplicates, delays and reorders them delivers it (the fault campaign's
//! bad links do), fed to the pure cores a node runs: the freshness check,
//! its voter, its candidate, and the tickles' book of the master's clients.
//! No panic, bounded memory, and the voter's rules hold: it never grants a
//! term below one it granted, nor two holders while a promise runs.
#![no_main]

use std::net::IpAddr;

use ha_daemon::{
    quorum::{
        candidate::{Candidate, From, Want},
        timing::Timing,
        voter::{Answer, Voter},
        wire::{self, Body, Freshness, Key, MAGIC, Verdict},
    },
    tickle::book::{Book, MAX_CLIENTS},
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = Key::new(b"fuzzing-key-0123456789");
    let me: IpAddr = "198.18.0.1".parse().unwrap();
    let mut fresh = Freshness::default();
    let mut voter = Voter::new(0);
    let mut cand =
        Candidate::new(me, 3, Timing::derive(10_000_000, 100_000), 1).with_max_stale(100_000_000);
    let mut book = Book::default();
    let mut out = Vec::new();
    cand.want(
        0,
        Want {
            preempt: false,
            priority: 100,
        },
        &mut out,
    );
    let mut now = 0u64;
    let mut rest = data;
    // Each message: [sender 1..=3][time step][len][bytes...].
    while rest.len() >= 3 {
        let (from_b, step, len) = (rest[0], rest[1], rest[2] as usize);
        rest = &rest[3..];
        let body = &rest[..len.min(rest.len())];
        rest = &rest[body.len()..];
        now += u64::from(step) * 1_000_000;
        let from: IpAddr = IpAddr::from([198, 18, 0, 1 + from_b % 3]);
        let mut d = MAGIC.to_vec();
        d.extend_from_slice(body);
        let tag = wire::sign(&key, &d);
        d.extend_from_slice(&tag);
        let Ok(env) = wire::open(&key, &d) else {
            continue;
        };
        // As the daemon: answers and challenges always, the rest only fresh.
        let checked = matches!(env.body, Body::Answer { .. } | Body::Challenge { .. });
        if !checked && matches!(fresh.check(from, &env, now, 7), Verdict::Stale(_)) {
            continue;
        }
        match env.body {
            Body::Request { req, .. } => {
                let (before, promised) = (voter.newest(), voter.promise(now));
                let a = voter.request(now, &req);
                if let Answer::Grant { term } = a {
                    assert!(term >= before.0, "granted term {term} below {}", before.0);
                    assert!(
                        promised.is_none_or(|p| p.holder == req.holder),
                        "granted {} while a promise to {:?} ran",
                        req.holder,
                        promised
                    );
                }
                let _ = cand.yields_to(now, &req);
            }
            Body::Answer { id, answer, .. } => {
                cand.answer(now, From::Peer(from), id, answer, &mut out);
            }
            Body::Release { holder, term, .. } => {
                voter.release(holder, term);
                cand.heard_of(holder, term);
                cand.hurry(now, &mut out);
            }
            Body::Conns(c) => {
                book.apply(from, &c);
                assert!(book.clients().len() <= MAX_CLIENTS);
            }
            Body::Challenge { .. } => cand.hurry(now, &mut out),
        }
        cand.tick(now, &mut out);
        out.truncate(0);
    }
});
