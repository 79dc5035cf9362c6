//! The server's TLS side: identity from a key-store alias or PEM files;
//! every client must present a certificate and prove its key. The gate
//! accepts any sound certificate; the master only what its acceptor (the
//! paired-fingerprint set) accepts. Sessions resume from a cache with the
//! policy's lifetime; tickets are off, so nothing outlives the cache.

use std::sync::Arc;

use pairgate_pki::TerminalFingerprint;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{HandshakeKind, ServerConfig};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::verify::ClientVerifier;
use crate::{ClientCertAcceptor, Lineage, TlsError, TlsPolicy, TtlServerSessionStore};

/// Which client certificates the server accepts.
#[derive(Clone, Debug)]
pub enum ClientAuth {
    /// Any certificate with sound algorithms whose key the client proves
    /// in the handshake (self-signed is the norm): the gate.
    AnyProvenKey,
    /// Only certificates the acceptor accepts.
    Accepting(Arc<dyn ClientCertAcceptor>),
    /// Any proven key, also one whose certificate expired at most this
    /// long ago: the master, which serves such a terminal nothing but its
    /// re-key (the request layer refuses the rest).
    AnyProvenKeyExpiredWithin(std::time::Duration),
}

/// The identity a server presents, replaceable while it serves (a server
/// key rotation takes effect without a restart).
#[derive(Debug)]
struct IdentitySlot(std::sync::RwLock<Arc<CertifiedKey>>);

impl rustls::server::ResolvesServerCert for IdentitySlot {
    fn resolve(&self, _: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.0
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
        )
    }
}

/// A configured TLS server.
#[derive(Clone, Debug)]
pub struct TlsServer {
    config: Arc<ServerConfig>,
    policy: TlsPolicy,
    sessions: Arc<TtlServerSessionStore>,
    identity: Arc<IdentitySlot>,
}

impl TlsServer {
    /// A server presenting `identity`.
    pub fn new(
        identity: Arc<CertifiedKey>,
        client_auth: ClientAuth,
        policy: &TlsPolicy,
    ) -> Result<Self, TlsError> {
        let provider = policy.provider();
        let (acceptor, expired_grace) = match client_auth {
            ClientAuth::AnyProvenKey => (None, None),
            ClientAuth::Accepting(a) => (Some(a), None),
            ClientAuth::AnyProvenKeyExpiredWithin(grace) => (None, Some(grace)),
        };
        let verifier = Arc::new(ClientVerifier {
            acceptor,
            provider: provider.clone(),
            max_chain_bytes: policy.max_client_certificate_bytes,
            expired_grace,
            clock: policy.clock.clone(),
        });
        let identity = Arc::new(IdentitySlot(std::sync::RwLock::new(identity)));
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(policy.protocol_versions())?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(identity.clone());
        let sessions = Arc::new(TtlServerSessionStore::new(
            policy.session_lifetime,
            policy.session_cache_size,
            policy.session_cache_bytes,
            policy.clock.clone(),
        ));
        config.session_storage = sessions.clone();
        // No ticketer (the builder's default never produces stateless
        // tickets, which would carry their own 24 h life): sessions live
        // in the TTL cache only.
        debug_assert!(!config.ticketer.enabled());
        config.ignore_client_order = true;
        // One TLS 1.3 session per full handshake, not rustls's default two:
        // a terminal resumes over one connection at a time, and each
        // session costs a cache entry holding the client's certificate.
        config.send_tls13_tickets = 1;
        let config = Arc::new(config);
        Ok(Self {
            config,
            policy: policy.clone(),
            sessions,
            identity,
        })
    }

    /// Presents `identity` from the next handshake on (connections and
    /// sessions made with the old one are left alone).
    pub fn replace_identity(&self, identity: Arc<CertifiedKey>) {
        *self
            .identity
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = identity;
    }

    /// The rustls configuration.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.config.clone()
    }

    /// Sessions held for resumption.
    pub fn cached_sessions(&self) -> usize {
        self.sessions.len()
    }

    /// Bytes the sessions held for resumption take.
    pub fn cached_session_bytes(&self) -> usize {
        self.sessions.bytes()
    }

    /// Completes the handshake on an accepted connection within the
    /// policy's timeout, returning the stream and the client's fingerprint.
    pub async fn accept(
        &self,
        tcp: TcpStream,
    ) -> Result<(TlsStream<TcpStream>, TerminalFingerprint), TlsError> {
        let peer = tcp
            .peer_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|_| "client".into());
        let _ = tcp.set_nodelay(true);
        let lineage = Lineage::random();
        let stream = tokio::time::timeout(
            self.policy.handshake_timeout,
            TlsAcceptor::from(self.config.clone()).accept_with(tcp, |conn| {
                conn.set_resumption_data(lineage.as_bytes());
            }),
        )
        .await
        .map_err(|_| TlsError::HandshakeTimeout(peer.clone()))?
        .map_err(|e| TlsError::Io {
            context: format!("TLS handshake with {peer}"),
            source: e,
        })?;
        let conn = stream.get_ref().1;
        // TLS 1.3 issues new tickets on a resumed handshake, which must
        // inherit the lineage's start. TLS 1.2 resumes the stored session
        // itself (no new one is stored), whose age the cache checked.
        if conn.handshake_kind() == Some(HandshakeKind::Resumed)
            && conn.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3)
            && !self
                .sessions
                .resumed(lineage, conn.received_resumption_data())
        {
            return Err(TlsError::Io {
                context: format!("TLS handshake with {peer}"),
                source: std::io::Error::other(
                    "the resumed session is older than the session lifetime",
                ),
            });
        }
        let fingerprint =
            crate::peer_fingerprint(stream.get_ref().1).ok_or_else(|| TlsError::Io {
                context: format!("TLS handshake with {peer}"),
                source: std::io::Error::other("no client certificate"),
            })?;
        Ok((stream, fingerprint))
    }
}

/// A TLS configuration for browsers and API clients (CAS): the same
/// identity, protocol versions and suites as the terminal services, no
/// client certificate, HTTP/1.1.
pub fn browser_config(
    identity: Arc<CertifiedKey>,
    policy: &TlsPolicy,
) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(policy.provider())
        .with_protocol_versions(policy.protocol_versions())?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(identity)));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.ignore_client_order = true;
    Ok(Arc::new(config))
}
