//! The rows of `storage-backend/docs/moto-fidelity.md` where moto 5.1.22 departs from
//! AWS, each measured here with raw HTTP requests to the server (no SDK, no zib code in
//! between), so the document is checked rather than assumed. The rows where moto is
//! faithful are checked by the storage conformance suite run against moto
//! (`storage_s3.rs`) and by the proxy tests (`storage_proxy_faults.rs`); the document
//! names the check of each row. When one of these tests fails, moto changed: correct
//! the document, then the test.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the failure report

use zib_test_utils::moto::MotoServer;

/// moto checks no signature, but a request without any `Authorization` header is
/// anonymous and meets the bucket's (private) ACL; every request here carries this one.
const AUTH: (&str, &str) = (
    "Authorization",
    "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/s3/aws4_request, \
     SignedHeaders=host, Signature=0000",
);

async fn send(
    moto: &MotoServer,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut all = vec![AUTH];
    all.extend_from_slice(headers);
    moto.request_with_headers(method, path, &all, body)
        .await
        .unwrap()
}

/// The value of header `name` (case-insensitive) in a raw response.
fn header(response: &str, name: &str) -> Option<String> {
    let head = response.split("\r\n\r\n").next()?;
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().to_owned())
    })
}

/// The text of the first `<tag>` element.
fn element(response: &str, tag: &str) -> Option<String> {
    let (_, rest) = response.split_once(&format!("<{tag}>"))?;
    let (value, _) = rest.split_once(&format!("</{tag}>"))?;
    Some(value.to_owned())
}

async fn create_upload(moto: &MotoServer, path: &str, headers: &[(&str, &str)]) -> String {
    let (status, text) = send(moto, "POST", &format!("{path}?uploads"), headers, "").await;
    assert_eq!(status, 200, "{text}");
    element(&text, "UploadId").unwrap()
}

fn complete_body(etag: &str) -> String {
    format!(
        "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>{etag}</ETag></Part>\
         </CompleteMultipartUpload>"
    )
}

fn is_html_500(status: u16, text: &str) -> bool {
    status == 500
        && header(text, "content-type").is_some_and(|t| t.starts_with("text/html"))
        && !text.contains("<Code>")
}

/// PutObject row: user metadata over S3's 2 KB limit is stored (AWS refuses it), and a
/// metadata name containing `_` is silently dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_keeps_metadata_over_two_kb_and_drops_names_with_underscores() {
    let Some(moto) = MotoServer::start().await else {
        return;
    };
    let bucket = moto.create_bucket().await;
    let big = "v".repeat(2100);
    let (status, text) = send(
        &moto,
        "PUT",
        &format!("/{bucket}/k"),
        &[
            ("x-amz-meta-big", &big),
            ("x-amz-meta-with_underscore", "1"),
            ("x-amz-meta-plain", "2"),
        ],
        "x",
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let (status, head) = send(&moto, "HEAD", &format!("/{bucket}/k"), &[], "").await;
    assert_eq!(status, 200, "{head}");
    assert_eq!(
        header(&head, "x-amz-meta-big").as_deref(),
        Some(big.as_str())
    );
    assert_eq!(header(&head, "x-amz-meta-plain").as_deref(), Some("2"));
    assert_eq!(header(&head, "x-amz-meta-with_underscore"), None, "{head}");
}

/// PutObject row: creates-if-absent of one key racing each other meet 200 or 412, never
/// 409 `ConditionalRequestConflict` (which AWS may answer while another write is in
/// flight) — and moto's check is not atomic: both racers sometimes get 200, so an
/// exclusive create cannot be proven on moto under concurrency (zib relies on it only
/// for a manifest, which one run holding the dataset's lock writes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_conditional_puts_meet_200_or_412_never_409() {
    let Some(moto) = MotoServer::start().await else {
        return;
    };
    let bucket = moto.create_bucket().await;
    let path = format!("/{bucket}/manifest");
    let mut both_won = 0;
    for round in 0..10 {
        let (a, b) = tokio::join!(
            send(&moto, "PUT", &path, &[("If-None-Match", "*")], "a"),
            send(&moto, "PUT", &path, &[("If-None-Match", "*")], "b"),
        );
        for (status, text) in [&a, &b] {
            assert!(*status == 200 || *status == 412, "round {round}: {text}");
        }
        assert!(a.0 == 200 || b.0 == 200, "round {round}: nobody won");
        if a.0 == 200 && b.0 == 200 {
            both_won += 1;
        }
        let (status, _) = send(&moto, "DELETE", &path, &[], "").await;
        assert_eq!(status, 204);
    }
    eprintln!("racing creates-if-absent: both answered 200 in {both_won} of 10 rounds");
}

/// UploadPart row: a part sent to an aborted upload is answered with an HTML 500
/// without an error code (AWS: 404 `NoSuchUpload`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_part_to_an_aborted_upload_is_an_html_500() {
    let Some(moto) = MotoServer::start().await else {
        return;
    };
    let bucket = moto.create_bucket().await;
    let path = format!("/{bucket}/volume");
    let upload = create_upload(&moto, &path, &[]).await;
    let (status, _) = send(
        &moto,
        "DELETE",
        &format!("{path}?uploadId={upload}"),
        &[],
        "",
    )
    .await;
    assert_eq!(status, 204);
    let (status, text) = send(
        &moto,
        "PUT",
        &format!("{path}?partNumber=1&uploadId={upload}"),
        &[],
        "x",
    )
    .await;
    assert!(is_html_500(status, &text), "{status}: {text}");
}

/// CompleteMultipartUpload row: an unknown upload is an HTML 500 (AWS: 404
/// `NoSuchUpload`); a completion sent again after it succeeded is answered 200 with the
/// object's ETag, also under `If-None-Match: *` (AWS: 404 `NoSuchUpload`, or 412).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_of_an_unknown_upload_is_500_and_a_repeated_complete_is_200() {
    let Some(moto) = MotoServer::start().await else {
        return;
    };
    let bucket = moto.create_bucket().await;
    let path = format!("/{bucket}/volume");
    let (status, text) = send(
        &moto,
        "POST",
        &format!("{path}?uploadId=no-such-upload"),
        &[],
        &complete_body("\"00\""),
    )
    .await;
    assert!(is_html_500(status, &text), "{status}: {text}");

    let upload = create_upload(&moto, &path, &[]).await;
    let (status, part) = send(
        &moto,
        "PUT",
        &format!("{path}?partNumber=1&uploadId={upload}"),
        &[],
        "hello",
    )
    .await;
    assert_eq!(status, 200, "{part}");
    let etag = header(&part, "etag").unwrap();
    let body = complete_body(&etag);
    let complete = format!("{path}?uploadId={upload}");
    let (status, first) = send(&moto, "POST", &complete, &[], &body).await;
    assert_eq!(status, 200, "{first}");
    let object_etag = element(&first, "ETag").unwrap();
    for headers in [&[][..], &[("If-None-Match", "*")][..]] {
        let (status, again) = send(&moto, "POST", &complete, headers, &body).await;
        assert_eq!(status, 200, "{headers:?}: {again}");
        assert_eq!(element(&again, "ETag").unwrap(), object_etag);
    }
}

/// ListMultipartUploads row: `Initiated` is always 2010-11-10T20:48:33 and
/// `StorageClass` always STANDARD, whatever the upload's class and start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listed_uploads_have_a_fixed_date_and_the_standard_class() {
    let Some(moto) = MotoServer::start().await else {
        return;
    };
    let bucket = moto.create_bucket().await;
    create_upload(
        &moto,
        &format!("/{bucket}/volume"),
        &[("x-amz-storage-class", "DEEP_ARCHIVE")],
    )
    .await;
    let (status, text) = send(&moto, "GET", &format!("/{bucket}?uploads"), &[], "").await;
    assert_eq!(status, 200, "{text}");
    assert!(
        element(&text, "Initiated")
            .unwrap()
            .starts_with("2010-11-10T20:48:33"),
        "{text}"
    );
    assert_eq!(element(&text, "StorageClass").as_deref(), Some("STANDARD"));
}

/// HeadObject row: `Last-Modified` is an HTTP date, to the second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_modified_has_one_second_precision() {
    let Some(moto) = MotoServer::start().await else {
        return;
    };
    let bucket = moto.create_bucket().await;
    send(&moto, "PUT", &format!("/{bucket}/k"), &[], "x").await;
    let (_, head) = send(&moto, "HEAD", &format!("/{bucket}/k"), &[], "").await;
    let modified = header(&head, "last-modified").unwrap();
    // "Sun, 06 Dec 2026 08:41:38 GMT": RFC 7231's IMF-fixdate, no fraction.
    assert_eq!(modified.len(), 29, "{modified}");
    assert!(modified.ends_with(" GMT"), "{modified}");
}

/// RestoreObject row: a restore completes at once (`ongoing-request="false"` on the
/// next HEAD), its expiry is the request time plus the days to the second (AWS rounds
/// to the next midnight UTC), and a second request while restored is 200 (never 409).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restores_are_instant_unrounded_and_never_409() {
    let Some(moto) = MotoServer::start().await else {
        return;
    };
    let bucket = moto.create_bucket().await;
    let path = format!("/{bucket}/volume");
    send(
        &moto,
        "PUT",
        &path,
        &[("x-amz-storage-class", "DEEP_ARCHIVE")],
        "data",
    )
    .await;
    let (status, text) = send(&moto, "GET", &path, &[], "").await;
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("InvalidObjectState"), "{text}");
    let request = "<RestoreRequest><Days>2</Days><GlacierJobParameters><Tier>Bulk</Tier>\
                   </GlacierJobParameters></RestoreRequest>";
    let (status, text) = send(&moto, "POST", &format!("{path}?restore"), &[], request).await;
    assert_eq!(status, 202, "{text}");
    let (_, head) = send(&moto, "HEAD", &path, &[], "").await;
    let restore = header(&head, "x-amz-restore").unwrap();
    assert!(restore.contains("ongoing-request=\"false\""), "{restore}");
    let (status, text) = send(&moto, "GET", &path, &[], "").await;
    assert_eq!(status, 200, "{text}");
    // Unrounded: the expiry's time of day is the request's (to within the test's own
    // seconds), not 00:00:00.
    let expiry = restore.split("expiry-date=\"").nth(1).unwrap();
    let date = header(&head, "date").unwrap();
    let seconds_of_day = |http_date: &str| -> i64 {
        let clock: Vec<i64> = http_date[17..25]
            .split(':')
            .map(|n| n.parse().unwrap())
            .collect();
        clock[0] * 3600 + clock[1] * 60 + clock[2]
    };
    let apart = (seconds_of_day(expiry) - seconds_of_day(&date)).rem_euclid(86_400);
    assert!(apart <= 5 || apart >= 86_395, "{restore} vs {date}");
    let (status, text) = send(&moto, "POST", &format!("{path}?restore"), &[], request).await;
    assert_eq!(status, 200, "{text}");
}

/// DeleteObject row: a missing key is 204, as on AWS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_missing_key_is_204() {
    let Some(moto) = MotoServer::start().await else {
        return;
    };
    let bucket = moto.create_bucket().await;
    let (status, text) = send(&moto, "DELETE", &format!("/{bucket}/nothing"), &[], "").await;
    assert_eq!(status, 204, "{text}");
}

/// Lifecycle row: rules are stored but never enforced. An upload moto itself reports
/// as started in 2010 outlives a rule that aborts uploads after one day.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_rules_are_never_enforced() {
    let Some(moto) = MotoServer::start().await else {
        return;
    };
    let bucket = moto.create_bucket().await;
    create_upload(&moto, &format!("/{bucket}/volume"), &[]).await;
    let rule = "<LifecycleConfiguration><Rule><ID>abort</ID><Filter><Prefix></Prefix></Filter>\
                <Status>Enabled</Status><AbortIncompleteMultipartUpload><DaysAfterInitiation>1\
                </DaysAfterInitiation></AbortIncompleteMultipartUpload></Rule>\
                </LifecycleConfiguration>";
    let (status, text) = send(&moto, "PUT", &format!("/{bucket}?lifecycle"), &[], rule).await;
    assert_eq!(status, 200, "{text}");
    let (_, text) = send(&moto, "GET", &format!("/{bucket}?lifecycle"), &[], "").await;
    assert!(text.contains("<DaysAfterInitiation>1"), "{text}");
    let (_, text) = send(&moto, "GET", &format!("/{bucket}?uploads"), &[], "").await;
    assert!(text.contains("<Key>volume</Key>"), "{text}");
    assert!(text.contains("2010-11-10T20:48:33"), "{text}");
}

/// "(any)" row: signatures and credentials are not checked — a request signed with a
/// made-up key and a signature of zeros is served; only a request without any
/// `Authorization` header is treated as anonymous (and refused by the private ACL).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signatures_are_not_checked() {
    let Some(moto) = MotoServer::start().await else {
        return;
    };
    let bucket = moto.create_bucket().await;
    let (status, text) = send(&moto, "PUT", &format!("/{bucket}/k"), &[], "x").await;
    assert_eq!(status, 200, "{text}");
    let (status, text) = moto
        .request("HEAD", &format!("/{bucket}/k"), "")
        .await
        .unwrap();
    assert_eq!(status, 403, "{text}");
}
