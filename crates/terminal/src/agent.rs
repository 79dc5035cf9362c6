//! The agent: one state directory and one key-store alias. It pairs
//! through the gate with the protocol of docs/protocol.md and then calls the master
//! with the pins the gate handed over the code-confirmed channel.
//!
//! Pinning: the first request to a gate address trusts any server key and
//! records its SPKI pin before the code is derived; every later connection
//! to that address requires that key, and the pairing code (read out by a
//! person and typed by the operator) confirms it. A different key at a
//! pinned address is refused with both fingerprints; another address needs
//! an explicit `forget_pin`.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use pairgate_keystore::{Alias, KeyStore, KeyStoreError};
use pairgate_pki::{KeyAlgorithm, Nonce, PairingCode, Subject, TerminalFingerprint};
use pairgate_proto::TerminalConfig;
use pairgate_tls::TlsPolicy;
use pairgate_tls::client::{ServerTrust, TlsClient};
use pairgate_tls::https::{HttpsClient, HttpsResponse};
use rustls::sign::CertifiedKey;

use crate::TerminalError;
use crate::flow;
use crate::gate;
use crate::state::{PairedConfig, State, StateFile};

/// How the first-boot identity is certified.
#[derive(Clone, Debug)]
pub enum IdentityMode {
    /// A self-signed client certificate (the default; the server knows the
    /// terminal by its fingerprint).
    SelfSigned,
    /// A CSR for a CA; the issued certificate is imported later.
    Csr(Subject),
}

/// Shows the pairing code: the CLI prints it, a device draws it.
pub trait PairingDisplay: Send + Sync {
    /// The code to read out for request `request_id`.
    fn show_code(&self, request_id: &str, code: &PairingCode);
    /// A progress message (waiting, retrying).
    fn progress(&self, _message: &str) {}
}

/// What `pair` needs.
#[derive(Clone, Debug)]
pub struct PairOptions {
    /// Gate address, `host:port`.
    pub gate: String,
    /// The serial an operator registered.
    pub serial: String,
    /// Reported model.
    pub model: String,
    /// Reported firmware.
    pub firmware: String,
    /// Unpin a server key learned at another gate address.
    pub forget_pin: bool,
    /// Long-poll wait per status request.
    pub poll_wait: Duration,
    /// Stop waiting for approval after this long (the request stays open
    /// and a later `pair` resumes it).
    pub give_up_after: Option<Duration>,
    /// Trust the server by the terminal's trust store (the seed's model:
    /// its certificate is there or chains to an entry, each admitted
    /// under the firmware-roots rule) instead of pinning it at first
    /// contact.
    pub trust_store: bool,
}

/// The agent's view of itself.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Status {
    /// Key alias.
    pub alias: Option<String>,
    /// Terminal Certificate Fingerprint, once certified.
    pub fingerprint: Option<String>,
    /// Gate address and pinned server key.
    pub gate: Option<String>,
    /// The pinned server key (hex).
    pub server_pin: Option<String>,
    /// A pairing in progress (request id).
    pub pending_request: Option<String>,
    /// The paired configuration.
    pub paired: Option<PairedConfig>,
    /// The last heartbeat counter sent.
    pub heartbeat_counter: u64,
}

/// The terminal agent.
pub struct Agent {
    pub(crate) state: StateFile,
    pub(crate) store: Arc<dyn KeyStore>,
    /// The identity's alias: the one the state names (a re-key moves it),
    /// else the one given.
    alias: std::sync::RwLock<Alias>,
    pub(crate) policy: TlsPolicy,
}

impl Agent {
    /// An agent on `state_dir` with the identity `alias` in `store`, or
    /// the alias the state names once the identity exists (a re-key
    /// moves the identity to a new alias).
    pub fn new(
        state_dir: &Path,
        store: Arc<dyn KeyStore>,
        alias: Alias,
        policy: TlsPolicy,
    ) -> Result<Self, TerminalError> {
        let state = StateFile::new(state_dir)?;
        let alias = match state.load().map(|s| s.alias) {
            Ok(Some(named)) => Alias::new(&named)?,
            // A damaged state shows itself at the first operation.
            Ok(None) | Err(_) => alias,
        };
        Ok(Self {
            state,
            store,
            alias: std::sync::RwLock::new(alias),
            policy,
        })
    }

    /// The identity's alias.
    pub fn alias(&self) -> Alias {
        self.alias
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Moves the identity to `alias` (after a re-key).
    pub(crate) fn set_alias(&self, alias: Alias) {
        *self
            .alias
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = alias;
    }

    /// First boot: a P-256 key inside the key store and a self-signed
    /// certificate (returns its fingerprint), or a CSR (returns its PEM).
    /// Run again, it keeps an existing key.
    pub fn init(&self, mode: &IdentityMode, now: SystemTime) -> Result<Init, TerminalError> {
        let alias = self.alias();
        match self.store.public_key(&alias) {
            Ok(_) => {}
            Err(KeyStoreError::NoSuchAlias(_)) => {
                self.store.generate_key(&alias, KeyAlgorithm::P256)?;
            }
            Err(e) => return Err(e.into()),
        }
        let init = match mode {
            IdentityMode::SelfSigned => {
                if self.store.certificate_chain(&alias)?.is_empty() {
                    self.self_sign(&alias, now)?;
                }
                Init::Certified(self.fingerprint()?)
            }
            IdentityMode::Csr(subject) => {
                let csr =
                    pairgate_keystore::certificate_request(self.store.as_ref(), &alias, subject)?;
                Init::Csr(pairgate_pki::certificate::csr_pem(&csr))
            }
        };
        let mut state = self.state.load()?;
        state.alias = Some(alias.to_string());
        self.state.save(&state)?;
        Ok(init)
    }

    /// A self-signed client certificate (CN = the alias, ten years) for
    /// the key of `alias`, signed inside the key store.
    pub(crate) fn self_sign(
        &self,
        alias: &Alias,
        now: SystemTime,
    ) -> Result<rustls::pki_types::CertificateDer<'static>, TerminalError> {
        let subject =
            Subject::common_name(alias.as_str()).map_err(|e| TerminalError::Io(e.to_string()))?;
        Ok(pairgate_keystore::self_signed_certificate(
            self.store.as_ref(),
            alias,
            &subject,
            now,
            3650,
        )?)
    }

    /// The Terminal Certificate Fingerprint.
    pub fn fingerprint(&self) -> Result<TerminalFingerprint, TerminalError> {
        self.fingerprint_of(&self.alias())
    }

    /// The fingerprint of `alias`'s certificate.
    pub(crate) fn fingerprint_of(
        &self,
        alias: &Alias,
    ) -> Result<TerminalFingerprint, TerminalError> {
        match pairgate_keystore::terminal_fingerprint(self.store.as_ref(), alias) {
            Ok(fp) => Ok(fp),
            Err(KeyStoreError::NoSuchAlias(_)) => Err(TerminalError::NotInitialised),
            Err(KeyStoreError::NoCertificate(a)) => Err(TerminalError::NoCertificate(a)),
            Err(e) => Err(e.into()),
        }
    }

    fn identity(&self, alias: &Alias) -> Result<Arc<CertifiedKey>, TerminalError> {
        self.fingerprint_of(alias)?;
        Ok(pairgate_tls::alias_certified_key(
            self.store.clone(),
            alias,
        )?)
    }

    pub(crate) fn https(&self, trust: ServerTrust) -> Result<HttpsClient, TerminalError> {
        self.https_as(&self.alias(), trust)
    }

    /// An HTTPS client presenting `alias`'s key.
    pub(crate) fn https_as(
        &self,
        alias: &Alias,
        trust: ServerTrust,
    ) -> Result<HttpsClient, TerminalError> {
        let tls = TlsClient::new(Some(self.identity(alias)?), trust, &self.policy)?;
        Ok(HttpsClient::new(tls))
    }

    /// Where the agent stands.
    pub fn status(&self) -> Result<Status, TerminalError> {
        let state = self.state.load()?;
        let fingerprint = match self.fingerprint() {
            Ok(fp) => Some(fp.to_hex()),
            Err(TerminalError::NotInitialised | TerminalError::NoCertificate(_)) => None,
            Err(e) => return Err(e),
        };
        Ok(Status {
            alias: state.alias,
            fingerprint,
            gate: state.gate_pin.as_ref().map(|g| g.gate.clone()),
            server_pin: state.gate_pin.map(|g| g.pin),
            pending_request: state.pending.and_then(|p| p.request_id),
            paired: state.paired,
            heartbeat_counter: state.heartbeat_counter,
        })
    }

    /// Pairs through the gate (protocol steps 2–5) and stores the
    /// configuration. A pairing interrupted earlier (same gate and
    /// serial) is resumed with the same commitment, so the gate returns
    /// the same request and the code on screen stays the same.
    pub async fn pair(
        &self,
        options: &PairOptions,
        display: &dyn PairingDisplay,
    ) -> Result<PairedConfig, TerminalError> {
        let fingerprint = self.fingerprint()?;
        // In trust-store mode no pin decides: the trust store does.
        let trusted = if options.trust_store {
            Some(self.trusted()?)
        } else {
            None
        };
        let start = flow::start(
            self.state.load()?,
            &options.gate,
            &options.serial,
            options.forget_pin || options.trust_store,
            Nonce::random,
        )?;
        let (mut state, known_pin, nonce) = (start.state, start.known_pin, start.nonce);
        // Saved before it is sent: a restart sends the same commitment.
        self.state.save(&state)?;

        let trust = match (&trusted, known_pin) {
            (Some(certs), _) => ServerTrust::TrustStore(certs.clone()),
            (None, Some(pin)) => ServerTrust::Pins(vec![pin]),
            (None, None) => ServerTrust::FirstContact,
        };
        let gate_url = format!("https://{}", options.gate);
        let hello = gate::Hello {
            serial: &options.serial,
            model: &options.model,
            firmware: &options.firmware,
            commitment: nonce.commitment(),
        };
        let r = gate::ask(&self.https(trust)?, &gate_url, &hello).await?;
        let pin = r
            .server_pin
            .ok_or_else(|| TerminalError::Gate("no server certificate seen".into()))?;
        let next = flow::on_hello(&mut state, &options.gate, known_pin, pin, gate::answer(&r));
        self.state.save(&state)?;
        let (id, server_nonce) = match next? {
            flow::AfterHello::Paired(config) => return self.finish(&mut state, options, &config),
            flow::AfterHello::Reveal {
                request_id,
                server_nonce,
            } => (request_id, server_nonce),
        };
        self.state.save(&state)?;
        let pinned = match trusted {
            Some(certs) => self.https(ServerTrust::TrustStore(certs))?,
            None => self.https(ServerTrust::Pins(vec![pin]))?,
        };
        match gate::reveal(&pinned, &gate_url, &id, &nonce).await {
            Err(e @ TerminalError::Gate(_)) => {
                flow::on_reveal_refused(&mut state);
                self.state.save(&state)?;
                return Err(e);
            }
            other => other?,
        }
        let code = PairingCode::derive(&fingerprint, &pin, &nonce, &server_nonce);
        display.show_code(&id, &code);
        let config = self
            .wait_for_decision(&pinned, &gate_url, &id, &mut state, options, display)
            .await?;
        self.finish(&mut state, options, &config)
    }

    /// Polls request `id` until it is decided (or `give_up_after`),
    /// retrying with a growing pause while the gate is unreachable.
    async fn wait_for_decision(
        &self,
        pinned: &HttpsClient,
        gate_url: &str,
        id: &str,
        state: &mut State,
        options: &PairOptions,
        display: &dyn PairingDisplay,
    ) -> Result<TerminalConfig, TerminalError> {
        let started = Instant::now();
        let mut backoff = Duration::from_secs(1);
        loop {
            let wait = match options.give_up_after {
                Some(limit) => options
                    .poll_wait
                    .min(limit.saturating_sub(started.elapsed())),
                None => options.poll_wait,
            };
            let url = format!("{gate_url}/v1/pairing/{id}?wait={}", wait.as_secs());
            match pinned.request("GET", &url, &[], None).await {
                Ok(r) => {
                    backoff = Duration::from_secs(1);
                    let answer = gate::request_status(&r)?;
                    match flow::on_status(state, id, answer) {
                        Ok(flow::Poll::Wait) => {}
                        Ok(flow::Poll::Paired(config)) => return Ok(config),
                        Err(e) => {
                            self.state.save(state)?;
                            return Err(e);
                        }
                    }
                }
                // A pinned-key mismatch is never retried.
                Err(e @ pairgate_tls::TlsError::PinMismatch(_)) => return Err(e.into()),
                Err(e) => {
                    display.progress(&format!("gate unreachable ({e}); retrying in {backoff:?}"));
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                }
            }
            if options
                .give_up_after
                .is_some_and(|limit| started.elapsed() >= limit)
            {
                return Err(TerminalError::StillWaiting(id.to_string()));
            }
        }
    }

    fn finish(
        &self,
        state: &mut State,
        options: &PairOptions,
        config: &TerminalConfig,
    ) -> Result<PairedConfig, TerminalError> {
        let mut paired = flow::finish(state, &options.gate, &options.serial, config)?;
        if options.trust_store {
            paired.trust_store = true;
            state.paired = Some(paired.clone());
        }
        self.state.save(state)?;
        Ok(paired)
    }

    /// Calls the master: `method path` with an optional JSON body, over
    /// mutual TLS with the paired server pins.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<HttpsResponse, TerminalError> {
        let (paired, trust) = self.paired()?;
        let url = format!("{}{path}", paired.master_url.trim_end_matches('/'));
        let headers: &[(&str, &str)] = if body.is_some() {
            &[("content-type", "application/json")]
        } else {
            &[]
        };
        match self
            .https(trust)?
            .request(method, &url, headers, body.clone())
            .await
        {
            // A key no pin names: the server may have rotated while this
            // terminal slept. Follow the chain from the gate, then retry
            // once with the pins it allows.
            Err(pairgate_tls::TlsError::PinMismatch(m)) if !paired.trust_store => {
                self.recover_server_key(m.presented).await?;
                let (_, trust) = self.paired()?;
                Ok(self
                    .https(trust)?
                    .request(method, &url, headers, body)
                    .await?)
            }
            other => Ok(other?),
        }
    }

    /// Sends a heartbeat to the master: the firmware, if given, and the
    /// next heartbeat counter when the server takes one (saved before it
    /// is sent, so a counter is never sent twice).
    pub async fn heartbeat(&self, firmware: Option<&str>) -> Result<HttpsResponse, TerminalError> {
        let mut state = self.state.load()?;
        let paired = state.paired.clone().ok_or(TerminalError::NotPaired)?;
        let counter = if paired.heartbeat_counter {
            state.heartbeat_counter = state.heartbeat_counter.saturating_add(1);
            self.state.save(&state)?;
            Some(state.heartbeat_counter)
        } else {
            None
        };
        let body = pairgate_proto::HeartbeatRequest {
            firmware: firmware.map(str::to_owned),
            counter,
        };
        let json = serde_json::to_vec(&body).map_err(|e| TerminalError::Io(e.to_string()))?;
        self.call("POST", "/v1/heartbeat", Some(json)).await
    }

    /// A mutual-TLS connection to the master, checked against the paired
    /// server pins, for firmware that speaks its own protocol over it.
    pub async fn master_stream(
        &self,
    ) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, TerminalError> {
        let (paired, trust) = self.paired()?;
        let url = &paired.master_url;
        let authority = url
            .strip_prefix("https://")
            .map(|rest| rest.split('/').next().unwrap_or(rest))
            .ok_or_else(|| TerminalError::Gate(format!("master URL {url} is not https://")))?;
        let addr = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            authority.to_owned()
        } else {
            format!("{authority}:443")
        };
        let tls = TlsClient::new(Some(self.identity(&self.alias())?), trust, &self.policy)?;
        Ok(tls.connect(&addr, None).await?)
    }

    /// The certificates of the trust store; refused when it is empty.
    fn trusted(&self) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, TerminalError> {
        let trusted = self.store.trusted()?;
        if trusted.is_empty() {
            return Err(TerminalError::Gate(
                "the trust store is empty: add the server's certificate, or its CA's, signed by \
                 a firmware root (`pairgate terminal trust add`)"
                    .into(),
            ));
        }
        Ok(trusted)
    }

    /// The paired configuration and the trust in its server: the pins, or
    /// the trust store when paired in trust-store mode.
    pub(crate) fn paired(&self) -> Result<(PairedConfig, ServerTrust), TerminalError> {
        let state = self.state.load()?;
        let paired = state.paired.ok_or(TerminalError::NotPaired)?;
        if paired.trust_store {
            return Ok((paired, ServerTrust::TrustStore(self.trusted()?)));
        }
        let pins = paired
            .server_pins
            .iter()
            .filter_map(|p| p.parse().ok())
            .collect();
        Ok((paired, ServerTrust::Pins(pins)))
    }

    /// Wipes every key, certificate and trust entry in the key store and
    /// the state (pins, pairing). Firmware roots are not in either.
    pub fn factory_reset(&self) -> Result<(), TerminalError> {
        self.store.factory_reset()?;
        self.forget_vpn_files()?;
        self.state.remove()
    }
}

/// What `init` made.
#[derive(Clone, Debug)]
pub enum Init {
    /// A certified key: its fingerprint.
    Certified(TerminalFingerprint),
    /// A CSR (PEM) to send to the CA.
    Csr(String),
}
