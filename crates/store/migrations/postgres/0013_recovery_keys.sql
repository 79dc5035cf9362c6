-- The operator's offline recovery keys (issue 17): their pins are handed
-- to terminals with the server's keys, and a rotation signed by one of
-- them moves the server identity after its key was lost or stolen.
CREATE TABLE recovery_keys (
    pin TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL
);

-- Every key that has been the server identity: audit checkpoints signed
-- by any of them are the server's.
CREATE TABLE server_identity_history (
    pin TEXT PRIMARY KEY,
    since BIGINT NOT NULL
);
INSERT INTO server_identity_history (pin, since) SELECT pin, recorded_at FROM server_identity;
