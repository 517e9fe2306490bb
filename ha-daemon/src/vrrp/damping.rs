//! Flap dampening for takeovers from a master that was only out of reach.
//!
//! Without a quorum a backup that stops hearing the master takes over; if
//! the master was alive (the link between them flapped) it yields again
//! when the link comes back, and the writes it took meanwhile are thrown
//! away. A link that flaps does that at every cut. Like route-flap
//! dampening (RFC 2439), each such flap adds to a penalty that decays with
//! a half-life, and while the penalty stands a silent master is declared
//! down only after an extra hold, longer with each flap: the link may flap
//! on, the backup stays put. A master that is really gone is replaced
//! that much later (at most `max_hold`), and only after flaps.
//!
//! Pure: times in, hold out.
use super::machine::Nanos;

/// A flap's penalty halves in this long.
pub const HALF_LIFE_NS: Nanos = 10_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Damping {
    /// Penalty as of `at` (1 per flap).
    penalty: f64,
    at: Nanos,
    /// The longest hold (0: off).
    max_hold: Nanos,
}

impl Damping {
    pub fn new(max_hold: Nanos) -> Self {
        Self {
            penalty: 0.0,
            at: 0,
            max_hold,
        }
    }

    fn penalty_at(&self, now: Nanos) -> f64 {
        let dt = now.saturating_sub(self.at) as f64;
        self.penalty * (-dt / HALF_LIFE_NS as f64 * std::f64::consts::LN_2).exp()
    }

    /// A flap: the master this node took over from (or was about to) came
    /// back while the link between them was only cut.
    pub fn flap(&mut self, now: Nanos) {
        self.penalty = self.penalty_at(now) + 1.0;
        self.at = now.max(self.at);
    }

    /// Flaps that still count: 1 for 20 s after one flap, 2 for 30 s after
    /// two in a row...
    pub fn flaps(&self, now: Nanos) -> u32 {
        (self.penalty_at(now) - 0.25).ceil().max(0.0) as u32
    }

    /// How much longer than Master_Down_Interval (`mdi`) a silent master
    /// is waited for now: 3, 6, 12... times `mdi` after 1, 2, 3... flaps,
    /// at most `max_hold`. With 10 ms adverts (`mdi` 36 ms) one flap makes
    /// a cut shorter than 144 ms pass without a takeover.
    pub fn hold(&self, now: Nanos, mdi: Nanos) -> Nanos {
        match self.flaps(now) {
            0 => 0,
            n => mdi
                .saturating_mul(3)
                .saturating_mul(1 << (n - 1).min(20))
                .min(self.max_hold),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Nanos = 1_000_000;

    #[test]
    fn grows_with_each_flap_and_decays() {
        let mut d = Damping::new(2_000 * MS);
        let mdi = 36 * MS;
        assert_eq!(d.hold(0, mdi), 0);
        d.flap(1_000 * MS);
        assert_eq!(d.hold(1_000 * MS, mdi), 108 * MS);
        d.flap(1_250 * MS);
        assert_eq!(d.hold(1_250 * MS, mdi), 216 * MS);
        for i in 0..10 {
            d.flap((1_500 + 250 * i) * MS);
        }
        assert_eq!(d.hold(4_000 * MS, mdi), 2_000 * MS, "capped");
        // A quiet minute later: gone.
        assert_eq!(d.hold(90_000 * MS, mdi), 0);
        // One flap lasts about two half-lives.
        let mut d = Damping::new(2_000 * MS);
        d.flap(0);
        assert_eq!(d.flaps(19_000 * MS), 1);
        assert_eq!(d.flaps(21_000 * MS), 0);
        // Off.
        let mut d = Damping::new(0);
        d.flap(0);
        assert_eq!(d.hold(0, mdi), 0);
    }
}
