-- Running as a cluster (issue 16). server_identity records the pin of the
-- one server identity every instance must present: an instance whose key
-- is missing or differs refuses to start instead of making a new one.
-- attempt_counters holds the rate limits every instance shares (unknown
-- serials per address, CAS login failures per account and per address):
-- one row per (scope, key), counting in a fixed window from window_start.

CREATE TABLE server_identity (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    pin TEXT NOT NULL,
    recorded_at BIGINT NOT NULL
);

CREATE TABLE attempt_counters (
    scope TEXT NOT NULL,
    subject TEXT NOT NULL,
    window_start BIGINT NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (scope, subject)
);
CREATE INDEX attempt_counters_window ON attempt_counters (window_start);
