//! New address sets and `same-group` rules in wasmnet's inet table over netlink, in one batch
//! (one transaction), without running `nft`: what a join bringing a new group costs. `nft`
//! reads every set of the table into its cache before any change (9 ms with 2,000 sets,
//! whatever the change), so under a policy that gives each endpoint a group of its own, `nft`
//! made every join slower than the one before. Only the simple shape is sent this way (both
//! ends in one set, the destination on one bridge, a counter, accept or drop); everything
//! else stays with `nft`.

use super::nfset::{
    attr, cstr, message, open, send_acked, NfsetError, AF_UNSPEC, NFNL_MSG_BATCH_BEGIN,
    NFNL_MSG_BATCH_END, NFNL_SUBSYS_NFTABLES, NFPROTO_INET, NFTA_DATA_VALUE, NFTA_LIST_ELEM,
    NLA_F_NESTED, NLM_F_ACK, NLM_F_CREATE, NLM_F_REQUEST,
};

const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_NEWSET: u16 = 9;
const NLM_F_APPEND: u16 = 0x800;
const NFTA_SET_TABLE: u16 = 1;
const NFTA_SET_NAME: u16 = 2;
const NFTA_SET_KEY_TYPE: u16 = 4;
const NFTA_SET_KEY_LEN: u16 = 5;
const NFTA_SET_ID: u16 = 10;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFT_REG_VERDICT: u32 = 0;
const NFT_REG_1: u32 = 1;
const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
const NFT_META_OIFNAME: u32 = 7;
const NFT_META_NFPROTO: u32 = 15;
const NFT_CMP_EQ: u32 = 0;
const NFPROTO_IPV4: u8 = 2;
const NFPROTO_IPV6: u8 = 10;
/// nft's datatype ids, which `nft list` reads back as `type ipv4_addr` / `ipv6_addr`.
const TYPE_IPADDR: u32 = 7;
const TYPE_IP6ADDR: u32 = 8;
const NF_DROP: u32 = 0;
const NF_ACCEPT: u32 = 1;
const IFNAMSIZ: usize = 16;

/// An empty address set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewSet {
    pub name: String,
    pub v6: bool,
}

/// `ip[6] saddr @set ip[6] daddr @set oifname "<oifname>" counter accept|drop`, appended to
/// `chain`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SameSetRule {
    pub chain: String,
    pub set: String,
    pub v6: bool,
    pub oifname: String,
    pub accept: bool,
}

pub(super) fn be(v: u32) -> [u8; 4] {
    v.to_be_bytes()
}

/// One expression of a rule: its name and attributes.
pub(super) fn expr(out: &mut Vec<u8>, name: &str, data: &[u8]) {
    let mut e = Vec::new();
    attr(&mut e, NFTA_EXPR_NAME, &cstr(name));
    attr(&mut e, NFTA_EXPR_DATA | NLA_F_NESTED, data);
    attr(out, NFTA_LIST_ELEM | NLA_F_NESTED, &e);
}

pub(super) fn attrs(pairs: &[(u16, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (kind, payload) in pairs {
        attr(&mut out, *kind, payload);
    }
    out
}

/// `reg1 == value`.
pub(super) fn cmp(out: &mut Vec<u8>, value: &[u8]) {
    let mut data = Vec::new();
    attr(&mut data, NFTA_DATA_VALUE, value);
    let body = attrs(&[(1, &be(NFT_REG_1)), (2, &be(NFT_CMP_EQ))]);
    let mut body = body;
    attr(&mut body, 3 | NLA_F_NESTED, &data);
    expr(out, "cmp", &body);
}

pub(super) fn meta(out: &mut Vec<u8>, key: u32) {
    expr(out, "meta", &attrs(&[(1, &be(NFT_REG_1)), (2, &be(key))]));
}

/// Loads `len` bytes of the network header at `offset`, then looks them up in `set`.
fn lookup(out: &mut Vec<u8>, offset: u32, len: u32, set: &str, set_id: Option<u32>) {
    let payload = attrs(&[
        (1, &be(NFT_REG_1)),
        (2, &be(NFT_PAYLOAD_NETWORK_HEADER)),
        (3, &be(offset)),
        (4, &be(len)),
    ]);
    expr(out, "payload", &payload);
    let mut body = attrs(&[(1, &cstr(set)), (2, &be(NFT_REG_1))]);
    if let Some(id) = set_id {
        attr(&mut body, 4, &be(id));
    }
    expr(out, "lookup", &body);
}

/// The expressions of a rule, as nft itself would encode it.
fn expressions(r: &SameSetRule, set_id: Option<u32>) -> Vec<u8> {
    let mut out = Vec::new();
    meta(&mut out, NFT_META_NFPROTO);
    cmp(&mut out, &[if r.v6 { NFPROTO_IPV6 } else { NFPROTO_IPV4 }]);
    let (saddr, daddr, len) = if r.v6 { (8, 24, 16) } else { (12, 16, 4) };
    lookup(&mut out, saddr, len, &r.set, set_id);
    lookup(&mut out, daddr, len, &r.set, set_id);
    meta(&mut out, NFT_META_OIFNAME);
    let mut name = r.oifname.as_bytes().to_vec();
    name.resize(IFNAMSIZ, 0);
    cmp(&mut out, &name);
    expr(&mut out, "counter", &[]);
    let mut code = Vec::new();
    attr(
        &mut code,
        NFTA_VERDICT_CODE,
        &be(if r.accept { NF_ACCEPT } else { NF_DROP }),
    );
    let mut verdict = Vec::new();
    attr(&mut verdict, NFTA_DATA_VERDICT | NLA_F_NESTED, &code);
    let mut body = attrs(&[(1, &be(NFT_REG_VERDICT))]);
    attr(&mut body, 2 | NLA_F_NESTED, &verdict);
    expr(&mut out, "immediate", &body);
    out
}

/// The batch: the sets (ids 1…), then the rules (which find new sets by id), one transaction.
pub fn batch(table: &str, sets: &[NewSet], rules: &[SameSetRule]) -> Vec<u8> {
    let mut out = Vec::new();
    let (begin, end) = (NFNL_MSG_BATCH_BEGIN, NFNL_MSG_BATCH_END);
    message(
        &mut out,
        begin,
        NLM_F_REQUEST,
        0,
        AF_UNSPEC,
        NFNL_SUBSYS_NFTABLES,
        &[],
    );
    let flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE;
    let mut seq = 0;
    for (i, s) in sets.iter().enumerate() {
        let (kind, len) = if s.v6 {
            (TYPE_IP6ADDR, 16)
        } else {
            (TYPE_IPADDR, 4)
        };
        let body = attrs(&[
            (NFTA_SET_TABLE, &cstr(table)),
            (NFTA_SET_NAME, &cstr(&s.name)),
            (NFTA_SET_KEY_TYPE, &be(kind)),
            (NFTA_SET_KEY_LEN, &be(len)),
            (NFTA_SET_ID, &be(i as u32 + 1)),
        ]);
        seq += 1;
        let kind = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWSET;
        message(&mut out, kind, flags, seq, NFPROTO_INET, 0, &body);
    }
    for r in rules {
        let id = sets
            .iter()
            .position(|s| s.name == r.set)
            .map(|i| i as u32 + 1);
        let mut body = attrs(&[
            (NFTA_RULE_TABLE, &cstr(table)),
            (NFTA_RULE_CHAIN, &cstr(&r.chain)),
        ]);
        attr(
            &mut body,
            NFTA_RULE_EXPRESSIONS | NLA_F_NESTED,
            &expressions(r, id),
        );
        seq += 1;
        let kind = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWRULE;
        message(
            &mut out,
            kind,
            flags | NLM_F_APPEND,
            seq,
            NFPROTO_INET,
            0,
            &body,
        );
    }
    message(
        &mut out,
        end,
        NLM_F_REQUEST,
        seq + 1,
        AF_UNSPEC,
        NFNL_SUBSYS_NFTABLES,
        &[],
    );
    out
}

/// Adds `sets` and appends `rules` in `table` (inet family), in one transaction.
pub fn add(table: &str, sets: &[NewSet], rules: &[SameSetRule]) -> Result<(), NfsetError> {
    if sets.is_empty() && rules.is_empty() {
        return Ok(());
    }
    let socket = open()?;
    let describe = |i: usize| match sets.get(i) {
        Some(s) => format!(" (adding set {})", s.name),
        None => rules.get(i - sets.len()).map_or(String::new(), |r| {
            format!(" (adding a rule to chain {})", r.chain)
        }),
    };
    let count = sets.len() + rules.len();
    send_acked(
        &socket,
        &batch(table, sets, rules),
        count,
        describe,
        |_, _| false,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_set_and_its_rule_are_one_batch() {
        let sets = [NewSet {
            name: "g_1_web_4".into(),
            v6: false,
        }];
        let rules = [SameSetRule {
            chain: "pol_1_a_sg0_4".into(),
            set: "g_1_web_4".into(),
            v6: false,
            oifname: "wnbraaaaaaaaaaa".into(),
            accept: true,
        }];
        let b = batch("wasmnet", &sets, &rules);
        let kinds: Vec<u16> = messages(&b).iter().map(|m| m.1).collect();
        let sub = |k| (NFNL_SUBSYS_NFTABLES << 8) | k;
        assert_eq!(
            kinds,
            [
                NFNL_MSG_BATCH_BEGIN,
                sub(NFT_MSG_NEWSET),
                sub(NFT_MSG_NEWRULE),
                NFNL_MSG_BATCH_END
            ]
        );
        for needle in [
            &b"g_1_web_4\0"[..],
            b"pol_1_a_sg0_4\0",
            b"lookup\0",
            b"wnbraaaaaaaaaaa\0",
        ] {
            assert!(b.windows(needle.len()).any(|w| w == needle), "{needle:?}");
        }
    }

    /// (length, kind) of each message of a batch.
    fn messages(b: &[u8]) -> Vec<(usize, u16)> {
        let mut out = Vec::new();
        let mut at = 0;
        while at + 6 <= b.len() {
            let len = u32::from_ne_bytes(b[at..at + 4].try_into().unwrap()) as usize;
            out.push((
                len,
                u16::from_ne_bytes(b[at + 4..at + 6].try_into().unwrap()),
            ));
            at += len;
        }
        out
    }
}
