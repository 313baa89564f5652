//! Size and count limits, enforced before any expensive work.
//!
//! Every decoder checks the byte length of its input against these constants *before*
//! parsing JSON or verifying a signature, so a hostile peer cannot make a node spend
//! CPU or memory in proportion to an input it chose to make huge.

/// Largest serialized DSSE envelope (JSON bytes) accepted anywhere: 64 KiB.
pub const MAX_ENVELOPE_BYTES: usize = 64 * 1024;

/// Largest payload inside an envelope (decoded bytes). Base64 inflates by 4/3, and the
/// envelope also carries signatures, so this sits below [`MAX_ENVELOPE_BYTES`].
pub const MAX_PAYLOAD_BYTES: usize = 46 * 1024;

/// Largest serialized delivery (advisory + certs + hops) accepted: 256 KiB.
/// MQTT clients and brokers are configured with a packet limit above this.
pub const MAX_DELIVERY_BYTES: usize = 256 * 1024;

/// Most signatures one envelope may carry.
pub const MAX_SIGNATURES: usize = 8;

/// Most hop attestations in one delivery (national, prefecture, district, and room to spare).
pub const MAX_HOPS: usize = 8;

/// Most certificates carried in one delivery (trust bundles use [`MAX_BUNDLE_CERTS`]).
pub const MAX_CERTS: usize = 16;

/// Most certificates from the root down to any certificate, that one included
/// (root → national → prefecture → district → clinic is 4, with room for more levels).
pub const MAX_CHAIN_DEPTH: usize = 6;

/// Most revocation statements in one trust bundle on the wire, and most in force at a node
/// (accepted by one bundle verification). Root statements are evaluated first and are refused
/// for space only past this number; relay statements have the smaller limits below, so that
/// relays can never crowd out the root: with at most [`MAX_RELAY_REVOCATIONS`] relay
/// statements in force, at least 256 places always remain for root statements. Statements
/// are pruned once the certificate they revoke has been expired for
/// [`REVOCATION_GRACE_MS`], which is what keeps a long-lived deployment below these numbers.
pub const MAX_REVOCATIONS: usize = 1024;

/// Most relay-signed revocations in force (accepted by one bundle verification); past it a
/// relay statement is refused (`revocation_limit`) until pruning makes room.
pub const MAX_RELAY_REVOCATIONS: usize = 768;

/// Most revocations in force signed by one relay (one issuer id); past it that relay's further
/// statements are refused (`revocation_limit`). A hostile relay can therefore take at most
/// this many places, not the whole of [`MAX_RELAY_REVOCATIONS`].
pub const MAX_REVOCATIONS_PER_ISSUER: usize = 64;

/// How long a revocation is kept after the certificate it revokes has expired: 30 days.
///
/// An expired certificate is refused by every verifier whose clock is right, so its
/// revocation no longer changes any verdict and can be dropped (`pruned`). The margin keeps it
/// for verifiers whose clock lags (a clock wrong by weeks still sees the revocation), for audits
/// run "as of" a recent date (`kairan verify --at`), and for nodes that were offline when the
/// certificate expired and still hold deliveries checked against it. It costs little: a few
/// hundred bytes per revocation for one more month.
pub const REVOCATION_GRACE_MS: i64 = 30 * 24 * 3600 * 1000;

/// Most anchor rotations in one trust bundle (each needs up to 16 signature checks). Root keys
/// change every few years; this is room for decades.
pub const MAX_ROTATIONS: usize = 16;

/// Most certificates in one trust bundle.
pub const MAX_BUNDLE_CERTS: usize = 4096;

/// Most revocations a bundle handed to `TrustBundle::verify` may hold: a held bundle merged
/// with one incoming bundle (each within [`MAX_REVOCATIONS`]). More is refused as a whole.
pub const MAX_MERGED_REVOCATIONS: usize = 2 * MAX_REVOCATIONS;

/// Most certificates a bundle handed to `TrustBundle::verify` may hold (held plus incoming).
pub const MAX_MERGED_CERTS: usize = 2 * MAX_BUNDLE_CERTS;

/// Largest trust piece (`TrustBundle` JSON of one revocation with the certificates it needs,
/// and the anchor rotations): 128 KiB, half for the statement and its certificates
/// ([`MAX_STATEMENT_PIECE_BYTES`]), half for the rotations ([`MAX_ROTATIONS_PIECE_BYTES`]).
/// Far below the nodes' MQTT packet limit (272 KiB), so each piece is one retained message.
pub const MAX_PIECE_BYTES: usize = MAX_STATEMENT_PIECE_BYTES + MAX_ROTATIONS_PIECE_BYTES + 64;

/// Largest JSON of one revocation with the certificates it needs (`{"certs":[…],
/// "revocations":[…]}`); a statement whose piece would be larger is refused (`oversize_input`).
pub const MAX_STATEMENT_PIECE_BYTES: usize = 64 * 1024;

/// Largest JSON of the accepted anchor rotations (`{"certs":[],"revocations":[],
/// "rotations":[…]}`); a rotation that would make it larger is refused (`oversize_input`), and
/// every later one with it.
pub const MAX_ROTATIONS_PIECE_BYTES: usize = 64 * 1024;

/// Largest trust bundle (JSON bytes): 4 MiB.
pub const MAX_BUNDLE_BYTES: usize = 4 * 1024 * 1024;

/// Longest advisory title, in characters (per language).
pub const MAX_TITLE_CHARS: usize = 200;

/// Longest advisory summary, in characters (per language).
pub const MAX_SUMMARY_CHARS: usize = 2_000;

/// Longest advisory body, in characters (per language).
pub const MAX_BODY_CHARS: usize = 12_000;

/// Longest short text field (ids, handling note, contact, item text, link label), in characters.
pub const MAX_SHORT_TEXT_CHARS: usize = 1_000;

/// Most entries in each list field of an advisory (items, links, cves, categories, references).
pub const MAX_LIST_ENTRIES: usize = 64;

/// Most languages a localized text may carry.
pub const MAX_LANGUAGES: usize = 8;

/// Longest identifier (node ids, origin ids, certificate serials), in bytes.
pub const MAX_ID_BYTES: usize = 64;

/// Deepest scope path (`jp/13/chuo/...`), in segments.
pub const MAX_SCOPE_DEPTH: usize = 6;

/// Clock skew tolerated between two machines when comparing times they each wrote
/// (hop times against each other, and signed times against the verifier's `now`): 5 s.
pub const MAX_CLOCK_SKEW_MS: i64 = 5_000;

/// Largest signed note (checkpoint with its signatures and cosignatures) accepted: 128 KiB.
/// c2sp.org/signed-note asks verifiers to accept at least 16 signatures and warns that
/// post-quantum ones reach nearly 5 kB each: 16 of those fit, with room for the text.
pub const MAX_NOTE_BYTES: usize = 128 * 1024;

/// Most signature lines in one note (the cap of Go's `golang.org/x/mod/sumdb/note`).
pub const MAX_NOTE_SIGNATURES: usize = 100;

/// Longest note verifier key string accepted, in bytes (an Ed25519 one is name + 55 bytes).
pub const MAX_VERIFIER_KEY_BYTES: usize = 1024;

/// Most recipient slots in one sealed advisory. A clinic slot is about 170 bytes of JSON, so
/// 64 slots stay near 11 KiB, well inside [`MAX_PAYLOAD_BYTES`]; beyond that an origin seals
/// to a group (one slot for every clinic of a scope, `docs/protocol.md` §20–21).
pub const MAX_SEALED_RECIPIENTS: usize = 64;

/// Most entries in one part of a recipient directory or of a group-key message (worst case
/// about 300 bytes each with 64-byte ids, so a part stays inside [`MAX_PAYLOAD_BYTES`]).
pub const MAX_PART_ENTRIES: usize = 128;

/// Most parts of one recipient directory version or group-key epoch: 64 × 128 = 8,192
/// clinics per scope, four times the largest district.
pub const MAX_PARTS: u32 = 64;
