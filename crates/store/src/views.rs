//! Read-only queries behind the CAS screens and API: terminal search with
//! paging, counts for the dashboard, a terminal's pairing history, and a
//! filtered audit log. Search text is matched case-insensitively as a
//! substring, with `%`, `_` and `\` taken literally.

use sqlx::{AssertSqlSafe, Row};

use crate::audit::record;
use crate::pairing::request;
use crate::terminals::terminal;
use crate::{AuditRecord, PairingRequest, Serial, Store, StoreError, Terminal, TerminalState};

/// A `LIKE` pattern matching `text` anywhere, lower-cased, escaped with `\`.
fn contains_pattern(text: &str) -> String {
    let mut pattern = String::from("%");
    for c in text.trim().to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// One page of results and how many there are in all.
#[derive(Clone, Debug)]
pub struct Page<T> {
    /// The rows of this page.
    pub rows: Vec<T>,
    /// Rows matching in all.
    pub total: i64,
}

impl Store {
    /// Terminals whose serial, name or location contains `text` (all when
    /// empty), optionally in one state, ordered by serial.
    pub async fn search_terminals(
        &self,
        text: &str,
        state: Option<TerminalState>,
        offset: i64,
        limit: i64,
    ) -> Result<Page<Terminal>, StoreError> {
        let filter = TerminalFilter {
            state,
            ..TerminalFilter::default()
        };
        self.filter_terminals(text, &filter, offset, limit).await
    }

    /// A page of terminals whose serial, name or location contains
    /// `text` and that `filter` admits, by serial, with the total
    /// matching.
    pub async fn filter_terminals(
        &self,
        text: &str,
        filter: &TerminalFilter,
        offset: i64,
        limit: i64,
    ) -> Result<Page<Terminal>, StoreError> {
        let pattern = contains_pattern(text);
        let state = filter.state.map_or("", TerminalState::as_str);
        let (suspended, clone) = (
            i64::from(filter.suspended),
            i64::from(filter.suspected_clone),
        );
        let clause = "WHERE (LOWER(serial) LIKE $1 ESCAPE '\\' OR LOWER(name) LIKE $1 ESCAPE '\\' \
                      OR LOWER(location) LIKE $1 ESCAPE '\\') AND ($2 = '' OR state = $2) \
                      AND ($3 = 0 OR suspended_at IS NOT NULL) AND ($4 = 0 OR suspected_clone = 1)";
        let total: i64 = sqlx::query(AssertSqlSafe(format!(
            "SELECT COUNT(*) AS n FROM terminals {clause}"
        )))
        .bind(&pattern)
        .bind(state)
        .bind(suspended)
        .bind(clone)
        .fetch_one(&self.pool)
        .await?
        .try_get("n")?;
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {} FROM terminals {clause} ORDER BY serial LIMIT $5 OFFSET $6",
            crate::terminals::COLUMNS
        )))
        .bind(&pattern)
        .bind(state)
        .bind(suspended)
        .bind(clone)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        Ok(Page {
            rows: rows.iter().map(terminal).collect::<Result<_, _>>()?,
            total,
        })
    }

    /// How many terminals are in each state.
    pub async fn terminal_counts(&self) -> Result<Vec<(TerminalState, i64)>, StoreError> {
        let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM terminals GROUP BY state")
            .fetch_all(&self.pool)
            .await?;
        let mut counts = Vec::new();
        for state in [
            TerminalState::Registered,
            TerminalState::Paired,
            TerminalState::Unpaired,
        ] {
            let mut n = 0;
            for row in &rows {
                if row.try_get::<String, _>("state")? == state.as_str() {
                    n = row.try_get("n")?;
                }
            }
            counts.push((state, n));
        }
        Ok(counts)
    }

    /// Paired terminals not seen at the master since `cutoff` (Unix ms),
    /// never-seen first.
    pub async fn paired_terminals_not_seen_since(
        &self,
        cutoff: i64,
        limit: i64,
    ) -> Result<Vec<Terminal>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {} FROM terminals WHERE state = 'paired' AND (last_seen_at IS NULL OR last_seen_at < $1) \
             ORDER BY COALESCE(last_seen_at, 0), serial LIMIT $2",
            crate::terminals::COLUMNS
        )))
        .bind(cutoff)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(terminal).collect()
    }

    /// A terminal's pairing requests, newest first.
    pub async fn pairing_requests_for(
        &self,
        serial: &Serial,
        limit: i64,
    ) -> Result<Vec<PairingRequest>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {} FROM pairing_requests WHERE serial = $1 ORDER BY created_at DESC, id LIMIT $2",
            crate::pairing::COLUMNS
        )))
        .bind(serial.as_str())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(request).collect()
    }

    /// Audit records whose actor, action or subject contains `text` (all
    /// when empty), newest first.
    pub async fn search_audit(
        &self,
        text: &str,
        offset: i64,
        limit: i64,
    ) -> Result<Page<AuditRecord>, StoreError> {
        if text.trim().is_empty() {
            // The log is gapless from 1 to the head: no count needed, and
            // the page is a range of the primary key.
            let (head, _) = self.audit_head().await?;
            let top = head.saturating_sub(offset);
            let rows = sqlx::query(
                "SELECT seq, at, actor, action, subject, detail, prev_hash, hash FROM audit_log \
                 WHERE seq <= $1 AND seq > $2 ORDER BY seq DESC",
            )
            .bind(top)
            .bind(top.saturating_sub(limit))
            .fetch_all(&self.pool)
            .await?;
            return Ok(Page {
                rows: rows.iter().map(record).collect::<Result<_, _>>()?,
                total: head,
            });
        }
        let pattern = contains_pattern(text);
        let filter = "WHERE LOWER(actor) LIKE $1 ESCAPE '\\' OR LOWER(action) LIKE $1 ESCAPE '\\' \
                      OR LOWER(subject) LIKE $1 ESCAPE '\\'";
        let total: i64 = sqlx::query(AssertSqlSafe(format!(
            "SELECT COUNT(*) AS n FROM audit_log {filter}"
        )))
        .bind(&pattern)
        .fetch_one(&self.pool)
        .await?
        .try_get("n")?;
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT seq, at, actor, action, subject, detail, prev_hash, hash FROM audit_log {filter} \
             ORDER BY seq DESC LIMIT $2 OFFSET $3"
        )))
        .bind(&pattern)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        Ok(Page {
            rows: rows.iter().map(record).collect::<Result<_, _>>()?,
            total,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_take_wildcards_literally() {
        assert_eq!(contains_pattern(" AtM "), "%atm%");
        assert_eq!(contains_pattern("50%_\\"), "%50\\%\\_\\\\%");
    }
}

/// Which terminals a search returns beyond its text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TerminalFilter {
    /// Only this state.
    pub state: Option<TerminalState>,
    /// Only suspended terminals.
    pub suspended: bool,
    /// Only suspected clones.
    pub suspected_clone: bool,
}
