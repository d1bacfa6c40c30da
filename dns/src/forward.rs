//! Forwarding what the directory does not hold to the upstream resolvers: the client's query
//! as it came, to each upstream in turn (UDP, then TCP when the answer was truncated), each
//! within a timeout; no answer from any is the caller's SERVFAIL, never a hang.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::timeout;

/// The largest answer taken from an upstream over UDP (EDNS' common ceiling).
const MAX_UDP: usize = 4096;

#[derive(Clone, Debug)]
pub struct Upstreams {
    pub servers: Vec<SocketAddr>,
    /// Per upstream, for the whole exchange (UDP and a TCP retry).
    pub timeout: Duration,
}

impl Upstreams {
    /// The first answer an upstream gives to `query` (a whole DNS message with id `id`);
    /// None when none answered in time.
    pub async fn forward(&self, query: &[u8], id: u16) -> Option<Message> {
        for server in &self.servers {
            match timeout(self.timeout, exchange(*server, query, id)).await {
                Ok(Ok(answer)) => return Some(answer),
                Ok(Err(e)) => tracing::debug!(%server, "forwarding: {e}"),
                Err(_) => tracing::debug!(%server, "forwarding: no answer in {:?}", self.timeout),
            }
        }
        None
    }
}

async fn exchange(server: SocketAddr, query: &[u8], id: u16) -> io::Result<Message> {
    let answer = udp(server, query, id).await?;
    if !answer.metadata.truncation {
        return Ok(answer);
    }
    tcp(server, query, id).await
}

async fn udp(server: SocketAddr, query: &[u8], id: u16) -> io::Result<Message> {
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await?;
    // Connected: only the upstream's datagrams are read.
    socket.connect(server).await?;
    socket.send(query).await?;
    let mut buf = vec![0; MAX_UDP];
    loop {
        let n = socket.recv(&mut buf).await?;
        // A datagram that is not the answer to this query is ignored, not taken.
        if let Ok(answer) = Message::from_vec(&buf[..n]) {
            if answer.metadata.id == id {
                return Ok(answer);
            }
        }
    }
}

async fn tcp(server: SocketAddr, query: &[u8], id: u16) -> io::Result<Message> {
    let mut stream = TcpStream::connect(server).await?;
    let len = u16::try_from(query.len()).map_err(|_| io::ErrorKind::InvalidInput)?;
    stream.write_all(&len.to_be_bytes()).await?;
    stream.write_all(query).await?;
    let len = stream.read_u16().await? as usize;
    let mut buf = vec![0; len];
    stream.read_exact(&mut buf).await?;
    let answer = Message::from_vec(&buf).map_err(|e| io::Error::other(e.to_string()))?;
    match answer.metadata.id == id {
        true => Ok(answer),
        false => Err(io::Error::other("an answer to another query")),
    }
}
