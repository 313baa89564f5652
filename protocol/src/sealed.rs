//! Sealed advisories: TLP:AMBER+STRICT and TLP:RED encrypted end to end to their recipients.
//!
//! A sealed advisory is an ordinary [`Advisory`] whose confidential fields
//! ([`Confidential`]: title, summary, body, items, links, contact, source, categories, CVE
//! ids) are empty and whose `sealed` object carries them encrypted. The origin signs it as
//! any other advisory, so relays verify origin, scope, sequence and hops, store and forward it
//! unchanged, and see only the cleartext metadata, the ciphertext and the recipient list.
//!
//! Encryption ([`seal`]): the compact JSON of the [`Confidential`] part is encrypted with
//! ChaCha20-Poly1305 under a fresh random 32-byte content key (nonce 0: each content key
//! encrypts exactly one message), with the advisory's binding as associated data. The content
//! key is then wrapped once per recipient slot:
//! - `clinic` slots: HPKE (RFC 9180) base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
//!   ChaCha20-Poly1305, single shot, to the clinic's X25519 key from the district's signed
//!   recipient directory ([`crate::directory`]); `info` binds the advisory and the clinic id.
//! - `group` slots: XChaCha20-Poly1305 under the current epoch key of a scope's group
//!   ([`group`]), random 24-byte nonce, associated data binding the advisory, the group
//!   scope and the epoch. This is how one advisory reaches every clinic of a district
//!   (~2,000) within the payload limit; AMBER+STRICT only (RED names its recipients).
//!
//! The binding strings are in [`crypto`]. Opening takes a [`Verified`](crate::Verified)
//! delivery only ([`open_sealed`], [`open_sealed_group`]): unverified bytes cannot be opened.
//! `docs/protocol.md` §20–22 is the normative text.

pub mod content;
pub mod crypto;
pub mod group;
pub mod keys;

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::advisory::{Advisory, Tlp, check_id};
use crate::envelope::base64_bytes;
use crate::error::{Error, Result};
use crate::limits::MAX_SEALED_RECIPIENTS;
use crate::scope::Scope;
use content::ContentView;

pub use content::Confidential;
pub use crypto::{To, open_sealed, open_sealed_group, seal};
pub use group::{GroupKeyStatement, GroupMember, distribute_group_key, open_group_key, verify_group_key};
pub use keys::{GroupKey, RecipientKey, RecipientSecret};

/// The one algorithm suite of sealed advisories (named in every `sealed` object).
pub const SUITE: &str = "kairan-sealed-v1";

/// ChaCha20-Poly1305 and XChaCha20-Poly1305 tag length.
pub const TAG_BYTES: usize = 16;
/// Length of an X25519 HPKE encapsulated key (`enc`).
pub const ENC_BYTES: usize = 32;
/// Length of a wrapped content key (32-byte key and tag).
pub const WRAPPED_KEY_BYTES: usize = 32 + TAG_BYTES;
/// Length of the random nonce of a group slot (XChaCha20-Poly1305).
pub const GROUP_NONCE_BYTES: usize = 24;

/// The `sealed` object of an advisory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sealed {
    /// Always [`SUITE`].
    pub suite: String,
    /// Who can open it: one slot per clinic or group, each wrapping the content key.
    pub recipients: Vec<Slot>,
    /// ChaCha20-Poly1305 of the [`Confidential`] JSON (ciphertext and tag), base64.
    #[serde(with = "base64_bytes")]
    pub ciphertext: Vec<u8>,
}

/// One recipient slot: the content key wrapped for one clinic or one group epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "to", rename_all = "lowercase", deny_unknown_fields)]
pub enum Slot {
    /// A named clinic.
    Clinic {
        /// The clinic's id (its certificate subject and directory entry).
        id: String,
        /// [`RecipientKey::kid`] of the key it was sealed to (a hint).
        kid: String,
        /// HPKE encapsulated key, base64 (32 bytes).
        #[serde(with = "base64_bytes")]
        enc: Vec<u8>,
        /// HPKE ciphertext of the content key, base64 (48 bytes).
        #[serde(with = "base64_bytes")]
        key: Vec<u8>,
    },
    /// Every clinic holding the epoch key of a scope's group.
    Group {
        /// The group's scope (inside the advisory's).
        scope: Scope,
        /// The epoch of the group key used.
        epoch: u64,
        /// XChaCha20-Poly1305 nonce, base64 (24 bytes).
        #[serde(with = "base64_bytes")]
        nonce: Vec<u8>,
        /// XChaCha20-Poly1305 of the content key, base64 (48 bytes).
        #[serde(with = "base64_bytes")]
        key: Vec<u8>,
    },
}

fn malformed(reason: String) -> Error {
    Error::MalformedSealed(reason)
}

fn check_len(field: &str, bytes: &[u8], expected: usize) -> Result<()> {
    if bytes.len() == expected {
        Ok(())
    } else {
        Err(malformed(format!("{field} is {} bytes, must be {expected}", bytes.len())))
    }
}

pub(crate) fn is_kid(text: &str) -> bool {
    text.len() == keys::RECIPIENT_KID_CHARS && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl Sealed {
    /// The sealed-advisory rules (`advisory` is the advisory carrying this object): only
    /// AMBER+STRICT and RED are sealed; no confidential field in clear; the suite; 1 to
    /// [`MAX_SEALED_RECIPIENTS`] slots, each well formed, no clinic or group scope twice,
    /// group scopes inside the advisory's, no group slot on RED; a ciphertext at least a tag.
    pub fn validate(&self, advisory: &Advisory) -> Result<()> {
        if !advisory.tlp.must_be_sealed() {
            return Err(malformed(format!("{} is not sealed; only AMBER+STRICT and RED are", advisory.tlp)));
        }
        if !ContentView::of(advisory).is_empty() {
            return Err(malformed("a sealed advisory carries confidential fields in clear".into()));
        }
        if self.suite != SUITE {
            return Err(malformed(format!("suite {:?}, only {SUITE:?} is known", self.suite)));
        }
        let count = self.recipients.len();
        if count > MAX_SEALED_RECIPIENTS {
            return Err(Error::Oversize {
                what: "sealed recipients",
                limit: MAX_SEALED_RECIPIENTS,
                actual: count,
            });
        }
        if count == 0 {
            return Err(malformed("no recipient".into()));
        }
        let mut clinics = BTreeSet::new();
        let mut groups = BTreeSet::new();
        for slot in &self.recipients {
            match slot {
                Slot::Clinic { id, kid, enc, key } => {
                    check_id("recipient id", id).map_err(malformed)?;
                    if !is_kid(kid) {
                        return Err(malformed(format!("kid {kid:?} of {id} is not 16 lowercase hex")));
                    }
                    check_len("enc", enc, ENC_BYTES)?;
                    check_len("key", key, WRAPPED_KEY_BYTES)?;
                    if !clinics.insert(id.as_str()) {
                        return Err(malformed(format!("recipient {id} appears twice")));
                    }
                }
                Slot::Group { scope, epoch, nonce, key } => {
                    if advisory.tlp == Tlp::Red {
                        return Err(malformed(format!(
                            "TLP:RED names its recipients; group {scope} refused"
                        )));
                    }
                    if !advisory.scope.contains(scope) {
                        return Err(Error::ScopeViolation {
                            what: "sealed group outside the advisory's scope".into(),
                            scope: scope.to_string(),
                            allowed: advisory.scope.to_string(),
                        });
                    }
                    if *epoch == 0 {
                        return Err(malformed(format!("group {scope}: epochs start at 1")));
                    }
                    check_len("nonce", nonce, GROUP_NONCE_BYTES)?;
                    check_len("key", key, WRAPPED_KEY_BYTES)?;
                    if !groups.insert(scope.to_string()) {
                        return Err(malformed(format!("group {scope} appears twice")));
                    }
                }
            }
        }
        if self.ciphertext.len() < TAG_BYTES {
            return Err(malformed(format!(
                "ciphertext of {} bytes is shorter than its tag",
                self.ciphertext.len()
            )));
        }
        Ok(())
    }

    /// The clinic ids of the named slots, in order.
    pub fn clinics(&self) -> impl Iterator<Item = &str> {
        self.recipients.iter().filter_map(|slot| match slot {
            Slot::Clinic { id, .. } => Some(id.as_str()),
            Slot::Group { .. } => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::sealed::{group_key, sealed_amber_strict, sealed_red};

    fn code(advisory: &Advisory) -> &'static str {
        advisory.validate().map_or_else(|e| e.code(), |()| "ok")
    }

    #[test]
    fn slots_have_their_wire_shape_and_refuse_unknown_fields() {
        let advisory = sealed_red();
        let sealed = advisory.sealed.as_ref().expect("sealed");
        let json = serde_json::to_value(&sealed.recipients[0]).expect("json");
        let mut fields: Vec<&str> = json.as_object().expect("object").keys().map(String::as_str).collect();
        fields.sort_unstable();
        assert_eq!(fields, ["enc", "id", "key", "kid", "to"]);
        assert_eq!(json["to"], "clinic");
        let mut extra = json.clone();
        extra["note"] = "x".into();
        assert!(serde_json::from_value::<Slot>(extra).is_err(), "unknown field refused");
        let mut other = json;
        other["to"] = "everyone".into();
        assert!(serde_json::from_value::<Slot>(other).is_err(), "unknown slot kind refused");
        let group =
            serde_json::to_value(&sealed_amber_strict().sealed.expect("sealed").recipients[0]).expect("json");
        assert_eq!((group["to"].as_str(), group["epoch"].as_u64()), (Some("group"), Some(1)));
    }

    #[test]
    fn structure_rules_are_enforced_by_validation() {
        assert_eq!(code(&sealed_red()), "ok");
        let edit = |change: fn(&mut Sealed)| {
            let mut advisory = sealed_red();
            change(advisory.sealed.as_mut().expect("sealed"));
            code(&advisory)
        };
        assert_eq!(edit(|s| s.suite = "kairan-sealed-v2".into()), "malformed_sealed");
        assert_eq!(edit(|s| s.recipients.clear()), "malformed_sealed");
        assert_eq!(
            edit(|s| {
                let slot = s.recipients[0].clone();
                s.recipients = vec![slot; MAX_SEALED_RECIPIENTS + 1];
            }),
            "oversize_input"
        );
        assert_eq!(
            edit(|s| {
                if let Slot::Clinic { kid, .. } = &mut s.recipients[0] {
                    kid.make_ascii_uppercase();
                }
            }),
            "malformed_sealed"
        );
        assert_eq!(
            edit(|s| {
                if let Slot::Clinic { enc, .. } = &mut s.recipients[0] {
                    enc.pop();
                }
            }),
            "malformed_sealed"
        );
        assert_eq!(edit(|s| s.ciphertext.truncate(TAG_BYTES - 1)), "malformed_sealed");
    }

    #[test]
    fn group_slots_stay_inside_the_advisory_scope_and_start_at_epoch_one() {
        let edit = |change: fn(&mut Slot)| {
            let mut advisory = sealed_amber_strict();
            change(&mut advisory.sealed.as_mut().expect("sealed").recipients[0]);
            code(&advisory)
        };
        assert_eq!(
            edit(|slot| {
                if let Slot::Group { scope, .. } = slot {
                    *scope = Scope::parse("jp/27").expect("scope");
                }
            }),
            "scope_violation"
        );
        assert_eq!(
            edit(|slot| {
                if let Slot::Group { epoch, .. } = slot {
                    *epoch = 0;
                }
            }),
            "malformed_sealed"
        );
        let mut red = sealed_amber_strict();
        red.tlp = Tlp::Red;
        assert_eq!(code(&red), "malformed_sealed");
        assert_eq!(group_key(1).epoch(), 1);
    }
}
