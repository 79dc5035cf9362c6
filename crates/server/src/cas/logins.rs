//! CAS login limits across a cluster: [`Logins`] pairs this instance's
//! [`LoginLimiter`] (the doubling wait after each failure) with counters
//! in the store that every instance shares, so N instances allow no more
//! failed sign-ins per account and address, or per address, than one.
//! When the store cannot be asked, sign-ins wait (closed, not open).

use std::net::IpAddr;
use std::time::Duration;

use pairgate_clock::Clock;
use pairgate_store::{AttemptScope, Store};

use super::{LoginLimiter, LoginLimits};

/// The longest account name kept in a counter's subject.
const SUBJECT_NAME_CHARS: usize = 100;

/// How long a sign-in waits when the store cannot count.
const STORE_DOWN_WAIT: Duration = Duration::from_secs(5);

/// Failed sign-ins, counted here and in the store.
pub struct Logins {
    local: LoginLimiter,
    limits: LoginLimits,
    store: Store,
    clock: Clock,
}

/// The counter subject of `account` at `address`: the address first (it
/// holds no `/`), so no two pairs share one.
fn pair(account: &str, address: IpAddr) -> String {
    let name: String = account.chars().take(SUBJECT_NAME_CHARS).collect();
    format!("{address}/{name}")
}

impl Logins {
    /// Limits `limits` over `store`'s shared counters.
    pub fn new(limits: LoginLimits, store: Store, clock: Clock) -> Self {
        Self {
            local: LoginLimiter::new(limits),
            limits,
            store,
            clock,
        }
    }

    /// `Err(wait)` when `account` from `address`, or `address` itself,
    /// must wait before trying again, here or by the cluster's counts.
    pub async fn check(&self, account: &str, address: IpAddr) -> Result<(), Duration> {
        self.local.check(account, address, self.clock.instant())?;
        let now = self.clock.now();
        let window = self.limits.window;
        let limits = [
            (
                AttemptScope::LoginAccountAddress,
                pair(account, address),
                self.limits.per_account,
            ),
            (
                AttemptScope::LoginAddress,
                address.to_string(),
                self.limits.per_address,
            ),
        ];
        for (scope, subject, limit) in limits {
            match self.store.attempts(scope, &subject, window, now).await {
                Ok(a) if a.count >= u64::try_from(limit).unwrap_or(u64::MAX) => {
                    let wait = a.resets_at.duration_since(now).unwrap_or_default();
                    return Err(wait.max(Duration::from_secs(1)));
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "reading the shared login counters failed");
                    return Err(STORE_DOWN_WAIT);
                }
            }
        }
        Ok(())
    }

    /// Counts a failed attempt here and in the store.
    pub async fn failed(&self, account: &str, address: IpAddr) {
        self.local.failed(account, address, self.clock.instant());
        let now = self.clock.now();
        for (scope, subject) in [
            (AttemptScope::LoginAccountAddress, pair(account, address)),
            (AttemptScope::LoginAddress, address.to_string()),
        ] {
            let counted = self
                .store
                .count_attempt(scope, &subject, self.limits.window, now)
                .await;
            if let Err(e) = counted {
                tracing::warn!(error = %e, "counting a failed sign-in in the store failed");
            }
        }
    }

    /// Clears the pair's failures after a complete login, here and in the
    /// store (the address keeps its count).
    pub async fn succeeded(&self, account: &str, address: IpAddr) {
        self.local.succeeded(account, address);
        let cleared = self
            .store
            .clear_attempts(AttemptScope::LoginAccountAddress, &pair(account, address))
            .await;
        if let Err(e) = cleared {
            tracing::warn!(error = %e, "clearing the shared login counter failed");
        }
    }
}
