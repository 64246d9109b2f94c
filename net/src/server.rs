//! Accepting connections, framing, dispatch in arrival order, responses in
//! request order.
//!
//! Each connection has a reader (this task) and a writer task joined by a
//! bounded queue of pending responses: when `max_in_flight_per_connection`
//! responses are outstanding the reader stops reading the socket, which is the
//! back-pressure a slow client or a busy shard gets.

use std::cell::RefCell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures::future::LocalBoxFuture;
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use glommio::channels::local_channel;
use glommio::net::{TcpListener, TcpStream};

use crate::api;
use crate::state::ShardState;

/// A response to come: its encoded frame, or `None` (acks=0 produce).
pub type PendingResponse = LocalBoxFuture<'static, Option<Vec<Bytes>>>;

/// How long a shutdown waits for connections to answer what they have read.
const DRAIN_TIMEOUT_MS: u64 = 10_000;

/// Accepts connections until shutdown, then waits (bounded) until every
/// connection of this shard has answered the requests it had read.
pub async fn serve(state: Rc<ShardState>, listener: TcpListener) {
    accept_loop(&state, listener).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(DRAIN_TIMEOUT_MS);
    while state.connections.get() > 0 && std::time::Instant::now() < deadline {
        glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
    }
    if state.connections.get() > 0 {
        tracing::warn!(
            connections = state.connections.get(),
            "connections still open after the drain timeout"
        );
    }
}

async fn accept_loop(state: &Rc<ShardState>, listener: TcpListener) {
    let shutdown = state.shutdown.clone();
    loop {
        let accept = listener.accept();
        let stop = shutdown.wait();
        futures::pin_mut!(accept, stop);
        match futures::future::select(accept, stop).await {
            futures::future::Either::Left((Ok(stream), _)) => {
                let _ = stream.set_nodelay(true);
                glommio::spawn_local(connection(state.clone(), stream)).detach();
            }
            futures::future::Either::Left((Err(e), _)) => {
                tracing::warn!(error = %e, "accept failed");
                glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
            }
            futures::future::Either::Right(_) => return,
        }
    }
}

/// One half of a socket shared by the reader and writer tasks of a connection.
/// Each poll borrows the stream only for its duration; both tasks run on this
/// shard's thread, so the borrows never overlap.
struct Half(Rc<RefCell<TcpStream>>);

impl AsyncRead for Half {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_read(cx, buf)
    }
}

impl AsyncWrite for Half {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_flush(cx)
    }
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_close(cx)
    }
}

/// Most chunks one `sendmsg` carries (Linux's `IOV_MAX` is 1024).
const MAX_IOVECS: usize = 1024;

/// Writes a response frame. The chunks (encoded fields, and stored record
/// batches as they are, however many) go to the socket in vectored
/// `sendmsg`s of up to [`MAX_IOVECS`] chunks, so record bytes are never
/// copied into a write buffer. The socket is non-blocking (glommio sets
/// `O_NONBLOCK`): when the kernel takes nothing, the rest of the current
/// chunk is written through glommio, which waits until the socket is
/// writable, and vectored sends resume after it.
async fn write_frame(out: &mut Half, chunks: Vec<Bytes>) -> std::io::Result<()> {
    let fd = std::os::fd::AsRawFd::as_raw_fd(&*out.0.borrow());
    // The first chunk not wholly sent, and how much of it was.
    let (mut next, mut done) = (0usize, 0usize);
    while next < chunks.len() {
        let sent = vectored_send(fd, &chunks[next..], done)?;
        if sent == 0 {
            out.write_all(&chunks[next][done..]).await?;
            (next, done) = (next + 1, 0);
            continue;
        }
        let mut left = done + sent;
        while next < chunks.len() && left >= chunks[next].len() {
            left -= chunks[next].len();
            next += 1;
        }
        done = left;
    }
    Ok(())
}

/// One non-blocking `sendmsg` of up to [`MAX_IOVECS`] chunks, the first
/// from byte `skip`; the bytes taken (0 when the socket buffer is full or
/// there is nothing to send).
#[allow(unsafe_code)]
fn vectored_send(fd: std::os::fd::RawFd, chunks: &[Bytes], skip: usize) -> std::io::Result<usize> {
    let iov: Vec<libc::iovec> = chunks
        .iter()
        .enumerate()
        .map(|(i, c)| if i == 0 { &c[skip..] } else { &c[..] })
        .filter(|c| !c.is_empty())
        .take(MAX_IOVECS)
        .map(|c| libc::iovec {
            iov_base: c.as_ptr() as *mut libc::c_void,
            iov_len: c.len(),
        })
        .collect();
    if iov.is_empty() {
        return Ok(0);
    }
    // SAFETY: a zeroed msghdr is valid (no name, no control data); `iov`
    // outlives the call, and each iovec points into a `Bytes` the caller holds.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = iov.len() as _;
    loop {
        // SAFETY: `msg` is initialised above; MSG_NOSIGNAL turns a closed peer into EPIPE, not SIGPIPE.
        let n = unsafe { libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = std::io::Error::last_os_error();
        match e.kind() {
            std::io::ErrorKind::Interrupted => continue,
            std::io::ErrorKind::WouldBlock => return Ok(0),
            _ => return Err(e),
        }
    }
}

/// Counts a connection for the shutdown drain while it lives.
struct Open(Rc<ShardState>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.connections.set(self.0.connections.get() - 1);
    }
}

async fn connection(state: Rc<ShardState>, stream: TcpStream) {
    state.connections.set(state.connections.get() + 1);
    state.metrics.connection_opened();
    let _open = Open(state.clone());
    let shutdown = state.shutdown.clone();
    let peer_addr = stream.peer_addr().ok();
    let peer = peer_addr.map(|a| a.to_string()).unwrap_or_default();
    let peer_host = peer_addr.map(|a| a.ip().to_string()).unwrap_or_default();
    let stream = Rc::new(RefCell::new(stream));
    let mut reader = Half(stream.clone());
    let mut writer = Half(stream);
    let (tx, rx) =
        local_channel::new_bounded::<PendingResponse>(state.config.max_in_flight_per_connection);
    let writer_task = glommio::spawn_local(async move {
        while let Some(pending) = rx.recv().await {
            if let Some(frame) = pending.await {
                if let Err(e) = write_frame(&mut writer, frame).await {
                    tracing::debug!(error = %e, "write failed; closing the connection");
                    return;
                }
            }
        }
    });
    let max = state.config.max_request_bytes;
    loop {
        let mut size = [0u8; 4];
        // On shutdown, stop reading: what was read is still answered below.
        let read = reader.read_exact(&mut size);
        let stop = shutdown.wait();
        futures::pin_mut!(read, stop);
        match futures::future::select(read, stop).await {
            futures::future::Either::Left((Ok(()), _)) => {}
            _ => break,
        }
        let size = i32::from_be_bytes(size);
        if size < 0 || size as usize > max {
            tracing::warn!(%peer, size, max, "request frame size out of bounds (socket.request.max.bytes); closing the connection");
            break;
        }
        let mut frame = BytesMut::zeroed(size as usize);
        if reader.read_exact(&mut frame).await.is_err() {
            break;
        }
        match api::dispatch(&state, frame.freeze(), &peer_host).await {
            Ok(pending) => {
                if tx.send(pending).await.is_err() {
                    break;
                }
            }
            Err(reason) => {
                tracing::warn!(%peer, %reason, "bad request; closing the connection");
                break;
            }
        }
    }
    drop(tx);
    // Answer what was accepted before the connection closed, then let go.
    writer_task.await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// A frame far larger than the socket buffer: the first `sendmsg` takes a
    /// part, glommio writes the rest; the peer must get every byte in order.
    #[test]
    fn vectored_writes_survive_partial_sends() {
        let chunks: Vec<Bytes> = (0..300u32)
            .map(|i| {
                let len = 1 + (i as usize * 7919) % 40_000;
                Bytes::from(
                    (0..len)
                        .map(|j| (i as usize + j) as u8)
                        .collect::<Vec<u8>>(),
                )
            })
            .collect();
        let expected: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let reader = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            let mut got = Vec::new();
            let mut buf = vec![0u8; 4096];
            loop {
                // A slow reader keeps the socket buffer full.
                std::thread::sleep(std::time::Duration::from_micros(50));
                match s.read(&mut buf) {
                    Ok(0) => return got,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e) => panic!("read: {e}"),
                }
            }
        });
        let total = expected.len();
        glommio::LocalExecutorBuilder::default()
            .spawn(move || async move {
                let stream = TcpStream::connect(addr).await.expect("connect");
                let mut half = Half(Rc::new(RefCell::new(stream)));
                write_frame(&mut half, chunks).await.expect("write");
            })
            .expect("executor")
            .join()
            .expect("join");
        let got = reader.join().expect("reader");
        assert_eq!(got.len(), total);
        assert!(got == expected, "bytes differ");
    }

    /// More chunks than one `sendmsg` carries (a fetch of many cached
    /// batches), some empty, to a slow reader: every byte arrives, in order.
    #[test]
    fn frames_of_more_chunks_than_iov_max_arrive_whole() {
        let chunks: Vec<Bytes> = (0..3 * MAX_IOVECS as u32 + 5)
            .map(|i| {
                let len = if i % 97 == 0 {
                    0
                } else {
                    1 + (i as usize * 31) % 700
                };
                Bytes::from(vec![(i % 251) as u8; len])
            })
            .collect();
        let expected: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let reader = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            let mut got = Vec::new();
            let mut buf = vec![0u8; 1024];
            loop {
                std::thread::sleep(std::time::Duration::from_micros(20));
                match s.read(&mut buf) {
                    Ok(0) => return got,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e) => panic!("read: {e}"),
                }
            }
        });
        glommio::LocalExecutorBuilder::default()
            .spawn(move || async move {
                let stream = TcpStream::connect(addr).await.expect("connect");
                let mut half = Half(Rc::new(RefCell::new(stream)));
                write_frame(&mut half, chunks).await.expect("write");
            })
            .expect("executor")
            .join()
            .expect("join");
        let got = reader.join().expect("reader");
        assert_eq!(got.len(), expected.len());
        assert!(got == expected, "bytes differ");
    }
}
