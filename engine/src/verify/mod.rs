//! Verify without thawing: is every committed backup still restorable, and is every
//! object in the repository accounted for — found out with LIST and HEAD requests (and
//! one GET of the small Standard-class keyring), never a GET of an archived object,
//! never a restore.
//!
//! [`Repository::verify`](crate::Repository::verify) checks (`scan.rs`):
//!
//! - the keyring: present, readable without a thaw, its metadata what opening the
//!   repository relies on, a well-formed keyring of this repository's data key (and,
//!   given the passphrase, one that opens to that key);
//! - its archived copies: at least one, each a keyring's size and metadata in the
//!   archive class, the newest identical to the live keyring (compared by ETag when the
//!   bucket's ETags are MD5 digests; older copies hold earlier passphrases' keyrings and
//!   only a thaw could open them — the report says so);
//! - every manifest's sealed metadata opens and decodes, and its counts and lengths add
//!   up;
//! - every volume each manifest implies is listed, with the exact object size the
//!   manifest's lengths imply (`docs/FORMAT.md`: header, segments, tags) and in the
//!   archive class;
//! - every incremental's base has a manifest of the snapshot it was sent from, so every
//!   chain reaches a full;
//! - nothing else is there unaccounted for: volumes of no manifest, volumes beyond a
//!   manifest's count, leftover access probes, objects zib did not write, incomplete
//!   multipart uploads.
//!
//! A damaged repository gives a report, never an early error: each [`Problem`] says
//! what is wrong, which object, which restore points it breaks and what to do. Only a
//! repository that cannot be listed at all (or a storage failure mid-way, which a second
//! run gets past) is an `Err`. The report counts the verify's own requests and prices
//! them.
//!
//! What a verify cannot see: whether an archived object's bytes are intact (that needs
//! a thaw and a download). The **restore drill** ([`drill`]) is that proof: a restore
//! point's chain restored for real, through the restore job, into a throwaway target —
//! started only when it fits in this month's free egress.

pub(crate) mod drill;
mod report;
mod scan;

use zib_crypto::Passphrase;
use zib_planner::PriceTable;

pub use drill::{smallest_chain, DrillReport, DrillRequest, DrillSkip, DrillStart, DrillState};
pub use report::{Problem, ProblemKind, RestorePoint, Severity, VerifyCost, VerifyReport};
pub(crate) use scan::verify;

/// How [`Repository::verify`](crate::Repository::verify) checks.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions<'a> {
    /// The passphrase, to prove the live keyring opens with it to this repository's
    /// data key (one scrypt derivation: about a second at the default cost). Without
    /// it, the keyring's checksum, layout and key id are checked.
    pub passphrase: Option<&'a Passphrase>,
    /// Prices for the report's figure of what the verify cost.
    pub prices: PriceTable,
}
