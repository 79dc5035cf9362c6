//! Login rate limits, per account and per client address: failed password
//! and second-factor attempts are counted in a sliding window, and once a
//! key is over its limit every attempt (right or wrong) is refused until
//! the oldest failure leaves the window. Pure logic with the time passed
//! in; counters are per server process.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Limits on failed logins.
#[derive(Clone, Copy, Debug)]
pub struct LoginLimits {
    /// Failures per account within the window.
    pub per_account: usize,
    /// Failures per client address within the window.
    pub per_address: usize,
    /// The window.
    pub window: Duration,
}

/// Most keys tracked at once; beyond it the stalest are dropped, so a
/// flood of made-up usernames cannot grow memory without bound.
const MAX_KEYS: usize = 100_000;

#[derive(Default)]
struct Failures {
    accounts: HashMap<String, VecDeque<Instant>>,
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

    /// `Err(wait)` when `account` or `address` is over its limit.
    pub fn check(&self, account: &str, address: IpAddr, now: Instant) -> Result<(), Duration> {
        let window = self.limits.window;
        let mut f = self.failures();
        let mut wait = Duration::ZERO;
        if let Some(times) = f.accounts.get_mut(account) {
            prune(times, now, window);
            if times.len() >= self.limits.per_account {
                wait = wait.max(retry_after(times, now, window));
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
        if f.accounts.len() >= MAX_KEYS || f.addresses.len() >= MAX_KEYS {
            f.accounts.retain(|_, t| {
                prune(t, now, window);
                !t.is_empty()
            });
            f.addresses.retain(|_, t| {
                prune(t, now, window);
                !t.is_empty()
            });
            if f.accounts.len() >= MAX_KEYS {
                f.accounts.clear();
            }
            if f.addresses.len() >= MAX_KEYS {
                f.addresses.clear();
            }
        }
        f.accounts
            .entry(account.to_owned())
            .or_default()
            .push_back(now);
        f.addresses.entry(address).or_default().push_back(now);
    }

    /// Clears an account's failures after a complete login.
    pub fn succeeded(&self, account: &str) {
        self.failures().accounts.remove(account);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: LoginLimits = LoginLimits {
        per_account: 3,
        per_address: 5,
        window: Duration::from_secs(60),
    };

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn an_account_is_limited_from_any_address() {
        let l = LoginLimiter::new(LIMITS);
        let t0 = Instant::now();
        for i in 0..3 {
            assert!(l.check("olga", ip(i), t0).is_ok());
            l.failed("olga", ip(i), t0);
        }
        let wait = l.check("olga", ip(9), t0).unwrap_err();
        assert_eq!(wait, Duration::from_secs(60));
        assert!(l.check("vera", ip(9), t0).is_ok());
        // The window slides.
        assert!(l.check("olga", ip(9), t0 + Duration::from_secs(60)).is_ok());
    }

    #[test]
    fn an_address_is_limited_across_accounts() {
        let l = LoginLimiter::new(LIMITS);
        let t0 = Instant::now();
        for i in 0..5 {
            l.failed(&format!("user{i}"), ip(1), t0);
        }
        assert!(l.check("someone", ip(1), t0).is_err());
        assert!(l.check("someone", ip(2), t0).is_ok());
        l.succeeded("user0");
        assert!(l.check("someone", ip(1), t0).is_err());
    }
}
