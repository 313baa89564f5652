//! Sealed advisories over a running tree (issue 8): a TLP:RED advisory sealed to two of a
//! district's clinics is opened, for display, by exactly those two with their recipient keys,
//! which verify its whole provenance; another clinic's inbox shows the notice saying it is not
//! a recipient; and its plaintext is nowhere else: in no store or copy on disk anywhere in the
//! tree, not in what a member with a leaked broker password can read (live and through
//! catch-up), not in a packet capture of every broker's traffic. Once with the embedded
//! brokers, once with Mosquitto at every level.
//!
//! The links are plaintext MQTT here so that the capture sees the messages themselves (with
//! TLS it sees nothing at all: `scripts/tls-capture.sh`); a clear advisory published beside
//! the sealed one is the control that each search finds what is there.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use kairan_node::authz::{Grants, MemberKind, Principal};
use kairan_node::harness::hierarchy::{Hierarchy, HierarchyBuilder, Level};
use kairan_node::inbox::listing::Inbox;
use kairan_node::inbox::{Recipient, SEALED_NOTICE_JA};
use kairan_node::topics;
use kairan_protocol::fixtures::sealed::recipient;
use kairan_protocol::sync::SyncRequest;
use kairan_protocol::{Localized, Tlp};
use kairan_tests::Mosquitto;
use kairan_tests::leaks::{LoopbackCapture, files_holding, holds};
use kairan_tests::member::{Member, Subscribed};

const SETTLE: Duration = Duration::from_secs(30);
const SECRET_JA: &str = "封緘試験：指定受信者だけが読める題名";
const SECRET_EN: &str = "Sealed trial title only its named recipients read";
const CLEAR_JA: &str = "平文対照：誰でも読める題名";
/// Clinics of the one district: 0 and 1 are the recipients, 2 is not, 3's password leaked.
const CLINICS: usize = 4;
const LEAKED: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_red_advisory_sealed_to_two_clinics_reaches_exactly_those_two_with_embedded_brokers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tree = builder(dir.path()).start().await.expect("tree starts");
    red_to_two_clinics(tree, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_red_advisory_sealed_to_two_clinics_reaches_exactly_those_two_with_mosquitto() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut builder = builder(dir.path());
    for level in [Level::National, Level::Prefecture, Level::District] {
        let Some(broker) = Mosquitto::prepare_if_available(false) else { return };
        builder = builder.external_broker(level, broker);
    }
    let tree = builder.start().await.expect("tree starts");
    red_to_two_clinics(tree, dir.path()).await;
}

fn builder(dir: &std::path::Path) -> HierarchyBuilder {
    HierarchyBuilder::new(dir)
        .insecure_plaintext(true)
        .prefectures(1)
        .districts_per_prefecture(1)
        .clinics_per_district(CLINICS)
}

/// Everything a member with clinic `index`'s leaked password can read on its district's broker:
/// it subscribes to every filter its row allows (its own client stopped, so that the broker
/// does not hand the session back and forth).
async fn leaked_member(tree: &mut Hierarchy, index: usize) -> (Member, String) {
    tree.stop_clinic(index).await.expect("clinic stops");
    let clinic = tree.clinics[index].config.clone();
    let credentials = tree.credentials_of(&clinic.id).expect("a member");
    let mut member =
        Member::connect_as(&clinic.addr, &credentials).await.expect("the leaked password connects");
    let principal = Principal::Member {
        id: clinic.id.clone(),
        kind: MemberKind::Clinic,
        scope: Some(clinic.scope.clone()),
    };
    for filter in Grants::of(&clinic.district, false, &principal).read {
        assert_eq!(member.subscribe(&filter).await, Subscribed::Granted, "{filter}");
    }
    (member, clinic.district)
}

/// The scenario, on a started tree of one district with [`CLINICS`] clinics.
async fn red_to_two_clinics(mut tree: Hierarchy, dir: &std::path::Path) {
    tree.wait_subscribed(SETTLE).await.expect("tree subscribed");
    let ids: Vec<String> = tree.clinics.iter().map(|clinic| clinic.config.id.clone()).collect();
    assert_eq!(ids.len(), CLINICS, "{ids:?}");
    let keys: Vec<_> = ids.iter().map(|id| Arc::new(recipient(id))).collect();
    let scope = tree.clinics[0].config.scope.to_string();
    let (mut leaked, district) = leaked_member(&mut tree, LEAKED).await;
    let ports: Vec<u16> = tree
        .relays
        .iter()
        .filter_map(|relay| relay.handle.as_ref()?.broker.as_ref().map(|b| b.port))
        .collect();
    assert_eq!(ports.len(), tree.relays.len(), "every relay runs a broker");
    let capture = LoopbackCapture::start(&ports);
    let now = tree.now();

    // A control in clear, to show that every search sees advisory text where it is.
    let mut clear = kairan_tests::advisory(&scope, "clear-control", now);
    clear.title = Localized::new("ja", CLEAR_JA).with("en", "Clear control");
    let (bytes, clear_digest) = tree.sign_next(clear);
    tree.publish_raw(bytes).await.expect("published");

    let mut red = kairan_tests::advisory(&scope, "sealed-red-1", now);
    red.tlp = Tlp::Red;
    red.handling = "指定された受信者限り / named recipients only".into();
    red.title = Localized::new("ja", SECRET_JA).with("en", SECRET_EN);
    let to = [(ids[0].as_str(), keys[0].public()), (ids[1].as_str(), keys[1].public())];
    let (bytes, red_digest) = tree.sign_next_sealed_to(red, &to);
    tree.publish_raw(bytes).await.expect("published");
    tree.wait_for_inboxes(|_| BTreeSet::from([clear_digest, red_digest]), SETTLE).await.expect("delivered");

    for (index, id) in ids.iter().enumerate().take(3) {
        let reader = Recipient { clinic: id.clone(), key: Some(Arc::clone(&keys[index])) };
        let data_dir = &tree.clinics[index].config.data_dir;
        // The readable copy may land just after the store's record that wait_for_inboxes sees.
        let deadline = std::time::Instant::now() + SETTLE;
        let inbox = loop {
            let inbox = Inbox::read_as(data_dir, &tree.anchors, &reader).expect("inbox");
            if inbox.get(&red_digest).is_some() || std::time::Instant::now() > deadline {
                break inbox;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let item = inbox.get(&red_digest).unwrap_or_else(|| {
            panic!(
                "the sealed advisory is in every inbox: {} items, refused {:?}",
                inbox.items.len(),
                inbox.refused
            )
        });
        assert_eq!(item.advisory.tlp, Tlp::Red);
        // Every clinic verifies the whole provenance: origin chain to the root, every hop.
        let relays_down: Vec<&str> = item.provenance.hops.iter().map(|hop| hop.relay.as_str()).collect();
        assert!(item.provenance.verified && relays_down.len() == 3, "{id}: {relays_down:?}");
        assert_eq!(relays_down.last().copied(), Some(district.as_str()), "{id}");
        assert!(!item.provenance.origin_chain.is_empty(), "{id}");
        if index < 2 {
            assert_eq!(item.provenance.title, SECRET_JA, "{id} opens it");
            assert_eq!((item.advisory.title.get("en"), item.unopened.as_deref()), (SECRET_EN, None), "{id}");
        } else {
            assert_eq!(item.provenance.title, SEALED_NOTICE_JA, "{id} sees the notice");
            let why = item.unopened.as_deref().expect("a reason");
            assert!(why.contains("受信者に含まれていません") && why.contains("not_a_recipient"), "{why}");
            assert!(item.advisory.title.is_blank(), "{id}");
        }
        // Without its key, even a recipient sees only the notice.
        let keyless = Recipient { clinic: id.clone(), key: None };
        let inbox = Inbox::read_as(data_dir, &tree.anchors, &keyless).expect("inbox");
        assert_eq!(inbox.get(&red_digest).expect("there").provenance.title, SEALED_NOTICE_JA);
    }

    // The leaked password: what arrived live, then the whole output log through catch-up.
    let request = SyncRequest {
        after: 0,
        scope: tree.clinics[LEAKED].config.scope.clone(),
        limit: 512,
        trust: None,
        tlog: None,
        prove: Vec::new(),
    };
    leaked.publish(&topics::sync_request(&district, &ids[LEAKED]), request.to_json(), false).await;
    let read: Vec<u8> = leaked
        .received(Duration::from_secs(2), SETTLE)
        .await
        .iter()
        .flat_map(|publish| publish.payload.to_vec())
        .collect();
    assert!(
        holds(&read, CLEAR_JA),
        "control: the leaked member reads the clear advisory ({} bytes)",
        read.len()
    );
    for needle in [SECRET_JA, SECRET_EN] {
        assert!(!holds(&read, needle), "the leaked member read {needle:?}");
    }
    leaked.leave().await;

    let relays: Vec<String> = tree.relays.iter().map(|relay| relay.config_parts.id.clone()).collect();
    tree.shutdown().await.expect("clean shutdown");
    if let Some(capture) = capture {
        let wire = capture.finish();
        assert!(
            holds(&wire, CLEAR_JA),
            "control: the capture ({} bytes) shows the clear advisory",
            wire.len()
        );
        for needle in [SECRET_JA, SECRET_EN] {
            assert!(!holds(&wire, needle), "{needle:?} crossed a broker's socket in clear");
        }
    }
    // The control proves the search reads every relay's store and every clinic's store and copy.
    let control = files_holding(dir, CLEAR_JA);
    let found_under = |part: &str| control.iter().any(|path| path.to_string_lossy().contains(part));
    for relay in &relays {
        assert!(found_under(&format!("/nodes/{relay}/")), "control not seen in {relay}'s store: {control:?}");
    }
    for id in ids.iter().take(3) {
        for part in [format!("/clinics/{id}/store/"), format!("/clinics/{id}/advisories/")] {
            assert!(found_under(&part), "control not seen under {part}: {control:?}");
        }
    }
    for needle in [SECRET_JA, SECRET_EN] {
        let leaked = files_holding(dir, needle);
        assert!(leaked.is_empty(), "plaintext {needle:?} found on disk in {leaked:?}");
    }
}
