//! Store errors: each either a refusal a person can act on (stable kinds
//! the web layer maps to HTTP statuses) or a database failure, which is
//! never turned into "not found".

/// A store operation failed; the transaction was rolled back.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database URL is neither `sqlite:` nor `postgres://`.
    #[error("unsupported database URL (use sqlite:PATH or postgres://…): {0}")]
    InvalidUrl(String),
    /// Could not connect.
    #[error("connecting to the database: {0}")]
    Connect(#[source] sqlx::Error),
    /// Migrations failed.
    #[error("migrating the database: {0}")]
    Migrate(String),
    /// A file-system error around the database.
    #[error("{0}")]
    Io(String),
    /// Input that breaks a rule; nothing was written.
    #[error("{0}")]
    Invalid(String),
    /// The thing does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// It exists already.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// The stored data is not what pairgate wrote.
    #[error("the database holds unexpected data: {0}")]
    Corrupt(String),
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}
