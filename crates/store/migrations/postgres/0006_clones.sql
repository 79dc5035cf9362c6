-- Clone detection and suspension (issue 18). A suspended terminal keeps
-- its pairing (state stays 'paired', the fingerprint stays) but the
-- master refuses it until an operator resumes it. A suspected clone is
-- marked with the evidence that raised it. heartbeat_counter is the
-- highest counter the terminal reported: a copy restored beside the
-- original reports a lower one.

ALTER TABLE terminals ADD COLUMN suspended_at BIGINT;
ALTER TABLE terminals ADD COLUMN suspended_by TEXT;
ALTER TABLE terminals ADD COLUMN suspected_clone BIGINT NOT NULL DEFAULT 0;
ALTER TABLE terminals ADD COLUMN clone_evidence TEXT;
ALTER TABLE terminals ADD COLUMN heartbeat_counter BIGINT;
