//! A moto S3 server on a free loopback port, for tests.
#![allow(clippy::expect_used)] // fixture: a failed setup is a failed test
//!
//! The server binary is `$ZIB_MOTO_SERVER`, else `/opt/zib/moto-venv/bin/moto_server`
//! (moto 5.1.22 in its own virtualenv). Never the `moto_server` on `PATH`: later moto
//! versions answer ListParts and CompleteMultipartUpload with XML the AWS SDK cannot
//! parse. Each fixture is its own server process, killed when dropped; each call to
//! [`MotoServer::create_bucket`] makes a fresh bucket. Settings that are global to a
//! server (such as the manual restore transition) therefore never leak between tests.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::real::component_missing;

/// Environment variable naming the `moto_server` binary.
pub const MOTO_SERVER_ENV: &str = "ZIB_MOTO_SERVER";
/// Where `scripts/test.sh` installs moto 5.1.22.
pub const DEFAULT_MOTO_SERVER: &str = "/opt/zib/moto-venv/bin/moto_server";

const INSTALL_HINT: &str =
    "create a virtualenv at /opt/zib/moto-venv with `pip install 'moto[server]==5.1.22'` \
                            or set ZIB_MOTO_SERVER to a moto 5.1.22 moto_server";

/// The `Initiated` date moto 5.1.22 reports for every incomplete multipart upload,
/// 2010-11-10T20:48:33Z in seconds since the Unix epoch: its ListMultipartUploads answer
/// is a template with that date written in. (AWS reports when each upload started.) A
/// test that ages uploads on moto sets its clock relative to this date.
pub const REPORTED_UPLOAD_INITIATION_SECS: u64 = 1_289_422_113;

/// [`REPORTED_UPLOAD_INITIATION_SECS`] as a time.
pub fn reported_upload_initiation() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(REPORTED_UPLOAD_INITIATION_SECS)
}

/// A running moto server.
#[derive(Debug)]
pub struct MotoServer {
    child: Child,
    port: u16,
}

impl MotoServer {
    /// Starts a server and waits until it answers `GET /moto-api/`.
    ///
    /// Returns `None` (after saying why) when moto is missing and the run did not require
    /// real components; panics when it did, or when the server does not come up.
    pub async fn start() -> Option<Self> {
        let binary = std::env::var_os(MOTO_SERVER_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_MOTO_SERVER));
        if !binary.is_file() {
            return component_missing(&format!("moto server ({})", binary.display()), INSTALL_HINT);
        }
        for _attempt in 0..3 {
            let port = free_port();
            let child = Command::new(&binary)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
            let mut server = MotoServer { child, port };
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = server.child.try_wait() {
                    break; // exited: most likely the port was taken meanwhile; retry
                }
                if matches!(server.request("GET", "/moto-api/", "").await, Ok((200, _))) {
                    return Some(server);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        panic!("moto server {} did not become ready", binary.display());
    }

    /// The server's endpoint URL, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates a bucket with a unique name and returns the name.
    pub async fn create_bucket(&self) -> String {
        self.create_bucket_with(&[]).await
    }

    /// Creates a bucket with a unique name, sending `headers` with the request (such as
    /// `x-amz-bucket-object-lock-enabled: true`), and returns the name.
    pub async fn create_bucket_with(&self, headers: &[(&str, &str)]) -> String {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "zib-test-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let (status, body) = self
            .request_with_headers("PUT", &format!("/{name}"), headers, "")
            .await
            .expect("create bucket");
        assert_eq!(status, 200, "creating bucket {name}: {body}");
        name
    }

    /// Sets the versioning status of `bucket` (`Enabled` or `Suspended`).
    pub async fn set_versioning(&self, bucket: &str, status: &str) {
        let body = format!(
            "<VersioningConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
             <Status>{status}</Status></VersioningConfiguration>"
        );
        let (code, text) = self
            .request("PUT", &format!("/{bucket}?versioning"), &body)
            .await
            .expect("set versioning");
        assert_eq!(code, 200, "versioning of {bucket}: {text}");
    }

    /// Creates a bucket under Object Lock whose default retention is `mode`
    /// (`GOVERNANCE` or `COMPLIANCE`) for `days` days, and returns its name.
    pub async fn create_locked_bucket(&self, mode: &str, days: u32) -> String {
        let bucket = self
            .create_bucket_with(&[("x-amz-bucket-object-lock-enabled", "true")])
            .await;
        let body = format!(
            "<ObjectLockConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
             <ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule><DefaultRetention>\
             <Mode>{mode}</Mode><Days>{days}</Days></DefaultRetention></Rule>\
             </ObjectLockConfiguration>"
        );
        let (code, text) = self
            .request("PUT", &format!("/{bucket}?object-lock"), &body)
            .await
            .expect("set the object lock configuration");
        assert_eq!(code, 200, "object lock of {bucket}: {text}");
        bucket
    }

    /// Makes restores stay in progress for a while on this server (moto's manual state
    /// transition for `s3::keyrestore`): HEADs of a restored key report
    /// `ongoing-request="true"` until it has been looked up `times` times since its PUT.
    pub async fn set_manual_restore_transition(&self, times: u32) {
        let body = format!(
            r#"{{"model_name":"s3::keyrestore","transition":{{"progression":"manual","times":{times}}}}}"#
        );
        let (status, text) = self
            .request("POST", "/moto-api/state-manager/set-transition", &body)
            .await
            .expect("set transition");
        assert!(
            status < 300,
            "moto set-transition answered {status}: {text}"
        );
    }

    /// A minimal HTTP/1.1 request to the server (no dependencies, `Connection: close`).
    ///
    /// # Errors
    /// Connection errors and malformed answers.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: &str,
    ) -> std::io::Result<(u16, String)> {
        self.request_with_headers(method, path, &[], body).await
    }

    /// [`request`](Self::request) with extra header lines.
    ///
    /// # Errors
    /// Connection errors and malformed answers.
    pub async fn request_with_headers(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> std::io::Result<(u16, String)> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).await?;
        let extra: String = headers
            .iter()
            .map(|(name, value)| format!("{name}: {value}\r\n"))
            .collect();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n{body}",
            self.port,
            body.len()
        );
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        let text = String::from_utf8_lossy(&response).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {text:?}")))?;
        Ok((status, text))
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port that was free a moment ago (bind to port 0, read it, release it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("bind a loopback port")
}
