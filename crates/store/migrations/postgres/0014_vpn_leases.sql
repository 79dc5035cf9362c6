-- VPN addresses (issue 19): each terminal's address in a pool (a CIDR
-- range), by its index among the pool's terminal addresses. The primary
-- key makes two instances that pick the same free index at once collide
-- (one retries); the unique serial keeps one address per terminal.
CREATE TABLE vpn_leases (
    pool TEXT NOT NULL,
    idx BIGINT NOT NULL,
    serial TEXT NOT NULL REFERENCES terminals (serial),
    address TEXT NOT NULL,
    allocated_at BIGINT NOT NULL,
    PRIMARY KEY (pool, idx),
    UNIQUE (pool, serial)
);

-- One row per pool: an allocation takes its lock first, so allocations
-- from one pool queue instead of racing for the same free index.
CREATE TABLE vpn_pools (
    pool TEXT PRIMARY KEY
);
