//! Database helpers, behind the `db` feature so that pure crates' tests
//! do not link sqlx: a fresh PostgreSQL database per test, and the rogue
//! writer's audit forgery.

/// A fresh, empty PostgreSQL database in the throwaway cluster that
/// `scripts/test` starts (`PAIRGATE_TEST_DATABASE_URL`); returns its URL.
/// Each test gets its own, so tests run in parallel without sharing rows.
pub async fn fresh_postgres_database() -> String {
    use sqlx::Connection;
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let admin = std::env::var("PAIRGATE_TEST_DATABASE_URL").expect(
        "PAIRGATE_TEST_DATABASE_URL is not set: run the tests through scripts/test, which starts PostgreSQL",
    );
    sqlx::any::install_default_drivers();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let name = format!(
        "t_{}_{}_{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let mut conn = sqlx::AnyConnection::connect(&admin)
        .await
        .expect("connecting to the test PostgreSQL");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("creating a test database");
    let _ = conn.close().await;
    let (base, _) = admin
        .rsplit_once('/')
        .expect("PAIRGATE_TEST_DATABASE_URL ends with /DATABASE");
    format!("{base}/{name}")
}

/// One audit row's fields, as [`forge_audit_record`] hands them to the
/// hash function.
pub struct AuditFields {
    /// Sequence number.
    pub seq: i64,
    /// Unix ms.
    pub at: i64,
    /// Actor.
    pub actor: String,
    /// Action.
    pub action: String,
    /// Subject.
    pub subject: String,
    /// Detail (JSON text).
    pub detail: String,
}

/// What a rogue database writer does: sets record `seq`'s actor to
/// `mallory`, then recomputes every hash from there on (and the head) with
/// `hash(fields, prev)`, so the chain alone looks intact.
pub async fn forge_audit_record(
    pool: &sqlx::AnyPool,
    seq: i64,
    hash: impl Fn(&AuditFields, &str) -> String,
) {
    use sqlx::Row;
    sqlx::query("UPDATE audit_log SET actor = 'mallory' WHERE seq = $1")
        .bind(seq)
        .execute(pool)
        .await
        .expect("editing the record");
    let mut prev: String = sqlx::query("SELECT prev_hash FROM audit_log WHERE seq = $1")
        .bind(seq)
        .fetch_one(pool)
        .await
        .expect("reading the record")
        .get("prev_hash");
    let rows = sqlx::query(
        "SELECT seq, at, actor, action, subject, detail FROM audit_log WHERE seq >= $1 ORDER BY seq",
    )
    .bind(seq)
    .fetch_all(pool)
    .await
    .expect("reading the chain");
    for row in rows {
        let fields = AuditFields {
            seq: row.get("seq"),
            at: row.get("at"),
            actor: row.get("actor"),
            action: row.get("action"),
            subject: row.get("subject"),
            detail: row.get("detail"),
        };
        let next = hash(&fields, &prev);
        sqlx::query("UPDATE audit_log SET prev_hash = $1, hash = $2 WHERE seq = $3")
            .bind(&prev)
            .bind(&next)
            .bind(fields.seq)
            .execute(pool)
            .await
            .expect("rewriting a hash");
        prev = next;
    }
    sqlx::query("UPDATE audit_head SET hash = $1 WHERE id = 1")
        .bind(&prev)
        .execute(pool)
        .await
        .expect("rewriting the head");
}
