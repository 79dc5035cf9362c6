//! The fleet at a glance, for the CAS dashboard: pairing requests and
//! automatic approvals per day, paired terminals by when they were last
//! seen, by model and by firmware, and the alerts an operator of
//! thousands of terminals must not miss (suspected clones, repeated wrong
//! codes, unknown-serial floods, manifest-key mismatches). Aggregated in
//! SQL, so the cost does not grow with what the page shows.

use std::collections::HashMap;

use sqlx::Row;

use crate::{Store, StoreError};

const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;

/// One day of pairing activity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DayActivity {
    /// The UTC day's start (Unix milliseconds).
    pub start: i64,
    /// Pairing requests opened.
    pub requests: i64,
    /// Of those, approved by a rule.
    pub auto_approved: i64,
}

/// What an alert is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlertKind {
    /// One identity used from two places.
    SuspectedClone,
    /// Wrong pairing codes typed for one terminal, two or more in a day.
    WrongCodes,
    /// Unknown-serial attempts from one address.
    UnknownSerials,
    /// A terminal asked with a key other than its manifest's.
    ManifestMismatch,
}

impl AlertKind {
    /// A short name for people and CSS.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SuspectedClone => "suspected clone",
            Self::WrongCodes => "wrong codes",
            Self::UnknownSerials => "unknown serials",
            Self::ManifestMismatch => "manifest key mismatch",
        }
    }
}

/// One alert.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alert {
    /// What it is.
    pub kind: AlertKind,
    /// The terminal's serial, or the address for unknown serials.
    pub subject: String,
    /// How many records raised it.
    pub count: i64,
    /// The newest of them (Unix milliseconds).
    pub at: i64,
}

/// The dashboard's figures.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FleetView {
    /// The last 14 UTC days, today last, oldest first.
    pub days: Vec<DayActivity>,
    /// Paired terminals by last seen: within an hour, a day, a week,
    /// longer, never.
    pub last_seen: Vec<(&'static str, i64)>,
    /// Paired terminals by model (the manifest's, or else the one their
    /// pairing request reported), most first.
    pub models: Vec<(String, i64)>,
    /// Paired terminals by firmware, most first.
    pub firmware: Vec<(String, i64)>,
    /// Alerts, newest first.
    pub alerts: Vec<Alert>,
}

/// How many days the activity chart covers.
pub const FLEET_DAYS: i64 = 14;

impl Store {
    /// The dashboard's figures as of `now` (Unix milliseconds).
    pub async fn fleet_view(&self, now: i64) -> Result<FleetView, StoreError> {
        // Independent reads: run together (SQLite's WAL serves readers
        // at once, from the pool's connections).
        let (days, paired, alerts) = tokio::try_join!(
            self.pairing_days(now),
            self.paired_breakdown(now),
            self.alerts(now),
        )?;
        Ok(FleetView {
            days,
            last_seen: paired.last_seen,
            models: paired.models,
            firmware: paired.firmware,
            alerts,
        })
    }

    async fn pairing_days(&self, now: i64) -> Result<Vec<DayActivity>, StoreError> {
        // Whole UTC days, today's so far the last.
        let since = now - now.rem_euclid(DAY_MS) - (FLEET_DAYS - 1) * DAY_MS;
        let rows = sqlx::query(
            "SELECT (created_at - $1) / $2 AS d, COUNT(*) AS n, \
             SUM(CASE WHEN decided_by LIKE 'rule:%' AND state = 'approved' THEN 1 ELSE 0 END) AS auto \
             FROM pairing_requests WHERE created_at >= $1 GROUP BY d",
        )
        .bind(since)
        .bind(DAY_MS)
        .fetch_all(&self.pool)
        .await?;
        let mut days: Vec<DayActivity> = (0..FLEET_DAYS)
            .map(|d| DayActivity {
                start: since + d * DAY_MS,
                requests: 0,
                auto_approved: 0,
            })
            .collect();
        for row in &rows {
            let d: i64 = row.try_get("d")?;
            if let Some(day) = usize::try_from(d).ok().and_then(|d| days.get_mut(d)) {
                day.requests = row.try_get("n")?;
                day.auto_approved = row.try_get("auto")?;
            }
        }
        Ok(days)
    }

    /// Paired terminals by last seen, by model and by firmware, from one
    /// scan of the table (grouped by all three, summed here): three scans
    /// cost three times as much at 100,000 terminals.
    async fn paired_breakdown(&self, now: i64) -> Result<Breakdown, StoreError> {
        let rows = sqlx::query(
            "SELECT CASE WHEN last_seen_at IS NULL THEN 4 WHEN last_seen_at >= $1 THEN 0 \
             WHEN last_seen_at >= $2 THEN 1 WHEN last_seen_at >= $3 THEN 2 ELSE 3 END AS b, \
             model, COALESCE(firmware, '') AS f, COUNT(*) AS n FROM terminals \
             WHERE state = 'paired' GROUP BY b, model, f",
        )
        .bind(now - HOUR_MS)
        .bind(now - DAY_MS)
        .bind(now - 7 * DAY_MS)
        .fetch_all(&self.pool)
        .await?;
        let mut last_seen = vec![
            ("< 1 h", 0),
            ("< 24 h", 0),
            ("< 7 d", 0),
            ("older", 0),
            ("never", 0),
        ];
        let mut models: HashMap<String, i64> = HashMap::new();
        let mut firmware: HashMap<String, i64> = HashMap::new();
        for row in &rows {
            let n: i64 = row.try_get("n")?;
            let bucket: i64 = row.try_get("b")?;
            if let Some(slot) = usize::try_from(bucket)
                .ok()
                .and_then(|b| last_seen.get_mut(b))
            {
                slot.1 += n;
            }
            *models.entry(row.try_get("model")?).or_default() += n;
            *firmware.entry(row.try_get("f")?).or_default() += n;
        }
        Ok(Breakdown {
            last_seen,
            models: top(models),
            firmware: top(firmware),
        })
    }

    async fn alerts(&self, now: i64) -> Result<Vec<Alert>, StoreError> {
        let mut alerts = Vec::new();
        let clones = sqlx::query(
            "SELECT serial, COALESCE(suspended_at, last_seen_at, created_at) AS at FROM terminals \
             WHERE suspected_clone = 1 ORDER BY serial LIMIT 50",
        )
        .fetch_all(&self.pool)
        .await?;
        for row in &clones {
            alerts.push(Alert {
                kind: AlertKind::SuspectedClone,
                subject: row.try_get("serial")?,
                count: 1,
                at: row.try_get("at")?,
            });
        }
        for (kind, action, since, min) in [
            (AlertKind::WrongCodes, "pairing.wrong_code", now - DAY_MS, 2),
            (
                AlertKind::UnknownSerials,
                "pairing.unknown_serial",
                now - DAY_MS,
                1,
            ),
            (
                AlertKind::ManifestMismatch,
                "pairing.flag",
                now - 7 * DAY_MS,
                1,
            ),
        ] {
            let rows = sqlx::query(
                "SELECT subject, COUNT(*) AS n, MAX(at) AS last FROM audit_log \
                 WHERE action = $1 AND at >= $2 GROUP BY subject HAVING COUNT(*) >= $3 \
                 ORDER BY last DESC LIMIT 20",
            )
            .bind(action)
            .bind(since)
            .bind(min)
            .fetch_all(&self.pool)
            .await?;
            for row in &rows {
                alerts.push(Alert {
                    kind,
                    subject: row.try_get("subject")?,
                    count: row.try_get("n")?,
                    at: row.try_get("last")?,
                });
            }
        }
        alerts.sort_by_key(|a| std::cmp::Reverse(a.at));
        Ok(alerts)
    }
}

/// Paired terminals three ways.
struct Breakdown {
    last_seen: Vec<(&'static str, i64)>,
    models: Vec<(String, i64)>,
    firmware: Vec<(String, i64)>,
}

/// The eight largest counts, largest first (ties by name).
fn top(counts: HashMap<String, i64>) -> Vec<(String, i64)> {
    let mut all: Vec<(String, i64)> = counts.into_iter().collect();
    all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    all.truncate(8);
    all
}
