-- The fleet view counts paired terminals by model (bench fleet: counting
-- distinct serials per model over the pairing requests took most of a
-- 100,000-terminal dashboard). The model is kept on the terminal when it
-- pairs: the manifest's, or else the one its request reported.
ALTER TABLE terminals ADD COLUMN model TEXT NOT NULL DEFAULT '';
UPDATE terminals SET model = COALESCE((
    SELECT r.model FROM pairing_requests r
    WHERE r.fingerprint = terminals.paired_fingerprint AND r.state = 'approved'
    ORDER BY r.created_at DESC LIMIT 1), '')
WHERE paired_fingerprint IS NOT NULL;
CREATE INDEX pairing_requests_created ON pairing_requests (created_at);
