//! Trust anchors, revocation statements and the trust bundle.
//!
//! The anchors are the root public keys and a threshold `k` of `n`; they are configured into
//! every program and never travel over MQTT ([`anchors`]). A revocation names one certificate
//! by its digest and takes effect at `effective_at`: whatever was signed with that certificate
//! at or after that time is refused, what was signed before stays verifiable
//! ([`revocation`]). The root threshold may revoke any certificate; a relay only certificates
//! issued by itself or below it, while its own certificate is in force (`evaluate`). The
//! trust bundle carries revocations with the certificates they need and the anchor rotations;
//! each statement is verified on its own ([`bundle`]), and a verified bundle can be pruned and
//! cut into self-contained pieces ([`pieces`]).

pub mod anchors;
pub mod bundle;
mod evaluate;
pub mod pieces;
pub mod revocation;

pub use anchors::{AnchorRotation, RootKey, TrustAnchors, TrustAnchorsFile};
pub use bundle::{AcceptedRevocation, BundleFacts, Refusal, StatementKind, TrustBundle};
pub use pieces::TrustPiece;
pub use revocation::{Revocation, RevocationSet, RevokedCert};
