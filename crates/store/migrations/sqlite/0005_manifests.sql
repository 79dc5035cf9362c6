-- Onboarding by the thousand (issue 18): vendor keys registered by an
-- admin, the manifests they signed, and one entry per terminal serial with
-- the pin of the key made inside that terminal. A manifest vouches only
-- while the vendor key that verified it is still registered (same pin).

CREATE TABLE vendors (
    name       TEXT PRIMARY KEY,
    algorithm  TEXT NOT NULL,
    public_key TEXT NOT NULL,
    key_pin    TEXT NOT NULL,
    added_at   BIGINT NOT NULL,
    added_by   TEXT NOT NULL
);

CREATE TABLE manifests (
    id             TEXT PRIMARY KEY,
    vendor         TEXT NOT NULL,
    vendor_key_pin TEXT NOT NULL,
    issued_at      TEXT NOT NULL,
    file_sha256    TEXT NOT NULL,
    terminals      BIGINT NOT NULL,
    imported_at    BIGINT NOT NULL,
    imported_by    TEXT NOT NULL
);

CREATE TABLE manifest_entries (
    serial      TEXT PRIMARY KEY REFERENCES terminals (serial),
    spki_pin    TEXT NOT NULL UNIQUE,
    model       TEXT NOT NULL DEFAULT '',
    manifest_id TEXT NOT NULL REFERENCES manifests (id)
);
CREATE INDEX manifest_entries_manifest ON manifest_entries (manifest_id);
