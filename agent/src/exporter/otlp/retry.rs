//! Exponential backoff with jitter, and what a failed attempt says about
//! retrying it.

use std::time::Duration;

use phoenix_config::exporter::RetryConfig;

/// Why an attempt failed, as the transports classify it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SendError {
    /// Whether the same request may succeed later (throttling, outage,
    /// timeout). A permanent error (bad request, auth) never will.
    pub retryable: bool,
    /// The server asked for this wait (HTTP `Retry-After`, gRPC `RetryInfo`).
    pub retry_after: Option<Duration>,
    /// For logs: status and message, never request content.
    pub reason: String,
}

impl SendError {
    pub(crate) fn retryable(reason: impl Into<String>) -> Self {
        SendError {
            retryable: true,
            retry_after: None,
            reason: reason.into(),
        }
    }

    pub(crate) fn permanent(reason: impl Into<String>) -> Self {
        SendError {
            retryable: false,
            retry_after: None,
            reason: reason.into(),
        }
    }
}

/// The wait before each retry of one batch: `initial_interval`, growing by
/// `multiplier` up to `max_interval`, each randomized by
/// `randomization_factor` (the Collector's algorithm). Also paces the
/// controller client's reconnects, so both retry the same way.
pub(crate) struct Backoff {
    initial: Duration,
    next: Duration,
    max: Duration,
    multiplier: f64,
    randomization: f64,
}

impl Backoff {
    pub(crate) fn new(cfg: &RetryConfig) -> Self {
        Self::exponential(
            cfg.initial_interval,
            cfg.max_interval,
            cfg.multiplier,
            cfg.randomization_factor,
        )
    }

    /// Starts at `initial`, grows by `multiplier` up to `max`, each wait
    /// drawn from `[1 - randomization, 1 + randomization]` × the step.
    pub(crate) fn exponential(
        initial: Duration,
        max: Duration,
        multiplier: f64,
        randomization: f64,
    ) -> Self {
        Backoff {
            initial,
            next: initial,
            max: max.max(initial),
            // Sanitized here too: a config built in code skips `validate`.
            multiplier: if multiplier.is_finite() {
                multiplier.max(1.0)
            } else {
                1.0
            },
            randomization: if randomization.is_finite() {
                randomization.clamp(0.0, 1.0)
            } else {
                0.0
            },
        }
    }

    /// Back to the first step, after an attempt that succeeded.
    pub(crate) fn reset(&mut self) {
        self.next = self.initial;
    }

    /// The wait before the next retry.
    pub(crate) fn next_delay(&mut self, rng: &mut XorShift) -> Duration {
        let base = self.next;
        self.next = mul(self.next, self.multiplier).min(self.max);
        // Uniform in [1 - f, 1 + f] × base, never above max_interval.
        let factor = 1.0 + self.randomization * (2.0 * rng.next_f64() - 1.0);
        mul(base, factor).min(self.max)
    }
}

/// `d × k` that saturates instead of panicking on overflow.
fn mul(d: Duration, k: f64) -> Duration {
    Duration::try_from_secs_f64(d.as_secs_f64() * k).unwrap_or(Duration::MAX)
}

/// xorshift64*: jitter needs spread, not cryptographic quality, and this
/// avoids a dependency for a few random numbers a minute.
pub(crate) struct XorShift(u64);

impl XorShift {
    /// Seeded from the clock and an address, so agents started at the same
    /// second (a DaemonSet rollout) still draw different sequences.
    pub(crate) fn from_entropy() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let local = 0u8;
        let addr = std::ptr::addr_of!(local) as u64;
        Self::new(nanos ^ addr.rotate_left(32) ^ u64::from(std::process::id()))
    }

    pub(crate) fn new(seed: u64) -> Self {
        // Zero is the one state xorshift never leaves.
        XorShift(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    pub(crate) fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(initial_ms: u64, max_ms: u64, randomization: f64) -> RetryConfig {
        RetryConfig {
            initial_interval: Duration::from_millis(initial_ms),
            max_interval: Duration::from_millis(max_ms),
            multiplier: 2.0,
            randomization_factor: randomization,
            ..RetryConfig::default()
        }
    }

    #[test]
    fn grows_by_the_multiplier_up_to_the_max() {
        let mut rng = XorShift::new(1);
        let mut b = Backoff::new(&cfg(100, 500, 0.0));
        let delays: Vec<u128> = (0..5).map(|_| b.next_delay(&mut rng).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 500, 500]);
    }

    #[test]
    fn jitter_stays_within_the_randomization_band() {
        let mut rng = XorShift::from_entropy();
        for _ in 0..1000 {
            let d = Backoff::new(&cfg(1000, 10_000, 0.5)).next_delay(&mut rng);
            assert!(
                (500..=1500).contains(&d.as_millis()),
                "{d:?} outside 1s ± 50%"
            );
        }
    }

    #[test]
    fn random_numbers_cover_the_unit_interval() {
        let mut rng = XorShift::new(0);
        let draws: Vec<f64> = (0..1000).map(|_| rng.next_f64()).collect();
        assert!(draws.iter().all(|x| (0.0..1.0).contains(x)));
        assert!(draws.iter().any(|x| *x < 0.1) && draws.iter().any(|x| *x > 0.9));
    }

    #[test]
    fn reset_starts_over() {
        let mut rng = XorShift::new(3);
        let mut b = Backoff::exponential(
            Duration::from_millis(100),
            Duration::from_millis(1000),
            2.0,
            0.0,
        );
        b.next_delay(&mut rng);
        b.next_delay(&mut rng);
        b.reset();
        assert_eq!(b.next_delay(&mut rng), Duration::from_millis(100));
    }

    #[test]
    fn absurd_configs_do_not_panic() {
        let mut rng = XorShift::new(7);
        let mut b = Backoff::new(&RetryConfig {
            initial_interval: Duration::MAX,
            max_interval: Duration::MAX,
            multiplier: f64::INFINITY,
            randomization_factor: f64::NAN,
            ..RetryConfig::default()
        });
        b.next_delay(&mut rng);
        b.next_delay(&mut rng);
    }
}
