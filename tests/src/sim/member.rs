//! The brokers' permission table in the model, and the moves of a hostile *member*: a relay
//! or clinic whose machine (and so its broker password and keys) is in hostile hands.
//!
//! Every publish and subscription of the model goes through [`kairan_node::authz::Grants`],
//! the table the embedded broker and the generated Mosquitto files enforce: genuine traffic
//! that the table would refuse is a violation (the real tree would stall), and a hostile
//! member's attempt outside its rows must be refused. What the table allows a hostile member
//! (its own catch-up requests, with whatever it writes in them) reaches the machines, whose
//! answers are checked online (`net.rs`: no answer carries an advisory outside the asking
//! member's scope). What only a leaked `~out` password or the administrator's could publish
//! (a forged catch-up page, a minted revocation on the control topic) is injected and must be
//! refused by verification: no cursor moves, no genuine certificate is ever revoked.

use bytes::Bytes;

use kairan_node::store::Store;

use kairan_node::authz::{Grants, MemberKind, Principal};
use kairan_node::topics;
use kairan_protocol::sequence::ChainId;
use kairan_protocol::sync::{SyncResponse, sign_page};
use kairan_protocol::{Certificate, Digest, Revocation, Role, SecretKey, TrustBundle};

use super::tree::{EPOCH, Level};
use super::world::{Msg, Sim, Tag};

/// The administrator's member id on the national broker (the model's).
pub(super) const ADMIN: &str = "admin";

impl Sim {
    /// How node `member` is known to its parent's broker.
    pub(super) fn principal(&self, member: usize) -> Principal {
        let node = &self.nodes[member];
        let kind = if node.level == Level::Clinic { MemberKind::Clinic } else { MemberKind::Relay };
        Principal::Member { id: node.id.clone(), kind, scope: Some(node.scope.clone()) }
    }

    /// The grants of `who` on the broker of node `broker`.
    pub(super) fn grants(&self, broker: usize, who: &Principal) -> Grants {
        Grants::of(&self.nodes[broker].id, broker == 0, who)
    }

    /// Genuine traffic the table would refuse: the real broker would drop it (a violation).
    pub(super) fn check_allowed(&mut self, broker: usize, who: &Principal, topic: &str, retain: bool) {
        if !self.grants(broker, who).may_publish(topic, retain) {
            let node = self.nodes[broker].id.clone();
            self.violation(format!(
                "{node}'s broker would refuse {who:?} publishing {topic} (retain {retain})"
            ));
        }
    }

    /// Every node subscribes upstream only to what its row allows.
    pub(super) fn check_subscriptions(&mut self) {
        for index in 1..self.nodes.len() {
            let Some(parent) = self.nodes[index].parent else { continue };
            let grants = self.grants(parent, &self.principal(index));
            let refused: Vec<String> = self.nodes[index]
                .subscriptions
                .iter()
                .filter(|f| !grants.may_subscribe(f))
                .cloned()
                .collect();
            if !refused.is_empty() {
                let node = self.nodes[index].id.clone();
                self.violation(format!("{node}'s parent broker would refuse its subscriptions {refused:?}"));
            }
        }
    }

    /// Member `member` tries everything outside its rows on its parent's broker: each
    /// attempt must be refused by the table.
    pub(super) fn overreach(&mut self, member: usize) {
        let Some(parent) = self.nodes[member].parent else { return };
        let who = self.principal(member);
        let grants = self.grants(parent, &who);
        let p = self.nodes[parent].id.clone();
        let me = self.nodes[member].id.clone();
        let sibling = self.sibling_of(member).map(|s| self.nodes[s].id.clone());
        let mut publishes: Vec<(String, bool)> = vec![
            (topics::deliveries(&p, &self.nodes[member].scope.to_string()), false),
            (topics::deliveries(&p, "jp"), false),
            (topics::trust_piece(&p, "00"), true),
            (topics::trust(&p), false),
            (
                topics::heads(
                    &p,
                    &ChainId::new(self.tree.origins[0].id.clone(), self.nodes[member].scope.clone()),
                ),
                true,
            ),
            (topics::control(&p), false),
            (topics::ingest_of(&p, &self.tree.origins[0].id), false),
            (topics::sync_response(&p, &me), false),
        ];
        let mut subscriptions = vec![
            "#".to_owned(),
            "kairan/v1/#".to_owned(),
            format!("{}/#", topics::deliveries_root(&p)),
            topics::sync_request_filter(&p),
            topics::sync_response_filter(&p),
            topics::ingest_filter(&p),
        ];
        if let Some(sibling) = &sibling {
            publishes.push((topics::sync_request(&p, sibling), false));
            publishes.push((topics::sync_response(&p, sibling), false));
            subscriptions.push(topics::sync_response(&p, sibling));
        }
        for (topic, retain) in publishes {
            if grants.may_publish(&topic, retain) {
                self.violation(format!("{me} may publish {topic} (retain {retain}) on {p}'s broker"));
            } else {
                self.stats.broker_refused += 1;
            }
        }
        for filter in subscriptions {
            if grants.may_subscribe(&filter) {
                self.violation(format!("{me} may subscribe to {filter} on {p}'s broker"));
            } else {
                self.stats.broker_refused += 1;
            }
        }
        // What its row does allow: its own request topic (nothing else to write).
        self.check_allowed(parent, &who, &topics::sync_request(&p, &me), false);
    }

    /// Member `member` asks its parent, on its own request topic (allowed), for the whole
    /// country's log: the answer must stay within its row's scope (checked in `net.rs`).
    pub(super) fn scope_grab(&mut self, member: usize) {
        let Some(parent) = self.nodes[member].parent else { return };
        let topic = topics::sync_request(&self.nodes[parent].id, &self.nodes[member].id);
        let payload = Bytes::from_static(b"{\"after\":0,\"scope\":\"jp\",\"limit\":512}");
        self.send(parent, member, Msg::FromChild { topic, payload });
    }

    /// Member `member` answers a sibling's catch-up in its parent's name with a page that
    /// claims the whole log was scanned. The table refuses its publish; the page is then
    /// injected as a leaked `~out` password would let it be: the sibling must refuse it.
    pub(super) fn forged_page(&mut self, member: usize, number: usize) {
        let (Some(parent), Some(victim)) = (self.nodes[member].parent, self.sibling_of(member)) else {
            return;
        };
        let topic = topics::sync_response(&self.nodes[parent].id, &self.nodes[victim].id);
        if self.grants(parent, &self.principal(member)).may_publish(&topic, false) {
            let me = self.nodes[member].id.clone();
            self.violation(format!("{me} may answer its sibling's catch-up ({topic})"));
        } else {
            self.stats.broker_refused += 1;
        }
        let after = self.nodes[victim].machine.as_ref().and_then(|m| m.catch_up_cursor()).unwrap_or(0);
        let page = SyncResponse {
            after,
            scanned_upto: u64::MAX - 1,
            last_relay_seq: u64::MAX - 1,
            ..SyncResponse::default()
        };
        // Signed with the member's own relay key (a clinic has none): a valid signature by
        // the wrong relay.
        let page = match &self.tree.nodes[member].relay {
            Some(relay) => {
                let key = SecretKey::from_seed(&relay.seed).unwrap_or_else(|e| panic!("relay key: {e}"));
                let mut chain = vec![relay.cert.clone()];
                chain.extend(self.tree.chain_above(member));
                sign_page(page, &self.nodes[victim].id, &key, &chain)
            }
            None => page,
        };
        let payload = Bytes::from(page.to_json());
        self.send(victim, victim, Msg::Publish { topic, payload, tag: Tag::Hostile(number), qos1: false });
    }

    /// Relay `member` certifies an origin's key under a name of its own and revokes the
    /// origin's genuine certificate (attack 1 of the authorization issue). Its parent's trust
    /// topic refuses it; pushed through the administrator's control topic, the national
    /// node must refuse the revocation (a relay revokes only what it or a relay below issued).
    pub(super) fn minted_revocation(&mut self, member: usize, number: usize) {
        let Some(parent) = self.nodes[member].parent else { return };
        let Some(relay) = &self.tree.nodes[member].relay else { return };
        let key = SecretKey::from_seed(&relay.seed).unwrap_or_else(|e| panic!("relay key: {e}"));
        let me = self.nodes[member].id.clone();
        let origin = &self.tree.origins[0];
        let now = EPOCH.plus_ms(self.now as i64);
        let window = (self.tree.not_before, self.tree.not_after);
        let scope = self.nodes[member].scope.clone();
        let minted = Certificate::for_key(
            "minted-1",
            &me,
            &format!("{}-shadow", origin.id),
            origin.key.public(),
            Role::Relay,
            &scope,
            window,
        )
        .sign(&[&key]);
        let revocation = Revocation {
            cert: Digest::of(&origin.cert.payload),
            subject: origin.id.clone(),
            issuer: me.clone(),
            seq: 1,
            issued_at: now,
            effective_at: EPOCH.plus_secs(-3600),
            reason: "hostile".into(),
        }
        .sign(&[&key]);
        let mut certs = vec![minted, relay.cert.clone(), origin.cert.clone()];
        certs.extend(self.tree.chain_above(member));
        let bundle = TrustBundle { certs, revocations: vec![revocation], ..TrustBundle::default() };
        let payload = Bytes::from(bundle.to_json());
        let p = self.nodes[parent].id.clone();
        let who = self.principal(member);
        for topic in [topics::trust(&p), topics::control(&p)] {
            if self.grants(parent, &who).may_publish(&topic, false) {
                self.violation(format!("{me} may publish a trust statement on {topic}"));
            } else {
                self.stats.broker_refused += 1;
            }
        }
        let admin = Principal::Member { id: ADMIN.into(), kind: MemberKind::Admin, scope: None };
        let topic = topics::control(&self.nodes[0].id);
        self.check_allowed(0, &admin, &topic, false);
        self.send(0, 0, Msg::Publish { topic, payload, tag: Tag::Hostile(number), qos1: true });
    }

    /// Another child of the same parent, if there is one.
    fn sibling_of(&self, member: usize) -> Option<usize> {
        let parent = self.nodes[member].parent?;
        self.nodes[parent].children.iter().copied().find(|&c| c != member)
    }

    /// No node's trust in force revokes a genuine origin's or relay's certificate.
    pub(super) fn check_no_genuine_revoked(&self, problems: &mut Vec<String>) {
        let mut genuine: Vec<Digest> =
            self.tree.origins.iter().map(|o| Digest::of(&o.cert.payload)).collect();
        genuine.extend(
            self.tree.nodes.iter().filter_map(|n| n.relay.as_ref()).map(|r| Digest::of(&r.cert.payload)),
        );
        for node in &self.nodes {
            let Some(json) = node.store.blob(kairan_node::store::TRUST_BLOB).ok().flatten() else { continue };
            let Ok(bundle) = TrustBundle::from_json(&json) else {
                problems.push(format!("{}'s stored trust bundle does not parse", node.id));
                continue;
            };
            let now = EPOCH.plus_ms(self.now as i64);
            let Ok(verified) = bundle.verify(&self.tree.anchors, now) else {
                problems.push(format!("{}'s stored trust bundle does not verify", node.id));
                continue;
            };
            if let Some(digest) = genuine.iter().find(|d| verified.revoked().get(d).is_some()) {
                problems.push(format!("{} revokes the genuine certificate {digest}", node.id));
            }
        }
    }
}
