//! The simulated network and brokers: messages travel only along tree edges, with loss,
//! duplication, delays (hence reordering) and partitions; each relay's broker routes a
//! publish to the children whose subscriptions match its topic, keeps retained messages,
//! and acknowledges QoS 1 publishes at once.

use bytes::Bytes;

use kairan_node::authz::Principal;
use kairan_node::machine::{Counters, Link, Outgoing, Qos};
use kairan_node::topics::{self, Topic};
use kairan_protocol::sync::parse_response;

use super::adversary::AttackKind;
use super::node::SimRng;
use super::world::{Event, Msg, Sim, Tag};

impl Sim {
    /// Sends `msg` to `to` over the edge of `edge`, with the network's faults.
    pub(super) fn send(&mut self, to: usize, edge: usize, msg: Msg) {
        self.stats.sent += 1;
        let mut copies = 1;
        if self.faults_active {
            if self.rng.gen_bool_sim(self.config.faults.loss) {
                self.stats.lost += 1;
                self.log(to, || "message to it lost in the network".into());
                return;
            }
            if self.rng.gen_bool_sim(self.config.faults.duplicate) {
                self.stats.duplicated += 1;
                copies = 2;
            }
        }
        for _ in 0..copies {
            let slow = self.faults_active && self.rng.gen_bool_sim(self.config.faults.slow);
            let delay = if slow {
                self.stats.slow += 1;
                self.range(self.config.timing.slow_delay_ms)
            } else {
                self.range(self.config.timing.delay_ms)
            };
            self.schedule(self.now + delay, Event::Arrive { to, edge, msg: msg.clone() });
        }
    }

    pub(super) fn arrive(&mut self, to: usize, edge: usize, msg: Msg) {
        if self.nodes[edge].cut > 0 {
            self.stats.lost_partition += 1;
            self.log(to, || "message lost: partition".into());
            return;
        }
        if !self.nodes[to].up() {
            self.stats.lost_down += 1;
            self.log(to, || "message lost: node down".into());
            return;
        }
        match msg {
            Msg::Publish { topic, payload, tag, qos1 } => self.upstream_input(to, topic, payload, tag, qos1),
            Msg::FromChild { topic, payload } => {
                let now = self.local_now(to);
                if let Some(machine) = self.nodes[to].machine.as_mut() {
                    machine.handle_downstream_message(&topic, &payload, now);
                }
                self.drive(to);
            }
        }
    }

    /// What node `index` publishes: upstream to its parent's broker, downstream to its own.
    pub(super) fn route(&mut self, index: usize, outgoing: Outgoing) {
        let Outgoing { link, topic, payload, qos, retain } = outgoing;
        match link {
            Link::Upstream => {
                let Some(parent) = self.nodes[index].parent else { return };
                let who = self.principal(index);
                self.check_allowed(parent, &who, &topic, retain);
                self.stats.sync_requests += 1;
                self.send(parent, index, Msg::FromChild { topic, payload });
            }
            Link::Downstream => {
                self.check_allowed(index, &Principal::Publisher, &topic, retain);
                self.check_answer_scope(index, &topic, &payload);
                if qos == Qos::AtLeastOnce {
                    // The own broker is on the same machine: it acknowledges at once.
                    if let Some(machine) = self.nodes[index].machine.as_mut() {
                        machine.handle_downstream_acked();
                    }
                }
                if retain {
                    self.nodes[index].retained.insert(topic.clone(), payload.clone());
                }
                self.fan_out(index, &topic, &payload, qos == Qos::AtLeastOnce);
            }
        }
    }

    /// A catch-up answer carries only advisories within the scope of the member it answers
    /// (the scope of its row, whatever the request said).
    fn check_answer_scope(&mut self, index: usize, topic: &str, payload: &Bytes) {
        let Some(Topic::SyncResponse(child)) = topics::parse(&self.nodes[index].id, topic) else { return };
        let Some(member) = self.nodes[index].children.iter().copied().find(|&c| self.nodes[c].id == child)
        else {
            let node = self.nodes[index].id.clone();
            return self.violation(format!("{node} answered {child}, which is not its child"));
        };
        let Ok(page) = parse_response(payload) else {
            let node = self.nodes[index].id.clone();
            return self.violation(format!("{node} published an answer that does not parse"));
        };
        let scope = self.nodes[member].scope.clone();
        for delivery in &page.deliveries {
            let digest = delivery.claimed_digest();
            let inside = self.tree.genuine.iter().any(|g| g.digest == digest && g.scope.overlaps(&scope));
            if !inside {
                let node = self.nodes[index].id.clone();
                let what = self.describe(&digest);
                self.violation(format!("{node}'s answer to {child} ({scope}) carries {what}"));
            }
        }
    }

    /// The broker of `index` routes a publish to every child subscribed to its topic.
    fn fan_out(&mut self, index: usize, topic: &str, payload: &Bytes, qos1: bool) {
        let children = self.nodes[index].children.clone();
        let addressed = match topics::parse(&self.nodes[index].id, topic) {
            Some(Topic::SyncResponse(child)) => Some(child.to_owned()),
            _ => None,
        };
        for child in children {
            let subscribed =
                self.nodes[child].subscriptions.iter().any(|filter| topics::matches(filter, topic));
            let for_child = addressed.as_ref().is_none_or(|id| *id == self.nodes[child].id);
            if subscribed && for_child {
                let tag = if qos1 { Tag::Genuine } else { Tag::Control };
                let msg = Msg::Publish { topic: topic.to_owned(), payload: payload.clone(), tag, qos1 };
                self.send(child, child, msg);
            }
        }
    }

    /// Genuine input must be accepted or deduplicated; hostile input must be refused.
    pub(super) fn expect(&mut self, index: usize, tag: Tag, before: &Counters, after: &Counters) {
        let node = self.nodes[index].id.clone();
        let accepted = after.accepted > before.accepted;
        let refused = after.rejected > before.rejected || after.forks > before.forks;
        let duplicate = after.duplicates > before.duplicates;
        match tag {
            Tag::Genuine | Tag::Control => {
                if after.rejected > before.rejected {
                    self.violation(format!("{node} refused genuine input ({tag:?})"));
                }
                if after.forks > before.forks {
                    self.violation(format!("{node} classified a genuine advisory as a fork"));
                }
            }
            Tag::Injected(attack) => {
                let kind = self.attacks[attack].kind;
                // An equivocation is validly signed by the origin: it must be kept as a fork.
                // Everything else the adversary sends must be rejected — or, for attacks that
                // carry a genuine advisory, dropped unverified as a copy of one already held.
                let ok = match kind {
                    AttackKind::Equivocation => after.forks > before.forks,
                    _ => refused || (duplicate && kind.carries_genuine()),
                };
                if refused {
                    self.stats.attacks_refused += 1;
                }
                if !ok || accepted {
                    self.violation(format!("{node} did not refuse attack #{attack} ({kind})"));
                }
            }
            Tag::Hostile(number) => {
                let kind = self.hostile[number].kind;
                if accepted {
                    self.violation(format!("{node} accepted hostile move #{number} ({kind})"));
                }
            }
        }
    }
}
