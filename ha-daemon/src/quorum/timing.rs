//! How long a lease, a voter's promise and the margins last, from the
//! advertisement interval and a bound on clock-rate drift.
//!
//! Every node measures time on its own CLOCK_BOOTTIME (the clock the XDP and
//! TC programs read with `bpf_ktime_get_boot_ns`; unlike CLOCK_MONOTONIC it
//! runs on through a suspend, so a resumed holder sees its lease as over).
//! Nothing compares two clocks:
//! the only assumption is that each one runs at a rate within `1 ± ρ` of real
//! time (ρ = `max_drift_ppm` / 10^6, NTP slewing included).
//!
//! The argument (README, "Partition safety"):
//! - A holder sends a request at its local time `s` (real time `S`). A voter
//!   receives it at real time `R ≥ S` and promises to grant nobody else until
//!   its local clock has advanced by `P` from then: real time at least
//!   `R + P/(1+ρ) ≥ S + P/(1+ρ)`.
//! - Once a majority (itself included) promised, the holder may serve until
//!   its local clock reads `s + L`: real time at most `S + L/(1−ρ)`. The
//!   kernel fence stops its Redis traffic for the VIP at exactly that local
//!   time, whatever the daemon does.
//! - With `L = P·(1−ρ)/(1+ρ)`, `S + L/(1−ρ) = S + P/(1+ρ)`: the holder has
//!   stopped before any voter of that majority can promise another node, and
//!   any other majority includes one of them. Message delays only make the
//!   promise end later (it counts from receipt), never the lease.
use super::Nanos;

/// The longest promise a voter gives (and so how long a rebooted voter, which
/// forgot what it promised, stays quiet). Also caps the advert interval that
/// a `[quorum]` may be used with (`MAX_PROMISE_NS / PROMISE_INTERVALS`).
pub const MAX_PROMISE_NS: Nanos = 10_000_000_000;
/// A voter's promise, in advert intervals: a backup declares a silent master
/// down after 3 intervals and its Skew_Time (at most one more), so by then
/// the voters' promises to that master have run out (or nearly: at priority
/// 100 and 10 ms adverts the backup waits 36 ms, the promise 40 ms).
pub const PROMISE_INTERVALS: u64 = 4;
/// Default bound on clock-rate drift: chrony slews CLOCK_MONOTONIC by up to
/// 83,333 ppm (its default `maxslewrate`); 10 % covers that and the crystal.
pub const DEFAULT_DRIFT_PPM: u32 = 100_000;
/// Largest drift bound accepted: beyond it the lease is under 2.7 intervals.
pub const MAX_DRIFT_PPM: u32 = 200_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Renewal period: one request per advert interval.
    pub renew_ns: Nanos,
    /// P: how long a voter promises not to grant another holder, from when it
    /// received the request.
    pub promise_ns: Nanos,
    /// L: how long the holder may serve, from when it *sent* the request.
    pub lease_ns: Nanos,
    /// The daemon steps down (VIPs removed, Redis paused) this long before
    /// its lease ends; the kernel fence engages at the end itself.
    pub step_down_ns: Nanos,
    pub drift_ppm: u32,
}

impl Timing {
    pub fn derive(advert_interval_ns: Nanos, drift_ppm: u32) -> Timing {
        let promise_ns = PROMISE_INTERVALS * advert_interval_ns;
        Timing {
            renew_ns: advert_interval_ns,
            promise_ns,
            lease_ns: lease_for(promise_ns, drift_ppm),
            step_down_ns: advert_interval_ns / 4,
            drift_ppm,
        }
    }
}

/// `L = P·(1−ρ)/(1+ρ)`, rounded down, in integers.
pub fn lease_for(promise_ns: Nanos, drift_ppm: u32) -> Nanos {
    let (p, d) = (u128::from(promise_ns), u128::from(drift_ppm));
    (p * (1_000_000 - d) / (1_000_000 + d)) as Nanos
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_at_10_ms_adverts() {
        let t = Timing::derive(10_000_000, DEFAULT_DRIFT_PPM);
        assert_eq!(t.promise_ns, 40_000_000);
        // 40 ms × 0.9 / 1.1
        assert_eq!(t.lease_ns, 32_727_272);
        assert_eq!(t.step_down_ns, 2_500_000);
    }

    #[test]
    fn the_holder_stops_before_any_promise_can_end() {
        // Worst case for every drift bound: the holder's clock slow, the
        // voter's fast, the request delivered at once.
        for ppm in [0, 500, 10_000, DEFAULT_DRIFT_PPM, MAX_DRIFT_PPM] {
            let t = Timing::derive(10_000_000, ppm);
            let rho = f64::from(ppm) / 1e6;
            let lease_end_real = t.lease_ns as f64 / (1.0 - rho);
            let promise_end_real = t.promise_ns as f64 / (1.0 + rho);
            assert!(
                lease_end_real <= promise_end_real + 1.0,
                "{ppm} ppm: {lease_end_real} > {promise_end_real}"
            );
        }
    }
}
