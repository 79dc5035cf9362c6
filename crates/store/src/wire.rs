//! The stored rows as the CAS API and `pairgate admin --json` show them
//! (`pairgate_proto::cas`, `pairgate_proto::cas_accounts`): one shape per
//! object, made in one place.

use pairgate_proto::cas::{self, BlockedKeyView, PairingRequestView, TerminalView};
use pairgate_proto::cas_accounts::{
    AuditRecordView, ChainStatus, NewToken, OperatorView, StepUpView, TokenView,
};
use pairgate_proto::{PairingStatus, Timestamp};

use crate::{
    ApiToken, AuditRecord, AuditVerification, BlockedKey, Operator, PairingRequest, PairingState,
    StepUpLock, Terminal, TerminalState,
};

impl TerminalState {
    /// The state in the API's terms.
    pub fn view(self) -> cas::TerminalState {
        match self {
            Self::Registered => cas::TerminalState::Registered,
            Self::Paired => cas::TerminalState::Paired,
            Self::Unpaired => cas::TerminalState::Unpaired,
        }
    }
}

impl Terminal {
    /// The terminal as the API shows it.
    pub fn view(&self) -> TerminalView {
        TerminalView {
            serial: self.serial.as_str().to_owned(),
            name: self.name.clone(),
            location: self.location.clone(),
            contact_name: self.contact_name.clone(),
            contact_phone: self.contact_phone.clone(),
            state: match (self.state, self.suspended_at) {
                (TerminalState::Paired, Some(_)) => cas::TerminalState::Suspended,
                (state, _) => state.view(),
            },
            paired_fingerprint: self.paired_fingerprint,
            paired_at: self.paired_at.map(Timestamp),
            paired_by: self.paired_by.clone(),
            last_seen_at: self.last_seen_at.map(Timestamp),
            last_seen_address: self.last_seen_address.clone(),
            firmware: self.firmware.clone(),
            vpn_profile: self.vpn_profile.clone(),
            created_at: Timestamp(self.created_at),
            suspended_at: self.suspended_at.map(Timestamp),
            suspended_by: self.suspended_by.clone(),
            suspected_clone: self.suspected_clone,
            clone_evidence: self
                .clone_evidence
                .as_deref()
                .and_then(|e| serde_json::from_str(e).ok()),
            successor_fingerprint: self.successor_fingerprint,
        }
    }
}

impl PairingState {
    /// The protocol status: both open states are `pending`, `failed` is
    /// `rejected`.
    pub fn status(self) -> PairingStatus {
        match self {
            Self::AwaitingReveal | Self::Pending => PairingStatus::Pending,
            Self::Approved => PairingStatus::Approved,
            Self::Rejected | Self::Failed => PairingStatus::Rejected,
            Self::Expired => PairingStatus::Expired,
            Self::Superseded => PairingStatus::Superseded,
        }
    }
}

impl PairingRequest {
    /// The request as the API shows it.
    pub fn view(&self) -> PairingRequestView {
        PairingRequestView {
            id: self.id.clone(),
            serial: self.serial.as_str().to_owned(),
            fingerprint: self.fingerprint,
            state: self.state.status(),
            remote_address: self.remote_address.clone(),
            model: self.model.clone(),
            firmware: self.firmware.clone(),
            flagged: self.flagged,
            supersedes: self.supersedes.clone(),
            failed_attempts: self.failed_attempts,
            code_shown: self.terminal_nonce.is_some(),
            created_at: Timestamp(self.created_at),
            expires_at: Timestamp(self.expires_at),
            decided_at: self.decided_at.map(Timestamp),
            decided_by: self.decided_by.clone(),
        }
    }
}

impl crate::TerminalKey {
    /// The key as the API shows it.
    pub fn view(&self) -> cas::TerminalKeyView {
        cas::TerminalKeyView {
            fingerprint: self.fingerprint,
            predecessor: self.predecessor,
            recorded_at: Timestamp(self.recorded_at),
            activated_at: self.activated_at.map(Timestamp),
            retired_at: self.retired_at.map(Timestamp),
            not_after: Timestamp(self.not_after),
        }
    }
}

impl crate::VpnCredential {
    /// The credential as the API shows it.
    pub fn view(&self) -> pairgate_proto::vpn::VpnCredentialView {
        pairgate_proto::vpn::VpnCredentialView {
            vpn_type: self.kind.clone(),
            public_key: self.public_key.clone(),
            certificate_serial: self.certificate_serial.clone(),
            address: self.address.clone(),
            address_v6: self.address_v6.clone(),
            issued_at: Timestamp(self.issued_at),
            revoked_at: self.revoked_at.map(Timestamp),
            revoked_reason: self.revoked_reason.clone(),
        }
    }
}

impl BlockedKey {
    /// The blocked key as the API shows it.
    pub fn view(&self) -> BlockedKeyView {
        BlockedKeyView {
            fingerprint: self.fingerprint,
            reason: self.reason.clone(),
            blocked_by: self.blocked_by.clone(),
            blocked_at: Timestamp(self.blocked_at),
        }
    }
}

impl Operator {
    /// The operator as the API shows it, with its step-up lock in lists.
    pub fn view(&self, step_up: Option<&StepUpLock>) -> OperatorView {
        OperatorView {
            username: self.username.clone(),
            role: self.role.as_str().to_owned(),
            totp_enabled: self.totp_enabled,
            must_change_password: self.must_change_password,
            disabled: self.disabled,
            created_at: Timestamp(self.created_at),
            step_up: step_up.map(|lock| StepUpView {
                failures: lock.failures,
                locked: lock.locked,
                until: lock.until.map(Timestamp),
            }),
        }
    }
}

impl ApiToken {
    /// The token's record as listed (never the token).
    pub fn view(&self) -> TokenView {
        TokenView {
            id: self.id.clone(),
            username: self.username.clone(),
            name: self.name.clone(),
            created_at: Timestamp(self.created_at),
            last_used_at: self.last_used_at.map(Timestamp),
            revoked_at: self.revoked_at.map(Timestamp),
            expires_at: Timestamp(self.expires_at),
        }
    }
}

impl ApiToken {
    /// The answer that hands a new token over, once.
    pub fn receipt(&self, token: &str) -> NewToken {
        NewToken {
            id: self.id.clone(),
            operator: self.username.clone(),
            name: self.name.clone(),
            created_at: Timestamp(self.created_at),
            expires_at: Timestamp(self.expires_at),
            token: zeroize::Zeroizing::new(token.to_owned()),
        }
    }
}

impl AuditRecord {
    /// The record as the API shows it; a detail that is not JSON is shown
    /// as the stored text.
    pub fn view(&self) -> AuditRecordView {
        AuditRecordView {
            seq: self.seq,
            at: Timestamp(self.at),
            actor: self.actor.clone(),
            action: self.action.clone(),
            subject: self.subject.clone(),
            detail: serde_json::from_str(&self.detail)
                .unwrap_or_else(|_| serde_json::Value::String(self.detail.clone())),
            hash: self.hash.clone(),
        }
    }
}

impl AuditVerification {
    /// The check's result as the API shows it.
    pub fn view(&self) -> ChainStatus {
        ChainStatus {
            intact: self.intact(),
            records: self.records,
            first_broken: self.first_broken,
            reason: self.reason.clone(),
            checked_from: self.checked_from,
            anchored_through: self.anchored_through,
            unanchored: self.unanchored,
        }
    }
}

impl crate::Vendor {
    /// The vendor key as the API shows it.
    pub fn view(&self) -> pairgate_proto::manifests::VendorView {
        pairgate_proto::manifests::VendorView {
            name: self.name.clone(),
            algorithm: self.algorithm.clone(),
            key_pin: self.key_pin.clone(),
            added_at: Timestamp(self.added_at),
            added_by: self.added_by.clone(),
        }
    }
}

impl crate::ManifestRecord {
    /// The manifest as the API shows it.
    pub fn view(&self) -> pairgate_proto::manifests::ManifestView {
        pairgate_proto::manifests::ManifestView {
            id: self.id.clone(),
            vendor: self.vendor.clone(),
            issued_at: self.issued_at.clone(),
            terminals: self.terminals,
            imported_at: Timestamp(self.imported_at),
            imported_by: self.imported_by.clone(),
        }
    }
}

impl crate::Imported {
    /// The import's outcome as the API shows it.
    pub fn view(&self) -> pairgate_proto::manifests::ManifestImport {
        pairgate_proto::manifests::ManifestImport {
            manifest_id: self.manifest_id.clone(),
            terminals: self.terminals,
            registered: self.registered,
            unchanged: self.unchanged,
        }
    }
}
