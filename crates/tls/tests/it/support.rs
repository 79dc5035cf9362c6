//! Identities and a small echo server for the tests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use pairgate_keystore::pkcs11::{Pkcs11KeyStore, provision_token};
use pairgate_keystore::software::{KdfParams, SoftwareKeyStore};
use pairgate_keystore::{
    Alias, KeyStore, Passphrase, Pkcs11Uri, self_signed_certificate, terminal_fingerprint,
};
use pairgate_pki::{KeyAlgorithm, SpkiPin, Subject, TerminalFingerprint};
use pairgate_testkit::{TempDir, temp_dir};
use pairgate_tls::server::TlsServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// Which key store holds a test identity.
#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Software,
    SoftHsm,
}

pub struct Identity {
    pub store: Arc<dyn KeyStore>,
    pub alias: Alias,
    pub fingerprint: TerminalFingerprint,
    pub pin: SpkiPin,
    _dir: TempDir,
}

pub fn store(backend: Backend) -> (Arc<dyn KeyStore>, TempDir) {
    let dir = temp_dir();
    match backend {
        Backend::Software => {
            let params = KdfParams {
                memory_kib: 64,
                iterations: 1,
                parallelism: 1,
            };
            let store = SoftwareKeyStore::open_or_create_with(
                &dir.path().join("keys"),
                Passphrase::new("pw").unwrap(),
                params,
            )
            .unwrap();
            (Arc::new(store), dir)
        }
        Backend::SoftHsm => {
            assert!(
                std::env::var_os("SOFTHSM2_CONF").is_some(),
                "run through scripts/test (SOFTHSM2_CONF)"
            );
            let module = std::env::var("PAIRGATE_TEST_PKCS11_MODULE")
                .unwrap_or_else(|_| "/usr/lib/softhsm/libsofthsm2.so".into());
            let mut random = [0u8; 8];
            aws_lc_rs::rand::fill(&mut random).unwrap();
            let label = format!("tls-{}", hex::encode(random));
            provision_token(std::path::Path::new(&module), &label, "so-pin", "4321").unwrap();
            let pin = dir.path().join("pin");
            std::fs::write(&pin, "4321").unwrap();
            let uri: Pkcs11Uri = format!(
                "pkcs11:token={label}?module-path={module}&pin-source=file:{}",
                pin.display()
            )
            .parse()
            .unwrap();
            (Arc::new(Pkcs11KeyStore::open(&uri).unwrap()), dir)
        }
    }
}

impl Identity {
    /// A server presenting this identity.
    pub fn server(
        &self,
        auth: pairgate_tls::server::ClientAuth,
        policy: &pairgate_tls::TlsPolicy,
    ) -> TlsServer {
        TlsServer::new(
            pairgate_tls::alias_certified_key(self.store.clone(), &self.alias).unwrap(),
            auth,
            policy,
        )
        .unwrap()
    }

    /// A client presenting this identity.
    pub fn client(
        &self,
        trust: pairgate_tls::client::ServerTrust,
        policy: &pairgate_tls::TlsPolicy,
    ) -> pairgate_tls::client::TlsClient {
        pairgate_tls::client::TlsClient::with_alias(self.store.clone(), &self.alias, trust, policy)
            .unwrap()
    }
}

/// A new key of `algorithm` under `alias`, certified by `certify` (which
/// sets the alias's certificate).
fn certified(
    backend: Backend,
    algorithm: KeyAlgorithm,
    alias: &str,
    certify: impl FnOnce(&dyn KeyStore, &Alias),
) -> Identity {
    let (store, dir) = store(backend);
    let alias = Alias::new(alias).unwrap();
    let public = store.generate_key(&alias, algorithm).unwrap();
    certify(store.as_ref(), &alias);
    let fingerprint = terminal_fingerprint(store.as_ref(), &alias).unwrap();
    Identity {
        store,
        alias,
        fingerprint,
        pin: public.pin(),
        _dir: dir,
    }
}

/// A key of `algorithm` with a self-signed client certificate.
pub fn identity(backend: Backend, algorithm: KeyAlgorithm, cn: &str) -> Identity {
    identity_from(backend, algorithm, cn, SystemTime::now(), 30)
}

/// A key of `algorithm` with a self-signed client certificate valid for
/// `days` from `start`.
pub fn identity_from(
    backend: Backend,
    algorithm: KeyAlgorithm,
    cn: &str,
    start: SystemTime,
    days: u32,
) -> Identity {
    certified(backend, algorithm, "identity", |store, alias| {
        let subject = Subject::common_name(cn).unwrap();
        self_signed_certificate(store, alias, &subject, start, days).unwrap();
    })
}

/// A key of `algorithm` with a self-signed server certificate for
/// `localhost` and 127.0.0.1.
pub fn server_identity(backend: Backend, algorithm: KeyAlgorithm) -> Identity {
    certified(backend, algorithm, "server", |store, alias| {
        pairgate_keystore::self_signed_server_certificate(
            store,
            alias,
            &Subject::common_name("localhost").unwrap(),
            &["localhost".to_owned()],
            &["127.0.0.1".parse().unwrap()],
            SystemTime::now(),
            30,
        )
        .unwrap();
    })
}

/// What the echo server saw for one connection.
#[derive(Debug)]
pub struct Seen {
    pub result: Result<TerminalFingerprint, String>,
}

/// Serves `server` on 127.0.0.1:0: each connection gets "hello <fingerprint>\n"
/// and is closed; every handshake outcome is sent to the returned channel.
pub async fn serve(server: TlsServer) -> (SocketAddr, mpsc::UnboundedReceiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let server = server.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match server.accept(tcp).await {
                    Ok((mut stream, fp)) => {
                        let _ = tx.send(Seen { result: Ok(fp) });
                        let mut buf = [0u8; 1024];
                        // Answer an HTTP request or a plain line alike.
                        let n = stream.read(&mut buf).await.unwrap_or(0);
                        let body = format!("hello {fp}\n");
                        let reply = if buf[..n].starts_with(b"GET ") {
                            format!(
                                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                                body.len()
                            )
                        } else {
                            body
                        };
                        let _ = stream.write_all(reply.as_bytes()).await;
                        let _ = stream.shutdown().await;
                    }
                    Err(e) => {
                        let _ = tx.send(Seen {
                            result: Err(format!("{e:#}")),
                        });
                    }
                }
            });
        }
    });
    (addr, rx)
}

/// Sends a line over a client stream and reads the answer.
pub async fn exchange<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    stream: &mut S,
) -> String {
    stream.write_all(b"ping\n").await.unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    out
}
