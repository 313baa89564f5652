//! The machine driven in memory with a fake clock: nodes on [`MemStore`]s, actions performed
//! by a few lines of test code, messages passed by hand.

use bytes::Bytes;

use kairan_protocol::fixtures::{self, Hierarchy};
use kairan_protocol::head::Head;
use kairan_protocol::{
    Advisory, Digest, Revocation, Scope, SecretKey, Timestamp, TrustBundle, VerifyContext,
};

use super::io::{Action, Event, Link, MsgId, Outgoing, Qos};
use super::{Attester, Identity, Machine, MachineConfig, Upstream, query};
use crate::store::{MemStore, Store, WriteBatch, WriteOp};
use crate::topics;

mod chains;
mod tlog;

const INTERVAL_MS: u64 = 60_000;

/// A machine on a MemStore, with everything it did.
struct TestNode {
    machine: Machine,
    store: MemStore,
    /// Every action in order, as a short label (for ordering assertions).
    trace: Vec<String>,
    acked: Vec<MsgId>,
    published: Vec<Outgoing>,
    /// Checkpoints published (kept apart from `published`: a relay publishes one at every
    /// connection and commit, which tests of other things need not count).
    checkpoints: Vec<Outgoing>,
    events: Vec<Event>,
    /// Commits held back (to test what happens while one is in flight).
    held_commits: Vec<(u64, WriteBatch)>,
    hold_commits: bool,
    downstream_acks: bool,
}

impl TestNode {
    fn relay(tree: &Hierarchy, index: usize, upstream: Upstream, now: Timestamp) -> Self {
        let relay = &tree.relays[index];
        let identity = Identity {
            id: relay.id.clone(),
            scope: relay.scope.clone(),
            upstream,
            attester: Some(Attester {
                key: SecretKey::from_hex(&relay.key.to_hex()).expect("key"),
                cert: relay.cert.clone(),
                extra_certs: Vec::new(),
                chain: tree.relays[..index].iter().map(|r| r.cert.clone()).collect(),
            }),
        };
        Self::with(identity, tree, MemStore::new(), now)
    }

    fn clinic(tree: &Hierarchy, now: Timestamp) -> Self {
        let identity = Identity {
            id: "clinic-1".into(),
            scope: tree.relays[2].scope.clone(),
            upstream: Upstream::Relay(tree.relays[2].id.clone()),
            attester: None,
        };
        Self::with(identity, tree, MemStore::new(), now)
    }

    fn with(identity: Identity, tree: &Hierarchy, store: MemStore, now: Timestamp) -> Self {
        // The fixture chain: jp → jp-13 → jp-13-chuo → clinic-1.
        let children = match identity.id.as_str() {
            "jp" => [("jp-13", "jp/13")],
            "jp-13" => [("jp-13-chuo", "jp/13/chuo")],
            _ => [("clinic-1", "jp/13/chuo")],
        }
        .into_iter()
        .map(|(id, scope)| (id.to_owned(), Scope::parse(scope).expect("scope")))
        .collect();
        let config = MachineConfig {
            identity,
            anchors: tree.anchors.clone(),
            sync_interval_ms: INTERVAL_MS,
            children,
        };
        let machine = Machine::new(config, store.restore().expect("restore"), now);
        let mut node = TestNode {
            machine,
            store,
            trace: Vec::new(),
            acked: Vec::new(),
            published: Vec::new(),
            checkpoints: Vec::new(),
            events: Vec::new(),
            held_commits: Vec::new(),
            hold_commits: false,
            downstream_acks: true,
        };
        node.pump(now);
        node
    }

    /// Performs every pending action (commits at once unless held; the own broker acks every
    /// delivery publish at once unless told not to).
    fn pump(&mut self, now: Timestamp) {
        while let Some(action) = self.machine.poll_action() {
            match action {
                Action::Commit { id, batch } => {
                    // Decisions only: not the stored hashes of each leaf, nor the checkpoint
                    // blob that rides along.
                    let decided = batch
                        .ops
                        .iter()
                        .filter(|op| {
                            !matches!(
                                op,
                                WriteOp::TreeHashes(_) | WriteOp::Blob(crate::store::CHECKPOINT_BLOB, _)
                            )
                        })
                        .count();
                    self.trace.push(format!("commit {decided}"));
                    if self.hold_commits {
                        self.held_commits.push((id, batch));
                    } else {
                        self.store.commit(&batch).expect("commit");
                        self.machine.handle_committed(id, now);
                    }
                }
                Action::Ack(id) => {
                    self.trace.push("ack".into());
                    self.acked.push(id);
                }
                Action::Publish(outgoing) => {
                    self.trace.push(format!("publish {}", outgoing.topic));
                    let delivery = outgoing.qos == Qos::AtLeastOnce;
                    if outgoing.topic == topics::checkpoint(self.machine.id()) {
                        self.checkpoints.push(outgoing);
                        continue;
                    }
                    self.published.push(outgoing);
                    if delivery && self.downstream_acks {
                        self.machine.handle_downstream_acked();
                    }
                }
                Action::Read { id, query } => {
                    let result = query::run(&self.store, &query).expect("read");
                    self.machine.handle_read(id, result);
                }
                Action::Report(event) => self.events.push(event),
            }
        }
    }

    fn release_commits(&mut self, now: Timestamp) {
        self.hold_commits = false;
        for (id, batch) in std::mem::take(&mut self.held_commits) {
            self.store.commit(&batch).expect("commit");
            self.machine.handle_committed(id, now);
            self.pump(now);
        }
    }

    fn receive(&mut self, id: MsgId, topic: &str, payload: Vec<u8>, now: Timestamp) {
        self.machine.handle_upstream_message(id, topic, Bytes::from(payload), now);
        self.pump(now);
    }

    fn take_published(&mut self, link: Link) -> Vec<Outgoing> {
        let (taken, kept) = std::mem::take(&mut self.published).into_iter().partition(|o| o.link == link);
        self.published = kept;
        taken
    }

    fn accepted(&self) -> usize {
        self.events.iter().filter(|e| matches!(e, Event::Accepted(_))).count()
    }
}

fn ingest_delivery(tree: &Hierarchy, seq: u64, prev: Option<Digest>, scope: &str) -> (Advisory, Vec<u8>) {
    let mut advisory = fixtures::sample_advisory("mhlw", seq, prev);
    advisory.id = format!("a-{seq}");
    advisory.scope = Scope::parse(scope).expect("scope");
    let bytes = tree.delivery(&advisory, 0).to_json();
    (advisory, bytes)
}

#[test]
fn a_delivery_is_committed_before_it_is_acknowledged_or_forwarded() {
    let tree = Hierarchy::standard();
    let now = tree.later();
    let mut national = TestNode::relay(&tree, 0, Upstream::Ingest, now);
    national.machine.handle_downstream_connected(now);
    national.pump(now);
    let (_, bytes) = ingest_delivery(&tree, 1, None, "jp/13");
    national.receive(1, &topics::ingest_of("jp", "mhlw"), bytes, now);
    let commit = national.trace.iter().position(|t| t.starts_with("commit")).expect("committed");
    let ack = national.trace.iter().position(|t| t == "ack").expect("acked");
    let forward = national.trace.iter().position(|t| t.contains("/deliveries/jp/13")).expect("forwarded");
    assert!(commit < ack && commit < forward, "{:?}", national.trace);
    assert_eq!(national.acked, vec![1]);
    assert_eq!(national.store.len(), 1);
    assert_eq!(national.machine.durable_relay_seq(), 1);
    assert_eq!(national.store.cursor(crate::store::PUBLISHED_CURSOR).expect("cursor"), 0, "written lazily");
    national.machine.handle_shutdown();
    national.pump(now);
    assert_eq!(
        national.store.cursor(crate::store::PUBLISHED_CURSOR).expect("cursor"),
        1,
        "committed at shutdown"
    );
    assert!(national.machine.is_drained());
}

#[test]
fn decisions_during_a_commit_are_grouped_into_the_next_one() {
    let tree = Hierarchy::standard();
    let now = tree.later();
    let mut national = TestNode::relay(&tree, 0, Upstream::Ingest, now);
    national.hold_commits = true;
    let mut prev = None;
    for seq in 1..=4 {
        let (advisory, bytes) = ingest_delivery(&tree, seq, prev, "jp");
        prev = Some(Digest::of(&advisory.to_payload()));
        national.receive(seq, &topics::ingest_of("jp", "mhlw"), bytes, now);
    }
    assert_eq!(national.trace.iter().filter(|t| t.starts_with("commit")).count(), 1, "one in flight");
    assert!(national.acked.is_empty(), "nothing acknowledged before it is durable");
    national.release_commits(now);
    assert_eq!(
        national.trace.iter().filter(|t| t.starts_with("commit")).cloned().collect::<Vec<_>>(),
        vec!["commit 1", "commit 3"]
    );
    assert_eq!(national.acked, vec![1, 2, 3, 4]);
}

#[test]
fn a_duplicate_is_acknowledged_without_a_write() {
    let tree = Hierarchy::standard();
    let now = tree.later();
    let mut national = TestNode::relay(&tree, 0, Upstream::Ingest, now);
    let (_, bytes) = ingest_delivery(&tree, 1, None, "jp");
    national.receive(1, &topics::ingest_of("jp", "mhlw"), bytes.clone(), now);
    let commits = national.trace.len();
    national.receive(2, &topics::ingest_of("jp", "mhlw"), bytes, now);
    assert_eq!(national.trace[commits..], ["ack".to_owned()]);
    assert_eq!(national.machine.counters().duplicates, 1);
}

/// Moves what `parent` published downstream to `child` (deliveries on the topics the child
/// subscribes to, its catch-up answers) and what `child` published upstream to `parent`.
fn exchange(parent: &mut TestNode, child: &mut TestNode, next_id: &mut MsgId, now: Timestamp) {
    loop {
        let down = parent.take_published(Link::Downstream);
        let up = child.take_published(Link::Upstream);
        if down.is_empty() && up.is_empty() {
            return;
        }
        let filters = child.machine.upstream_filters();
        for outgoing in down {
            if filters.iter().any(|filter| crate::topics::matches(filter, &outgoing.topic)) {
                *next_id += 1;
                child.receive(*next_id, &outgoing.topic, outgoing.payload.to_vec(), now);
            }
        }
        for outgoing in up {
            parent.machine.handle_downstream_message(&outgoing.topic, &outgoing.payload, now);
            parent.pump(now);
        }
    }
}

#[test]
fn a_child_catches_up_in_pages_then_follows_live() {
    let tree = Hierarchy::standard();
    let now = tree.later();
    let mut national = TestNode::relay(&tree, 0, Upstream::Ingest, now);
    let mut prev = None;
    for seq in 1..=5 {
        let (advisory, bytes) = ingest_delivery(&tree, seq, prev, if seq == 3 { "jp/27" } else { "jp/13" });
        prev = Some(Digest::of(&advisory.to_payload()));
        national.receive(seq, &topics::ingest_of("jp", "mhlw"), bytes, now);
    }
    // The prefecture was away: it connects and catches up from the national log.
    let mut tokyo = TestNode::relay(&tree, 1, Upstream::Relay("jp".into()), now);
    national.machine.handle_downstream_connected(now);
    national.pump(now);
    national.published.clear();
    tokyo.machine.handle_upstream_connected(now);
    tokyo.pump(now);
    let mut ids = 100;
    exchange(&mut national, &mut tokyo, &mut ids, now);
    assert_eq!(tokyo.accepted(), 4, "the Osaka advisory is not in Tokyo's pages");
    assert_eq!(tokyo.machine.catch_up_cursor(), Some(5), "scanned to the end of the national log");
    assert_eq!(tokyo.store.cursor(crate::store::SYNC_CURSOR).expect("cursor"), 5);
    // Live: the next advisory arrives on the deliveries topic, forwarded after it is durable.
    let (_, bytes) = ingest_delivery(&tree, 6, prev, "jp/13");
    national.receive(6, &topics::ingest_of("jp", "mhlw"), bytes, now);
    exchange(&mut national, &mut tokyo, &mut ids, now);
    assert_eq!(tokyo.accepted(), 5);
    assert_eq!(tokyo.machine.counters().rejected, 0, "{:?}", tokyo.events);
}

#[test]
fn an_up_to_date_child_asks_each_interval_without_a_commit() {
    let tree = Hierarchy::standard();
    let now = tree.later();
    let mut national = TestNode::relay(&tree, 0, Upstream::Ingest, now);
    let (_, bytes) = ingest_delivery(&tree, 1, None, "jp/13");
    national.receive(1, &topics::ingest_of("jp", "mhlw"), bytes, now);
    let mut tokyo = TestNode::relay(&tree, 1, Upstream::Relay("jp".into()), now);
    national.machine.handle_downstream_connected(now);
    national.pump(now);
    national.published.clear();
    tokyo.machine.handle_downstream_connected(now);
    tokyo.machine.handle_upstream_connected(now);
    tokyo.pump(now);
    let mut ids = 100;
    exchange(&mut national, &mut tokyo, &mut ids, now);
    assert_eq!(tokyo.store.cursor(crate::store::SYNC_CURSOR).expect("cursor"), 1);
    let commits = |node: &TestNode| node.trace.iter().filter(|t| t.starts_with("commit")).count();
    let before = commits(&tokyo);
    let mut at = now;
    for _ in 0..3 {
        at = tokyo.machine.poll_timeout().expect("tick");
        tokyo.machine.handle_timeout(at);
        tokyo.pump(at);
        exchange(&mut national, &mut tokyo, &mut ids, at);
    }
    let pages = tokyo.events.iter().filter(|e| matches!(e, Event::CatchUpPage { received: 0, .. })).count();
    assert!(pages >= 3, "asked and answered each interval: {:?}", tokyo.events);
    assert_eq!(commits(&tokyo), before, "an empty page changes nothing on disk");
    assert!(tokyo.machine.is_drained(), "{}", tokyo.machine.pending());
    assert!(at > now);
}

#[test]
fn a_flood_of_refused_input_slows_input_down_and_time_lets_it_through() {
    let tree = Hierarchy::standard();
    let now = tree.later();
    let mut national = TestNode::relay(&tree, 0, Upstream::Ingest, now);
    let topic = topics::ingest_of("jp", "mhlw");
    let mut id = 0;
    while national.machine.accepts_input(now) {
        id += 1;
        national.receive(id, &topic, b"not a delivery".to_vec(), now);
        assert!(id <= 1_000, "never throttled");
    }
    assert_eq!(id, u64::from(super::REFUSALS_BURST) + 1, "the burst, then one over the budget");
    assert!(national.events.iter().any(|e| matches!(e, Event::Throttling { .. })));
    let wake = national.machine.poll_timeout().expect("a wake-up");
    assert!(wake > now && wake <= now.plus_ms(10), "a token comes back within 5 ms at 200/s");
    assert!(national.machine.accepts_input(wake));
    assert_eq!(national.store.rejection_count(), id as usize, "every refusal recorded, none dropped");
}

#[test]
fn ticks_ask_again_and_report_a_frozen_feed_once() {
    let tree = Hierarchy::standard();
    let now = tree.later();
    let mut clinic = TestNode::clinic(&tree, now);
    clinic.machine.handle_upstream_connected(now);
    clinic.pump(now);
    assert_eq!(clinic.take_published(Link::Upstream).len(), 1, "asks at once on connection");
    let head = Head {
        origin: "mhlw".into(),
        scope: Scope::parse("jp").expect("scope"),
        seq: 0,
        digest: None,
        issued_at: now,
        expires_at: now.plus_secs(90),
    };
    let message = head.sign(&tree.origin_key, &tree.origin_cert).to_json();
    let jp = kairan_protocol::sequence::ChainId::new("mhlw", Scope::parse("jp").expect("scope"));
    clinic.receive(7, &topics::heads("jp-13-chuo", &jp), message, now);
    assert_eq!(clinic.acked, vec![7]);
    let tick = clinic.machine.poll_timeout().expect("tick");
    assert_eq!(tick, now.plus_ms(INTERVAL_MS as i64));
    clinic.machine.handle_timeout(tick);
    clinic.pump(tick);
    assert_eq!(clinic.take_published(Link::Upstream).len(), 1, "the periodic request");
    let later = tick.plus_ms(INTERVAL_MS as i64);
    clinic.machine.handle_timeout(later);
    clinic.pump(later);
    clinic.machine.handle_timeout(later.plus_ms(INTERVAL_MS as i64));
    clinic.pump(later.plus_ms(INTERVAL_MS as i64));
    let frozen = clinic.events.iter().filter(|e| matches!(e, Event::FeedFrozen { .. })).count();
    assert_eq!((frozen, clinic.machine.counters().feeds_frozen), (1, 1));
}

#[test]
fn the_national_node_signs_an_acceptance_once_the_advisory_is_durable_and_again_for_a_copy() {
    let tree = Hierarchy::standard();
    let now = tree.later();
    let mut national = TestNode::relay(&tree, 0, Upstream::Ingest, now);
    national.machine.handle_downstream_connected(now);
    national.pump(now);
    national.hold_commits = true;
    let (advisory, bytes) = ingest_delivery(&tree, 1, None, "jp");
    let digest = Digest::of(&advisory.to_payload());
    let ingest = topics::ingest_of("jp", "mhlw");
    national.receive(1, &ingest, bytes.clone(), now);
    let acceptances = |node: &mut TestNode| -> Vec<Outgoing> {
        let (taken, kept): (Vec<Outgoing>, Vec<Outgoing>) = std::mem::take(&mut node.published)
            .into_iter()
            .partition(|o| o.topic == topics::accepted("jp", "mhlw"));
        node.published = kept;
        taken
    };
    assert!(acceptances(&mut national).is_empty(), "nothing stated before the commit is durable");
    // A copy while the first is still being written: its acceptance waits for that commit too.
    national.receive(2, &ingest, bytes.clone(), now);
    assert!(acceptances(&mut national).is_empty(), "the copy waits for the durable first");
    national.release_commits(now);
    let sent = acceptances(&mut national);
    assert_eq!(sent.len(), 2, "one for the publish, one for the copy");
    let revocations = kairan_protocol::RevocationSet::default();
    let ctx = VerifyContext { anchors: &tree.anchors, revocations: &revocations, now };
    for outgoing in &sent {
        assert_eq!((outgoing.qos, outgoing.retain), (Qos::AtMostOnce, false));
        let verified =
            kairan_protocol::acceptance::verify_acceptance(&outgoing.payload, "jp", ctx).expect("verifies");
        assert_eq!((verified.value().digest, verified.value().origin.as_str()), (digest, "mhlw"));
    }
    // A copy long after: answered at once (nothing is pending).
    national.receive(3, &ingest, bytes, now);
    assert_eq!(acceptances(&mut national).len(), 1);
}

#[test]
fn a_restarted_relay_republishes_what_its_broker_did_not_confirm() {
    let tree = Hierarchy::standard();
    let now = tree.later();
    let mut national = TestNode::relay(&tree, 0, Upstream::Ingest, now);
    national.downstream_acks = false;
    national.machine.handle_downstream_connected(now);
    national.pump(now);
    let (_, bytes) = ingest_delivery(&tree, 1, None, "jp");
    national.receive(1, &topics::ingest_of("jp", "mhlw"), bytes, now);
    let deliveries =
        national.take_published(Link::Downstream).into_iter().filter(|o| o.qos == Qos::AtLeastOnce);
    assert_eq!(deliveries.count(), 1, "sent, never confirmed");
    // Crash: a new machine on the same store.
    let store = national.store.clone();
    let identity_tree = Hierarchy::standard();
    let mut restarted = TestNode::relay(&identity_tree, 0, Upstream::Ingest, now);
    restarted.store = store.clone();
    restarted.machine = Machine::new(
        MachineConfig {
            identity: Identity {
                id: "jp".into(),
                scope: tree.relays[0].scope.clone(),
                upstream: Upstream::Ingest,
                attester: Some(Attester {
                    key: SecretKey::from_hex(&tree.relays[0].key.to_hex()).expect("key"),
                    cert: tree.relays[0].cert.clone(),
                    extra_certs: Vec::new(),
                    chain: Vec::new(),
                }),
            },
            anchors: tree.anchors.clone(),
            sync_interval_ms: INTERVAL_MS,
            children: Default::default(),
        },
        store.restore().expect("restore"),
        now,
    );
    restarted.machine.handle_downstream_connected(now);
    restarted.pump(now);
    let again = restarted.take_published(Link::Downstream);
    assert_eq!(again.len(), 1, "read back from the store and published again");
    assert_eq!(again[0].payload, store.log_after(0, 1).expect("log")[0].delivery);
}

#[test]
fn a_trust_update_applies_at_once_and_is_republished_once_durable() {
    let tree = Hierarchy::standard();
    let now = tree.later();
    let mut national = TestNode::relay(&tree, 0, Upstream::Ingest, now);
    national.machine.handle_downstream_connected(now);
    national.pump(now);
    let revocation = Revocation::of_cert(
        &tree.origin_cert,
        kairan_protocol::cert::ROOT_ISSUER,
        1,
        now,
        tree.now,
        "key compromised",
    )
    .expect("certificate")
    .sign(&[&tree.roots[0], &tree.roots[1]]);
    let bundle = TrustBundle {
        certs: vec![tree.origin_cert.clone()],
        revocations: vec![revocation],
        ..TrustBundle::default()
    };
    national.hold_commits = true;
    national.receive(1, &topics::control("jp"), bundle.to_json(), now);
    assert!(national.take_published(Link::Downstream).is_empty(), "not republished before it is durable");
    let (_, bytes) = ingest_delivery(&tree, 1, None, "jp");
    national.receive(2, &topics::ingest_of("jp", "mhlw"), bytes, now);
    national.release_commits(now);
    let trust: Vec<Outgoing> = national
        .take_published(Link::Downstream)
        .into_iter()
        .filter(|o| o.topic.starts_with(&format!("{}/", topics::trust("jp"))))
        .collect();
    assert_eq!(trust.len(), 1, "one piece: one revocation");
    assert!(trust[0].retain);
    assert!(trust[0].payload.len() < 16 * 1024, "a piece is small");
    assert_eq!(national.machine.counters().rejected, 1, "the revoked origin's advisory is refused at once");
}

#[test]
fn a_catch_up_request_that_comes_before_the_chain_verifies_is_answered_when_it_does() {
    let tree = Hierarchy::standard();
    let now = tree.later();
    let mut national = TestNode::relay(&tree, 0, Upstream::Ingest, now);
    national.machine.handle_downstream_connected(now);
    national.pump(now);
    // A prefecture that has not yet learned the certificates above its own.
    let identity = Identity {
        id: tree.relays[1].id.clone(),
        scope: tree.relays[1].scope.clone(),
        upstream: Upstream::Relay("jp".into()),
        attester: Some(Attester {
            key: SecretKey::from_hex(&tree.relays[1].key.to_hex()).expect("key"),
            cert: tree.relays[1].cert.clone(),
            extra_certs: Vec::new(),
            chain: Vec::new(),
        }),
    };
    let mut prefecture = TestNode::with(identity, &tree, MemStore::new(), now);
    prefecture.machine.handle_downstream_connected(now);
    prefecture.pump(now);
    prefecture.take_published(Link::Downstream);
    let request = kairan_protocol::sync::SyncRequest {
        after: 0,
        scope: Scope::parse("jp/13/chuo").expect("scope"),
        limit: 10,
        trust: None,
        tlog: None,
        prove: Vec::new(),
    };
    prefecture.machine.handle_downstream_message(
        &topics::sync_request("jp-13", "jp-13-chuo"),
        &request.to_json(),
        now,
    );
    prefecture.pump(now);
    let answers = |node: &mut TestNode| {
        node.take_published(Link::Downstream)
            .into_iter()
            .filter(|o| o.topic == topics::sync_response("jp-13", "jp-13-chuo"))
            .count()
    };
    assert_eq!(answers(&mut prefecture), 0, "no answer a child could not verify");
    assert!(!prefecture.events.iter().any(|e| matches!(e, Event::SyncDropped { .. })), "held, not dropped");
    // The national forwards an advisory; the delivery carries the national's certificate.
    let (_, bytes) = ingest_delivery(&tree, 1, None, "jp");
    national.receive(1, &topics::ingest_of("jp", "mhlw"), bytes, now);
    let forwarded = national
        .take_published(Link::Downstream)
        .into_iter()
        .find(|o| o.qos == Qos::AtLeastOnce)
        .expect("forwarded");
    prefecture.receive(1, &forwarded.topic, forwarded.payload.to_vec(), now);
    assert_eq!(answers(&mut prefecture), 1, "the held request is answered once the chain verifies");
}

#[test]
fn a_statement_refused_beside_accepted_ones_is_reported_with_its_reason() {
    let tree = Hierarchy::standard();
    let now = tree.later();
    let mut national = TestNode::relay(&tree, 0, Upstream::Ingest, now);
    national.machine.handle_downstream_connected(now);
    national.pump(now);
    let window = (tree.now.plus_secs(-3600), tree.now.plus_secs(365 * 24 * 3600));
    let retired = kairan_protocol::Certificate::for_key(
        "jp-13-retired",
        "jp-13",
        "retired",
        fixtures::key("retired").public(),
        kairan_protocol::Role::Clinic,
        &Scope::parse("jp/13").expect("scope"),
        window,
    )
    .sign(&[&tree.relays[1].key]);
    let mut accepted = tree.root_revocation(&retired, tree.now);
    accepted.certs.extend(tree.relay_chain(1));
    // The prefecture revoking the origin's certificate: not its to revoke.
    let outside = Revocation::of_cert(&tree.origin_cert, "jp-13", 1, now, tree.now, "hostile")
        .expect("certificate")
        .sign(&[&tree.relays[1].key]);
    let refused = TrustBundle {
        certs: [vec![tree.origin_cert.clone()], tree.relay_chain(1)].concat(),
        revocations: vec![outside],
        ..TrustBundle::default()
    };
    national.receive(1, &topics::control("jp"), accepted.merged(&refused).to_json(), now);
    national.pump(now);
    let reported: Vec<&str> = national
        .events
        .iter()
        .filter_map(|e| match e {
            Event::TrustUpdated { .. } => Some("updated"),
            Event::TrustRefused { code, .. } => Some(*code),
            _ => None,
        })
        .collect();
    assert_eq!(reported, ["revocation_not_authorized", "updated"]);
    assert_eq!(national.acked, [1]);
}

#[test]
fn trust_pieces_arriving_together_are_verified_together_and_a_lone_one_at_once() {
    let tree = Hierarchy::standard();
    let now = tree.later();
    let mut child = TestNode::relay(&tree, 1, Upstream::Relay("jp".into()), now);
    let window = (tree.now.plus_secs(-3600), tree.now.plus_secs(365 * 24 * 3600));
    let pieces: Vec<Vec<u8>> = (0..40)
        .map(|n| {
            let key = fixtures::key(&format!("retired-{n}"));
            let scope = Scope::parse("jp/13").expect("scope");
            let cert = kairan_protocol::Certificate::for_key(
                format!("jp-13-{n}"),
                "jp-13",
                &format!("retired-{n}"),
                key.public(),
                kairan_protocol::Role::Clinic,
                &scope,
                window,
            )
            .sign(&[&tree.relays[1].key]);
            let mut piece = tree.root_revocation(&cert, tree.now);
            piece.certs.extend(tree.relay_chain(1));
            piece.canonical().to_json()
        })
        .collect();
    let updates = |node: &TestNode| -> Vec<usize> {
        let revoked = node.events.iter().filter_map(|e| match e {
            Event::TrustUpdated { revoked_keys, .. } => Some(*revoked_keys),
            _ => None,
        });
        revoked.collect()
    };
    let trust_topic = |n: usize| topics::trust_piece("jp", &format!("piece-{n}"));
    // A lone piece is applied at once.
    child.receive(1, &trust_topic(0), pieces[0].clone(), now);
    assert_eq!(updates(&child), [1]);
    // The rest of a burst is gathered (acknowledged only once applied) …
    for (n, piece) in pieces.iter().enumerate().skip(1) {
        child.receive(n as MsgId + 1, &trust_topic(n), piece.clone(), now.plus_ms(n as i64));
    }
    assert_eq!(updates(&child), [1], "no verification per piece");
    assert_eq!(child.acked, [1]);
    let due = child.machine.poll_timeout().expect("a timeout");
    assert!(due <= now.plus_ms(super::trust::PIECE_BATCH_MS), "due at {due:?}");
    // … and verified once when the window closes.
    child.machine.handle_timeout(due);
    child.pump(due);
    assert_eq!(updates(&child), [1, 40]);
    assert_eq!(child.acked, (1..=40).collect::<Vec<MsgId>>(), "acknowledged in arrival order");
    assert_eq!(child.store.blob(crate::store::TRUST_BLOB).expect("blob").map(|b| b.is_empty()), Some(false));
}

#[test]
fn a_delivery_from_a_clock_ahead_is_held_then_accepted_once_not_lost_as_a_duplicate() {
    let tree = Hierarchy::standard();
    let now = tree.later();
    let mut national = TestNode::relay(&tree, 0, Upstream::Ingest, now);
    national.machine.handle_downstream_connected(now);
    national.pump(now);
    // Issued 10 s ahead of this node's clock: beyond the 5 s skew allowance.
    let mut advisory = fixtures::sample_advisory("mhlw", 1, None);
    advisory.issued_at = now.plus_secs(10);
    let bytes = tree.delivery(&advisory, 0).to_json();
    let digest = Digest::of(&tree.sign_advisory(&advisory).payload);
    national.receive(1, &topics::ingest_of("jp", "mhlw"), bytes, now);
    assert!(national.acked.is_empty(), "held, not acknowledged");
    assert_eq!((national.accepted(), national.machine.counters().deferred), (0, 1));
    // Tried again every second; still too early at +4 s, due at +5 s.
    let mut at = now;
    while national.accepted() == 0 {
        at = national.machine.poll_timeout().expect("a retry is scheduled");
        assert!(at <= now.plus_secs(6), "no retry before {at:?}");
        national.machine.handle_timeout(at);
        national.pump(at);
    }
    assert!(at >= now.plus_secs(5));
    let counters = national.machine.counters();
    assert_eq!((counters.accepted, counters.duplicates, counters.rejected, counters.deferred), (1, 0, 0, 1));
    assert_eq!(national.acked, [1], "acknowledged once stored");
    assert!(national.store.contains(&digest).expect("store"), "stored");
    let forwarded = national.take_published(Link::Downstream);
    assert!(forwarded.iter().any(|o| o.qos == Qos::AtLeastOnce), "forwarded");
}
