//! The pairing verbs that read or sweep rather than decide: a request by
//! id, the newest requests, requests filtered by status with paging, the
//! expiry sweep and the purge of closed requests past their retention.

use std::time::{Duration, SystemTime};

use sqlx::{AssertSqlSafe, Row};

use super::{PairingRequest, check_request_id, expire_if_due, request};
use crate::views::Page;
use crate::{Store, StoreError, millis};

/// The stored states behind a status the protocol shows (`pending` is
/// two stored states, `rejected` two as well).
fn stored_states(status: &str) -> Option<[&'static str; 2]> {
    Some(match status {
        "pending" => ["awaiting_reveal", "pending"],
        "approved" => ["approved", "approved"],
        "rejected" => ["rejected", "failed"],
        "expired" => ["expired", "expired"],
        "superseded" => ["superseded", "superseded"],
        _ => return None,
    })
}

impl Store {
    /// Marks every open request past its expiry as expired (audited);
    /// returns how many.
    pub async fn expire_pairing_requests(&self, now: SystemTime) -> Result<u64, StoreError> {
        let _signal = self.signal_decisions();
        let at = millis(now);
        let mut tx = self.begin_write().await?;
        let rows = sqlx::query(concat!(
            "SELECT ",
            request_columns!(),
            " FROM pairing_requests WHERE state IN ('awaiting_reveal', 'pending') AND expires_at <= $1"
        ))
        .bind(at)
        .fetch_all(&mut *tx)
        .await?;
        let mut expired = 0;
        for row in &rows {
            if expire_if_due(&mut tx, &request(row)?, at).await? {
                expired += 1;
            }
        }
        tx.commit().await?;
        Ok(expired)
    }

    /// Deletes the requests closed more than `retention` before `now`,
    /// and the certificates they hold; their audit records stay. Open
    /// requests stay, and so do approved ones (an operator made each, so
    /// no outside client can grow them). Returns how many went.
    pub async fn purge_closed_pairing_requests(
        &self,
        now: SystemTime,
        retention: Duration,
    ) -> Result<u64, StoreError> {
        let before =
            millis(now).saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "DELETE FROM pairing_requests WHERE state NOT IN ('awaiting_reveal', 'pending', 'approved') \
             AND COALESCE(decided_at, expires_at) < $1",
        )
        .bind(before)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(done)
    }

    /// A request by id.
    pub async fn pairing_request(&self, id: &str) -> Result<Option<PairingRequest>, StoreError> {
        if check_request_id(id).is_err() {
            return Ok(None);
        }
        let row = sqlx::query(concat!(
            "SELECT ",
            request_columns!(),
            " FROM pairing_requests WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(request).transpose()
    }

    /// The newest `limit` requests, or only the open ones.
    pub async fn pairing_requests(
        &self,
        open_only: bool,
        limit: i64,
    ) -> Result<Vec<PairingRequest>, StoreError> {
        let rows = if open_only {
            sqlx::query(concat!(
                "SELECT ",
                request_columns!(),
                " FROM pairing_requests WHERE state IN ('awaiting_reveal', 'pending') ORDER BY created_at DESC, id LIMIT $1"
            ))
        } else {
            sqlx::query(concat!(
                "SELECT ",
                request_columns!(),
                " FROM pairing_requests ORDER BY created_at DESC, id LIMIT $1"
            ))
        }
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(request).collect()
    }

    /// A page of requests in one protocol status (empty: all), newest
    /// first, with the total matching.
    pub async fn search_pairing_requests(
        &self,
        status: &str,
        offset: i64,
        limit: i64,
    ) -> Result<Page<PairingRequest>, StoreError> {
        let filter = RequestFilter {
            status: status.to_owned(),
            ..RequestFilter::default()
        };
        self.filter_pairing_requests(&filter, offset, limit).await
    }

    /// A page of requests matching `filter`, newest first, with the total
    /// matching. The filters are in the query, so a page holds `limit`
    /// matching requests.
    pub async fn filter_pairing_requests(
        &self,
        filter: &RequestFilter,
        offset: i64,
        limit: i64,
    ) -> Result<Page<PairingRequest>, StoreError> {
        let states = match filter.status.as_str() {
            "" => ["", ""],
            other => stored_states(other).ok_or_else(|| {
                StoreError::Invalid(format!(
                    "unknown status {other:?}: use pending, approved, rejected, expired or superseded"
                ))
            })?,
        };
        const WHERE: &str = " FROM pairing_requests WHERE ($1 = '' OR state IN ($1, $2)) \
             AND ($3 = '' OR substr(serial, 1, length($3)) = $3) AND ($4 = '' OR model = $4) \
             AND created_at <= $5 AND ($6 < 0 OR flagged = $6)";
        let flagged = filter.flagged.map_or(-1, i64::from);
        let created_before = filter.created_before.unwrap_or(i64::MAX);
        let total: i64 = sqlx::query(AssertSqlSafe(format!("SELECT COUNT(*) AS n{WHERE}")))
            .bind(states[0])
            .bind(states[1])
            .bind(&filter.serial_prefix)
            .bind(&filter.model)
            .bind(created_before)
            .bind(flagged)
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {}{WHERE} ORDER BY created_at DESC, id LIMIT $7 OFFSET $8",
            super::COLUMNS
        )))
        .bind(states[0])
        .bind(states[1])
        .bind(&filter.serial_prefix)
        .bind(&filter.model)
        .bind(created_before)
        .bind(flagged)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        Ok(Page {
            rows: rows.iter().map(request).collect::<Result<_, _>>()?,
            total,
        })
    }
}

/// Which pairing requests a search returns; empty fields match all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestFilter {
    /// Protocol status: pending, approved, rejected, expired, superseded.
    pub status: String,
    /// Serials starting with this.
    pub serial_prefix: String,
    /// The model the terminal reported.
    pub model: String,
    /// Opened at or before this time (Unix milliseconds): older requests.
    pub created_before: Option<i64>,
    /// Flagged (or not) for an operator's attention.
    pub flagged: Option<bool>,
}
