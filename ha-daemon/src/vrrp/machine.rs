//! The VRRP state machine of RFC 5798 section 6 (with RFC 9568's corrections),
//! as pure code: events and the current time go in, actions come out. No I/O,
//! no clock of its own; tests drive it with a virtual clock.
//!
//! Times are nanoseconds on CLOCK_MONOTONIC, the clock the XDP program stamps
//! adverts with, so an advert's kernel arrival time can be fed in as is.
//!
//! Master-down is decided from the time of the last advert, not from when the
//! timer event happens to be processed: a timer event that comes before the
//! deadline computed from the last advert's arrival re-arms instead of taking
//! over, so a daemon that wakes late and then drains its socket does not take
//! over from a master that kept advertising.
use std::net::IpAddr;

use super::packet::Version;

pub type Nanos = u64;
const NS_PER_CS: u64 = 10_000_000;
/// At most one re-announcement per this long because of lower-priority
/// rivals: a peer stuck advertising as master must not cause a GARP storm.
const RIVAL_ANNOUNCE_EVERY_NS: u64 = 500_000_000;
/// A preempting backup waits this much more per priority step below 255
/// once its timer runs out. Several backups can outrank a live master at once
/// (a hand-over advertises 1; a node returning while a low one is master):
/// RFC Skew_Times are 0.4 ms apart per 10 priority steps at 10 ms adverts,
/// less than the few ms a preempting master spends on its VIPs and GARP
/// before its first advert, so a lower one preempted too and both promoted.
const PREEMPT_STEP_NS: u64 = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub enum State {
    #[default]
    Initialize,
    Backup,
    Master,
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            State::Initialize => "INIT",
            State::Backup => "BACKUP",
            State::Master => "MASTER",
        })
    }
}

/// The configuration the machine needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    pub version: Version,
    /// Configured priority, 1..=255 (255: address owner).
    pub priority: u8,
    /// Our advertisement interval in centiseconds.
    pub interval_cs: u16,
    pub preempt: bool,
    /// After start-up, how long a higher-priority backup waits before it
    /// preempts a lower-priority master (keepalived's `preempt_delay`).
    pub preempt_delay_ns: Nanos,
    /// Our primary address on the interface, for the equal-priority tie-break.
    pub primary: IpAddr,
    /// `[quorum]`: becoming master needs the lease (`Event::Lease`); a
    /// master gives way only through the lease (`Event::YieldTo`) or by
    /// losing it, never to an advert.
    pub gated: bool,
    /// Flap dampening: the longest extra wait for a silent master after
    /// takeovers from one that came back (`damping`); 0: off. Not used when
    /// gated (the lease already keeps a live master).
    pub flap_hold_max_ns: Nanos,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Startup,
    Shutdown,
    /// A valid advert for this instance (already checked against the config).
    Advert {
        from: IpAddr,
        priority: u8,
        interval_cs: u16,
        /// When it arrived (kernel stamp if known, else receive time).
        at: Nanos,
    },
    /// The armed timer may have expired.
    Timer,
    /// The effective priority changed (health checks); 1..=254, or 0 to resign.
    Priority(u8),
    /// The current master's Redis is gone (FIN/RST seen and an active check
    /// failed): take over after Skew_Time, as if it had resigned, and ignore
    /// its adverts until then.
    MasterFailed {
        from: IpAddr,
    },
    /// Hold (true) or allow (false) preemption of a live lower-priority master:
    /// held while the local Redis has not caught up, so a returning node does
    /// not take over with a stale or empty dataset. Taking over from a dead
    /// master is never held.
    PreemptHold(bool),
    /// Planned switchover to this node: take over now, advertising one above
    /// the current master's priority (at most 254) so it yields at once. The
    /// boost lasts while this node is master.
    Switchover,
    /// Planned switchover away from this master (`ha-daemon switchover` run
    /// on it): advertise priority 1 so that a preempting backup takes over
    /// from a live master (the safe promotion path, no VIP gap), and once it
    /// has, stay backup while it is master instead of preempting back.
    HandOver,
    /// No backup took over in time: advertise the real priority again.
    CancelHandOver,
    /// Gated: whether this node holds the lease now.
    Lease(bool),
    /// Gated: another node asks for the lease to replace this master, and
    /// would advertise `priority`.
    YieldTo {
        from: IpAddr,
        priority: u8,
    },
}

/// Extra waits for a silent master after flaps (see `damping`).
pub use super::damping::Damping;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send an advert with this priority.
    SendAdvert {
        priority: u8,
    },
    AddVips,
    RemoveVips,
    /// Gratuitous ARP / unsolicited NA for the VIPs.
    Announce,
    /// Wake the machine with `Event::Timer` at this time (replaces any earlier).
    ArmTimer {
        at: Nanos,
    },
    CancelTimer,
    StateChanged {
        from: State,
        to: State,
        reason: Reason,
    },
    /// Gated: ask the quorum for the lease (repeated while it waits).
    WantLease {
        /// To replace a live master, which is asked to release.
        preempt: bool,
        priority: u8,
    },
    /// Gated: stop asking; give the lease up if held (the kernel fence
    /// closes first).
    DropLease,
    /// A flap was counted (the master this node took over from, or was
    /// about to, came back): a silent master is now waited for `hold_ns`
    /// longer than Master_Down_Interval.
    Damped {
        master: IpAddr,
        flaps: u32,
        hold_ns: Nanos,
    },
}

/// Why a transition happened; logged, counted, shown in status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Reason {
    Startup,
    AddressOwner,
    MasterDown,
    /// The master sent priority 0 and the skew time passed.
    MasterResigned,
    /// A lower-priority master was preempted.
    Preempt,
    HigherPriorityAdvert,
    /// Same priority, the sender's address is higher.
    TieBreak,
    /// Our own priority fell to 0 (e.g. the local Redis is gone).
    Resign,
    /// An operator asked for this node (`ha-daemon switchover`).
    Switchover,
    /// An operator asked this master to hand over, and a backup took over.
    HandedOver,
    /// The master's Redis closed its connections and did not answer a check.
    MasterRedisDown,
    Shutdown,
    /// Gated: the lease was not renewed in time (or a newer term exists).
    LeaseLost,
    /// Gated: a higher-priority node asked for the lease, and got it.
    Preempted,
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Reason::Startup => "startup",
            Reason::AddressOwner => "address owner (priority 255)",
            Reason::MasterDown => "master down: no advert within Master_Down_Interval",
            Reason::MasterResigned => "master resigned (priority 0)",
            Reason::Preempt => "preempted a lower-priority master",
            Reason::HigherPriorityAdvert => "advert with higher priority",
            Reason::TieBreak => "equal priority, higher sender address",
            Reason::Resign => "own priority 0",
            Reason::Switchover => "planned switchover",
            Reason::HandedOver => "handed over (planned switchover away from this node)",
            Reason::MasterRedisDown => "the master's Redis is down (FIN/RST, check failed)",
            Reason::Shutdown => "shutdown",
            Reason::LeaseLost => "lease lost: not renewed by a majority of voters in time",
            Reason::Preempted => "gave the lease to a higher-priority node (preemption)",
        })
    }
}

#[derive(Debug, Clone)]
pub struct Machine {
    params: Params,
    state: State,
    /// Effective priority (configured, adjusted by health checks).
    priority: u8,
    /// Master_Adver_Interval, learnt from the master's adverts (v3).
    master_adver_cs: u16,
    /// Last advert from the current master, when it arrived.
    last_advert: Option<Nanos>,
    /// Last advert from any master, also those a preempting backup ignores:
    /// tells a preemption (it still talks) from a dead master in the reason.
    last_heard: Option<Nanos>,
    master: Option<IpAddr>,
    /// Priority of the current master's last advert.
    master_priority: u8,
    started_at: Nanos,
    deadline: Option<Nanos>,
    /// The deadline in Backup is the skew time after a priority-0 advert.
    resigned: bool,
    /// The master whose Redis failed; its adverts no longer hold us back.
    failed_master: Option<IpAddr>,
    preempt_hold: bool,
    /// Priority advertised after a switchover, while master.
    boost: Option<u8>,
    /// Master advertising priority 1 to be taken over (`HandOver`).
    handing_over: bool,
    /// Handed over: no preempting back while this master lasts.
    yielded: bool,
    /// A preemption waits until then (`PREEMPT_STEP_NS`).
    preempt_at: Option<Nanos>,
    /// When we last re-announced because of a lower-priority rival master.
    rival_announced: Option<Nanos>,
    /// Gated: we hold the lease.
    lease: bool,
    /// Gated: a takeover waiting for the lease, and why it is wanted.
    pending: Option<Reason>,
    /// Gated: adverts ignored because they claimed mastership while this
    /// master held the lease.
    ignored_claims: u64,
    /// The master this node took over from because it went silent, and
    /// when, while this node is master: if it comes back soon, that was a
    /// flap.
    took_from: Option<(IpAddr, Nanos)>,
    damping: Damping,
}

impl Machine {
    pub fn new(params: Params) -> Self {
        let damping = Damping::new(if params.gated {
            0
        } else {
            params.flap_hold_max_ns
        });
        Self {
            priority: params.priority,
            master_adver_cs: params.interval_cs,
            params,
            state: State::Initialize,
            last_advert: None,
            last_heard: None,
            master: None,
            master_priority: 0,
            started_at: 0,
            deadline: None,
            resigned: false,
            failed_master: None,
            preempt_hold: false,
            boost: None,
            handing_over: false,
            yielded: false,
            preempt_at: None,
            rival_announced: None,
            lease: false,
            pending: None,
            ignored_claims: 0,
            took_from: None,
            damping,
        }
    }

    /// How much longer than Master_Down_Interval a silent master is waited
    /// for now (flap dampening).
    pub fn hold_down_ns(&self, now: Nanos) -> Nanos {
        self.damping.hold(now, self.master_down_interval_ns())
    }

    /// A master back this soon after a takeover from it was only cut off:
    /// 10 × Master_Down_Interval, at least 500 ms, at most 5 s.
    fn flap_window_ns(&self) -> Nanos {
        (10 * self.master_down_interval_ns()).clamp(500_000_000, 5_000_000_000)
    }

    /// Master_Down_Interval plus the flap hold: how long a master may be
    /// silent before this backup takes over.
    fn down_after_ns(&self, now: Nanos) -> Nanos {
        self.master_down_interval_ns() + self.hold_down_ns(now)
    }

    fn flapped(&mut self, master: IpAddr, now: Nanos, out: &mut Vec<Action>) {
        self.damping.flap(now);
        if self.damping.hold(now, 1) > 0 {
            out.push(Action::Damped {
                master,
                flaps: self.damping.flaps(now),
                hold_ns: self.hold_down_ns(now),
            });
        }
    }

    /// Gated: a takeover waiting for the lease.
    pub fn pending(&self) -> Option<Reason> {
        self.pending
    }
    pub fn holds_lease(&self) -> bool {
        self.lease
    }
    /// Adverts that claimed mastership while this master held the lease.
    pub fn ignored_claims(&self) -> u64 {
        self.ignored_claims
    }

    /// Gated: no longer waiting for the lease (a master to follow appeared).
    fn drop_pending(&mut self, out: &mut Vec<Action>) {
        if self.pending.take().is_some() {
            self.boost = None;
            out.push(Action::DropLease);
        }
    }

    pub fn state(&self) -> State {
        self.state
    }
    /// The priority advertised and compared: the health-adjusted one, raised
    /// by a switchover boost, 1 while handing over (never above a
    /// resignation's 0).
    pub fn priority(&self) -> u8 {
        match (self.priority, self.boost) {
            (0, _) => 0,
            _ if self.handing_over => 1,
            (p, Some(b)) => p.max(b),
            (p, None) => p,
        }
    }
    pub fn params(&self) -> &Params {
        &self.params
    }
    /// The master we follow in Backup (its advert source address).
    /// When the last advert from the master was heard (or Backup began).
    pub fn last_advert(&self) -> Option<Nanos> {
        self.last_advert
    }

    pub fn master(&self) -> Option<IpAddr> {
        self.master
    }
    /// The master, while its adverts arrive (heard within
    /// Master_Down_Interval of `now`).
    pub fn master_heard(&self, now: Nanos) -> Option<IpAddr> {
        self.master.filter(|_| {
            self.last_heard
                .is_some_and(|h| now < h.saturating_add(self.master_down_interval_ns()))
        })
    }
    pub fn deadline(&self) -> Option<Nanos> {
        self.deadline
    }
    pub fn master_adver_interval_ns(&self) -> Nanos {
        u64::from(self.master_adver_cs) * NS_PER_CS
    }

    /// Skew_Time: v3 scales with the master's interval; v2 is (256-Priority)/256 s.
    pub fn skew_time_ns(&self) -> Nanos {
        let p = 256 - u64::from(self.priority());
        match self.params.version {
            Version::V3 => p * self.master_adver_interval_ns() / 256,
            Version::V2 => p * 1_000_000_000 / 256,
        }
    }

    /// Master_Down_Interval = 3 × Master_Adver_Interval + Skew_Time.
    pub fn master_down_interval_ns(&self) -> Nanos {
        3 * self.master_adver_interval_ns() + self.skew_time_ns()
    }

    fn advert_interval_ns(&self) -> Nanos {
        u64::from(self.params.interval_cs) * NS_PER_CS
    }

    fn arm(&mut self, at: Nanos, out: &mut Vec<Action>) {
        self.deadline = Some(at);
        out.push(Action::ArmTimer { at });
    }

    fn go(&mut self, to: State, reason: Reason, out: &mut Vec<Action>) {
        let from = self.state;
        self.state = to;
        out.push(Action::StateChanged { from, to, reason });
    }

    fn become_master(&mut self, now: Nanos, reason: Reason, out: &mut Vec<Action>) {
        if self.params.gated && !self.lease {
            // Not without the lease: ask, stay backup, and look again in an
            // interval (the quorum side retries on its own meanwhile).
            self.pending = Some(reason);
            out.push(Action::WantLease {
                preempt: matches!(reason, Reason::Preempt | Reason::Switchover),
                priority: self.priority(),
            });
            self.arm(now + self.advert_interval_ns(), out);
            return;
        }
        self.pending = None;
        let advert = Action::SendAdvert {
            priority: self.priority(),
        };
        if matches!(
            reason,
            Reason::Preempt | Reason::Switchover | Reason::AddressOwner
        ) {
            // The old master is alive: our advert makes it drop the VIP at
            // once, and clients must already send to us by then, or their
            // packets to it are lost until TCP retransmits (200 ms).
            out.push(Action::AddVips);
            out.push(Action::Announce);
            out.push(advert);
        } else {
            // The master is gone (RFC 5798 6.4.1 order): the advert first, so
            // a lower backup whose timer runs out a Skew_Time difference
            // later (2 ms with 10 ms adverts) hears us before it takes over.
            out.push(advert);
            out.push(Action::AddVips);
            out.push(Action::Announce);
        }
        self.took_from = match (reason, self.master) {
            (Reason::MasterDown, Some(m)) => Some((m, now)),
            _ => None,
        };
        self.master = None;
        self.resigned = false;
        self.failed_master = None;
        self.handing_over = false;
        self.yielded = false;
        self.preempt_at = None;
        self.arm(now + self.advert_interval_ns(), out);
        self.go(State::Master, reason, out);
    }

    fn become_backup(&mut self, now: Nanos, reason: Reason, out: &mut Vec<Action>) {
        if self.state == State::Master {
            out.push(Action::RemoveVips);
        }
        // A switchover boost is for holding mastership, not for preempting back.
        self.boost = None;
        if self.handing_over {
            self.handing_over = false;
            self.yielded = true;
        }
        self.master_adver_cs = match self.params.version {
            Version::V3 => self.master_adver_cs,
            Version::V2 => self.params.interval_cs,
        };
        self.last_advert = Some(now);
        self.resigned = false;
        self.preempt_at = None;
        self.took_from = None;
        self.arm(now + self.down_after_ns(now), out);
        self.go(State::Backup, reason, out);
    }

    /// Feeds one event at time `now`; returns what to do, in order.
    pub fn handle(&mut self, event: Event, now: Nanos) -> Vec<Action> {
        let mut out = Vec::new();
        if let Event::PreemptHold(h) = event {
            // A setting, valid in every state.
            self.preempt_hold = h;
            return out;
        }
        match (self.state, event) {
            (State::Initialize, Event::Startup) => {
                self.started_at = now;
                self.master_adver_cs = self.params.interval_cs;
                if self.priority() == 255 && self.params.gated {
                    // Even the owner waits for the lease, as a backup.
                    self.become_backup(now, Reason::Startup, &mut out);
                    self.become_master(now, Reason::AddressOwner, &mut out);
                } else if self.priority() == 255 {
                    self.become_master(now, Reason::AddressOwner, &mut out);
                } else {
                    self.become_backup(now, Reason::Startup, &mut out);
                }
            }
            (State::Initialize, Event::Priority(p)) => self.priority = p,
            (State::Initialize, _) => {}

            (State::Backup | State::Master, Event::Startup) => {}

            (State::Backup, Event::Shutdown) => {
                self.deadline = None;
                out.push(Action::CancelTimer);
                self.drop_pending(&mut out);
                self.go(State::Initialize, Reason::Shutdown, &mut out);
            }
            (State::Master, Event::Shutdown) => {
                self.deadline = None;
                out.push(Action::CancelTimer);
                if self.params.gated {
                    // Fenced and released before the backups are told.
                    out.push(Action::DropLease);
                    self.lease = false;
                }
                out.push(Action::SendAdvert { priority: 0 });
                out.push(Action::RemoveVips);
                self.go(State::Initialize, Reason::Shutdown, &mut out);
            }
            (_, Event::Lease(held)) => {
                self.lease = held;
                match (self.state, held) {
                    (State::Backup, true) => match self.pending {
                        Some(r) if self.priority() > 0 => self.become_master(now, r, &mut out),
                        // Granted what is no longer wanted: give it back.
                        _ => {
                            self.pending = None;
                            self.lease = false;
                            out.push(Action::DropLease);
                        }
                    },
                    (State::Master, false) => {
                        // Step down now: the kernel fence closes at the
                        // lease's end whatever happens here. Stop asking too
                        // (a backup asks again when its timer says so).
                        out.push(Action::DropLease);
                        out.push(Action::SendAdvert { priority: 0 });
                        self.become_backup(now, Reason::LeaseLost, &mut out);
                    }
                    (State::Initialize, true) => {
                        self.lease = false;
                        out.push(Action::DropLease);
                    }
                    _ => {}
                }
            }
            (State::Master, Event::YieldTo { from, priority }) => {
                let outranked = priority > self.priority()
                    || (priority == self.priority() && addr_gt(from, self.params.primary))
                    || self.handing_over;
                if self.params.gated && outranked {
                    let reason = if self.handing_over {
                        Reason::HandedOver
                    } else {
                        Reason::Preempted
                    };
                    out.push(Action::DropLease);
                    self.lease = false;
                    self.become_backup(now, reason, &mut out);
                    self.master = Some(from);
                    self.master_priority = priority;
                }
            }
            (_, Event::YieldTo { .. }) => {}

            (State::Backup, Event::Timer) => {
                let Some(deadline) = self.deadline else {
                    return out;
                };
                if now < deadline {
                    return out;
                }
                let reason = if self.failed_master.is_some() {
                    Reason::MasterRedisDown
                } else if self.resigned {
                    Reason::MasterResigned
                } else if self.master.is_some()
                    && self.master_priority < self.priority()
                    && self.preempting(now)
                    && self
                        .last_heard
                        .is_some_and(|h| now < h + self.master_down_interval_ns())
                {
                    Reason::Preempt
                } else {
                    Reason::MasterDown
                };
                if self.priority() == 0 {
                    // Resigned ourselves: never take over.
                    self.drop_pending(&mut out);
                    self.arm(now + self.master_down_interval_ns(), &mut out);
                    return out;
                }
                if reason == Reason::Preempt {
                    let at = *self
                        .preempt_at
                        .get_or_insert(now + u64::from(255 - self.priority()) * PREEMPT_STEP_NS);
                    if now < at {
                        // The master lives and serves meanwhile: no write waits.
                        self.arm(at, &mut out);
                        return out;
                    }
                }
                self.become_master(now, reason, &mut out);
            }
            (State::Master, Event::Timer) => {
                if self.deadline.is_some_and(|d| now >= d) {
                    out.push(Action::SendAdvert {
                        priority: self.priority(),
                    });
                    self.arm(now + self.advert_interval_ns(), &mut out);
                }
            }

            (
                State::Backup,
                Event::Advert {
                    from,
                    priority,
                    interval_cs,
                    at,
                },
            ) => {
                if self.failed_master == Some(from) && self.master == Some(from) && priority > 0 {
                    // Its daemon still talks, but its Redis is gone. Only
                    // while we still follow it: once another node took its
                    // place, its adverts mean it is back and preempts.
                    return out;
                }
                self.master_priority = priority;
                self.last_heard = Some(self.last_heard.map_or(at, |l| l.max(at)));
                if priority == 0 {
                    // The master resigned: take over after Skew_Time only.
                    self.resigned = true;
                    self.arm(at + self.skew_time_ns(), &mut out);
                } else if !self.params.preempt
                    || self.yielded
                    || priority >= self.priority()
                    || self.in_preempt_delay(at)
                    // The hold keeps a live master from being preempted by
                    // stale data; a lower backup racing us for a resigned or
                    // failed master's place is not that (our Redis just lost
                    // its link to the same master as its).
                    || (self.preempt_hold && !self.resigned && self.failed_master.is_none())
                {
                    if self.params.version == Version::V3 {
                        self.master_adver_cs = interval_cs;
                    }
                    self.master = Some(from);
                    self.resigned = false;
                    self.preempt_at = None;
                    self.drop_pending(&mut out);
                    // Another master now (the failed one returned above): its
                    // failure is over, or a returning failed master would be
                    // ignored and we would take over from it as "Redis down".
                    self.failed_master = None;
                    // The master was silent for longer than Master_Down_Interval
                    // and is back: a takeover held down by dampening (the
                    // link flaps on), one more flap.
                    if priority > 0
                        && self.hold_down_ns(now) > 0
                        && self
                            .last_advert
                            .is_some_and(|l| at > l + self.master_down_interval_ns())
                    {
                        self.flapped(from, now, &mut out);
                    }
                    // Keep the latest arrival: adverts can be handed over out of order
                    // when the kernel stamp and the socket are read separately.
                    let last = self.last_advert.map_or(at, |l| l.max(at));
                    self.last_advert = Some(last);
                    self.arm(last + self.down_after_ns(now), &mut out);
                } else {
                    // A lower-priority master and we preempt: let the timer run out.
                    self.master = Some(from);
                }
            }
            (
                State::Master,
                Event::Advert {
                    from,
                    priority,
                    interval_cs,
                    at,
                },
            ) => {
                if priority == 0 {
                    out.push(Action::SendAdvert {
                        priority: self.priority(),
                    });
                    self.arm(now + self.advert_interval_ns(), &mut out);
                } else if self.params.gated
                    && self.lease
                    && (priority > self.priority()
                        || (priority == self.priority() && addr_gt(from, self.params.primary)))
                {
                    // Nobody else can be master while we hold the lease: a
                    // forged or confused advert makes nobody yield.
                    self.ignored_claims += 1;
                } else if priority > self.priority()
                    || (priority == self.priority() && addr_gt(from, self.params.primary))
                {
                    if self.params.version == Version::V3 {
                        self.master_adver_cs = interval_cs;
                    }
                    let reason = if self.handing_over {
                        Reason::HandedOver
                    } else if priority > self.priority() {
                        Reason::HigherPriorityAdvert
                    } else {
                        Reason::TieBreak
                    };
                    // The master this node took over from, because it went
                    // silent, was alive all along: a flap. (A master that
                    // died and came back to preempt takes longer: its Redis
                    // must sync and stream first, a second or more.)
                    if let Some((m, since)) = self.took_from
                        && m == from
                        && now < since + self.flap_window_ns()
                    {
                        self.flapped(from, now, &mut out);
                    }
                    self.become_backup(at, reason, &mut out);
                    self.master = Some(from);
                    self.master_priority = priority;
                } else if self
                    .rival_announced
                    .is_none_or(|t| now >= t + RIVAL_ANNOUNCE_EVERY_NS)
                {
                    // A lower-priority node thinks it is master (it missed
                    // our adverts): its gratuitous ARP may have pulled clients
                    // to it, and it will drop the VIP on our next advert.
                    // Pull them back (keepalived: garp_lower_prio_repeat).
                    self.rival_announced = Some(now);
                    out.push(Action::Announce);
                }
            }

            (State::Backup, Event::MasterFailed { from }) => {
                if self.master == Some(from) && self.failed_master.is_none() {
                    self.failed_master = Some(from);
                    self.arm(now + self.skew_time_ns(), &mut out);
                }
            }
            (State::Backup, Event::Switchover) => {
                // One above the master we replace, so it yields on our first advert.
                let target = self.master_priority.saturating_add(1).min(254);
                let outranks = self.master.is_none()
                    || target > self.master_priority
                    || self.priority() > self.master_priority;
                if self.priority == 0 || !outranks {
                    return out;
                }
                if target > self.priority() {
                    self.boost = Some(target);
                }
                self.become_master(now, Reason::Switchover, &mut out);
            }
            (State::Master, Event::HandOver) => {
                if self.priority() > 0 && !self.handing_over {
                    self.handing_over = true;
                    self.boost = None;
                    out.push(Action::SendAdvert { priority: 1 });
                    self.arm(now + self.advert_interval_ns(), &mut out);
                }
            }
            (State::Master, Event::CancelHandOver) => {
                if self.handing_over {
                    self.handing_over = false;
                    out.push(Action::SendAdvert {
                        priority: self.priority(),
                    });
                    self.arm(now + self.advert_interval_ns(), &mut out);
                }
            }
            (
                _,
                Event::MasterFailed { .. }
                | Event::PreemptHold(_)
                | Event::Switchover
                | Event::HandOver
                | Event::CancelHandOver,
            ) => {}
            (State::Backup, Event::Priority(p)) => {
                self.priority = p;
                // Skew_Time depends on the priority: re-arm from the last advert.
                if let (Some(last), false) = (self.last_advert, self.resigned) {
                    self.arm(last + self.down_after_ns(now), &mut out);
                }
            }
            (State::Master, Event::Priority(p)) => {
                self.priority = p;
                if p == 0 {
                    if self.params.gated {
                        out.push(Action::DropLease);
                        self.lease = false;
                    }
                    // Tell the backups to take over after their skew time.
                    out.push(Action::SendAdvert { priority: 0 });
                    self.become_backup(now, Reason::Resign, &mut out);
                } else {
                    out.push(Action::SendAdvert {
                        priority: self.priority(),
                    });
                    self.arm(now + self.advert_interval_ns(), &mut out);
                }
            }
        }
        out
    }

    fn in_preempt_delay(&self, at: Nanos) -> bool {
        at < self.started_at + self.params.preempt_delay_ns
    }

    fn preempting(&self, now: Nanos) -> bool {
        self.params.preempt && !self.yielded && !self.in_preempt_delay(now)
    }
}

/// RFC 5798: "the primary IPvX Address of the sender is greater than the local
/// primary IPvX Address", compared as unsigned integers in network order.
fn addr_gt(a: IpAddr, b: IpAddr) -> bool {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => a.octets() > b.octets(),
        (IpAddr::V6(a), IpAddr::V6(b)) => a.octets() > b.octets(),
        _ => false,
    }
}

#[cfg(test)]
mod tests;
