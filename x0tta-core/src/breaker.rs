//! The circuit breaker: a plan that keeps failing for the same trouble is not retried blindly.
//!
//! Sans-I/O: time comes in as an argument, so tests drive it without sleeping.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::{AnomalyKind, BreakerPolicy, Subject};

/// Most (template, kind, subject) keys tracked; the least recently used is forgotten first.
pub const MAX_BREAKER_KEYS: usize = 1024;

/// What a breaker key is: a template applied to one trouble.
pub type BreakerKey = (String, AnomalyKind, Subject);

/// Whether a plan may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerVerdict {
    /// Run it.
    Closed,
    /// Do not run it; escalate instead. Reopens for a trial after `retry_in`.
    Open {
        /// Time until a trial run is allowed.
        retry_in: Duration,
    },
}

#[derive(Debug, Default)]
struct Entry {
    failures: VecDeque<Instant>,
    open_until: Option<Instant>,
    last_used: Option<Instant>,
}

/// Counts failures per key within a window and opens after `max_failures`.
///
/// ```
/// use std::time::{Duration, Instant};
/// use x0tta_core::{CircuitBreaker, BreakerPolicy, BreakerVerdict, AnomalyKind, Subject};
/// let policy = BreakerPolicy { max_failures: 2, window: Duration::from_secs(60), cooldown: Duration::from_secs(30) };
/// let mut b = CircuitBreaker::default();
/// let key = ("restart".to_string(), AnomalyKind::ServiceDown, Subject::Service("web".into()));
/// let t0 = Instant::now();
/// b.record(&key, false, t0, &policy);
/// assert_eq!(b.check(&key, t0, &policy), BreakerVerdict::Closed);
/// b.record(&key, false, t0, &policy);
/// assert!(matches!(b.check(&key, t0, &policy), BreakerVerdict::Open { .. }));
/// assert_eq!(b.check(&key, t0 + Duration::from_secs(31), &policy), BreakerVerdict::Closed);
/// ```
#[derive(Debug, Default)]
pub struct CircuitBreaker {
    entries: HashMap<BreakerKey, Entry>,
}

impl CircuitBreaker {
    /// Whether the plan for `key` may run at `now`.
    pub fn check(
        &mut self,
        key: &BreakerKey,
        now: Instant,
        policy: &BreakerPolicy,
    ) -> BreakerVerdict {
        let Some(e) = self.entries.get_mut(key) else {
            return BreakerVerdict::Closed;
        };
        e.last_used = Some(now);
        match e.open_until {
            Some(until) if now < until => BreakerVerdict::Open {
                retry_in: until - now,
            },
            Some(_) => {
                // Half-open: allow one trial; its outcome decides.
                e.open_until = None;
                e.failures
                    .retain(|t| now.duration_since(*t) <= policy.window);
                BreakerVerdict::Closed
            }
            None => BreakerVerdict::Closed,
        }
    }

    /// Records an execution outcome for `key` at `now`.
    pub fn record(
        &mut self,
        key: &BreakerKey,
        success: bool,
        now: Instant,
        policy: &BreakerPolicy,
    ) {
        if success {
            self.entries.remove(key);
            return;
        }
        if !self.entries.contains_key(key)
            && self.entries.len() >= MAX_BREAKER_KEYS
            && let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone())
        {
            self.entries.remove(&oldest);
        }
        let e = self.entries.entry(key.clone()).or_default();
        e.last_used = Some(now);
        e.failures
            .retain(|t| now.duration_since(*t) <= policy.window);
        e.failures.push_back(now);
        while e.failures.len() > policy.max_failures as usize {
            e.failures.pop_front();
        }
        if e.failures.len() >= policy.max_failures as usize {
            // Policy validation caps the cooldown; saturate anyway rather than panic.
            e.open_until = Some(
                now.checked_add(policy.cooldown)
                    .unwrap_or(now + Duration::from_secs(86_400)),
            );
        }
    }

    /// Keys tracked.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_outside_the_window_do_not_count() {
        let p = BreakerPolicy {
            max_failures: 2,
            window: Duration::from_secs(10),
            cooldown: Duration::from_secs(5),
        };
        let mut b = CircuitBreaker::default();
        let k = ("p".to_string(), AnomalyKind::CpuOverload, Subject::Host);
        let t0 = Instant::now();
        b.record(&k, false, t0, &p);
        b.record(&k, false, t0 + Duration::from_secs(11), &p);
        assert_eq!(
            b.check(&k, t0 + Duration::from_secs(11), &p),
            BreakerVerdict::Closed
        );
        b.record(&k, true, t0 + Duration::from_secs(12), &p);
        assert!(b.is_empty());
    }

    #[test]
    fn key_count_is_bounded() {
        let p = BreakerPolicy::default();
        let mut b = CircuitBreaker::default();
        let t0 = Instant::now();
        for i in 0..(MAX_BREAKER_KEYS + 10) {
            let k = (format!("p{i}"), AnomalyKind::CpuOverload, Subject::Host);
            b.record(&k, false, t0 + Duration::from_millis(i as u64), &p);
        }
        assert_eq!(b.len(), MAX_BREAKER_KEYS);
    }
}
