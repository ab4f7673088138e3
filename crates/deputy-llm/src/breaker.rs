//! A circuit breaker per provider: after `failure_threshold` consecutive failed attempts the
//! provider is skipped (fallbacks are used) until `cooldown` has passed; then one probe request
//! goes through, and its outcome closes or re-opens the breaker.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;

/// Breaker settings (`[breaker]` in config).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerConfig {
    /// Consecutive failed attempts that open the breaker.
    pub failure_threshold: u32,
    /// How long an open breaker stays open before a probe, in milliseconds.
    pub cooldown_ms: u64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            cooldown_ms: 30_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// Cool-down over; one probe is in flight.
    HalfOpen,
}

/// What the breaker says about sending a request now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Send it.
    Allowed,
    /// Send it as the probe after a cool-down.
    Probe,
    /// Do not; the provider is considered down.
    Rejected,
}

#[derive(Debug)]
pub struct Breaker {
    config: BreakerConfig,
    state: Mutex<State>,
}

impl Breaker {
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock only means another thread panicked mid-update of a Copy value.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn admit(&self) -> Admission {
        let mut s = self.lock();
        match *s {
            State::Closed { .. } => Admission::Allowed,
            State::Open { until } if Instant::now() >= until => {
                *s = State::HalfOpen;
                Admission::Probe
            }
            State::Open { .. } | State::HalfOpen => Admission::Rejected,
        }
    }

    pub fn success(&self) {
        *self.lock() = State::Closed { failures: 0 };
    }

    /// Record a failed attempt; returns true when this failure opened the breaker.
    pub fn failure(&self) -> bool {
        let mut s = self.lock();
        let open = State::Open {
            until: {
                let now = Instant::now();
                now.checked_add(Duration::from_millis(self.config.cooldown_ms))
                    .unwrap_or(now + Duration::from_secs(86_400 * 365))
            },
        };
        match *s {
            State::Closed { failures } => {
                let failures = failures + 1;
                if failures >= self.config.failure_threshold.max(1) {
                    *s = open;
                    true
                } else {
                    *s = State::Closed { failures };
                    false
                }
            }
            State::HalfOpen => {
                *s = open;
                true
            }
            State::Open { .. } => false,
        }
    }

    /// Whether the breaker is currently open (for status displays).
    pub fn is_open(&self) -> bool {
        !matches!(*self.lock(), State::Closed { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_probes_and_closes() {
        let b = Breaker::new(BreakerConfig {
            failure_threshold: 2,
            cooldown_ms: 30,
        });
        assert_eq!(b.admit(), Admission::Allowed);
        assert!(!b.failure());
        assert!(b.failure());
        assert_eq!(b.admit(), Admission::Rejected);
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(b.admit(), Admission::Probe);
        assert_eq!(b.admit(), Admission::Rejected, "one probe at a time");
        assert!(b.failure(), "a failed probe re-opens");
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(b.admit(), Admission::Probe);
        b.success();
        assert_eq!(b.admit(), Admission::Allowed);
    }
}
