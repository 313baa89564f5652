//! The child side of catch-up: the cursor in the parent's output log, and when to ask.
//!
//! MQTT persistent sessions cover short gaps; they do not cover a broker restart, a lost
//! session, or a child that was off for a week. So a child asks its parent for every delivery
//! after its cursor whenever it (re)connects, periodically, when it notices a gap, and for the
//! next page while the parent has more. It processes the pages like live deliveries (verify,
//! deduplicate) and moves its cursor to how far the parent scanned.

use kairan_protocol::Timestamp;

/// A gap asks for the page at the same cursor again only after this long.
pub const GAP_REQUEST_SPACING_MS: i64 = 1_000;
/// A periodic tick repeats an unanswered request (same cursor) only after this long: a parent
/// slow to answer — busy, or back from a restart with every child catching up — would
/// otherwise receive the same request at every tick from every child and send each page again
/// and again, answering ever more slowly. A (re)connection always asks at once.
pub const TICK_REPEAT_SPACING_MS: i64 = 5_000;

/// Why the child asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The connection to the parent came up.
    Connected,
    /// The periodic tick.
    Tick,
    /// A gap in an origin's chain, or a head ahead of what is held.
    Gap,
    /// The parent has more after the page just applied.
    NextPage,
}

/// The catch-up state of a child.
#[derive(Debug)]
pub struct CatchUp {
    /// The parent's id.
    pub parent: String,
    cursor: u64,
    last_request: Option<(u64, Timestamp)>,
}

impl CatchUp {
    /// Catch-up from `parent` resuming at `cursor`.
    pub fn new(parent: String, cursor: u64) -> Self {
        Self { parent, cursor, last_request: None }
    }

    /// The position in the parent's output log caught up to.
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// Whether to ask now, and records the request if so. Returns the `after` to ask for.
    pub fn ask(&mut self, reason: Reason, now: Timestamp) -> Option<u64> {
        let spacing = match reason {
            Reason::Connected | Reason::NextPage => None,
            Reason::Tick => Some(TICK_REPEAT_SPACING_MS),
            Reason::Gap => Some(GAP_REQUEST_SPACING_MS),
        };
        let just_asked = spacing.is_some_and(|spacing| {
            self.last_request
                .is_some_and(|(after, at)| after == self.cursor && now.unix_ms() - at.unix_ms() < spacing)
        });
        if just_asked {
            return None;
        }
        self.last_request = Some((self.cursor, now));
        Some(self.cursor)
    }

    /// Whether an answer with this `after` answers the current cursor (otherwise it answers an
    /// older request: a page already applied).
    pub fn is_current(&self, after: u64) -> bool {
        after == self.cursor
    }

    /// A page was applied: the cursor moves to how far the parent scanned.
    pub fn advance(&mut self, scanned_upto: u64) {
        self.cursor = scanned_upto;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_always_ask_and_ticks_and_gaps_are_spaced() {
        let t0 = Timestamp::from_unix_ms(1_000_000);
        let mut catch_up = CatchUp::new("jp-13".into(), 4);
        assert_eq!(catch_up.ask(Reason::Connected, t0), Some(4));
        assert_eq!(catch_up.ask(Reason::Gap, t0.plus_ms(500)), None, "just asked");
        assert_eq!(catch_up.ask(Reason::Gap, t0.plus_ms(1_000)), Some(4));
        assert_eq!(catch_up.ask(Reason::Tick, t0.plus_ms(2_000)), None, "unanswered, asked 1 s ago");
        assert_eq!(catch_up.ask(Reason::Connected, t0.plus_ms(2_000)), Some(4), "a reconnection asks");
        catch_up.advance(9);
        assert!(catch_up.is_current(9) && !catch_up.is_current(4));
        assert_eq!(catch_up.ask(Reason::Tick, t0.plus_ms(2_001)), Some(9), "a new cursor asks at once");
    }
}
