//! The bucket check: one listing of the repository root, a HEAD per manifest and per
//! archived keyring copy, one GET of the (Standard-class) keyring — and every object
//! accounted for.
//!
//! Whatever the listing shows is sorted by role (`format::layout`); each role is
//! checked against what the format says it must be; the chains are followed from the
//! manifests; each damage is then traced to the restore points whose chains pass
//! through the backup it damages.

use std::collections::{BTreeMap, BTreeSet};

use futures::StreamExt;
use md5::{Digest, Md5};
use zib_crypto::{open_record, seal_record, Keyring, RecordContext, KEYRING_LEN};
use zib_planner::PriceTable;
use zib_storage_backend::counting::Counting;
use zib_storage_backend::{
    ByteRange, Error as StorageError, ListEntry, ObjectKey, ObjectMeta, Operation, StorageBackend,
    StorageBackendExt,
};

use super::report::{Problem, ProblemKind, RestorePoint, Severity, VerifyCost, VerifyReport};
use super::VerifyOptions;
use crate::access::check_listing;
use crate::catalog::open_manifest;
use crate::context::Repo;
use crate::error::Result;
use crate::format::layout::ObjectRole;
use crate::format::metadata::{
    Metadata, ObjectKind, FORMAT_NAME, FORMAT_VALUE, KIND_NAME, RECORD_NAME, REPOSITORY_NAME,
};
use crate::format::records::{BackupKind, ManifestRecord};
use crate::ids::{BackupId, DatasetId};
use crate::progress::Progress;
use crate::restore::system_time;

/// HEADs in flight at once (as the catalog: latency hidden, no throttling).
const HEADS_IN_FLIGHT: usize = 16;

/// Keys S3 returns per listing page (ListObjectsV2, ListMultipartUploads): the number of
/// billed LIST requests follows from it.
const KEYS_PER_PAGE: u64 = 1_000;

/// A backup: its dataset and id.
type BackupRef = (DatasetId, BackupId);

/// What the listing holds, sorted by role.
#[derive(Default)]
struct Listing {
    objects: u64,
    readme: Option<ListEntry>,
    keyring: Option<ListEntry>,
    keyring_copies: Vec<(i64, ListEntry)>,
    manifests: Vec<(BackupRef, ListEntry)>,
    volumes: BTreeMap<BackupRef, BTreeMap<u32, ListEntry>>,
    probes: Vec<ListEntry>,
    /// Plaintext (non-archived) decoder kit files, of any zib.
    kit: Vec<ListEntry>,
    unknown: Vec<ListEntry>,
}

/// A problem before the restore points it breaks are known: `damages` names the backup
/// whose restore it prevents.
struct Finding {
    severity: Severity,
    kind: ProblemKind,
    key: Option<ObjectKey>,
    damages: Option<BackupRef>,
    action: String,
}

/// The verify in progress.
struct Scan<'a> {
    repository: &'a Repo,
    /// The repository's backend behind a counter: the report says what the verify cost.
    backend: Counting<std::sync::Arc<dyn StorageBackend>>,
    options: &'a VerifyOptions<'a>,
    findings: Vec<Finding>,
    unchecked: Vec<String>,
    list_requests: u64,
}

/// Verifies the repository (see [`crate::Repository::verify`]).
pub(crate) async fn verify(
    repository: &Repo,
    options: &VerifyOptions<'_>,
    progress: &dyn Progress,
) -> Result<VerifyReport> {
    let mut scan = Scan {
        repository,
        backend: Counting::new(repository.backend().clone()),
        options,
        findings: Vec::new(),
        unchecked: Vec::new(),
        list_requests: 0,
    };
    progress.phase("listing the repository");
    let mut listing = scan.list().await?;
    progress.phase("checking the keyring");
    let live_keyring_etag = scan.check_keyring(&listing).await?;
    scan.check_keyring_copies(&listing, live_keyring_etag.as_deref())
        .await?;
    scan.check_readme(&listing);
    progress.phase(&format!("reading {} manifest(s)", listing.manifests.len()));
    let manifests = scan.open_manifests(&listing).await?;
    progress.phase("checking volumes and chains");
    let (volumes, stored_bytes) = scan.check_volumes(&manifests, &mut listing.volumes);
    scan.check_chains(&manifests.readable);
    scan.account_for_the_rest(&listing, &manifests).await?;

    let now = repository.clock().now();
    let paths = chain_paths(&manifests.readable);
    let mut problems: Vec<Problem> = scan
        .findings
        .drain(..)
        .map(|finding| {
            let breaks = finding.damages.map_or_else(Vec::new, |damaged| {
                restore_points_through(&paths, &manifests.readable, damaged)
            });
            Problem {
                severity: finding.severity,
                kind: finding.kind,
                key: finding.key,
                breaks,
                action: finding.action,
            }
        })
        .collect();
    problems.sort_by_key(|problem| std::cmp::Reverse(problem.severity));
    let damaged: BTreeSet<BackupRef> = problems
        .iter()
        .filter(|problem| problem.severity == Severity::Damage)
        .flat_map(|problem| &problem.breaks)
        .map(|point| (point.dataset, point.backup))
        .collect();
    let mut restore_points: Vec<RestorePoint> = paths
        .iter()
        .filter(|(backup, path)| path.reaches_full && !damaged.contains(backup))
        .filter_map(|(backup, path)| restore_point(&manifests.readable, *backup, path))
        .collect();
    restore_points.sort_by_key(|point| (point.committed_at, point.backup));
    let cost = scan.cost(&options.prices);
    Ok(VerifyReport {
        checked_at: now,
        objects: listing.objects,
        backups: manifests.readable.len(),
        volumes,
        stored_bytes,
        restore_points,
        problems,
        unchecked: scan.unchecked,
        cost,
    })
}

/// The manifests that opened, and the backups whose manifest exists but does not.
#[derive(Default)]
struct Manifests {
    readable: BTreeMap<BackupRef, ManifestRecord>,
    unreadable: BTreeSet<BackupRef>,
}

impl Scan<'_> {
    fn key(&self, role: &ObjectRole) -> Result<ObjectKey> {
        self.repository.key(role)
    }

    fn find(
        &mut self,
        severity: Severity,
        kind: ProblemKind,
        key: Option<ObjectKey>,
        damages: Option<BackupRef>,
        action: impl Into<String>,
    ) {
        self.findings.push(Finding {
            severity,
            kind,
            key,
            damages,
            action: action.into(),
        });
    }

    /// One listing of the whole repository root, sorted by role. The only step whose
    /// failure fails the verify: without it nothing can be checked.
    async fn list(&mut self) -> Result<Listing> {
        let prefix = self.repository.prefix();
        let entries = match self.backend.list_all(prefix).await {
            Ok(entries) => entries,
            Err(error @ StorageError::PermissionDenied { .. }) => {
                // Names s3:ListBucket, the permission this needs.
                check_listing(&self.backend, prefix).await?;
                return Err(error.into());
            }
            Err(error) => return Err(error.into()),
        };
        self.list_requests += pages(entries.len());
        let mut listing = Listing {
            objects: entries.len() as u64,
            ..Listing::default()
        };
        for entry in entries {
            let role = entry
                .key
                .as_str()
                .strip_prefix(prefix)
                .and_then(ObjectRole::parse);
            match role {
                Some(ObjectRole::Readme) => listing.readme = Some(entry),
                Some(ObjectRole::Keyring) => listing.keyring = Some(entry),
                Some(ObjectRole::KeyringArchive { written_at }) => {
                    listing.keyring_copies.push((written_at, entry));
                }
                Some(ObjectRole::Manifest { dataset, backup }) => {
                    listing.manifests.push(((dataset, backup), entry));
                }
                Some(ObjectRole::Volume {
                    dataset,
                    backup,
                    index,
                }) => {
                    listing
                        .volumes
                        .entry((dataset, backup))
                        .or_default()
                        .insert(index, entry);
                }
                Some(ObjectRole::AccessProbe { .. }) => listing.probes.push(entry),
                Some(ObjectRole::Kit { archived, .. }) => {
                    if !archived && !entry.storage_class.is_archive() {
                        listing.kit.push(entry);
                    }
                }
                None => listing.unknown.push(entry),
            }
        }
        Ok(listing)
    }

    /// The live keyring: present, readable without a thaw, its metadata what `open`
    /// relies on, its bytes a keyring of this repository's data key (and, with the
    /// passphrase, one that opens to it). Returns its ETag when that is the MD5 of its
    /// bytes, so archived copies can be compared with it without reading them.
    async fn check_keyring(&mut self, listing: &Listing) -> Result<Option<String>> {
        let key = self.key(&ObjectRole::Keyring)?;
        let damaged = |reason: String| ProblemKind::KeyringDamaged { reason };
        let restore_it = "Nothing can be restored without a working keyring: put back your \
                          offline copy of it (the file you exported at init or at the last \
                          passphrase change), or a thawed archived copy (keyring-archive/), \
                          at this key";
        let Some(entry) = &listing.keyring else {
            self.find(
                Severity::Damage,
                ProblemKind::KeyringMissing,
                Some(key),
                None,
                restore_it,
            );
            return Ok(None);
        };
        if entry.storage_class.is_archive() {
            self.find(
                Severity::Damage,
                damaged(format!(
                    "it is in archive class {}, so it cannot be read without a thaw",
                    entry.storage_class.as_str()
                )),
                Some(key),
                None,
                "Request its restore and copy it over itself in class STANDARD (or put back \
                 your offline copy); a lifecycle rule that moved it must exclude it",
            );
            return Ok(None);
        }
        let Some(head) = self.head(&key).await? else {
            self.find(
                Severity::Damage,
                ProblemKind::KeyringMissing,
                Some(key),
                None,
                restore_it,
            );
            return Ok(None);
        };
        if let Err(reason) = plain_metadata_matches(&head.metadata, ObjectKind::Keyring, self) {
            self.find(
                Severity::Damage,
                damaged(reason),
                Some(key.clone()),
                None,
                format!(
                    "Opening the repository reads its id from this metadata: {restore_it} \
                     (with its metadata zib-format=1, zib-kind=keyring, zib-repository={})",
                    self.repository.id()
                ),
            );
        }
        let bytes = match self.backend.get_bytes(&key, ByteRange::full()).await {
            Ok(bytes) => bytes,
            Err(StorageError::NotFound { .. }) => {
                self.find(
                    Severity::Damage,
                    ProblemKind::KeyringMissing,
                    Some(key),
                    None,
                    restore_it,
                );
                return Ok(None);
            }
            Err(error) => return Err(error.into()),
        };
        let md5_etag = format!("\"{}\"", hex::encode(Md5::digest(&bytes)));
        match self.keyring_opens(&bytes) {
            Ok(()) => {}
            Err(reason) => self.find(
                Severity::Damage,
                damaged(reason),
                Some(key),
                None,
                restore_it,
            ),
        }
        if head.etag.as_str() == md5_etag {
            Ok(Some(md5_etag))
        } else {
            self.unchecked.push(
                "the archived keyring copies could not be compared with the live keyring: \
                 this bucket's ETags are not MD5 digests of the contents (SSE-KMS?), and \
                 reading an archived copy needs a thaw"
                    .into(),
            );
            Ok(None)
        }
    }

    /// Why the keyring bytes do not serve this repository, if they do not.
    fn keyring_opens(&self, bytes: &[u8]) -> std::result::Result<(), String> {
        let keyring = Keyring::from_bytes(bytes).map_err(|error| error.to_string())?;
        let ours = self.repository.data_key().id();
        if keyring.key_id() != ours {
            return Err(format!(
                "it wraps data key {:?}, not this repository's {ours:?} (the keyring of \
                 another repository?)",
                keyring.key_id()
            ));
        }
        let Some(passphrase) = self.options.passphrase else {
            return Ok(());
        };
        let unlocked = keyring
            .unlock(passphrase)
            .map_err(|_| "the passphrase given does not open it".to_owned())?;
        // Same id, same key? A record sealed under one opens under the other only then.
        let context = RecordContext {
            record_type: "verify-probe",
            repository_id: *self.repository.id().as_bytes(),
            object_key: "keyring",
        };
        let probe = seal_record(&unlocked, &context, b"the same data key")
            .map_err(|error| error.to_string())?;
        match open_record(self.repository.data_key(), &context, &probe) {
            Ok(_) => Ok(()),
            Err(_) => Err(
                "it opens to another data key than the one this repository was opened with \
                 (replaced by a keyring with a forged key id?)"
                    .to_owned(),
            ),
        }
    }

    /// The archived keyring copies: at least one; each in the archive class, a keyring's
    /// size, with a keyring's metadata; the newest identical to the live keyring (by
    /// ETag, when ETags are MD5 digests). Older copies hold earlier passphrases'
    /// keyrings: only a thaw could check them.
    async fn check_keyring_copies(
        &mut self,
        listing: &Listing,
        live_etag: Option<&str>,
    ) -> Result<()> {
        let archive_class = self.repository.archive_class().clone();
        if listing.keyring_copies.is_empty() {
            let key = self.key(&ObjectRole::KeyringArchive { written_at: 0 })?;
            let prefix = key
                .as_str()
                .rsplit_once('/')
                .map_or(key.as_str(), |(dir, _)| dir);
            self.find(
                Severity::Warning,
                ProblemKind::KeyringArchiveMissing,
                None,
                None,
                format!(
                    "If the keyring object and your offline copy are both lost, nothing can \
                     be restored: change the passphrase (to the same one is fine) to write a \
                     new archived copy under {prefix}/, and keep an offline copy"
                ),
            );
            return Ok(());
        }
        let newest = listing
            .keyring_copies
            .iter()
            .map(|(written_at, _)| *written_at)
            .max();
        let mut older = 0;
        for (written_at, entry) in &listing.keyring_copies {
            let key = entry.key.clone();
            let is_newest = Some(*written_at) == newest;
            let redo = "Change the passphrase (to the same one is fine) to write a fresh \
                        archived copy, and keep your offline copy of the keyring";
            if entry.storage_class != archive_class {
                self.find(
                    Severity::Warning,
                    ProblemKind::StorageClass {
                        expected: archive_class.clone(),
                        found: entry.storage_class.clone(),
                    },
                    Some(key.clone()),
                    None,
                    "Archived keyring copies belong in the repository's archive class; a \
                     lifecycle rule may have moved it. It still serves as a copy",
                );
            }
            if entry.size != KEYRING_LEN as u64 {
                self.find(
                    Severity::Warning,
                    ProblemKind::KeyringArchiveDamaged {
                        reason: format!(
                            "it is {} bytes; a keyring is exactly {KEYRING_LEN}",
                            entry.size
                        ),
                    },
                    Some(key),
                    None,
                    redo,
                );
                continue;
            }
            let Some(head) = self.head(&key).await? else {
                continue;
            };
            if let Err(reason) = plain_metadata_matches(&head.metadata, ObjectKind::Keyring, self) {
                self.find(
                    Severity::Warning,
                    ProblemKind::KeyringArchiveDamaged { reason },
                    Some(key),
                    None,
                    redo,
                );
                continue;
            }
            let Some(live_etag) = live_etag else {
                continue;
            };
            if head.etag.as_str() == live_etag {
                continue;
            }
            if is_newest {
                self.find(
                    Severity::Warning,
                    ProblemKind::KeyringArchiveDamaged {
                        reason: "the newest archived copy differs from the live keyring".into(),
                    },
                    Some(key),
                    None,
                    "A passphrase change that did not finish leaves this (run it again to \
                     finish it); otherwise one of the two was altered. Keep your offline copy; \
                     changing the passphrase writes a fresh archived copy",
                );
            } else {
                older += 1;
            }
        }
        if older > 0 {
            self.unchecked.push(format!(
                "{older} archived keyring cop{} from earlier passphrases could not be checked \
                 (reading an archived copy needs a thaw; each opens with the passphrase of its \
                 time)",
                if older == 1 { "y" } else { "ies" }
            ));
        }
        Ok(())
    }

    /// The README: present, and readable without a thaw (it is for whoever finds the
    /// bucket).
    fn check_readme(&mut self, listing: &Listing) {
        let Ok(key) = self.key(&ObjectRole::Readme) else {
            return;
        };
        let action = "Restores do not need it, but it tells whoever finds the bucket (you, \
                      decades from now) what these objects are and where their format is \
                      specified: put its text back in class STANDARD";
        match &listing.readme {
            None => self.find(
                Severity::Warning,
                ProblemKind::ReadmeMissing {
                    reason: "is missing".into(),
                },
                Some(key),
                None,
                action,
            ),
            Some(entry) if entry.storage_class.is_archive() => self.find(
                Severity::Warning,
                ProblemKind::ReadmeMissing {
                    reason: format!(
                        "is in archive class {}: nobody can read it without a thaw",
                        entry.storage_class.as_str()
                    ),
                },
                Some(key),
                None,
                action,
            ),
            Some(_) => {}
        }
        if listing.kit.is_empty() {
            self.find(
                Severity::Warning,
                ProblemKind::KitMissing,
                None,
                None,
                "Restores with zib do not need it, but without it whoever holds only the \
                 bucket has nothing to decode it with: the next backup writes it (or run \
                 `zib key export` for an offline copy)",
            );
        }
    }

    /// One HEAD per manifest: its sealed metadata must open and decode, its class be the
    /// archive class, its body the same text as its record.
    async fn open_manifests(&mut self, listing: &Listing) -> Result<Manifests> {
        let backend = &self.backend;
        let mut heads = futures::stream::iter(&listing.manifests)
            .map(|(backup, entry)| async move { (backup, entry, backend.head(&entry.key).await) })
            .buffered(HEADS_IN_FLIGHT);
        let mut answers = Vec::with_capacity(listing.manifests.len());
        while let Some(answer) = heads.next().await {
            answers.push(answer);
        }
        drop(heads);
        let archive_class = self.repository.archive_class().clone();
        let mut manifests = Manifests::default();
        for (&(dataset, backup), entry, head) in answers {
            let head = match head {
                Ok(head) => head,
                // Gone between the listing and the HEAD (deleted meanwhile): as if never
                // listed; its volumes, if any are left, are orphans.
                Err(StorageError::NotFound { .. }) => continue,
                Err(error) => return Err(error.into()),
            };
            let role = ObjectRole::Manifest { dataset, backup };
            match open_manifest(self.repository, &entry.key, &role, &head.metadata) {
                Ok(manifest) => {
                    if entry.storage_class != archive_class {
                        self.find(
                            Severity::Warning,
                            ProblemKind::StorageClass {
                                expected: archive_class.clone(),
                                found: entry.storage_class.clone(),
                            },
                            Some(entry.key.clone()),
                            None,
                            "It restores all the same, but it is billed at that class's \
                             rates; a lifecycle rule may have moved it",
                        );
                    }
                    let record_len = head.metadata.get(RECORD_NAME).map_or(0, String::len);
                    if entry.size != record_len as u64 {
                        self.find(
                            Severity::Warning,
                            ProblemKind::ManifestInconsistent {
                                backup,
                                reason: format!(
                                    "its body is {} bytes, but its sealed record (which the \
                                     body repeats, for restoring by hand) is {record_len}",
                                    entry.size
                                ),
                            },
                            Some(entry.key.clone()),
                            None,
                            "zib restores from the metadata, which opens; restoring by hand \
                             with docs/FORMAT.md would need the metadata instead of the body",
                        );
                    }
                    manifests.readable.insert((dataset, backup), manifest);
                }
                Err(error) => {
                    manifests.unreadable.insert((dataset, backup));
                    self.find(
                        Severity::Damage,
                        ProblemKind::ManifestUnreadable {
                            dataset,
                            backup,
                            reason: error.to_string(),
                        },
                        Some(entry.key.clone()),
                        Some((dataset, backup)),
                        "The backup it committed cannot be restored (nor can the \
                         incrementals on top of it). If another zib wrote it, verify with \
                         that version; otherwise back the dataset up again (the next backup \
                         of it is a full when its base is gone)",
                    );
                }
            }
        }
        Ok(manifests)
    }

    /// Every volume of every readable manifest: listed, with the size the manifest
    /// implies, in the archive class. Returns the volumes checked and their bytes; what
    /// is left in `volumes` belongs to no readable manifest.
    fn check_volumes(
        &mut self,
        manifests: &Manifests,
        volumes: &mut BTreeMap<BackupRef, BTreeMap<u32, ListEntry>>,
    ) -> (u64, u64) {
        let archive_class = self.repository.archive_class().clone();
        let (mut checked, mut bytes) = (0u64, 0u64);
        for (&(dataset, backup), manifest) in &manifests.readable {
            let manifest_key = self.key(&ObjectRole::Manifest { dataset, backup }).ok();
            let listed = volumes.remove(&(dataset, backup)).unwrap_or_default();
            let sizes = match VolumeSizes::of(manifest) {
                Ok(sizes) => sizes,
                Err(reason) => {
                    self.find(
                        Severity::Damage,
                        ProblemKind::ManifestInconsistent { backup, reason },
                        manifest_key,
                        Some((dataset, backup)),
                        "A manifest that contradicts itself cannot be trusted to restore: \
                         back the dataset up again (a full), and report this to zib's \
                         authors with the zib version that wrote the backup",
                    );
                    continue;
                }
            };
            for index in 0..manifest.volume_count {
                let role = ObjectRole::Volume {
                    dataset,
                    backup,
                    index,
                };
                let expected = sizes.size(index);
                let Some(entry) = listed.get(&index) else {
                    let key = self.key(&role).ok();
                    self.find(
                        Severity::Damage,
                        ProblemKind::VolumeMissing {
                            backup,
                            index,
                            expected_size: expected,
                        },
                        key,
                        Some((dataset, backup)),
                        "The restore points listed cannot be restored from this repository. \
                         While the source still has the data, back it up again (the next \
                         backup of the dataset is a full when needed); find out who or what \
                         deleted it (a lifecycle rule, another tool, a clean-up elsewhere)",
                    );
                    continue;
                };
                checked += 1;
                bytes = bytes.saturating_add(entry.size);
                if entry.size != expected {
                    self.find(
                        Severity::Damage,
                        ProblemKind::VolumeSize {
                            backup,
                            index,
                            expected,
                            found: entry.size,
                        },
                        Some(entry.key.clone()),
                        Some((dataset, backup)),
                        "A volume of another size cannot decrypt to what the manifest binds: \
                         the restore points listed cannot be restored. While the source still \
                         has the data, back it up again; find out what rewrote the object",
                    );
                }
                if entry.storage_class != archive_class {
                    self.find(
                        Severity::Warning,
                        ProblemKind::StorageClass {
                            expected: archive_class.clone(),
                            found: entry.storage_class.clone(),
                        },
                        Some(entry.key.clone()),
                        None,
                        "It restores all the same, but it is billed at that class's rates; a \
                         lifecycle rule or a copy outside zib may have moved it",
                    );
                }
            }
            for (index, entry) in listed.range(manifest.volume_count..) {
                self.find(
                    Severity::Leftover,
                    ProblemKind::ExtraVolume {
                        backup,
                        index: *index,
                    },
                    Some(entry.key.clone()),
                    None,
                    "No restore reads it (the manifest lists fewer volumes); it is billed \
                     until deleted. Delete it by hand if nothing else explains it",
                );
            }
        }
        (checked, bytes)
    }

    /// Each incremental's base: a readable manifest of the same dataset, of the snapshot
    /// and file system kind the incremental was sent from.
    fn check_chains(&mut self, readable: &BTreeMap<BackupRef, ManifestRecord>) {
        for (&(dataset, backup), manifest) in readable {
            let BackupKind::Incremental {
                base_backup,
                base_identity,
                ..
            } = &manifest.kind
            else {
                continue;
            };
            let key = self.key(&ObjectRole::Manifest { dataset, backup }).ok();
            let Some(base) = readable.get(&(dataset, *base_backup)) else {
                // An unreadable base is reported as such; a base with no manifest at all
                // is a broken chain.
                if self.base_exists_unreadable(dataset, *base_backup) {
                    continue;
                }
                self.find(
                    Severity::Damage,
                    ProblemKind::BrokenChain {
                        backup,
                        missing_base: *base_backup,
                    },
                    key,
                    Some((dataset, backup)),
                    "Its chain does not reach a full backup: the restore points listed \
                     cannot be restored. While the source still has the data, back it up \
                     again (a full); find out what deleted the base's manifest",
                );
                continue;
            };
            let mismatch = if base.snapshot_identity != *base_identity {
                Some(format!(
                    "it was sent from snapshot {base_identity}, the base backup holds {}",
                    base.snapshot_identity
                ))
            } else if base.source != manifest.source {
                Some(format!(
                    "it is a {} stream, its base a {} one",
                    manifest.source, base.source
                ))
            } else {
                None
            };
            if let Some(reason) = mismatch {
                self.find(
                    Severity::Damage,
                    ProblemKind::ChainMismatch {
                        backup,
                        base: *base_backup,
                        reason,
                    },
                    key,
                    Some((dataset, backup)),
                    "A receive of it would fail: the restore points listed cannot be \
                     restored. Back the dataset up again (a full), and report this to zib's \
                     authors",
                );
            }
        }
    }

    fn base_exists_unreadable(&self, dataset: DatasetId, backup: BackupId) -> bool {
        self.findings.iter().any(|finding| {
            matches!(&finding.kind, ProblemKind::ManifestUnreadable { dataset: d, backup: b, .. }
                if *d == dataset && *b == backup)
        })
    }

    /// Everything no committed backup accounts for: volumes of no manifest, probes,
    /// objects zib did not write, incomplete multipart uploads.
    async fn account_for_the_rest(
        &mut self,
        listing: &Listing,
        manifests: &Manifests,
    ) -> Result<()> {
        for (&(dataset, backup), entries) in &listing.volumes {
            if manifests.readable.contains_key(&(dataset, backup)) {
                continue;
            }
            // The volumes of an unreadable manifest are that manifest's problem.
            if manifests.unreadable.contains(&(dataset, backup)) {
                continue;
            }
            for (index, entry) in entries {
                self.find(
                    Severity::Leftover,
                    ProblemKind::OrphanVolume {
                        dataset,
                        backup,
                        index: *index,
                        written: entry.last_modified,
                    },
                    Some(entry.key.clone()),
                    None,
                    "A backup that never committed, or one being uploaded right now (here or \
                     on another host). `zib cleanup` deletes it once its whole backup is \
                     older than 7 days",
                );
            }
        }
        for entry in &listing.probes {
            self.find(
                Severity::Leftover,
                ProblemKind::LeftoverProbe {
                    written: entry.last_modified,
                },
                Some(entry.key.clone()),
                None,
                "`zib cleanup` deletes it once older than 7 days",
            );
        }
        for entry in &listing.unknown {
            self.find(
                Severity::Leftover,
                ProblemKind::UnknownObject { size: entry.size },
                Some(entry.key.clone()),
                None,
                "zib never reads or deletes it, and it is billed; remove it if it does not \
                 belong here (or verify with the newer zib that wrote it)",
            );
        }
        let prefix = self.repository.prefix();
        let uploads = crate::catalog::uploads_if_listed(&self.backend, prefix).await?;
        self.list_requests += pages(uploads.len());
        for upload in uploads {
            let of_committed_backup = upload
                .key
                .as_str()
                .strip_prefix(prefix)
                .and_then(ObjectRole::parse)
                .is_some_and(|role| match role {
                    ObjectRole::Volume {
                        dataset, backup, ..
                    } => manifests.readable.contains_key(&(dataset, backup)),
                    _ => false,
                });
            self.find(
                Severity::Leftover,
                ProblemKind::IncompleteUpload {
                    upload_id: upload.upload_id,
                    initiated: upload.initiated,
                    of_committed_backup,
                },
                Some(upload.key),
                None,
                if of_committed_backup {
                    "Nothing will complete it and its parts are billed: `zib cleanup` aborts \
                     it"
                } else {
                    "Its parts are billed at S3 Standard rates: unless a backup is uploading \
                     it right now, `zib cleanup` aborts it (at once when this host's run \
                     died, after 7 days otherwise; the bucket's lifecycle rule too)"
                },
            );
        }
        Ok(())
    }

    /// HEAD of `key`, `None` when it is gone.
    async fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>> {
        match self.backend.head(key).await {
            Ok(head) => Ok(Some(head)),
            Err(StorageError::NotFound { .. }) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    fn cost(&self, prices: &PriceTable) -> VerifyCost {
        let head_requests = self.backend.count(Operation::Head);
        let get_requests = self.backend.count(Operation::Get);
        let usd = self.list_requests as f64 * prices.standard_put_per_1000 / 1000.0
            + (head_requests + get_requests) as f64 * prices.get_per_1000 / 1000.0;
        VerifyCost {
            list_requests: self.list_requests,
            head_requests,
            get_requests,
            bytes_downloaded: self.backend.bytes_read().get(),
            usd,
        }
    }
}

/// Billed requests for a listing of `entries` keys (an empty listing is one request).
fn pages(entries: usize) -> u64 {
    (entries as u64).div_ceil(KEYS_PER_PAGE).max(1)
}

/// Whether an object's plaintext metadata says what its key says it is: format v1, the
/// kind, this repository.
fn plain_metadata_matches(
    metadata: &Metadata,
    kind: ObjectKind,
    scan: &Scan<'_>,
) -> std::result::Result<(), String> {
    let wanted = [
        (FORMAT_NAME, FORMAT_VALUE.to_owned()),
        (KIND_NAME, kind.as_str().to_owned()),
        (REPOSITORY_NAME, scan.repository.id().to_string()),
    ];
    for (name, value) in wanted {
        match metadata.get(name) {
            Some(found) if *found == value => {}
            Some(found) => return Err(format!("its metadata {name} is {found:?}, not {value:?}")),
            None => return Err(format!("its metadata {name} is missing")),
        }
    }
    Ok(())
}

/// The object sizes a manifest implies for its volumes: every volume but the last
/// holds `volume_plaintext_len` plaintext bytes, the last the rest (docs/FORMAT.md,
/// "Manifest record"); each is stored as its header, segments and tags.
struct VolumeSizes {
    last_index: u32,
    full: u64,
    last: u64,
}

impl VolumeSizes {
    /// Checks that the manifest's counts and lengths agree; says why not.
    fn of(manifest: &ManifestRecord) -> std::result::Result<Self, String> {
        let count = manifest.volume_count;
        let per_volume = manifest.volume_plaintext_len;
        if count == 0 {
            return Err("it lists no volume (every backup has at least one)".into());
        }
        if per_volume == 0 {
            return Err("its volumes hold 0 plaintext bytes each".into());
        }
        let before_last = u64::from(count - 1)
            .checked_mul(per_volume)
            .ok_or("its volume count times the volume size overflows")?;
        let last = manifest
            .stream_len
            .checked_sub(before_last)
            .ok_or_else(|| {
                format!(
                    "a stream of {} bytes cannot fill {count} volumes of {per_volume} bytes",
                    manifest.stream_len
                )
            })?;
        if last > per_volume || (last == 0 && count > 1) {
            return Err(format!(
                "a stream of {} bytes does not make {count} volumes of {per_volume} bytes",
                manifest.stream_len
            ));
        }
        let full = stored_len(per_volume).ok_or("its volume size overflows")?;
        let last_stored = stored_len(last).ok_or("its last volume's size overflows")?;
        let total = u64::from(count - 1)
            .checked_mul(full)
            .and_then(|sum| sum.checked_add(last_stored));
        if total != Some(manifest.stored_len) {
            return Err(format!(
                "it records {} bytes stored, but its volumes add up to {}",
                manifest.stored_len,
                total.map_or_else(|| "more than 2^64".to_owned(), |total| total.to_string())
            ));
        }
        Ok(Self {
            last_index: count - 1,
            full,
            last: last_stored,
        })
    }

    fn size(&self, index: u32) -> u64 {
        if index == self.last_index {
            self.last
        } else {
            self.full
        }
    }
}

/// The stored size of a volume of `plaintext` bytes (`zib_crypto::ciphertext_len`,
/// checked: a manifest's lengths are not trusted to be small).
fn stored_len(plaintext: u64) -> Option<u64> {
    let tags = (plaintext / zib_crypto::SEGMENT_LEN + 1).checked_mul(zib_crypto::TAG_LEN)?;
    zib_crypto::HEADER_LEN
        .checked_add(plaintext)?
        .checked_add(tags)
}

/// The backups a restore point's chain passes through, from it down to a full (or to
/// the first base that is missing or unreadable, which is included).
struct ChainPath {
    backups: Vec<BackupRef>,
    reaches_full: bool,
}

/// Every readable backup's chain path.
fn chain_paths(readable: &BTreeMap<BackupRef, ManifestRecord>) -> BTreeMap<BackupRef, ChainPath> {
    readable
        .keys()
        .map(|&start| {
            let mut backups = vec![start];
            let mut reaches_full = false;
            let mut current = start;
            while let Some(manifest) = readable.get(&current) {
                match &manifest.kind {
                    BackupKind::Full => {
                        reaches_full = true;
                        break;
                    }
                    BackupKind::Incremental { base_backup, .. } => {
                        let base = (current.0, *base_backup);
                        if backups.contains(&base) {
                            // A loop never reaches a full.
                            break;
                        }
                        backups.push(base);
                        current = base;
                    }
                }
            }
            (
                start,
                ChainPath {
                    backups,
                    reaches_full,
                },
            )
        })
        .collect()
}

/// The restore points whose chain passes through `damaged`, oldest first.
fn restore_points_through(
    paths: &BTreeMap<BackupRef, ChainPath>,
    readable: &BTreeMap<BackupRef, ManifestRecord>,
    damaged: BackupRef,
) -> Vec<RestorePoint> {
    let mut points: Vec<RestorePoint> = paths
        .iter()
        .filter(|(_, path)| path.backups.contains(&damaged))
        .filter_map(|(backup, path)| restore_point(readable, *backup, path))
        .collect();
    points.sort_by_key(|point| (point.committed_at, point.backup));
    points
}

fn restore_point(
    readable: &BTreeMap<BackupRef, ManifestRecord>,
    backup: BackupRef,
    path: &ChainPath,
) -> Option<RestorePoint> {
    let manifest = readable.get(&backup)?;
    let chain_bytes = path
        .backups
        .iter()
        .filter_map(|link| readable.get(link))
        .fold(0u64, |sum, link| sum.saturating_add(link.stored_len));
    Some(RestorePoint {
        dataset: backup.0,
        dataset_name: manifest.dataset_name.clone(),
        backup: backup.1,
        snapshot_name: manifest.snapshot_name.clone(),
        committed_at: system_time(manifest.committed_at),
        chain_len: path.backups.len(),
        chain_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::records::SendFlagBits;
    use zib_snapshot_source::{SnapshotIdentity, SourceKind};

    fn manifest(stream_len: u64, count: u32, per_volume: u64, stored_len: u64) -> ManifestRecord {
        ManifestRecord {
            source: SourceKind::Zfs,
            kind: BackupKind::Full,
            snapshot_created_by_zib: true,
            send_flags: SendFlagBits(0),
            dataset_id: DatasetId::from_bytes([1; 16]),
            backup_id: BackupId::from_bytes([2; 16]),
            dataset_name: "tank/photos".into(),
            snapshot_name: "s".into(),
            snapshot_identity: SnapshotIdentity::ZfsGuid(1),
            snapshot_created_at: 0,
            committed_at: 0,
            stream_len,
            stream_sha256: [0; 32],
            stored_len,
            volume_count: count,
            volume_plaintext_len: per_volume,
            volume_list_sha256: [0; 32],
            snapshot_bytes: None,
            replaced_incremental: None,
        }
    }

    #[test]
    fn volume_sizes_follow_the_format() {
        let per_volume = 3 << 20;
        let full = zib_crypto::ciphertext_len(per_volume);
        let last = zib_crypto::ciphertext_len(1000);
        let stream = 2 * per_volume + 1000;
        let sizes = VolumeSizes::of(&manifest(stream, 3, per_volume, 2 * full + last)).unwrap();
        assert_eq!(
            (sizes.size(0), sizes.size(1), sizes.size(2)),
            (full, full, last)
        );
        // The empty stream: one volume of no plaintext.
        let empty = VolumeSizes::of(&manifest(0, 1, per_volume, zib_crypto::ciphertext_len(0)));
        assert_eq!(empty.unwrap().size(0), zib_crypto::ciphertext_len(0));
    }

    #[test]
    fn manifests_that_do_not_add_up_say_why() {
        let per_volume = 1 << 20;
        let full = zib_crypto::ciphertext_len(per_volume);
        for (stream, count, stored) in [
            (per_volume, 0, full),             // no volume
            (2 * per_volume + 1, 2, 2 * full), // too much stream
            (per_volume, 2, 2 * full),         // an empty second volume
            (per_volume, 1, full + 1),         // stored length off by one
            (u64::MAX, u32::MAX, u64::MAX),    // overflow, not a panic
        ] {
            let error = VolumeSizes::of(&manifest(stream, count, per_volume, stored));
            assert!(error.is_err(), "{stream} {count} {stored}");
        }
        assert!(stored_len(u64::MAX).is_none());
    }
}
