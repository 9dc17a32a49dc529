//! The eight components of the ecosystem and the seed's facts about them (phase, port).

use serde::{Deserialize, Serialize};

/// One of the eight ecosystem components; each runs as its own process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Component {
    Spark,
    Cognis,
    Zsei,
    #[serde(rename = "ozone-studio")]
    Core,
    Nexus,
    Bridge,
    Forge,
    Scribe,
}

impl Component {
    /// All components in bootstrap order (phase, then the seed's order within a phase).
    pub const ALL: [Component; 8] = [
        Component::Spark,
        Component::Cognis,
        Component::Zsei,
        Component::Core,
        Component::Nexus,
        Component::Bridge,
        Component::Forge,
        Component::Scribe,
    ];

    /// The short name used for files, subjects and the micro-service name.
    pub fn name(self) -> &'static str {
        match self {
            Component::Spark => "spark",
            Component::Cognis => "cognis",
            Component::Zsei => "zsei",
            Component::Core => "ozone-studio",
            Component::Nexus => "nexus",
            Component::Bridge => "bridge",
            Component::Forge => "forge",
            Component::Scribe => "scribe",
        }
    }

    /// The short name as a single subject token (`ozone-studio` is a valid token).
    pub fn token(self) -> &'static str {
        self.name()
    }

    pub fn from_name(name: &str) -> Option<Component> {
        Component::ALL.into_iter().find(|c| c.name() == name)
    }

    /// Bootstrap phase from the seed: 0 SPARK; 1 COGNIS, ZSEI; 2 core; 3 the specialists.
    pub fn phase(self) -> u8 {
        match self {
            Component::Spark => 0,
            Component::Cognis | Component::Zsei => 1,
            Component::Core => 2,
            Component::Nexus | Component::Bridge | Component::Forge | Component::Scribe => 3,
        }
    }

    /// The seed's port; kept in the certificate's URI SAN and the environment file.
    pub fn port(self) -> u16 {
        match self {
            Component::Spark => 8910,
            Component::Cognis => 8920,
            Component::Zsei => 8930,
            Component::Nexus => 8940,
            Component::Bridge => 8950,
            Component::Forge => 8960,
            Component::Scribe => 8970,
            Component::Core => 8980,
        }
    }

    /// The executable that runs this component (`ozone-spark`, …; the core is `ozone-studio`).
    pub fn binary_name(self) -> String {
        match self {
            Component::Core => "ozone-studio".into(),
            c => format!("ozone-{}", c.name()),
        }
    }

    /// The seed's DNS name, `<name>.local`; it is also the NATS user the certificate maps to.
    pub fn dns_name(self) -> String {
        format!("{}.local", self.name())
    }

    /// The environment variable prefix used in `ecosystem.env` (`SPARK`, `OZONE_STUDIO`).
    pub fn env_prefix(self) -> String {
        self.name().to_ascii_uppercase().replace('-', "_")
    }

    /// Components this one sends requests to. Least privilege: nothing else may be published.
    pub fn calls(self) -> &'static [Component] {
        use Component::*;
        match self {
            Spark | Nexus => &[],
            Cognis | Zsei => &[Spark],
            Core => &[Spark, Cognis, Zsei, Nexus, Forge, Scribe],
            Bridge => &[Core, Spark, Cognis, Zsei, Nexus],
            Forge | Scribe => &[Spark, Nexus, Zsei],
        }
    }

    /// Whether operators (the `ozone` command, [`crate::IdentityKind::Operator`]) may call
    /// this component directly: SPARK (`ozone ask`), ZSEI (`ozone methodology`) and the core
    /// (`ozone task`); anything else an operator wants goes through the components that own
    /// it.
    pub fn takes_operators(self) -> bool {
        matches!(self, Component::Spark | Component::Zsei | Component::Core)
    }
}

impl std::fmt::Display for Component {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_phases_follow_the_seed() {
        for c in Component::ALL {
            assert_eq!(Component::from_name(c.name()), Some(c));
        }
        let phases: Vec<u8> = Component::ALL.iter().map(|c| c.phase()).collect();
        assert_eq!(phases, [0, 1, 1, 2, 3, 3, 3, 3]);
    }

    #[test]
    fn nobody_calls_itself_or_a_later_phase_except_the_core_and_bridge() {
        for c in Component::ALL {
            assert!(!c.calls().contains(&c), "{c} calls itself");
        }
    }
}
