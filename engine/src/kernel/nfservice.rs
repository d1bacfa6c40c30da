//! A service's chain rewritten over netlink, with its hairpin elements, in one batch (one
//! transaction), without running `nft`: what a backend joining or leaving a service costs.
//! `nft` loads every rule of the table before it flushes a chain (30 ms with 1,000 services'
//! chains), so every connect of a backend paid that; a batch takes microseconds. Encoded as
//! `nft --debug=netlink` shows nft encoding the same rules:
//!
//! ```text
//! [ meta load l4proto => reg 1 ]  [ cmp eq reg 1 6 ]
//! [ payload load 2b @ transport header + 2 => reg 1 ]  [ cmp eq reg 1 <port> ]
//! [ counter ]
//! [ numgen reg 1 = random mod N ]        (or: nfproto, saddr => reg 2, jhash(reg 2) % N)
//! [ lookup reg 1 set __map%d dreg 1 ]    (an anonymous map i : addr . port, in the batch)
//! [ nat dnat ip addr_min reg 1 proto_min reg 9 ]   (ip6: proto_min reg 2)
//! ```

use std::net::IpAddr;

use super::nfrules::{attrs, be, cmp, expr, meta};
use super::nfset::{
    attr, cstr, message, open, send_acked, NfsetError, AF_UNSPEC, NFNL_MSG_BATCH_BEGIN,
    NFNL_MSG_BATCH_END, NFNL_SUBSYS_NFTABLES, NFPROTO_INET, NFTA_DATA_VALUE, NFTA_LIST_ELEM,
    NLA_F_NESTED, NLM_F_ACK, NLM_F_CREATE, NLM_F_REQUEST,
};

const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_DELRULE: u16 = 8;
const NFT_MSG_NEWSET: u16 = 9;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
const NLM_F_APPEND: u16 = 0x800;
const NFT_META_L4PROTO: u32 = 16;
const NFT_META_NFPROTO: u32 = 15;
const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
const NFT_PAYLOAD_TRANSPORT_HEADER: u32 = 2;
/// Anonymous, constant, a map.
const SET_FLAGS: u32 = 0x1 | 0x2 | 0x8;
/// nft's datatypes: integer (numgen's), and the concatenations addr . inet_service.
const TYPE_INTEGER: u32 = 4;
const TYPE_ADDR_PORT4: u32 = (7 << 6) | 13;
const TYPE_ADDR_PORT6: u32 = (8 << 6) | 13;

/// One port of a service: DNAT to one of `to` on `port` (`proto`'s number, `dport` the
/// service's port), at random or by a hash of the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PickRule {
    pub v6: bool,
    pub proto: u8,
    pub dport: u16,
    pub to: Vec<IpAddr>,
    pub port: u16,
    pub affinity: bool,
}

/// A service chain's new rules (replacing all it had), and hairpin elements `a . a` to add
/// or delete in the named sets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceChange {
    pub chains: Vec<(String, Vec<PickRule>)>,
    /// (add, set, address).
    pub hairpin: Vec<(bool, String, IpAddr)>,
}

fn octets(a: &IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

fn value(bytes: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    attr(&mut v, NFTA_DATA_VALUE, bytes);
    v
}

/// The rule's expressions; the anonymous map is set `set_id` of the batch.
fn rule_expressions(r: &PickRule, set_id: u32) -> Vec<u8> {
    let mut out = Vec::new();
    meta(&mut out, NFT_META_L4PROTO);
    cmp(&mut out, &[r.proto]);
    let load = attrs(&[
        (1, &be(1)),
        (2, &be(NFT_PAYLOAD_TRANSPORT_HEADER)),
        (3, &be(2)),
        (4, &be(2)),
    ]);
    expr(&mut out, "payload", &load);
    cmp(&mut out, &r.dport.to_be_bytes());
    expr(&mut out, "counter", &[]);
    let n = be(r.to.len() as u32);
    if r.affinity {
        meta(&mut out, NFT_META_NFPROTO);
        cmp(&mut out, &[if r.v6 { 10 } else { 2 }]);
        let (offset, len) = if r.v6 { (8, 16) } else { (12, 4) };
        let load = attrs(&[
            (1, &be(2)),
            (2, &be(NFT_PAYLOAD_NETWORK_HEADER)),
            (3, &be(offset)),
            (4, &be(len)),
        ]);
        expr(&mut out, "payload", &load);
        let hash = attrs(&[
            (1, &be(2)),
            (2, &be(1)),
            (3, &be(len)),
            (4, &n),
            (5, &be(0x5eed)),
            (7, &be(0)),
        ]);
        expr(&mut out, "hash", &hash);
    } else {
        expr(
            &mut out,
            "numgen",
            &attrs(&[(1, &be(1)), (2, &n), (3, &be(1))]),
        );
    }
    let lookup = attrs(&[
        (1, &cstr("__map%d")),
        (2, &be(1)),
        (3, &be(1)),
        (4, &be(set_id)),
    ]);
    expr(&mut out, "lookup", &lookup);
    let (family, proto_reg) = if r.v6 { (10u32, 2u32) } else { (2, 9) };
    let nat = attrs(&[
        (1, &be(1)),
        (2, &be(family)),
        (3, &be(1)),
        (5, &be(proto_reg)),
        (7, &be(3)),
    ]);
    expr(&mut out, "nat", &nat);
    out
}

/// The anonymous map `i : to[i] . port` as batch set `set_id`: the set, then its elements.
fn anonymous_map(out: &mut Vec<u8>, table: &str, r: &PickRule, set_id: u32, seq: &mut u32) {
    let (kind, len) = match r.v6 {
        true => (TYPE_ADDR_PORT6, 20),
        false => (TYPE_ADDR_PORT4, 8),
    };
    let mut desc = Vec::new();
    attr(&mut desc, 1, &be(r.to.len() as u32));
    let mut body = attrs(&[
        (1, &cstr(table)),
        (2, &cstr("__map%d")),
        (3, &be(SET_FLAGS)),
        (4, &be(TYPE_INTEGER)),
        (5, &be(4)),
        (6, &be(kind)),
        (7, &be(len)),
        (10, &be(set_id)),
    ]);
    attr(&mut body, 9 | NLA_F_NESTED, &desc);
    *seq += 1;
    let flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE;
    message(
        out,
        sub(NFT_MSG_NEWSET),
        flags,
        *seq,
        NFPROTO_INET,
        0,
        &body,
    );
    let mut list = Vec::new();
    for (i, a) in r.to.iter().enumerate() {
        let mut data = octets(a);
        data.extend_from_slice(&r.port.to_be_bytes());
        data.resize(len as usize, 0);
        let mut elem = Vec::new();
        attr(
            &mut elem,
            1 | NLA_F_NESTED,
            &value(&(i as u32).to_ne_bytes()),
        );
        attr(&mut elem, 2 | NLA_F_NESTED, &value(&data));
        attr(&mut list, NFTA_LIST_ELEM | NLA_F_NESTED, &elem);
    }
    let mut body = Vec::new();
    attr(&mut body, 1, &cstr(table));
    attr(&mut body, 2, &cstr("__map%d"));
    attr(&mut body, 4, &be(set_id));
    attr(&mut body, 3 | NLA_F_NESTED, &list);
    *seq += 1;
    message(
        out,
        sub(NFT_MSG_NEWSETELEM),
        flags,
        *seq,
        NFPROTO_INET,
        0,
        &body,
    );
}

fn sub(kind: u16) -> u16 {
    (NFNL_SUBSYS_NFTABLES << 8) | kind
}

/// The batch: per chain, its rules deleted and the new ones appended (each after its map);
/// then the hairpin elements. One transaction. Returns it and its message count.
pub fn batch(table: &str, change: &ServiceChange) -> (Vec<u8>, usize) {
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
    let (mut seq, mut set_id) = (0u32, 0u32);
    let flags = NLM_F_REQUEST | NLM_F_ACK;
    for (chain, rules) in &change.chains {
        let body = attrs(&[(1, &cstr(table)), (2, &cstr(chain))]);
        seq += 1;
        message(
            &mut out,
            sub(NFT_MSG_DELRULE),
            flags,
            seq,
            NFPROTO_INET,
            0,
            &body,
        );
        for r in rules.iter().filter(|r| !r.to.is_empty()) {
            set_id += 1;
            anonymous_map(&mut out, table, r, set_id, &mut seq);
            let mut body = attrs(&[(1, &cstr(table)), (2, &cstr(chain))]);
            attr(&mut body, 4 | NLA_F_NESTED, &rule_expressions(r, set_id));
            seq += 1;
            let f = flags | NLM_F_CREATE | NLM_F_APPEND;
            message(
                &mut out,
                sub(NFT_MSG_NEWRULE),
                f,
                seq,
                NFPROTO_INET,
                0,
                &body,
            );
        }
    }
    for (add, set, a) in &change.hairpin {
        let key = [octets(a), octets(a)].concat();
        let mut elem = Vec::new();
        attr(&mut elem, 1 | NLA_F_NESTED, &value(&key));
        let mut list = Vec::new();
        attr(&mut list, NFTA_LIST_ELEM | NLA_F_NESTED, &elem);
        let mut body = Vec::new();
        attr(&mut body, 1, &cstr(table));
        attr(&mut body, 2, &cstr(set));
        attr(&mut body, 3 | NLA_F_NESTED, &list);
        let (kind, f) = match add {
            true => (NFT_MSG_NEWSETELEM, flags | NLM_F_CREATE),
            false => (NFT_MSG_DELSETELEM, flags),
        };
        seq += 1;
        message(&mut out, sub(kind), f, seq, NFPROTO_INET, 0, &body);
    }
    message(
        &mut out,
        NFNL_MSG_BATCH_END,
        NLM_F_REQUEST,
        seq + 1,
        AF_UNSPEC,
        NFNL_SUBSYS_NFTABLES,
        &[],
    );
    (out, seq as usize)
}

/// Applies `change` to `table` (inet family), in one transaction.
pub fn apply(table: &str, change: &ServiceChange) -> Result<(), NfsetError> {
    if change.chains.is_empty() && change.hairpin.is_empty() {
        return Ok(());
    }
    let socket = open()?;
    let (bytes, count) = batch(table, change);
    send_acked(
        &socket,
        &bytes,
        count,
        |_| " (changing a service)".to_string(),
        |_, _| false,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_is_flushed_then_each_rule_follows_its_map() {
        let change = ServiceChange {
            chains: vec![(
                "svc_1".into(),
                vec![PickRule {
                    v6: false,
                    proto: 6,
                    dport: 80,
                    to: vec!["10.1.0.2".parse().unwrap(), "10.1.0.3".parse().unwrap()],
                    port: 8080,
                    affinity: false,
                }],
            )],
            hairpin: vec![(true, "svc_hairpin4".into(), "10.1.0.3".parse().unwrap())],
        };
        let (b, count) = batch("wasmnet", &change);
        assert_eq!(count, 5, "delrule, newset, newsetelem, newrule, newsetelem");
        for needle in [
            &b"__map%d\0"[..],
            b"numgen\0",
            b"nat\0",
            b"svc_hairpin4\0",
            &[10, 1, 0, 3, 10, 1, 0, 3],
        ] {
            assert!(b.windows(needle.len()).any(|w| w == needle), "{needle:?}");
        }
        let target = [10, 1, 0, 2, 0x1f, 0x90, 0, 0];
        assert!(
            b.windows(8).any(|w| w == target),
            "10.1.0.2 . 8080 as nft encodes it"
        );
    }
}
