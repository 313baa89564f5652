//! Deterministic fixtures: keys from labels, a sample advisory and a small signed hierarchy.
//!
//! Used by unit tests, golden test vectors, benchmarks, the fuzz target and `kairan demo`'s
//! forgery cases; also the reference Merkle tree of RFC 6962 implementations and a checkpoint
//! of it. Every key is derived from a label (`SHA-256("kairan-fixture:" + label)`),
//! so the same label always gives the same key: never use these keys in production.

use sha2::{Digest as _, Sha256};

pub mod sealed;

use crate::advisory::{Advisory, Kind, Link, Localized, Severity, Source, Status, Tlp};
use crate::cert::{Certificate, ROOT_ISSUER, Role};
use crate::delivery::{Delivery, HopInput, VerifyContext, attest, verify_parsed};
use crate::envelope::{ADVISORY_TYPE, Envelope};
use crate::keys::{Digest, SecretKey};
use crate::note::{Checkpoint, Note, NoteVerifier, SignatureType};
use crate::scope::Scope;
use crate::time::Timestamp;
use crate::tlog::{leaf_hash, root_of};
use crate::trust::{Revocation, RevocationSet, TrustAnchors, TrustBundle};

/// The 32-byte seed of the fixture key named `label`.
pub fn seed(label: &str) -> [u8; 32] {
    Sha256::digest(format!("kairan-fixture:{label}").as_bytes()).into()
}

/// The fixture key named `label`.
pub fn key(label: &str) -> SecretKey {
    // A SHA-256 output is always a valid Ed25519 seed; from_seed only fails on weak public
    // keys, which a hashed seed gives with negligible probability (and the tests would show).
    SecretKey::from_seed(&seed(label)).unwrap_or_else(|e| panic!("fixture key {label}: {e}"))
}

/// 2021-12-01T09:00:00Z, the fixtures' "now".
pub const FIXTURE_NOW: Timestamp = Timestamp::from_unix_ms(1_638_349_200_000);

pub(crate) fn scope(text: &str) -> Scope {
    Scope::parse(text).unwrap_or_else(|e| panic!("fixture scope: {e}"))
}

/// A small valid advisory of `origin` (scope `jp`, issued at [`FIXTURE_NOW`], 30 days).
pub fn sample_advisory(origin: &str, seq: u64, prev: Option<Digest>) -> Advisory {
    Advisory {
        origin: origin.to_owned(),
        seq,
        prev,
        id: format!("{origin}-test-{seq}"),
        kind: Kind::Alert,
        references: Vec::new(),
        status: Status::Test,
        issued_at: FIXTURE_NOW,
        expires_at: FIXTURE_NOW.plus_secs(30 * 24 * 3600),
        tlp: Tlp::Amber,
        handling:
            "医療機関職員及び契約ベンダーに限る / medical institution staff and contracted vendors only"
                .into(),
        scope: scope("jp"),
        severity: Severity::Severe,
        categories: vec!["ransomware".into()],
        cves: vec!["CVE-2021-20837".into()],
        lang: "ja".into(),
        title: Localized::new("ja", "テスト注意喚起").with("en", "Test advisory"),
        summary: Localized::new("ja", "これは試験用の注意喚起です。").with("en", "This is a test advisory."),
        body: Localized::new("ja", "本文").with("en", "Body"),
        items: vec![Localized::new("ja", "VPN機器を更新する").with("en", "Update VPN appliances")],
        links: vec![Link {
            url: "https://www.ipa.go.jp/security/".into(),
            label: Localized::new("ja", "IPA 情報セキュリティ").with("en", "IPA security"),
        }],
        contact: Some(Localized::new("ja", "システムベンダーへ連絡").with("en", "Call your system vendor")),
        source: Some(Source { name: "JPCERT/CC".into(), url: Some("https://www.jpcert.or.jp/".into()) }),
        sealed: None,
    }
}

/// A relay of the fixture hierarchy.
#[derive(Debug)]
pub struct FixtureRelay {
    /// Node id.
    pub id: String,
    /// Certified scope.
    pub scope: Scope,
    /// Signing key.
    pub key: SecretKey,
    /// Certificate envelope.
    pub cert: Envelope,
}

/// root (2 of 3) → origin `mhlw` (scope `jp`) and national `jp` → `jp-13` → `jp-13-chuo`.
#[derive(Debug)]
pub struct Hierarchy {
    /// The three root keys.
    pub roots: Vec<SecretKey>,
    /// Anchors: the three root public keys, threshold 2.
    pub anchors: TrustAnchors,
    /// The origin key.
    pub origin_key: SecretKey,
    /// The origin certificate (root-signed).
    pub origin_cert: Envelope,
    /// National, prefecture (Tokyo), district (Chuo).
    pub relays: Vec<FixtureRelay>,
    /// The time everything is valid at.
    pub now: Timestamp,
}

impl Hierarchy {
    /// The standard fixture hierarchy.
    pub fn standard() -> Self {
        let now = FIXTURE_NOW;
        let roots: Vec<SecretKey> = (1..=3).map(|i| key(&format!("root-{i}"))).collect();
        let anchors = TrustAnchors::numbered(2, roots.iter().map(SecretKey::public))
            .unwrap_or_else(|e| panic!("fixture anchors: {e}"));
        let window = (now.plus_secs(-24 * 3600), now.plus_secs(365 * 24 * 3600));
        let cert =
            |serial: &str, issuer: &str, subject: &str, key: &SecretKey, role: Role, scope_text: &str| {
                Certificate::for_key(serial, issuer, subject, key.public(), role, &scope(scope_text), window)
            };
        let origin_key = key("origin-mhlw");
        let origin_cert = cert("root-0001", ROOT_ISSUER, "mhlw", &origin_key, Role::Origin, "jp")
            .sign(&[&roots[0], &roots[1]]);
        let mut relays: Vec<FixtureRelay> = Vec::new();
        for (id, scope_text) in [("jp", "jp"), ("jp-13", "jp/13"), ("jp-13-chuo", "jp/13/chuo")] {
            let relay_key = key(&format!("relay-{id}"));
            let envelope = match relays.last() {
                None => cert("root-0002", ROOT_ISSUER, id, &relay_key, Role::Relay, scope_text)
                    .sign(&[&roots[0], &roots[2]]),
                Some(parent) => {
                    cert(&format!("{}-0001", parent.id), &parent.id, id, &relay_key, Role::Relay, scope_text)
                        .sign(&[&parent.key])
                }
            };
            relays.push(FixtureRelay {
                id: id.into(),
                scope: scope(scope_text),
                key: relay_key,
                cert: envelope,
            });
        }
        Self { roots, anchors, origin_key, origin_cert, relays, now }
    }

    /// The origin certificate followed by every relay certificate.
    pub fn delivery_certs(&self) -> Vec<Envelope> {
        std::iter::once(self.origin_cert.clone()).chain(self.relays.iter().map(|r| r.cert.clone())).collect()
    }

    /// The advisory signed by the origin key.
    pub fn sign_advisory(&self, advisory: &Advisory) -> Envelope {
        Envelope::sign(ADVISORY_TYPE, advisory.to_payload(), &[&self.origin_key])
    }

    /// A delivery of `advisory` as it leaves the first `hop_count` relays (0 = as published).
    /// Hop `i` receives at `now + 10 s·i + 1 s` and forwards one second later.
    pub fn delivery(&self, advisory: &Advisory, hop_count: usize) -> Delivery {
        let revocations = RevocationSet::default();
        let mut delivery = Delivery {
            advisory: self.sign_advisory(advisory),
            certs: vec![self.origin_cert.clone()],
            hops: vec![],
        };
        for (index, relay) in self.relays.iter().take(hop_count).enumerate() {
            let received_at = self.now.plus_secs(10 * index as i64 + 1);
            let ctx = VerifyContext { anchors: &self.anchors, revocations: &revocations, now: received_at };
            let verified = verify_parsed(delivery, ctx).unwrap_or_else(|e| panic!("fixture delivery: {e}"));
            delivery = attest(
                &verified,
                &HopInput {
                    relay_id: &relay.id,
                    relay_key: &relay.key,
                    relay_cert: &relay.cert,
                    received_at,
                    forwarded_at: received_at.plus_secs(1),
                    relay_seq: 1,
                },
            );
        }
        delivery
    }

    /// Clinic `id` of the district `jp-13-chuo`: its signing key (derived from the id) and its
    /// certificate, issued by the district relay (role `clinic`, scope `jp/13/chuo`).
    pub fn clinic(&self, id: &str) -> (SecretKey, Envelope) {
        let district = &self.relays[2];
        let clinic_key = key(&format!("clinic-{id}"));
        let window = (self.now.plus_secs(-24 * 3600), self.now.plus_secs(365 * 24 * 3600));
        let cert = Certificate::for_key(
            format!("{}-{id}", district.id),
            &district.id,
            id,
            clinic_key.public(),
            Role::Clinic,
            &district.scope,
            window,
        )
        .sign(&[&district.key]);
        (clinic_key, cert)
    }

    /// The certificate of fixture relay `index` and those above it, up to the root-issued one.
    pub fn relay_chain(&self, index: usize) -> Vec<Envelope> {
        self.relays.iter().take(index + 1).rev().map(|r| r.cert.clone()).collect()
    }

    /// A bundle revoking the certificate `cert` by the root (root-1 and root-2), issued at
    /// `now`, effective from `effective_at`, carrying the certificate.
    pub fn root_revocation(&self, cert: &Envelope, effective_at: Timestamp) -> TrustBundle {
        let revocation = Revocation::of_cert(cert, ROOT_ISSUER, 1, self.now, effective_at, "key compromised")
            .unwrap_or_else(|e| panic!("fixture revocation: {e}"));
        TrustBundle {
            certs: vec![cert.clone()],
            revocations: vec![revocation.sign(&[&self.roots[0], &self.roots[1]])],
            rotations: Vec::new(),
        }
    }

    /// A bundle revoking the certificate `cert` by fixture relay `relay`, issued at `issued_at`,
    /// effective from `effective_at`, carrying the certificate, `between` (the certificates
    /// linking it to the relay, if any) and the relay's chain.
    pub fn relay_revocation(
        &self,
        relay: usize,
        cert: &Envelope,
        between: &[Envelope],
        issued_at: Timestamp,
        effective_at: Timestamp,
    ) -> TrustBundle {
        let revoker = &self.relays[relay];
        let revocation = Revocation::of_cert(cert, &revoker.id, 1, issued_at, effective_at, "node retired")
            .unwrap_or_else(|e| panic!("fixture revocation: {e}"));
        let mut certs = vec![cert.clone()];
        certs.extend_from_slice(between);
        certs.extend(self.relay_chain(relay));
        TrustBundle { certs, revocations: vec![revocation.sign(&[&revoker.key])], rotations: Vec::new() }
            .canonical()
    }

    /// A time after every fixture hop, when verifying a full delivery.
    pub fn later(&self) -> Timestamp {
        self.now.plus_secs(60)
    }
}

/// The eight leaves of the reference tree of the RFC 6962 implementations (Certificate
/// Transparency's, Trillian's): `""`, `00`, `10`, `2021`, `3031`, `40414243`,
/// `5051525354555657`, `606162636465666768696a6b6c6d6e6f` (hex). Tree heads and proofs are
/// published for them.
pub const RFC6962_LEAVES: [&[u8]; 8] = [
    b"",
    &[0x00],
    &[0x10],
    &[0x20, 0x21],
    &[0x30, 0x31],
    &[0x40, 0x41, 0x42, 0x43],
    &[0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57],
    &[0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d, 0x6e, 0x6f],
];

/// Origin of the fixture log, and the name of its key `key("log-jp-13")`.
pub const LOG_ORIGIN: &str = "kairan.example/jp-13";

/// Name of the fixture cosigner, whose key is `key("witness-1")`.
pub const WITNESS_NAME: &str = "kairan.example/witness-1";

/// The verifier key (type `0x01`) of the fixture log.
pub fn log_verifier() -> NoteVerifier {
    NoteVerifier::new(LOG_ORIGIN, SignatureType::Ed25519, key("log-jp-13").public().clone())
        .unwrap_or_else(|e| panic!("fixture log key: {e}"))
}

/// The verifier key (type `0x04`) of the fixture cosigner.
pub fn witness_verifier() -> NoteVerifier {
    NoteVerifier::new(WITNESS_NAME, SignatureType::CosignatureV1, key("witness-1").public().clone())
        .unwrap_or_else(|e| panic!("fixture witness key: {e}"))
}

/// The checkpoint of [`RFC6962_LEAVES`] (size 8) signed by the fixture log and cosigned by the
/// fixture witness at [`FIXTURE_NOW`].
pub fn sample_checkpoint() -> Note {
    let leaves: Vec<_> = RFC6962_LEAVES.iter().map(|leaf| leaf_hash(leaf)).collect();
    let checkpoint = Checkpoint::new(LOG_ORIGIN, leaves.len() as u64, root_of(&leaves));
    let mut note = checkpoint.sign(&key("log-jp-13")).unwrap_or_else(|e| panic!("fixture checkpoint: {e}"));
    let timestamp = u64::try_from(FIXTURE_NOW.unix_ms() / 1000).unwrap_or_default();
    note.cosign(WITNESS_NAME, &key("witness-1"), timestamp)
        .unwrap_or_else(|e| panic!("fixture cosignature: {e}"));
    note
}
