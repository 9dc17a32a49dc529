//! `ozone install systemd`: unit files equivalent to the seed's, one per component plus
//! nats-server, with the phase order as unit dependencies. The components still wait for
//! their earlier phases on the bus themselves, so no unit needs a sleep.

use ozone_bus_schemas::Component;
use ozone_security::Home;
use std::path::{Path, PathBuf};

fn unit_name(c: Component) -> String {
    format!("ozone-{}.service", c.name())
}

/// The units of the components in the phase before `c` (what it is ordered after).
fn previous_phase(c: Component) -> Vec<String> {
    let Some(prev) = c.phase().checked_sub(1) else {
        return Vec::new();
    };
    Component::ALL
        .into_iter()
        .filter(|d| d.phase() == prev)
        .map(unit_name)
        .collect()
}

pub fn units(home: &Home, bin: &Path) -> Vec<(String, String)> {
    let root = home.root().display();
    let mut out = vec![(
        "ozone-nats.service".to_string(),
        format!(
            "[Unit]\nDescription=OZONE STUDIO nats-server (mTLS, accounts)\nAfter=network-online.target\n\n\
             [Service]\nType=simple\nExecStart={nats} -c {root}/etc/nats-server.conf\n\
             ExecReload=/bin/kill -HUP $MAINPID\nRestart=on-failure\nRestartSec=1\n\n\
             [Install]\nWantedBy=ozone-studio.target\n",
            nats = home.bin().join("nats-server").display(),
        ),
    )];
    for c in Component::ALL {
        let after: String = previous_phase(c).iter().map(|u| format!(" {u}")).collect();
        out.push((
            unit_name(c),
            format!(
                "[Unit]\nDescription=OZONE STUDIO {name} (phase {phase})\n\
                 After=ozone-nats.service{after}\nRequires=ozone-nats.service\nWants=ozone-nats.service{after}\n\n\
                 [Service]\nType=simple\nEnvironment=OZONE_STUDIO_HOME={root}\n\
                 ExecStart={exe} --home {root}\nRestart=on-failure\nRestartSec=1\n\
                 TimeoutStopSec=15\n\n[Install]\nWantedBy=ozone-studio.target\n",
                name = c.name(),
                phase = c.phase(),
                exe = bin.join(c.binary_name()).display(),
            ),
        ));
    }
    let all: Vec<String> = std::iter::once("ozone-nats.service".to_string())
        .chain(Component::ALL.into_iter().map(unit_name))
        .collect();
    out.push((
        "ozone-studio.target".into(),
        format!(
            "[Unit]\nDescription=OZONE STUDIO ecosystem\nWants={}\n\n[Install]\nWantedBy=multi-user.target\n",
            all.join(" ")
        ),
    ));
    out
}

/// Writes the units into `dir`; returns the paths.
pub fn install(home: &Home, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let bin = std::env::current_exe()?
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| home.bin());
    let mut written = Vec::new();
    for (name, text) in units(home, &bin) {
        let path = dir.join(name);
        std::fs::write(&path, text)?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_follow_the_seed_phases() {
        let home = Home::new("/opt/ozone");
        let units = units(&home, Path::new("/opt/ozone/bin"));
        assert_eq!(units.len(), 10);
        let core = &units
            .iter()
            .find(|(n, _)| n == "ozone-ozone-studio.service")
            .unwrap_or_else(|| panic!("no core unit"))
            .1;
        assert!(core.contains("After=ozone-nats.service ozone-cognis.service ozone-zsei.service"));
        assert!(core.contains("ExecStart=/opt/ozone/bin/ozone-studio --home /opt/ozone"));
        let spark = &units[1].1;
        assert!(spark.contains("After=ozone-nats.service\n"));
        assert!(!units.iter().any(|(_, t)| t.contains("sleep")));
    }
}
