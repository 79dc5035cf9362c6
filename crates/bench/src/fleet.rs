//! The simulated terminals: keys and client certificates from a throwaway
//! bench CA (so that nginx can verify them with `ssl_verify_client on`
//! while pairgate pins them by fingerprint), registered in the server's
//! store and paired through the real protocol: the gate request, the
//! nonce reveal, and an operator's approval with the pairing code and a
//! fresh TOTP code.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use pairgate_pki::ca::{CertificateAuthority, RequestedKey};
use pairgate_pki::{Nonce, PairingCode, SpkiPin, Subject, TerminalFingerprint};
use pairgate_store::{Actor, NewTerminal, Role, Store};
use pairgate_terminal::gate;
use pairgate_tls::client::{ServerTrust, TlsClient};
use pairgate_tls::https::HttpsClient;
use pairgate_tls::{TlsPolicy, pem_certified_key};
use rcgen::{KeyPair, PublicKeyData};
use rustls::sign::CertifiedKey;

/// The bench CA, trusted by nginx; pairgate ignores chains.
pub struct BenchCa {
    ca: CertificateAuthority<KeyPair>,
}

/// A PEM certificate and its private key, for nginx.
pub struct PemIdentity {
    /// The SPKI pin of its key.
    pub pin: SpkiPin,
    /// Certificate, PEM.
    pub certificate: String,
    /// Private key, PKCS#8 PEM.
    pub key: String,
}

impl BenchCa {
    /// A new P-256 root valid for a day.
    pub fn new() -> Result<Self> {
        let ca = CertificateAuthority::new_root(
            KeyPair::generate()?,
            &Subject::common_name("pairgate bench CA")?,
            SystemTime::now(),
            1,
        )?;
        Ok(Self { ca })
    }

    /// The CA certificate, PEM.
    pub fn certificate_pem(&self) -> String {
        pairgate_pki::certificate::certificate_pem(self.ca.certificate())
    }

    /// A P-256 server certificate for `localhost` (nginx's identity).
    pub fn server_identity(&self) -> Result<PemIdentity> {
        let key = KeyPair::generate()?;
        let request = RequestedKey::from_spki(
            &key.subject_public_key_info(),
            &Subject::common_name("localhost")?,
        )?;
        let der = self.ca.issue_server_certificate(
            &request,
            &["localhost".to_owned()],
            &["127.0.0.1".parse()?],
            SystemTime::now(),
            1,
        )?;
        Ok(PemIdentity {
            pin: SpkiPin::of_certificate(&der)?,
            certificate: pairgate_pki::certificate::certificate_pem(&der),
            key: key.serialize_pem(),
        })
    }

    /// `count` terminals with serials `{prefix}-00000`, … and P-256 keys.
    pub fn terminals(&self, prefix: &str, count: usize) -> Result<Vec<BenchTerminal>> {
        (0..count)
            .map(|i| {
                let serial = format!("{prefix}-{i:05}");
                let key = KeyPair::generate()?;
                let request = RequestedKey::from_spki(
                    &key.subject_public_key_info(),
                    &Subject::common_name(&serial)?,
                )?;
                let der = self
                    .ca
                    .issue_client_certificate(&request, SystemTime::now(), 1)?;
                BenchTerminal::new(serial, &der, &key)
            })
            .collect()
    }

    /// A self-signed terminal whose certificate carries `pad` bytes in a
    /// private extension: hostile clients' large certificates.
    pub fn padded_terminal(&self, name: &str, pad: usize) -> Result<BenchTerminal> {
        self_signed(name, |params| {
            let mut value = vec![0x04, 0x83];
            value.extend_from_slice(&u32::try_from(pad)?.to_be_bytes()[1..]);
            value.resize(value.len() + pad, 0x41);
            params
                .custom_extensions
                .push(rcgen::CustomExtension::from_oid_content(
                    &[1, 3, 6, 1, 4, 1, 55555, 1],
                    value,
                ));
            Ok(())
        })
    }

    /// A self-signed certificate marked CA:TRUE, offered as a terminal's.
    pub fn ca_terminal(&self, name: &str) -> Result<BenchTerminal> {
        self_signed(name, |params| {
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            Ok(())
        })
    }
}

/// A self-signed P-256 terminal certificate that `tweak` changes first.
/// A terminal with a fresh P-256 key and a self-signed certificate for
/// it, as the agent makes in self-signed mode.
pub fn self_signed_terminal(serial: &str) -> Result<BenchTerminal> {
    self_signed(serial, |_| Ok(()))
}

fn self_signed(
    name: &str,
    tweak: impl FnOnce(&mut rcgen::CertificateParams) -> Result<()>,
) -> Result<BenchTerminal> {
    let key = KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    tweak(&mut params)?;
    let cert = params.self_signed(&key)?;
    BenchTerminal::new(name.to_owned(), cert.der(), &key)
}

/// One simulated terminal.
#[derive(Clone)]
pub struct BenchTerminal {
    /// Its serial.
    pub serial: String,
    /// Key and certificate.
    pub key: Arc<CertifiedKey>,
    /// Fingerprint of the certificate.
    pub fingerprint: TerminalFingerprint,
}

impl BenchTerminal {
    fn new(serial: String, der: &[u8], key: &KeyPair) -> Result<Self> {
        let provider = TlsPolicy::default().provider();
        let pem = pairgate_pki::certificate::certificate_pem(der);
        let key = pem_certified_key(&provider, pem.as_bytes(), key.serialize_pem().as_bytes())?;
        Ok(Self {
            fingerprint: TerminalFingerprint::of_certificate(der),
            serial,
            key,
        })
    }

    /// A client of this terminal that takes any server key, without
    /// resumption: an attacker's, which pins nothing.
    pub fn client_any(&self) -> Result<TlsClient> {
        Ok(TlsClient::new(
            Some(self.key.clone()),
            ServerTrust::FirstContact,
            &TlsPolicy::default(),
        )?
        .without_resumption())
    }

    /// A TLS client of this terminal that trusts `pin`.
    pub fn client(&self, pin: SpkiPin, policy: &TlsPolicy) -> Result<TlsClient> {
        Ok(TlsClient::new(
            Some(self.key.clone()),
            ServerTrust::Pins(vec![pin]),
            policy,
        )?)
    }
}

/// Registers every terminal (as the operator "bench"), each in its own
/// audited transaction as `pairgate admin terminal add` would.
pub async fn register(store: &Store, terminals: &[BenchTerminal]) -> Result<()> {
    let actor = pairgate_store::Changer::local("bench");
    for t in terminals {
        let new = NewTerminal {
            serial: t.serial.clone(),
            name: format!("bench {}", t.serial),
            ..NewTerminal::default()
        };
        store
            .register_terminal(&new, &actor, SystemTime::now())
            .await
            .with_context(|| format!("registering {}", t.serial))?;
    }
    Ok(())
}

/// Operators who approve pairings, each with the authenticator an
/// operator would hold. A TOTP code is accepted once, within one step of
/// the server's now. Codes are drawn for the current step and the next
/// only (a code of the previous step would be refused if a step boundary
/// passed before the server checks it), so each operator approves at most
/// two terminals per 30 s and more operators are created as needed.
pub struct Approvers {
    prefix: String,
    operators: Vec<Authenticator>,
}

struct Authenticator {
    name: String,
    totp: totp_rs::TOTP,
    last_step: Option<u64>,
}

/// The TOTP step of now.
fn current_step() -> Result<u64> {
    Ok(SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)?
        .as_secs()
        / 30)
}

impl Approvers {
    /// Operators named `{prefix}-N`.
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            operators: Vec::new(),
        }
    }

    /// A fresh TOTP code and the operator it belongs to.
    async fn fresh_code(&mut self, store: &Store) -> Result<(String, String)> {
        let current = current_step()?;
        for op in &mut self.operators {
            let step = op.last_step.map_or(current, |s| (s + 1).max(current));
            if step <= current + 1 {
                op.last_step = Some(step);
                return Ok((op.name.clone(), op.totp.generate(step * 30)));
            }
        }
        let name = format!("{}-{}", self.prefix, self.operators.len());
        let created = store
            .create_operator(
                &name,
                Role::Operator,
                &Actor::new("bench"),
                SystemTime::now(),
            )
            .await
            .with_context(|| format!("creating operator {name}"))?;
        let secret = created
            .totp_uri
            .split("secret=")
            .nth(1)
            .and_then(|rest| rest.split('&').next())
            .context("the otpauth URI has no secret")?;
        let bytes = totp_rs::Secret::Encoded(secret.to_owned())
            .to_bytes()
            .map_err(|e| anyhow::anyhow!("TOTP secret: {e:?}"))?;
        let totp = totp_rs::TOTP::new(totp_rs::Algorithm::SHA1, 6, 1, 30, bytes)?;
        // Creating the operator took time: the step is read again.
        let step = current_step()?;
        let code = totp.generate(step * 30);
        self.operators.push(Authenticator {
            name: name.clone(),
            totp,
            last_step: Some(step),
        });
        Ok((name, code))
    }
}

/// Registers `terminals` and pairs each through the gate at `gate` (whose
/// key is `pin`) with the terminal agent's own protocol calls (request,
/// reveal), then approves it in the store by its code and a fresh TOTP
/// code of one of `approvers`.
pub async fn enrol(
    store: &Store,
    approvers: &mut Approvers,
    gate: &str,
    pin: SpkiPin,
    terminals: &[BenchTerminal],
) -> Result<()> {
    register(store, terminals).await?;
    let policy = TlsPolicy::default();
    let gate_url = format!("https://{gate}");
    for t in terminals {
        let https = HttpsClient::new(t.client(pin, &policy)?.without_resumption());
        let nonce = Nonce::random();
        let hello = gate::Hello {
            serial: &t.serial,
            model: "bench",
            firmware: "1.0",
            commitment: nonce.commitment(),
        };
        let answer = gate::answer(&gate::ask(&https, &gate_url, &hello).await?)
            .with_context(|| format!("asking to pair {}", t.serial))?;
        let gate::Answer::Pending {
            request_id,
            server_nonce,
        } = answer
        else {
            bail!("{} was already paired before the bench paired it", t.serial);
        };
        gate::reveal(&https, &gate_url, &request_id, &nonce).await?;
        let code = PairingCode::derive(&t.fingerprint, &pin, &nonce, &server_nonce);
        let (operator, totp) = approvers.fresh_code(store).await?;
        let now = SystemTime::now();
        let proof = store.verify_second_factor(&operator, &totp, now).await?;
        store
            .approve_pairing(&request_id, &code, &proof, now)
            .await?;
    }
    Ok(())
}

/// Waits until the master at `master` answers 200 to `terminal`: the
/// server has reloaded its paired set.
pub async fn wait_paired(master: &str, pin: SpkiPin, terminal: &BenchTerminal) -> Result<()> {
    let https = HttpsClient::new(
        terminal
            .client(pin, &TlsPolicy::default())?
            .without_resumption(),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let r = https
            .request("GET", &format!("https://{master}/v1/me"), &[], None)
            .await;
        if matches!(&r, Ok(r) if r.status == 200) {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "the master at {master} still refuses {} after 15 s",
                terminal.serial
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
