//! `ozone validate`'s key-directory check: the bucket is hardened, and it holds a usable key
//! for every component that answers on the bus and every active auditor. A directory emptied
//! or overwritten leaves running services working on the keys they hold in memory, while a
//! service that starts or scales out finds no key to seal to; that must fail validation.
//! So must a bucket near its cap: past the cap every put is refused, rotations included, and
//! the keys in use expire a day later. (A member can write only its four slots; more keys
//! under one identity are left from the layout before slots and are reported.)

use crate::cmd::validate::Outcome;

/// Keys one identity may hold: its slots (rotation needs the current epoch, the previous one
/// in its grace window and, briefly, the next).
const KEYS_PER_IDENTITY: usize = ozone_bus_schemas::streams::KEY_SLOTS as usize;
/// At or above this share of its cap the bucket counts as nearly full.
const FULL_PERCENT: u64 = 80;
use ozone_bus_schemas::{Component, Identity, IdentityKind};
use ozone_nats::bus::now_ms;
use ozone_nats::keydir::placed_under;
use ozone_nats::{KeyDirectory, NatsSettings};
use ozone_security::keydir::DirectoryTrust;
use ozone_security::pki::Registry;
use ozone_security::{Home, SecurityConfig};

/// Checks the directory for `running` (the components answering `$SRV`) and every active
/// auditor; reads the bucket as the core, as `ozone up` writes the auditors' entries.
pub async fn check(home: &Home, cfg: &SecurityConfig, running: &[Component]) -> Outcome {
    match problems(home, cfg, running).await {
        Ok(p) if p.is_empty() => Outcome::Pass(format!(
            "hardened, a valid key for each of {} running component(s) and every auditor",
            running.len()
        )),
        Ok(p) => Outcome::Fail(p.join("; ")),
        Err(e) => Outcome::Fail(format!("cannot read the key directory: {e:#}")),
    }
}

async fn problems(
    home: &Home,
    cfg: &SecurityConfig,
    running: &[Component],
) -> anyhow::Result<Vec<String>> {
    // Read-only: the console operator may read the bucket like every member.
    let operator = crate::connect::console_operator()?;
    let url = NatsSettings::load(home)?.url();
    let conn = crate::connect::connect_to(&url, home, cfg, &operator).await?;
    let keydir = KeyDirectory::open(&conn.client).await?;
    let trust = DirectoryTrust::load(home)?;
    let mut out = Vec::new();
    let unhardened = keydir.unhardened().await?;
    if !unhardened.is_empty() {
        out.push(format!(
            "the bucket lacks {} (fix: `ozone up` hardens it)",
            unhardened.join(", ")
        ));
    }
    let (per_identity, bytes, max) = keydir.usage().await?;
    let mut crowded: Vec<(&String, &usize)> = per_identity
        .iter()
        .filter(|(_, n)| **n > KEYS_PER_IDENTITY)
        .collect();
    crowded.sort_by_key(|(_, n)| std::cmp::Reverse(**n));
    if !crowded.is_empty() {
        let list: Vec<String> = crowded
            .iter()
            .map(|(who, n)| format!("{who}: {n}"))
            .collect();
        out.push(format!(
            "more keys than rotation uses ({}; a member filling the bucket; fix: revoke \
             it with `ozone pki revoke`)",
            list.join(", ")
        ));
    }
    let max = u64::try_from(max).unwrap_or(0);
    if max > 0 && bytes * 100 >= max * FULL_PERCENT {
        out.push(format!(
            "the bucket holds {bytes} of {max} bytes: past the cap every put is refused, \
             key rotations included"
        ));
    }
    let auditors: Vec<Identity> = Registry::load(home)?
        .identities
        .iter()
        .filter(|r| r.is_active() && r.identity.kind == IdentityKind::Auditor)
        .map(|r| r.identity.clone())
        .collect();
    let now = now_ms();
    for identity in running
        .iter()
        .map(|c| Identity::component(*c))
        .chain(auditors)
    {
        let mut usable = false;
        let mut seen = Vec::new();
        for (key, stored) in keydir.entries_of(&identity).await? {
            match stored {
                Err(junk) => seen.push(format!("{key}: {junk}")),
                Ok(entry)
                    if entry.service != identity.directory_name()
                        || !placed_under(&key, &identity, entry.epoch) =>
                {
                    seen.push(format!(
                        "{key}: claims {} epoch {}",
                        entry.service, entry.epoch
                    ))
                }
                Ok(entry) => match trust.verify(&entry, now) {
                    Ok(_) => usable = true,
                    Err(e) => seen.push(format!("{key} (epoch {}): {e}", entry.epoch)),
                },
            }
        }
        if !usable {
            let fix = if identity.kind == IdentityKind::Auditor {
                "`ozone up` puts the auditors' keys again"
            } else {
                "the service puts its entry again within seconds; if it does not, restart it"
            };
            let seen = if seen.is_empty() {
                "no entry".to_string()
            } else {
                seen.join(", ")
            };
            out.push(format!("no valid key for {identity} ({seen}; fix: {fix})"));
        }
    }
    Ok(out)
}
