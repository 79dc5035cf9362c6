-- Terminal re-key over the master (issue 17). terminal_keys is each
-- terminal's key lineage: the key it paired with (added when it first
-- re-keys) and every key that followed, each naming its predecessor. A
-- fingerprint appears once in the whole table, so a key is never taken
-- back or handed to another terminal. A terminal's successor key is
-- served beside the current one until its first use (which retires the
-- old key) or until successor_until, whichever comes first.
-- rekey_challenges holds the server's single-use challenges: one per
-- terminal, deleted when used.

CREATE TABLE terminal_keys (
    fingerprint TEXT PRIMARY KEY,
    serial TEXT NOT NULL REFERENCES terminals (serial),
    certificate BLOB NOT NULL,
    predecessor TEXT,
    recorded_at BIGINT NOT NULL,
    activated_at BIGINT,
    retired_at BIGINT,
    not_after BIGINT NOT NULL
);
CREATE INDEX terminal_keys_serial ON terminal_keys (serial, recorded_at);

ALTER TABLE terminals ADD COLUMN successor_fingerprint TEXT;
CREATE UNIQUE INDEX terminals_successor ON terminals (successor_fingerprint);
ALTER TABLE terminals ADD COLUMN successor_until BIGINT;

CREATE TABLE rekey_challenges (
    serial TEXT PRIMARY KEY REFERENCES terminals (serial),
    fingerprint TEXT NOT NULL,
    challenge TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
