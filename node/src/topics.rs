//! Every MQTT topic kairan uses, built and parsed in one place.
//!
//! All topics are `kairan/v1/<node>/…`, where `<node>` is the id of the node that owns the
//! topic — the relay whose broker carries it, or the national node for ingest and control.
//! The node id in the topic lets many nodes share one external broker or cluster.
//!
//! | topic | who publishes | who reads |
//! |---|---|---|
//! | `kairan/v1/<node>/ingest/<origin>` | the origin `<origin>` | the national node |
//! | `kairan/v1/<node>/ingest-heads/<origin>` | the origin `<origin>` | the national node |
//! | `kairan/v1/<node>/control` | administrators, the root | the national node |
//! | `kairan/v1/<node>/accepted/<origin>` | the national node | the origin `<origin>` |
//! | `kairan/v1/<node>/deliveries/<scope path>` | the relay `<node>` | its children |
//! | `kairan/v1/<node>/trust/<piece>` (retained) | the relay `<node>` | its children |
//! | `kairan/v1/<node>/heads/<origin>/<scope path>` (retained) | the relay `<node>` | its children |
//! | `kairan/v1/<node>/checkpoint` (retained) | the relay `<node>` | its children |
//! | `kairan/v1/<node>/sync/<child>/req` | the child `<child>` | the relay `<node>` |
//! | `kairan/v1/<node>/sync/<child>/resp` | the relay `<node>` | the child `<child>` |
//! | `kairan/v1/<node>/recipients/<part>` (retained) | the district `<node>` | its clinics |
//! | `kairan/v1/<node>/directory/<scope path>/<part>` (retained) | the child relay whose scope encloses `<scope path>` | the relay `<node>`; origins on the national node |
//!
//! A delivery is published once, under its advisory's scope; a child subscribes to the exact
//! topic of every scope above its own and to everything under its own scope, so the broker
//! routes by scope and an advisory for `jp/13` never reaches another prefecture's relay.
//! Heads are routed the same way, under the scope of the chain they are about: a node learns
//! nothing of the chains of scopes it is not entitled to (not even that they advanced).

use kairan_protocol::Scope;
use kairan_protocol::sequence::ChainId;

/// The prefix of every topic.
pub const ROOT: &str = "kairan/v1/";

/// `kairan/v1/<node>/ingest/<origin>`: where origin `origin` publishes its advisories (the
/// broker lets each origin publish under its own name only, so the topic names the
/// authenticated publisher).
pub fn ingest_of(node: &str, origin: &str) -> String {
    format!("{ROOT}{node}/ingest/{origin}")
}

/// `kairan/v1/<node>/ingest/+`: the national node's subscription to every origin.
pub fn ingest_filter(node: &str) -> String {
    format!("{ROOT}{node}/ingest/+")
}

/// `kairan/v1/<node>/ingest-heads/<origin>`: where origin `origin` publishes its heads.
pub fn ingest_heads_of(node: &str, origin: &str) -> String {
    format!("{ROOT}{node}/ingest-heads/{origin}")
}

/// `kairan/v1/<node>/ingest-heads/+`.
pub fn ingest_heads_filter(node: &str) -> String {
    format!("{ROOT}{node}/ingest-heads/+")
}

/// `kairan/v1/<node>/control`.
pub fn control(node: &str) -> String {
    format!("{ROOT}{node}/control")
}

/// `kairan/v1/<node>/deliveries/<scope>`.
pub fn deliveries(node: &str, scope: &str) -> String {
    format!("{}/{scope}", deliveries_root(node))
}

/// `kairan/v1/<node>/deliveries`.
pub fn deliveries_root(node: &str) -> String {
    format!("{ROOT}{node}/deliveries")
}

/// The subscriptions of a child with scope `scope` on its parent `parent`'s broker: the exact
/// topic of each enclosing scope, and everything under its own.
pub fn delivery_filters(parent: &str, scope: &Scope) -> Vec<String> {
    let segments = scope.segments();
    let mut filters: Vec<String> =
        (1..segments.len()).map(|depth| deliveries(parent, &segments[..depth].join("/"))).collect();
    filters.push(format!("{}/#", deliveries(parent, &scope.to_string())));
    filters
}

/// `kairan/v1/<node>/trust`: the prefix of a relay's retained trust pieces.
pub fn trust(node: &str) -> String {
    format!("{ROOT}{node}/trust")
}

/// `kairan/v1/<node>/trust/<piece>`: one retained trust piece.
pub fn trust_piece(node: &str, piece: &str) -> String {
    format!("{ROOT}{node}/trust/{piece}")
}

/// `kairan/v1/<node>/trust/+`: a child's subscription to its parent's trust pieces.
pub fn trust_filter(node: &str) -> String {
    format!("{ROOT}{node}/trust/+")
}

/// `kairan/v1/<node>/heads/<origin>/<scope>`: the retained head of the chain (origin, scope).
pub fn heads(node: &str, chain: &ChainId) -> String {
    format!("{ROOT}{node}/heads/{}/{}", chain.origin, chain.scope)
}

/// `kairan/v1/<node>/heads`.
pub fn heads_root(node: &str) -> String {
    format!("{ROOT}{node}/heads")
}

/// The subscriptions of a child with scope `scope` to its parent `parent`'s heads, as for
/// deliveries ([`delivery_filters`]): the heads of chains scoped to each enclosing region
/// (any origin, exact scope), and of every chain inside its own.
pub fn heads_filters(parent: &str, scope: &Scope) -> Vec<String> {
    let segments = scope.segments();
    let root = heads_root(parent);
    let mut filters: Vec<String> =
        (1..segments.len()).map(|depth| format!("{root}/+/{}", segments[..depth].join("/"))).collect();
    filters.push(format!("{root}/+/{scope}/#"));
    filters
}

/// `kairan/v1/<node>/checkpoint`: the latest checkpoint of relay `node`'s transparency log
/// (a signed note, retained), signed only once the entries it covers are durable.
pub fn checkpoint(node: &str) -> String {
    format!("{ROOT}{node}/checkpoint")
}

/// `kairan/v1/<parent>/sync/<child>/req`.
pub fn sync_request(parent: &str, child: &str) -> String {
    format!("{ROOT}{parent}/sync/{child}/req")
}

/// `kairan/v1/<parent>/sync/<child>/resp`.
pub fn sync_response(parent: &str, child: &str) -> String {
    format!("{ROOT}{parent}/sync/{child}/resp")
}

/// `kairan/v1/<parent>/sync/+/req`: a relay's subscription to every child's requests.
pub fn sync_request_filter(parent: &str) -> String {
    format!("{ROOT}{parent}/sync/+/req")
}

/// `kairan/v1/<parent>/sync/+/resp`: every answer of a relay.
pub fn sync_response_filter(parent: &str) -> String {
    format!("{ROOT}{parent}/sync/+/resp")
}

/// `kairan/v1/<node>/accepted/<origin>`: the national node's signed acceptances of what
/// origin `origin` published, sent once each advisory is stored durably.
pub fn accepted(node: &str, origin: &str) -> String {
    format!("{ROOT}{node}/accepted/{origin}")
}

/// `kairan/v1/<node>/accepted/+`: every origin's acceptances (what the national node writes).
pub fn accepted_filter(node: &str) -> String {
    format!("{ROOT}{node}/accepted/+")
}

/// `kairan/v1/<node>/recipients/<part>`: part `part` of district `node`'s own signed
/// recipient directory, retained on its own broker.
pub fn recipients_part(node: &str, part: u32) -> String {
    format!("{ROOT}{node}/recipients/{part}")
}

/// `kairan/v1/<node>/recipients/#`: every part of a district's own directory.
pub fn recipients_filter(node: &str) -> String {
    format!("{ROOT}{node}/recipients/#")
}

/// `kairan/v1/<node>/directory/<scope>/<part>`: part `part` of the directory of `scope`,
/// retained on node `node`'s broker by the child relay whose scope encloses `scope`.
pub fn directory_part(node: &str, scope: &Scope, part: u32) -> String {
    format!("{ROOT}{node}/directory/{scope}/{part}")
}

/// `kairan/v1/<node>/directory/<scope>/#`: where a child relay of scope `scope` may write on
/// its parent `node`'s broker (its own directory and those of the scopes inside it).
pub fn directory_of(node: &str, scope: &Scope) -> String {
    format!("{ROOT}{node}/directory/{scope}/#")
}

/// `kairan/v1/<node>/directory/#`: every directory held on node `node`'s broker.
pub fn directory_filter(node: &str) -> String {
    format!("{ROOT}{node}/directory/#")
}

/// What a topic is, relative to the node that owns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topic<'t> {
    /// `…/ingest/<origin>`.
    Ingest(&'t str),
    /// `…/ingest-heads/<origin>`.
    IngestHeads(&'t str),
    /// `…/control`.
    Control,
    /// `…/deliveries/<scope>`.
    Deliveries(&'t str),
    /// `…/trust` or `…/trust/<piece>`.
    Trust(Option<&'t str>),
    /// `…/heads/<origin>/<scope>` (origin, scope path).
    Heads(&'t str, &'t str),
    /// `…/checkpoint`.
    Checkpoint,
    /// `…/sync/<child>/req`.
    SyncRequest(&'t str),
    /// `…/sync/<child>/resp`.
    SyncResponse(&'t str),
    /// `…/accepted/<origin>`.
    Accepted(&'t str),
    /// `…/recipients/<part>`.
    Recipients(&'t str),
    /// `…/directory/<scope path>/<part>`.
    Directory {
        /// The scope path (`jp/13/chuo`), unchecked.
        scope: &'t str,
        /// The part number, unchecked.
        part: &'t str,
    },
}

/// Parses `topic` as one of `owner`'s topics. `None` for anything else (another node's
/// topic, an unknown suffix, an empty or nested id).
pub fn parse<'t>(owner: &str, topic: &'t str) -> Option<Topic<'t>> {
    let rest = topic.strip_prefix(ROOT)?.strip_prefix(owner)?.strip_prefix('/')?;
    let single = |id: &'t str| (!id.is_empty() && !id.contains('/')).then_some(id);
    match rest {
        "control" => Some(Topic::Control),
        "trust" => Some(Topic::Trust(None)),
        "checkpoint" => Some(Topic::Checkpoint),
        _ => {
            if let Some(origin) = rest.strip_prefix("ingest/") {
                return single(origin).map(Topic::Ingest);
            }
            if let Some(origin) = rest.strip_prefix("ingest-heads/") {
                return single(origin).map(Topic::IngestHeads);
            }
            if let Some(piece) = rest.strip_prefix("trust/") {
                return single(piece).map(|piece| Topic::Trust(Some(piece)));
            }
            if let Some(scope) = rest.strip_prefix("deliveries/") {
                return (!scope.is_empty()).then_some(Topic::Deliveries(scope));
            }
            if let Some(chain) = rest.strip_prefix("heads/") {
                let (origin, scope) = chain.split_once('/')?;
                return (!origin.is_empty() && !scope.is_empty()).then_some(Topic::Heads(origin, scope));
            }
            if let Some(origin) = rest.strip_prefix("accepted/") {
                return single(origin).map(Topic::Accepted);
            }
            if let Some(part) = rest.strip_prefix("recipients/") {
                return single(part).map(Topic::Recipients);
            }
            if let Some(path) = rest.strip_prefix("directory/") {
                let (scope, part) = path.rsplit_once('/')?;
                return (!scope.is_empty() && !part.is_empty()).then_some(Topic::Directory { scope, part });
            }
            let sync = rest.strip_prefix("sync/")?;
            if let Some(child) = sync.strip_suffix("/req") {
                return single(child).map(Topic::SyncRequest);
            }
            sync.strip_suffix("/resp").and_then(single).map(Topic::SyncResponse)
        }
    }
}

/// Whether an MQTT topic filter (with `+` and `#` wildcards) matches a topic name.
pub fn matches(filter: &str, topic: &str) -> bool {
    let mut levels = topic.split('/');
    for part in filter.split('/') {
        match (part, levels.next()) {
            ("#", _) => return true,
            ("+", Some(_)) => {}
            (exact, Some(level)) if exact == level => {}
            _ => return false,
        }
    }
    levels.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_route_by_scope() {
        let scope = Scope::parse("jp/13/chuo").expect("scope");
        assert_eq!(
            delivery_filters("jp-13", &scope),
            vec![
                "kairan/v1/jp-13/deliveries/jp",
                "kairan/v1/jp-13/deliveries/jp/13",
                "kairan/v1/jp-13/deliveries/jp/13/chuo/#"
            ]
        );
    }

    #[test]
    fn heads_are_routed_by_the_scope_of_their_chain() {
        let scope = Scope::parse("jp/13/chuo").expect("scope");
        let filters = heads_filters("jp-13", &scope);
        assert_eq!(
            filters,
            vec![
                "kairan/v1/jp-13/heads/+/jp",
                "kairan/v1/jp-13/heads/+/jp/13",
                "kairan/v1/jp-13/heads/+/jp/13/chuo/#"
            ]
        );
        let topic = |scope: &str| heads("jp-13", &ChainId::new("mhlw", Scope::parse(scope).expect("scope")));
        let reaches = |scope: &str| filters.iter().any(|f| matches(f, &topic(scope)));
        for entitled in ["jp", "jp/13", "jp/13/chuo", "jp/13/chuo/c1"] {
            assert!(reaches(entitled), "{entitled}");
        }
        for sibling in ["jp/13/minato", "jp/27", "jp/13/chuo-2"] {
            assert!(!reaches(sibling), "{sibling}");
        }
    }

    #[test]
    fn every_built_topic_parses_back() {
        assert_eq!(parse("jp", &ingest_of("jp", "mhlw")), Some(Topic::Ingest("mhlw")));
        assert_eq!(parse("jp", &ingest_heads_of("jp", "mhlw")), Some(Topic::IngestHeads("mhlw")));
        assert_eq!(parse("jp", &control("jp")), Some(Topic::Control));
        assert_eq!(parse("jp", &trust("jp")), Some(Topic::Trust(None)));
        assert_eq!(parse("jp", &trust_piece("jp", "r-1")), Some(Topic::Trust(Some("r-1"))));
        assert_eq!(parse("jp", &deliveries("jp", "jp/13")), Some(Topic::Deliveries("jp/13")));
        let chain = ChainId::new("mhlw", Scope::parse("jp/13").expect("scope"));
        assert_eq!(parse("jp", &heads("jp", &chain)), Some(Topic::Heads("mhlw", "jp/13")));
        assert_eq!(
            parse("jp-13", &sync_request("jp-13", "jp-13-chuo")),
            Some(Topic::SyncRequest("jp-13-chuo"))
        );
        assert_eq!(parse("jp-13", &sync_response("jp-13", "c1")), Some(Topic::SyncResponse("c1")));
        assert_eq!(parse("jp-13-chuo", &recipients_part("jp-13-chuo", 2)), Some(Topic::Recipients("2")));
        let chuo = Scope::parse("jp/13/chuo").expect("scope");
        assert_eq!(
            parse("jp", &directory_part("jp", &chuo, 3)),
            Some(Topic::Directory { scope: "jp/13/chuo", part: "3" })
        );
        assert!(matches(
            &directory_of("jp", &Scope::parse("jp/13").expect("scope")),
            &directory_part("jp", &chuo, 1)
        ));
        assert_eq!(parse("jp", "kairan/v1/jp/directory/1"), None, "no scope");
    }

    #[test]
    fn filters_match_as_mqtt_does() {
        assert!(matches("kairan/v1/jp/heads/+", "kairan/v1/jp/heads/mhlw"));
        assert!(!matches("kairan/v1/jp/heads/+", "kairan/v1/jp/heads/mhlw/x"));
        assert!(matches("kairan/v1/jp/deliveries/jp/13/#", "kairan/v1/jp/deliveries/jp/13"));
        assert!(matches("kairan/v1/jp/deliveries/jp/13/#", "kairan/v1/jp/deliveries/jp/13/chuo"));
        assert!(!matches("kairan/v1/jp/deliveries/jp/13/#", "kairan/v1/jp/deliveries/jp/131"));
        assert!(!matches("kairan/v1/jp/deliveries/jp", "kairan/v1/jp/deliveries/jp/13"));
    }

    #[test]
    fn foreign_and_malformed_topics_do_not_parse() {
        assert_eq!(parse("jp-1", &trust("jp-13")), None, "another node's topic");
        assert_eq!(parse("jp", "kairan/v1/jp/ingest"), None, "no origin named");
        assert_eq!(parse("jp-13", "kairan/v1/jp-13/sync/a/b/req"), None, "nested child id");
        assert_eq!(parse("jp-13", "kairan/v1/jp-13/sync//req"), None, "empty child id");
        assert_eq!(parse("jp-13", "kairan/v1/jp-13/heads/"), None);
        assert_eq!(parse("jp-13", "kairan/v1/jp-13/heads/mhlw"), None, "no scope");
        assert_eq!(parse("jp-13", "kairan/v1/jp-13/heads//jp"), None, "no origin");
        assert_eq!(parse("jp-13", "kairan/v1/jp-13/deliveries/"), None);
        assert_eq!(parse("jp-13", "kairan/v1/jp-13/other"), None);
    }
}
