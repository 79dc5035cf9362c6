//! The server's terminal CA (CA mode of the re-key): a key and CA
//! certificate under `terminal_ca_alias` in the identity key store
//! (PKCS#11 allowed), made by `pairgate admin terminal-ca init`. It
//! certifies re-key CSRs whose key proved possession, with the subject
//! fixed by the server (CN = the serial) and every extension its own
//! (clientAuth, digitalSignature, CA:FALSE): nothing of the request but
//! the key is kept, as EST's simplereenroll does. The VPN CA (OpenVPN)
//! is the same kind of CA under `vpn_ca_alias`.

use std::sync::Arc;
use std::time::SystemTime;

use pairgate_keystore::{Alias, KeyStore, StoreSigner};
use pairgate_pki::ca::RequestedKey;
use pairgate_pki::{CertificateAuthority, CertificateDer, Subject};

use crate::{ServerError, Settings};

/// The CA and how long its certificates last.
#[derive(Debug)]
pub struct TerminalCa {
    store: Arc<dyn KeyStore>,
    alias: Alias,
    certificate: CertificateDer<'static>,
    days: u32,
}

impl TerminalCa {
    /// The CA `settings` name, or `None` when `terminal_ca_alias` is empty;
    /// refused when the alias holds no key or no certificate.
    pub(crate) fn from_settings(settings: &Settings) -> Result<Option<Self>, ServerError> {
        if settings.terminal_ca_alias.is_empty() {
            return Ok(None);
        }
        let days = u32::try_from(settings.terminal_cert_days).unwrap_or(u32::MAX);
        Self::open(
            settings,
            &settings.terminal_ca_alias,
            days,
            "admin terminal-ca init",
        )
        .map(Some)
    }

    /// The CA under `alias` in the identity key store, issuing for `days`;
    /// refused, naming the command `init` that makes it, when the alias
    /// holds no key or no certificate of that key.
    pub fn open(
        settings: &Settings,
        alias: &str,
        days: u32,
        init: &str,
    ) -> Result<Self, ServerError> {
        let store: Arc<dyn KeyStore> = Arc::from(crate::identity::open_existing(
            &settings.identity_keystore(),
            &settings.identity_passphrase_file(),
        )?);
        let alias = Alias::new(alias)?;
        let certificate = store
            .certificate_chain(&alias)?
            .into_iter()
            .next()
            .ok_or_else(|| {
                ServerError::Identity(format!(
                    "{alias} has no CA certificate in the identity key store: run `pairgate {init}`"
                ))
            })?;
        // The certificate must be the key's.
        CertificateAuthority::from_parts(
            certificate.clone(),
            StoreSigner::new(store.as_ref(), &alias)?,
        )
        .map_err(|e| ServerError::Identity(format!("CA {alias}: {e}")))?;
        Ok(Self {
            store,
            alias,
            certificate,
            days,
        })
    }

    /// The CA certificate.
    pub fn certificate(&self) -> &CertificateDer<'static> {
        &self.certificate
    }

    /// The CA with its key, to sign with (e.g. a CRL).
    pub fn authority(&self) -> Result<CertificateAuthority<StoreSigner<'_>>, String> {
        let signer =
            StoreSigner::new(self.store.as_ref(), &self.alias).map_err(|e| e.to_string())?;
        CertificateAuthority::from_parts(self.certificate.clone(), signer)
            .map_err(|e| e.to_string())
    }

    /// Certifies the key `spki_der` for terminal `serial`: returns the
    /// certificate and the CA's, DER.
    pub fn issue(
        &self,
        spki_der: &[u8],
        serial: &str,
        now: SystemTime,
    ) -> Result<[CertificateDer<'static>; 2], String> {
        let ca = self.authority()?;
        let subject = Subject::common_name(serial).map_err(|e| e.to_string())?;
        let request = RequestedKey::from_spki(spki_der, &subject).map_err(|e| e.to_string())?;
        let issued = ca
            .issue_client_certificate(&request, now, self.days)
            .map_err(|e| e.to_string())?;
        Ok([issued, self.certificate.clone()])
    }
}
