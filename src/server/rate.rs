//! Per-caller request rate: a token bucket per key (a token's `sub`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Buckets kept before full ones are dropped.
const MAX_KEYS: usize = 100_000;

/// Allows `per_second` requests a second per key on average, `burst` at once.
#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    pub fn new(per_second: f64, burst: f64) -> RateLimiter {
        RateLimiter {
            per_second,
            burst: burst.max(1.0),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes `cost` requests from `key`'s bucket; when it has too few, how
    /// long until it has them.
    pub fn take(&self, key: &str, cost: f64) -> Result<(), Duration> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_KEYS && !buckets.contains_key(key) {
            let (rate, burst) = (self.per_second, self.burst);
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * rate < burst
            });
        }
        let (tokens, at) = buckets.entry(key.to_owned()).or_insert((self.burst, now));
        *tokens =
            (*tokens + now.duration_since(*at).as_secs_f64() * self.per_second).min(self.burst);
        *at = now;
        if *tokens >= cost {
            *tokens -= cost;
            Ok(())
        } else {
            let missing = cost - *tokens;
            Err(Duration::from_secs_f64(
                missing / self.per_second.max(f64::MIN_POSITIVE),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let r = RateLimiter::new(10.0, 3.0);
        for _ in 0..3 {
            assert!(r.take("a", 1.0).is_ok());
        }
        let wait = r.take("a", 1.0).expect_err("empty");
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
        assert!(r.take("b", 1.0).is_ok(), "keys are separate");
        std::thread::sleep(Duration::from_millis(120));
        assert!(r.take("a", 1.0).is_ok(), "refilled");
        assert!(r.take("a", 5.0).is_err(), "more than the burst at once");
    }
}
