//! Sequence chains per (origin, scope) through the machine: a node learns nothing of the
//! chains of scopes it is not entitled to (no head reaches it, none counts as a gap or a
//! frozen feed), while a withheld advisory of its own chains is still reported.

use super::*;
use kairan_protocol::sequence::ChainId;

fn head(tree: &Hierarchy, scope: &str, seq: u64, now: Timestamp, valid_secs: i64) -> Vec<u8> {
    let head = Head {
        origin: "mhlw".into(),
        scope: Scope::parse(scope).expect("scope"),
        seq,
        digest: (seq > 0).then(|| Digest::of(format!("{scope} {seq}").as_bytes())),
        issued_at: now,
        expires_at: now.plus_secs(valid_secs),
    };
    head.sign(&tree.origin_key, &tree.origin_cert).to_json()
}

fn chain(scope: &str) -> ChainId {
    ChainId::new("mhlw", Scope::parse(scope).expect("scope"))
}

fn gaps(node: &TestNode) -> Vec<(ChainId, u64, u64)> {
    let gaps = node.events.iter().filter_map(|e| match e {
        Event::Gap { chain, from, to, .. } => Some((chain.clone(), *from, *to)),
        _ => None,
    });
    gaps.collect()
}

#[test]
fn a_sibling_scopes_head_is_neither_a_gap_nor_a_frozen_feed_but_an_own_one_is_a_gap() {
    let tree = Hierarchy::standard();
    let now = tree.later();
    let mut clinic = TestNode::clinic(&tree, now);
    // Misrouted to this clinic of jp/13/chuo: the head of a sibling district's chain, at 5,
    // about to expire.
    let sibling = head(&tree, "jp/13/minato", 5, now, 90);
    clinic.receive(1, "kairan/v1/jp-13-chuo/heads/mhlw/jp/13/minato", sibling, now);
    assert_eq!(clinic.acked, vec![1]);
    for step in 1..=4 {
        let at = now.plus_ms(step * INTERVAL_MS as i64);
        clinic.machine.handle_timeout(at);
        clinic.pump(at);
    }
    let counters = clinic.machine.counters();
    assert_eq!((counters.gaps_reported, counters.feeds_frozen, counters.heads_newer), (0, 0, 0));
    assert_eq!(counters.heads_out_of_scope, 1);
    assert!(!clinic.events.iter().any(|e| matches!(e, Event::HeadNewer { .. } | Event::FeedFrozen { .. })));
    // The clinic's own district chain at 2 with nothing of it held: withheld, reported.
    let later = now.plus_ms(5 * INTERVAL_MS as i64);
    let own = head(&tree, "jp/13/chuo", 2, later, 3600);
    clinic.receive(2, &topics::heads("jp-13-chuo", &chain("jp/13/chuo")), own, later);
    assert_eq!(gaps(&clinic), [(chain("jp/13/chuo"), 1, 2)]);
}

#[test]
fn heads_reach_a_child_only_for_chains_it_is_entitled_to_on_the_topics_and_in_catch_up() {
    let tree = Hierarchy::standard();
    let now = tree.later();
    let mut national = TestNode::relay(&tree, 0, Upstream::Ingest, now);
    national.machine.handle_downstream_connected(now);
    national.pump(now);
    national.take_published(Link::Downstream);
    let mut id = 0;
    for (scope, seq) in [("jp/13/chuo", 1), ("jp/27", 3), ("jp/13/minato", 2)] {
        id += 1;
        national.receive(id, &topics::ingest_heads_of("jp", "mhlw"), head(&tree, scope, seq, now, 3600), now);
    }
    // Republished retained, each under its chain's scope.
    let topics: Vec<String> =
        national.published.iter().filter(|o| o.retain).map(|o| o.topic.clone()).collect();
    for scope in ["jp/13/chuo", "jp/27", "jp/13/minato"] {
        assert!(topics.contains(&topics::heads("jp", &chain(scope))), "{scope}: {topics:?}");
    }
    // Tokyo's prefecture: the live heads its subscriptions match, then a catch-up round whose
    // answer carries the heads again (for brokers that do not hand out retained messages).
    let mut prefecture = TestNode::relay(&tree, 1, Upstream::Relay("jp".into()), now);
    prefecture.machine.handle_upstream_connected(now);
    prefecture.pump(now);
    let mut next_id = 100;
    exchange(&mut national, &mut prefecture, &mut next_id, now);
    let answered = national.events.iter().any(|e| matches!(e, Event::SyncAnswered { .. }));
    assert!(answered, "the catch-up round ran");
    let newer: Vec<ChainId> = prefecture
        .events
        .iter()
        .filter_map(|e| match e {
            Event::HeadNewer { chain, .. } => Some(chain.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(newer, [chain("jp/13/chuo"), chain("jp/13/minato")]);
    assert_eq!(prefecture.machine.counters().heads_out_of_scope, 0, "Osaka's head never came");
    assert_eq!(gaps(&prefecture), [(chain("jp/13/chuo"), 1, 1), (chain("jp/13/minato"), 1, 2)]);
}
