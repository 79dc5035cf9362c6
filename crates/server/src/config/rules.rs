//! The settings of the approval rules and of clone detection, read into
//! the store's terms (and refused at load when they do not read).

use super::{ConfigError, Settings};

impl Settings {
    /// The approval rules these settings switch on, and their bounds.
    pub fn approval_rules(&self) -> Result<pairgate_store::ApprovalRules, ConfigError> {
        let networks = self
            .auto_approve_networks
            .iter()
            .map(|n| {
                n.parse()
                    .map_err(|e| ConfigError::Invalid(format!("auto_approve_networks: {e}")))
            })
            .collect::<Result<_, _>>()?;
        let hours = match self.auto_approve_hours.trim() {
            "" => None,
            text => {
                let bad = || {
                    ConfigError::Invalid(format!(
                        "auto_approve_hours = {text:?}: give UTC hours FROM-TO, e.g. \"06-22\""
                    ))
                };
                let (from, to) = text.split_once('-').ok_or_else(bad)?;
                let hour = |h: &str| {
                    h.trim()
                        .parse::<u8>()
                        .ok()
                        .filter(|h| *h < 24)
                        .ok_or_else(bad)
                };
                let (from, to) = (hour(from)?, hour(to)?);
                if from == to {
                    return Err(bad());
                }
                Some((from, to))
            }
        };
        let ca = match self.auto_approve_ca_file.trim() {
            "" => None,
            path => {
                let pem = std::fs::read(path).map_err(|e| {
                    ConfigError::Invalid(format!("auto_approve_ca_file = {path:?}: {e}"))
                })?;
                Some(pairgate_pki::FirmwareRoots::from_pem(&pem).map_err(|e| {
                    ConfigError::Invalid(format!("auto_approve_ca_file = {path:?}: {e}"))
                })?)
            }
        };
        Ok(pairgate_store::ApprovalRules {
            manifest: self.auto_approve_manifest,
            networks,
            hours,
            models: self.auto_approve_models.clone(),
            ca,
        })
    }

    /// What the master does with a suspected clone (checked at load).
    pub fn clone_action(&self) -> pairgate_store::CloneAction {
        if self.clone_action == "suspend" {
            pairgate_store::CloneAction::Suspend
        } else {
            pairgate_store::CloneAction::Alert
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approval_bounds_are_read_or_refused() {
        let mut s = Settings {
            auto_approve_networks: vec!["10.0.0.0/8".into(), "2001:db8::/32".into()],
            auto_approve_hours: "22-06".into(),
            ..Settings::default()
        };
        let rules = s.approval_rules().unwrap();
        assert_eq!((rules.networks.len(), rules.hours), (2, Some((22, 6))));
        for (networks, hours) in [
            (vec!["10.0.0.0/40"], ""),
            (vec![], "25-3"),
            (vec![], "6"),
            (vec![], "06-06"),
        ] {
            s.auto_approve_networks = networks.into_iter().map(String::from).collect();
            s.auto_approve_hours = hours.into();
            assert!(
                s.approval_rules().is_err(),
                "{:?} {hours}",
                s.auto_approve_networks
            );
        }
    }
}
