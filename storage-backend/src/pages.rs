//! Turning page-by-page listing into one stream.

use std::future::Future;

use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};

use crate::{ListEntry, Result};

/// A listing stream that calls `fetch(cursor)` for each page as it is polled; `fetch`
/// returns the page and the cursor of the next page (`None` after the last).
pub(crate) fn paginate<'a, F, Fut>(fetch: F) -> BoxStream<'a, Result<ListEntry>>
where
    F: FnMut(Option<String>) -> Fut + Send + 'a,
    Fut: Future<Output = Result<(Vec<ListEntry>, Option<String>)>> + Send + 'a,
{
    // State: the fetch function and the next cursor; `None` state = finished.
    stream::try_unfold((fetch, Some(None)), |(mut fetch, cursor)| async move {
        let Some(cursor) = cursor else {
            return Ok(None);
        };
        let (page, next) = fetch(cursor).await?;
        let next_state = next.map(Some);
        Ok(Some((
            stream::iter(page.into_iter().map(Ok)),
            (fetch, next_state),
        )))
    })
    .try_flatten()
    .boxed()
}
