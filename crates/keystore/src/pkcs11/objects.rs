//! How pairgate names its objects on a token it may share with other
//! applications (the seed's payment terminal shares its HSM with the
//! payment application). An alias's key pair and certificates carry
//! `CKA_ID` = `pairgate:<alias>` and `CKA_LABEL` = `pairgate:<alias>`
//! (`pairgate:<alias>#N` for chain position N); trust-store certificates
//! carry `CKA_ID` = `pairgate-trust:`. Only objects with these ids are
//! listed, changed or wiped; everything else on the token is left alone.
//!
//! Tokens written before this scheme used the bare alias as both id and
//! label. Such a key pair (a private and a public key whose id and label
//! are the same valid alias, exactly what pairgate wrote) is renamed into
//! the scheme, with its certificates, when the store is opened.

use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;

use super::ck;
use crate::{Alias, KeyStoreError};

/// The id prefix of an alias's objects.
const ID_PREFIX: &str = "pairgate:";
/// The id of trust-store certificates.
pub(super) const TRUST_ID: &[u8] = b"pairgate-trust:";

/// `CKA_ID` of an alias's key pair and certificates.
pub(super) fn key_id(alias: &Alias) -> Vec<u8> {
    format!("{ID_PREFIX}{alias}").into_bytes()
}

/// The alias a `CKA_ID` names, if it is one of pairgate's.
pub(super) fn alias_of(id: &[u8]) -> Option<Alias> {
    let text = std::str::from_utf8(id).ok()?;
    Alias::new(text.strip_prefix(ID_PREFIX)?).ok()
}

/// Whether an object with this `CKA_ID` is pairgate's.
pub(super) fn is_ours(id: &[u8]) -> bool {
    id == TRUST_ID || alias_of(id).is_some()
}

/// Chain position N of an alias is labelled `pairgate:alias` (the leaf)
/// or `pairgate:alias#N`.
pub(super) fn chain_label(alias: &Alias, index: usize) -> String {
    if index == 0 {
        format!("{ID_PREFIX}{alias}")
    } else {
        format!("{ID_PREFIX}{alias}#{index}")
    }
}

/// The chain position a certificate label gives, for `alias`.
pub(super) fn chain_index(alias: &Alias, label: &str) -> Option<usize> {
    let rest = label
        .strip_prefix(ID_PREFIX)?
        .strip_prefix(alias.as_str())?;
    if rest.is_empty() {
        return Some(0);
    }
    rest.strip_prefix('#')?.parse().ok()
}

/// `CKA_ID` and `CKA_LABEL` of an object.
pub(super) fn id_and_label(
    session: &Session,
    handle: ObjectHandle,
) -> Result<(Vec<u8>, Vec<u8>), KeyStoreError> {
    let mut id = Vec::new();
    let mut label = Vec::new();
    for attr in session
        .get_attributes(handle, &[AttributeType::Id, AttributeType::Label])
        .map_err(ck("reading an object's id"))?
    {
        match attr {
            Attribute::Id(v) => id = v,
            Attribute::Label(v) => label = v,
            _ => {}
        }
    }
    Ok((id, label))
}

/// Renames key pairs (and their certificates) written under the old
/// scheme into this one; returns the aliases renamed.
pub(super) fn migrate_bare_aliases(session: &Session) -> Result<Vec<Alias>, KeyStoreError> {
    let mut renamed = Vec::new();
    let privates = session
        .find_objects(&[Attribute::Class(ObjectClass::PRIVATE_KEY)])
        .map_err(ck("finding objects"))?;
    for private in privates {
        let (id, label) = id_and_label(session, private)?;
        let Some(alias) = std::str::from_utf8(&id)
            .ok()
            .filter(|_| id == label)
            .and_then(|s| Alias::new(s).ok())
        else {
            continue;
        };
        let publics = session
            .find_objects(&[
                Attribute::Class(ObjectClass::PUBLIC_KEY),
                Attribute::Id(id.clone()),
                Attribute::Label(label.clone()),
            ])
            .map_err(ck("finding objects"))?;
        if publics.is_empty() {
            continue;
        }
        let certificates = session
            .find_objects(&[
                Attribute::Class(ObjectClass::CERTIFICATE),
                Attribute::Id(id.clone()),
            ])
            .map_err(ck("finding objects"))?;
        let new_id = key_id(&alias);
        for handle in std::iter::once(private).chain(publics) {
            session
                .update_attributes(
                    handle,
                    &[
                        Attribute::Id(new_id.clone()),
                        Attribute::Label(chain_label(&alias, 0).into_bytes()),
                    ],
                )
                .map_err(ck("renaming a key into pairgate's scheme"))?;
        }
        for handle in certificates {
            let (_, old_label) = id_and_label(session, handle)?;
            let old_label = String::from_utf8_lossy(&old_label);
            let index = if old_label == alias.as_str() {
                Some(0)
            } else {
                old_label
                    .strip_prefix(alias.as_str())
                    .and_then(|r| r.strip_prefix('#'))
                    .and_then(|n| n.parse().ok())
            };
            // A certificate with the alias's id but a label pairgate never
            // wrote is not ours to rename.
            let Some(index) = index else { continue };
            session
                .update_attributes(
                    handle,
                    &[
                        Attribute::Id(new_id.clone()),
                        Attribute::Label(chain_label(&alias, index).into_bytes()),
                    ],
                )
                .map_err(ck("renaming a certificate into pairgate's scheme"))?;
        }
        renamed.push(alias);
    }
    Ok(renamed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_others_are_not_ours() {
        let alias = Alias::new("identity").unwrap();
        assert_eq!(alias_of(&key_id(&alias)), Some(alias.clone()));
        assert_eq!(chain_index(&alias, &chain_label(&alias, 0)), Some(0));
        assert_eq!(chain_index(&alias, &chain_label(&alias, 2)), Some(2));
        assert_eq!(chain_index(&alias, "identity"), None);
        assert_eq!(chain_index(&alias, "pairgate:identity2"), None);
        assert!(is_ours(TRUST_ID));
        for other in [
            &b"identity"[..],
            b"\x01",
            b"payment-key",
            b"pairgate:",
            b"pairgate-trust",
        ] {
            assert!(!is_ours(other), "{other:?}");
        }
    }
}
