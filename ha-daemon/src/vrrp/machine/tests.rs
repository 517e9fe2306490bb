//! RFC 5798 section 6 transitions and timer values, on a virtual clock.
use super::*;

const MS: Nanos = 1_000_000;
const S: Nanos = 1_000 * MS;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn params(version: Version, priority: u8, interval_cs: u16) -> Params {
    Params {
        version,
        priority,
        interval_cs,
        preempt: true,
        preempt_delay_ns: 0,
        primary: ip("198.18.0.1"),
        gated: false,
        flap_hold_max_ns: 0,
    }
}

fn advert(from: &str, priority: u8, interval_cs: u16, at: Nanos) -> Event {
    Event::Advert {
        from: ip(from),
        priority,
        interval_cs,
        at,
    }
}

fn armed(actions: &[Action]) -> Option<Nanos> {
    actions.iter().rev().find_map(|a| match a {
        Action::ArmTimer { at } => Some(*at),
        _ => None,
    })
}

fn changed(actions: &[Action]) -> Option<(State, Reason)> {
    actions.iter().find_map(|a| match a {
        Action::StateChanged { to, reason, .. } => Some((*to, *reason)),
        _ => None,
    })
}

/// Runs the timer out, twice when the first expiry only starts the extra
/// wait of a preemption.
fn expire(m: &mut Machine) -> Vec<Action> {
    let t = m.handle(Event::Timer, m.deadline().unwrap());
    if changed(&t).is_some() {
        return t;
    }
    m.handle(Event::Timer, m.deadline().unwrap())
}

fn backup(p: Params, now: Nanos) -> Machine {
    let mut m = Machine::new(p);
    m.handle(Event::Startup, now);
    assert_eq!(m.state(), State::Backup);
    m
}

#[test]
fn startup_goes_to_backup_with_master_down_timer() {
    let mut m = Machine::new(params(Version::V3, 100, 100));
    let a = m.handle(Event::Startup, 5 * S);
    assert_eq!(changed(&a), Some((State::Backup, Reason::Startup)));
    // Skew_Time = (256-100) * 1 s / 256 = 609.375 ms; MDI = 3 s + skew.
    assert_eq!(m.skew_time_ns(), 609_375_000);
    assert_eq!(m.master_down_interval_ns(), 3_609_375_000);
    assert_eq!(armed(&a), Some(5 * S + 3_609_375_000));
    assert!(!a.contains(&Action::AddVips), "a backup never adds VIPs");
}

#[test]
fn address_owner_becomes_master_at_once() {
    let mut m = Machine::new(params(Version::V3, 255, 100));
    let a = m.handle(Event::Startup, 0);
    assert_eq!(
        a,
        vec![
            Action::AddVips,
            Action::Announce,
            Action::SendAdvert { priority: 255 },
            Action::ArmTimer { at: S },
            Action::StateChanged {
                from: State::Initialize,
                to: State::Master,
                reason: Reason::AddressOwner
            },
        ]
    );
}

#[test]
fn master_down_timer_expiry_takes_over_with_advert_vips_and_announcement() {
    let mut m = backup(params(Version::V3, 100, 100), 0);
    let d = m.deadline().unwrap();
    assert!(
        m.handle(Event::Timer, d - 1).is_empty(),
        "early timer events are ignored"
    );
    let a = m.handle(Event::Timer, d);
    assert_eq!(changed(&a), Some((State::Master, Reason::MasterDown)));
    // The master is gone: the advert goes first, so lower backups hear it
    // before their own (slightly longer) timers run out.
    assert_eq!(
        &a[..3],
        &[
            Action::SendAdvert { priority: 100 },
            Action::AddVips,
            Action::Announce,
        ]
    );
    assert_eq!(
        armed(&a),
        Some(d + S),
        "Adver_Timer = Advertisement_Interval"
    );
}

#[test]
fn backup_learns_master_interval_v3_and_resets_timer_from_arrival() {
    let mut m = backup(params(Version::V3, 100, 100), 0);
    let a = m.handle(advert("198.18.0.2", 150, 1, 50 * MS), 60 * MS);
    // Master_Adver_Interval = 10 ms; skew = 156 * 10 ms / 256 = 6.09375 ms.
    assert_eq!(m.master_adver_interval_ns(), 10 * MS);
    assert_eq!(m.skew_time_ns(), 6_093_750);
    assert_eq!(
        armed(&a),
        Some(50 * MS + 30 * MS + 6_093_750),
        "from the arrival time, not now"
    );
    assert_eq!(m.master(), Some(ip("198.18.0.2")));
    assert_eq!(m.state(), State::Backup);
}

#[test]
fn a_higher_priority_master_that_goes_silent_is_master_down_not_preempt() {
    let mut m = backup(params(Version::V3, 100, 100), 0);
    m.handle(advert("198.18.0.2", 150, 100, S), S);
    let t = m.handle(Event::Timer, m.deadline().unwrap());
    assert_eq!(changed(&t), Some((State::Master, Reason::MasterDown)));
}

#[test]
fn v2_does_not_learn_interval_and_skew_is_in_seconds() {
    let mut m = backup(params(Version::V2, 100, 100), 0);
    m.handle(advert("198.18.0.2", 150, 300, 0), 0);
    assert_eq!(m.master_adver_interval_ns(), S);
    assert_eq!(m.skew_time_ns(), 156 * S / 256);
}

#[test]
fn a_late_wakeup_does_not_take_over_from_a_live_master() {
    let mut m = backup(params(Version::V3, 100, 1), 0);
    let mdi = {
        m.handle(advert("198.18.0.2", 150, 1, 0), 0);
        m.master_down_interval_ns()
    };
    // Asleep for 3 × MDI while the master kept advertising; on waking the
    // queued adverts (kernel-stamped) are handed in first, then the timer.
    let wake = 3 * mdi;
    for i in 1..=3 * mdi / (10 * MS) {
        m.handle(advert("198.18.0.2", 150, 1, i * 10 * MS), wake);
    }
    let a = m.handle(Event::Timer, wake);
    assert!(changed(&a).is_none(), "no takeover: {a:?}");
    assert_eq!(m.state(), State::Backup);
    // Out-of-order stamps never move the deadline back.
    let d = m.deadline().unwrap();
    m.handle(advert("198.18.0.2", 150, 1, 0), wake);
    assert_eq!(m.deadline(), Some(d));
}

#[test]
fn priority_zero_advert_takes_over_after_skew_time_only() {
    let mut m = backup(params(Version::V3, 100, 100), 0);
    m.handle(advert("198.18.0.2", 150, 100, S), S);
    let a = m.handle(advert("198.18.0.2", 0, 100, 2 * S), 2 * S);
    assert_eq!(armed(&a), Some(2 * S + 609_375_000));
    let t = m.handle(Event::Timer, 2 * S + 609_375_000);
    assert_eq!(changed(&t), Some((State::Master, Reason::MasterResigned)));
}

#[test]
fn preempt_lets_a_lower_priority_master_time_out() {
    let mut m = backup(params(Version::V3, 200, 100), 0);
    let d0 = m.deadline().unwrap();
    let a = m.handle(advert("198.18.0.2", 100, 100, S), S);
    assert!(
        armed(&a).is_none(),
        "a lower-priority advert does not reset the timer"
    );
    // Then 0.1 ms per priority step below 255 more: another backup that
    // also outranks the master waits longer and hears our advert first.
    let w = m.handle(Event::Timer, d0);
    assert_eq!(changed(&w), None);
    assert_eq!(armed(&w), Some(d0 + 55 * PREEMPT_STEP_NS));
    let t = m.handle(Event::Timer, d0 + 55 * PREEMPT_STEP_NS);
    assert_eq!(changed(&t), Some((State::Master, Reason::Preempt)));
    // The old master is alive and drops the VIP on our advert: clients must
    // already be told to send to us.
    assert_eq!(
        &t[..3],
        &[
            Action::AddVips,
            Action::Announce,
            Action::SendAdvert { priority: 200 },
        ]
    );
}

#[test]
fn nopreempt_follows_a_lower_priority_master() {
    let mut p = params(Version::V3, 200, 100);
    p.preempt = false;
    let mut m = backup(p, 0);
    let a = m.handle(advert("198.18.0.2", 100, 100, S), S);
    assert!(armed(&a).is_some());
    assert!(m.handle(Event::Timer, m.deadline().unwrap() - 1).is_empty());
    assert_eq!(m.state(), State::Backup);
}

#[test]
fn preempt_delay_holds_off_preemption_after_startup() {
    let mut p = params(Version::V3, 200, 100);
    p.preempt_delay_ns = 10 * S;
    let mut m = backup(p, 0);
    // Within the delay the lower-priority master is followed ...
    for t in 1..10 {
        m.handle(advert("198.18.0.2", 100, 100, t * S), t * S);
        m.handle(Event::Timer, t * S);
        assert_eq!(m.state(), State::Backup, "at {t} s");
    }
    // ... after it, its adverts are ignored and the timer runs out.
    m.handle(advert("198.18.0.2", 100, 100, 10 * S), 10 * S);
    let t = expire(&mut m);
    assert_eq!(changed(&t), Some((State::Master, Reason::Preempt)));
}

#[test]
fn master_yields_to_higher_priority_and_removes_vips() {
    let mut m = Machine::new(params(Version::V3, 255, 100));
    m.handle(Event::Startup, 0);
    // Equal priority, lower address: stays (and re-announces the VIPs).
    assert_eq!(
        m.handle(advert("198.18.0.0", 255, 100, 0), 0),
        vec![Action::Announce]
    );
    let mut m = backup(params(Version::V3, 100, 100), 0);
    m.handle(Event::Timer, m.deadline().unwrap());
    assert_eq!(m.state(), State::Master);
    assert_eq!(
        m.handle(advert("198.18.0.2", 50, 100, 5 * S), 5 * S),
        vec![Action::Announce],
        "lower priority: no state change, the VIPs re-announced"
    );
    let a = m.handle(advert("198.18.0.2", 150, 5, 6 * S), 6 * S);
    assert_eq!(
        changed(&a),
        Some((State::Backup, Reason::HigherPriorityAdvert))
    );
    assert!(a.contains(&Action::RemoveVips));
    assert_eq!(
        m.master_adver_interval_ns(),
        50 * MS,
        "learnt from the new master"
    );
    assert_eq!(armed(&a), Some(6 * S + m.master_down_interval_ns()));
}

#[test]
fn equal_priority_tie_breaks_on_the_higher_address() {
    let mut m = backup(params(Version::V3, 100, 100), 0);
    m.handle(Event::Timer, m.deadline().unwrap());
    let a = m.handle(advert("198.18.0.9", 100, 100, 5 * S), 5 * S);
    assert_eq!(changed(&a), Some((State::Backup, Reason::TieBreak)));
}

#[test]
fn master_answers_priority_zero_with_an_advert_at_once() {
    let mut m = Machine::new(params(Version::V3, 255, 100));
    m.handle(Event::Startup, 0);
    let a = m.handle(advert("198.18.0.2", 0, 100, 300 * MS), 300 * MS);
    assert_eq!(
        a,
        vec![
            Action::SendAdvert { priority: 255 },
            Action::ArmTimer { at: 1300 * MS }
        ]
    );
}

#[test]
fn master_advertises_every_interval() {
    let mut m = Machine::new(params(Version::V3, 255, 1));
    m.handle(Event::Startup, 0);
    assert!(m.handle(Event::Timer, 9 * MS).is_empty());
    let a = m.handle(Event::Timer, 10 * MS);
    assert_eq!(
        a,
        vec![
            Action::SendAdvert { priority: 255 },
            Action::ArmTimer { at: 20 * MS }
        ]
    );
}

#[test]
fn shutdown_of_a_master_sends_priority_zero_and_removes_vips() {
    let mut m = Machine::new(params(Version::V3, 255, 100));
    m.handle(Event::Startup, 0);
    let a = m.handle(Event::Shutdown, S);
    assert_eq!(
        a,
        vec![
            Action::CancelTimer,
            Action::SendAdvert { priority: 0 },
            Action::RemoveVips,
            Action::StateChanged {
                from: State::Master,
                to: State::Initialize,
                reason: Reason::Shutdown
            },
        ]
    );
    let mut b = backup(params(Version::V3, 100, 100), 0);
    let a = b.handle(Event::Shutdown, S);
    assert!(
        !a.iter()
            .any(|x| matches!(x, Action::SendAdvert { .. } | Action::RemoveVips))
    );
    assert_eq!(b.state(), State::Initialize);
}

#[test]
fn own_priority_zero_resigns_and_never_takes_back_over() {
    let mut m = backup(params(Version::V3, 100, 100), 0);
    m.handle(Event::Timer, m.deadline().unwrap());
    let a = m.handle(Event::Priority(0), 10 * S);
    assert_eq!(a[0], Action::SendAdvert { priority: 0 });
    assert_eq!(changed(&a), Some((State::Backup, Reason::Resign)));
    assert!(a.contains(&Action::RemoveVips));
    // Nobody else is there: still no takeover while at priority 0.
    let d = m.deadline().unwrap();
    m.handle(Event::Timer, d);
    assert_eq!(m.state(), State::Backup);
    // Health restored: it may take over again.
    m.handle(Event::Priority(100), d + 1);
    let d2 = m.deadline().unwrap();
    m.handle(Event::Timer, d2);
    assert_eq!(m.state(), State::Master);
}

#[test]
fn a_priority_change_in_backup_recomputes_skew() {
    let mut m = backup(params(Version::V3, 100, 100), 0);
    m.handle(advert("198.18.0.2", 250, 100, S), S);
    let before = m.deadline().unwrap();
    let a = m.handle(Event::Priority(50), 2 * S);
    let after = armed(&a).unwrap();
    assert_eq!(after - before, (100 - 50) * S / 256);
}

#[test]
fn priority_change_in_master_is_advertised_at_once() {
    let mut m = Machine::new(params(Version::V3, 255, 100));
    m.handle(Event::Startup, 0);
    let a = m.handle(Event::Priority(200), 5 * MS);
    assert_eq!(a[0], Action::SendAdvert { priority: 200 });
    assert_eq!(m.state(), State::Master);
}

#[test]
fn a_failed_master_redis_takes_over_after_skew_time_despite_its_adverts() {
    let mut m = backup(params(Version::V3, 100, 100), 0);
    m.handle(advert("198.18.0.2", 150, 100, S), S);
    // Another address's failure means nothing.
    assert!(
        m.handle(
            Event::MasterFailed {
                from: ip("198.18.0.9")
            },
            S
        )
        .is_empty()
    );
    let a = m.handle(
        Event::MasterFailed {
            from: ip("198.18.0.2"),
        },
        2 * S,
    );
    assert_eq!(armed(&a), Some(2 * S + 609_375_000));
    // Its daemon still advertises: that no longer holds us back.
    assert!(
        m.handle(
            advert("198.18.0.2", 150, 100, 2 * S + 100 * MS),
            2 * S + 100 * MS
        )
        .is_empty()
    );
    let t = m.handle(Event::Timer, 2 * S + 609_375_000);
    assert_eq!(changed(&t), Some((State::Master, Reason::MasterRedisDown)));
}

#[test]
fn a_failed_master_that_comes_back_after_another_took_over_is_followed_again() {
    // Three nodes: A (150) loses its Redis, B (100) takes over, and we (C, 50)
    // follow B. When A returns and preempts, B goes silent: we must follow A,
    // not take over because of A's failure long ago.
    let (a, b) = ("198.18.0.2", "198.18.0.3");
    let mut m = backup(params(Version::V3, 50, 100), 0);
    m.handle(advert(a, 150, 100, S), S);
    m.handle(Event::MasterFailed { from: ip(a) }, 2 * S);
    m.handle(advert(b, 100, 100, 2 * S + 400 * MS), 2 * S + 400 * MS);
    // A's Redis is back and A advertises again; B yields to it.
    for t in 3..12 {
        m.handle(advert(a, 150, 100, t * S), t * S);
        let acts = m.handle(Event::Timer, t * S + 500 * MS);
        assert_eq!(changed(&acts), None, "took over at {t}.5 s");
    }
    assert_eq!(m.state(), State::Backup);
    // A is a master like any other now: when it goes silent, it is master down.
    let t = m.handle(Event::Timer, m.deadline().unwrap());
    assert_eq!(changed(&t), Some((State::Master, Reason::MasterDown)));
}

#[test]
fn a_failed_master_replaced_by_a_lower_backup_is_followed_when_it_returns() {
    // Three nodes: A (150) loses its Redis; C (50) wins the race for its
    // place before we (B, 100) do. When A's Redis is back and A preempts, we
    // must follow A, not ignore its adverts as "its Redis is gone" for ever.
    let (a, c) = ("198.18.0.2", "198.18.0.4");
    let mut m = backup(params(Version::V3, 100, 100), 0);
    m.handle(advert(a, 150, 100, S), S);
    m.handle(Event::MasterFailed { from: ip(a) }, 2 * S);
    m.handle(advert(c, 50, 100, 2 * S + 300 * MS), 2 * S + 300 * MS);
    m.handle(advert(a, 150, 100, 2 * S + 350 * MS), 2 * S + 350 * MS);
    for t in 3..12 {
        m.handle(advert(a, 150, 100, t * S), t * S);
        let acts = m.handle(Event::Timer, t * S + 500 * MS);
        assert_eq!(changed(&acts), None, "took over at {t}.5 s");
    }
    assert_eq!(m.state(), State::Backup);
    let t = m.handle(Event::Timer, m.deadline().unwrap());
    assert_eq!(changed(&t), Some((State::Master, Reason::MasterDown)));
}

#[test]
fn preempt_hold_follows_a_lower_master_until_released() {
    let mut m = backup(params(Version::V3, 200, 100), 0);
    m.handle(Event::PreemptHold(true), 0);
    for t in 1..10 {
        m.handle(advert("198.18.0.2", 100, 100, t * S), t * S);
        m.handle(Event::Timer, t * S);
        assert_eq!(m.state(), State::Backup, "held at {t} s");
    }
    m.handle(Event::PreemptHold(false), 10 * S);
    m.handle(advert("198.18.0.2", 100, 100, 10 * S), 10 * S);
    let t = expire(&mut m);
    assert_eq!(changed(&t), Some((State::Master, Reason::Preempt)));
}

#[test]
fn preempt_hold_does_not_let_a_lower_backup_win_a_gone_masters_place() {
    // Three nodes: A (150) resigns, or its Redis dies while its daemon stays
    // silent about it; we (100) and C (50) race on Skew_Time. Our Redis lost
    // its link to A's, so preemption is held; C's timer fires first (a late
    // wake-up here) and it advertises. We still take over at our Skew_Time:
    // C is not a live master we would preempt, it is another backup taking
    // the gone master's place.
    let (a, c) = ("198.18.0.2", "198.18.0.4");
    for (gone, reason) in [
        (advert(a, 0, 100, 2 * S), Reason::MasterResigned),
        (Event::MasterFailed { from: ip(a) }, Reason::MasterRedisDown),
    ] {
        let mut m = backup(params(Version::V3, 100, 100), 0);
        m.handle(advert(a, 150, 100, S), S);
        m.handle(gone, 2 * S);
        m.handle(Event::PreemptHold(true), 2 * S + MS);
        let skew = m.skew_time_ns();
        m.handle(advert(c, 50, 100, 2 * S + 5 * MS), 2 * S + 5 * MS);
        assert_eq!(
            m.deadline(),
            Some(2 * S + skew),
            "C's advert moved our timer ({reason:?})"
        );
        let t = m.handle(Event::Timer, 2 * S + skew);
        assert_eq!(changed(&t), Some((State::Master, reason)));
    }
}

#[test]
fn preempt_hold_never_holds_a_takeover_from_a_dead_master() {
    let mut m = backup(params(Version::V3, 200, 100), 0);
    m.handle(Event::PreemptHold(true), 0);
    m.handle(advert("198.18.0.2", 100, 100, S), S);
    let t = m.handle(Event::Timer, m.deadline().unwrap());
    // Its adverts stopped: that is a dead master, not a preemption, though
    // its priority was lower.
    assert_eq!(
        changed(&t),
        Some((State::Master, Reason::MasterDown)),
        "the reason says what happened"
    );
}

#[test]
fn switchover_takes_over_one_above_the_master_and_drops_the_boost_on_leaving() {
    let mut m = backup(params(Version::V3, 100, 100), 0);
    m.handle(advert("198.18.0.2", 150, 100, S), S);
    let a = m.handle(Event::Switchover, 2 * S);
    assert_eq!(changed(&a), Some((State::Master, Reason::Switchover)));
    assert!(a.contains(&Action::SendAdvert { priority: 151 }));
    assert_eq!(m.priority(), 151);
    // The old master yields; its adverts at 150 change nothing but a
    // re-announcement of the VIPs.
    assert_eq!(
        m.handle(advert("198.18.0.2", 150, 100, 3 * S), 3 * S),
        vec![Action::Announce]
    );
    // Switched back: a higher advert demotes us and the boost is gone.
    let b = m.handle(advert("198.18.0.2", 152, 100, 4 * S), 4 * S);
    assert_eq!(
        changed(&b),
        Some((State::Backup, Reason::HigherPriorityAdvert))
    );
    assert_eq!(m.priority(), 100);
}

#[test]
fn switchover_is_refused_against_a_254_master_or_when_resigned() {
    let mut m = backup(params(Version::V3, 100, 100), 0);
    m.handle(advert("198.18.0.2", 254, 100, S), S);
    assert!(m.handle(Event::Switchover, 2 * S).is_empty());
    let mut r = backup(params(Version::V3, 100, 100), 0);
    r.handle(advert("198.18.0.2", 150, 100, S), S);
    r.handle(Event::Priority(0), S);
    assert!(r.handle(Event::Switchover, 2 * S).is_empty());
}

#[test]
fn a_master_re_announces_when_a_lower_priority_rival_advertises_but_not_in_a_storm() {
    let mut m = Machine::new(params(Version::V3, 150, 1));
    m.handle(Event::Startup, 0);
    let d = m.deadline().unwrap();
    m.handle(Event::Timer, d);
    assert_eq!(m.state(), State::Master);
    // A backup that missed our adverts claims master with priority 100.
    let a = m.handle(advert("198.18.0.2", 100, 1, d + 5_000_000), d + 5_000_000);
    assert_eq!(
        a,
        vec![Action::Announce],
        "clients it pulled are pulled back"
    );
    assert_eq!(m.state(), State::Master);
    let a = m.handle(advert("198.18.0.2", 100, 1, d + 15_000_000), d + 15_000_000);
    assert!(
        a.is_empty(),
        "at most one re-announcement per 500 ms: {a:?}"
    );
    let later = d + 600_000_000;
    assert_eq!(
        m.handle(advert("198.18.0.2", 100, 1, later), later),
        vec![Action::Announce]
    );
}

/// A master of priority 150 (v3, 100 ms adverts), 198.18.0.1.
fn master_150() -> Machine {
    let mut m = backup(params(Version::V3, 150, 10), 0);
    m.handle(Event::Timer, m.deadline().unwrap());
    assert_eq!(m.state(), State::Master);
    m
}

#[test]
fn hand_over_advertises_1_and_stays_backup_while_the_new_master_lasts() {
    let mut m = master_150();
    let a = m.handle(Event::HandOver, S);
    assert!(a.contains(&Action::SendAdvert { priority: 1 }));
    assert_eq!(m.state(), State::Master, "master until a backup takes over");
    // Later adverts also carry 1, so a preempting backup takes over.
    let t = m.handle(Event::Timer, m.deadline().unwrap());
    assert!(t.contains(&Action::SendAdvert { priority: 1 }));
    // The backup (100) takes over: we yield, with the reason.
    let b = m.handle(advert("198.18.0.2", 100, 10, 2 * S), 2 * S);
    assert_eq!(changed(&b), Some((State::Backup, Reason::HandedOver)));
    assert!(b.contains(&Action::RemoveVips));
    assert_eq!(m.priority(), 150);
    // Its adverts at 100 are lower than ours, but we do not preempt back.
    for k in 0..100 {
        let at = 2 * S + k * 10 * MS;
        m.handle(advert("198.18.0.2", 100, 10, at), at);
        m.handle(Event::Timer, at);
        assert_eq!(m.state(), State::Backup, "no preemption back at {at}");
    }
    // When it dies we take over as usual, and preempt again afterwards.
    let last = 2 * S + 99 * 10 * MS;
    let d = m.handle(Event::Timer, last + m.master_down_interval_ns());
    assert_eq!(changed(&d), Some((State::Master, Reason::MasterDown)));
    m.handle(advert("198.18.0.2", 100, 10, 5 * S), 5 * S);
    assert_eq!(m.state(), State::Master);
}

#[test]
fn a_backup_preempts_a_master_handing_over() {
    let mut b = backup(params(Version::V3, 100, 10), 0);
    b.handle(advert("198.18.0.1", 150, 10, 0), 0);
    b.handle(advert("198.18.0.1", 1, 10, 10 * MS), 10 * MS);
    b.handle(Event::Timer, b.deadline().unwrap());
    // Its adverts (priority 1) go on meanwhile.
    let d = b.deadline().unwrap();
    b.handle(advert("198.18.0.1", 1, 10, d - MS), d - MS);
    let t = b.handle(Event::Timer, d);
    assert_eq!(changed(&t), Some((State::Master, Reason::Preempt)));
}

#[test]
fn only_the_best_of_two_backups_preempts_a_master_handing_over() {
    // A (150) and C (50) both outrank a master handing over (it advertises
    // 1, every 10 ms). A takes over first, and its first advert leaves only
    // after its VIPs and GARP, up to 5 ms later on a busy host: C must still
    // be waiting then, or both promote their Redis (seen in the 3-host lab:
    // 399 writes lost).
    let m = "198.18.0.2";
    let mut a = backup(params(Version::V3, 150, 1), 0);
    let mut c = backup(params(Version::V3, 50, 1), 0);
    let mut a_master_at = None;
    for t in (0..200).map(|ms| ms * MS) {
        if t % (10 * MS) == 0 && a_master_at.is_none_or(|at| t < at + 5 * MS) {
            let prio = if t == 0 { 100 } else { 1 };
            a.handle(advert(m, prio, 1, t), t);
            c.handle(advert(m, prio, 1, t), t);
        }
        if a.deadline().is_some_and(|d| d <= t) {
            let acts = a.handle(Event::Timer, t);
            if changed(&acts) == Some((State::Master, Reason::Preempt)) {
                a_master_at = Some(t);
            }
        }
        if let Some(at) = a_master_at
            && t >= at + 5 * MS
            && t % (10 * MS) == at % (10 * MS)
        {
            c.handle(advert("198.18.0.1", 150, 1, t), t);
        }
        if c.deadline().is_some_and(|d| d <= t) {
            c.handle(Event::Timer, t);
        }
        assert_eq!(c.state(), State::Backup, "C preempted too at {t}");
    }
    assert!(a_master_at.is_some(), "A did not preempt");
    assert_eq!(c.master(), Some(ip("198.18.0.1")));
}

#[test]
fn a_cancelled_hand_over_advertises_the_real_priority_again() {
    let mut m = master_150();
    m.handle(Event::HandOver, S);
    let c = m.handle(Event::CancelHandOver, 2 * S);
    assert!(c.contains(&Action::SendAdvert { priority: 150 }));
    assert_eq!(m.priority(), 150);
    assert_eq!(m.state(), State::Master);
    // A health change meanwhile keeps the hand-over's 1 on the wire.
    m.handle(Event::HandOver, 3 * S);
    let p = m.handle(Event::Priority(100), 3 * S);
    assert!(p.contains(&Action::SendAdvert { priority: 1 }));
    // A backup ignores it.
    let mut b = backup(params(Version::V3, 100, 10), 0);
    assert!(b.handle(Event::HandOver, S).is_empty());
}

// With `[quorum]`: takeovers wait for the lease; a master gives way only
// through the lease.

fn gated(priority: u8) -> Params {
    Params {
        gated: true,
        flap_hold_max_ns: 0,
        ..params(Version::V3, priority, 1)
    }
}

fn wants(actions: &[Action]) -> Option<bool> {
    actions.iter().find_map(|a| match a {
        Action::WantLease { preempt, .. } => Some(*preempt),
        _ => None,
    })
}

/// A gated machine that holds the lease as master.
fn gated_master(priority: u8) -> Machine {
    let mut m = backup(gated(priority), 0);
    let a = m.handle(Event::Timer, m.deadline().unwrap());
    assert_eq!(wants(&a), Some(false));
    let a = m.handle(Event::Lease(true), 50 * MS);
    assert_eq!(changed(&a), Some((State::Master, Reason::MasterDown)));
    m
}

#[test]
fn gated_takeover_waits_for_the_lease() {
    let mut m = backup(gated(100), 0);
    // Master down: ask for the lease, stay backup, look again in an interval.
    let t = m.deadline().unwrap();
    let a = m.handle(Event::Timer, t);
    assert_eq!(wants(&a), Some(false));
    assert_eq!(changed(&a), None);
    assert!(!a.contains(&Action::AddVips));
    assert_eq!(m.pending(), Some(Reason::MasterDown));
    assert_eq!(armed(&a), Some(t + 10 * MS));
    // Cut off from every voter: it asks again and again, never takes over.
    for _ in 0..1000 {
        let a = m.handle(Event::Timer, m.deadline().unwrap());
        assert_eq!(wants(&a), Some(false));
        assert_eq!(m.state(), State::Backup);
    }
    // Granted: master now, for the reason it wanted the lease.
    let a = m.handle(Event::Lease(true), m.deadline().unwrap());
    assert_eq!(changed(&a), Some((State::Master, Reason::MasterDown)));
    assert!(a.contains(&Action::AddVips));
    assert_eq!(m.pending(), None);
}

#[test]
fn gated_backup_stops_asking_when_a_master_appears_and_returns_a_late_grant() {
    let mut m = backup(gated(100), 0);
    m.handle(Event::Timer, m.deadline().unwrap());
    assert!(m.pending().is_some());
    let a = m.handle(advert("198.18.0.2", 150, 1, 60 * MS), 60 * MS);
    assert!(a.contains(&Action::DropLease), "{a:?}");
    assert_eq!(m.pending(), None);
    // A grant that arrives now is given back.
    let a = m.handle(Event::Lease(true), 61 * MS);
    assert_eq!(a, vec![Action::DropLease]);
    assert_eq!(m.state(), State::Backup);
}

#[test]
fn gated_master_steps_down_when_the_lease_is_lost() {
    let mut m = gated_master(100);
    let a = m.handle(Event::Lease(false), 100 * MS);
    assert_eq!(changed(&a), Some((State::Backup, Reason::LeaseLost)));
    assert!(a.contains(&Action::RemoveVips));
    assert!(a.contains(&Action::DropLease));
    assert!(a.contains(&Action::SendAdvert { priority: 0 }));
}

#[test]
fn gated_master_holding_the_lease_ignores_adverts_that_claim_mastership() {
    let mut m = gated_master(100);
    // A forged priority-255 advert (or a confused peer): nobody yields.
    for i in 0..200 {
        let a = m.handle(
            advert("198.18.0.66", 255, 1, (100 + i) * MS),
            (100 + i) * MS,
        );
        assert_eq!(changed(&a), None);
        assert!(!a.contains(&Action::RemoveVips));
    }
    assert_eq!(m.state(), State::Master);
    assert_eq!(m.ignored_claims(), 200);
    // The same advert without the lease (ungated) makes a master yield.
    let mut u = backup(params(Version::V3, 100, 1), 0);
    expire(&mut u);
    let a = u.handle(advert("198.18.0.66", 255, 1, 100 * MS), 100 * MS);
    assert_eq!(
        changed(&a),
        Some((State::Backup, Reason::HigherPriorityAdvert))
    );
}

#[test]
fn gated_master_yields_only_to_a_higher_priority_request() {
    let mut m = gated_master(100);
    let a = m.handle(
        Event::YieldTo {
            from: ip("198.18.0.2"),
            priority: 50,
        },
        100 * MS,
    );
    assert!(a.is_empty(), "a lower priority gets nothing: {a:?}");
    let a = m.handle(
        Event::YieldTo {
            from: ip("198.18.0.2"),
            priority: 150,
        },
        101 * MS,
    );
    assert_eq!(changed(&a), Some((State::Backup, Reason::Preempted)));
    // Released (fenced first) before the VIPs go.
    let drop = a.iter().position(|x| *x == Action::DropLease).unwrap();
    let rm = a.iter().position(|x| *x == Action::RemoveVips).unwrap();
    assert!(drop < rm);
    assert_eq!(m.master(), Some(ip("198.18.0.2")));
}

#[test]
fn gated_hand_over_yields_to_any_asker_and_stays_backup() {
    let mut m = gated_master(150);
    m.handle(Event::HandOver, 100 * MS);
    let a = m.handle(
        Event::YieldTo {
            from: ip("198.18.0.2"),
            priority: 100,
        },
        110 * MS,
    );
    assert_eq!(changed(&a), Some((State::Backup, Reason::HandedOver)));
    // It does not preempt back while the new master lives.
    let a = m.handle(advert("198.18.0.2", 100, 1, 120 * MS), 120 * MS);
    assert_eq!(changed(&a), None);
    for t in 0..100 {
        let now = (130 + 10 * t) * MS;
        m.handle(advert("198.18.0.2", 100, 1, now), now);
        m.handle(Event::Timer, now);
    }
    assert_eq!(m.state(), State::Backup);
}

#[test]
fn gated_preemption_asks_the_holder_to_make_way() {
    let mut m = backup(gated(150), 0);
    m.handle(Event::PreemptHold(false), 0);
    // The lower-priority master keeps advertising every 10 ms.
    let mut a = Vec::new();
    for t in 0..10 {
        let now = (1 + 10 * t) * MS;
        m.handle(advert("198.18.0.2", 100, 1, now), now);
        a = m.handle(Event::Timer, now);
        if wants(&a).is_some() {
            break;
        }
    }
    assert_eq!(wants(&a), Some(true), "{a:?}");
    assert_eq!(m.state(), State::Backup);
    let a = m.handle(Event::Lease(true), m.deadline().unwrap());
    assert_eq!(changed(&a), Some((State::Master, Reason::Preempt)));
}

#[test]
fn gated_resign_and_shutdown_give_the_lease_back() {
    let mut m = gated_master(100);
    let a = m.handle(Event::Priority(0), 100 * MS);
    assert!(a.contains(&Action::DropLease));
    assert_eq!(changed(&a), Some((State::Backup, Reason::Resign)));
    let mut m = gated_master(100);
    let a = m.handle(Event::Shutdown, 100 * MS);
    let drop = a.iter().position(|x| *x == Action::DropLease).unwrap();
    let adv = a
        .iter()
        .position(|x| *x == Action::SendAdvert { priority: 0 })
        .unwrap();
    assert!(drop < adv, "released before the backups are told: {a:?}");
}

#[test]
fn gated_address_owner_also_waits_for_the_lease() {
    let mut m = Machine::new(gated(255));
    let a = m.handle(Event::Startup, 0);
    assert_eq!(m.state(), State::Backup);
    assert_eq!(wants(&a), Some(false));
    let a = m.handle(Event::Lease(true), MS);
    assert_eq!(changed(&a), Some((State::Master, Reason::AddressOwner)));
}

/// Without a quorum, a link that flaps makes the backup take over at every
/// cut and yield at every heal. After one flap a silent master is waited
/// for 3 × Master_Down_Interval more, so the next short cut passes; each
/// suppressed cut counts too, and the hold grows; a master that stays
/// silent is still replaced, that much later.
#[test]
fn a_flapping_link_is_held_down_after_one_flap() {
    let mut p = params(Version::V3, 100, 1);
    p.primary = ip("198.18.0.2");
    p.flap_hold_max_ns = 2 * S;
    let mut m = backup(p, 0);
    let mdi = m.master_down_interval_ns();
    assert_eq!(mdi, 30 * MS + 6_093_750);
    let a = "198.18.0.1";
    // The master advertises every 10 ms until t = 1 s.
    let mut t = 0;
    while t <= S {
        m.handle(advert(a, 150, 1, t), t);
        t += 10 * MS;
    }
    // A 100 ms cut: taken over at the end of Master_Down_Interval.
    let last = S;
    let acts = m.handle(Event::Timer, last + mdi);
    assert_eq!(changed(&acts), Some((State::Master, Reason::MasterDown)));
    // The link is back: the master's advert makes this node yield, and
    // that is a flap.
    let back = last + 100 * MS;
    let acts = m.handle(advert(a, 150, 1, back), back);
    assert_eq!(
        changed(&acts),
        Some((State::Backup, Reason::HigherPriorityAdvert))
    );
    assert!(
        acts.iter()
            .any(|x| matches!(x, Action::Damped { flaps: 1, hold_ns, .. } if *hold_ns == 3 * mdi)),
        "{acts:?}"
    );
    // The link up for 150 ms, adverts every 10 ms; then the next 100 ms
    // cut passes without a takeover...
    let mut t = back;
    while t <= back + 150 * MS {
        m.handle(advert(a, 150, 1, t), t);
        t += 10 * MS;
    }
    let last = back + 150 * MS;
    assert_eq!(m.deadline(), Some(last + mdi + 3 * mdi));
    let acts = m.handle(Event::Timer, last + mdi);
    assert_eq!(changed(&acts), None, "held down");
    let back = last + 100 * MS;
    let acts = m.handle(advert(a, 150, 1, back), back);
    assert_eq!(changed(&acts), None);
    assert!(
        acts.iter()
            .any(|x| matches!(x, Action::Damped { flaps: 2, .. })),
        "a suppressed cut is a flap too: {acts:?}"
    );
    assert_eq!(m.hold_down_ns(back), 6 * mdi);
    // ...but a master that stays silent is replaced, 6 × MDI later.
    let acts = m.handle(Event::Timer, back + mdi + 6 * mdi - 1);
    assert_eq!(changed(&acts), None);
    let acts = m.handle(Event::Timer, back + mdi + 6 * mdi);
    assert_eq!(changed(&acts), Some((State::Master, Reason::MasterDown)));
    // A quiet minute later the hold is gone.
    assert_eq!(m.hold_down_ns(back + 60 * S), 0);
}

/// A resigned master (priority 0) is replaced after Skew_Time, whatever
/// the flaps; and dampening is off with a quorum (the lease keeps a live
/// master) or when configured off.
#[test]
fn dampening_never_holds_a_resignation_and_is_off_with_a_quorum() {
    let mut p = params(Version::V3, 100, 1);
    p.flap_hold_max_ns = 2 * S;
    let mut m = backup(p.clone(), 0);
    m.handle(advert("198.18.0.9", 150, 1, 0), 0);
    m.handle(Event::Timer, m.deadline().unwrap());
    m.handle(advert("198.18.0.9", 150, 1, 100 * MS), 100 * MS);
    assert!(m.hold_down_ns(100 * MS) > 0);
    let acts = m.handle(advert("198.18.0.9", 0, 1, 200 * MS), 200 * MS);
    assert_eq!(armed(&acts), Some(200 * MS + m.skew_time_ns()));
    let mut q = p.clone();
    q.gated = true;
    let m = Machine::new(q);
    assert_eq!(m.hold_down_ns(0), 0);
}

/// A master that died and came back to preempt (its Redis synced first:
/// a second or more) is no flap.
#[test]
fn a_master_back_after_a_restart_is_no_flap() {
    let mut p = params(Version::V3, 100, 1);
    p.primary = ip("198.18.0.2");
    p.flap_hold_max_ns = 2 * S;
    let mut m = backup(p, 0);
    m.handle(advert("198.18.0.1", 150, 1, 0), 0);
    let acts = m.handle(Event::Timer, m.deadline().unwrap());
    assert_eq!(changed(&acts), Some((State::Master, Reason::MasterDown)));
    let acts = m.handle(advert("198.18.0.1", 150, 1, 2 * S), 2 * S);
    assert_eq!(
        changed(&acts),
        Some((State::Backup, Reason::HigherPriorityAdvert))
    );
    assert!(!acts.iter().any(|x| matches!(x, Action::Damped { .. })));
    assert_eq!(m.hold_down_ns(2 * S), 0);
}
