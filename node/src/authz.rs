//! The permission table: for every kind of client of a node's broker, which topics it may
//! read, which it may write, where it may set or clear retained messages, and which client
//! id it must use. One table, enforced everywhere: by the embedded broker's hooks
//! ([`crate::mqtt::broker`]), by the Mosquitto ACL kairan writes from it
//! (`kairan broker mosquitto-config`), and by the simulator's brokers.
//!
//! | client of node N's broker | client id | reads | writes | retained |
//! |---|---|---|---|---|
//! | child relay or clinic C (scope S) | `C` | `N/deliveries/` of each scope enclosing S, `N/deliveries/S/#`, `N/heads/+/` of each scope enclosing S, `N/heads/+/S/#`, `N/trust/#`, `N/checkpoint`, `N/sync/C/resp` | `N/sync/C/req` | — |
//! | … clinic C, besides | `C` | `N/recipients/#` | — | — |
//! | … child relay C, besides | `C` | — | `N/directory/S/#` | `N/directory/S/#` |
//! | origin O (national only) | `O` | `N/accepted/O`, `N/directory/#` | `N/ingest/O`, `N/ingest-heads/O` | — |
//! | administrator A (national only) | `A` | — | `N/control` | — |
//! | N's publisher (`N~out`) | `N~out` | `N/sync/+/req` | `N/deliveries/#`, `N/trust/#`, `N/heads/#`, `N/checkpoint`, `N/sync/+/resp` | `N/trust/#`, `N/heads/#`, `N/checkpoint` |
//! | N's ingest (`N~ingest`, national only) | `N~ingest` | `N/ingest/+`, `N/ingest-heads/+`, `N/control` | — | — |
//! | N's directory client (`N~dir`) | `N~dir` | `N/directory/#` | `N/recipients/#` | `N/recipients/#` |
//!
//! (`N/…` abbreviates `kairan/v1/N/…`.) Heads are read exactly as deliveries are: a member
//! may read the heads of the chains (origin, scope) whose advisories it may read, and no
//! other, so it learns nothing of the count or timing of advisories it is not entitled to. A member's client id is its username: no member can
//! take over another's session. A signature proves who wrote something; this table decides
//! what a connection may do with it.

use kairan_protocol::Scope;

use crate::topics;

/// What kind of member a row of the members file describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberKind {
    /// A child relay (its scope comes from the certificate this node issued it).
    Relay,
    /// A clinic (its scope is its district's, or narrower).
    Clinic,
    /// An origin publishing advisories and heads (national node only).
    Origin,
    /// An administrator pushing trust statements (national node only).
    Admin,
}

/// A client of a node's broker, as authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A member of the members file.
    Member {
        /// Its id: username and client id.
        id: String,
        /// Its kind.
        kind: MemberKind,
        /// Its scope (relays and clinics).
        scope: Option<Scope>,
    },
    /// The node's own publisher to its children.
    Publisher,
    /// The national node's own ingest client.
    Ingest,
    /// The node's own directory client: publishes its recipient directory, reads its children's.
    Directory,
}

/// The username (and client id) of node `node`'s publisher on its own broker. `~` cannot
/// appear in a member id, so no member can take it.
pub fn publisher_username(node: &str) -> String {
    format!("{node}~out")
}

/// The username (and client id) of the national node's ingest client.
pub fn ingest_username(node: &str) -> String {
    format!("{node}~ingest")
}

/// The username (and client id) of node `node`'s directory client on its own broker
/// ([`crate::directory`]).
pub fn directory_username(node: &str) -> String {
    format!("{node}~dir")
}

/// What a principal may do on node `node`'s broker.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// Filters it may subscribe to (exactly these).
    pub read: Vec<String>,
    /// Topics (filters) it may publish to.
    pub write: Vec<String>,
    /// Topics (filters) where it may set or clear retained messages.
    pub retain: Vec<String>,
}

impl Grants {
    /// The grants of `who` on the broker of `node` (the national node when `national`).
    pub fn of(node: &str, national: bool, who: &Principal) -> Grants {
        let trust_all = format!("{}/#", topics::trust(node));
        let heads_all = format!("{}/#", topics::heads_root(node));
        match who {
            Principal::Member { id, kind: kind @ (MemberKind::Relay | MemberKind::Clinic), scope } => {
                let mut read = scope.as_ref().map(|s| topics::delivery_filters(node, s)).unwrap_or_default();
                read.extend(scope.as_ref().map(|s| topics::heads_filters(node, s)).unwrap_or_default());
                read.extend([trust_all, topics::checkpoint(node), topics::sync_response(node, id)]);
                let mut write = vec![topics::sync_request(node, id)];
                let mut retain = Vec::new();
                match (kind, scope) {
                    // A clinic reads its district's directory; a child relay states its own
                    // scope's directories (its own and those it verified from below) here.
                    (MemberKind::Clinic, _) => read.push(topics::recipients_filter(node)),
                    (_, Some(scope)) => {
                        write.push(topics::directory_of(node, scope));
                        retain.push(topics::directory_of(node, scope));
                    }
                    (_, None) => {}
                }
                Grants { read, write, retain }
            }
            Principal::Member { id, kind: MemberKind::Origin, .. } if national => Grants {
                read: vec![topics::accepted(node, id), topics::directory_filter(node)],
                write: vec![topics::ingest_of(node, id), topics::ingest_heads_of(node, id)],
                retain: Vec::new(),
            },
            Principal::Member { kind: MemberKind::Admin, .. } if national => {
                Grants { read: Vec::new(), write: vec![topics::control(node)], retain: Vec::new() }
            }
            Principal::Member { .. } => Grants::default(),
            Principal::Publisher => Grants {
                read: vec![topics::sync_request_filter(node)],
                write: vec![
                    format!("{}/#", topics::deliveries_root(node)),
                    trust_all.clone(),
                    heads_all.clone(),
                    topics::checkpoint(node),
                    topics::sync_response_filter(node),
                    topics::accepted_filter(node),
                ],
                retain: vec![trust_all, heads_all, topics::checkpoint(node)],
            },
            Principal::Ingest if national => Grants {
                read: vec![
                    topics::ingest_filter(node),
                    topics::ingest_heads_filter(node),
                    topics::control(node),
                ],
                write: Vec::new(),
                retain: Vec::new(),
            },
            Principal::Ingest => Grants::default(),
            Principal::Directory => Grants {
                read: vec![topics::directory_filter(node)],
                write: vec![topics::recipients_filter(node)],
                retain: vec![topics::recipients_filter(node)],
            },
        }
    }

    /// Whether it may subscribe to `filter` (one of its read filters, exactly: every kairan
    /// client subscribes to exactly these).
    pub fn may_subscribe(&self, filter: &str) -> bool {
        self.read.iter().any(|allowed| allowed == filter)
    }

    /// Whether it may publish on `topic`, with the retain flag as given. Clearing a retained
    /// message is a retained publish too.
    pub fn may_publish(&self, topic: &str, retain: bool) -> bool {
        let writable = self.write.iter().any(|filter| topics::matches(filter, topic));
        writable && (!retain || self.retain.iter().any(|filter| topics::matches(filter, topic)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, kind: MemberKind, scope: Option<&str>) -> Principal {
        Principal::Member { id: id.into(), kind, scope: scope.map(|s| Scope::parse(s).expect("scope")) }
    }

    #[test]
    fn a_clinic_reads_its_rows_only_and_writes_its_own_request() {
        let clinic = Grants::of("jp-13-chuo", false, &member("c1", MemberKind::Clinic, Some("jp/13/chuo")));
        assert!(clinic.may_subscribe("kairan/v1/jp-13-chuo/deliveries/jp"));
        assert!(clinic.may_subscribe("kairan/v1/jp-13-chuo/deliveries/jp/13/chuo/#"));
        assert!(clinic.may_subscribe("kairan/v1/jp-13-chuo/sync/c1/resp"));
        assert!(!clinic.may_subscribe("kairan/v1/jp-13-chuo/deliveries/#"), "every scope");
        assert!(clinic.may_subscribe("kairan/v1/jp-13-chuo/heads/+/jp/13"));
        assert!(clinic.may_subscribe("kairan/v1/jp-13-chuo/heads/+/jp/13/chuo/#"));
        assert!(!clinic.may_subscribe("kairan/v1/jp-13-chuo/heads/#"), "heads of every scope");
        assert!(!clinic.may_subscribe("kairan/v1/jp-13-chuo/heads/+"), "the old per-origin heads");
        assert!(!clinic.may_subscribe("kairan/v1/jp-13-chuo/sync/c2/resp"), "a sibling's answers");
        assert!(!clinic.may_subscribe("#"));
        assert!(clinic.may_publish("kairan/v1/jp-13-chuo/sync/c1/req", false));
        assert!(!clinic.may_publish("kairan/v1/jp-13-chuo/sync/c1/req", true), "no retained");
        assert!(!clinic.may_publish("kairan/v1/jp-13-chuo/sync/c2/req", false), "in a sibling's name");
        assert!(!clinic.may_publish("kairan/v1/jp-13-chuo/sync/c2/resp", false), "answering a sibling");
        assert!(!clinic.may_publish("kairan/v1/jp-13-chuo/deliveries/jp/13/chuo", false));
        assert!(!clinic.may_publish("kairan/v1/jp-13-chuo/trust", true), "clearing the trust bundle");
    }

    #[test]
    fn origins_and_admins_write_their_own_topics_on_the_national_node_only() {
        let origin = member("mhlw", MemberKind::Origin, None);
        let at_national = Grants::of("jp", true, &origin);
        assert!(at_national.may_publish("kairan/v1/jp/ingest/mhlw", false));
        assert!(!at_national.may_publish("kairan/v1/jp/ingest/nisc", false), "in another origin's name");
        assert!(!at_national.may_publish("kairan/v1/jp/control", false));
        assert_eq!(Grants::of("jp-13", false, &origin), Grants::default(), "nothing below the national node");
        let admin = Grants::of("jp", true, &member("admin", MemberKind::Admin, None));
        assert!(admin.may_publish("kairan/v1/jp/control", false));
        assert!(!admin.may_publish("kairan/v1/jp/trust", true));
    }

    #[test]
    fn only_the_publisher_sets_retained_state() {
        let publisher = Grants::of("jp-13", false, &Principal::Publisher);
        assert!(publisher.may_publish("kairan/v1/jp-13/trust", true));
        assert!(publisher.may_publish("kairan/v1/jp-13/heads/mhlw/jp/13", true));
        assert!(publisher.may_publish("kairan/v1/jp-13/deliveries/jp/13", false));
        assert!(!publisher.may_publish("kairan/v1/jp-13/deliveries/jp/13", true));
        assert!(!publisher.may_publish("kairan/v1/jp/deliveries/jp", false), "another node's topics");
        assert_eq!(Grants::of("jp-13", false, &Principal::Ingest), Grants::default());
    }

    #[test]
    fn checkpoints_are_read_by_children_and_written_by_the_publisher_only() {
        let topic = topics::checkpoint("jp-13");
        let publisher = Grants::of("jp-13", false, &Principal::Publisher);
        assert!(publisher.may_publish(&topic, true), "set and cleared retained");
        for kind in [MemberKind::Relay, MemberKind::Clinic] {
            let child = Grants::of("jp-13", false, &member("jp-13-chuo", kind, Some("jp/13/chuo")));
            assert!(child.may_subscribe(&topic));
            assert!(!child.may_publish(&topic, false), "a checkpoint in the relay's name");
            assert!(!child.may_publish(&topic, true));
            assert!(!child.may_subscribe(&topics::checkpoint("jp")), "another node's");
        }
    }

    #[test]
    fn acceptances_are_read_by_their_origin_only_and_written_by_the_national_publisher_only() {
        let mhlw = Grants::of("jp", true, &member("mhlw", MemberKind::Origin, None));
        assert!(mhlw.may_subscribe(&topics::accepted("jp", "mhlw")));
        assert!(!mhlw.may_subscribe(&topics::accepted("jp", "nisc")), "another origin's acceptances");
        assert!(!mhlw.may_subscribe(&topics::accepted_filter("jp")), "every origin's");
        assert!(!mhlw.may_publish(&topics::accepted("jp", "mhlw"), false), "stating its own acceptance");
        let relay = Grants::of("jp", true, &member("jp-13", MemberKind::Relay, Some("jp/13")));
        assert!(!relay.may_subscribe(&topics::accepted_filter("jp")));
        assert!(!relay.may_publish(&topics::accepted("jp", "mhlw"), false));
        let admin = Grants::of("jp", true, &member("admin", MemberKind::Admin, None));
        assert!(!admin.may_publish(&topics::accepted("jp", "mhlw"), false));
        let publisher = Grants::of("jp", true, &Principal::Publisher);
        assert!(publisher.may_publish(&topics::accepted("jp", "mhlw"), false));
        assert!(!publisher.may_publish(&topics::accepted("jp", "mhlw"), true), "never retained");
    }

    #[test]
    fn directories_go_up_one_scope_each_and_are_read_by_origins_and_clinics() {
        let chuo = Scope::parse("jp/13/chuo").expect("scope");
        let minato = Scope::parse("jp/13/minato").expect("scope");
        let district =
            Grants::of("jp-13", false, &member("jp-13-chuo", MemberKind::Relay, Some("jp/13/chuo")));
        assert!(district.may_publish(&topics::directory_part("jp-13", &chuo, 1), true));
        assert!(!district.may_publish(&topics::directory_part("jp-13", &minato, 1), true), "a sibling's");
        let prefecture = Grants::of("jp", true, &member("jp-13", MemberKind::Relay, Some("jp/13")));
        assert!(
            prefecture.may_publish(&topics::directory_part("jp", &chuo, 2), true),
            "a scope inside its own"
        );
        assert!(
            !prefecture
                .may_publish(&topics::directory_part("jp", &Scope::parse("jp/27/kita").expect("s"), 1), true)
        );
        let clinic = Grants::of("jp-13-chuo", false, &member("c1", MemberKind::Clinic, Some("jp/13/chuo")));
        assert!(clinic.may_subscribe(&topics::recipients_filter("jp-13-chuo")));
        assert!(
            !clinic.may_publish(&topics::directory_part("jp-13-chuo", &chuo, 1), true),
            "clinics state none"
        );
        assert!(!clinic.may_publish(&topics::recipients_part("jp-13-chuo", 1), true));
        let origin = Grants::of("jp", true, &member("mhlw", MemberKind::Origin, None));
        assert!(origin.may_subscribe(&topics::directory_filter("jp")));
        assert!(!origin.may_publish(&topics::directory_part("jp", &chuo, 1), true));
        let own = Grants::of("jp-13-chuo", false, &Principal::Directory);
        assert!(own.may_publish(&topics::recipients_part("jp-13-chuo", 1), true));
        assert!(own.may_subscribe(&topics::directory_filter("jp-13-chuo")));
        assert!(!own.may_publish(&topics::trust("jp-13-chuo"), true));
        let publisher = Grants::of("jp-13-chuo", false, &Principal::Publisher);
        assert!(
            !publisher.may_publish(&topics::recipients_part("jp-13-chuo", 1), true),
            "the directory client's"
        );
    }
}
