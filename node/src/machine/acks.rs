//! Acknowledgements in arrival order.
//!
//! An MQTT 3.1.1 receiver must acknowledge QoS 1 messages in the order they arrived (§4.6),
//! and brokers drop a client that does not (rumqttd does). The machine decides some messages
//! at once (a duplicate, a head) and others only once a commit is durable, so it marks each
//! message ready when its decision allows and releases acknowledgements from the front only.
//! A message that is never acknowledged (input held because this relay's certificate is
//! unusable) holds back the ones after it: the broker's in-flight window then stops the
//! input until the node is fixed, and nothing is lost.

use std::collections::VecDeque;

use super::io::MsgId;

/// Messages received on the current upstream connection, oldest first.
#[derive(Debug, Default)]
pub struct AckQueue {
    order: VecDeque<(MsgId, bool)>,
}

impl AckQueue {
    /// A message arrived.
    pub fn received(&mut self, id: MsgId) {
        self.order.push_back((id, false));
    }

    /// Message `id` may be acknowledged; returns the acknowledgements now due, in order.
    /// An id not on the current connection is ignored.
    pub fn ready(&mut self, id: MsgId) -> Vec<MsgId> {
        if let Some(entry) = self.order.iter_mut().find(|(queued, _)| *queued == id) {
            entry.1 = true;
        }
        let mut due = Vec::new();
        while let Some((front, true)) = self.order.front().copied() {
            self.order.pop_front();
            due.push(front);
        }
        due
    }

    /// The connection is gone: its messages are redelivered on the next, with new ids.
    pub fn reset(&mut self) {
        self.order.clear();
    }

    /// Messages waiting for their acknowledgement.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether none is waiting.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acknowledgements_leave_in_arrival_order() {
        let mut acks = AckQueue::default();
        for id in 1..=4 {
            acks.received(id);
        }
        assert!(acks.ready(2).is_empty(), "1 is still being committed");
        assert!(acks.ready(4).is_empty());
        assert_eq!(acks.ready(1), vec![1, 2]);
        assert_eq!(acks.ready(3), vec![3, 4]);
        assert!(acks.is_empty());
        acks.received(5);
        acks.reset();
        assert!(acks.ready(5).is_empty(), "a message of a lost connection is not acknowledged");
    }
}
