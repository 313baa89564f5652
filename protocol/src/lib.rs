//! # kairan-protocol
//!
//! The wire format of kairan and its verification: DSSE v1 envelopes signed with Ed25519,
//! advisories, certificates, revocations, hop attestations and deliveries. This crate does
//! no I/O and reads no clock: every verifier takes `now` as an argument, which is what lets
//! the relay core and the simulator run it deterministically.
//!
//! `docs/protocol.md` in the repository is the normative specification; this crate is its
//! reference implementation.
//!
//! ## Layout
//! - [`envelope`]: DSSE envelopes, PAE, signing, strict threshold verification, payload types.
//! - [`keys`]: public keys (weak keys refused on load), secret keys, key ids, digests.
//! - [`advisory`]: the advisory payload and its validation rules.
//! - [`scope`]: region paths (`jp/13/chuo`) and their nesting.
//! - [`cert`]: certificates, roles, and certificate-set verification up to the anchors.
//! - [`trust`]: trust anchors (k of n root keys), revocations of certificates and who may
//!   sign them, the trust bundle (each statement verified on its own), pruning and pieces.
//! - [`head`]: signed origin heads (latest seq and digest, short expiry) and their verifier.
//! - [`hop`]: hop attestations.
//! - [`delivery`]: the delivery message, [`delivery::verify_delivery`] and [`delivery::attest`].
//! - [`sequence`]: origin sequence rules (accept, duplicate, gap, backfill, fork).
//! - [`sync`]: catch-up request and response messages, their bounded parsers, and the
//!   parent's signed page statement ([`sync::sign_page`], [`sync::verify_page`]).
//! - [`acceptance`]: the national node's signed acceptance that an advisory is stored
//!   durably, and [`acceptance::verify_acceptance`] (what `kairan publish` waits for).
//! - [`sealed`]: sealed (end-to-end encrypted) TLP:AMBER+STRICT and TLP:RED advisories: the
//!   confidential fields, recipient keys, [`sealed::seal`] with HPKE (RFC 9180) per clinic or a
//!   group epoch key per scope, [`sealed::open_sealed`] on verified deliveries only, and the
//!   district's group-key messages ([`sealed::group`]).
//! - [`directory`]: the district's signed recipient directory (clinic ids and X25519 keys)
//!   and [`directory::verify_directory`]; the relay-signed, part-wise statement shape it
//!   shares with group-key messages.
//! - [`verified`]: [`Verified<T>`], constructed only by this crate's verifiers.
//! - [`limits`]: size and count limits, enforced before expensive work.
//! - [`time`]: [`Timestamp`], RFC 3339 on the wire.
//! - [`receipt`]: a clinic's signed receipt of an advisory (stored, opened), verified by its
//!   district with its own chain.
//! - [`coverage`]: a district's signed coverage statement per advisory (counts and the ids
//!   without a receipt), the district's [`coverage::Tally`] and the national
//!   [`coverage::CoverageTable`].
//! - [`note`]: C2SP signed notes (Ed25519), verifier keys, tlog checkpoints and timestamped
//!   cosignatures, [`note::open_checkpoint`].
//! - [`tlog`]: RFC 9162 Merkle tree hashing for transparency logs: [`tlog::Frontier`] (append,
//!   tree head), proof generation from stored subtree hashes, inclusion and consistency proof
//!   verification.
//! - [`error`]: the crate's one error enum, with stable reason codes.
//! - `fixtures` (feature `fixtures`): deterministic keys, a signed sample hierarchy, the RFC
//!   6962 reference leaves and a sample checkpoint, for tests, benches, fuzzing and demos —
//!   never production keys.
//!
//! ## Trust model
//! The only things trusted a priori are the anchors: root public keys and a threshold. The
//! root (k of n signatures) certifies origins and the national relay; each relay certifies
//! its children within its own scope. A delivery is accepted only if every certificate in it
//! chains to the anchors and is valid at `now`, the advisory is signed by a certified origin
//! within its scope, and every hop is signed by a certified relay on a scope-nested path with
//! increasing times. Key ids are hints for lookup, never trusted. Payloads are decoded only
//! after their signature verifies. There is no switch that turns verification off.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod acceptance;
pub mod advisory;
pub mod cert;
pub mod coverage;
pub mod delivery;
pub mod directory;
pub mod envelope;
pub mod error;
#[cfg(any(test, feature = "fixtures"))]
pub mod fixtures;
pub mod head;
pub mod hop;
pub mod keys;
pub mod limits;
pub mod note;
pub mod receipt;
pub mod scope;
pub mod sealed;
pub mod sequence;
pub mod sync;
pub mod time;
pub mod tlog;
pub mod trust;
pub mod verified;

pub use advisory::{Advisory, Kind, Localized, Severity, Status, Tlp};
pub use cert::{CertSet, Certificate, Role};
pub use delivery::{Delivery, HopInput, VerifyContext, attest, verify_delivery, verify_parsed};
pub use envelope::Envelope;
pub use error::{Error, Result};
pub use hop::Hop;
pub use keys::{Digest, KeyId, PublicKey, SecretKey};
pub use scope::Scope;
pub use time::Timestamp;
pub use trust::{Revocation, RevocationSet, TrustAnchors, TrustAnchorsFile, TrustBundle, TrustPiece};
pub use verified::Verified;
