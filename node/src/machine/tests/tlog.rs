//! Transparency logs through the machine: checkpoints wait for durability, children verify
//! their parent's log, and a parent that rewrote its log is caught and named.

use kairan_protocol::note::{Checkpoint, Note};
use kairan_protocol::tlog::{Hash, leaf_hash, root_of, tree_root};

use super::*;
use crate::store::{CHECKPOINT_BLOB, TreeReader};

/// The checkpoints a node published, as (size, root), in order.
fn checkpoints(node: &mut TestNode) -> Vec<(u64, Hash)> {
    std::mem::take(&mut node.checkpoints)
        .iter()
        .map(|o| {
            assert!(o.retain, "retained for children that connect later");
            let note = Note::parse(&o.payload).expect("a note");
            let checkpoint = Checkpoint::parse(note.text()).expect("a checkpoint");
            assert_eq!(checkpoint.origin, crate::machine::tlog::log_origin(node.machine.id()));
            (checkpoint.size, checkpoint.root)
        })
        .collect()
}

/// The tree head of everything a store holds, from the delivery bytes themselves.
fn head_of(store: &MemStore) -> Hash {
    let leaves: Vec<Hash> = store.all().expect("all").iter().map(|r| leaf_hash(&r.delivery)).collect();
    root_of(&leaves)
}

#[test]
fn a_checkpoint_is_signed_only_once_its_entries_are_durable() {
    let tree = Hierarchy::standard();
    let now = tree.later();
    let mut national = TestNode::relay(&tree, 0, Upstream::Ingest, now);
    national.machine.handle_downstream_connected(now);
    national.pump(now);
    assert_eq!(checkpoints(&mut national), vec![(0, root_of(&[]))], "the empty log, at connection");
    national.events.clear();
    national.hold_commits = true;
    let mut prev = None;
    for seq in 1..=3 {
        let (advisory, bytes) = ingest_delivery(&tree, seq, prev, "jp");
        prev = Some(Digest::of(&advisory.to_payload()));
        national.receive(seq, &topics::ingest_of("jp", "mhlw"), bytes, now);
    }
    assert!(checkpoints(&mut national).is_empty(), "nothing durable yet: no checkpoint");
    assert!(!national.events.iter().any(|e| matches!(e, Event::CheckpointSigned { .. })));
    national.release_commits(now);
    let signed = checkpoints(&mut national);
    // The first commit held delivery 1; deliveries 2 and 3 were decided while it was in
    // flight and made the second.
    assert_eq!(signed.iter().map(|(size, _)| *size).collect::<Vec<_>>(), vec![1, 3]);
    assert_eq!(signed[1].1, head_of(&national.store), "the tree head of the stored deliveries");
    assert_eq!(tree_root(&TreeReader(&national.store), 3).expect("stored hashes"), signed[1].1);
    assert_eq!(national.store.tree_size().expect("size"), 3);
    // Kept with the next commit (lazily), and the same after a restart.
    national.machine.handle_shutdown();
    national.pump(now);
    let stored = national.store.blob(CHECKPOINT_BLOB).expect("blob").expect("kept");
    let restored = national.store.restore().expect("restore");
    assert_eq!((restored.tree.size(), restored.tree.root()), (3, signed[1].1));
    let again = TestNode::with(national_identity(&tree), &tree, national.store.clone(), now);
    assert!(!again.events.iter().any(|e| matches!(e, Event::CheckpointSigned { .. })), "nothing new to sign");
    assert_eq!(stored, national.store.blob(CHECKPOINT_BLOB).expect("blob").expect("kept"));
}

fn national_identity(tree: &Hierarchy) -> Identity {
    Identity {
        id: "jp".into(),
        scope: tree.relays[0].scope.clone(),
        upstream: Upstream::Ingest,
        attester: Some(Attester {
            key: SecretKey::from_hex(&tree.relays[0].key.to_hex()).expect("key"),
            cert: tree.relays[0].cert.clone(),
            extra_certs: Vec::new(),
            chain: Vec::new(),
        }),
    }
}

/// A national node on `store` that accepted `scopes.len()` advisories of `mhlw`, advisory
/// `n` under `scopes[n - 1]`.
fn national_with(tree: &Hierarchy, store: MemStore, scopes: &[&str], now: Timestamp) -> TestNode {
    let mut national = TestNode::with(national_identity(tree), tree, store, now);
    national.machine.handle_downstream_connected(now);
    national.pump(now);
    let mut prev = None;
    for (n, scope) in scopes.iter().enumerate() {
        let seq = n as u64 + 1;
        let (advisory, bytes) = ingest_delivery(tree, seq, prev, scope);
        prev = Some(Digest::of(&advisory.to_payload()));
        national.receive(seq, &topics::ingest_of("jp", "mhlw"), bytes, now);
    }
    national.published.clear();
    national
}

/// The child's pending catch-up requests to the parent, answered, and the answers received.
fn exchange(child: &mut TestNode, parent: &mut TestNode, now: Timestamp) {
    let requests = child.take_published(Link::Upstream);
    for request in requests.iter().filter(|o| o.topic.ends_with("/req")) {
        parent.machine.handle_downstream_message(&request.topic, &request.payload, now);
        parent.pump(now);
    }
    let answer_topic = topics::sync_response(parent.machine.id(), child.machine.id());
    let answers: Vec<Outgoing> =
        parent.take_published(Link::Downstream).into_iter().filter(|o| o.topic == answer_topic).collect();
    for (n, answer) in answers.into_iter().enumerate() {
        child.receive(9_000 + n as u64, &answer.topic, answer.payload.to_vec(), now);
    }
}

#[test]
fn a_parent_that_rewrote_its_log_is_caught_and_named() {
    let tree = Hierarchy::standard();
    let now = tree.later();
    let mut honest = national_with(&tree, MemStore::new(), &["jp", "jp", "jp/13"], now);
    let mut prefecture = TestNode::relay(&tree, 1, Upstream::Relay("jp".into()), now);
    prefecture.machine.handle_upstream_connected(now);
    prefecture.pump(now);
    exchange(&mut prefecture, &mut honest, now);
    assert_eq!(prefecture.accepted(), 3, "caught up");
    assert!(prefecture.events.iter().any(|e| matches!(e, Event::ParentLogVerified { size: 3 })));
    let held = prefecture.store.blob(crate::store::PARENT_CHECKPOINT_BLOB).expect("blob").expect("kept");
    // The next request asks for the inclusion of the three deliveries in the parent's log.
    let soon = now.plus_ms(INTERVAL_MS as i64 + 1);
    prefecture.machine.handle_upstream_disconnected();
    prefecture.machine.handle_upstream_connected(soon);
    prefecture.pump(soon);
    exchange(&mut prefecture, &mut honest, soon);
    assert!(
        prefecture.events.iter().any(|e| matches!(e, Event::InclusionVerified { count: 3 })),
        "{:?}",
        prefecture.events
    );

    // The national's store is rewritten: the same advisories, attested at other times (so
    // other delivery bytes), and one more. Same key, another history.
    let later = soon.plus_ms(INTERVAL_MS as i64 + 1);
    let mut forked = national_with(&tree, MemStore::new(), &["jp", "jp", "jp/13", "jp"], later);
    prefecture.machine.handle_upstream_disconnected();
    prefecture.machine.handle_upstream_connected(later);
    prefecture.pump(later);
    prefecture.events.clear();
    exchange(&mut prefecture, &mut forked, later);
    let Some(Event::LogFork(evidence)) = prefecture.events.iter().find(|e| matches!(e, Event::LogFork(_)))
    else {
        panic!("no fork reported: {:?}", prefecture.events)
    };
    assert_eq!(evidence.parent, "jp", "the parent is named");
    assert_eq!(evidence.held.as_bytes(), &held[..], "the checkpoint held is half of the evidence");
    assert!(evidence.reason.contains("consistency proof"), "{}", evidence.reason);
    assert!(evidence.statement.is_some(), "the signed page that carried the proof");
    assert_eq!(prefecture.machine.counters().log_forks, 1);
    assert_eq!(prefecture.store.log_forks().expect("kept"), vec![(**evidence).clone()], "kept durably");
    assert_eq!(
        prefecture.store.blob(crate::store::PARENT_CHECKPOINT_BLOB).expect("blob").expect("kept"),
        held,
        "the forked checkpoint is not taken"
    );
    // It keeps running: the new delivery of the forked parent is still caught up.
    assert_eq!(prefecture.accepted(), 1);
}
