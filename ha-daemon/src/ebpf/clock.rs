//! The kernel clock the XDP program stamps with.
//!
//! `bpf_ktime_get_ns()` reads CLOCK_MONOTONIC, so ages of map timestamps must be
//! computed against the same clock, not against `Instant` or wall time.
use std::time::Duration;

/// CLOCK_MONOTONIC now, in nanoseconds.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CLOCK_BOOTTIME now, in nanoseconds: the lease's clock (`bpf_ktime_get_boot_ns`
/// on the kernel side). Unlike CLOCK_MONOTONIC it keeps counting while the
/// host is suspended, so a holder that sleeps through its lease wakes up
/// with the lease over; and it starts at boot, which tells a rebooted voter
/// how long ago any promise it forgot could have been made.
pub fn boottime_ns() -> u64 {
    let t = kernel_boottime_ns();
    match skew() {
        Some(r) => (t as f64 * r) as u64,
        None => t,
    }
}

/// A time on `boottime_ns` as the kernel's CLOCK_BOOTTIME reads it then
/// (for the lease deadline the kernel fence enforces).
pub fn to_kernel_boottime(t: u64) -> u64 {
    match skew() {
        Some(r) => (t as f64 / r) as u64,
        None => t,
    }
}

/// Test seam: `HA_TEST_CLOCK_PPM=N` (|N| ≤ 500,000) makes this process's
/// lease clock (`boottime_ns`) run N parts per million fast (or slow,
/// negative) against the kernel's, as a drifting or slewed clock would;
/// the kernel fence still gets its deadlines in kernel time. Test hosts in
/// namespaces share one clock, and the lease must hold within
/// `max_drift_ppm` whatever each node's rate; the fault campaign sets it.
fn skew() -> Option<f64> {
    static RATE: std::sync::OnceLock<Option<f64>> = std::sync::OnceLock::new();
    *RATE.get_or_init(|| {
        let ppm: i64 = std::env::var("HA_TEST_CLOCK_PPM")
            .ok()?
            .trim()
            .parse()
            .ok()?;
        if ppm == 0 || ppm.abs() > 500_000 {
            return None;
        }
        tracing::warn!(
            "test seam HA_TEST_CLOCK_PPM: the lease clock runs {ppm:+} ppm against the kernel's"
        );
        Some(1.0 + ppm as f64 / 1e6)
    })
}

/// The kernel's CLOCK_BOOTTIME (what `bpf_ktime_get_boot_ns` reads), with
/// no test skew.
pub fn kernel_boottime_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec; CLOCK_BOOTTIME exists since Linux 2.6.39.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// How long ago a kernel timestamp was (zero if it lies in the future).
pub fn age(stamp_ns: u64) -> Duration {
    Duration::from_nanos(monotonic_ns().saturating_sub(stamp_ns))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn age_of_now_is_small_and_future_is_zero() {
        let now = monotonic_ns();
        assert!(age(now) < Duration::from_secs(1));
        assert_eq!(age(now + 10_000_000_000), Duration::ZERO);
    }
}
