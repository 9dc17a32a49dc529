//! `security/identities.json`: every identity ever issued, its current serial and expiry,
//! and whether it is revoked, plus every certificate serial ever revoked. The NATS user list
//! and the key directory's revocation check are derived from it.

use super::{io_err, PkiError};
use crate::Home;
use ozone_bus_schemas::Identity;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityRecord {
    pub identity: Identity,
    /// Hex serial of the current certificate.
    pub serial: String,
    /// Expiry of the current certificate, Unix seconds.
    pub not_after: i64,
    /// When it was revoked, Unix seconds; a revoked identity has no NATS user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<i64>,
    /// Serials issued to this identity before the current one (renewals) and not yet
    /// revoked: a running service may still hold such a certificate, so a revocation covers
    /// them too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub earlier_serials: Vec<String>,
}

/// A revoked certificate serial and when it was revoked (Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedSerial {
    pub serial: String,
    pub revoked_at: i64,
}

impl IdentityRecord {
    pub fn is_active(&self) -> bool {
        self.revoked_at.is_none()
    }
}

/// The registry file, loaded in memory; `save` writes it back atomically.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registry {
    pub identities: Vec<IdentityRecord>,
    /// Every serial ever revoked: kept when the identity is issued again, so an old
    /// certificate stays revoked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revoked_serials: Vec<RevokedSerial>,
}

impl Registry {
    pub fn path(home: &Home) -> PathBuf {
        home.security().join("identities.json")
    }

    pub fn load(home: &Home) -> Result<Registry, PkiError> {
        let path = Self::path(home);
        if !path.exists() {
            return Ok(Registry::default());
        }
        let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
        serde_json::from_str(&text).map_err(|e| PkiError::Invalid {
            path: path.display().to_string(),
            detail: format!("not a valid identity registry ({e}); restore it from a backup"),
        })
    }

    pub fn save(&self, home: &Home) -> Result<(), PkiError> {
        let path = Self::path(home);
        let text = serde_json::to_string_pretty(self).map_err(|e| PkiError::Invalid {
            path: path.display().to_string(),
            detail: e.to_string(),
        })?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text + "\n").map_err(io_err(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io_err(&path))
    }

    pub fn get(&self, identity: &Identity) -> Option<&IdentityRecord> {
        self.identities.iter().find(|r| &r.identity == identity)
    }

    /// Records a newly issued certificate, replacing (and un-revoking) an earlier one. The
    /// serials of an active predecessor are remembered for a later revocation; a revoked
    /// predecessor's are in `revoked_serials` already.
    pub fn record(&mut self, mut record: IdentityRecord) {
        if let Some(old) = self.get(&record.identity).filter(|old| old.is_active()) {
            let mut earlier = old.earlier_serials.clone();
            earlier.push(old.serial.clone());
            earlier.retain(|s| *s != record.serial);
            earlier.dedup();
            record.earlier_serials = earlier;
        }
        self.identities.retain(|r| r.identity != record.identity);
        self.identities.push(record);
        self.identities.sort_by(|a, b| a.identity.cmp(&b.identity));
    }

    /// Marks an identity revoked; returns false when it was already revoked.
    pub fn revoke(&mut self, identity: &Identity, at: i64) -> Result<bool, PkiError> {
        let rec = self
            .identities
            .iter_mut()
            .find(|r| &r.identity == identity)
            .ok_or_else(|| PkiError::Unknown {
                identity: identity.to_string(),
            })?;
        if rec.revoked_at.is_some() {
            return Ok(false);
        }
        rec.revoked_at = Some(at);
        let serials: Vec<String> = std::iter::once(rec.serial.clone())
            .chain(std::mem::take(&mut rec.earlier_serials))
            .collect();
        for serial in serials {
            if !self.revoked_serials.iter().any(|r| r.serial == serial) {
                self.revoked_serials.push(RevokedSerial {
                    serial,
                    revoked_at: at,
                });
            }
        }
        Ok(true)
    }

    /// Every revoked serial with when it was revoked (also from records written before
    /// `revoked_serials` existed).
    pub fn revoked(&self) -> impl Iterator<Item = (&str, i64)> {
        let listed = self
            .revoked_serials
            .iter()
            .map(|r| (r.serial.as_str(), r.revoked_at));
        let marked = self
            .identities
            .iter()
            .filter_map(|r| r.revoked_at.map(|at| (r.serial.as_str(), at)));
        listed.chain(marked)
    }

    /// The NATS users to configure: one per certificate an active identity may still present
    /// — the current one and earlier ones a renewal replaced (a running service keeps its
    /// connection until it restarts). Revoked serials have none, whatever the name.
    pub fn nats_users(&self) -> Vec<(&Identity, String)> {
        let revoked: std::collections::HashSet<&str> = self.revoked().map(|(s, _)| s).collect();
        self.identities
            .iter()
            .filter(|r| r.is_active() && r.identity.has_nats_user())
            .flat_map(|r| {
                std::iter::once(&r.serial)
                    .chain(&r.earlier_serials)
                    .filter(|s| !revoked.contains(s.as_str()))
                    .filter_map(|s| r.identity.nats_user(s).map(|u| (&r.identity, u)))
            })
            .collect()
    }

    /// Identities with the given name, whatever their kind (for `revoke NAME`).
    pub fn find_by_name(&self, name: &str) -> Vec<&IdentityRecord> {
        self.identities
            .iter()
            .filter(|r| r.identity.name == name)
            .collect()
    }
}
