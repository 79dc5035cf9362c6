-- pairgate schema v2 (postgres): what CAS needs. Sessions, API tokens and recovery
-- codes are stored as SHA-256 hashes of random secrets (hex); the secret
-- itself is shown once and never stored.

-- A TOTP seed being enrolled: confirmed by a first code, then moved to
-- totp_secret.
ALTER TABLE operators ADD COLUMN totp_pending TEXT;

CREATE TABLE sessions (
    token_hash   TEXT PRIMARY KEY,
    username     TEXT NOT NULL REFERENCES operators (username),
    stage        TEXT NOT NULL CHECK (stage IN ('password_change', 'enrol', 'totp', 'full')),
    csrf         TEXT NOT NULL,
    address      TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL
);
CREATE INDEX sessions_username ON sessions (username);

CREATE TABLE api_tokens (
    id           TEXT PRIMARY KEY,
    username     TEXT NOT NULL REFERENCES operators (username),
    name         TEXT NOT NULL,
    token_hash   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at   BIGINT
);
CREATE INDEX api_tokens_username ON api_tokens (username);

CREATE TABLE recovery_codes (
    username  TEXT NOT NULL REFERENCES operators (username),
    code_hash TEXT NOT NULL,
    used_at   BIGINT,
    PRIMARY KEY (username, code_hash)
);
