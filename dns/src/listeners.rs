//! One hickory server per network that serves DNS, bound to its gateways (with IP_FREEBIND:
//! an IPv6 gateway still in duplicate address detection can be bound), started and stopped
//! as the engine's events say networks come and go.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_server::Server;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;
use wasmnet_engine::model::Network;

use crate::handler::Handler;
use crate::Shared;

/// A TCP client that sends nothing for this long is disconnected.
const TCP_IDLE: Duration = Duration::from_secs(5);
/// Retried this often while a network's sockets cannot be bound.
const RETRY: Duration = Duration::from_secs(2);

/// The running servers; dropping this stops them all.
pub struct Listeners {
    task: JoinHandle<()>,
}

impl Drop for Listeners {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Listeners {
    pub(crate) fn start(shared: Arc<Shared>, port: u16) -> Listeners {
        let mut events = shared.engine.subscribe();
        let task = tokio::spawn(async move {
            let mut running: HashMap<String, Server<Handler>> = HashMap::new();
            loop {
                let pending = sync(&shared, port, &mut running);
                let wait = async {
                    match events.recv().await {
                        Err(RecvError::Closed) => false,
                        // Lagged: the next sync reads the whole state anyway.
                        Ok(_) | Err(RecvError::Lagged(_)) => true,
                    }
                };
                let go_on = match pending {
                    true => tokio::time::timeout(RETRY, wait).await.unwrap_or(true),
                    false => wait.await,
                };
                if !go_on {
                    break;
                }
                // One sync covers every event that came meanwhile.
                while events.try_recv().is_ok() {}
            }
        });
        Listeners { task }
    }
}

/// Starts the servers networks lack and stops those of networks gone or no longer serving
/// DNS; true when some network's server could not start (retried later).
fn sync(shared: &Arc<Shared>, port: u16, running: &mut HashMap<String, Server<Handler>>) -> bool {
    let state = shared.engine.state();
    let networks = state.view().networks();
    running.retain(|id, _| networks.get(id).is_some_and(|n| n.options.dns()));
    let mut pending = false;
    for n in networks.iter_from(None).filter(|n| n.options.dns()) {
        if running.contains_key(&n.id) {
            continue;
        }
        match serve(shared, n, port) {
            Ok(server) => {
                running.insert(n.id.clone(), server);
            }
            Err(e) => {
                tracing::warn!(network = %n.name, "DNS server: {e}");
                pending = true;
            }
        }
    }
    pending
}

fn serve(shared: &Arc<Shared>, n: &Network, port: u16) -> io::Result<Server<Handler>> {
    let handler = Handler {
        shared: shared.clone(),
        network: n.id.clone(),
        forward: n.forwards_dns(),
    };
    let mut server = Server::new(handler);
    for ip in n.gateways() {
        let addr = SocketAddr::new(ip, port);
        server.register_socket(tokio::net::UdpSocket::from_std(
            bound(addr, Type::DGRAM)?.into(),
        )?);
        let listener = bound(addr, Type::STREAM)?;
        listener.listen(1024)?;
        server.register_listener(
            tokio::net::TcpListener::from_std(listener.into())?,
            TCP_IDLE,
            64,
        );
    }
    Ok(server)
}

fn bound(addr: SocketAddr, ty: Type) -> io::Result<Socket> {
    let protocol = match ty {
        Type::DGRAM => Protocol::UDP,
        _ => Protocol::TCP,
    };
    let socket = Socket::new(Domain::for_address(addr), ty, Some(protocol))?;
    match addr.ip() {
        IpAddr::V4(_) => socket.set_freebind_v4(true)?,
        IpAddr::V6(_) => {
            socket.set_only_v6(true)?;
            socket.set_freebind_v6(true)?;
        }
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket
        .bind(&addr.into())
        .map_err(|e| io::Error::new(e.kind(), format!("binding {addr}: {e}")))?;
    Ok(socket)
}
