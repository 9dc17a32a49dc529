//! `ozone install systemd`: unit files equivalent to the seed's, one per component plus
//! nats-server, with the phase order as unit dependencies. The components still wait for
//! their earlier phases on the bus themselves, so no unit needs a sleep.

use anyhow::Context;
use ozone_bus_schemas::{Component, Identity};
use ozone_security::credentials;
use ozone_security::pki::{CertificateAuthorities, IdentityFiles};
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

/// The group each component's unit runs in (beside its own dynamic user): it may traverse
/// `security/` to read `identities.json` (public: revocations are read from it live), and
/// nothing else of `security/`.
pub const DEFAULT_GROUP: &str = "ozone-studio";

/// What one component's unit hands it and confines it to. Each component runs as a user of
/// its own (`DynamicUser=`) that cannot read `security/keys`, `security/ca` or
/// `security/certificates` (0700, root's); systemd reads the component's own certificate,
/// chain and key and the trust bundle as root and hands them over as credentials only that
/// user can read; the key ring lives in a state directory only that user owns. A unit's
/// environment is not the caller's: the CA passphrase never reaches a component.
fn component_service(home: &Home, bin: &Path, c: Component, group: &str) -> String {
    let root = home.root().display();
    let stem = Identity::component(c).file_stem();
    let files = IdentityFiles::for_stem(home, &stem);
    let trust: String = CertificateAuthorities::new(home)
        .component_trust_files()
        .iter()
        .map(|(name, path)| format!("LoadCredential={name}:{}\n", path.display()))
        .collect();
    let state = credentials::systemd_state_dir(&stem);
    let state_rel = state
        .strip_prefix("/var/lib")
        .unwrap_or(&state)
        .display()
        .to_string();
    format!(
        "[Service]\nType=simple\nEnvironment=OZONE_STUDIO_HOME={root}\n\
         ExecStart={exe} --home {root}\nRestart=on-failure\nRestartSec=1\nTimeoutStopSec=15\n\
         DynamicUser=yes\nSupplementaryGroups={group}\n\
         LoadCredential={stem}.crt:{cert}\nLoadCredential={stem}-chain.crt:{chain}\n\
         LoadCredential={stem}.key:{key}\n{trust}\
         StateDirectory={state_rel}\nStateDirectoryMode=0700\nEnvironment={key_dir}={state}\n\
         InaccessiblePaths={keys} {ca} {certs}\nReadOnlyPaths={root}\n\
         ProtectSystem=strict\nProtectHome=read-only\nPrivateTmp=yes\nNoNewPrivileges=yes\n",
        exe = bin.join(c.binary_name()).display(),
        cert = files.cert.display(),
        chain = files.chain.display(),
        key = files.key.display(),
        state = state.display(),
        key_dir = credentials::KEY_DIR,
        keys = home.keys_dir().display(),
        ca = home.ca_dir().display(),
        certs = home.certs_dir().display(),
    )
}

pub fn units(home: &Home, bin: &Path, group: &str) -> Vec<(String, String)> {
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
                 {service}\n[Install]\nWantedBy=ozone-studio.target\n",
                name = c.name(),
                phase = c.phase(),
                service = component_service(home, bin, c, group),
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
pub fn install(home: &Home, dir: &Path, group: &str) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let bin = std::env::current_exe()?
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| home.bin());
    let mut written = Vec::new();
    for (name, text) in units(home, &bin, group) {
        let path = dir.join(name);
        std::fs::write(&path, text)?;
        written.push(path);
    }
    Ok(written)
}

/// Lets members of `group` traverse `security/` (0750, group `group`), so the units' users
/// can read `identities.json`; `security/keys`, `ca` and `certificates` stay 0700 and the
/// owner's. Needs to own `security/` (root, for the system units).
pub fn open_security_to(home: &Home, gid: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = home.security();
    std::os::unix::fs::chown(&dir, None, Some(gid))
        .with_context(|| format!("cannot give {} to group {gid}", dir.display()))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750))
        .with_context(|| format!("cannot set the mode of {}", dir.display()))?;
    Ok(())
}

/// [`open_security_to`] the group called `name`, which must exist.
pub fn open_security_to_group(home: &Home, name: &str) -> anyhow::Result<()> {
    let group = nix::unistd::Group::from_name(name)?.ok_or_else(|| {
        anyhow::anyhow!("no group {name}: create it first (`groupadd --system {name}`)")
    })?;
    open_security_to(home, group.gid.as_raw())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_follow_the_seed_phases() {
        let home = Home::new("/opt/ozone");
        let units = units(&home, Path::new("/opt/ozone/bin"), DEFAULT_GROUP);
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

    /// Issue 18, finding 10: each component's unit runs as its own user, is handed its own
    /// key material and nobody else's, and cannot see the CA or the other keys.
    #[test]
    fn finding_10_each_unit_gets_only_its_own_key_material() {
        let home = Home::new("/opt/ozone");
        let units = units(&home, Path::new("/opt/ozone/bin"), DEFAULT_GROUP);
        for c in Component::ALL {
            let text = &units
                .iter()
                .find(|(n, _)| *n == unit_name(c))
                .unwrap_or_else(|| panic!("no unit for {c}"))
                .1;
            let stem = Identity::component(c).file_stem();
            assert!(text.contains("DynamicUser=yes\n"), "{text}");
            assert!(
                text.contains("SupplementaryGroups=ozone-studio\n"),
                "{text}"
            );
            let creds: Vec<&str> = text
                .lines()
                .filter_map(|l| l.strip_prefix("LoadCredential="))
                .collect();
            assert_eq!(
                creds,
                [
                    format!("{stem}.crt:/opt/ozone/security/certificates/{stem}.crt"),
                    format!("{stem}-chain.crt:/opt/ozone/security/certificates/{stem}-chain.crt"),
                    format!("{stem}.key:/opt/ozone/security/keys/{stem}.key"),
                    "trust-bundle.crt:/opt/ozone/security/ca/trust-bundle.crt".to_string(),
                    "ai-app-ca.crt:/opt/ozone/security/ca/ai-app-ca.crt".to_string(),
                    "user-ca.crt:/opt/ozone/security/ca/user-ca.crt".to_string(),
                ]
            );
            assert!(text.contains(&format!(
                "StateDirectory=ozone-studio/{stem}\nStateDirectoryMode=0700\n\
                 Environment=OZONE_KEY_DIR=/var/lib/ozone-studio/{stem}\n"
            )));
            assert!(text.contains(
                "InaccessiblePaths=/opt/ozone/security/keys /opt/ozone/security/ca \
                 /opt/ozone/security/certificates\n"
            ));
            assert!(!text.contains("PASSPHRASE"), "{text}");
        }
    }
}
