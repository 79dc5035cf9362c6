//! Login rate limits. Failed password, second-factor and password-change
//! attempts are counted in a sliding window per (account, client address)
//! and per client address. A pair waits a doubling delay after its second
//! failure and is refused once over its limit, until the oldest failure
//! leaves the window; an address over its limit is refused for every
//! account. An attacker elsewhere therefore cannot lock an admin out: the
//! admin's own address keeps its own count. (The second factor has its own
//! lock per operator in the store, shared by every instance.) Pure logic
//! with the time passed in; these counters are this process's, and
//! [`super::Logins`] adds the counts every instance shares in the store.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Limits on failed logins.
#[derive(Clone, Copy, Debug)]
pub struct LoginLimits {
    /// Failures per (account, address) within the window.
    pub per_account: usize,
    /// Failures per client address within the window, all accounts.
    pub per_address: usize,
    /// The window.
    pub window: Duration,
}

/// Failures a pair may have before each attempt waits.
const FREE_FAILURES: usize = 2;

/// Most keys tracked at once; beyond it the stalest are dropped, so a
/// flood of made-up usernames cannot grow memory without bound.
const MAX_KEYS: usize = 100_000;

#[derive(Default)]
struct Failures {
    pairs: HashMap<(String, IpAddr), VecDeque<Instant>>,
    addresses: HashMap<IpAddr, VecDeque<Instant>>,
}

/// Counts failed logins.
pub struct LoginLimiter {
    limits: LoginLimits,
    failures: Mutex<Failures>,
}

fn prune(times: &mut VecDeque<Instant>, now: Instant, window: Duration) {
    while times
        .front()
        .is_some_and(|t| now.saturating_duration_since(*t) >= window)
    {
        times.pop_front();
    }
}

/// When a full key may try again.
fn retry_after(times: &VecDeque<Instant>, now: Instant, window: Duration) -> Duration {
    times.front().map_or(Duration::ZERO, |t| {
        window.saturating_sub(now.saturating_duration_since(*t))
    })
}

/// The wait a pair with `times` owes before its next attempt: none for
/// the first [`FREE_FAILURES`], then 1 s, 2 s, 4 s … after the last one.
fn backoff(times: &VecDeque<Instant>, now: Instant, window: Duration) -> Duration {
    let Some(extra) = times.len().checked_sub(FREE_FAILURES + 1) else {
        return Duration::ZERO;
    };
    let Some(last) = times.back() else {
        return Duration::ZERO;
    };
    let exponent = u32::try_from(extra.min(16)).unwrap_or(16);
    let delay = Duration::from_secs(1u64 << exponent).min(window);
    delay.saturating_sub(now.saturating_duration_since(*last))
}

fn trim<K: std::hash::Hash + Eq>(
    map: &mut HashMap<K, VecDeque<Instant>>,
    now: Instant,
    window: Duration,
) {
    if map.len() >= MAX_KEYS {
        map.retain(|_, t| {
            prune(t, now, window);
            !t.is_empty()
        });
        if map.len() >= MAX_KEYS {
            map.clear();
        }
    }
}

impl LoginLimiter {
    /// A limiter with `limits`.
    pub fn new(limits: LoginLimits) -> Self {
        Self {
            limits,
            failures: Mutex::new(Failures::default()),
        }
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, Failures> {
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `Err(wait)` when `account` from `address`, or `address` itself,
    /// must wait before trying again.
    pub fn check(&self, account: &str, address: IpAddr, now: Instant) -> Result<(), Duration> {
        let window = self.limits.window;
        let mut f = self.failures();
        let mut wait = Duration::ZERO;
        if let Some(times) = f.pairs.get_mut(&(account.to_owned(), address)) {
            prune(times, now, window);
            if times.len() >= self.limits.per_account {
                wait = wait.max(retry_after(times, now, window));
            } else {
                wait = wait.max(backoff(times, now, window));
            }
        }
        if let Some(times) = f.addresses.get_mut(&address) {
            prune(times, now, window);
            if times.len() >= self.limits.per_address {
                wait = wait.max(retry_after(times, now, window));
            }
        }
        if wait.is_zero() { Ok(()) } else { Err(wait) }
    }

    /// Counts a failed attempt.
    pub fn failed(&self, account: &str, address: IpAddr, now: Instant) {
        let window = self.limits.window;
        let mut f = self.failures();
        trim(&mut f.pairs, now, window);
        trim(&mut f.addresses, now, window);
        f.pairs
            .entry((account.to_owned(), address))
            .or_default()
            .push_back(now);
        f.addresses.entry(address).or_default().push_back(now);
    }

    /// Clears the pair's failures after a complete login (the address
    /// keeps its count).
    pub fn succeeded(&self, account: &str, address: IpAddr) {
        self.failures().pairs.remove(&(account.to_owned(), address));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: LoginLimits = LoginLimits {
        per_account: 5,
        per_address: 8,
        window: Duration::from_secs(600),
    };

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn a_pair_backs_off_then_locks_and_others_still_sign_in() {
        let l = LoginLimiter::new(LIMITS);
        let t0 = Instant::now();
        let mut t = t0;
        // Two free failures, then 1 s, then 2 s before the next attempt.
        for _ in 0..2 {
            assert_eq!(l.check("admin", ip(66), t), Ok(()));
            l.failed("admin", ip(66), t);
        }
        assert_eq!(l.check("admin", ip(66), t), Ok(()));
        for wait in [1, 2] {
            l.failed("admin", ip(66), t);
            assert_eq!(l.check("admin", ip(66), t), Err(s(wait)));
            t += s(wait);
            assert_eq!(l.check("admin", ip(66), t), Ok(()));
        }
        l.failed("admin", ip(66), t);
        // Five failures: locked until the first leaves the window.
        assert_eq!(l.check("admin", ip(66), t), Err(s(600 - 3)));
        // The admin at their own address is not affected.
        assert_eq!(l.check("admin", ip(1), t), Ok(()));
        // The window slides.
        assert_eq!(l.check("admin", ip(66), t0 + s(600)), Ok(()));
    }

    #[test]
    fn an_address_is_limited_across_accounts() {
        let l = LoginLimiter::new(LIMITS);
        let t0 = Instant::now();
        for i in 0..8 {
            l.failed(&format!("user{i}"), ip(1), t0);
        }
        assert!(l.check("someone", ip(1), t0).is_err());
        assert!(l.check("someone", ip(2), t0).is_ok());
        l.succeeded("user0", ip(1));
        assert!(l.check("someone", ip(1), t0).is_err());
    }

    #[test]
    fn success_clears_the_pair() {
        let l = LoginLimiter::new(LIMITS);
        let t0 = Instant::now();
        for _ in 0..3 {
            l.failed("olga", ip(3), t0);
        }
        assert!(l.check("olga", ip(3), t0).is_err());
        l.succeeded("olga", ip(3));
        assert_eq!(l.check("olga", ip(3), t0), Ok(()));
    }
}
