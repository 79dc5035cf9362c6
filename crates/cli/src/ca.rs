//! `pairgate ca …`: a development certificate authority for the
//! acquirer's role. Its key is a plain PEM file (mode 0600) in its
//! directory: good for development and tests, not for production, where
//! the acquirer's CA keeps its key in an HSM.

use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use pairgate_pki::ca::{CertificateAuthority, RequestedKey};
use pairgate_pki::certificate::{certificate_pem, parse_certificates, parse_csr};
use pairgate_pki::{CertificateInfo, Subject};
use rcgen::KeyPair;
use serde_json::json;

use pairgate_agent::Output;

const CA_CERT: &str = "ca.pem";
const CA_KEY: &str = "ca-key.pem";

#[derive(Args, Debug)]
pub struct CaArgs {
    #[command(subcommand)]
    command: CaCommand,
}

#[derive(Subcommand, Debug)]
enum CaCommand {
    /// Creates a CA: DIR/ca.pem and its key DIR/ca-key.pem.
    Init {
        /// The CA's directory.
        #[arg(long)]
        dir: PathBuf,
        /// The CA's subject.
        #[arg(long, default_value = "CN=pairgate development CA")]
        subject: Subject,
        /// Validity in days.
        #[arg(long, default_value_t = 3650)]
        days: u32,
    },
    /// Issues a terminal client certificate for a CSR (PEM to stdout).
    /// Only the CSR's subject and key are used; every extension is the CA's.
    SignCsr {
        /// The CA's directory.
        #[arg(long)]
        dir: PathBuf,
        /// The CSR file (PEM or DER).
        file: PathBuf,
        /// Validity in days.
        #[arg(long, default_value_t = 825)]
        days: u32,
    },
    /// Issues a server certificate (PEM to stdout), for a CSR or for a new
    /// key written to --key-out.
    SignServerCert {
        /// The CA's directory.
        #[arg(long)]
        dir: PathBuf,
        /// DNS names (repeatable).
        #[arg(long = "dns")]
        dns_names: Vec<String>,
        /// IP addresses (repeatable).
        #[arg(long = "ip")]
        ip_addresses: Vec<IpAddr>,
        /// CSR of the server's key (PEM or DER).
        #[arg(long, conflicts_with = "key_out")]
        csr: Option<PathBuf>,
        /// Generate a P-256 key and write it here (PKCS#8 PEM, mode 0600).
        #[arg(long, required_unless_present = "csr")]
        key_out: Option<PathBuf>,
        /// Subject for a new key (default: CN=<first DNS name or IP>); with
        /// --csr the CSR's subject is used.
        #[arg(long, conflicts_with = "csr")]
        subject: Option<Subject>,
        /// Validity in days.
        #[arg(long, default_value_t = 397)]
        days: u32,
    },
}

/// Writes `contents` to a new file `path` (mode 0600), refusing to
/// overwrite one; the identity commands write their files with it too.
pub(crate) fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| {
            format!(
                "creating {} (refusing to overwrite an existing file)",
                path.display()
            )
        })?;
    file.write_all(contents)?;
    file.sync_all()?;
    Ok(())
}

fn load(dir: &Path) -> Result<CertificateAuthority<KeyPair>> {
    let cert_path = dir.join(CA_CERT);
    let key_path = dir.join(CA_KEY);
    let cert = std::fs::read(&cert_path).with_context(|| {
        format!(
            "reading {} (run pairgate ca init first)",
            cert_path.display()
        )
    })?;
    let cert = parse_certificates(&cert)?
        .into_iter()
        .next()
        .context("no CA certificate")?;
    let key = std::fs::read_to_string(&key_path)
        .with_context(|| format!("reading {}", key_path.display()))?;
    let key = KeyPair::from_pem(&key)
        .with_context(|| format!("{} is not a private key", key_path.display()))?;
    Ok(CertificateAuthority::from_parts(cert, key)?)
}

fn print_issued(out: &Output, cert: &[u8]) -> Result<()> {
    let info = CertificateInfo::parse(cert)?;
    let pem = certificate_pem(cert);
    out.print(&pem, json!({ "certificate": pem, "fingerprint": info.fingerprint, "subject": info.subject, "not_after": info.not_after }));
    Ok(())
}

pub fn run(args: CaArgs, out: &Output) -> Result<()> {
    let now = SystemTime::now();
    match args.command {
        CaCommand::Init { dir, subject, days } => {
            if dir.join(CA_CERT).exists() || dir.join(CA_KEY).exists() {
                bail!(
                    "{} already holds a CA; refusing to replace it",
                    dir.display()
                );
            }
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let key = KeyPair::generate()?;
            let key_pem = key.serialize_pem();
            let ca = CertificateAuthority::new_root(key, &subject, now, days)?;
            write_private(&dir.join(CA_KEY), key_pem.as_bytes())?;
            std::fs::write(dir.join(CA_CERT), certificate_pem(ca.certificate()))?;
            let info = CertificateInfo::parse(ca.certificate())?;
            out.print(
                format!("CA {} created in {}\nfingerprint {}", info.subject, dir.display(), info.fingerprint.grouped()),
                json!({ "certificate": dir.join(CA_CERT), "key": dir.join(CA_KEY), "fingerprint": info.fingerprint, "subject": info.subject }),
            );
        }
        CaCommand::SignCsr { dir, file, days } => {
            let ca = load(&dir)?;
            let input =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let request = RequestedKey::from_csr(&parse_csr(&input)?)
                .with_context(|| format!("checking {}", file.display()))?;
            let cert = ca.issue_client_certificate(&request, now, days)?;
            print_issued(out, &cert)?;
        }
        CaCommand::SignServerCert {
            dir,
            dns_names,
            ip_addresses,
            csr,
            key_out,
            subject,
            days,
        } => {
            let ca = load(&dir)?;
            let default_cn = dns_names
                .first()
                .cloned()
                .or_else(|| ip_addresses.first().map(|ip| ip.to_string()))
                .context("give at least one --dns NAME or --ip ADDRESS")?;
            let subject = match subject {
                Some(s) => s,
                None => Subject::common_name(&default_cn)?,
            };
            let request = match (csr, key_out) {
                (Some(csr), _) => {
                    let input = std::fs::read(&csr)
                        .with_context(|| format!("reading {}", csr.display()))?;
                    RequestedKey::from_csr(&parse_csr(&input)?)?
                }
                (None, Some(key_out)) => {
                    let key = KeyPair::generate()?;
                    write_private(&key_out, key.serialize_pem().as_bytes())?;
                    RequestedKey::from_spki(
                        &rcgen::PublicKeyData::subject_public_key_info(&key),
                        &subject,
                    )?
                }
                (None, None) => bail!("give --csr FILE or --key-out FILE"),
            };
            let cert =
                ca.issue_server_certificate(&request, &dns_names, &ip_addresses, now, days)?;
            print_issued(out, &cert)?;
        }
    }
    Ok(())
}
