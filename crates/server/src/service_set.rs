//! Which of the three services an instance runs (`--services`,
//! the `services` setting): any non-empty subset of gate, master and CAS,
//! so a cluster can scale and place each on its own.

use std::fmt;

use crate::config::ConfigError;

/// The services one instance runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceSet {
    /// The gate (pairing, 7741).
    pub gate: bool,
    /// The master (paired terminals, 7743).
    pub master: bool,
    /// CAS (operators, 7780).
    pub cas: bool,
}

impl ServiceSet {
    /// All three: the default, and the only set that may create the
    /// server identity.
    pub const ALL: Self = Self {
        gate: true,
        master: true,
        cas: true,
    };

    /// Whether every service runs here.
    pub fn is_all(self) -> bool {
        self == Self::ALL
    }

    /// The set named by `names` (`gate`, `master`, `cas`; each once at
    /// most, at least one).
    pub fn parse<S: AsRef<str>>(names: &[S]) -> Result<Self, ConfigError> {
        let mut set = Self {
            gate: false,
            master: false,
            cas: false,
        };
        for name in names {
            let slot = match name.as_ref().trim() {
                "gate" => &mut set.gate,
                "master" => &mut set.master,
                "cas" => &mut set.cas,
                other => {
                    return Err(ConfigError::Invalid(format!(
                        "services: unknown service {other:?}; choose from gate, master, cas"
                    )));
                }
            };
            if *slot {
                return Err(ConfigError::Invalid(format!(
                    "services: {} is named twice",
                    name.as_ref().trim()
                )));
            }
            *slot = true;
        }
        if !(set.gate || set.master || set.cas) {
            return Err(ConfigError::Invalid(
                "services: name at least one of gate, master, cas".into(),
            ));
        }
        Ok(set)
    }
}

impl fmt::Display for ServiceSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = [
            (self.gate, "gate"),
            (self.master, "master"),
            (self.cas, "cas"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
        f.write_str(&names.join(","))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_into_a_set() {
        assert!(
            ServiceSet::parse(&["gate", "master", "cas"])
                .unwrap()
                .is_all()
        );
        let master = ServiceSet::parse(&[" master "]).unwrap();
        assert!(master.master && !master.gate && !master.cas);
        assert_eq!(master.to_string(), "master");
        assert_eq!(
            ServiceSet::parse(&["cas", "gate"]).unwrap().to_string(),
            "gate,cas"
        );
        for bad in [&["web"][..], &[], &["gate", "gate"]] {
            assert!(ServiceSet::parse(bad).is_err(), "{bad:?}");
        }
    }
}
