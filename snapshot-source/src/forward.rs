//! The base of wrappers around a snapshot source (test doubles, decorators): every call
//! forwards to the wrapped source, except the calls a wrapper overrides.

use async_trait::async_trait;

use crate::{
    Capabilities, DatasetName, Protection, ReceiveOptions, ReceiveStream, Result, SendRequest,
    SendStream, SnapshotInfo, SnapshotName, SnapshotSource, SourceKind,
};

/// A [`SnapshotSource`] that wraps another: every method forwards to
/// [`inner`](Self::inner) unless the implementation overrides it. Implementing
/// `ForwardingSource` implements `SnapshotSource`.
///
/// ```
/// use zib_snapshot_source::zfs::ZfsSource;
/// use zib_snapshot_source::{ForwardingSource, Result, SendRequest, SnapshotSource};
///
/// /// Real ZFS that claims to know no send sizes (as zfs-fuse cannot estimate them).
/// struct NoEstimates(ZfsSource);
///
/// #[async_trait::async_trait]
/// impl ForwardingSource for NoEstimates {
///     fn inner(&self) -> &dyn SnapshotSource {
///         &self.0
///     }
///
///     async fn estimate_send_size(&self, _request: &SendRequest) -> Result<Option<u64>> {
///         Ok(None)
///     }
/// }
///
/// let source: Box<dyn SnapshotSource> = Box::new(NoEstimates(ZfsSource::new()));
/// # let _ = source;
/// ```
#[async_trait]
pub trait ForwardingSource: Send + Sync {
    /// The wrapped source, which receives every call not overridden.
    fn inner(&self) -> &dyn SnapshotSource;

    /// See [`SnapshotSource::kind`].
    fn kind(&self) -> SourceKind {
        self.inner().kind()
    }
    /// See [`SnapshotSource::capabilities`].
    async fn capabilities(&self, dataset: &DatasetName) -> Result<Capabilities> {
        self.inner().capabilities(dataset).await
    }
    /// See [`SnapshotSource::list_snapshots`].
    async fn list_snapshots(&self, dataset: &DatasetName) -> Result<Vec<SnapshotInfo>> {
        self.inner().list_snapshots(dataset).await
    }
    /// See [`SnapshotSource::list_bookmarks`].
    async fn list_bookmarks(&self, dataset: &DatasetName) -> Result<Vec<SnapshotInfo>> {
        self.inner().list_bookmarks(dataset).await
    }
    /// See [`SnapshotSource::create_snapshot`].
    async fn create_snapshot(
        &self,
        dataset: &DatasetName,
        snapshot: &SnapshotName,
        marker: Option<&str>,
    ) -> Result<SnapshotInfo> {
        self.inner()
            .create_snapshot(dataset, snapshot, marker)
            .await
    }
    /// See [`SnapshotSource::destroy_snapshot`].
    async fn destroy_snapshot(&self, dataset: &DatasetName, snapshot: &SnapshotName) -> Result<()> {
        self.inner().destroy_snapshot(dataset, snapshot).await
    }
    /// See [`SnapshotSource::estimate_send_size`].
    async fn estimate_send_size(&self, request: &SendRequest) -> Result<Option<u64>> {
        self.inner().estimate_send_size(request).await
    }
    /// See [`SnapshotSource::send`].
    async fn send(&self, request: &SendRequest) -> Result<SendStream> {
        self.inner().send(request).await
    }
    /// See [`SnapshotSource::receive`].
    async fn receive(
        &self,
        target: &DatasetName,
        stream: ReceiveStream,
        options: &ReceiveOptions,
    ) -> Result<SnapshotInfo> {
        self.inner().receive(target, stream, options).await
    }
    /// See [`SnapshotSource::discard_target`].
    async fn discard_target(&self, target: &DatasetName) -> Result<()> {
        self.inner().discard_target(target).await
    }
    /// See [`SnapshotSource::protect`].
    async fn protect(&self, dataset: &DatasetName, snapshot: &SnapshotName) -> Result<Protection> {
        self.inner().protect(dataset, snapshot).await
    }
    /// See [`SnapshotSource::release`].
    async fn release(&self, protection: &Protection) -> Result<()> {
        self.inner().release(protection).await
    }
}

#[async_trait]
impl<T: ForwardingSource> SnapshotSource for T {
    fn kind(&self) -> SourceKind {
        ForwardingSource::kind(self)
    }
    async fn capabilities(&self, dataset: &DatasetName) -> Result<Capabilities> {
        ForwardingSource::capabilities(self, dataset).await
    }
    async fn list_snapshots(&self, dataset: &DatasetName) -> Result<Vec<SnapshotInfo>> {
        ForwardingSource::list_snapshots(self, dataset).await
    }
    async fn list_bookmarks(&self, dataset: &DatasetName) -> Result<Vec<SnapshotInfo>> {
        ForwardingSource::list_bookmarks(self, dataset).await
    }
    async fn create_snapshot(
        &self,
        dataset: &DatasetName,
        snapshot: &SnapshotName,
        marker: Option<&str>,
    ) -> Result<SnapshotInfo> {
        ForwardingSource::create_snapshot(self, dataset, snapshot, marker).await
    }
    async fn destroy_snapshot(&self, dataset: &DatasetName, snapshot: &SnapshotName) -> Result<()> {
        ForwardingSource::destroy_snapshot(self, dataset, snapshot).await
    }
    async fn estimate_send_size(&self, request: &SendRequest) -> Result<Option<u64>> {
        ForwardingSource::estimate_send_size(self, request).await
    }
    async fn send(&self, request: &SendRequest) -> Result<SendStream> {
        ForwardingSource::send(self, request).await
    }
    async fn receive(
        &self,
        target: &DatasetName,
        stream: ReceiveStream,
        options: &ReceiveOptions,
    ) -> Result<SnapshotInfo> {
        ForwardingSource::receive(self, target, stream, options).await
    }
    async fn discard_target(&self, target: &DatasetName) -> Result<()> {
        ForwardingSource::discard_target(self, target).await
    }
    async fn protect(&self, dataset: &DatasetName, snapshot: &SnapshotName) -> Result<Protection> {
        ForwardingSource::protect(self, dataset, snapshot).await
    }
    async fn release(&self, protection: &Protection) -> Result<()> {
        ForwardingSource::release(self, protection).await
    }
}
