//! Every shard listens on the same port; the kernel spreads connections
//! (`SO_REUSEPORT`, which glommio's `TcpListener::bind` always sets).

use std::io::ErrorKind;
use std::net::SocketAddr;

use glommio::net::TcpListener;
use glommio::GlommioError;

use crate::error::StartError;

/// Binds `addr` on the calling shard, turning the common failures into
/// operator-readable errors that name the port.
pub fn bind_shared(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr).map_err(|e| listen_error(addr, e))
}

fn listen_error(addr: SocketAddr, e: GlommioError<()>) -> StartError {
    if let GlommioError::IoError(io) = &e {
        match io.kind() {
            ErrorKind::AddrInUse => {
                return StartError::AddressInUse {
                    addr,
                    port: addr.port(),
                }
            }
            ErrorKind::PermissionDenied => return StartError::ListenDenied { addr },
            _ => {}
        }
    }
    StartError::Listen {
        addr,
        reason: e.to_string(),
    }
}

/// Binds `addr` for this shard alone: no `SO_REUSEPORT`, so a port another
/// process (or shard) holds is refused instead of silently shared, as
/// glommio's `TcpListener::bind` would. Port 0 picks a free port. Used for
/// the per-shard replication ports, where each port must name one shard.
pub fn bind_exclusive(addr: SocketAddr) -> Result<TcpListener, StartError> {
    let io_error = |e: std::io::Error| listen_error(addr, GlommioError::IoError(e));
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))
        .map_err(io_error)?;
    // Rebinding soon after a restart (TIME_WAIT) is fine; sharing is not.
    socket.set_reuse_address(true).map_err(io_error)?;
    socket.bind(&addr.into()).map_err(io_error)?;
    socket.listen(1024).map_err(io_error)?;
    socket.set_nonblocking(true).map_err(io_error)?;
    Ok(crate::sys::glommio_listener(socket.into()))
}
