//! The one clock pairgate's services read. Everything that decides by
//! time (expiry, lifetimes, TOTP steps, rate-limit windows, certificate
//! validity) asks a [`Clock`] handed to it, never the system directly, so
//! a test can start a server on a [`Clock::manual`] and move it forward
//! instead of sleeping.
//!
//! Waiting itself (a long poll's deadline, a task's period) stays on the
//! runtime's timer: that is about how long to hold a connection, not about
//! what time it is.

#![forbid(unsafe_code)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// Wall-clock and monotonic time, from the system or set by hand.
#[derive(Clone, Debug)]
pub struct Clock(Arc<Source>);

#[derive(Debug)]
enum Source {
    System,
    Manual {
        /// Wall-clock time at `base`.
        start: SystemTime,
        /// The real instant the clock was made.
        base: Instant,
        /// How far it was moved forward.
        offset: Mutex<Duration>,
    },
}

/// Two clocks are equal when they are the same clock (every system clock
/// is the same clock).
impl PartialEq for Clock {
    fn eq(&self, other: &Self) -> bool {
        matches!((&*self.0, &*other.0), (Source::System, Source::System))
            || Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Clock {}

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

impl Clock {
    /// The system's clock.
    pub fn system() -> Self {
        Self(Arc::new(Source::System))
    }

    /// A clock standing at `start` until [`Clock::advance`] moves it.
    pub fn manual(start: SystemTime) -> Self {
        Self(Arc::new(Source::Manual {
            start,
            base: Instant::now(),
            offset: Mutex::new(Duration::ZERO),
        }))
    }

    fn offset(offset: &Mutex<Duration>) -> Duration {
        *offset.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wall-clock time.
    pub fn now(&self) -> SystemTime {
        match &*self.0 {
            Source::System => SystemTime::now(),
            Source::Manual { start, offset, .. } => *start + Self::offset(offset),
        }
    }

    /// Monotonic time, for windows and lifetimes.
    pub fn instant(&self) -> Instant {
        match &*self.0 {
            Source::System => Instant::now(),
            Source::Manual { base, offset, .. } => *base + Self::offset(offset),
        }
    }

    /// Moves a manual clock forward (both readings alike); the system
    /// clock cannot be moved and ignores it. Every copy of the clock sees
    /// the move.
    pub fn advance(&self, by: Duration) {
        if let Source::Manual { offset, .. } = &*self.0 {
            let mut o = offset.lock().unwrap_or_else(|p| p.into_inner());
            *o += by;
        }
    }

    /// Whether this is a manual clock.
    pub fn is_manual(&self) -> bool {
        matches!(&*self.0, Source::Manual { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told_and_for_every_copy() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let clock = Clock::manual(start);
        let copy = clock.clone();
        let i0 = clock.instant();
        assert_eq!(clock.now(), start);
        copy.advance(Duration::from_secs(90));
        assert_eq!(clock.now(), start + Duration::from_secs(90));
        assert_eq!(clock.instant() - i0, Duration::from_secs(90));
        let system = Clock::system();
        let before = SystemTime::now();
        system.advance(Duration::from_secs(3600));
        assert!(system.now() >= before && system.now() < before + Duration::from_secs(60));
        assert!(!system.is_manual() && clock.is_manual());
    }
}
