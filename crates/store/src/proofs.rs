//! Proofs the store's verbs take, so that who may do what is decided
//! beside the verbs and not in each front end:
//!
//! - [`Changer`]: an operator or admin (the role as stored now), for
//!   registering terminals and rejecting requests;
//! - [`TrustChange`]: a [`Changer`] who also passed a fresh second factor
//!   just now, for unpairing (approval takes the [`SecondFactor`] itself,
//!   which it credits);
//! - both can be made `local`ly by `pairgate admin` on the server, which
//!   reads the database directly and so would be protected by nothing
//!   more.

use crate::{Actor, Operator, Role, SecondFactor, StoreError};

/// Proof that the actor may change terminals and pairing requests.
#[derive(Clone, Debug)]
pub struct Changer {
    actor: Actor,
}

impl Changer {
    /// The command line on the server.
    pub fn local(name: impl Into<String>) -> Self {
        Self {
            actor: Actor::new(name),
        }
    }

    /// Who acts, for the audit log.
    pub fn actor(&self) -> &Actor {
        &self.actor
    }
}

/// Proof that the actor may change trust now (a fresh second factor of an
/// operator or admin).
#[derive(Clone, Debug)]
pub struct TrustChange {
    actor: Actor,
}

impl TrustChange {
    /// The command line on the server.
    pub fn local(name: impl Into<String>) -> Self {
        Self {
            actor: Actor::new(name),
        }
    }

    /// Who acts, for the audit log.
    pub fn actor(&self) -> &Actor {
        &self.actor
    }
}

fn viewer(username: &str) -> StoreError {
    StoreError::Forbidden(format!("{username} has the viewer role: read only"))
}

impl Operator {
    /// The proof that this operator (role as read for this request) may
    /// change terminals and requests; `Forbidden` for viewers and
    /// disabled accounts.
    pub fn changer(&self) -> Result<Changer, StoreError> {
        if self.disabled {
            return Err(StoreError::Forbidden(format!(
                "{} is disabled",
                self.username
            )));
        }
        if self.role.may_change_trust() {
            Ok(Changer::local(self.username.clone()))
        } else {
            Err(viewer(&self.username))
        }
    }
}

impl SecondFactor {
    /// The proof that this operator, just verified, may change trust;
    /// `Forbidden` for viewers.
    pub fn trust_change(&self) -> Result<TrustChange, StoreError> {
        if self.role == Role::Admin || self.role == Role::Operator {
            Ok(TrustChange::local(self.username.clone()))
        } else {
            Err(viewer(&self.username))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn operator(role: Role, disabled: bool) -> Operator {
        Operator {
            username: "olga".into(),
            role,
            totp_enabled: true,
            must_change_password: false,
            disabled,
            created_at: 0,
        }
    }

    #[test]
    fn viewers_and_disabled_operators_change_nothing() {
        let by = operator(Role::Operator, false).changer().unwrap();
        assert_eq!(by.actor().name(), "olga");
        assert!(operator(Role::Admin, false).changer().is_ok());
        for (role, disabled) in [(Role::Viewer, false), (Role::Operator, true)] {
            assert!(matches!(
                operator(role, disabled).changer(),
                Err(StoreError::Forbidden(_))
            ));
        }
        let viewer = SecondFactor {
            username: "vera".into(),
            role: Role::Viewer,
        };
        assert!(matches!(
            viewer.trust_change(),
            Err(StoreError::Forbidden(_))
        ));
    }
}
