//! Coverage (`application/vnd.kairan.coverage+json`): which clinics of a district received
//! and opened an advisory, as the district relay states it from its clinics' signed receipts
//! ([`crate::receipt`]).
//!
//! Receipts stop at the district. What travels up is one statement per (district, advisory):
//! the number of certified clinics, how many sent a receipt, how many opened it, and the ids
//! of those that did not receive it — counts and the short list an auditor asks for, not a
//! message per clinic. A statement is signed by the relay certified for exactly its scope and
//! split in parts of at most [`MAX_PART_ENTRIES`] missing ids, verified like a recipient
//! directory ([`crate::directory`]); `version` grows with every change, so receivers keep the
//! newest complete version. Relays above forward their children's statements unchanged (each
//! stays verifiable by anyone with the anchors), so the national node holds the whole
//! picture: [`CoverageTable`]. [`Tally`] is the district's side: members, receipts, statements.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::advisory::check_id;
use crate::cert::VerifiedCert;
use crate::delivery::VerifyContext;
use crate::directory::{PartHeader, SignedStatement, verify_scoped};
use crate::envelope::{COVERAGE_TYPE, Envelope, encode_payload};
use crate::error::{Error, Result};
use crate::keys::{Digest, SecretKey};
use crate::limits::{MAX_PART_ENTRIES, MAX_PARTS};
use crate::receipt::Receipt;
use crate::scope::Scope;
use crate::time::Timestamp;
use crate::verified::{Verifiable, Verified};

/// One part of a district's coverage statement about one advisory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoverageStatement {
    /// The district relay's id.
    pub relay: String,
    /// Its scope (exactly its certificate's).
    pub scope: Scope,
    /// The advisory.
    pub advisory: Digest,
    /// Grows by one at every change of the counts or the list.
    pub version: u64,
    /// When the relay signed it.
    pub issued_at: Timestamp,
    /// This part, 1-based.
    pub part: u32,
    /// Parts of this version.
    pub parts: u32,
    /// Certified clinics of the scope (its members of kind clinic).
    pub clinics: u32,
    /// Clinics whose receipt verified.
    pub received: u32,
    /// Of those, clinics whose receipt says it was opened.
    pub opened: u32,
    /// Ids of clinics without a receipt (this part's share, sorted across parts).
    pub missing: Vec<String>,
}

impl CoverageStatement {
    /// Signs it with the relay key; `chain` is the relay's certificate chain.
    pub fn sign(&self, relay_key: &SecretKey, chain: &[Envelope]) -> SignedStatement {
        SignedStatement {
            statement: Envelope::sign(COVERAGE_TYPE, encode_payload(self), &[relay_key]),
            certs: chain.to_vec(),
        }
    }
}

/// A verified part: the statement; its facts are the relay certificate that signed it.
impl Verifiable for CoverageStatement {
    type Facts = VerifiedCert;
}

/// Verifies one coverage part (`docs/protocol.md` §23): the checks of a scope statement
/// (signed by the relay certified for exactly `scope`), then `version` ≥ 1, `received` ≤
/// `clinics`, `opened` ≤ `received`, missing ids valid, unique, at most [`MAX_PART_ENTRIES`].
pub fn verify_coverage(bytes: &[u8], ctx: VerifyContext<'_>) -> Result<Verified<CoverageStatement>> {
    let (statement, signer) =
        verify_scoped::<CoverageStatement>(bytes, COVERAGE_TYPE, "coverage", ctx, |s| PartHeader {
            relay: &s.relay,
            scope: &s.scope,
            issued_at: s.issued_at,
            part: s.part,
            parts: s.parts,
        })?;
    let malformed = |reason: String| Error::MalformedPayload { payload_type: COVERAGE_TYPE.into(), reason };
    if statement.version == 0 {
        return Err(malformed("version 0; versions start at 1".into()));
    }
    if statement.received > statement.clinics || statement.opened > statement.received {
        return Err(malformed(format!(
            "received {} of {} clinics, opened {}: counts must not exceed each other",
            statement.received, statement.clinics, statement.opened
        )));
    }
    if statement.missing.len() > MAX_PART_ENTRIES {
        return Err(Error::Oversize {
            what: "coverage part",
            limit: MAX_PART_ENTRIES,
            actual: statement.missing.len(),
        });
    }
    let mut seen = BTreeSet::new();
    for id in &statement.missing {
        check_id("missing", id).map_err(malformed)?;
        if !seen.insert(id) {
            return Err(malformed(format!("clinic {id} listed twice")));
        }
    }
    Ok(Verified::new(statement, signer))
}

/// The district's side: its certified clinics and, per advisory, the newest receipt of each.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    members: BTreeSet<String>,
    receipts: BTreeMap<Digest, BTreeMap<String, Receipt>>,
    versions: BTreeMap<Digest, u64>,
}

impl Tally {
    /// A tally over these certified clinics.
    pub fn new(members: impl IntoIterator<Item = String>) -> Self {
        Self { members: members.into_iter().collect(), ..Self::default() }
    }

    /// The certified clinics.
    pub fn members(&self) -> &BTreeSet<String> {
        &self.members
    }

    /// Records a verified receipt of a member. Returns whether it changed anything (a new
    /// clinic, or the first `opened_at`); a receipt of a non-member is ignored.
    pub fn record(&mut self, receipt: Receipt) -> bool {
        if !self.members.contains(&receipt.clinic) {
            return false;
        }
        let held = self.receipts.entry(receipt.advisory).or_default();
        let changed = match held.get(&receipt.clinic) {
            None => true,
            Some(old) => old.opened_at.is_none() && receipt.opened_at.is_some(),
        };
        if changed {
            *self.versions.entry(receipt.advisory).or_default() += 1;
            held.insert(receipt.clinic.clone(), receipt);
        }
        changed
    }

    /// Advisories with at least one receipt.
    pub fn advisories(&self) -> impl Iterator<Item = &Digest> {
        self.receipts.keys()
    }

    /// The version of `advisory`'s counts (0: no receipt yet).
    pub fn version(&self, advisory: &Digest) -> u64 {
        self.versions.get(advisory).copied().unwrap_or(0)
    }

    /// The receipts held for `advisory`, by clinic.
    pub fn receipts(&self, advisory: &Digest) -> Option<&BTreeMap<String, Receipt>> {
        self.receipts.get(advisory)
    }

    /// The coverage statement parts of `advisory` as relay `relay` of `scope` states them now.
    pub fn statements(
        &self,
        relay: &str,
        scope: &Scope,
        advisory: &Digest,
        issued_at: Timestamp,
    ) -> Vec<CoverageStatement> {
        let empty = BTreeMap::new();
        let held = self.receipts.get(advisory).unwrap_or(&empty);
        let missing: Vec<String> =
            self.members.iter().filter(|id| !held.contains_key(*id)).cloned().collect();
        let opened = held.values().filter(|receipt| receipt.opened_at.is_some()).count();
        let chunks: Vec<Vec<String>> = if missing.is_empty() {
            vec![Vec::new()]
        } else {
            missing.chunks(MAX_PART_ENTRIES).map(<[String]>::to_vec).collect()
        };
        let parts = u32::try_from(chunks.len()).unwrap_or(u32::MAX).min(MAX_PARTS);
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        chunks
            .into_iter()
            .take(MAX_PARTS as usize)
            .enumerate()
            .map(|(index, missing)| CoverageStatement {
                relay: relay.to_owned(),
                scope: scope.clone(),
                advisory: *advisory,
                version: self.version(advisory).max(1),
                issued_at,
                part: count(index + 1),
                parts,
                clinics: count(self.members.len()),
                received: count(held.len()),
                opened: count(opened),
                missing,
            })
            .collect()
    }
}

/// One district's coverage of one advisory, from its newest complete statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CoverageRow {
    /// The district relay.
    pub relay: String,
    /// Its scope.
    pub scope: Scope,
    /// The statement's version.
    pub version: u64,
    /// When it was signed.
    pub issued_at: Timestamp,
    /// Certified clinics.
    pub clinics: u32,
    /// Received.
    pub received: u32,
    /// Opened.
    pub opened: u32,
    /// Clinics without a receipt.
    pub missing: Vec<String>,
}

/// Every district's newest complete coverage of every advisory (the national node's picture,
/// or an auditor's from the statements it was given).
#[derive(Debug, Clone, Default)]
pub struct CoverageTable {
    /// (advisory, scope) → version → part → statement.
    parts: BTreeMap<(Digest, String), BTreeMap<u64, BTreeMap<u32, CoverageStatement>>>,
}

impl CoverageTable {
    /// Adds a verified part. Returns whether it is new (not held, and not older than a
    /// complete version held).
    pub fn insert(&mut self, verified: &Verified<CoverageStatement>) -> bool {
        let statement = verified.value().clone();
        let key = (statement.advisory, statement.scope.to_string());
        let complete = self.complete_version(&key);
        if complete.is_some_and(|held| held >= statement.version) {
            return false;
        }
        let versions = self.parts.entry(key.clone()).or_default();
        let parts = versions.entry(statement.version).or_default();
        if parts.contains_key(&statement.part) {
            return false;
        }
        parts.insert(statement.part, statement);
        // Older versions than the newest complete one are of no use any more.
        if let Some(newest) = self.complete_version(&key) {
            if let Some(versions) = self.parts.get_mut(&key) {
                versions.retain(|version, _| *version >= newest);
            }
        }
        true
    }

    fn complete_version(&self, key: &(Digest, String)) -> Option<u64> {
        self.parts.get(key)?.iter().rev().find_map(|(version, parts)| {
            let first = parts.values().next()?;
            (parts.len() == first.parts as usize && parts.values().all(|p| p.parts == first.parts))
                .then_some(*version)
        })
    }

    /// The rows of `advisory`, one per district with a complete statement, by scope.
    pub fn rows(&self, advisory: &Digest) -> Vec<CoverageRow> {
        let mut rows = Vec::new();
        for (key, versions) in self.parts.range((*advisory, String::new())..) {
            if key.0 != *advisory {
                break;
            }
            let Some(version) = self.complete_version(key) else { continue };
            let Some(parts) = versions.get(&version) else { continue };
            let Some(first) = parts.values().next() else { continue };
            rows.push(CoverageRow {
                relay: first.relay.clone(),
                scope: first.scope.clone(),
                version,
                issued_at: first.issued_at,
                clinics: first.clinics,
                received: first.received,
                opened: first.opened,
                missing: parts.values().flat_map(|part| part.missing.iter().cloned()).collect(),
            });
        }
        rows
    }

    /// Every statement part held, to store or forward.
    pub fn statements(&self) -> impl Iterator<Item = &CoverageStatement> {
        self.parts.values().flat_map(|versions| versions.values().flat_map(BTreeMap::values))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RevocationSet;
    use crate::fixtures::Hierarchy;

    #[test]
    fn a_district_tally_signs_counts_and_the_missing_and_the_table_keeps_the_newest() {
        let tree = Hierarchy::standard();
        let district = &tree.relays[2];
        let advisory = Digest::of(b"advisory");
        let members: Vec<String> = (1..=300).map(|i| format!("c{i:03}")).collect();
        let mut tally = Tally::new(members.clone());
        let receipt = |clinic: &str, opened: bool| Receipt {
            clinic: clinic.into(),
            advisory,
            received_at: tree.now,
            opened_at: opened.then_some(tree.now.plus_secs(5)),
        };
        for id in &members[..100] {
            assert!(tally.record(receipt(id, false)));
        }
        assert!(!tally.record(receipt("c001", false)), "the same receipt again changes nothing");
        assert!(tally.record(receipt("c001", true)), "opened");
        assert!(!tally.record(receipt("c001", false)), "an older receipt does not undo opened");
        assert!(!tally.record(receipt("stranger", false)), "not a member");
        let parts = tally.statements(&district.id, &district.scope, &advisory, tree.now);
        assert_eq!(parts.len(), 2, "200 missing in parts of {MAX_PART_ENTRIES}");
        let chain = tree.relay_chain(2);
        let revocations = RevocationSet::default();
        let ctx = VerifyContext { anchors: &tree.anchors, revocations: &revocations, now: tree.later() };
        let mut table = CoverageTable::default();
        for part in &parts {
            let verified =
                verify_coverage(&part.sign(&district.key, &chain).to_json(), ctx).expect("verifies");
            assert!(table.insert(&verified));
            assert!(!table.insert(&verified), "held");
        }
        let rows = table.rows(&advisory);
        assert_eq!(rows.len(), 1);
        assert_eq!(
            (rows[0].clinics, rows[0].received, rows[0].opened, rows[0].missing.len()),
            (300, 100, 1, 200)
        );
        assert_eq!(rows[0].missing[0], "c101");
        // A newer version with everyone: replaces it once complete.
        for id in &members[100..] {
            tally.record(receipt(id, false));
        }
        let newer = tally.statements(&district.id, &district.scope, &advisory, tree.now.plus_secs(10));
        assert_eq!(newer.len(), 1);
        let verified =
            verify_coverage(&newer[0].sign(&district.key, &chain).to_json(), ctx).expect("verifies");
        assert!(table.insert(&verified));
        let rows = table.rows(&advisory);
        assert_eq!((rows[0].received, rows[0].missing.len()), (300, 0));
        // The old version's parts are no longer news.
        let old = verify_coverage(&parts[0].sign(&district.key, &chain).to_json(), ctx).expect("verifies");
        assert!(!table.insert(&old));
    }

    #[test]
    fn only_the_relay_of_exactly_that_scope_speaks_for_it_and_counts_must_add_up() {
        let tree = Hierarchy::standard();
        let (district, prefecture) = (&tree.relays[2], &tree.relays[1]);
        let revocations = RevocationSet::default();
        let ctx = VerifyContext { anchors: &tree.anchors, revocations: &revocations, now: tree.later() };
        let statement = CoverageStatement {
            relay: district.id.clone(),
            scope: district.scope.clone(),
            advisory: Digest::of(b"a"),
            version: 1,
            issued_at: tree.now,
            part: 1,
            parts: 1,
            clinics: 2,
            received: 1,
            opened: 1,
            missing: vec!["c2".into()],
        };
        assert!(verify_coverage(&statement.sign(&district.key, &tree.relay_chain(2)).to_json(), ctx).is_ok());
        // The prefecture speaking for its district.
        let by_prefecture = CoverageStatement { relay: prefecture.id.clone(), ..statement.clone() };
        let error =
            verify_coverage(&by_prefecture.sign(&prefecture.key, &tree.relay_chain(1)).to_json(), ctx)
                .expect_err("refused");
        assert_eq!(error.code(), "scope_violation");
        for bad in [
            CoverageStatement { received: 3, ..statement.clone() },
            CoverageStatement { opened: 2, ..statement.clone() },
            CoverageStatement { version: 0, ..statement.clone() },
            CoverageStatement { missing: vec!["c2".into(), "c2".into()], ..statement.clone() },
            CoverageStatement { missing: vec!["not an id".into()], ..statement.clone() },
        ] {
            let error = verify_coverage(&bad.sign(&district.key, &tree.relay_chain(2)).to_json(), ctx)
                .expect_err("refused");
            assert_eq!(error.code(), "malformed_payload", "{bad:?}");
        }
    }
}
