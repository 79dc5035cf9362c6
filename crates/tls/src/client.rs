//! The terminal's TLS client: its identity is a key-store alias, its trust
//! in the server is a trust store, a set of SPKI pins, or both. One
//! `TlsClient` per server relationship, never a process-wide setting.

use std::sync::Arc;

use pairgate_keystore::{Alias, KeyStore};
use pairgate_pki::SpkiPin;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::verify::ServerVerifier;
use crate::{TlsError, TlsPolicy, TtlClientSessionStore, alias_certified_key};

/// How the client decides to trust a server.
#[derive(Clone, Debug)]
pub enum ServerTrust {
    /// The server's chain must end at a certificate of the terminal's trust
    /// store, and name the server.
    TrustStore(Vec<CertificateDer<'static>>),
    /// The server's key must be one of these pins (the server name is not
    /// checked: the pin is the identity).
    Pins(Vec<SpkiPin>),
    /// First contact, before any pin is known (pairing): any server
    /// certificate with sound algorithms whose key the server proves in the
    /// handshake. The caller reads the key it saw from the connection
    /// ([`crate::peer_spki_pin`], [`crate::https::HttpsResponse::server_pin`]),
    /// pins it for every later connection, and has it confirmed by the
    /// pairing code.
    FirstContact,
    /// Both: a pinned key in a chain to the trust store.
    Both {
        /// Trust-store certificates.
        trust_store: Vec<CertificateDer<'static>>,
        /// Pins.
        pins: Vec<SpkiPin>,
    },
}

/// A configured TLS client.
#[derive(Clone, Debug)]
pub struct TlsClient {
    config: Arc<ClientConfig>,
    policy: TlsPolicy,
    source: Option<std::net::IpAddr>,
}

impl TlsClient {
    /// A client presenting `identity` (none: no client certificate).
    pub fn new(
        identity: Option<Arc<CertifiedKey>>,
        trust: ServerTrust,
        policy: &TlsPolicy,
    ) -> Result<Self, TlsError> {
        let provider = policy.provider();
        let first_contact = matches!(trust, ServerTrust::FirstContact);
        let (trust_store, pins) = match trust {
            ServerTrust::TrustStore(t) => (t, Vec::new()),
            ServerTrust::Pins(p) => (Vec::new(), p),
            ServerTrust::Both { trust_store, pins } => (trust_store, pins),
            ServerTrust::FirstContact => (Vec::new(), Vec::new()),
        };
        if trust_store.is_empty() && pins.is_empty() && !first_contact {
            return Err(TlsError::EmptyTrust);
        }
        let trust_store_fingerprints = trust_store
            .iter()
            .map(|c| pairgate_pki::CertificateFingerprint::of_certificate(c))
            .collect();
        let chain = if trust_store.is_empty() {
            None
        } else {
            let mut roots = RootCertStore::empty();
            for cert in trust_store {
                roots.add(cert)?;
            }
            Some(
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| TlsError::Config(e.to_string()))?,
            )
        };
        let verifier = Arc::new(ServerVerifier {
            pins,
            trust_store: trust_store_fingerprints,
            chain,
            provider: provider.clone(),
        });
        let builder = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(policy.protocol_versions())?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut config = match identity {
            Some(key) => builder.with_client_cert_resolver(Arc::new(SingleCertAndKey::from(key))),
            None => builder.with_no_client_auth(),
        };
        config.resumption = rustls::client::Resumption::store(Arc::new(
            TtlClientSessionStore::new(policy.session_lifetime, 64, policy.clock.clone()),
        ));
        Ok(Self {
            config: Arc::new(config),
            policy: policy.clone(),
            source: None,
        })
    }

    /// A client whose identity is the key and certificate of `alias`.
    pub fn with_alias(
        store: Arc<dyn KeyStore>,
        alias: &Alias,
        trust: ServerTrust,
        policy: &TlsPolicy,
    ) -> Result<Self, TlsError> {
        Self::new(Some(alias_certified_key(store, alias)?), trust, policy)
    }

    /// The same client with session resumption turned off: every
    /// connection makes a full handshake.
    pub fn without_resumption(&self) -> Self {
        let mut config = (*self.config).clone();
        config.resumption = rustls::client::Resumption::disabled();
        Self {
            config: Arc::new(config),
            policy: self.policy.clone(),
            source: self.source,
        }
    }

    /// The same client, connecting from the local address `source` (a
    /// terminal with several interfaces; tests and benchmarks spreading
    /// connections over 127.0.0.0/8).
    pub fn from_source(&self, source: std::net::IpAddr) -> Self {
        Self {
            source: Some(source),
            ..self.clone()
        }
    }

    /// The rustls configuration, for an HTTPS client or another stack.
    pub fn config(&self) -> Arc<ClientConfig> {
        self.config.clone()
    }

    /// Connects to `addr` (`host:port`) and completes the handshake within
    /// the policy's timeout. `server_name` defaults to the host part.
    pub async fn connect(
        &self,
        addr: &str,
        server_name: Option<&str>,
    ) -> Result<TlsStream<TcpStream>, TlsError> {
        let host = server_name
            .map(str::to_owned)
            .unwrap_or_else(|| host_of(addr));
        let name = ServerName::try_from(host.clone())
            .map_err(|_| TlsError::Config(format!("{host:?} is not a valid server name")))?;
        let connect = async {
            let io = |e| TlsError::Io {
                context: format!("connecting to {addr}"),
                source: e,
            };
            let tcp = match self.source {
                None => TcpStream::connect(addr).await.map_err(io)?,
                Some(source) => {
                    let target = tokio::net::lookup_host(addr)
                        .await
                        .map_err(io)?
                        .find(|a| a.is_ipv4() == source.is_ipv4())
                        .ok_or_else(|| io(std::io::Error::other("no address of that family")))?;
                    let socket = if source.is_ipv4() {
                        tokio::net::TcpSocket::new_v4()
                    } else {
                        tokio::net::TcpSocket::new_v6()
                    }
                    .map_err(io)?;
                    socket.bind((source, 0).into()).map_err(io)?;
                    socket.connect(target).await.map_err(io)?
                }
            };
            let _ = tcp.set_nodelay(true);
            TlsConnector::from(self.config.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| TlsError::handshake(format!("TLS handshake with {addr}"), e))
        };
        tokio::time::timeout(self.policy.handshake_timeout, connect)
            .await
            .map_err(|_| TlsError::HandshakeTimeout(addr.to_owned()))?
    }
}

/// The host part of `host:port` or `[v6]:port`.
fn host_of(addr: &str) -> String {
    if let Some(rest) = addr.strip_prefix('[')
        && let Some((host, _)) = rest.split_once(']')
    {
        return host.to_owned();
    }
    addr.rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or(addr)
        .to_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn host_parts() {
        assert_eq!(super::host_of("127.0.0.1:7741"), "127.0.0.1");
        assert_eq!(super::host_of("[::1]:7741"), "::1");
        assert_eq!(super::host_of("gate.example:7741"), "gate.example");
    }
}
