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
