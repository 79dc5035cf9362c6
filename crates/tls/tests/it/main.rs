//! TLS tests
