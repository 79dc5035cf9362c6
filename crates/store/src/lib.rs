//! The pairgate server's store. One interface over SQLite (a file in the
//! data directory, the default) and PostgreSQL (when several server
//! instances share the work), speaking domain verbs rather than SQL. Every
//! trust change runs in one transaction together with its audit record,
//! and the audit log is hash-chained so that an edited or deleted row is
//! detected.
//!
//! Both backends run the same SQL through sqlx's `Any` driver (`$N`
//! placeholders work on both); only the schema differs, with migrations
//! per backend in `migrations/`.

#![forbid(unsafe_code)]

mod accounts;
mod audit;
mod blocked;
mod clones;
mod cluster;
mod decisions;
mod error;
mod fleet;
mod listen;
mod manifests;
mod network;
mod operator_admin;
mod operators;
mod paired;
mod pairing;
mod proofs;
mod rekey;
mod rotations;
mod sessions;
mod step_up;
mod terminals;
mod views;
mod vpn;
mod vpn_credentials;
mod wire;

use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Connection, Executor};

pub use accounts::{MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS, RECOVERY_CODES, check_new_password};
pub use audit::{
    AuditRecord, AuditVerification, ChainVerifier, Checkpoint, CheckpointSigner, EXPORT_FORMAT,
    ExportLine, Refusal, record_hash, verify_export,
};
pub use blocked::BlockedKey;
pub use clones::{CloneAction, Heartbeat};
pub use cluster::{AttemptScope, Attempts};
pub use decisions::{Decision, DecisionWatch};
pub use error::StoreError;
pub use fleet::{Alert, AlertKind, DayActivity, FLEET_DAYS, FleetView};
pub use manifests::{ApprovalRules, Imported, ManifestRecord, Vendor};
pub use network::Network;
pub use operator_admin::AdminAction;
pub use operators::{NewOperatorCredentials, Operator, Role, SecondFactor};
pub use paired::{PairedChange, PairedWatch, Wake};
pub use pairing::{
    MAX_CODE_ATTEMPTS, Opened, PairingAttempt, PairingLimits, PairingRequest, PairingState,
    RequestFilter,
};
pub use proofs::{Changer, TrustChange};
pub use rekey::{RecordedSuccessor, RekeyRefusal, SuccessorRequest, TerminalKey};
pub use rotations::StoredRotation;
pub use sessions::{
    ApiToken, DEFAULT_TOKEN_LIFETIME, Session, SessionLimits, SessionStage, SessionStep,
};
pub use step_up::{StepUpLimits, StepUpLock};
pub use terminals::{NewTerminal, PairedRows, Serial, Terminal, TerminalState};
pub use views::{Page, TerminalFilter};
pub use vpn::AddressPool;
pub use vpn_credentials::{
    MAX_CREDENTIALS_PER_DAY as MAX_VPN_CREDENTIALS_PER_DAY, NewVpnCredential, VpnAddressing,
    VpnCredential,
};

/// Which database a store runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// Who made a change: an operator's username, or a service name such as
/// `gate` or `cli`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor(String);

impl Actor {
    /// An actor by name.
    pub fn new(name: impl Into<String>) -> Self {
        Self(name.into())
    }

    /// The name recorded in the audit log.
    pub fn name(&self) -> &str {
        &self.0
    }
}

/// A database URL, which may hold a password: never printed.
#[derive(Clone)]
pub(crate) struct SecretUrl(std::sync::Arc<str>);

impl SecretUrl {
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<database url>")
    }
}

/// The store.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    url: SecretUrl,
    /// Argon2 computations allowed at once.
    hashing: std::sync::Arc<tokio::sync::Semaphore>,
    /// When an operator's step-ups lock.
    step_up: StepUpLimits,
    /// How long new API tokens work.
    token_lifetime: Duration,
    /// Which requests are approved without a person.
    rules: ApprovalRules,
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// The PostgreSQL pool's size (SQLite's is 4); the most connections a
/// writer may find broken in a row.
const POOL_SIZE_MAX: u32 = 16;

/// Password hashes computed at once unless the server says otherwise.
const DEFAULT_HASHING: usize = 2;

/// Milliseconds since the Unix epoch.
pub(crate) fn millis(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A text column read as a typed value (`FromStr`); a value that does
/// not parse is [`StoreError::Corrupt`], named by `what`.
pub(crate) fn parsed<T: std::str::FromStr>(
    row: &sqlx::any::AnyRow,
    column: &str,
    what: impl FnOnce() -> String,
) -> Result<T, StoreError> {
    let text: String = sqlx::Row::try_get(row, column)?;
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("{} {text:?}", what())))
}

/// [`parsed`] for a column that may be NULL.
pub(crate) fn parsed_opt<T: std::str::FromStr>(
    row: &sqlx::any::AnyRow,
    column: &str,
    what: impl FnOnce() -> String,
) -> Result<Option<T>, StoreError> {
    let text: Option<String> = sqlx::Row::try_get(row, column)?;
    text.map(|t| {
        t.parse()
            .map_err(|_| StoreError::Corrupt(format!("{} {t:?}", what())))
    })
    .transpose()
}

impl Store {
    /// Opens (and migrates) the store at `url`: `sqlite:PATH` or
    /// `postgres://…`.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            return Err(StoreError::InvalidUrl(
                url.split('@').next_back().unwrap_or(url).to_owned(),
            ));
        };
        let url = match backend {
            // Create the file if missing; WAL and foreign keys per connection.
            Backend::Sqlite if !url.contains('?') => format!("{url}?mode=rwc"),
            _ => url.to_owned(),
        };
        let options = AnyConnectOptions::from_str(&url).map_err(StoreError::Connect)?;
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 4 } else { POOL_SIZE_MAX })
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        conn.execute("PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000; PRAGMA synchronous = FULL")
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(StoreError::Connect)?;
        let migrator = match backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator
            .run(&pool)
            .await
            .map_err(|e| StoreError::Migrate(e.to_string()))?;
        Ok(Self {
            pool,
            backend,
            url: SecretUrl(url.into()),
            hashing: std::sync::Arc::new(tokio::sync::Semaphore::new(DEFAULT_HASHING)),
            step_up: StepUpLimits::default(),
            token_lifetime: DEFAULT_TOKEN_LIFETIME,
            rules: ApprovalRules::default(),
        })
    }

    /// Opens the default SQLite store in a data directory
    /// (`DIR/pairgate.db`), creating the directory.
    pub async fn open_data_dir(dir: &Path) -> Result<Self, StoreError> {
        let io = |what: &str, e: std::io::Error| StoreError::Io(format!("{what}: {e}"));
        // The database holds password hashes and TOTP seeds: the directory
        // is 0700 and the file 0600 (SQLite gives -wal/-shm the same mode).
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(dir)
            .map_err(|e| io(&format!("creating {}", dir.display()), e))?;
        let path = dir.join("pairgate.db");
        let mut options = std::fs::OpenOptions::new();
        options.append(true).create(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        options
            .open(&path)
            .map_err(|e| io(&format!("creating {}", path.display()), e))?;
        // sqlx reads `?` and `#` in a sqlite: URL as its own syntax, so a
        // path holding them is refused rather than misread.
        let text = path.display().to_string();
        if text.contains('?') || text.contains('#') {
            return Err(StoreError::Invalid(format!(
                "the data directory path {text:?} contains ? or #; choose another"
            )));
        }
        Self::open(&format!("sqlite:{text}")).await
    }

    /// Starts a write transaction. SQLite's deferred transactions fail
    /// with SQLITE_BUSY when two of them upgrade to writing at once, so on
    /// SQLite a writer takes the write lock up front (`BEGIN IMMEDIATE`)
    /// and waits its turn under the busy timeout.
    ///
    /// A connection whose last transaction failed to commit or roll back
    /// (a full disk, an I/O error: SQLite may have rolled it back on its
    /// own) can still count itself inside that transaction, and then
    /// refuses every `BEGIN`. Such a connection is closed here rather than
    /// reused, so writes work again as soon as the cause is gone.
    pub(crate) async fn begin_write(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
        let mut tries = 0;
        let conn = loop {
            let mut conn = self.pool.acquire().await?;
            if conn.is_in_transaction() {
                // A rollback queued by a transaction just dropped may not
                // have run yet: a round trip lets it, then look again.
                conn.execute("SELECT 1").await?;
            }
            if !conn.is_in_transaction() {
                break conn;
            }
            tracing::warn!("closing a database connection left inside a failed transaction");
            conn.close_on_drop();
            drop(conn);
            tries += 1;
            if tries > POOL_SIZE_MAX {
                return Err(StoreError::Io(
                    "no database connection could start a transaction".into(),
                ));
            }
        };
        let begin = match self.backend {
            Backend::Sqlite => Some(sqlx::SqlStr::from_static("BEGIN IMMEDIATE")),
            Backend::Postgres => None,
        };
        Ok(sqlx::Transaction::begin(conn, begin).await?)
    }

    /// The same store computing at most `n` password hashes at once
    /// (at least one).
    pub fn with_hash_concurrency(mut self, n: usize) -> Self {
        self.hashing = std::sync::Arc::new(tokio::sync::Semaphore::new(n.max(1)));
        self
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The connection pool, for the server's own queries in tests.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }
}
