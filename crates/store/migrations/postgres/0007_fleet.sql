-- The fleet view (issue 18) reads recent audit records by action: wrong
-- codes, unknown-serial refusals, manifest-key mismatches.
CREATE INDEX audit_log_action_at ON audit_log (action, at);
