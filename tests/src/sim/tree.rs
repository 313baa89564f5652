//! The simulated tree: keys derived from the seed, certificates made as `hierarchy.rs` makes
//! them (root 2-of-3 for origins and the national relay, each relay for its children), the
//! node skeletons, and the genuine advisories the origins will publish.

use std::collections::BTreeMap;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use sha2::{Digest as _, Sha256};

use bytes::Bytes;

use kairan_node::machine::{Attester, Identity, MachineConfig, Upstream};
use kairan_protocol::cert::ROOT_ISSUER;
use kairan_protocol::envelope::ADVISORY_TYPE;
use kairan_protocol::fixtures::sample_advisory;
use kairan_protocol::{
    Certificate, Delivery, Digest, Envelope, Localized, Revocation, Role, Scope, SecretKey, Timestamp,
    TrustAnchors, TrustBundle,
};

use super::config::SimConfig;

/// Simulated time 0: 2026-01-01T00:00:00Z.
pub const EPOCH: Timestamp = Timestamp::from_unix_ms(1_767_225_600_000);

/// Prefecture codes, Tokyo and Osaka first (as `hierarchy.rs` orders them).
const PREFECTURE_CODES: [&str; 47] = [
    "13", "27", "01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11", "12", "14", "15", "16",
    "17", "18", "19", "20", "21", "22", "23", "24", "25", "26", "28", "29", "30", "31", "32", "33", "34",
    "35", "36", "37", "38", "39", "40", "41", "42", "43", "44", "45", "46", "47",
];

/// Origin ids.
const ORIGINS: [&str; 3] = ["mhlw", "nisc", "jma"];

/// The 32-byte key seed for `label` in the run of `seed`: SHA-256("kairan-sim" ‖ seed ‖ label).
pub fn key_seed(seed: u64, label: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(b"kairan-sim\0");
    hasher.update(seed.to_be_bytes());
    hasher.update(label.as_bytes());
    hasher.finalize().into()
}

/// The key for `label` in the run of `seed`.
pub fn derive_key(seed: u64, label: &str) -> SecretKey {
    SecretKey::from_seed(&key_seed(seed, label)).unwrap_or_else(|e| panic!("sim key {label}: {e}"))
}

/// Tree levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// The national relay (ingest from origins).
    National,
    /// A prefectural relay.
    Prefecture,
    /// A district relay.
    District,
    /// A clinic (no key: it only keeps an inbox).
    Clinic,
}

/// A relay's signing identity (the key is re-derived from its seed at each start).
#[derive(Debug, Clone)]
pub struct RelayIdentity {
    /// Key seed.
    pub seed: [u8; 32],
    /// Certificate envelope.
    pub cert: Envelope,
}

/// A node of the tree as planned (the simulator adds its state).
#[derive(Debug)]
pub struct Planned {
    /// Node id.
    pub id: String,
    /// Level.
    pub level: Level,
    /// Scope (a clinic has its district's).
    pub scope: Scope,
    /// Parent index.
    pub parent: Option<usize>,
    /// Child indexes.
    pub children: Vec<usize>,
    /// Relays only.
    pub relay: Option<RelayIdentity>,
}

/// An origin.
#[derive(Debug)]
pub struct Origin {
    /// Origin id.
    pub id: String,
    /// Key.
    pub key: SecretKey,
    /// Root-issued certificate.
    pub cert: Envelope,
}

/// A genuine advisory: signed by a certified origin as the next link of its chain (origin,
/// scope).
#[derive(Debug, Clone)]
pub struct Genuine {
    /// Origin index.
    pub origin: usize,
    /// Origin id.
    pub origin_id: String,
    /// Sequence number in its chain (origin, scope).
    pub seq: u64,
    /// Its digest.
    pub digest: Digest,
    /// Its scope.
    pub scope: Scope,
    /// When the origin publishes it (simulated ms).
    pub publish_at: u64,
    /// The delivery as published (no hop).
    pub ingest: Delivery,
    /// Its JSON, as the origin publishes it.
    pub ingest_json: Bytes,
    /// The advisory as signed (the adversary derives equivocations from it).
    pub advisory: kairan_protocol::Advisory,
}

/// Everything the run derives from the seed before simulating.
#[derive(Debug)]
pub struct Tree {
    /// Trust anchors (3 root keys, threshold 2).
    pub anchors: TrustAnchors,
    /// The root keys (the root signs trust updates during the run).
    pub roots: Vec<SecretKey>,
    /// Origins.
    pub origins: Vec<Origin>,
    /// Nodes: national first, then prefectures, districts, clinics.
    pub nodes: Vec<Planned>,
    /// Index of the first clinic.
    pub first_clinic: usize,
    /// Genuine advisories in publication order.
    pub genuine: Vec<Genuine>,
    /// Certificate validity.
    pub not_before: Timestamp,
    /// Certificate validity.
    pub not_after: Timestamp,
}

fn scope(text: &str) -> Scope {
    Scope::parse(text).unwrap_or_else(|e| panic!("sim scope {text}: {e}"))
}

/// A one-role certificate of `key`, valid over the run, signed by `signers`.
fn certify(
    serial: String,
    names: (&str, &str),
    key: &SecretKey,
    role: Role,
    scope: &Scope,
    window: (Timestamp, Timestamp),
    signers: &[&SecretKey],
) -> Envelope {
    let (issuer, subject) = names;
    Certificate::for_key(serial, issuer, subject, key.public(), role, scope, window).sign(signers)
}

impl Tree {
    /// Builds the tree and the advisory plan of the run.
    pub fn build(seed: u64, config: &SimConfig, rng: &mut ChaCha8Rng) -> Tree {
        let not_before = EPOCH.plus_secs(-24 * 3600);
        let not_after = EPOCH.plus_secs(365 * 24 * 3600);
        let roots: Vec<SecretKey> = (1..=3).map(|i| derive_key(seed, &format!("root-{i}"))).collect();
        let anchors = TrustAnchors::numbered(2, roots.iter().map(SecretKey::public))
            .unwrap_or_else(|e| panic!("sim anchors: {e}"));
        let window = (not_before, not_after);
        let jp = scope("jp");
        let origins: Vec<Origin> = ORIGINS
            .iter()
            .take(config.origins.clamp(1, ORIGINS.len()))
            .map(|id| {
                let key = derive_key(seed, &format!("origin-{id}"));
                let cert = certify(
                    format!("root-origin-{id}"),
                    (ROOT_ISSUER, id),
                    &key,
                    Role::Origin,
                    &jp,
                    window,
                    &[&roots[0], &roots[1]],
                );
                Origin { id: (*id).to_owned(), key, cert }
            })
            .collect();

        let mut nodes: Vec<Planned> = Vec::with_capacity(config.scale.relays() + config.scale.clinics());
        let relay = |id: &str, level: Level, scope: Scope, parent: Option<usize>, cert: Envelope| Planned {
            id: id.to_owned(),
            level,
            scope,
            parent,
            children: Vec::new(),
            relay: Some(RelayIdentity { seed: key_seed(seed, &format!("relay-{id}")), cert }),
        };
        let national_key = derive_key(seed, "relay-jp");
        let national_cert = certify(
            "root-relay-jp".into(),
            (ROOT_ISSUER, "jp"),
            &national_key,
            Role::Relay,
            &jp,
            window,
            &[&roots[0], &roots[2]],
        );
        nodes.push(relay("jp", Level::National, jp.clone(), None, national_cert));
        let mut keys: Vec<SecretKey> = vec![national_key];
        for code in PREFECTURE_CODES.iter().take(config.scale.prefectures) {
            let id = format!("jp-{code}");
            let scope = scope(&format!("jp/{code}"));
            let key = derive_key(seed, &format!("relay-{id}"));
            let cert =
                certify(format!("jp-{id}"), ("jp", &id), &key, Role::Relay, &scope, window, &[&keys[0]]);
            nodes.push(relay(&id, Level::Prefecture, scope, Some(0), cert));
            keys.push(key);
        }
        let prefectures = nodes.len() - 1;
        for prefecture in 1..=prefectures {
            for district in 1..=config.scale.districts_per_prefecture {
                let name = format!("d{district}");
                let parent_id = nodes[prefecture].id.clone();
                let id = format!("{parent_id}-{name}");
                let scope = nodes[prefecture].scope.child(&name).unwrap_or_else(|e| panic!("{e}"));
                let key = derive_key(seed, &format!("relay-{id}"));
                let cert = certify(
                    format!("{parent_id}-{name}"),
                    (&parent_id, &id),
                    &key,
                    Role::Relay,
                    &scope,
                    window,
                    &[&keys[prefecture]],
                );
                nodes.push(relay(&id, Level::District, scope, Some(prefecture), cert));
                keys.push(key);
            }
        }
        let first_clinic = nodes.len();
        for district in (1 + prefectures)..first_clinic {
            for number in 1..=config.scale.clinics_per_district {
                nodes.push(Planned {
                    id: format!("{}-c{number}", nodes[district].id),
                    level: Level::Clinic,
                    scope: nodes[district].scope.clone(),
                    parent: Some(district),
                    children: Vec::new(),
                    relay: None,
                });
            }
        }
        for index in 1..nodes.len() {
            if let Some(parent) = nodes[index].parent {
                nodes[parent].children.push(index);
            }
        }

        let genuine = plan_advisories(config, &origins, &nodes, first_clinic, rng);
        Tree { anchors, roots, origins, nodes, first_clinic, genuine, not_before, not_after }
    }

    /// The machine configuration of node `index` (what its config file would say).
    pub fn machine_config(&self, index: usize, sync_interval_ms: u64) -> MachineConfig {
        let node = &self.nodes[index];
        let identity = Identity {
            id: node.id.clone(),
            scope: node.scope.clone(),
            upstream: match node.parent {
                None => Upstream::Ingest,
                Some(parent) => Upstream::Relay(self.nodes[parent].id.clone()),
            },
            attester: node.relay.as_ref().map(|identity| Attester {
                key: SecretKey::from_seed(&identity.seed).unwrap_or_else(|e| panic!("relay key: {e}")),
                cert: identity.cert.clone(),
                extra_certs: Vec::new(),
                chain: self.chain_above(index),
            }),
        };
        // The members of its broker: its children, each with its own scope.
        let children =
            node.children.iter().map(|c| (self.nodes[*c].id.clone(), self.nodes[*c].scope.clone())).collect();
        MachineConfig { identity, anchors: self.anchors.clone(), sync_interval_ms, children }
    }
}

impl Tree {
    /// The certificates of the relays above node `index`, nearest first.
    pub fn chain_above(&self, index: usize) -> Vec<Envelope> {
        let mut chain = Vec::new();
        let mut above = self.nodes[index].parent;
        while let Some(parent) = above {
            if let Some(relay) = &self.nodes[parent].relay {
                chain.push(relay.cert.clone());
            }
            above = self.nodes[parent].parent;
        }
        chain
    }

    /// Trust update `index` of the run: a root-signed bundle revoking keys `0..=index` of
    /// retired parties that no genuine advisory or hop uses (cumulative, as an administrator's
    /// bundle is).
    pub fn trust_update(&self, seed: u64, index: usize, now: Timestamp) -> Bytes {
        let window = (EPOCH.plus_secs(-24 * 3600), EPOCH.plus_secs(365 * 24 * 3600));
        let roots = [&self.roots[0], &self.roots[1]];
        let mut certs = Vec::new();
        let mut revocations = Vec::new();
        for n in 0..=index {
            // A revocation names a certificate and travels with it.
            let retired = derive_key(seed, &format!("retired-{n}"));
            let subject = format!("retired-{n}");
            let names = (ROOT_ISSUER, subject.as_str());
            let cert =
                certify(format!("retired-{n}"), names, &retired, Role::Relay, &scope("jp"), window, &roots);
            let revocation = Revocation::of_cert(&cert, ROOT_ISSUER, n as u64 + 1, now, now, "retired")
                .unwrap_or_else(|e| panic!("sim revocation: {e}"));
            revocations.push(revocation.sign(&roots));
            certs.push(cert);
        }
        Bytes::from(TrustBundle { certs, revocations, ..TrustBundle::default() }.to_json())
    }
}

/// Draws the genuine advisories: publication times, scopes, origins, and signs each as the
/// next link of its origin's chain.
fn plan_advisories(
    config: &SimConfig,
    origins: &[Origin],
    nodes: &[Planned],
    first_clinic: usize,
    rng: &mut ChaCha8Rng,
) -> Vec<Genuine> {
    let prefectures: Vec<usize> =
        (0..first_clinic).filter(|i| nodes[*i].level == Level::Prefecture).collect();
    let districts: Vec<usize> = (0..first_clinic).filter(|i| nodes[*i].level == Level::District).collect();
    let mut times: Vec<u64> =
        (0..config.advisories).map(|_| rng.gen_range(0..config.timing.publish_window_ms.max(1))).collect();
    times.sort_unstable();
    // Scopes first: 30 % `jp`, 40 % a prefecture, 30 % a district; at least one `jp`, so
    // that every run fans out to the whole tree.
    let mut scopes: Vec<Scope> = (0..times.len())
        .map(|_| match rng.gen_range(0..10u32) {
            0..=2 => scope("jp"),
            3..=6 => nodes[prefectures[rng.gen_range(0..prefectures.len())]].scope.clone(),
            _ => nodes[districts[rng.gen_range(0..districts.len())]].scope.clone(),
        })
        .collect();
    if !scopes.is_empty() && scopes.iter().all(|s| s.depth() > 1) {
        let index = rng.gen_range(0..scopes.len());
        scopes[index] = scope("jp");
    }
    // One chain per (origin, scope), as origins number their advisories.
    let mut chains: BTreeMap<(usize, Scope), (u64, Option<Digest>)> = BTreeMap::new();
    let mut genuine = Vec::with_capacity(times.len());
    for (index, (publish_at, advisory_scope)) in times.into_iter().zip(scopes).enumerate() {
        let origin = rng.gen_range(0..origins.len());
        let (last_seq, prev) = chains.get(&(origin, advisory_scope.clone())).copied().unwrap_or((0, None));
        let seq = last_seq + 1;
        let mut advisory = sample_advisory(&origins[origin].id, seq, prev);
        advisory.id = format!("{}-sim-{index}", origins[origin].id);
        advisory.scope = advisory_scope.clone();
        advisory.issued_at = EPOCH.plus_ms(publish_at as i64);
        advisory.expires_at = advisory.issued_at.plus_secs(30 * 24 * 3600);
        advisory.title =
            Localized::new("ja", &format!("模擬注意喚起 {index}")).with("en", "Simulated advisory");
        let envelope = Envelope::sign(ADVISORY_TYPE, advisory.to_payload(), &[&origins[origin].key]);
        let digest = Digest::of(&envelope.payload);
        chains.insert((origin, advisory_scope.clone()), (seq, Some(digest)));
        let ingest =
            Delivery { advisory: envelope, certs: vec![origins[origin].cert.clone()], hops: Vec::new() };
        let ingest_json = Bytes::from(ingest.to_json());
        genuine.push(Genuine {
            origin,
            origin_id: origins[origin].id.clone(),
            seq,
            digest,
            scope: advisory_scope,
            publish_at,
            ingest,
            ingest_json,
            advisory,
        });
    }
    genuine
}
