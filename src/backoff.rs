//! Waits between attempts that collided with others: exponential, capped, jittered.

use std::time::Duration;

/// The delay after `failures` consecutive failures: base·2^(n-1), capped, with "equal
/// jitter" (between half and all of it) so receivers coming back are not hit in lockstep.
pub fn backoff(base: Duration, cap: Duration, failures: u64) -> Duration {
    let exp = failures.saturating_sub(1).min(32) as u32;
    let full = base.saturating_mul(2u32.saturating_pow(exp)).min(cap);
    let half = full / 2;
    half + half.mul_f64(fastrand::f64())
}
