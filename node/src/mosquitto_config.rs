//! Mosquitto configured from the permission table: `kairan broker mosquitto-config` writes a
//! password file (the members' hashes, in the format `mosquitto_passwd` writes) and an ACL
//! file (every member's grants, from [`crate::authz::Grants`]) for the nodes that use one
//! Mosquitto as their broker, and the lines of `mosquitto.conf` that make them hold.
//!
//! With TLS (the default), each node gets a listener of its own presenting its own certificate
//! (`kairan tls cert`: the node's relay key, with its kairan certificates), TLS 1.3 only: a
//! child accepts a broker only as the relay it is configured for, so nodes sharing one
//! Mosquitto cannot share a certificate.
//!
//! What Mosquitto cannot express is written down in `docs/security.md` ("Known limits"): it
//! binds client ids to usernames only by making them equal (`use_username_as_clientid`), and
//! it has no rule for the retain flag, so a member may keep one retained message on the one
//! topic it may write (its own catch-up request topic).

use std::fmt::Write as _;

use crate::members::{BrokerUser, Members, PasswordHash, broker_users};

/// One node that uses the broker: its id, its members, and the hash of the password its own
/// clients (`<id>~out`, and `<id>~ingest` on the national node) log in with.
#[derive(Debug, Clone, Copy)]
pub struct NodeOnBroker<'a> {
    /// The node id.
    pub id: &'a str,
    /// Whether it is the national node.
    pub national: bool,
    /// Its members.
    pub members: &'a Members,
    /// The hash of its own clients' password.
    pub own_clients: &'a PasswordHash,
}

/// The generated files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MosquittoFiles {
    /// The password file (`user:$7$…` lines).
    pub passwd: String,
    /// The ACL file.
    pub acl: String,
    /// The `mosquitto.conf` lines (listener, files, limits).
    pub conf: String,
}

/// One listener of the generated `mosquitto.conf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MosquittoListener {
    /// Address, e.g. `0.0.0.0`.
    pub host: String,
    /// Port, e.g. 8883.
    pub port: u16,
    /// TLS 1.3 with this certificate and key (PEM files); `None`: plaintext.
    pub tls: Option<TlsFiles>,
}

/// Where a listener's certificate and key are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate (PEM), as `kairan tls cert` writes it.
    pub cert: String,
    /// The private key (PKCS#8 PEM, readable by Mosquitto only).
    pub key: String,
}

/// The settings of the generated `mosquitto.conf`.
#[derive(Debug, Clone)]
pub struct BrokerSettings<'a> {
    /// The listeners: with TLS, one per node (each presents its node's certificate).
    pub listeners: &'a [MosquittoListener],
    /// Where the password file will be.
    pub passwd_path: &'a str,
    /// Where the ACL file will be.
    pub acl_path: &'a str,
    /// Keep the database on disk.
    pub persistence: Option<&'a str>,
}

/// The files for `nodes` sharing one broker. A member of two nodes (a relay whose parent and
/// children share the broker) gets the grants of both.
pub fn generate(nodes: &[NodeOnBroker<'_>], settings: &BrokerSettings<'_>) -> Result<MosquittoFiles, String> {
    let on_broker = nodes.iter().map(|n| (n.id, n.national, n.members, n.own_clients.to_string()));
    let users = broker_users(on_broker, "", |_, _, member| Ok(member.password.to_string()))?;
    let mut passwd = String::new();
    let mut acl = String::from(
        "# Written by `kairan broker mosquitto-config` from the members files: every client reads\n\
         # and writes only what kairan's permission table grants it. Do not edit by hand.\n",
    );
    for BrokerUser { name: username, hash, grants } in &users {
        let _ = writeln!(passwd, "{username}:{hash}");
        let _ = writeln!(acl, "\nuser {username}");
        for filter in &grants.read {
            let _ = writeln!(acl, "topic read {filter}");
        }
        for filter in &grants.write {
            let _ = writeln!(acl, "topic write {filter}");
        }
    }
    let mut conf = String::from(
        "# kairan: Mosquitto as a node's broker. Written by `kairan broker mosquitto-config`.\n\
         per_listener_settings false\n",
    );
    for listener in settings.listeners {
        let _ = writeln!(conf, "listener {} {}", listener.port, listener.host);
        match &listener.tls {
            Some(files) => {
                let _ = write!(
                    conf,
                    "# TLS 1.3 only; the certificate is the node's relay key (`kairan tls cert`).\n\
                     certfile {}\nkeyfile {}\ntls_version tlsv1.3\n",
                    files.cert, files.key
                );
            }
            None => conf.push_str("# PLAINTEXT: passwords and advisories cross this listener in clear.\n"),
        }
    }
    let _ = write!(
        conf,
        "allow_anonymous false\n\
         password_file {}\n\
         acl_file {}\n\
         # A client's id is its username: no member can take over another's session.\n\
         use_username_as_clientid true\n\
         # A delivery with a full certificate chain, plus the topic and header.\n\
         max_packet_size {}\n\
         max_inflight_messages 100\n\
         max_queued_messages 1000\n",
        settings.passwd_path,
        settings.acl_path,
        crate::machine::MAX_PACKET_BYTES,
    );
    match settings.persistence {
        Some(dir) => {
            let _ = write!(conf, "persistence true\npersistence_location {dir}\n");
        }
        None => conf.push_str("persistence false\n"),
    }
    Ok(MosquittoFiles { passwd, acl, conf })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::{MemberKind, Principal};
    use kairan_protocol::Scope;

    #[test]
    fn every_member_gets_exactly_its_grants() {
        let mut members = Members::default();
        let clinic = Principal::Member {
            id: "c1".into(),
            kind: MemberKind::Clinic,
            scope: Some(Scope::parse("jp/13/chuo").expect("scope")),
        };
        members.insert(clinic, "c1", PasswordHash::new("pw-1"));
        let own = PasswordHash::new("own");
        let node = NodeOnBroker { id: "jp-13-chuo", national: false, members: &members, own_clients: &own };
        let listeners = [MosquittoListener {
            host: "127.0.0.1".into(),
            port: 8883,
            tls: Some(TlsFiles { cert: "/c.pem".into(), key: "/k.pem".into() }),
        }];
        let settings =
            BrokerSettings { listeners: &listeners, passwd_path: "/p", acl_path: "/a", persistence: None };
        let files = generate(&[node], &settings).expect("generated");
        assert_eq!(files.passwd.lines().count(), 3, "the clinic, the node's publisher and directory client");
        assert!(files.acl.contains("user c1\ntopic read kairan/v1/jp-13-chuo/deliveries/jp\n"));
        assert!(files.acl.contains("topic write kairan/v1/jp-13-chuo/sync/c1/req"));
        assert!(!files.acl.contains("user c1\ntopic read kairan/v1/jp-13-chuo/deliveries/#"));
        assert!(files.acl.contains("user jp-13-chuo~out\ntopic read kairan/v1/jp-13-chuo/sync/+/req"));
        assert!(files.conf.contains("use_username_as_clientid true"));
        assert!(files.conf.contains("allow_anonymous false"));
        assert!(files.conf.contains("listener 8883 127.0.0.1\n"));
        assert!(files.conf.contains("certfile /c.pem\nkeyfile /k.pem\ntls_version tlsv1.3\n"));
    }
}
