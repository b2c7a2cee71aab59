//! Time as an input: the store stamps events and leases with the [`Clock`]
//! it is given, and the rollout service measures timeouts, bake times,
//! rates and remediation cooldowns on it, so tests step time instead of
//! sleeping ([`SteppedClock`], shared by both); servers run on the system's
//! ([`SystemClock`]).

use std::fmt::Debug;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use super::{Micros, now_micros};

/// Now, in microseconds since the Unix epoch.
pub trait Clock: Send + Sync + Debug {
    fn now(&self) -> Micros;
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Micros {
        now_micros()
    }
}

/// The system's clock moved on by hand: what a test steps. It starts at the
/// system's time (records the store writes keep their own times, which
/// stay comparable) and only ever moves forward.
#[derive(Debug, Default)]
pub struct SteppedClock {
    ahead: AtomicI64,
}

impl SteppedClock {
    pub fn new() -> SteppedClock {
        SteppedClock::default()
    }

    /// Moves the clock `by` forward.
    pub fn advance(&self, by: Duration) {
        let by = i64::try_from(by.as_micros()).unwrap_or(i64::MAX);
        self.ahead.fetch_add(by, Ordering::AcqRel);
    }
}

impl Clock for SteppedClock {
    fn now(&self) -> Micros {
        now_micros().saturating_add(self.ahead.load(Ordering::Acquire))
    }
}
