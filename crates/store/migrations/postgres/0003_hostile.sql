-- Bounds against hostile gate clients (issue 12): where each pairing
-- request came from (quotas per source address), when a revealed request
-- must be decided by (an unrevealed one expires within minutes), how
-- often its key renewed it (each renewal is a write and an audit record), and the
-- operators' block list of terminal keys.
ALTER TABLE pairing_requests ADD COLUMN source_ip TEXT NOT NULL DEFAULT '';
ALTER TABLE pairing_requests ADD COLUMN decide_by BIGINT;
ALTER TABLE pairing_requests ADD COLUMN renewals BIGINT NOT NULL DEFAULT 0;
CREATE INDEX pairing_requests_source ON pairing_requests (source_ip, state);
CREATE INDEX pairing_requests_superseding ON pairing_requests (created_at, supersedes);

CREATE TABLE blocked_keys (
    fingerprint TEXT PRIMARY KEY,
    reason      TEXT NOT NULL,
    blocked_by  TEXT NOT NULL,
    blocked_at  BIGINT NOT NULL
);
