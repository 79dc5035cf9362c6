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
    /// The operator could not be authenticated (no such operator, disabled,
    /// no 2FA, wrong or replayed TOTP).
    #[error("not authorised: {0}")]
    Unauthorized(String),
    /// A second-factor code that was already used (its time step has
    /// passed); wait for the next one.
    #[error("not authorised: {0}")]
    Replayed(String),
    /// The operator's role does not allow this.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// A pairing request for a serial no operator registered; audited.
    #[error("unknown serial {0:?}: an operator must register the terminal first")]
    UnknownSerial(String),
    /// The pairing request expired; it is now marked so.
    #[error("pairing request {0} has expired")]
    Expired(String),
    /// The pairing request is no longer open.
    #[error("pairing request {id} is {state}, not open")]
    Closed {
        /// Request id.
        id: String,
        /// Its state.
        state: String,
    },
    /// The pairing request is open but the terminal has not revealed its
    /// nonce yet, so there is no code to check.
    #[error("pairing request {0} has no code yet: the terminal has not revealed its nonce")]
    NotRevealed(String),
    /// The revealed nonce does not open the commitment; the request ended.
    #[error("the revealed nonce does not match the commitment; pairing request {0} has ended")]
    RevealMismatch(String),
    /// The pairing code does not match; `remaining` attempts are left (0:
    /// the request ended).
    #[error("wrong pairing code for request {id}; {remaining} attempt(s) left")]
    WrongCode {
        /// Request id.
        id: String,
        /// Attempts left before the request ends.
        remaining: i64,
    },
    /// The terminal key is on the operators' block list; nothing was
    /// written.
    #[error("terminal key {0} is blocked by an operator")]
    Blocked(String),
    /// Too many attempts of this kind in a window; nothing was written.
    #[error("rate limited: {0}")]
    RateLimited(String),
    /// A limit was reached (open pairing requests); nothing was written.
    #[error("limit reached: {0}")]
    Limit(String),
    /// The change conflicts with the stored state.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The stored data is not what pairgate wrote.
    #[error("the database holds unexpected data: {0}")]
    Corrupt(String),
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}
