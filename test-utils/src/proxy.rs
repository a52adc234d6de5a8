//! A fault-injecting HTTP proxy for S3 traffic, on loopback.
//!
//! Sits between an S3 client and a server (moto): each request is classified as a
//! storage [`Operation`] (from method, path and query, as S3 defines them); rules pick
//! requests by operation and by n-th request or seeded fraction and replace the answer
//! with a fault — a connection reset (RST), a 500 `InternalError`, a 503 `SlowDown` or a
//! 403 `AccessDenied` as S3 XML, a stall longer than the client's timeout, or a response
//! body cut in half, or a lost answer (the request is forwarded and applied, then the
//! connection is reset before the client hears the response). Everything else is
//! forwarded unchanged. The proxy counts the
//! requests it saw per operation, so tests can prove a retry happened (or did not), and
//! the faults each rule injected, so they can prove their faults happened at all; it also
//! keeps the sequence of requests and faults, so a seeded run can be shown to repeat.
//! The rules can be replaced while the proxy runs ([`FaultProxy::set_rules`]), so one
//! test can run a program with faults and then again without them, counting on.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use zib_storage_backend::Operation;

/// What the proxy does instead of forwarding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyFault {
    /// Reads the request, then resets the connection (TCP RST, no response).
    Reset,
    /// 500 with an S3 `InternalError` body.
    InternalError,
    /// 503 with an S3 `SlowDown` body.
    SlowDown,
    /// 403 with an S3 `AccessDenied` body.
    AccessDenied,
    /// Waits this long before forwarding (longer than the client's timeout).
    Stall(Duration),
    /// Waits until the test calls [`FaultProxy::release`], then forwards: a request held
    /// at a chosen point of progress while the test acts on the client's side (set the
    /// client's request timeout longer than the hold).
    Hold,
    /// Forwards, then sends only the first half of the response body (with the full
    /// `Content-Length`) and closes the connection.
    TruncateBody,
    /// Forwards and reads the whole response (the server applied the request), then
    /// resets the connection instead of answering: the client never learns the outcome.
    DropResponse,
    /// Answers with this HTTP status and S3 error code without forwarding: how AWS
    /// answers where the emulator does not (a repeated CompleteMultipartUpload is 404
    /// `NoSuchUpload` on AWS, 200 on moto 5.1.22).
    S3Error(u16, &'static str),
}

impl ProxyFault {
    /// A short name of the fault's kind (a stall's duration left out), for counting.
    pub fn kind(&self) -> &'static str {
        match self {
            ProxyFault::Reset => "reset",
            ProxyFault::InternalError => "500",
            ProxyFault::SlowDown => "503",
            ProxyFault::AccessDenied => "403",
            ProxyFault::Stall(_) => "stall",
            ProxyFault::Hold => "hold",
            ProxyFault::TruncateBody => "truncate",
            ProxyFault::DropResponse => "drop-response",
            ProxyFault::S3Error(..) => "s3-error",
        }
    }
}

/// When a rule fires.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ProxyTrigger {
    /// On the n-th request (1-based) of the rule's operation(s).
    Nth(u64),
    /// On every request from the n-th on.
    From(u64),
    /// On each request with this probability (seeded).
    Fraction(f64),
    /// On every request (of the rule's operation(s)) from the moment `operation` has been
    /// requested `count` times: "everything fails after the 3rd part".
    AfterSeen {
        /// The operation whose requests are counted.
        operation: Operation,
        /// How many of them open the fault.
        count: u64,
    },
}

/// One rule: which requests, when, what fault.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProxyRule {
    /// The operation; `None` for all.
    pub operation: Option<Operation>,
    /// When.
    pub trigger: ProxyTrigger,
    /// What.
    pub fault: ProxyFault,
}

/// A request as the proxy saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenRequest {
    /// What zib's storage layer would call it ([`classify`]).
    pub operation: Operation,
    /// The HTTP method.
    pub method: String,
    /// The URI path (`/BUCKET/KEY`).
    pub path: String,
    /// The URI query, without `?` (empty when there is none).
    pub query: String,
}

impl SeenRequest {
    /// The S3 API action this request is (`PutObject`, `UploadPart`, `ListObjectsV2`,
    /// `GetBucketVersioning`, …), named from method, path and query as the S3 API
    /// reference does; `other` for what it does not know. Finer than [`Operation`],
    /// which only knows what zib sends: a benchmark counts other clients' requests with
    /// it. Headers are not seen, so a copy counts as `PutObject` or `UploadPart`.
    pub fn action(&self) -> &'static str {
        let params = query_names(&self.query);
        let has = |name: &str| params.contains(&name);
        let object = names_an_object(&self.path);
        let method = self.method.as_str();
        // Sub-resources: GET, PUT and DELETE of one configuration each.
        let sub_resources: &[(&str, [&'static str; 3])] = if object {
            &[
                ("acl", ["GetObjectAcl", "PutObjectAcl", "other"]),
                (
                    "tagging",
                    [
                        "GetObjectTagging",
                        "PutObjectTagging",
                        "DeleteObjectTagging",
                    ],
                ),
                (
                    "retention",
                    ["GetObjectRetention", "PutObjectRetention", "other"],
                ),
                (
                    "legal-hold",
                    ["GetObjectLegalHold", "PutObjectLegalHold", "other"],
                ),
            ]
        } else {
            &[
                (
                    "lifecycle",
                    [
                        "GetBucketLifecycleConfiguration",
                        "PutBucketLifecycleConfiguration",
                        "DeleteBucketLifecycle",
                    ],
                ),
                (
                    "versioning",
                    ["GetBucketVersioning", "PutBucketVersioning", "other"],
                ),
                (
                    "object-lock",
                    [
                        "GetObjectLockConfiguration",
                        "PutObjectLockConfiguration",
                        "other",
                    ],
                ),
                ("location", ["GetBucketLocation", "other", "other"]),
                (
                    "policy",
                    ["GetBucketPolicy", "PutBucketPolicy", "DeleteBucketPolicy"],
                ),
                ("acl", ["GetBucketAcl", "PutBucketAcl", "other"]),
                (
                    "tagging",
                    [
                        "GetBucketTagging",
                        "PutBucketTagging",
                        "DeleteBucketTagging",
                    ],
                ),
                (
                    "cors",
                    ["GetBucketCors", "PutBucketCors", "DeleteBucketCors"],
                ),
                (
                    "encryption",
                    [
                        "GetBucketEncryption",
                        "PutBucketEncryption",
                        "DeleteBucketEncryption",
                    ],
                ),
            ]
        };
        for (name, [get, put, delete]) in sub_resources {
            if has(name) {
                return match method {
                    "GET" => get,
                    "PUT" => put,
                    "DELETE" => delete,
                    _ => "other",
                };
            }
        }
        // What a listing's query may hold (ListObjects and ListObjectsV2); anything else
        // on a bucket is a sub-resource this table does not know.
        const LIST_PARAMS: [&str; 9] = [
            "list-type",
            "prefix",
            "delimiter",
            "marker",
            "max-keys",
            "encoding-type",
            "continuation-token",
            "start-after",
            "fetch-owner",
        ];
        match (method, object) {
            ("PUT", true) if has("uploadId") => "UploadPart",
            ("PUT", true) => "PutObject",
            ("PUT", false) if params.is_empty() => "CreateBucket",
            ("POST", true) if has("uploads") => "CreateMultipartUpload",
            ("POST", true) if has("uploadId") => "CompleteMultipartUpload",
            ("POST", true) if has("restore") => "RestoreObject",
            ("POST", false) if has("delete") => "DeleteObjects",
            ("DELETE", true) if has("uploadId") => "AbortMultipartUpload",
            ("DELETE", true) => "DeleteObject",
            ("DELETE", false) if params.is_empty() => "DeleteBucket",
            ("GET", true) if has("uploadId") => "ListParts",
            ("GET", true) => "GetObject",
            ("GET", false) if has("uploads") => "ListMultipartUploads",
            ("GET", false) if has("versions") => "ListObjectVersions",
            ("GET", false) if self.path.trim_matches('/').is_empty() => "ListBuckets",
            ("GET", false) if params.iter().all(|name| LIST_PARAMS.contains(name)) => {
                if has("list-type") {
                    "ListObjectsV2"
                } else {
                    "ListObjects"
                }
            }
            ("HEAD", true) => "HeadObject",
            ("HEAD", false) => "HeadBucket",
            _ => "other",
        }
    }
}

#[derive(Debug)]
struct Shared {
    upstream: SocketAddr,
    state: Mutex<State>,
    client: Client<HttpConnector, Incoming>,
    /// How many times [`FaultProxy::release`] was called: a held request goes on once
    /// this passes the count it arrived under.
    released: tokio::sync::watch::Sender<u64>,
}

#[derive(Debug)]
struct State {
    rules: Vec<ProxyRule>,
    seen: BTreeMap<Operation, u64>,
    /// Faults injected per operation and fault kind.
    by_kind: BTreeMap<(Operation, &'static str), u64>,
    total: u64,
    faults: u64,
    /// Faults injected by each rule, in rule order.
    fired: Vec<u64>,
    /// Every request in arrival order, with the rule that faulted it.
    log: Vec<(Operation, Option<usize>)>,
    /// Every request, in arrival order.
    requests: Vec<SeenRequest>,
    rng: fastrand::Rng,
}

/// A running proxy; stops when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl FaultProxy {
    /// Starts a proxy on a free loopback port in front of `upstream`.
    ///
    /// # Errors
    /// When no loopback port can be bound.
    pub async fn start(
        upstream: SocketAddr,
        rules: Vec<ProxyRule>,
        seed: u64,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let fired = vec![0; rules.len()];
        let shared = Arc::new(Shared {
            upstream,
            state: Mutex::new(State {
                rules,
                seen: BTreeMap::new(),
                by_kind: BTreeMap::new(),
                total: 0,
                faults: 0,
                fired,
                log: Vec::new(),
                requests: Vec::new(),
                rng: fastrand::Rng::with_seed(seed),
            }),
            client: Client::builder(TokioExecutor::new()).build_http(),
            released: tokio::sync::watch::Sender::new(0),
        });
        let accept_shared = Arc::clone(&shared);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let shared = Arc::clone(&accept_shared);
                tokio::spawn(serve_connection(stream, shared));
            }
        });
        Ok(FaultProxy { addr, shared, task })
    }

    /// The proxy's endpoint URL.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests seen for `operation` (faulted ones included).
    pub fn seen(&self, operation: Operation) -> u64 {
        let state = self
            .shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        state.seen.get(&operation).copied().unwrap_or(0)
    }

    /// Requests seen for every operation so far.
    pub fn seen_all(&self) -> BTreeMap<Operation, u64> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .seen
            .clone()
    }

    /// Faults injected so far per operation and fault kind ([`ProxyFault::kind`]).
    pub fn faults_by_kind(&self) -> BTreeMap<(Operation, &'static str), u64> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .by_kind
            .clone()
    }

    /// Replaces the rules; counters and the log go on. [`injected`](Self::injected)
    /// then counts per new rule, from zero.
    pub fn set_rules(&self, rules: Vec<ProxyRule>) {
        let mut state = self
            .shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        state.fired = vec![0; rules.len()];
        state.rules = rules;
    }

    /// Faults injected so far.
    pub fn faults_injected(&self) -> u64 {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .faults
    }

    /// Faults each rule injected so far, in the order the rules were given.
    pub fn injected(&self) -> Vec<u64> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .fired
            .clone()
    }

    /// Every request so far in the order it arrived, with the index of the rule that
    /// faulted it (`None`: forwarded unchanged).
    pub fn log(&self) -> Vec<(Operation, Option<usize>)> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .log
            .clone()
    }

    /// Lets every request held so far by [`ProxyFault::Hold`] go on.
    pub fn release(&self) {
        self.shared.released.send_modify(|count| *count += 1);
    }

    /// The URI paths (`/BUCKET/KEY`) of the requests of `operation` so far, in arrival
    /// order: which objects were read, deleted, written.
    pub fn paths(&self, operation: Operation) -> Vec<String> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .requests
            .iter()
            .filter(|seen| seen.operation == operation)
            .map(|seen| seen.path.clone())
            .collect()
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .requests
            .clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_connection(stream: TcpStream, shared: Arc<Shared>) {
    // A second handle on the same socket, to set SO_LINGER=0 before a reset.
    let resetter = stream
        .into_std()
        .and_then(|std_stream| Ok((std_stream.try_clone()?, std_stream)))
        .and_then(|(clone, std_stream)| {
            Ok((
                TcpStream::from_std(clone)?,
                TcpStream::from_std(std_stream)?,
            ))
        });
    let Ok((resetter, stream)) = resetter else {
        return;
    };
    let resetter = Arc::new(Mutex::new(Some(resetter)));
    let service = hyper::service::service_fn(move |request| {
        let shared = Arc::clone(&shared);
        let resetter = Arc::clone(&resetter);
        async move { handle(request, &shared, &resetter).await }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

type BodyError = Box<dyn std::error::Error + Send + Sync>;
type ProxyBody = BoxBody<Bytes, BodyError>;

#[derive(Debug)]
struct ResetConnection;

impl std::fmt::Display for ResetConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("injected connection reset")
    }
}

impl std::error::Error for ResetConnection {}

async fn handle(
    request: Request<Incoming>,
    shared: &Shared,
    resetter: &Mutex<Option<TcpStream>>,
) -> Result<Response<ProxyBody>, ResetConnection> {
    let operation = classify(request.method(), request.uri());
    // Read before the request is counted: a release the test sends once it sees the
    // request counted is always a later one.
    let arrived_under = *shared.released.borrow();
    shared
        .state
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .requests
        .push(SeenRequest {
            operation,
            method: request.method().as_str().to_owned(),
            path: request.uri().path().to_owned(),
            query: request.uri().query().unwrap_or("").to_owned(),
        });
    let fault = pick_fault(shared, operation);
    match fault {
        Some(ProxyFault::Reset) => {
            let _ = request.into_body().collect().await;
            if let Some(socket) = resetter
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take()
            {
                let _ = socket.set_zero_linger();
            }
            // Failing the service makes hyper drop the connection; with linger 0 the
            // close is a RST.
            Err(ResetConnection)
        }
        Some(ProxyFault::InternalError) => {
            Ok(s3_error(request, StatusCode::INTERNAL_SERVER_ERROR, "InternalError").await)
        }
        Some(ProxyFault::SlowDown) => {
            Ok(s3_error(request, StatusCode::SERVICE_UNAVAILABLE, "SlowDown").await)
        }
        Some(ProxyFault::S3Error(status, code)) => Ok(s3_error(
            request,
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code,
        )
        .await),
        Some(ProxyFault::AccessDenied) => {
            Ok(s3_error(request, StatusCode::FORBIDDEN, "AccessDenied").await)
        }
        Some(ProxyFault::Stall(duration)) => {
            tokio::time::sleep(duration).await;
            Ok(forward(request, shared).await)
        }
        Some(ProxyFault::Hold) => {
            let mut released = shared.released.subscribe();
            // The sender lives as long as the proxy; an error means it is going away.
            let _ = released.wait_for(|count| *count > arrived_under).await;
            Ok(forward(request, shared).await)
        }
        Some(ProxyFault::DropResponse) => {
            let response = forward(request, shared).await;
            // The whole answer is read, so the server has finished the request.
            let _ = response.into_body().collect().await;
            if let Some(socket) = resetter
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take()
            {
                let _ = socket.set_zero_linger();
            }
            Err(ResetConnection)
        }
        Some(ProxyFault::TruncateBody) => {
            let response = forward(request, shared).await;
            let (parts, body) = response.into_parts();
            let bytes = body
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            let half = bytes.slice(..bytes.len() / 2);
            // A body of unknown length that fails after its first half: hyper sends the
            // upstream `Content-Length`, half the bytes, then drops the connection. (A
            // shorter body of known length would make hyper fix up, or in debug builds
            // refuse, the header.)
            let frames = futures::stream::iter([
                Ok(Frame::data(half)),
                Err(BodyError::from("injected: response body cut short")),
            ]);
            Ok(Response::from_parts(parts, StreamBody::new(frames).boxed()))
        }
        None => Ok(forward(request, shared).await),
    }
}

fn pick_fault(shared: &Shared, operation: Operation) -> Option<ProxyFault> {
    let mut state = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
    let n_op = {
        let seen = state.seen.entry(operation).or_default();
        *seen += 1;
        *seen
    };
    state.total += 1;
    let n_all = state.total;
    for index in 0..state.rules.len() {
        let rule = state.rules[index];
        let n = match rule.operation {
            Some(op) if op != operation => continue,
            Some(_) => n_op,
            None => n_all,
        };
        let fires = match rule.trigger {
            ProxyTrigger::Nth(k) => n == k,
            ProxyTrigger::From(k) => n >= k,
            ProxyTrigger::Fraction(p) => state.rng.f64() < p,
            ProxyTrigger::AfterSeen {
                operation: counted,
                count,
            } => state.seen.get(&counted).copied().unwrap_or(0) >= count,
        };
        if fires {
            state.faults += 1;
            state.fired[index] += 1;
            *state
                .by_kind
                .entry((operation, rule.fault.kind()))
                .or_default() += 1;
            state.log.push((operation, Some(index)));
            return Some(rule.fault);
        }
    }
    state.log.push((operation, None));
    None
}

async fn s3_error(
    request: Request<Incoming>,
    status: StatusCode,
    code: &str,
) -> Response<ProxyBody> {
    // Read the whole request first, as S3 does, so the client sees the answer rather
    // than a broken pipe while still sending.
    let _ = request.into_body().collect().await;
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>injected by the test proxy</Message>\
         <RequestId>ZIBPROXY</RequestId></Error>"
    );
    let mut response = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/xml"),
    );
    response
}

async fn forward(request: Request<Incoming>, shared: &Shared) -> Response<ProxyBody> {
    let (mut parts, body) = request.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let uri = format!("http://{}{path}", shared.upstream);
    match uri.parse() {
        Ok(uri) => parts.uri = uri,
        Err(_) => return plain(StatusCode::BAD_REQUEST, "bad URI"),
    }
    match shared
        .client
        .request(Request::from_parts(parts, body))
        .await
    {
        Ok(response) => response.map(|body| body.map_err(BodyError::from).boxed()),
        Err(error) => plain(
            StatusCode::BAD_GATEWAY,
            &format!("upstream failed: {error}"),
        ),
    }
}

fn plain(status: StatusCode, text: &str) -> Response<ProxyBody> {
    let mut response = Response::new(
        Full::new(Bytes::from(text.to_owned()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response
}

/// The parameter names of a URI query (`a=1&b` → `a`, `b`).
fn query_names(query: &str) -> Vec<&str> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| pair.split_once('=').map_or(pair, |(name, _)| name))
        .collect()
}

/// Path-style addressing: `/bucket` or `/bucket/` is a bucket request, `/bucket/key` an
/// object request.
fn names_an_object(path: &str) -> bool {
    path.trim_start_matches('/')
        .split_once('/')
        .is_some_and(|(_, key)| !key.is_empty())
}

/// The storage operation an S3 request performs.
pub fn classify(method: &hyper::Method, uri: &hyper::Uri) -> Operation {
    let params = query_names(uri.query().unwrap_or(""));
    let has = |name: &str| params.contains(&name);
    let object_request = names_an_object(uri.path());
    match method.as_str() {
        "GET" if has("lifecycle") => Operation::GetLifecycle,
        "PUT" if has("lifecycle") => Operation::PutLifecycle,
        "PUT" if has("uploadId") => Operation::UploadPart,
        "PUT" => Operation::Put,
        "POST" if has("uploads") => Operation::CreateMultipart,
        "POST" if has("uploadId") => Operation::CompleteMultipart,
        "POST" if has("restore") => Operation::RequestRestore,
        "DELETE" if has("uploadId") => Operation::AbortMultipart,
        "DELETE" => Operation::Delete,
        "GET" if has("uploadId") => Operation::ListParts,
        "GET" if has("uploads") => Operation::ListMultipartUploads,
        "GET" if object_request => Operation::Get,
        "GET" => Operation::List,
        "HEAD" => Operation::Head,
        _ => Operation::Head,
    }
}

impl From<Infallible> for ResetConnection {
    fn from(never: Infallible) -> Self {
        match never {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(method: &str, path: &str, query: &str) -> &'static str {
        SeenRequest {
            operation: Operation::Head,
            method: method.to_owned(),
            path: path.to_owned(),
            query: query.to_owned(),
        }
        .action()
    }

    #[test]
    fn requests_are_named_as_the_s3_api_names_them() {
        // (method, path, query, action)
        let cases = [
            ("PUT", "/b/k", "partNumber=3&uploadId=u", "UploadPart"),
            ("PUT", "/b/k", "", "PutObject"),
            ("POST", "/b/k", "uploads", "CreateMultipartUpload"),
            ("POST", "/b/k", "uploadId=u", "CompleteMultipartUpload"),
            ("POST", "/b", "delete", "DeleteObjects"),
            ("POST", "/b/k", "restore", "RestoreObject"),
            ("GET", "/b", "list-type=2&prefix=x", "ListObjectsV2"),
            ("GET", "/b/", "prefix=x", "ListObjects"),
            ("GET", "/b", "uploads", "ListMultipartUploads"),
            ("GET", "/b/k", "uploadId=u", "ListParts"),
            ("GET", "/b/k", "", "GetObject"),
            ("GET", "/b", "versioning", "GetBucketVersioning"),
            ("GET", "/b", "object-lock", "GetObjectLockConfiguration"),
            ("GET", "/b", "location", "GetBucketLocation"),
            ("PUT", "/b", "lifecycle", "PutBucketLifecycleConfiguration"),
            ("HEAD", "/b/k", "", "HeadObject"),
            ("HEAD", "/b", "", "HeadBucket"),
            ("DELETE", "/b/k", "uploadId=u", "AbortMultipartUpload"),
            ("DELETE", "/b/k", "", "DeleteObject"),
            ("PUT", "/b", "", "CreateBucket"),
            ("GET", "/", "", "ListBuckets"),
            ("GET", "/b/k", "acl", "GetObjectAcl"),
            ("PUT", "/b", "acl", "PutBucketAcl"),
            ("GET", "/b", "versions&prefix=x", "ListObjectVersions"),
            ("GET", "/b", "publicAccessBlock", "other"),
            ("PUT", "/b", "ownershipControls", "other"),
            (
                "GET",
                "/b",
                "list-type=2&continuation-token=t",
                "ListObjectsV2",
            ),
        ];
        for (method, path, query, expected) in cases {
            assert_eq!(
                action(method, path, query),
                expected,
                "{method} {path}?{query}"
            );
        }
    }
}
