//! The members file: who may connect to a node's broker, as what, with which password hash.
//!
//! ```toml
//! [[members]]
//! id = "jp-13-chuo"                     # username and client id
//! kind = "relay"                         # relay | clinic | origin | admin
//! password_hash = "$7$1000$…$…"          # written by `kairan members add`
//! cert = "certs/jp-13-chuo.cert.json"    # relays: the certificate this node issued them
//!
//! [[members]]
//! id = "clinic-0001"
//! kind = "clinic"
//! password_hash = "$7$1000$…$…"
//! scope = "jp/13/chuo"                   # clinics: their scope, inside this node's
//! ```
//!
//! Passwords are stored as Mosquitto stores them (`$7$` = PBKDF2-HMAC-SHA512, iterations,
//! base64 salt, base64 hash), so the same hash serves the embedded broker and a Mosquitto
//! password file. The file is refused when group or others can read it. A relay's scope
//! comes from the certificate this node issued it, never from the file alone.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use kairan_protocol::{Certificate, Envelope, PublicKey, Role, Scope};

use crate::authz::{Grants, MemberKind, Principal, directory_username, ingest_username, publisher_username};
use crate::rabbitmq_config::RabbitPasswordHash;

/// PBKDF2 iterations of new hashes. Mosquitto verifies whatever count a hash states; 1,000
/// costs about a millisecond per connection, which 2,000 clinics reconnecting at once afford.
pub const HASH_ITERATIONS: u32 = 1_000;

/// A password hash in Mosquitto's `$7$` form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordHash {
    iterations: u32,
    salt: Vec<u8>,
    hash: Vec<u8>,
}

impl PasswordHash {
    /// Hashes `password` with a fresh random salt.
    pub fn new(password: &str) -> Self {
        let mut salt = vec![0u8; 12];
        rand::Rng::fill(&mut rand::rngs::OsRng, salt.as_mut_slice());
        let hash = derive(password, &salt, HASH_ITERATIONS);
        Self { iterations: HASH_ITERATIONS, salt, hash }
    }

    /// Parses `$7$<iterations>$<base64 salt>$<base64 hash>`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let parts: Vec<&str> = text.trim().split('$').collect();
        let ["", "7", iterations, salt, hash] = parts.as_slice() else {
            return Err(
                "expected $7$<iterations>$<salt>$<hash> (PBKDF2-SHA512, as mosquitto_passwd writes)".into()
            );
        };
        let iterations: u32 = iterations
            .parse()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| format!("bad iteration count {iterations:?}"))?;
        let salt = STANDARD.decode(salt).map_err(|e| format!("salt: {e}"))?;
        let hash = STANDARD.decode(hash).map_err(|e| format!("hash: {e}"))?;
        if salt.is_empty() || hash.len() != 64 {
            return Err("a salt and a 64-byte hash are needed".into());
        }
        Ok(Self { iterations, salt, hash })
    }

    /// Whether `password` matches (in constant time).
    pub fn verify(&self, password: &[u8]) -> bool {
        let Ok(text) = std::str::from_utf8(password) else { return false };
        derive(text, &self.salt, self.iterations).ct_eq(&self.hash).into()
    }
}

impl std::fmt::Display for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "$7${}${}${}", self.iterations, STANDARD.encode(&self.salt), STANDARD.encode(&self.hash))
    }
}

fn derive(password: &str, salt: &[u8], iterations: u32) -> Vec<u8> {
    let mut out = vec![0u8; 64];
    pbkdf2::pbkdf2_hmac::<sha2::Sha512>(password.as_bytes(), salt, iterations, &mut out);
    out
}

/// A row of the members file as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberRow {
    /// Username and client id.
    pub id: String,
    /// What it is.
    pub kind: MemberKind,
    /// Its password hash (`$7$…`).
    pub password_hash: String,
    /// Relays: the certificate this node issued them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<String>,
    /// Clinics: their scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The same password as RabbitMQ's internal database keeps it (salted SHA-256), for a
    /// node whose broker is RabbitMQ (`kairan members add --rabbitmq`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rabbitmq_password_hash: Option<String>,
    /// Refused: plaintext passwords are no longer accepted.
    #[serde(default, skip_serializing)]
    pub password: Option<String>,
}

/// The members file as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MembersFile {
    /// The rows.
    #[serde(default)]
    pub members: Vec<MemberRow>,
}

impl MembersFile {
    /// Reads a members file (mode 0600); a missing file is an empty one.
    pub fn load_or_default(path: &Path) -> Result<Self, String> {
        match std::fs::metadata(path) {
            Ok(_) => {
                let text = crate::secrets::read_private(path, "members file")?;
                toml::from_str::<MembersFile>(&text).map_err(|e| format!("{}: {e}", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(format!("members file {}: {e}", path.display())),
        }
    }

    /// Writes the file (mode 0600, atomically), with its header.
    pub fn save(&self, path: &Path) -> Result<(), String> {
        let text = toml::to_string(self).map_err(|e| e.to_string())?;
        let header = "# Members of a kairan node's broker (kairan members add). Keep mode 0600.\n";
        crate::secrets::write_private(path, format!("{header}{text}").as_bytes())
            .map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// A checked member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Who it is (id, kind, scope).
    pub principal: Principal,
    /// Its password hash.
    pub password: PasswordHash,
    /// Its password hash for RabbitMQ, if it has one.
    pub rabbitmq_password: Option<RabbitPasswordHash>,
}

/// One client of an external broker: its username, its password hash in the broker's own
/// format, and what it may do there.
#[derive(Debug, Clone)]
pub struct BrokerUser {
    /// Username (= client id).
    pub name: String,
    /// Password hash as the broker stores it.
    pub hash: String,
    /// The union of its grants on every node that shares the broker.
    pub grants: Grants,
}

/// The clients of one external broker shared by `nodes` (id, national, members, the hash of
/// the node's own clients): each node's publisher, the national's ingest client, and every
/// member — a member of two nodes (a relay whose parent and children share the broker) with the
/// grants of both. `member_hash` gives a member's hash in the broker's format. One username
/// with two different hashes is refused (`broker` names the broker in the message).
pub fn broker_users<'a>(
    nodes: impl IntoIterator<Item = (&'a str, bool, &'a Members, String)>,
    broker: &str,
    member_hash: impl Fn(&str, &str, &Member) -> Result<String, String>,
) -> Result<Vec<BrokerUser>, String> {
    let mut users: Vec<BrokerUser> = Vec::new();
    let mut add = |name: String, hash: String, grants: Grants| -> Result<(), String> {
        match users.iter_mut().find(|user| user.name == name) {
            Some(user) => {
                if user.hash != hash {
                    return Err(format!("{name} has two different {broker}password hashes on one broker"));
                }
                user.grants.read.extend(grants.read);
                user.grants.write.extend(grants.write);
                user.grants.retain.extend(grants.retain);
            }
            None => users.push(BrokerUser { name, hash, grants }),
        }
        Ok(())
    };
    for (node, national, members, own) in nodes {
        add(publisher_username(node), own.clone(), Grants::of(node, national, &Principal::Publisher))?;
        add(directory_username(node), own.clone(), Grants::of(node, national, &Principal::Directory))?;
        if national {
            add(ingest_username(node), own, Grants::of(node, true, &Principal::Ingest))?;
        }
        for (id, member) in members.iter() {
            add(id.clone(), member_hash(node, id, member)?, Grants::of(node, national, &member.principal))?;
        }
    }
    Ok(users)
}

/// What a node knows of its members.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Members {
    by_id: BTreeMap<String, Member>,
}

/// What checking a members file needs to know of the node.
#[derive(Debug, Clone, Copy)]
pub struct NodeView<'a> {
    /// The node's id (the issuer of its children's certificates).
    pub id: &'a str,
    /// The node's key (that signed them).
    pub key: &'a PublicKey,
    /// The node's scope.
    pub scope: &'a Scope,
    /// Whether it is the national node (origins and administrators are members there only).
    pub national: bool,
}

impl Members {
    /// Reads and checks a members file (mode 0600; relative certificate paths resolve
    /// against `base`). Every error names the member.
    pub fn load(path: &Path, base: &Path, node: NodeView<'_>) -> Result<Self, String> {
        let text = crate::secrets::read_private(path, "members file")?;
        let file: MembersFile = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut members = Members::default();
        for row in file.members {
            let member = check_row(&row, base, node).map_err(|e| format!("member {}: {e}", row.id))?;
            if members.by_id.insert(row.id.clone(), member).is_some() {
                return Err(format!("member {} is listed twice", row.id));
            }
        }
        Ok(members)
    }

    /// Adds a member (tests, the harness, the internal clients).
    pub fn insert(&mut self, principal: Principal, id: &str, password: PasswordHash) {
        self.by_id.insert(id.to_owned(), Member { principal, password, rabbitmq_password: None });
    }

    /// Gives a member its RabbitMQ password hash (the harness; a file carries it in the row).
    /// False when there is no such member.
    pub fn set_rabbitmq_password(&mut self, id: &str, hash: RabbitPasswordHash) -> bool {
        self.by_id.get_mut(id).map(|member| member.rabbitmq_password = Some(hash)).is_some()
    }

    /// The member a username and password authenticate, if any.
    pub fn authenticate(&self, username: &str, password: &[u8]) -> Option<&Member> {
        self.by_id.get(username).filter(|member| member.password.verify(password))
    }

    /// The member with this id.
    pub fn get(&self, id: &str) -> Option<&Member> {
        self.by_id.get(id)
    }

    /// Every member, by id.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Member)> {
        self.by_id.iter()
    }

    /// The children (relays and clinics) with their scopes: whom this node answers.
    pub fn children(&self) -> BTreeMap<String, Scope> {
        self.by_id
            .iter()
            .filter_map(|(id, member)| match &member.principal {
                Principal::Member {
                    kind: MemberKind::Relay | MemberKind::Clinic,
                    scope: Some(scope),
                    ..
                } => Some((id.clone(), scope.clone())),
                _ => None,
            })
            .collect()
    }
}

fn check_row(row: &MemberRow, base: &Path, node: NodeView<'_>) -> Result<Member, String> {
    kairan_protocol::advisory::check_id("id", &row.id)?;
    if row.password.is_some() {
        return Err(
            "plaintext `password` is not accepted; store a hash: kairan members add (see deploy/)".into()
        );
    }
    let password = PasswordHash::parse(&row.password_hash).map_err(|e| format!("password_hash: {e}"))?;
    let rabbitmq_password = row
        .rabbitmq_password_hash
        .as_deref()
        .map(RabbitPasswordHash::parse)
        .transpose()
        .map_err(|e| format!("rabbitmq_password_hash: {e}"))?;
    let scope = match row.kind {
        MemberKind::Relay => {
            let path = row
                .cert
                .as_ref()
                .ok_or("a relay member needs `cert`: the certificate this node issued it")?;
            Some(child_scope(&base.join(path), &row.id, node)?)
        }
        MemberKind::Clinic => {
            let text = row.scope.as_ref().ok_or("a clinic member needs `scope`")?;
            let scope = Scope::parse(text).map_err(|e| format!("scope: {e}"))?;
            if !node.scope.contains(&scope) {
                return Err(format!("scope {scope} is outside this node's scope {}", node.scope));
            }
            Some(scope)
        }
        MemberKind::Origin | MemberKind::Admin if !node.national => {
            return Err(format!("{:?} members belong on the national node's broker", row.kind));
        }
        MemberKind::Origin | MemberKind::Admin => None,
    };
    Ok(Member {
        principal: Principal::Member { id: row.id.clone(), kind: row.kind, scope },
        password,
        rabbitmq_password,
    })
}

/// The scope of a child relay, from the certificate this node issued it: it must be signed by
/// this node's key, name this node as issuer and the member as subject, and grant `relay`.
fn child_scope(path: &Path, id: &str, node: NodeView<'_>) -> Result<Scope, String> {
    let text = std::fs::read(path).map_err(|e| format!("cert {}: {e}", path.display()))?;
    let envelope = Envelope::from_json(&text).map_err(|e| format!("cert {}: {e}", path.display()))?;
    envelope
        .verify_by(kairan_protocol::envelope::CERT_TYPE, "member certificate", node.key)
        .map_err(|e| format!("cert {}: not issued by this node's key: {e}", path.display()))?;
    let cert = Certificate::decode(&envelope.payload).map_err(|e| format!("cert {}: {e}", path.display()))?;
    if cert.issuer != node.id || cert.subject != id || !cert.has_role(Role::Relay) {
        return Err(format!(
            "cert {} is {} ({:?}) issued by {}, not relay {id} issued by {}",
            path.display(),
            cert.subject,
            cert.roles,
            cert.issuer,
            node.id
        ));
    }
    Ok(cert.scope)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_round_trip_and_verify_as_mosquitto_writes_them() {
        let hash = PasswordHash::new("correct horse");
        let parsed = PasswordHash::parse(&hash.to_string()).expect("parses");
        assert!(parsed.verify(b"correct horse"));
        assert!(!parsed.verify(b"wrong horse"));
        // Written by `mosquitto_passwd -b` (Mosquitto 2.0.11) for password "secret-password-1".
        let mosquitto = "$7$101$HB/jde009OIuU/nK$PgWmK2E1wJG0g2dP4FPBRV93hXA4QshwohG9Ugo8sfEYDJ7Mh+IrZAWpCUQLNiV+h229waI0E1s5cYUpwe0xNA==";
        let parsed = PasswordHash::parse(mosquitto).expect("parses");
        assert!(parsed.verify(b"secret-password-1"));
        assert!(!parsed.verify(b"secret-password-2"));
        assert!(PasswordHash::parse("$6$salt$hash").is_err());
    }

    #[test]
    fn rows_are_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = kairan_protocol::SecretKey::from_seed(&[7; 32]).expect("key");
        let scope = Scope::parse("jp/13/chuo").expect("scope");
        let node = NodeView { id: "jp-13-chuo", key: key.public(), scope: &scope, national: false };
        let hash = PasswordHash::new("pw-1234567").to_string();
        let write = |text: String| {
            let path = dir.path().join("members.toml");
            crate::secrets::write_private(&path, text.as_bytes()).expect("write");
            Members::load(&path, dir.path(), node)
        };
        let members = write(format!(
            "[[members]]\nid = \"c1\"\nkind = \"clinic\"\nscope = \"jp/13/chuo\"\npassword_hash = \"{hash}\"\n"
        ))
        .expect("loads");
        assert!(members.authenticate("c1", b"pw-1234567").is_some());
        assert!(members.authenticate("c1", b"pw-12345678").is_none());
        assert_eq!(members.children().len(), 1);
        let error = write("[[members]]\nid = \"c1\"\nkind = \"clinic\"\nscope = \"jp/13/chuo\"\npassword_hash = \"x\"\npassword = \"plain\"\n".into())
            .expect_err("plaintext");
        assert!(error.contains("plaintext"), "{error}");
        let error = write(format!(
            "[[members]]\nid = \"c2\"\nkind = \"clinic\"\nscope = \"jp/27\"\npassword_hash = \"{hash}\"\n"
        ))
        .expect_err("outside");
        assert!(error.contains("outside"), "{error}");
        let error =
            write(format!("[[members]]\nid = \"o\"\nkind = \"origin\"\npassword_hash = \"{hash}\"\n"))
                .expect_err("not national");
        assert!(error.contains("national"), "{error}");
    }
}
