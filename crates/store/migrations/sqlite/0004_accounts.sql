-- Accounts and audit against a stolen token and a rogue database writer
-- (issue 13): failed second-factor checks per operator (every instance
-- sees the same lock), API token expiry, and the audit log's signed
-- checkpoints.

CREATE TABLE step_up_failures (
    username TEXT NOT NULL,
    at       BIGINT NOT NULL
);
CREATE INDEX step_up_failures_username ON step_up_failures (username, at);

-- Tokens made before expiry existed get the default lifetime (90 days)
-- from their creation.
ALTER TABLE api_tokens ADD COLUMN expires_at BIGINT;
UPDATE api_tokens SET expires_at = created_at + 7776000000 WHERE expires_at IS NULL;

-- A checkpoint anchors the records first_seq..=last_seq: their hashes
-- (hex, 64 digits each, in order) signed with the server's identity key
-- (spki, hex DER). A rogue writer can rehash the chain but cannot sign.
CREATE TABLE audit_checkpoints (
    last_seq  BIGINT PRIMARY KEY,
    first_seq BIGINT NOT NULL,
    hashes    TEXT NOT NULL,
    at        BIGINT NOT NULL,
    spki      TEXT NOT NULL,
    signature TEXT NOT NULL
);
