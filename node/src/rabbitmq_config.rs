//! RabbitMQ (its MQTT plugin) configured from the permission table: `kairan broker
//! rabbitmq-config` writes a definitions file (users with their password hashes, the `kairan`
//! virtual host, each user's resource permissions and its topic permissions on `amq.topic`,
//! from [`crate::authz::Grants`]) and the `rabbitmq.conf` lines that make them hold, for the
//! nodes that use one RabbitMQ (or one cluster) as their broker.
//!
//! How the table maps onto RabbitMQ 3.10:
//! - **Topics.** The MQTT plugin publishes to `amq.topic` with the MQTT topic as routing key,
//!   `/` turned into `.` (and `+` into `*` in subscriptions). A `.` inside an MQTT level is
//!   *not* escaped, so it would split a level in two: ids with a `.` are refused here.
//! - **Reads** are topic permissions on the binding key of a subscription: the read regex lists
//!   a member's filters exactly, as [`Grants::may_subscribe`] does. **Writes** are topic
//!   permissions on the routing key of a publish. Every user gets topic permissions (RabbitMQ
//!   allows every topic to a user that has none), `(?!)` where it may do nothing.
//! - **Client ids.** A subscription is a queue `mqtt-subscription-<client id>qos[01]`; a user's
//!   resource permissions name only its own, so a member can subscribe only under its own
//!   client id. (RabbitMQ still lets a client *connect* with another's id, which disconnects
//!   that one: `docs/rabbitmq.md` lists this limit.)
//! - **Passwords.** RabbitMQ's internal database keeps salted SHA-256 (`rabbit_password_hashing_sha256`:
//!   base64 of a 4-byte salt and SHA-256(salt ‖ password)); a PBKDF2 hash of the members file
//!   cannot be converted, so a member meant for RabbitMQ carries a second hash,
//!   `rabbitmq_password_hash` (`kairan members add --rabbitmq`).
//! - **Retain** has no permission of its own in RabbitMQ: like with Mosquitto, a member may keep
//!   one retained message on the one topic it may write.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::authz::Grants;
use crate::members::{Members, broker_users};

/// The virtual host all kairan nodes on one RabbitMQ share (topics carry the node id).
pub const VHOST: &str = "kairan";
/// The exchange the MQTT plugin publishes to.
pub const EXCHANGE: &str = "amq.topic";
/// RabbitMQ's name for the salted SHA-256 password hash.
pub const HASHING_ALGORITHM: &str = "rabbit_password_hashing_sha256";

/// A password hash as RabbitMQ's internal database keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RabbitPasswordHash {
    salt: [u8; 4],
    hash: [u8; 32],
}

impl RabbitPasswordHash {
    /// Hashes `password` with a fresh random salt.
    pub fn new(password: &str) -> Self {
        let mut salt = [0u8; 4];
        rand::Rng::fill(&mut rand::rngs::OsRng, &mut salt);
        Self { salt, hash: salted_sha256(&salt, password) }
    }

    /// Parses the base64 form (`password_hash` of RabbitMQ's definitions).
    pub fn parse(text: &str) -> Result<Self, String> {
        let bytes = STANDARD.decode(text.trim()).map_err(|e| format!("not base64: {e}"))?;
        let (salt, hash) =
            bytes.split_first_chunk::<4>().ok_or("expected base64 of a 4-byte salt and a 32-byte SHA-256")?;
        let hash: [u8; 32] =
            hash.try_into().map_err(|_| "expected base64 of a 4-byte salt and a 32-byte SHA-256")?;
        Ok(Self { salt: *salt, hash })
    }

    /// Whether `password` matches (in constant time).
    pub fn verify(&self, password: &str) -> bool {
        subtle::ConstantTimeEq::ct_eq(&salted_sha256(&self.salt, password)[..], &self.hash[..]).into()
    }
}

impl std::fmt::Display for RabbitPasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut bytes = self.salt.to_vec();
        bytes.extend_from_slice(&self.hash);
        f.write_str(&STANDARD.encode(bytes))
    }
}

fn salted_sha256(salt: &[u8; 4], password: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(salt);
    hasher.update(password.as_bytes());
    hasher.finalize().into()
}

/// One node that uses the RabbitMQ: its id, its members, and the RabbitMQ hash of the password
/// its own clients (`<id>~out`, and `<id>~ingest` on the national node) log in with.
#[derive(Debug, Clone, Copy)]
pub struct NodeOnRabbit<'a> {
    /// The node id.
    pub id: &'a str,
    /// Whether it is the national node.
    pub national: bool,
    /// Its members (each needs a RabbitMQ hash).
    pub members: &'a Members,
    /// The hash of its own clients' password.
    pub own_clients: &'a RabbitPasswordHash,
}

/// The settings of the generated `rabbitmq.conf`.
#[derive(Debug, Clone)]
pub struct RabbitSettings<'a> {
    /// MQTT listener address and port.
    pub listen: (&'a str, u16),
    /// Where the definitions file will be (loaded at boot).
    pub definitions_path: &'a str,
    /// Queue type of the QoS 1 subscriptions: `classic` (one node) or `quorum` (a cluster:
    /// replicated, so a child's queued deliveries survive the loss of a node).
    pub quorum_queues: bool,
}

/// The generated files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RabbitFiles {
    /// The definitions (JSON), for `load_definitions`.
    pub definitions: String,
    /// The `rabbitmq.conf` lines.
    pub conf: String,
}

/// The files for `nodes` sharing one RabbitMQ. A member of two nodes gets the grants of both.
pub fn generate(nodes: &[NodeOnRabbit<'_>], settings: &RabbitSettings<'_>) -> Result<RabbitFiles, String> {
    let on_broker = nodes.iter().map(|n| (n.id, n.national, n.members, n.own_clients.to_string()));
    let users = broker_users(on_broker, "RabbitMQ ", |node, id, member| {
        member.rabbitmq_password.as_ref().map(ToString::to_string).ok_or_else(|| {
            format!(
                "member {id} of node {node} has no rabbitmq_password_hash (add it again with `kairan members add --rabbitmq`)"
            )
        })
    })?;
    if let Some(user) = users.iter().find(|user| user.name.contains('.')) {
        return Err(format!(
            "{}: ids with a '.' cannot be used on RabbitMQ (its MQTT plugin turns '/' into '.', so the '.' would split a topic level)",
            user.name
        ));
    }
    let definitions = json!({
        "rabbit_version": "3.10.8",
        "users": users.iter().map(|u| json!({
            "name": u.name,
            "password_hash": u.hash,
            "hashing_algorithm": HASHING_ALGORITHM,
            "tags": [],
        })).collect::<Vec<Value>>(),
        "vhosts": [{ "name": VHOST }],
        "permissions": users.iter().map(|u| resource_permissions(&u.name, &u.grants)).collect::<Vec<Value>>(),
        "topic_permissions": users.iter().map(|u| json!({
            "user": u.name,
            "vhost": VHOST,
            "exchange": EXCHANGE,
            "write": write_regex(&u.grants.write),
            "read": read_regex(&u.grants.read),
        })).collect::<Vec<Value>>(),
        "parameters": [], "global_parameters": [], "policies": [],
        "queues": [], "exchanges": [], "bindings": [],
    });
    let definitions = serde_json::to_string_pretty(&definitions).map_err(|e| e.to_string())?;
    let (host, port) = settings.listen;
    let conf = format!(
        "# kairan: RabbitMQ's MQTT plugin as a node's broker. Written by `kairan broker rabbitmq-config`.\n\
         # Enable the plugin first: rabbitmq-plugins enable rabbitmq_mqtt\n\
         # Members and what they may read and write, from the members files. With definitions\n\
         # loaded at boot RabbitMQ creates no default `guest` user.\n\
         load_definitions = {definitions}\n\
         # MQTT only: no AMQP listener (the CLI tools use Erlang distribution).\n\
         listeners.tcp = none\n\
         mqtt.listeners.tcp.default = {host}:{port}\n\
         mqtt.allow_anonymous = false\n\
         mqtt.vhost = {VHOST}\n\
         mqtt.exchange = {EXCHANGE}\n\
         # Unacknowledged deliveries per subscriber (kairan acks after its store is durable).\n\
         mqtt.prefetch = 100\n\
         # QoS 1 subscription queues: quorum queues replicate them across a cluster.\n\
         mqtt.durable_queue_type = {queue_type}\n\
         # A delivery with a full certificate chain, plus the topic and header: refuse larger.\n\
         max_message_size = {max}\n",
        definitions = settings.definitions_path,
        queue_type = if settings.quorum_queues { "quorum" } else { "classic" },
        max = crate::machine::MAX_PACKET_BYTES,
    );
    Ok(RabbitFiles { definitions, conf })
}

/// The resource permissions of a user: its own subscription queues (configure, write to bind,
/// read to consume) and `amq.topic` (write to publish, read to bind).
fn resource_permissions(name: &str, grants: &Grants) -> Value {
    let queues = format!("mqtt-subscription-{}qos[01]", escape(name));
    let subscribes = !grants.read.is_empty();
    json!({
        "user": name,
        "vhost": VHOST,
        "configure": if subscribes { format!("^{queues}$") } else { NOTHING.to_owned() },
        "write": if subscribes { format!("^(amq\\.topic|{queues})$") } else { "^amq\\.topic$".to_owned() },
        "read": if subscribes { format!("^(amq\\.topic|{queues})$") } else { NOTHING.to_owned() },
    })
}

/// A regex that matches nothing.
const NOTHING: &str = "(?!)";

/// The topic read regex: the binding keys of exactly the granted filters.
fn read_regex(filters: &[String]) -> String {
    if filters.is_empty() {
        return NOTHING.to_owned();
    }
    let keys: Vec<String> = filters.iter().map(|filter| escape(&routing_key(filter))).collect();
    format!("^({})$", keys.join("|"))
}

/// The topic write regex: every routing key the granted filters match.
fn write_regex(filters: &[String]) -> String {
    if filters.is_empty() {
        return NOTHING.to_owned();
    }
    let patterns: Vec<String> = filters
        .iter()
        .map(|filter| {
            let levels: Vec<String> = filter
                .split('/')
                .map(|level| match level {
                    "+" => "[^.]+".to_owned(),
                    "#" => "#".to_owned(),
                    exact => escape(exact),
                })
                .collect();
            // `a/#` matches `a` and everything below it.
            levels.join("\\.").replace("\\.#", "(\\..*)?")
        })
        .collect();
    format!("^({})$", patterns.join("|"))
}

/// An MQTT topic filter as the MQTT plugin turns it into an AMQP routing or binding key.
pub fn routing_key(filter: &str) -> String {
    filter.split('/').map(|level| if level == "+" { "*" } else { level }).collect::<Vec<_>>().join(".")
}

/// `text` with every character that is not a letter, digit or `_` escaped for PCRE.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for c in text.chars() {
        if !(c.is_ascii_alphanumeric() || c == '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::{MemberKind, Principal};
    use crate::members::PasswordHash;
    use kairan_protocol::Scope;

    fn settings() -> RabbitSettings<'static> {
        RabbitSettings { listen: ("127.0.0.1", 1883), definitions_path: "/d.json", quorum_queues: false }
    }

    #[test]
    fn hashes_are_what_rabbitmq_computes() {
        let hash = RabbitPasswordHash::new("correct horse battery");
        let parsed = RabbitPasswordHash::parse(&hash.to_string()).expect("parses");
        assert!(parsed.verify("correct horse battery"));
        assert!(!parsed.verify("correct horse batterz"));
        // RabbitMQ's documented example: "test12" with the salt 0x908DC60A.
        let known = RabbitPasswordHash {
            salt: [0x90, 0x8d, 0xc6, 0x0a],
            hash: salted_sha256(&[0x90, 0x8d, 0xc6, 0x0a], "test12"),
        };
        assert_eq!(known.to_string(), "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR");
        assert!(RabbitPasswordHash::parse("AAAA").is_err());
    }

    #[test]
    fn a_clinic_reads_exactly_its_filters_and_writes_its_request() {
        let mut members = Members::default();
        let clinic = Principal::Member {
            id: "c1".into(),
            kind: MemberKind::Clinic,
            scope: Some(Scope::parse("jp/13/chuo").expect("scope")),
        };
        members.insert(clinic, "c1", PasswordHash::new("pw-1"));
        members.set_rabbitmq_password("c1", RabbitPasswordHash::new("pw-1"));
        let own = RabbitPasswordHash::new("own");
        let node = NodeOnRabbit { id: "jp-13-chuo", national: false, members: &members, own_clients: &own };
        let files = generate(&[node], &settings()).expect("generated");
        let defs: Value = serde_json::from_str(&files.definitions).expect("json");
        let topic = |user: &str| {
            defs["topic_permissions"]
                .as_array()
                .expect("array")
                .iter()
                .find(|p| p["user"] == user)
                .cloned()
                .expect("user")
        };
        let c1 = topic("c1");
        assert_eq!(c1["write"], "^(kairan\\.v1\\.jp\\-13\\-chuo\\.sync\\.c1\\.req)$");
        let read = c1["read"].as_str().expect("read");
        assert!(read.contains("kairan\\.v1\\.jp\\-13\\-chuo\\.deliveries\\.jp\\.13\\.chuo\\.\\#"), "{read}");
        assert!(read.contains("kairan\\.v1\\.jp\\-13\\-chuo\\.heads\\.\\*\\.jp\\.13\\.chuo\\.\\#"), "{read}");
        assert!(!read.contains("kairan\\.v1\\.jp\\-13\\-chuo\\.heads\\.\\*|"), "no per-origin heads: {read}");
        let publisher = topic("jp-13-chuo~out");
        assert_eq!(publisher["read"], "^(kairan\\.v1\\.jp\\-13\\-chuo\\.sync\\.\\*\\.req)$");
        assert!(publisher["write"].as_str().expect("write").contains("deliveries(\\..*)?"));
        let perms = defs["permissions"].as_array().expect("array");
        let c1 = perms.iter().find(|p| p["user"] == "c1").expect("c1");
        assert_eq!(c1["configure"], "^mqtt-subscription-c1qos[01]$");
        assert!(files.conf.contains("mqtt.allow_anonymous = false"));
        assert!(files.conf.contains("load_definitions = /d.json"));
    }

    #[test]
    fn dotted_ids_and_members_without_a_rabbitmq_hash_are_refused() {
        let mut members = Members::default();
        let origin = Principal::Member { id: "o".into(), kind: MemberKind::Origin, scope: None };
        members.insert(origin, "o", PasswordHash::new("pw"));
        let own = RabbitPasswordHash::new("own");
        let node = NodeOnRabbit { id: "jp", national: true, members: &members, own_clients: &own };
        let error = generate(&[node], &settings()).expect_err("no hash");
        assert!(error.contains("member o") && error.contains("--rabbitmq"), "{error}");
        let empty = Members::default();
        let dotted = NodeOnRabbit { id: "jp.x", national: false, members: &empty, own_clients: &own };
        let error = generate(&[dotted], &settings()).expect_err("dotted");
        assert!(error.contains("'.'"), "{error}");
    }

    #[test]
    fn write_regexes_follow_mqtt_wildcards() {
        let regex = write_regex(&["kairan/v1/n/deliveries/#".into(), "kairan/v1/n/heads/+".into()]);
        assert_eq!(regex, "^(kairan\\.v1\\.n\\.deliveries(\\..*)?|kairan\\.v1\\.n\\.heads\\.[^.]+)$");
        assert_eq!(read_regex(&[]), NOTHING);
        assert_eq!(routing_key("kairan/v1/n/heads/+"), "kairan.v1.n.heads.*");
    }
}
