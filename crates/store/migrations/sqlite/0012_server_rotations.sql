-- Server key rotation (issue 17). Each row is one rotation statement: the
-- current key announces the next (statement: the JSON wire form, with its
-- signature). activated_at is set when the next key becomes the identity
-- (server_identity.pin moves to next_pin in the same transaction). At
-- most one rotation is announced and not yet activated.
CREATE TABLE server_rotations (
    seq BIGINT PRIMARY KEY,
    previous_pin TEXT NOT NULL,
    next_pin TEXT NOT NULL UNIQUE,
    statement TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    activated_at BIGINT
);
