//! Counts the requests any S3 client makes: a proxy on loopback in front of an S3
//! server, forwarding everything unchanged, that writes how many requests of each S3
//! action it saw when it is told to stop. `scripts/bench.sh` puts it in front of the
//! server so zib, restic and rclone are counted by the same rules.
//!
//! ```text
//! s3-request-counter --upstream 127.0.0.1:PORT --endpoint-file FILE --report FILE
//! ```
//!
//! Writes its endpoint URL (`http://127.0.0.1:PORT`) to the endpoint file once it
//! listens; on SIGTERM or SIGINT writes the report (one `ACTION COUNT` line per S3
//! action, most frequent first, then `total COUNT`) and exits.

// A command-line tool: its usage and errors go to stderr.
#![allow(clippy::print_stderr)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use tokio::signal::unix::{signal, SignalKind};
use zib_test_utils::proxy::FaultProxy;

struct Args {
    upstream: SocketAddr,
    endpoint_file: PathBuf,
    report: PathBuf,
}

fn parse_args() -> Result<Args, String> {
    let mut upstream = None;
    let mut endpoint_file = None;
    let mut report = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--upstream" => {
                upstream = Some(value.parse().map_err(|_| {
                    format!("--upstream {value}: expected HOST:PORT, such as 127.0.0.1:9000")
                })?);
            }
            "--endpoint-file" => endpoint_file = Some(PathBuf::from(value)),
            "--report" => report = Some(PathBuf::from(value)),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(Args {
        upstream: upstream.ok_or("--upstream is required")?,
        endpoint_file: endpoint_file.ok_or("--endpoint-file is required")?,
        report: report.ok_or("--report is required")?,
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("s3-request-counter: {message}");
            eprintln!(
                "usage: s3-request-counter --upstream HOST:PORT --endpoint-file FILE --report FILE"
            );
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("s3-request-counter: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> std::io::Result<()> {
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let proxy = FaultProxy::start(args.upstream, Vec::new(), 0).await?;
    // Written whole, then renamed: a reader never sees half a URL.
    let partial = args.endpoint_file.with_extension("partial");
    std::fs::write(&partial, proxy.endpoint())?;
    std::fs::rename(&partial, &args.endpoint_file)?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    let mut counts: BTreeMap<&'static str, u64> = BTreeMap::new();
    let requests = proxy.requests();
    for request in &requests {
        *counts.entry(request.action()).or_default() += 1;
    }
    let mut lines: Vec<_> = counts.into_iter().collect();
    lines.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let mut report = String::new();
    for (action, count) in lines {
        report.push_str(&format!("{action} {count}\n"));
    }
    report.push_str(&format!("total {}\n", requests.len()));
    std::fs::write(&args.report, report)
}
