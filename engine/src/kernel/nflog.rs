//! wasmnet's NFLOG group read over netlink (nfnetlink_log), in-process — no ulogd, no kernel
//! log: each packet a flow rule logged arrives with the rule's prefix and its first bytes.

use std::io;

use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_netfilter::nflog::{
    config_request, ConfigCmd, ConfigMode, PacketNla, ULogMessage,
};
use netlink_packet_netfilter::{NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily};
use netlink_sys::{constants::NETLINK_NETFILTER, Socket};

/// Bytes of each packet copied: the IP header and the transport ports, with room for IPv6.
const COPY_RANGE: u32 = 128;

/// One logged packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Logged {
    pub prefix: String,
    pub payload: Vec<u8>,
}

/// Starts a thread reading `socket` (see `bind`), handing each logged packet to `deliver`
/// until it returns false.
pub fn spawn(
    socket: Socket,
    mut deliver: impl FnMut(Logged) -> bool + Send + 'static,
) -> io::Result<()> {
    std::thread::Builder::new()
        .name("wasmnet-nflog".into())
        .spawn(move || {
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = match socket.recv(&mut &mut buf[..], 0) {
                    Ok(n) => n,
                    // The socket's buffer overflowed: packets were lost, reading goes on.
                    Err(e) if e.raw_os_error() == Some(nix::libc::ENOBUFS) => continue,
                    Err(e) => {
                        tracing::warn!(error = %e, "reading the flow log; flows stop");
                        return;
                    }
                };
                for logged in packets(&buf[..n]) {
                    if !deliver(logged) {
                        return;
                    }
                }
            }
        })?;
    Ok(())
}

/// A socket bound to NFLOG `group`. Fails when the group cannot be bound (no
/// nfnetlink_log, another listener has it, no permission).
pub fn bind(group: u16) -> io::Result<Socket> {
    let mut socket = Socket::new(NETLINK_NETFILTER)?;
    socket.bind_auto()?;
    // Room for bursts: what does not fit is lost (ENOBUFS), never blocks the kernel.
    socket.set_rx_buf_sz(1 << 20)?;
    let nlas = vec![
        ConfigCmd::Bind.into(),
        ConfigMode::new_packet(COPY_RANGE).into(),
    ];
    let mut req = config_request(NetfilterProtoFamily::Unspec, group, nlas);
    req.finalize();
    let mut out = vec![0; req.header.length as usize];
    req.serialize(&mut out[..]);
    socket.send(&out, 0)?;
    let mut buf = vec![0u8; 4096];
    let n = socket.recv(&mut &mut buf[..], 0)?;
    let ack = <NetlinkMessage<NetfilterMessage>>::deserialize(&buf[..n])
        .map_err(|e| io::Error::other(format!("binding NFLOG group {group}: {e}")))?;
    match ack.payload {
        NetlinkPayload::Error(e) if e.code.is_some() => Err(io::Error::other(format!(
            "binding NFLOG group {group}: {}",
            e.to_io()
        ))),
        _ => Ok(socket),
    }
}

/// The logged packets in one read (several netlink messages).
fn packets(mut bytes: &[u8]) -> Vec<Logged> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let Ok(msg) = <NetlinkMessage<NetfilterMessage>>::deserialize(bytes) else {
            break;
        };
        let len = (msg.header.length as usize + 3) & !3;
        if let Some(l) = logged(&msg) {
            out.push(l);
        }
        if len == 0 || len > bytes.len() {
            break;
        }
        bytes = &bytes[len..];
    }
    out
}

fn logged(msg: &NetlinkMessage<NetfilterMessage>) -> Option<Logged> {
    let NetlinkPayload::InnerMessage(NetfilterMessage {
        inner: NetfilterMessageInner::ULog(ULogMessage::Packet(nlas)),
        ..
    }) = &msg.payload
    else {
        return None;
    };
    let (mut prefix, mut payload) = (None, None);
    for nla in nlas {
        match nla {
            PacketNla::Prefix(p) => prefix = Some(p.to_string_lossy().into_owned()),
            PacketNla::Payload(p) => payload = Some(p.clone()),
            _ => {}
        }
    }
    Some(Logged {
        prefix: prefix?,
        payload: payload?,
    })
}
