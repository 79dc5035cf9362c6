-- VPN credentials (issue 19): what the server admits of a terminal's VPN
-- key, never the key itself. WireGuard: the X25519 public key; OpenVPN:
-- the client certificate the VPN CA issued (its serial goes on the CRL
-- when it is revoked). At most one credential per terminal is active.
CREATE TABLE vpn_credentials (
    id TEXT PRIMARY KEY,
    serial TEXT NOT NULL REFERENCES terminals (serial),
    kind TEXT NOT NULL,
    public_key TEXT NOT NULL,
    certificate TEXT,
    certificate_serial TEXT,
    address TEXT NOT NULL,
    address_v6 TEXT,
    profile TEXT NOT NULL,
    issued_at BIGINT NOT NULL,
    revoked_at BIGINT,
    revoked_reason TEXT
);
CREATE UNIQUE INDEX vpn_credentials_active ON vpn_credentials (serial) WHERE revoked_at IS NULL;
CREATE INDEX vpn_credentials_kind ON vpn_credentials (kind);
CREATE INDEX vpn_credentials_key ON vpn_credentials (public_key);

-- The VPN server's public half: the WireGuard server key every profile
-- names (its private key stays with `pairgate vpn`'s files).
CREATE TABLE vpn_server_keys (
    kind TEXT PRIMARY KEY,
    public_key TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
