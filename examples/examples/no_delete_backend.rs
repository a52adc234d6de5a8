//! A custom decorator in a few lines: a backend that refuses to delete, for a backup host
//! that must never be able to destroy what it wrote (ransomware on the host then cannot
//! either). It implements `Forwarding`, so every call it does not override goes to the
//! backend it wraps unchanged; it overrides the two that remove data.
//!
//! Run: `cargo run -p zib-examples --example no_delete_backend`; `cargo test -p
//! zib-examples --example no_delete_backend` runs it as a test.

#![allow(clippy::print_stdout)] // a demo talks to its user

use std::sync::Arc;

use zib_storage_backend::local_dir::LocalDirBackend;
use zib_storage_backend::{
    ByteRange, Error, Forwarding, ObjectKey, Operation, PutPrecondition, Result, StorageBackend,
    StorageBackendExt as _, StorageClass, SystemClock, UploadId, WriteOptions,
};

/// Refuses deletes and aborts (as an IAM policy without `s3:DeleteObject` and
/// `s3:AbortMultipartUpload` would); passes everything else through.
#[derive(Debug)]
struct NoDelete<B> {
    inner: B,
}

#[async_trait::async_trait]
impl<B: StorageBackend> Forwarding for NoDelete<B> {
    fn inner(&self) -> &dyn StorageBackend {
        &self.inner
    }

    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        Err(refused(Operation::Delete, key))
    }

    async fn abort_multipart(&self, key: &ObjectKey, _upload: &UploadId) -> Result<()> {
        Err(refused(Operation::AbortMultipart, key))
    }
}

fn refused(operation: Operation, key: &ObjectKey) -> Error {
    Error::PermissionDenied {
        operation,
        key: key.to_string(),
        source: None,
    }
}

/// Writes and reads through the decorator, and shows that a delete is refused and the
/// object is still there.
async fn demonstrate(dir: &std::path::Path) -> Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|error| Error::invalid(format!("{}: {error}", dir.display())))?;
    let local = LocalDirBackend::open(dir, Arc::new(SystemClock))?;
    // Used as zib uses any backend: through `dyn StorageBackend`.
    let backend: Arc<dyn StorageBackend> = Arc::new(NoDelete { inner: local });
    let key = ObjectKey::new("photos/2024/summer.jpg")?;
    let options = WriteOptions::new(StorageClass::Standard);
    let photo = bytes::Bytes::from_static(b"not really a photo");
    backend
        .put(&key, photo.clone(), &options, &PutPrecondition::IfAbsent)
        .await?;
    match backend.delete(&key).await {
        Err(refused @ Error::PermissionDenied { .. }) => println!("delete: {refused}"),
        other => panic!("a delete must be refused, got {other:?}"),
    }
    assert_eq!(backend.get_bytes(&key, ByteRange::full()).await?, photo);
    println!("{key} is still there: {} bytes", photo.len());
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("zib-no-delete-{}", std::process::id()));
    let result = demonstrate(&dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn a_delete_is_refused_and_the_object_stays() {
        let dir = tempfile::tempdir().unwrap();
        super::demonstrate(dir.path()).await.unwrap();
    }
}
