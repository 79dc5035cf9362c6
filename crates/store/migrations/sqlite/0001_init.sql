-- pairgate schema v1 (sqlite). Times are Unix milliseconds (BIGINT), bytes
-- are hex text where they travel on the wire (fingerprints, nonces). Flags
-- are BIGINT 0/1: sqlx's Any driver reads no SQLite booleans.

CREATE TABLE terminals (
    id                 INTEGER PRIMARY KEY,
    serial             TEXT NOT NULL UNIQUE,
    name               TEXT NOT NULL DEFAULT '',
    location           TEXT NOT NULL DEFAULT '',
    contact_name       TEXT NOT NULL DEFAULT '',
    contact_phone      TEXT NOT NULL DEFAULT '',
    state              TEXT NOT NULL CHECK (state IN ('registered', 'paired', 'unpaired')),
    paired_fingerprint TEXT UNIQUE,
    paired_at          BIGINT,
    paired_by          TEXT,
    last_seen_at       BIGINT,
    last_seen_address  TEXT,
    firmware           TEXT,
    vpn_profile        TEXT NOT NULL DEFAULT '',
    created_at         BIGINT NOT NULL
);

CREATE TABLE operators (
    id                   INTEGER PRIMARY KEY,
    username             TEXT NOT NULL UNIQUE,
    password_hash        TEXT NOT NULL,
    role                 TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
    totp_secret          TEXT,
    totp_last_step       BIGINT,
    must_change_password BIGINT NOT NULL DEFAULT 1 CHECK (must_change_password IN (0, 1)),
    disabled             BIGINT NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    created_at           BIGINT NOT NULL
);

CREATE TABLE pairing_requests (
    id              TEXT PRIMARY KEY,
    serial          TEXT NOT NULL REFERENCES terminals (serial),
    fingerprint     TEXT NOT NULL,
    certificate     BLOB NOT NULL,
    remote_address  TEXT NOT NULL,
    model           TEXT NOT NULL DEFAULT '',
    firmware        TEXT NOT NULL DEFAULT '',
    commitment      TEXT NOT NULL,
    terminal_nonce  TEXT,
    server_nonce    TEXT NOT NULL,
    server_pin      TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('awaiting_reveal', 'pending', 'approved', 'rejected', 'expired', 'superseded', 'failed')),
    flagged         BIGINT NOT NULL DEFAULT 0 CHECK (flagged IN (0, 1)),
    supersedes      TEXT,
    failed_attempts BIGINT NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    decided_at      BIGINT,
    decided_by      TEXT
);
CREATE INDEX pairing_requests_serial ON pairing_requests (serial, state);
CREATE INDEX pairing_requests_fingerprint ON pairing_requests (fingerprint);
CREATE INDEX pairing_requests_open ON pairing_requests (state, expires_at);

-- Append-only, hash-chained: hash = SHA-256 over the row and the previous
-- row's hash. audit_head holds the chain's tip; updating it first
-- serialises appends on both backends.
CREATE TABLE audit_log (
    seq       BIGINT PRIMARY KEY,
    at        BIGINT NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    subject   TEXT NOT NULL,
    detail    TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);
CREATE TABLE audit_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

-- Bumped by every change to the paired set; SQLite servers poll it.
CREATE TABLE paired_generation (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    generation BIGINT NOT NULL
);
INSERT INTO paired_generation (id, generation) VALUES (1, 0);
