//! Test helpers shared by pairgate's test suites. OpenSSL is the interop
//! peer: certificates and CSRs our code makes are checked by it, and the
//! certificates our code must refuse (SHA-1 signed, weak keys) are made by
//! it, because our own code cannot make them.

#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[cfg(feature = "db")]
mod db;
pub mod fuzz;

#[cfg(feature = "db")]
pub use db::{AuditFields, forge_audit_record, fresh_postgres_database};

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub use tempfile::TempDir;

/// A fresh temporary directory, removed on drop.
pub fn temp_dir() -> TempDir {
    tempfile::Builder::new()
        .prefix("pairgate-test-")
        .tempdir()
        .expect("temp dir")
}

/// Runs `openssl` with `args` in `dir` and returns its output, whatever the
/// exit status.
pub fn openssl_output(dir: &Path, args: &[&str]) -> Output {
    Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed (scripts/test installs it)")
}

/// Runs `openssl` with `args` in `dir`, panicking with its stderr on failure.
pub fn openssl(dir: &Path, args: &[&str]) -> String {
    let out = openssl_output(dir, args);
    assert!(
        out.status.success(),
        "openssl {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An OpenSSL-made certificate authority in a directory: `NAME.key`,
/// `NAME.pem`.
pub struct OpensslCa {
    /// Directory holding the files.
    pub dir: PathBuf,
    /// Base name of the files.
    pub name: String,
}

impl OpensslCa {
    /// Creates a root CA with an EC P-256 key, signed with SHA-256.
    pub fn new(dir: &Path, name: &str) -> Self {
        openssl(
            dir,
            &[
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
                &format!("{name}.key"),
            ],
        );
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-new",
                "-key",
                &format!("{name}.key"),
                "-sha256",
                "-days",
                "30",
                "-subj",
                &format!("/CN={name}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
                "-out",
                &format!("{name}.pem"),
            ],
        );
        Self {
            dir: dir.to_path_buf(),
            name: name.to_owned(),
        }
    }

    /// Path of the CA certificate.
    pub fn cert_path(&self) -> PathBuf {
        self.dir.join(format!("{}.pem", self.name))
    }

    /// Issues a leaf for a new key of `key_spec` (an `openssl genpkey`
    /// algorithm option list such as `["-algorithm", "EC", "-pkeyopt",
    /// "ec_paramgen_curve:P-256"]`) signed with `digest` (`sha256`,
    /// `sha1`, ...). Returns the PEM path.
    pub fn issue(&self, leaf: &str, key_spec: &[&str], digest: &str) -> PathBuf {
        let dir = &self.dir;
        let key = format!("{leaf}.key");
        let mut args = vec!["genpkey"];
        args.extend_from_slice(key_spec);
        args.extend_from_slice(&["-out", &key]);
        openssl(dir, &args);
        let csr = format!("{leaf}.csr");
        openssl(
            dir,
            &[
                "req",
                "-new",
                "-key",
                &key,
                "-subj",
                &format!("/CN={leaf}"),
                "-out",
                &csr,
            ],
        );
        let pem = format!("{leaf}.pem");
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &format!("{}.pem", self.name),
                "-CAkey",
                &format!("{}.key", self.name),
                "-CAcreateserial",
                &format!("-{digest}"),
                "-days",
                "10",
                "-out",
                &pem,
            ],
        );
        dir.join(pem)
    }
}

/// `openssl genpkey` options for an EC P-256 key.
pub const P256: &[&str] = &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"];
/// `openssl genpkey` options for an RSA-1024 key (weak, to be refused).
pub const RSA1024: &[&str] = &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"];

/// OpenSSL's SHA-256 fingerprint of the PEM certificate at `path` (relative
/// to `dir`), as 64 lowercase hex digits.
pub fn openssl_sha256_fingerprint(dir: &Path, path: &str) -> String {
    let out = openssl(
        dir,
        &["x509", "-in", path, "-noout", "-fingerprint", "-sha256"],
    );
    let (_, hex) = out
        .split_once('=')
        .expect("openssl prints NAME=fingerprint");
    hex.trim().replace(':', "").to_lowercase()
}

/// A self-signed P-256 end-entity certificate (`CA:FALSE`; OpenSSL's own
/// default for `req -x509` is a CA certificate, which pairgate refuses as
/// a terminal identity) and key made by OpenSSL in `dir`: `NAME.pem` and
/// `NAME.key`, signed with `digest` (`sha256`, `sha1`, …).
pub fn openssl_self_signed(dir: &Path, name: &str, cn: &str, digest: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            &format!("-{digest}"),
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
            "-subj",
            &format!("/CN={cn}"),
            "-days",
            "10",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
        ],
    );
}

/// The TOTP code (RFC 6238: SHA-1, 6 digits, 30 s) of an `otpauth://` URI's
/// secret for time step `step`, as an authenticator app computes it.
pub fn totp_code(otpauth_uri: &str, step: u64) -> String {
    let secret = otpauth_uri
        .split("secret=")
        .nth(1)
        .and_then(|rest| rest.split('&').next())
        .expect("the otpauth URI has a secret");
    let bytes = totp_rs::Secret::Encoded(secret.to_owned())
        .to_bytes()
        .expect("the TOTP secret is base32");
    totp_rs::TOTP::new(totp_rs::Algorithm::SHA1, 6, 1, 30, bytes)
        .expect("a valid TOTP secret")
        .generate(step * 30)
}

/// The current TOTP time step.
pub fn totp_step_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() / 30)
        .unwrap_or(0)
}
