//! Running the file systems' tools: argument vectors only, never a shell.
//!
//! Three shapes: a short command whose output is parsed, a command whose standard output
//! is a send stream (the stream's last item reports its exit status), and a command whose
//! standard input is fed from a stream (a receive).

use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::{ExitStatus, Stdio};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures::stream::{BoxStream, Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio_util::io::ReaderStream;

use crate::error::{Error, Result};

/// How much of a failed command's standard error is kept in the error.
const STDERR_EXCERPT: usize = 2000;
/// Read size for send streams: large enough that per-chunk overhead is negligible.
const STREAM_CHUNK: usize = 256 * 1024;

/// A byte stream given to `receive`: typically decrypted volumes, read back from storage.
pub type ReceiveStream = BoxStream<'static, io::Result<Bytes>>;

/// An external tool (`zfs`, `zpool`, `btrfs`) and the package that provides it.
#[derive(Debug, Clone)]
pub(crate) struct Tool {
    path: PathBuf,
    package: &'static str,
}

/// What a finished command produced.
pub(crate) struct Finished {
    pub(crate) status: ExitStatus,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    pub(crate) command: String,
}

impl Finished {
    /// The command's failure as an error.
    pub(crate) fn failure(&self) -> Error {
        Error::CommandFailed {
            command: self.command.clone(),
            status: describe_status(self.status),
            stderr: excerpt(&self.stderr),
        }
    }

    /// Standard output when the command succeeded, its failure otherwise.
    pub(crate) fn into_stdout(self) -> Result<String> {
        if self.status.success() {
            Ok(self.stdout)
        } else {
            Err(self.failure())
        }
    }
}

impl Tool {
    pub(crate) fn new(path: impl Into<PathBuf>, package: &'static str) -> Self {
        Tool {
            path: path.into(),
            package,
        }
    }

    /// The command line as a person would type it, for error messages.
    pub(crate) fn describe(&self, args: &[&str]) -> String {
        let mut line = self.path.display().to_string();
        for arg in args {
            line.push(' ');
            if arg.is_empty() || arg.contains(|c: char| c.is_whitespace() || c == '\'' || c == '"')
            {
                line.push_str(&format!("{arg:?}"));
            } else {
                line.push_str(arg);
            }
        }
        line
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.path);
        command.args(args).stdin(Stdio::null()).kill_on_drop(true);
        // Parsed output must not depend on the user's locale.
        command.env("LC_ALL", "C");
        command
    }

    fn spawn_error(&self, source: io::Error, args: &[&str]) -> Error {
        match source.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied => {
                Error::CommandNotInstalled {
                    program: self.path.display().to_string(),
                    package: self.package,
                    source,
                }
            }
            _ => Error::Io {
                command: self.describe(args),
                source,
            },
        }
    }

    /// Runs the command to completion, whatever its exit status.
    pub(crate) async fn output(&self, args: &[&str]) -> Result<Finished> {
        tracing::debug!(command = %self.describe(args), "running");
        let output = self
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .await
            .map_err(|source| self.spawn_error(source, args))?;
        Ok(Finished {
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            command: self.describe(args),
        })
    }

    /// Runs the command and returns its standard output, or its failure.
    pub(crate) async fn run(&self, args: &[&str]) -> Result<String> {
        self.output(args).await?.into_stdout()
    }

    /// Starts the command and streams its standard output; see [`SendStream`].
    pub(crate) fn stream(&self, args: &[&str]) -> Result<SendStream> {
        let command_line = self.describe(args);
        tracing::debug!(command = %command_line, "streaming");
        let mut child = self
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| self.spawn_error(source, args))?;
        let pid = child.id();
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(Error::Io {
                command: command_line,
                source: io::Error::other("child pipes missing"),
            });
        };
        let state = SendState::Reading(Box::new(Reading {
            reader: ReaderStream::with_capacity(stdout, STREAM_CHUNK),
            child,
            stderr: collect_stderr(stderr),
            command: command_line,
        }));
        let inner = futures::stream::unfold(state, SendState::next).boxed();
        Ok(SendStream { inner, pid })
    }

    /// Runs the command with `input` as its standard input: first `prefix`, then the rest
    /// of `rest`, showing every chunk to `observe`.
    ///
    /// If `rest` fails, the command's input is closed, the command is waited for and
    /// [`Error::InputFailed`] is returned: the caller MUST then remove whatever the
    /// command made of the partial input (it may take a clean end for a complete stream).
    pub(crate) async fn feed(
        &self,
        args: &[&str],
        prefix: Bytes,
        mut rest: ReceiveStream,
        observe: &mut (dyn FnMut(&[u8]) + Send),
    ) -> Result<Finished> {
        let command_line = self.describe(args);
        tracing::debug!(command = %command_line, "receiving");
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| self.spawn_error(source, args))?;
        let (Some(mut stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(Error::Io {
                command: command_line,
                source: io::Error::other("child pipes missing"),
            });
        };
        let stdout_task = collect_stderr(stdout);
        let stderr_task = collect_stderr(stderr);

        observe(&prefix);
        let mut write_result = stdin.write_all(&prefix).await;
        while write_result.is_ok() {
            match rest.next().await {
                None => break,
                Some(Ok(chunk)) => {
                    observe(&chunk);
                    write_result = stdin.write_all(&chunk).await;
                }
                Some(Err(source)) => {
                    // End the input and let the tool finish: killing it would not stop
                    // work it delegated (zfs-fuse receives inside its daemon), so the
                    // caller could not know when the partial result is there to remove.
                    // The caller removes whatever the tool made of the partial input.
                    drop(stdin);
                    if let Err(error) = child.wait().await {
                        tracing::warn!(%error, "waiting for a receive fed a failed stream");
                    }
                    return Err(Error::InputFailed { source });
                }
            }
        }
        // Closing stdin is the end of the stream for the receiving tool.
        drop(stdin);
        let status = child.wait().await.map_err(|source| Error::Io {
            command: command_line.clone(),
            source,
        })?;
        let stderr = stderr_task.await.unwrap_or_default();
        let stdout = stdout_task.await.unwrap_or_default();
        if let Err(source) = write_result {
            if status.success() {
                // The tool stopped reading but claims success: never trust that.
                return Err(Error::Io {
                    command: command_line,
                    source,
                });
            }
        }
        Ok(Finished {
            status,
            stdout,
            stderr,
            command: command_line,
        })
    }
}

async fn kill_and_reap(child: &mut Child) {
    if let Err(error) = child.kill().await {
        tracing::warn!(%error, "could not kill a child process");
    }
}

/// Reads a pipe to its end in the background (so the child never blocks on a full pipe),
/// keeping it as text.
fn collect_stderr<R: AsyncRead + Unpin + Send + 'static>(mut pipe: R) -> JoinHandle<String> {
    tokio::spawn(async move {
        let mut buffer = Vec::new();
        if let Err(error) = pipe.read_to_end(&mut buffer).await {
            tracing::debug!(%error, "reading a child's output pipe");
        }
        String::from_utf8_lossy(&buffer).into_owned()
    })
}

/// The end of a command's standard error, trimmed, for an error message.
pub(crate) fn excerpt(stderr: &str) -> String {
    let trimmed = stderr.trim();
    if trimmed.len() <= STDERR_EXCERPT {
        return trimmed.to_owned();
    }
    let mut start = trimmed.len() - STDERR_EXCERPT;
    while !trimmed.is_char_boundary(start) {
        start += 1;
    }
    format!("...{}", &trimmed[start..])
}

fn describe_status(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => status.to_string(),
    }
}

/// Reads from `stream` until at least `wanted` bytes (or the end) are buffered.
pub(crate) async fn read_prefix(stream: &mut ReceiveStream, wanted: usize) -> Result<BytesMut> {
    let mut buffer = BytesMut::new();
    while buffer.len() < wanted {
        match stream.next().await {
            None => break,
            Some(Ok(chunk)) => buffer.extend_from_slice(&chunk),
            Some(Err(source)) => return Err(Error::InputFailed { source }),
        }
    }
    Ok(buffer)
}

/// A send stream: the standard output of `zfs send` / `btrfs send`, chunk by chunk.
///
/// The stream's end reports the command's exit status: when the command exits
/// unsuccessfully — even after producing bytes — the last item is an
/// [`Error::CommandFailed`], never a clean, short end. Dropping the stream kills the
/// command.
pub struct SendStream {
    inner: BoxStream<'static, Result<Bytes>>,
    pid: Option<u32>,
}

impl SendStream {
    /// A send stream produced in-process rather than by a command (a source of your own,
    /// a test double). It MUST keep the contract of [`SnapshotSource::send`]: its last
    /// item is an error when the send failed, even after it produced bytes.
    ///
    /// [`SnapshotSource::send`]: crate::SnapshotSource::send
    pub fn from_stream(stream: impl Stream<Item = Result<Bytes>> + Send + 'static) -> Self {
        Self {
            inner: Box::pin(stream),
            pid: None,
        }
    }

    /// The process id of the sending command while it runs (for diagnostics, and for
    /// tests that kill a send midway); `None` for a stream made in-process.
    pub fn process_id(&self) -> Option<u32> {
        self.pid
    }
}

impl std::fmt::Debug for SendStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendStream")
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

impl Stream for SendStream {
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

struct Reading {
    reader: ReaderStream<tokio::process::ChildStdout>,
    child: Child,
    stderr: JoinHandle<String>,
    command: String,
}

enum SendState {
    Reading(Box<Reading>),
    Done,
}

impl SendState {
    async fn next(self) -> Option<(Result<Bytes>, SendState)> {
        let SendState::Reading(mut state) = self else {
            return None;
        };
        match state.reader.next().await {
            Some(Ok(chunk)) => Some((Ok(chunk), SendState::Reading(state))),
            Some(Err(source)) => {
                kill_and_reap(&mut state.child).await;
                Some((
                    Err(Error::Io {
                        command: state.command,
                        source,
                    }),
                    SendState::Done,
                ))
            }
            None => {
                let Reading {
                    mut child,
                    stderr,
                    command,
                    ..
                } = *state;
                let status = match child.wait().await {
                    Ok(status) => status,
                    Err(source) => {
                        return Some((Err(Error::Io { command, source }), SendState::Done))
                    }
                };
                if status.success() {
                    return None;
                }
                let stderr = stderr.await.unwrap_or_default();
                let error = Error::CommandFailed {
                    command,
                    status: describe_status(status),
                    stderr: excerpt(&stderr),
                };
                Some((Err(error), SendState::Done))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shell() -> Tool {
        Tool::new("/bin/sh", "dash")
    }

    #[tokio::test]
    async fn a_command_failing_after_output_ends_the_stream_with_an_error() {
        let script = "head -c 300000 /dev/zero; echo 'disk on fire' >&2; exit 3";
        let mut stream = shell().stream(&["-c", script]).unwrap();
        assert!(stream.process_id().is_some());
        let mut bytes = 0;
        let mut last = None;
        while let Some(item) = stream.next().await {
            assert!(last.is_none(), "nothing may follow the error");
            match item {
                Ok(chunk) => bytes += chunk.len(),
                Err(error) => last = Some(error),
            }
        }
        assert_eq!(bytes, 300_000);
        let error = last.expect("the stream must end with the failure");
        let message = error.to_string();
        assert!(matches!(error, Error::CommandFailed { .. }), "{message}");
        assert!(
            message.contains("exit status 3") && message.contains("disk on fire"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn a_successful_command_ends_cleanly() {
        let stream = shell().stream(&["-c", "printf abc"]).unwrap();
        let items: Vec<_> = stream.collect().await;
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].as_ref().unwrap().as_ref(), b"abc");
    }

    #[tokio::test]
    async fn a_missing_program_names_its_package() {
        let tool = Tool::new("/nonexistent/zfs", "zfsutils-linux");
        let error = tool.run(&["list"]).await.err().unwrap();
        assert!(error.is_not_installed());
        assert!(error.to_string().contains("zfsutils-linux"), "{error}");
        assert!(tool.stream(&["send"]).err().unwrap().is_not_installed());
    }

    #[tokio::test]
    async fn a_failing_input_is_reported_and_the_command_sees_its_end() {
        // `wc -c` stands in for a receiving tool: it reads to the end and exits.
        let input: ReceiveStream = futures::stream::iter(vec![
            Ok(Bytes::from_static(b"12345")),
            Err(io::Error::other("download failed")),
            Ok(Bytes::from_static(b"never sent")),
        ])
        .boxed();
        let mut seen = 0;
        let error = shell()
            .feed(
                &["-c", "wc -c"],
                Bytes::from_static(b"ab"),
                input,
                &mut |bytes| seen += bytes.len(),
            )
            .await
            .err()
            .unwrap();
        assert!(matches!(error, Error::InputFailed { .. }), "{error}");
        assert_eq!(seen, 7);

        let input: ReceiveStream =
            futures::stream::iter(vec![Ok(Bytes::from_static(b"345"))]).boxed();
        let finished = shell()
            .feed(
                &["-c", "wc -c"],
                Bytes::from_static(b"12"),
                input,
                &mut |_| {},
            )
            .await
            .unwrap();
        assert!(finished.status.success());
        assert_eq!(finished.stdout.trim(), "5");
    }
}
