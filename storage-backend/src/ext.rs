//! Conveniences built on the required methods, for every backend.

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::TryStreamExt;

use crate::{
    ByteRange, CompletePrecondition, CompletedPart, ETag, Error, ListEntry, ObjectKey, Result,
    StorageBackend, WriteOptions,
};

/// Helpers on top of [`StorageBackend`], implemented for every backend (including
/// `dyn StorageBackend`). They only call the trait's methods, so no implementation can
/// inherit a wrong behaviour from them.
#[async_trait]
pub trait StorageBackendExt: StorageBackend {
    /// Reads `range` of an object into memory.
    ///
    /// # Errors
    /// As [`StorageBackend::get`], plus any error while streaming.
    async fn get_bytes(&self, key: &ObjectKey, range: ByteRange) -> Result<Bytes> {
        let stream = self.get(key, range).await?;
        let buffer = stream
            .try_fold(BytesMut::new(), |mut buffer, chunk| async move {
                buffer.extend_from_slice(&chunk);
                Ok(buffer)
            })
            .await?;
        Ok(buffer.freeze())
    }

    /// Every object under `prefix`, following all pages.
    ///
    /// # Errors
    /// As [`StorageBackend::list`].
    async fn list_all(&self, prefix: &str) -> Result<Vec<ListEntry>> {
        self.list(prefix).try_collect().await
    }

    /// True when an object exists at `key`.
    ///
    /// # Errors
    /// As [`StorageBackend::head`], except that `NotFound` is `Ok(false)`.
    async fn exists(&self, key: &ObjectKey) -> Result<bool> {
        match self.head(key).await {
            Ok(_) => Ok(true),
            Err(Error::NotFound { .. }) => Ok(false),
            Err(other) => Err(other),
        }
    }

    /// Uploads `parts` as one multipart upload and completes it; aborts the upload if a
    /// part or the completion fails.
    ///
    /// # Errors
    /// The first failure of a part or of the completion (the abort's own failure is
    /// logged, not returned).
    async fn upload_multipart(
        &self,
        key: &ObjectKey,
        options: &WriteOptions,
        parts: Vec<Bytes>,
        precondition: CompletePrecondition,
    ) -> Result<ETag> {
        let upload = self.create_multipart(key, options).await?;
        let result = async {
            let mut completed = Vec::with_capacity(parts.len());
            for (index, data) in parts.into_iter().enumerate() {
                let number =
                    u32::try_from(index + 1).map_err(|_| Error::invalid("too many parts"))?;
                let part = self.upload_part(key, &upload, number, data).await?;
                completed.push(CompletedPart::from(&part));
            }
            self.complete_multipart(key, &upload, &completed, precondition)
                .await
        }
        .await;
        if result.is_err() {
            if let Err(abort) = self.abort_multipart(key, &upload).await {
                tracing::warn!(%key, upload = %upload, error = %abort, "could not abort a failed multipart upload");
            }
        }
        result
    }
}

impl<T: StorageBackend + ?Sized> StorageBackendExt for T {}
