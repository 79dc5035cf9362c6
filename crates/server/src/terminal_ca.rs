//! The server's terminal CA (CA mode of the re-key): a key and CA
//! certificate under `terminal_ca_alias` in the identity key store
//! (PKCS#11 allowed), made by `pairgate admin terminal-ca init`. It
//! certifies re-key CSRs whose key proved possession, with the subject
//! fixed by the server (CN = the serial) and every extension its own
//! (clientAuth, digitalSignature, CA:FALSE): nothing of the request but
//! the key is kept, as EST's simplereenroll does.

use std::sync::Arc;
use std::time::SystemTime;

use pairgate_keystore::{Alias, KeyStore, StoreSigner};
use pairgate_pki::ca::RequestedKey;
use pairgate_pki::{CertificateAuthority, CertificateDer, Subject};

use crate::{ServerError, Settings};

/// The CA and how long its certificates last.
#[derive(Debug)]
pub(crate) struct TerminalCa {
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
        let store: Arc<dyn KeyStore> = Arc::from(crate::identity::open_existing(
            &settings.identity_keystore(),
            &settings.identity_passphrase_file(),
        )?);
        let alias = Alias::new(&settings.terminal_ca_alias)?;
        let certificate = store.certificate_chain(&alias)?.into_iter().next().ok_or_else(|| {
            ServerError::Identity(format!(
                "terminal_ca_alias {alias} has no CA certificate in the identity key store: run \
                 `pairgate admin terminal-ca init`"
            ))
        })?;
        // The certificate must be the key's.
        CertificateAuthority::from_parts(
            certificate.clone(),
            StoreSigner::new(store.as_ref(), &alias)?,
        )
        .map_err(|e| ServerError::Identity(format!("terminal CA {alias}: {e}")))?;
        Ok(Some(Self {
            store,
            alias,
            certificate,
            days: u32::try_from(settings.terminal_cert_days).unwrap_or(u32::MAX),
        }))
    }

    /// Certifies the key `spki_der` for terminal `serial`: returns the
    /// certificate and the CA's, DER.
    pub(crate) fn issue(
        &self,
        spki_der: &[u8],
        serial: &str,
        now: SystemTime,
    ) -> Result<[CertificateDer<'static>; 2], String> {
        let signer =
            StoreSigner::new(self.store.as_ref(), &self.alias).map_err(|e| e.to_string())?;
        let ca = CertificateAuthority::from_parts(self.certificate.clone(), signer)
            .map_err(|e| e.to_string())?;
        let subject = Subject::common_name(serial).map_err(|e| e.to_string())?;
        let request = RequestedKey::from_spki(spki_der, &subject).map_err(|e| e.to_string())?;
        let issued = ca
            .issue_client_certificate(&request, now, self.days)
            .map_err(|e| e.to_string())?;
        Ok([issued, self.certificate.clone()])
    }
}
