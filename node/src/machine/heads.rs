//! Signed heads: the newest verified head of each origin, what it says is missing here, and
//! frozen feeds (a newest head that expired with no fresher one).
//!
//! Origins publish heads to the national node; every relay republishes the newest verified
//! head of each origin retained to its children. A head that names advisories not held here
//! means they were withheld or are in flight: the node reports a gap and catches up.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use kairan_protocol::head::{Head, verify_head};
use kairan_protocol::{Error, Timestamp, VerifyContext};

/// What a head told.
#[derive(Debug)]
pub enum HeadNews {
    /// Newer than any head seen of this origin; `missing` = sequence numbers it names that
    /// are not held here.
    Newer {
        /// The head.
        head: Head,
        /// `(from, to)`, inclusive.
        missing: Option<(u64, u64)>,
    },
    /// Not newer than a head already seen.
    Known,
}

/// The heads a node has seen.
#[derive(Debug, Default)]
pub struct Heads {
    seen: BTreeMap<String, Head>,
    /// The message bytes of each origin's newest head, to republish.
    messages: BTreeMap<String, Bytes>,
    frozen_reported: BTreeSet<(String, u64)>,
}

impl Heads {
    /// Verifies a head message and compares it with what was seen and what is held
    /// (`held_seq(origin)` = the highest sequence number held of that origin).
    pub fn on_message(
        &mut self,
        bytes: &Bytes,
        ctx: VerifyContext<'_>,
        held_seq: impl Fn(&str) -> u64,
    ) -> Result<HeadNews, Error> {
        let verified = verify_head(bytes, ctx)?;
        let head = verified.facts().clone();
        let newer = self
            .seen
            .get(&head.origin)
            .is_none_or(|seen| (head.seq, head.issued_at) > (seen.seq, seen.issued_at));
        if !newer {
            return Ok(HeadNews::Known);
        }
        let held = held_seq(&head.origin);
        let missing = (head.seq > held).then_some((held + 1, head.seq));
        self.seen.insert(head.origin.clone(), head.clone());
        self.messages.insert(head.origin.clone(), bytes.clone());
        Ok(HeadNews::Newer { head, missing })
    }

    /// The newest head message of every origin, to republish.
    pub fn messages(&self) -> impl Iterator<Item = (&String, &Bytes)> {
        self.messages.iter()
    }

    /// Stale heads not reported before: each frozen feed is reported once per head.
    pub fn newly_frozen(&mut self, now: Timestamp) -> Vec<Head> {
        let fresh: Vec<Head> = self
            .seen
            .values()
            .filter(|head| {
                head.is_stale(now) && !self.frozen_reported.contains(&(head.origin.clone(), head.seq))
            })
            .cloned()
            .collect();
        for head in &fresh {
            self.frozen_reported.insert((head.origin.clone(), head.seq));
        }
        fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kairan_protocol::RevocationSet;
    use kairan_protocol::fixtures::Hierarchy;

    #[test]
    fn a_head_ahead_of_what_is_held_names_the_gap_then_freezes() {
        let tree = Hierarchy::standard();
        let revocations = RevocationSet::default();
        let ctx = |now| VerifyContext { anchors: &tree.anchors, revocations: &revocations, now };
        let head = Head {
            origin: "mhlw".into(),
            seq: 3,
            digest: Some(kairan_protocol::Digest::of(b"third")),
            issued_at: tree.now,
            expires_at: tree.now.plus_secs(600),
        };
        let message = Bytes::from(head.sign(&tree.origin_key, &tree.origin_cert).to_json());
        let mut heads = Heads::default();
        let news = heads.on_message(&message, ctx(tree.later()), |_| 1).expect("verifies");
        assert!(matches!(news, HeadNews::Newer { missing: Some((2, 3)), .. }), "{news:?}");
        assert!(matches!(heads.on_message(&message, ctx(tree.later()), |_| 1), Ok(HeadNews::Known)));
        assert_eq!(heads.messages().count(), 1);
        assert!(heads.newly_frozen(tree.now.plus_secs(599)).is_empty());
        assert_eq!(heads.newly_frozen(tree.now.plus_secs(601)).len(), 1, "no fresher head: frozen");
        assert!(heads.newly_frozen(tree.now.plus_secs(700)).is_empty(), "reported once");
    }
}
