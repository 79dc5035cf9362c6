-- The paired set's change log (issue 16): every generation bump records
-- which terminal changed, so instances following the set re-read that
-- terminal instead of the whole set. A follower that finds a generation
-- missing here (purged, or never written by an older version) reloads
-- everything, as before.
CREATE TABLE paired_changes (
    generation BIGINT PRIMARY KEY,
    serial TEXT NOT NULL,
    at BIGINT NOT NULL
);
