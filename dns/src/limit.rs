//! Per-source rate limiting: a token bucket per querying address, so one sandbox's flood
//! cannot take the server from the others. The table of sources is bounded.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// At most this many sources are tracked; when full, the idle ones are forgotten.
const MAX_SOURCES: usize = 65_536;

pub struct Limiter {
    /// Queries per second per source; 0: unlimited.
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl Limiter {
    /// `rate` queries a second per source, bursts of twice that; 0 limits nothing.
    pub fn new(rate: u32) -> Limiter {
        Limiter {
            rate: rate as f64,
            burst: 2.0 * rate as f64,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a query from `src` now is within its rate (and takes a token if so).
    pub fn allow(&self, src: IpAddr) -> bool {
        self.allow_at(src, Instant::now())
    }

    fn allow_at(&self, src: IpAddr, now: Instant) -> bool {
        if self.rate == 0.0 {
            return true;
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_SOURCES && !buckets.contains_key(&src) {
            // Full buckets are the same as none: forget them.
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, (t, at)| *t + rate * now.duration_since(*at).as_secs_f64() < burst);
        }
        let (tokens, at) = buckets.entry(src).or_insert((self.burst, now));
        *tokens = (*tokens + self.rate * now.duration_since(*at).as_secs_f64()).min(self.burst);
        *at = now;
        if *tokens < 1.0 {
            return false;
        }
        *tokens -= 1.0;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_flood_is_cut_at_the_burst_and_refilled_at_the_rate() {
        let l = Limiter::new(100);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.2".parse().unwrap(), "10.0.0.3".parse().unwrap());
        let t0 = Instant::now();
        let passed = (0..1000).filter(|_| l.allow_at(a, t0)).count();
        assert_eq!(passed, 200);
        // Another source is not held back by the first's flood.
        assert!(l.allow_at(b, t0));
        // A tenth of a second later, ten more.
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!((0..100).filter(|_| l.allow_at(a, t1)).count(), 10);
        assert!((0..10_000).all(|_| Limiter::new(0).allow(a)));
    }
}
