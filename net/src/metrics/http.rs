//! The metrics and health endpoint: a tiny HTTP/1.1 server on its own std
//! thread (tokio-based servers panic inside glommio executors, PLATFORM.md).
//! It serves one connection at a time, reads at most [`MAX_REQUEST_BYTES`]
//! of request head with a timeout, and always closes the connection.
//!
//! `GET /metrics`: the Prometheus text; `GET /health`: 200 `ok` when every
//! shard answers, 503 otherwise. Anything malformed gets 400.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::time::Duration;

use super::{Scrape, SCRAPE_TIMEOUT};

/// Largest request head read (request line and headers).
pub const MAX_REQUEST_BYTES: usize = 8 << 10;
/// Most bytes read and dropped after refusing a request.
const DRAIN_LIMIT_BYTES: usize = 1 << 20;
/// How long one client may take to send its request or read the answer.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a scrape waits for shard 0 beyond its own broadcast timeout.
const REPLY_TIMEOUT: Duration = Duration::from_secs(SCRAPE_TIMEOUT.as_secs() + 1);

/// A parsed request line: only what routing needs.
#[derive(Debug, PartialEq, Eq)]
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
}

/// Why a request was refused before routing.
#[derive(Debug, PartialEq, Eq)]
pub enum BadRequest {
    /// Malformed request line or head, or not HTTP/1.x.
    Malformed,
    /// The head is larger than [`MAX_REQUEST_BYTES`].
    TooLarge,
}

/// Parses the head of a request (everything up to the blank line).
pub fn parse(head: &[u8]) -> Result<Request<'_>, BadRequest> {
    let text = std::str::from_utf8(head).map_err(|_| BadRequest::Malformed)?;
    let line = text.split("\r\n").next().ok_or(BadRequest::Malformed)?;
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(BadRequest::Malformed);
    };
    let token = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_uppercase());
    if !token(method) || !target.starts_with('/') || !matches!(version, "HTTP/1.0" | "HTTP/1.1") {
        return Err(BadRequest::Malformed);
    }
    // Every header line must be `name: value`.
    for header in text.split("\r\n").skip(1).filter(|l| !l.is_empty()) {
        match header.split_once(':') {
            Some((name, _)) if !name.is_empty() && !name.contains(' ') => {}
            _ => return Err(BadRequest::Malformed),
        }
    }
    let path = target.split('?').next().unwrap_or(target);
    Ok(Request { method, path })
}

/// Reads the request head: up to and without the blank line.
fn read_head(stream: &mut TcpStream) -> Result<Vec<u8>, BadRequest> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.truncate(end);
            return Ok(buf);
        }
        if buf.len() > MAX_REQUEST_BYTES {
            return Err(BadRequest::TooLarge);
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return Err(BadRequest::Malformed),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn respond(stream: &mut TcpStream, status: &str, content_type: &str, body: &str) {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    // A client that went away is its own problem.
    let _ = stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body.as_bytes()));
}

/// Asks shard 0 and waits (bounded) for the answer.
fn ask<T>(scrapes: &SyncSender<Scrape>, make: impl FnOnce(SyncSender<T>) -> Scrape) -> Option<T> {
    let (tx, rx) = mpsc::sync_channel(1);
    match scrapes.try_send(make(tx)) {
        Ok(()) => rx.recv_timeout(REPLY_TIMEOUT).ok(),
        Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => None,
    }
}

/// Answers a refused request, then reads (bounded) what the client still
/// sends: closing with unread input would reset the connection, and the
/// client could lose the answer.
fn refuse(stream: &mut TcpStream, status: &str, body: &str) {
    respond(stream, status, "text/plain; charset=utf-8", body);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut sink = [0u8; 4096];
    let mut drained = 0;
    while drained < DRAIN_LIMIT_BYTES {
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
}

fn handle(mut stream: TcpStream, scrapes: &SyncSender<Scrape>) {
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let text = "text/plain; charset=utf-8";
    let head = match read_head(&mut stream) {
        Ok(h) => h,
        Err(BadRequest::TooLarge) => {
            return refuse(
                &mut stream,
                "431 Request Header Fields Too Large",
                "request too large\n",
            )
        }
        Err(BadRequest::Malformed) => {
            return refuse(&mut stream, "400 Bad Request", "bad request\n")
        }
    };
    let req = match parse(&head) {
        Ok(r) => r,
        Err(_) => return refuse(&mut stream, "400 Bad Request", "bad request\n"),
    };
    if req.method != "GET" {
        return respond(
            &mut stream,
            "405 Method Not Allowed",
            text,
            "only GET is served\n",
        );
    }
    match req.path {
        "/metrics" => match ask(scrapes, Scrape::Metrics).flatten() {
            Some(body) => respond(
                &mut stream,
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                &body,
            ),
            None => respond(
                &mut stream,
                "503 Service Unavailable",
                text,
                "not every shard answered\n",
            ),
        },
        "/health" => match ask(scrapes, Scrape::Health) {
            Some(true) => respond(&mut stream, "200 OK", text, "ok\n"),
            _ => respond(
                &mut stream,
                "503 Service Unavailable",
                text,
                "not every shard answered\n",
            ),
        },
        _ => respond(
            &mut stream,
            "404 Not Found",
            text,
            "try /metrics or /health\n",
        ),
    }
}

/// Serves `listener` on a new thread until the process exits.
pub fn spawn(listener: TcpListener, scrapes: SyncSender<Scrape>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("sluice-metrics".into())
        .spawn(move || {
            for stream in listener.incoming() {
                match stream {
                    Ok(s) => handle(s, &scrapes),
                    Err(e) => {
                        tracing::warn!(error = %e, "metrics endpoint: accept failed");
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            }
        })
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_request_lines_and_refuses_garbage() {
        let r = parse(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nAccept: */*").unwrap();
        assert_eq!(
            r,
            Request {
                method: "GET",
                path: "/metrics"
            }
        );
        for bad in [
            &b""[..],
            b"GET",
            b"GET /metrics",
            b"GET metrics HTTP/1.1",
            b"GET /metrics HTTP/2",
            b"get /metrics HTTP/1.1",
            b"GET /metrics HTTP/1.1 extra",
            b"GET /metrics HTTP/1.1\r\nno colon here",
            b"\xff\xfe /metrics HTTP/1.1",
        ] {
            assert_eq!(
                parse(bad),
                Err(BadRequest::Malformed),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
