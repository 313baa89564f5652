//! The inbox's current state: which advisories an `update` superseded and a `cancel`
//! withdrew, as a pure function ([`resolve`]) of the verified inbox entries.
//!
//! `kairan inbox` and the clinic's web page both call it on every read, so an update or a
//! cancel that arrived before the advisory it references (catch-up does not keep order across
//! relays) is applied as soon as that advisory is in the inbox: nothing is stored besides the
//! entries themselves.
//!
//! Rules (docs/web-inbox.md):
//! - A reference applies only to an earlier advisory (lower `seq`) of the **same origin**: a
//!   signature from one origin never withdraws another origin's advisory.
//! - A `test` or `exercise` advisory never changes an `actual` one.
//! - A cancel beats updates: an advisory with an applied cancel is `cancelled` (by the earliest
//!   cancel), else with an applied update `superseded` (by the latest update), else `current`.
//! - A withdrawn (cancelled) update or cancel has no effect: what it referenced is judged
//!   without it. Entries are resolved newest first per origin, so this is well defined.
//! - The history of an entry is every entry linked to it by applied references, oldest first.

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;

use kairan_protocol::{Advisory, Digest, Kind, Status};

/// What [`resolve`] needs of one verified inbox entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fact {
    /// The advisory digest.
    pub digest: Digest,
    /// Its origin.
    pub origin: String,
    /// Its origin sequence number.
    pub seq: u64,
    /// Alert, update or cancel.
    pub kind: Kind,
    /// Actual, exercise or test.
    pub status: Status,
    /// The digests it updates or cancels.
    pub references: Vec<Digest>,
}

impl Fact {
    /// The fact of a verified advisory.
    pub fn of(digest: Digest, advisory: &Advisory) -> Self {
        Fact {
            digest,
            origin: advisory.origin.clone(),
            seq: advisory.seq,
            kind: advisory.kind,
            status: advisory.status,
            references: advisory.references.clone(),
        }
    }
}

/// Where an advisory stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Standing {
    /// In force.
    Current,
    /// Replaced by an update.
    Superseded,
    /// Withdrawn by a cancel.
    Cancelled,
}

/// Why a reference of an update or cancel was not applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IgnoredReason {
    /// The referenced advisory has another origin.
    OtherOrigin,
    /// The referenced advisory is not earlier in the origin's chain.
    NotEarlier,
    /// A test or exercise cannot change an actual advisory.
    DrillOnActual,
    /// The update or cancel was itself cancelled.
    Withdrawn,
}

/// A reference that was not applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Ignored {
    /// The referenced digest.
    pub digest: Digest,
    /// Why.
    pub reason: IgnoredReason,
}

/// The state of one inbox entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EntryState {
    /// Current, superseded or cancelled.
    pub standing: Standing,
    /// The latest update that superseded it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub superseded_by: Option<Digest>,
    /// The earliest cancel that withdrew it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancelled_by: Option<Digest>,
    /// For an update or cancel: the referenced entries it applies to.
    pub applied: Vec<Digest>,
    /// References not in the inbox (yet): applied when they arrive.
    pub pending: Vec<Digest>,
    /// References not applied, with the reason.
    pub ignored: Vec<Ignored>,
    /// This entry and every entry linked to it by applied references, oldest first.
    pub history: Vec<Digest>,
}

impl EntryState {
    fn new(digest: Digest) -> Self {
        EntryState {
            standing: Standing::Current,
            superseded_by: None,
            cancelled_by: None,
            applied: Vec::new(),
            pending: Vec::new(),
            ignored: Vec::new(),
            history: vec![digest],
        }
    }
}

/// The state of every entry, by digest. A digest given twice counts once (the first).
pub fn resolve(facts: &[Fact]) -> HashMap<Digest, EntryState> {
    let mut by_digest: HashMap<Digest, &Fact> = HashMap::new();
    for fact in facts {
        by_digest.entry(fact.digest).or_insert(fact);
    }
    let mut order: Vec<&Fact> = by_digest.values().copied().collect();
    // Newest first per origin: whatever references an entry is resolved before it.
    order.sort_by(|a, b| (&a.origin, b.seq, b.digest).cmp(&(&b.origin, a.seq, a.digest)));
    let mut states: HashMap<Digest, EntryState> =
        order.iter().map(|fact| (fact.digest, EntryState::new(fact.digest))).collect();
    // Applied references: (from, to), to resolve the history afterwards.
    let mut links: Vec<(Digest, Digest)> = Vec::new();
    for fact in &order {
        if fact.kind == Kind::Alert {
            continue;
        }
        let withdrawn = states.get(&fact.digest).is_some_and(|s| s.standing == Standing::Cancelled);
        let mut seen = BTreeSet::new();
        for reference in fact.references.iter().filter(|r| seen.insert(**r)) {
            let Some(target) = by_digest.get(reference) else {
                if let Some(state) = states.get_mut(&fact.digest) {
                    state.pending.push(*reference);
                }
                continue;
            };
            let reason = if target.origin != fact.origin {
                Some(IgnoredReason::OtherOrigin)
            } else if target.seq >= fact.seq {
                Some(IgnoredReason::NotEarlier)
            } else if target.status == Status::Actual && fact.status != Status::Actual {
                Some(IgnoredReason::DrillOnActual)
            } else if withdrawn {
                Some(IgnoredReason::Withdrawn)
            } else {
                None
            };
            if let Some(reason) = reason {
                if let Some(state) = states.get_mut(&fact.digest) {
                    state.ignored.push(Ignored { digest: *reference, reason });
                }
                if reason == IgnoredReason::Withdrawn {
                    // No effect, but part of the story: the history still shows it.
                    links.push((fact.digest, *reference));
                }
                continue;
            }
            if let Some(state) = states.get_mut(&fact.digest) {
                state.applied.push(*reference);
            }
            links.push((fact.digest, *reference));
            if let Some(state) = states.get_mut(reference) {
                apply(state, fact);
            }
        }
    }
    fill_history(&mut states, &links, &by_digest);
    states
}

/// Applies an update or cancel `by` to the state of the entry it references. `by` arrives
/// newest first, so the first cancel seen is overwritten by earlier ones (the earliest wins)
/// and the first update seen (the latest) is kept.
fn apply(state: &mut EntryState, by: &Fact) {
    match by.kind {
        Kind::Cancel => {
            state.standing = Standing::Cancelled;
            state.cancelled_by = Some(by.digest);
        }
        Kind::Update => {
            if state.superseded_by.is_none() {
                state.superseded_by = Some(by.digest);
            }
            if state.standing == Standing::Current {
                state.standing = Standing::Superseded;
            }
        }
        Kind::Alert => {}
    }
}

/// Each entry's history: its connected component over the applied links, oldest first.
fn fill_history(
    states: &mut HashMap<Digest, EntryState>,
    links: &[(Digest, Digest)],
    facts: &HashMap<Digest, &Fact>,
) {
    let mut neighbours: HashMap<Digest, Vec<Digest>> = HashMap::new();
    for (from, to) in links {
        neighbours.entry(*from).or_default().push(*to);
        neighbours.entry(*to).or_default().push(*from);
    }
    let mut done: BTreeSet<Digest> = BTreeSet::new();
    for start in neighbours.keys() {
        if done.contains(start) {
            continue;
        }
        let mut component = vec![*start];
        let mut queue = vec![*start];
        done.insert(*start);
        while let Some(next) = queue.pop() {
            for other in neighbours.get(&next).into_iter().flatten() {
                if done.insert(*other) {
                    component.push(*other);
                    queue.push(*other);
                }
            }
        }
        component.sort_by_key(|digest| (facts.get(digest).map_or(0, |f| f.seq), *digest));
        for digest in &component {
            if let Some(state) = states.get_mut(digest) {
                state.history.clone_from(&component);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(label: &str) -> Digest {
        Digest::of(label.as_bytes())
    }

    fn fact(label: &str, seq: u64, kind: Kind, references: &[&str]) -> Fact {
        Fact {
            digest: digest(label),
            origin: "mhlw".into(),
            seq,
            kind,
            status: Status::Actual,
            references: references.iter().map(|r| digest(r)).collect(),
        }
    }

    fn state<'a>(states: &'a HashMap<Digest, EntryState>, label: &str) -> &'a EntryState {
        states.get(&digest(label)).unwrap_or_else(|| panic!("no state for {label}"))
    }

    fn digests(labels: &[&str]) -> Vec<Digest> {
        labels.iter().map(|l| digest(l)).collect()
    }

    #[test]
    fn an_alert_alone_is_current() {
        let states = resolve(&[fact("a", 1, Kind::Alert, &[])]);
        assert_eq!(*state(&states, "a"), EntryState::new(digest("a")));
    }

    #[test]
    fn an_update_supersedes_and_links_the_history() {
        let states = resolve(&[fact("a", 1, Kind::Alert, &[]), fact("u", 2, Kind::Update, &["a"])]);
        let a = state(&states, "a");
        assert_eq!((a.standing, a.superseded_by), (Standing::Superseded, Some(digest("u"))));
        let u = state(&states, "u");
        assert_eq!((u.standing, u.applied.clone()), (Standing::Current, digests(&["a"])));
        assert_eq!(a.history, digests(&["a", "u"]));
        assert_eq!(u.history, a.history);
    }

    #[test]
    fn a_cancel_beats_updates() {
        let states = resolve(&[
            fact("a", 1, Kind::Alert, &[]),
            fact("u", 2, Kind::Update, &["a"]),
            fact("c", 3, Kind::Cancel, &["a"]),
        ]);
        let a = state(&states, "a");
        assert_eq!(a.standing, Standing::Cancelled);
        assert_eq!((a.cancelled_by, a.superseded_by), (Some(digest("c")), Some(digest("u"))));
        assert_eq!(a.history, digests(&["a", "u", "c"]));
    }

    #[test]
    fn a_cancel_received_first_is_applied_when_its_advisory_arrives() {
        let before = resolve(&[fact("c", 2, Kind::Cancel, &["a"])]);
        let c = state(&before, "c");
        assert_eq!((c.pending.clone(), c.applied.len()), (digests(&["a"]), 0));
        let after = resolve(&[fact("c", 2, Kind::Cancel, &["a"]), fact("a", 1, Kind::Alert, &[])]);
        assert_eq!(state(&after, "a").standing, Standing::Cancelled);
        let c = state(&after, "c");
        assert_eq!((c.pending.len(), c.applied.clone()), (0, digests(&["a"])));
    }

    #[test]
    fn another_origin_cannot_cancel() {
        let mut foreign = fact("c", 5, Kind::Cancel, &["a"]);
        foreign.origin = "attacker".into();
        let states = resolve(&[fact("a", 1, Kind::Alert, &[]), foreign]);
        assert_eq!(state(&states, "a").standing, Standing::Current);
        let expected = Ignored { digest: digest("a"), reason: IgnoredReason::OtherOrigin };
        assert_eq!(state(&states, "c").ignored, vec![expected]);
    }

    #[test]
    fn a_drill_never_changes_an_actual_advisory() {
        let mut drill = fact("c", 2, Kind::Cancel, &["a"]);
        drill.status = Status::Exercise;
        let states = resolve(&[fact("a", 1, Kind::Alert, &[]), drill.clone()]);
        assert_eq!(state(&states, "a").standing, Standing::Current);
        assert_eq!(state(&states, "c").ignored[0].reason, IgnoredReason::DrillOnActual);
        let mut drill_alert = fact("a", 1, Kind::Alert, &[]);
        drill_alert.status = Status::Exercise;
        let states = resolve(&[drill_alert, drill]);
        assert_eq!(state(&states, "a").standing, Standing::Cancelled);
    }

    #[test]
    fn only_earlier_advisories_can_be_referenced() {
        let states = resolve(&[fact("a", 4, Kind::Alert, &[]), fact("u", 2, Kind::Update, &["a", "u"])]);
        assert_eq!(state(&states, "a").standing, Standing::Current);
        let reasons: Vec<IgnoredReason> = state(&states, "u").ignored.iter().map(|i| i.reason).collect();
        assert_eq!(reasons, vec![IgnoredReason::NotEarlier, IgnoredReason::NotEarlier]);
    }

    #[test]
    fn a_cancelled_update_has_no_effect() {
        let states = resolve(&[
            fact("a", 1, Kind::Alert, &[]),
            fact("u", 2, Kind::Update, &["a"]),
            fact("c", 3, Kind::Cancel, &["u"]),
        ]);
        assert_eq!(state(&states, "a").standing, Standing::Current);
        let u = state(&states, "u");
        assert_eq!((u.standing, u.cancelled_by), (Standing::Cancelled, Some(digest("c"))));
        assert_eq!(u.ignored, vec![Ignored { digest: digest("a"), reason: IgnoredReason::Withdrawn }]);
        assert_eq!(state(&states, "a").history, digests(&["a", "u", "c"]));
    }

    #[test]
    fn the_latest_update_and_the_earliest_cancel_are_named() {
        let states = resolve(&[
            fact("a", 1, Kind::Alert, &[]),
            fact("b", 2, Kind::Alert, &[]),
            fact("u1", 3, Kind::Update, &["a"]),
            fact("u2", 4, Kind::Update, &["a", "u1"]),
            fact("c1", 5, Kind::Cancel, &["b"]),
            fact("c2", 6, Kind::Cancel, &["b"]),
        ]);
        assert_eq!(state(&states, "a").superseded_by, Some(digest("u2")));
        assert_eq!(state(&states, "u1").superseded_by, Some(digest("u2")));
        assert_eq!(state(&states, "b").cancelled_by, Some(digest("c1")));
        assert_eq!(state(&states, "b").history, digests(&["b", "c1", "c2"]));
    }

    #[test]
    fn input_order_and_duplicates_do_not_matter() {
        let facts = vec![
            fact("a", 1, Kind::Alert, &[]),
            fact("b", 2, Kind::Alert, &[]),
            fact("u", 3, Kind::Update, &["a", "a", "b"]),
            fact("c", 4, Kind::Cancel, &["b", "x"]),
        ];
        let expected = resolve(&facts);
        assert_eq!(state(&expected, "u").applied, digests(&["a", "b"]));
        let mut reversed = facts.clone();
        reversed.reverse();
        reversed.push(facts[0].clone());
        assert_eq!(resolve(&reversed), expected);
        let mut rotated = facts.clone();
        rotated.rotate_left(2);
        assert_eq!(resolve(&rotated), expected);
    }
}
