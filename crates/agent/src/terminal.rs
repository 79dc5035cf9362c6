//! `pairgate terminal …`: the terminal's key store (keys, CSRs,
//! certificates), its fingerprint, and its trust store; the agent's
//! commands are in `agent.rs`.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use pairgate_keystore::{Alias, KeyStore, KeyStoreUri, Passphrase};
use pairgate_pki::certificate::{certificate_pem, csr_pem};
use pairgate_pki::{CertificateFingerprint, CertificateInfo, FirmwareRoots, KeyAlgorithm, Subject};
use serde_json::json;

use crate::output::Output;

/// Environment variable holding the software key store's passphrase.
const PASSPHRASE_ENV: &str = "PAIRGATE_KEYSTORE_PASSPHRASE";

/// The terminal's global options (state directory, key store, firmware
/// roots) and one command.
#[derive(Args, Debug)]
pub struct TerminalArgs {
    /// Terminal state directory; the software key store defaults to
    /// `file:<state>/keys`.
    #[arg(long, env = "PAIRGATE_STATE", global = true)]
    pub(crate) state: Option<PathBuf>,

    /// Key store URI: `file:/path/to/dir` or
    /// `pkcs11:token=…?module-path=…&pin-source=file:…`.
    #[arg(long, env = "PAIRGATE_KEYSTORE", global = true)]
    keystore: Option<String>,

    /// File holding the software key store passphrase (or a key file).
    /// Otherwise PAIRGATE_KEYSTORE_PASSPHRASE. Never given as an argument.
    #[arg(long, global = true)]
    passphrase_file: Option<PathBuf>,

    /// PEM bundle of the firmware roots (acquirer and vendor roots) that
    /// must have signed every trust-store certificate.
    #[arg(long, env = "PAIRGATE_FIRMWARE_ROOTS", global = true)]
    firmware_roots: Option<PathBuf>,

    #[command(subcommand)]
    command: TerminalCommand,
}

#[derive(Subcommand, Debug)]
enum TerminalCommand {
    /// Keys and their certificates.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// The Terminal Certificate Fingerprint of an alias.
    Fingerprint {
        /// Key alias (default: the URI's object=, else "terminal").
        #[arg(long)]
        alias: Option<String>,
    },
    /// The trust store of server and CA certificates.
    #[command(subcommand)]
    Trust(TrustCommand),
    #[command(flatten)]
    Agent(crate::agent::AgentCommand),
}

#[derive(Subcommand, Debug)]
enum KeysCommand {
    /// Generates a key inside the key store.
    Generate {
        /// Key alias (default: the URI's object=, else "terminal").
        #[arg(long)]
        alias: Option<String>,
        /// p256, rsa2048 or rsa3072.
        #[arg(long, default_value = "p256")]
        algorithm: KeyAlgorithm,
    },
    /// Lists the aliases in the key store.
    List,
    /// Prints a CSR (PEM) for an alias, signed inside the key store.
    Csr {
        /// Key alias.
        #[arg(long)]
        alias: Option<String>,
        /// Subject, e.g. "CN=ATM-0042, O=Operator, C=CZ".
        #[arg(long)]
        subject: Subject,
    },
    /// Makes and sets a self-signed client certificate for an alias.
    SelfSigned {
        /// Key alias.
        #[arg(long)]
        alias: Option<String>,
        /// Subject (default: CN=<alias>).
        #[arg(long)]
        subject: Option<Subject>,
        /// Validity in days.
        #[arg(long, default_value_t = 3650)]
        days: u32,
    },
    /// Sets an alias's certificate chain (PEM, leaf first); refused unless
    /// the leaf certifies the alias's key.
    ImportCert {
        /// Key alias.
        #[arg(long)]
        alias: Option<String>,
        /// PEM or DER file.
        file: PathBuf,
    },
    /// Prints an alias's certificate chain as PEM, leaf first (for a CA,
    /// or to check it with openssl); `--der` writes the leaf alone in DER.
    Cert {
        /// Key alias.
        #[arg(long)]
        alias: Option<String>,
        /// The leaf in DER on standard output instead of the chain in PEM.
        #[arg(long)]
        der: bool,
    },
    /// Deletes an alias's key and certificates.
    Delete {
        /// Key alias.
        #[arg(long)]
        alias: String,
    },
}

#[derive(Subcommand, Debug)]
enum TrustCommand {
    /// Adds a certificate signed by a firmware root.
    Add {
        /// PEM or DER file with one certificate.
        file: PathBuf,
    },
    /// Lists the trust store.
    List,
    /// Removes a certificate by its SHA-256 fingerprint.
    Remove {
        /// 64 hex digits (spaces or colons allowed).
        fingerprint: CertificateFingerprint,
    },
}

impl TerminalArgs {
    pub(crate) fn uri(&self) -> Result<KeyStoreUri> {
        match (&self.keystore, &self.state) {
            (Some(uri), _) => Ok(uri.parse()?),
            (None, Some(state)) => Ok(KeyStoreUri::File(state.join("keys"))),
            (None, None) => bail!("no key store: give --keystore URI or --state DIR"),
        }
    }

    pub(crate) fn passphrase(&self) -> Result<Option<Passphrase>> {
        if let Some(file) = &self.passphrase_file {
            return Ok(Some(Passphrase::from_file(file)?));
        }
        Ok(Passphrase::from_env(PASSPHRASE_ENV)?)
    }

    pub(crate) fn open(&self, create: bool) -> Result<(Box<dyn KeyStore>, KeyStoreUri)> {
        let uri = self.uri()?;
        let passphrase = match &uri {
            KeyStoreUri::File(_) => self.passphrase()?,
            KeyStoreUri::Pkcs11(_) => None,
        };
        let store = pairgate_keystore::open(&uri, passphrase, create)
            .with_context(|| format!("opening key store {uri}"))?;
        Ok((store, uri))
    }

    fn roots(&self) -> Result<FirmwareRoots> {
        let path = self.firmware_roots.as_ref().context(
            "the trust store needs the firmware roots: give --firmware-roots FILE (PEM bundle)",
        )?;
        let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        FirmwareRoots::from_pem(&pem)
            .with_context(|| format!("firmware roots in {}", path.display()))
    }
}

fn certificate_json(info: &CertificateInfo) -> serde_json::Value {
    json!({
        "fingerprint": info.fingerprint,
        "subject": info.subject,
        "issuer": info.issuer,
        "not_before": info.not_before,
        "not_after": info.not_after,
        "signature_algorithm": info.signature_algorithm,
        "public_key": info.public_key,
    })
}

/// Runs one terminal command.
pub fn run(args: TerminalArgs, out: &Output) -> Result<()> {
    match &args.command {
        TerminalCommand::Keys(cmd) => keys(&args, cmd, out),
        TerminalCommand::Fingerprint { alias } => {
            let (store, alias) = store_and_alias(&args, alias.as_deref(), false)?;
            let fp = pairgate_keystore::terminal_fingerprint(store.as_ref(), &alias)?;
            out.print(
                format!("{}\n{}", fp.grouped(), fp),
                json!({ "alias": alias, "fingerprint": fp }),
            );
            Ok(())
        }
        TerminalCommand::Trust(cmd) => trust(&args, cmd, out),
        TerminalCommand::Agent(cmd) => crate::agent::run(&args, cmd, out),
    }
}

/// Opens the key store and resolves an alias (the URI's `object=`, else
/// "terminal", when none is given).
fn store_and_alias(
    args: &TerminalArgs,
    alias: Option<&str>,
    create: bool,
) -> Result<(Box<dyn KeyStore>, Alias)> {
    let (store, uri) = args.open(create)?;
    let alias = uri.alias(alias)?;
    Ok((store, alias))
}

fn keys(args: &TerminalArgs, cmd: &KeysCommand, out: &Output) -> Result<()> {
    match cmd {
        KeysCommand::Generate { alias, algorithm } => {
            let (store, alias) = store_and_alias(args, alias.as_deref(), true)?;
            let public = store.generate_key(&alias, *algorithm)?;
            out.print(
                format!("generated {algorithm} key {alias} in {}\npublic key pin {}", store.describe(), public.pin()),
                json!({ "alias": alias, "algorithm": algorithm, "public_key_pin": public.pin(), "keystore": store.describe() }),
            );
        }
        KeysCommand::List => list_keys(args.open(false)?.0.as_ref(), out)?,
        KeysCommand::Csr { alias, subject } => {
            let (store, alias) = store_and_alias(args, alias.as_deref(), false)?;
            let csr = pairgate_keystore::certificate_request(store.as_ref(), &alias, subject)?;
            let pem = csr_pem(&csr);
            out.print(&pem, json!({ "alias": alias, "csr": pem }));
        }
        KeysCommand::SelfSigned {
            alias,
            subject,
            days,
        } => {
            let (store, alias) = store_and_alias(args, alias.as_deref(), false)?;
            self_signed(store.as_ref(), &alias, subject.as_ref(), *days, out)?;
        }
        KeysCommand::ImportCert { alias, file } => {
            let (store, alias) = store_and_alias(args, alias.as_deref(), false)?;
            import_cert(store.as_ref(), &alias, file, out)?;
        }
        KeysCommand::Cert { alias, der } => {
            let (store, alias) = store_and_alias(args, alias.as_deref(), false)?;
            print_cert(store.as_ref(), &alias, *der, out)?;
        }
        KeysCommand::Delete { alias } => {
            let (store, _) = args.open(false)?;
            let alias = Alias::new(alias)?;
            store.delete(&alias)?;
            out.print(
                format!("deleted {alias}"),
                json!({ "alias": alias, "deleted": true }),
            );
        }
    }
    Ok(())
}

fn list_keys(store: &dyn KeyStore, out: &Output) -> Result<()> {
    let entries = store.aliases()?;
    let mut text = String::new();
    for e in &entries {
        let cert = e
            .certificate
            .map(|c| c.to_hex())
            .unwrap_or_else(|| "no certificate".to_owned());
        text.push_str(&format!(
            "{:<24} {:<8} key {}  cert {}\n",
            e.alias, e.algorithm, e.public_key_pin, cert
        ));
    }
    if entries.is_empty() {
        text.push_str("no keys\n");
    }
    out.print(text, json!(entries));
    Ok(())
}

fn self_signed(
    store: &dyn KeyStore,
    alias: &Alias,
    subject: Option<&Subject>,
    days: u32,
    out: &Output,
) -> Result<()> {
    let subject = match subject {
        Some(s) => s.clone(),
        None => Subject::common_name(alias.as_str())?,
    };
    let cert = pairgate_keystore::self_signed_certificate(
        store,
        alias,
        &subject,
        SystemTime::now(),
        days,
    )?;
    let info = CertificateInfo::parse(&cert)?;
    out.print(
        format!("self-signed certificate set for {alias}\nfingerprint {}", info.fingerprint.grouped()),
        json!({ "alias": alias, "certificate": certificate_json(&info), "pem": certificate_pem(&cert) }),
    );
    Ok(())
}

fn import_cert(store: &dyn KeyStore, alias: &Alias, file: &Path, out: &Output) -> Result<()> {
    let input = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let chain = pairgate_keystore::import_certificate_chain(store, alias, &input)
        .with_context(|| format!("importing {} for alias {alias}", file.display()))?;
    let leaf = chain.first().context("empty chain")?;
    let info = CertificateInfo::parse(leaf)?;
    out.print(
        format!(
            "certificate chain of {} certificate(s) set for {alias}\nfingerprint {}",
            chain.len(),
            info.fingerprint.grouped()
        ),
        json!({ "alias": alias, "chain_length": chain.len(), "certificate": certificate_json(&info) }),
    );
    Ok(())
}

fn print_cert(store: &dyn KeyStore, alias: &Alias, der: bool, out: &Output) -> Result<()> {
    let chain = store.certificate_chain(alias)?;
    let Some(leaf) = chain.first() else {
        bail!(
            "alias {alias} has no certificate: make one with keys self-signed, or import one with keys import-cert"
        );
    };
    if der {
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(leaf).context("writing the certificate")?;
        stdout.flush().context("writing the certificate")?;
    } else {
        let pems: Vec<String> = chain.iter().map(|c| certificate_pem(c)).collect();
        out.print(
            pems.concat().trim_end(),
            json!({ "alias": alias, "chain": pems }),
        );
    }
    Ok(())
}

fn trust(args: &TerminalArgs, cmd: &TrustCommand, out: &Output) -> Result<()> {
    match cmd {
        TrustCommand::Add { file } => {
            let roots = args.roots()?;
            let (store, _) = args.open(true)?;
            let input =
                std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
            let trusted = pairgate_keystore::add_trusted_certificate(
                store.as_ref(),
                &roots,
                &input,
                SystemTime::now(),
            )
            .with_context(|| format!("adding {} to the trust store", file.display()))?;
            let info = trusted.info();
            out.print(
                format!(
                    "trusted {}\nfingerprint {}\nsigned by firmware root {}",
                    info.subject,
                    info.fingerprint.grouped(),
                    trusted.signed_by()
                ),
                json!({ "certificate": certificate_json(info), "signed_by": trusted.signed_by() }),
            );
        }
        TrustCommand::List => {
            let (store, _) = args.open(false)?;
            let mut text = String::new();
            let mut list = Vec::new();
            for der in store.trusted()? {
                let info = CertificateInfo::parse(&der)?;
                text.push_str(&format!(
                    "{}  {}  (until {})\n",
                    info.fingerprint, info.subject, info.not_after
                ));
                list.push(certificate_json(&info));
            }
            if list.is_empty() {
                text.push_str("the trust store is empty\n");
            }
            out.print(text, json!(list));
        }
        TrustCommand::Remove { fingerprint } => {
            let (store, _) = args.open(false)?;
            store.remove_trusted(fingerprint)?;
            out.print(
                format!("removed {fingerprint}"),
                json!({ "fingerprint": fingerprint, "removed": true }),
            );
        }
    }
    Ok(())
}
