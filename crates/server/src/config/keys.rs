//! The documented list of every server setting: `pairgate server --help`
//! prints it and a unit test keeps it equal to [`super::Settings`].

/// Every setting with its meaning, for `--help` and the README. A unit
/// test keeps this list and [`super::Settings`] in step.
pub const SETTINGS: &[(&str, &str)] = &[
    (
        "data_dir",
        "data directory: SQLite database, server identity (default ./pairgate-data)",
    ),
    (
        "database_url",
        "postgres://… to share one PostgreSQL; empty: SQLite in data_dir",
    ),
    ("gate_listen", "gate address (default 0.0.0.0:7741)"),
    ("master_listen", "master address (default 0.0.0.0:7743)"),
    (
        "cas_listen",
        "CAS address: operators' web UI and /api/v1 (default 127.0.0.1:7780)",
    ),
    (
        "cas_tls",
        "serve CAS over TLS with the server identity (default false: plain HTTP, for 127.0.0.1 behind a tunnel)",
    ),
    (
        "cas_hosts",
        "host names CAS answers to; others get 421 (default: localhost, 127.0.0.1, ::1, server_names and the cas_listen address)",
    ),
    (
        "cas_session_idle_secs",
        "a CAS session ends after this long without a request (default 1800)",
    ),
    (
        "cas_session_max_secs",
        "a CAS session ends this long after login (default 43200)",
    ),
    (
        "login_failures_per_account",
        "failed CAS logins per account from one client address within login_window_secs before 429, with a doubling wait from the third (default 5); elsewhere the account still signs in",
    ),
    (
        "login_failures_per_address",
        "failed CAS logins per client address within login_window_secs before 429 (default 20)",
    ),
    (
        "login_window_secs",
        "window of the CAS login limits (default 900)",
    ),
    (
        "master_url",
        "master URL handed to paired terminals (default https://localhost:<master port>)",
    ),
    (
        "services",
        "the services this instance runs, of gate, master and cas (default all three; only all three may create the server identity)",
    ),
    (
        "metrics_listen",
        "address of /metrics (Prometheus), /healthz and /readyz, plain HTTP (default 127.0.0.1:7790; empty: off)",
    ),
    (
        "identity_keystore",
        "key store of the server identity: file:DIR or pkcs11:… (default file:<data_dir>/identity)",
    ),
    (
        "identity_passphrase_file",
        "passphrase file of a file: identity store (default <data_dir>/identity.passphrase, made at first start)",
    ),
    (
        "server_names",
        "DNS names and IP addresses in the server certificate (default localhost,127.0.0.1)",
    ),
    (
        "upstream_url",
        "http://host:port[/path] or https://… of the operator's application behind the master's /app/ (empty: none)",
    ),
    ("tls_versions", "\"1.2+1.3\" (default), \"1.2\" or \"1.3\""),
    (
        "session_lifetime_secs",
        "TLS session resumption lifetime (default 600)",
    ),
    (
        "handshake_timeout_secs",
        "TLS handshake timeout (default 10)",
    ),
    (
        "header_timeout_secs",
        "time a client may take to send request headers, and the longest idle time between requests on a kept-alive connection (default 10)",
    ),
    (
        "pairing_ttl_secs",
        "how long a pairing request stays open (default 86400)",
    ),
    (
        "max_open_requests",
        "open pairing requests allowed at once (default 1000)",
    ),
    (
        "unknown_serial_per_minute",
        "unknown-serial attempts per address and certificate and minute before 429 (default 10)",
    ),
    (
        "max_body_bytes",
        "largest request body at gate and master API (default 16384)",
    ),
    (
        "max_proxy_body_bytes",
        "largest body forwarded to the upstream (default 1048576)",
    ),
    (
        "long_poll_max_secs",
        "longest wait of GET /v1/pairing/{id}?wait=N (default 30)",
    ),
    (
        "paired_poll_ms",
        "how often an SQLite server checks the paired set, and the pairing requests long polls wait for, for changes other processes made (default 200)",
    ),
    (
        "stale_after_secs",
        "a master that has not reached the store for this long refuses every request (503 PG-STORE-UNAVAILABLE) until it does: it no longer knows who is unpaired (default 30; more than reconcile_secs)",
    ),
    (
        "rekey_overlap_secs",
        "after a terminal proves a new key over the master, its old key is served until the new one is first used, and at most this long (default 3600)",
    ),
    (
        "expired_grace_secs",
        "a terminal whose certificate expired at most this long ago may still re-key at the master, with its newest key, and nothing else; beyond it, it pairs again (default 7776000, 90 days; 0: never)",
    ),
    (
        "terminal_ca_alias",
        "alias of the terminal CA in the identity key store (`pairgate admin terminal-ca init`): re-key CSRs are certified by it (CA mode); empty: terminals re-key with self-signed certificates (default empty)",
    ),
    (
        "terminal_cert_days",
        "lifetime of the certificates the terminal CA issues, in days (default 365)",
    ),
    (
        "vpn_type",
        "the VPN paired terminals get a profile for: \"openvpn\", \"wireguard\" or \"none\" (default none); see docs/operations.md, VPN",
    ),
    (
        "vpn_endpoint",
        "where terminals reach the VPN server, host:port (required with a vpn_type)",
    ),
    (
        "vpn_pool_v4",
        "IPv4 pool of tunnel addresses: the first host is the VPN server's, the others go to terminals, one each (default 10.8.0.0/24)",
    ),
    (
        "vpn_pool_v6",
        "IPv6 pool of tunnel addresses, if any (default empty)",
    ),
    (
        "vpn_routes",
        "networks routed through the tunnel besides the pools, as CIDR (default none)",
    ),
    ("vpn_dns", "DNS servers given to terminals (default none)"),
    (
        "vpn_keepalive_secs",
        "keepalive interval of the tunnel, 1 to 3600 seconds (default 25)",
    ),
    (
        "vpn_ca_alias",
        "OpenVPN: alias of the VPN CA in the identity key store, made by `pairgate vpn init` (default pairgate-vpn-ca)",
    ),
    (
        "vpn_cert_days",
        "OpenVPN: lifetime of terminals' VPN certificates, in days (default 365)",
    ),
    (
        "reconcile_secs",
        "how often a PostgreSQL server re-checks the paired set and the requests long polls wait for, besides NOTIFY (default 5)",
    ),
    (
        "proxy_timeout_secs",
        "longest wait for the upstream's response headers, and between two parts of its body (default 30)",
    ),
    (
        "upstream_connect_timeout_secs",
        "longest wait for a new connection to the upstream, TLS included (default 5)",
    ),
    (
        "upstream_idle_secs",
        "how long an idle kept-alive connection to the upstream stays open (default 60)",
    ),
    (
        "upstream_max_idle",
        "idle kept-alive connections kept to the upstream (default 64; 0: one connection per request)",
    ),
    (
        "upstream_max_connections",
        "requests the master has at the upstream at once; more get 503 (default 1024)",
    ),
    (
        "upstream_ca_file",
        "PEM CA certificates an https:// upstream must chain to (and name the upstream host)",
    ),
    (
        "upstream_pin",
        "SPKI pin (64 hex digits) an https:// upstream's key must have",
    ),
    (
        "proxy_forwarded",
        "how the master tells the upstream the terminal's address: \"x-forwarded-for\" (default), \"forwarded\" (RFC 7239) or \"none\"",
    ),
    (
        "tls_session_cache_bytes",
        "bytes each listener's TLS session cache may hold; oldest sessions go first (default 67108864)",
    ),
    (
        "max_client_cert_bytes",
        "largest client certificate chain accepted, in DER bytes (default 16384)",
    ),
    (
        "body_timeout_secs",
        "time a client may take to send a request body (default 10)",
    ),
    (
        "linger_secs",
        "after an early answer (413) the server reads and discards for this long before closing, so the client sees it (default 2)",
    ),
    (
        "max_connections_per_address",
        "connections one source address may hold at each of gate, master and CAS (default 512)",
    ),
    (
        "gate_max_connections",
        "connections the gate holds (default 0: 15% of the open-file limit less 256 reserved)",
    ),
    (
        "master_max_connections",
        "connections the master holds (default 0: 80% of the open-file limit less 256 reserved)",
    ),
    (
        "cas_max_connections",
        "connections CAS holds (default 0: 5% of the open-file limit less 256 reserved)",
    ),
    (
        "reveal_ttl_secs",
        "a pairing request whose nonce is not revealed expires after this long (default 300)",
    ),
    (
        "max_open_per_key",
        "open pairing requests one client certificate may hold (default 2)",
    ),
    (
        "max_open_per_address",
        "open pairing requests from one source address (default 50)",
    ),
    (
        "max_renewals",
        "times one key may renew its open request with a new commitment (a restarting terminal does; each is audited) (default 10)",
    ),
    (
        "supersede_window_secs",
        "window of the supersede limits (default 3600)",
    ),
    (
        "supersedes_per_key",
        "requests one client certificate may supersede within supersede_window_secs (default 2)",
    ),
    (
        "supersedes_per_address",
        "requests superseded from one source address within supersede_window_secs (default 10)",
    ),
    (
        "supersedes_per_serial",
        "times one serial's request may be superseded within supersede_window_secs (default 6)",
    ),
    (
        "closed_request_retention_secs",
        "closed pairing requests (and their certificates) are deleted this long after closing; audit records stay (default 2592000)",
    ),
    (
        "unknown_serial_per_address_per_minute",
        "unknown-serial attempts per address and minute, any certificate, before 429; known serials are never blocked (default 100)",
    ),
    (
        "refusal_audit_per_minute",
        "audit records per minute for refusals of unauthenticated clients (one per address and minute, with a count); the rest are summed in one record (default 200)",
    ),
    (
        "password_hash_concurrency",
        "password hashes (Argon2) computed at once, off the async workers (default 2)",
    ),
    (
        "auto_approve_manifest",
        "approve a revealed pairing request without a person when its serial and key match an imported vendor manifest (rule manifest); false leaves every request to operators (default true)",
    ),
    (
        "auto_approve_networks",
        "source networks (CIDR, e.g. 10.0.0.0/8) from which a rule may approve a request; empty: any (default empty)",
    ),
    (
        "auto_approve_hours",
        "UTC hours FROM-TO (e.g. \"06-22\", or \"22-06\" across midnight) in which a rule may approve; empty: at any hour (default empty)",
    ),
    (
        "auto_approve_models",
        "terminal models (as the manifest lists them) a rule may approve; empty: any (default empty)",
    ),
    (
        "auto_approve_ca_file",
        "PEM bundle of acquirer or vendor CAs for rule ca: a request whose client certificate one of them issued to its serial (subject CN or a DNS SAN) is approved without a person; empty: the rule is off (default empty)",
    ),
    (
        "clone_action",
        "what the master does when one terminal identity is used from two places at once (live connections from two addresses, a heartbeat counter that does not rise): \"alert\" marks it suspected_clone for operators (default); \"suspend\" also suspends it until an operator resumes it",
    ),
    (
        "step_up_failures",
        "wrong second-factor codes of one operator within step_up_window_secs before their step-ups (approve, unpair, tokens, operator changes, the login code) are refused; all instances share the count (default 5)",
    ),
    (
        "step_up_window_secs",
        "window of step_up_failures; an admin may clear a lock sooner (default 900)",
    ),
    (
        "api_token_days",
        "lifetime of new CAS API tokens, in days (default 90)",
    ),
    (
        "audit_checkpoint_records",
        "sign a checkpoint of the audit log with the server identity key after this many records (default 1000)",
    ),
    (
        "audit_checkpoint_secs",
        "sign an audit checkpoint at least this often while records arrive (default 60)",
    ),
];
