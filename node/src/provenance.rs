//! Provenance of a verified delivery, for people (text) and for scripts (JSON).
//!
//! Built only from a `Verified<Delivery>`, so whatever it shows was checked.

use serde::Serialize;

use kairan_protocol::cert::{CertSet, Issuer};
use kairan_protocol::{Delivery, Timestamp, TrustAnchors, Verified};

/// One certificate of a chain.
#[derive(Debug, Clone, Serialize)]
pub struct CertLink {
    /// Subject id.
    pub subject: String,
    /// Serial.
    pub serial: String,
    /// Roles, lowercase.
    pub roles: Vec<String>,
    /// Scope.
    pub scope: String,
    /// Key id of the subject key.
    pub keyid: String,
    /// Validity window.
    pub not_before: Timestamp,
    /// Validity window.
    pub not_after: Timestamp,
    /// `root (root-1, root-2)` or the issuing relay's id.
    pub issued_by: String,
}

/// One hop.
#[derive(Debug, Clone, Serialize)]
pub struct HopLine {
    /// Relay id.
    pub relay: String,
    /// Relay key id.
    pub keyid: String,
    /// Where it came from.
    pub upstream: String,
    /// Received.
    pub received_at: Timestamp,
    /// Forwarded.
    pub forwarded_at: Timestamp,
    /// Relay output sequence number.
    pub relay_seq: u64,
    /// The relay's certificate chain up to the root.
    pub chain: Vec<CertLink>,
}

/// The provenance of a verified delivery.
#[derive(Debug, Clone, Serialize)]
pub struct Provenance {
    /// Always true: only verified deliveries have a provenance.
    pub verified: bool,
    /// Advisory digest.
    pub digest: String,
    /// Origin id.
    pub origin: String,
    /// Origin sequence number.
    pub seq: u64,
    /// Origin's human id.
    pub id: String,
    /// alert/update/cancel.
    pub kind: String,
    /// actual/exercise/test.
    pub status: String,
    /// TLP label (`TLP:AMBER`).
    pub tlp: String,
    /// Handling note.
    pub handling: String,
    /// Severity.
    pub severity: String,
    /// Scope.
    pub scope: String,
    /// Title in the primary language; for a sealed advisory, [`crate::inbox::SEALED_NOTICE_JA`]
    /// (its title is encrypted).
    pub title: String,
    /// Whether the advisory is sealed (TLP:AMBER+STRICT / TLP:RED, content encrypted to its
    /// recipients). Omitted from JSON when false.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub sealed: bool,
    /// Issued.
    pub issued_at: Timestamp,
    /// Expires.
    pub expires_at: Timestamp,
    /// Origin key id.
    pub origin_keyid: String,
    /// The origin's certificate chain up to the root.
    pub origin_chain: Vec<CertLink>,
    /// Hops in path order.
    pub hops: Vec<HopLine>,
    /// The time verification used as `now`.
    pub verified_at: Timestamp,
}

/// The certificate chain of the certificate at `index`, from it up to the root.
pub fn cert_chain(certs: &CertSet, index: usize, anchors: &TrustAnchors) -> Vec<CertLink> {
    certs
        .chain_of(index)
        .into_iter()
        .map(|verified| {
            let cert = &verified.cert;
            let issued_by = match &verified.issuer {
                Issuer::Root(keyids) => {
                    let names: Vec<&str> = keyids
                        .iter()
                        .filter_map(|k| anchors.roots().iter().find(|r| r.key.keyid() == k))
                        .map(|r| r.id.as_str())
                        .collect();
                    format!("root ({}; threshold {})", names.join(", "), anchors.threshold())
                }
                Issuer::Cert(parent) => {
                    certs.certs().get(*parent).map_or_else(String::new, |p| p.cert.subject.clone())
                }
            };
            CertLink {
                subject: cert.subject.clone(),
                serial: cert.serial.clone(),
                roles: cert.roles.iter().map(|r| format!("{r:?}").to_lowercase()).collect(),
                scope: cert.scope.to_string(),
                keyid: cert.key.keyid().to_string(),
                not_before: cert.not_before,
                not_after: cert.not_after,
                issued_by,
            }
        })
        .collect()
}

impl Provenance {
    /// The provenance of a verified delivery.
    pub fn of(verified: &Verified<Delivery>, anchors: &TrustAnchors, verified_at: Timestamp) -> Self {
        let facts = verified.facts();
        let advisory = &facts.advisory;
        Provenance {
            verified: true,
            digest: facts.digest.to_string(),
            origin: advisory.origin.clone(),
            seq: advisory.seq,
            id: advisory.id.clone(),
            kind: format!("{:?}", advisory.kind).to_lowercase(),
            status: format!("{:?}", advisory.status).to_lowercase(),
            tlp: advisory.tlp.to_string(),
            handling: advisory.handling.clone(),
            severity: format!("{:?}", advisory.severity).to_lowercase(),
            scope: advisory.scope.to_string(),
            title: crate::inbox::display_title(advisory, &advisory.lang),
            sealed: advisory.sealed.is_some(),
            issued_at: advisory.issued_at,
            expires_at: advisory.expires_at,
            origin_keyid: verified.origin_cert().key.keyid().to_string(),
            origin_chain: cert_chain(&facts.certs, facts.origin_cert, anchors),
            hops: facts
                .hops
                .iter()
                .map(|(hop, cert_index)| HopLine {
                    relay: hop.relay.clone(),
                    keyid: hop.keyid.to_string(),
                    upstream: hop.upstream.clone(),
                    received_at: hop.received_at,
                    forwarded_at: hop.forwarded_at,
                    relay_seq: hop.relay_seq,
                    chain: cert_chain(&facts.certs, *cert_index, anchors),
                })
                .collect(),
            verified_at,
        }
    }

    /// The path as `origin → relay → relay`.
    pub fn path(&self) -> String {
        std::iter::once(self.origin.as_str())
            .chain(self.hops.iter().map(|h| h.relay.as_str()))
            .collect::<Vec<_>>()
            .join(" → ")
    }

    /// Multi-line text for people.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let short = |keyid: &str| keyid.chars().take(16).collect::<String>();
        out.push_str(&format!("VERIFIED  {}\n", self.digest));
        out.push_str(&format!(
            "  advisory  {} (origin {} seq {}, {}, {})\n",
            self.id, self.origin, self.seq, self.kind, self.status
        ));
        out.push_str(&format!("  title     {}\n", self.title));
        out.push_str(&format!(
            "  marking   {}  severity {}  scope {}\n",
            self.tlp, self.severity, self.scope
        ));
        out.push_str(&format!("  handling  {}\n", self.handling));
        out.push_str(&format!("  issued    {}  expires {}\n", self.issued_at, self.expires_at));
        out.push_str(&format!("signed by origin {} with key {}\n", self.origin, short(&self.origin_keyid)));
        for link in &self.origin_chain {
            out.push_str(&format!(
                "  certificate {} for {} [{}] scope {} valid {} .. {}, issued by {}\n",
                link.serial,
                link.subject,
                link.roles.join(","),
                link.scope,
                link.not_before,
                link.not_after,
                link.issued_by
            ));
        }
        if self.hops.is_empty() {
            out.push_str("carried by: no relay yet (as published)\n");
        } else {
            out.push_str(&format!("carried by: {}\n", self.path()));
        }
        for (index, hop) in self.hops.iter().enumerate() {
            out.push_str(&format!(
                "  hop {} {:<14} from {:<14} received {}  forwarded {}  relay_seq {}  key {}\n",
                index + 1,
                hop.relay,
                hop.upstream,
                hop.received_at,
                hop.forwarded_at,
                hop.relay_seq,
                short(&hop.keyid)
            ));
            let issuers: Vec<String> =
                hop.chain.iter().map(|l| format!("{} ← {}", l.subject, l.issued_by)).collect();
            out.push_str(&format!("        chain {}\n", issuers.join(", ")));
        }
        out.push_str(&format!("verified at {}\n", self.verified_at));
        out
    }
}
