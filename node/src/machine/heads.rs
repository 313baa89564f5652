//! Signed heads: the newest verified head of each chain (origin, scope) this node is entitled
//! to, what it says is missing here, and frozen feeds (a newest head that expired with no
//! fresher one).
//!
//! Origins publish heads to the national node; every relay republishes the newest verified
//! head of each chain whose scope overlaps its own, retained under the chain's scope, to its
//! children. A head that names advisories not held here means they were withheld or are in
//! flight: the node reports a gap and catches up. A head of a chain outside this node's scope
//! (a misrouted one: brokers and parents do not send them) is dropped without a word: those
//! advisories never come here, so counting them would be a false gap, and a frozen feed of
//! them none of this node's business.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use kairan_protocol::head::{Head, verify_head};
use kairan_protocol::sequence::ChainId;
use kairan_protocol::{Error, Scope, Timestamp, VerifyContext};

/// What a head told.
#[derive(Debug)]
pub enum HeadNews {
    /// Newer than any head seen of this chain; `missing` = sequence numbers it names that
    /// are not held here.
    Newer {
        /// The head.
        head: Head,
        /// `(from, to)`, inclusive.
        missing: Option<(u64, u64)>,
    },
    /// Not newer than a head already seen.
    Known,
    /// A valid head of a chain whose scope does not overlap this node's: dropped (not kept,
    /// not republished, no gap, never frozen).
    OutOfScope(ChainId),
}

/// The heads a node has seen.
#[derive(Debug)]
pub struct Heads {
    /// This node's scope: only heads of chains overlapping it are kept.
    scope: Scope,
    seen: BTreeMap<ChainId, Head>,
    /// The message bytes of each chain's newest head, to republish.
    messages: BTreeMap<ChainId, Bytes>,
    frozen_reported: BTreeSet<(ChainId, u64)>,
}

impl Heads {
    /// No head seen yet, for a node of scope `scope`.
    pub fn new(scope: Scope) -> Self {
        Self { scope, seen: BTreeMap::new(), messages: BTreeMap::new(), frozen_reported: BTreeSet::new() }
    }

    /// Verifies a head message and compares it with what was seen and what is held
    /// (`held_seq(chain)` = the highest sequence number held of that chain).
    pub fn on_message(
        &mut self,
        bytes: &Bytes,
        ctx: VerifyContext<'_>,
        held_seq: impl Fn(&ChainId) -> u64,
    ) -> Result<HeadNews, Error> {
        let verified = verify_head(bytes, ctx)?;
        let head = verified.facts().clone();
        let chain = head.chain();
        if !self.scope.overlaps(&chain.scope) {
            return Ok(HeadNews::OutOfScope(chain));
        }
        let newer =
            self.seen.get(&chain).is_none_or(|seen| (head.seq, head.issued_at) > (seen.seq, seen.issued_at));
        if !newer {
            return Ok(HeadNews::Known);
        }
        let held = held_seq(&chain);
        let missing = (head.seq > held).then_some((held + 1, head.seq));
        self.seen.insert(chain.clone(), head.clone());
        self.messages.insert(chain, bytes.clone());
        Ok(HeadNews::Newer { head, missing })
    }

    /// The newest head message of every chain kept, to republish.
    pub fn messages(&self) -> impl Iterator<Item = (&ChainId, &Bytes)> {
        self.messages.iter()
    }

    /// The newest head message of every chain a child of scope `scope` is entitled to (its
    /// scope overlaps the chain's): what a catch-up answer to that child may carry.
    pub fn messages_for(&self, scope: &Scope) -> impl Iterator<Item = (&ChainId, &Bytes)> {
        self.messages.iter().filter(move |(chain, _)| scope.overlaps(&chain.scope))
    }

    /// Stale heads not reported before: each frozen feed is reported once per head.
    pub fn newly_frozen(&mut self, now: Timestamp) -> Vec<Head> {
        let fresh: Vec<Head> = self
            .seen
            .iter()
            .filter(|(chain, head)| {
                head.is_stale(now) && !self.frozen_reported.contains(&((*chain).clone(), head.seq))
            })
            .map(|(_, head)| head.clone())
            .collect();
        for head in &fresh {
            self.frozen_reported.insert((head.chain(), head.seq));
        }
        fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kairan_protocol::RevocationSet;
    use kairan_protocol::fixtures::Hierarchy;

    fn scope(text: &str) -> Scope {
        Scope::parse(text).expect("scope")
    }

    fn signed(tree: &Hierarchy, chain_scope: &str, seq: u64, valid_secs: i64) -> Bytes {
        let head = Head {
            origin: "mhlw".into(),
            scope: scope(chain_scope),
            seq,
            digest: Some(kairan_protocol::Digest::of(format!("{chain_scope} {seq}").as_bytes())),
            issued_at: tree.now,
            expires_at: tree.now.plus_secs(valid_secs),
        };
        Bytes::from(head.sign(&tree.origin_key, &tree.origin_cert).to_json())
    }

    #[test]
    fn a_head_ahead_of_what_is_held_names_the_gap_then_freezes() {
        let tree = Hierarchy::standard();
        let revocations = RevocationSet::default();
        let ctx = |now| VerifyContext { anchors: &tree.anchors, revocations: &revocations, now };
        let message = signed(&tree, "jp/13", 3, 600);
        let mut heads = Heads::new(scope("jp/13/chuo"));
        let news = heads.on_message(&message, ctx(tree.later()), |_| 1).expect("verifies");
        assert!(matches!(news, HeadNews::Newer { missing: Some((2, 3)), .. }), "{news:?}");
        assert!(matches!(heads.on_message(&message, ctx(tree.later()), |_| 1), Ok(HeadNews::Known)));
        assert_eq!(heads.messages().count(), 1);
        assert!(heads.newly_frozen(tree.now.plus_secs(599)).is_empty());
        assert_eq!(heads.newly_frozen(tree.now.plus_secs(601)).len(), 1, "no fresher head: frozen");
        assert!(heads.newly_frozen(tree.now.plus_secs(700)).is_empty(), "reported once");
    }

    #[test]
    fn chains_are_separate_and_a_sibling_scope_is_invisible() {
        let tree = Hierarchy::standard();
        let revocations = RevocationSet::default();
        let ctx = |now| VerifyContext { anchors: &tree.anchors, revocations: &revocations, now };
        let mut heads = Heads::new(scope("jp/13/chuo"));
        let held = |chain: &ChainId| if chain.scope == scope("jp/13/chuo") { 2 } else { 0 };
        // The district's own chain at 2, all held: nothing missing, whatever other chains say.
        let own = heads.on_message(&signed(&tree, "jp/13/chuo", 2, 60), ctx(tree.later()), held);
        assert!(matches!(own, Ok(HeadNews::Newer { missing: None, .. })), "{own:?}");
        // A sibling district's chain at 5: not this node's, dropped (no gap, never frozen).
        let sibling = heads.on_message(&signed(&tree, "jp/13/minato", 5, 60), ctx(tree.later()), held);
        assert!(matches!(sibling, Ok(HeadNews::OutOfScope(_))), "{sibling:?}");
        // The prefecture's chain at 1, not held here: a gap of that chain only.
        let above = heads.on_message(&signed(&tree, "jp/13", 1, 60), ctx(tree.later()), held);
        assert!(matches!(above, Ok(HeadNews::Newer { missing: Some((1, 1)), .. })), "{above:?}");
        assert_eq!(heads.messages().count(), 2, "the sibling's head is not kept to republish");
        assert_eq!(heads.messages_for(&scope("jp/13/chuo/c1")).count(), 2);
        assert_eq!(heads.messages_for(&scope("jp/27")).count(), 0, "nothing for another prefecture");
        let frozen: Vec<String> =
            heads.newly_frozen(tree.now.plus_secs(61)).iter().map(|h| h.chain().to_string()).collect();
        assert_eq!(
            frozen,
            ["mhlw@jp/13", "mhlw@jp/13/chuo"],
            "each chain frozen on its own; never the sibling's"
        );
    }
}
