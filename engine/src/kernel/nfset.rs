//! Adding and removing addresses in wasmnet's nftables address sets over netlink, in one
//! batch (one transaction), without running `nft`: what an endpoint joining a governed network
//! costs. `nft` must load its cache first — including every element of the set it adds to — so
//! with thousands of endpoints a run takes milliseconds; a netlink batch takes microseconds.
//! Everything else (tables, chains, maps with concatenated keys) stays with `nft`.

use std::net::IpAddr;
use std::time::Duration;

use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};

pub(super) const NFNL_SUBSYS_NFTABLES: u16 = 10;
pub(super) const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
pub(super) const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFT_MSG_NEWGEN: u16 = 15;
const NFT_MSG_GETGEN: u16 = 16;
const NFTA_GEN_ID: u16 = 1;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
pub(super) const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_TIMEOUT: u16 = 4;
pub(super) const NFTA_DATA_VALUE: u16 = 1;
pub(super) const NLA_F_NESTED: u16 = 0x8000;
pub(super) const NLM_F_REQUEST: u16 = 0x1;
pub(super) const NLM_F_ACK: u16 = 0x4;
pub(super) const NLM_F_CREATE: u16 = 0x400;
const NLMSG_ERROR: u16 = 0x2;
pub(super) const NFPROTO_INET: u8 = 1;
pub(super) const AF_UNSPEC: u8 = 0;

/// One address in or out of one set of wasmnet's inet table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Element {
    pub add: bool,
    pub set: String,
    pub addr: IpAddr,
    /// For a set with timeouts: how long the element stays (adding one that is there
    /// already sets its timeout afresh).
    pub timeout: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
#[error("nftables over netlink: {0}")]
pub struct NfsetError(pub(super) String);

pub(super) fn align(n: usize) -> usize {
    (n + 3) & !3
}

/// A netlink attribute; `nested` marks one holding attributes.
pub(super) fn attr(out: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    let len = 4 + payload.len();
    out.extend_from_slice(&(len as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(payload);
    out.resize(align(out.len()), 0);
}

pub(super) fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

/// A message: header, nfgenmsg, then `body` (attributes).
pub(super) fn message(
    out: &mut Vec<u8>,
    kind: u16,
    flags: u16,
    seq: u32,
    family: u8,
    res_id: u16,
    body: &[u8],
) {
    let len = 16 + 4 + body.len();
    out.extend_from_slice(&(len as u32).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.extend_from_slice(&[family, 0]);
    out.extend_from_slice(&res_id.to_be_bytes());
    out.extend_from_slice(body);
}

/// The batch for `elements` in `table`: one message per element, all in one transaction.
pub fn batch(table: &str, elements: &[Element]) -> Vec<u8> {
    let mut out = Vec::new();
    message(
        &mut out,
        NFNL_MSG_BATCH_BEGIN,
        NLM_F_REQUEST,
        0,
        AF_UNSPEC,
        NFNL_SUBSYS_NFTABLES,
        &[],
    );
    for (i, e) in elements.iter().enumerate() {
        let key = match e.addr {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        };
        let mut value = Vec::new();
        attr(&mut value, NFTA_DATA_VALUE, &key);
        let mut elem_key = Vec::new();
        attr(&mut elem_key, NFTA_SET_ELEM_KEY | NLA_F_NESTED, &value);
        if let (Some(t), true) = (e.timeout, e.add) {
            let ms = u64::try_from(t.as_millis()).unwrap_or(u64::MAX);
            attr(&mut elem_key, NFTA_SET_ELEM_TIMEOUT, &ms.to_be_bytes());
        }
        let mut list = Vec::new();
        attr(&mut list, NFTA_LIST_ELEM | NLA_F_NESTED, &elem_key);
        let mut body = Vec::new();
        attr(&mut body, NFTA_SET_ELEM_LIST_TABLE, &cstr(table));
        attr(&mut body, NFTA_SET_ELEM_LIST_SET, &cstr(&e.set));
        attr(&mut body, NFTA_SET_ELEM_LIST_ELEMENTS | NLA_F_NESTED, &list);
        let (kind, flags) = if e.add {
            (NFT_MSG_NEWSETELEM, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE)
        } else {
            (NFT_MSG_DELSETELEM, NLM_F_REQUEST | NLM_F_ACK)
        };
        let kind = (NFNL_SUBSYS_NFTABLES << 8) | kind;
        message(&mut out, kind, flags, i as u32 + 1, NFPROTO_INET, 0, &body);
    }
    let end = elements.len() as u32 + 1;
    message(
        &mut out,
        NFNL_MSG_BATCH_END,
        NLM_F_REQUEST,
        end,
        AF_UNSPEC,
        NFNL_SUBSYS_NFTABLES,
        &[],
    );
    out
}

fn io(what: &str, e: std::io::Error) -> NfsetError {
    NfsetError(format!("{what}: {e}"))
}

/// A netfilter netlink socket, talking to the kernel.
pub(super) fn open() -> Result<Socket, NfsetError> {
    let mut socket = Socket::new(NETLINK_NETFILTER).map_err(|e| io("socket", e))?;
    socket.bind_auto().map_err(|e| io("bind", e))?;
    socket
        .connect(&SocketAddr::new(0, 0))
        .map_err(|e| io("connect", e))?;
    Ok(socket)
}

/// The namespace's nftables generation: bumped by every committed change, anyone's. Equal
/// generations mean an unchanged ruleset, which saves listing it.
pub fn generation() -> Result<u32, NfsetError> {
    let socket = open()?;
    let mut req = Vec::new();
    let kind = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN;
    message(&mut req, kind, NLM_F_REQUEST, 1, AF_UNSPEC, 0, &[]);
    socket.send(&req, 0).map_err(|e| io("send", e))?;
    let mut buf = Vec::with_capacity(4096);
    let n = socket.recv(&mut buf, 0).map_err(|e| io("recv", e))?;
    parse_generation(&buf[..n.min(buf.len())])
        .ok_or_else(|| NfsetError("no generation in the kernel's answer".into()))
}

/// The generation id out of an NFT_MSG_NEWGEN message (header, nfgenmsg, attributes).
fn parse_generation(msg: &[u8]) -> Option<u32> {
    let kind = u16::from_ne_bytes(msg.get(4..6)?.try_into().ok()?);
    if kind != (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN {
        return None;
    }
    let mut at = 20;
    while at + 4 <= msg.len() {
        let len = u16::from_ne_bytes(msg[at..at + 2].try_into().ok()?) as usize;
        let attr = u16::from_ne_bytes(msg[at + 2..at + 4].try_into().ok()?) & !NLA_F_NESTED;
        if attr == NFTA_GEN_ID && len == 8 {
            return Some(u32::from_be_bytes(
                msg.get(at + 4..at + 8)?.try_into().ok()?,
            ));
        }
        at += align(len.max(4));
    }
    None
}

/// Applies `elements` to sets of `table` (inet family) in one transaction; the first error the
/// kernel reports (with the set it concerns) is the error.
pub fn apply(table: &str, elements: &[Element]) -> Result<(), NfsetError> {
    if elements.is_empty() {
        return Ok(());
    }
    let socket = open()?;
    let describe = |i: usize| {
        elements.get(i).map_or(String::new(), |e| {
            let verb = if e.add { "adding" } else { "deleting" };
            format!(" ({verb} {} in set {})", e.addr, e.set)
        })
    };
    // Deleting what is not there (after a restart rebuilt the set) is done already.
    let done_already =
        |i: usize, code: i32| code == -libc_enoent() && elements.get(i).is_some_and(|e| !e.add);
    send_acked(
        &socket,
        &batch(table, elements),
        elements.len(),
        describe,
        done_already,
    )
}

/// Sends a batch of `count` acknowledged messages (sequence numbers 1..=count) and waits for
/// every acknowledgement; the first error the kernel reports is the error, said with
/// `describe(i)` of the i-th message, unless `tolerated(i, code)`.
pub(super) fn send_acked(
    socket: &Socket,
    batch: &[u8],
    count: usize,
    describe: impl Fn(usize) -> String,
    tolerated: impl Fn(usize, i32) -> bool,
) -> Result<(), NfsetError> {
    socket.send(batch, 0).map_err(|e| io("send", e))?;
    let mut acked = 0;
    while acked < count {
        let mut buf = Vec::with_capacity(1 << 16);
        let n = socket.recv(&mut buf, 0).map_err(|e| io("recv", e))?;
        let mut at = 0;
        while at + 16 <= n.min(buf.len()) {
            let len = u32::from_ne_bytes(buf[at..at + 4].try_into().expect("4 bytes")) as usize;
            let kind = u16::from_ne_bytes(buf[at + 4..at + 6].try_into().expect("2 bytes"));
            let seq = u32::from_ne_bytes(buf[at + 8..at + 12].try_into().expect("4 bytes"));
            if len < 16 {
                return Err(NfsetError("a malformed answer".into()));
            }
            if kind == NLMSG_ERROR && at + 20 <= buf.len() {
                let code = i32::from_ne_bytes(buf[at + 16..at + 20].try_into().expect("4 bytes"));
                let i = (seq as usize).wrapping_sub(1);
                if code != 0 && !tolerated(i, code) {
                    return Err(NfsetError(format!(
                        "{}{}",
                        std::io::Error::from_raw_os_error(-code),
                        describe(i)
                    )));
                }
                acked += 1;
            }
            at += align(len);
        }
    }
    Ok(())
}

fn libc_enoent() -> i32 {
    nix::errno::Errno::ENOENT as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_ids_are_read_from_newgen_messages() {
        let mut attrs = Vec::new();
        attr(&mut attrs, NFTA_GEN_ID, &7u32.to_be_bytes());
        let mut msg = Vec::new();
        let newgen = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN;
        message(&mut msg, newgen, 0, 1, AF_UNSPEC, 0, &attrs);
        assert_eq!(parse_generation(&msg), Some(7));
        let mut other = Vec::new();
        message(&mut other, NLMSG_ERROR, 0, 1, AF_UNSPEC, 0, &attrs);
        assert_eq!(parse_generation(&other), None);
    }

    #[test]
    fn a_batch_is_begin_element_end() {
        let b = batch(
            "wasmnet",
            &[Element {
                add: true,
                set: "g_1_4".into(),
                addr: "10.1.0.2".parse().unwrap(),
                timeout: None,
            }],
        );
        // begin (20 bytes), the element message, end (20 bytes)
        assert_eq!(u32::from_ne_bytes(b[0..4].try_into().unwrap()), 20);
        assert_eq!(
            u16::from_ne_bytes(b[4..6].try_into().unwrap()),
            NFNL_MSG_BATCH_BEGIN
        );
        let len = u32::from_ne_bytes(b[20..24].try_into().unwrap()) as usize;
        assert_eq!(
            u16::from_ne_bytes(b[24..26].try_into().unwrap()),
            (10 << 8) | 12
        );
        assert_eq!(b.len(), 20 + len + 20);
        assert!(
            b.windows(4).any(|w| w == [10, 1, 0, 2]),
            "the key, in network order"
        );
        assert!(b.windows(8).any(|w| w == b"wasmnet\0"));
    }
}
