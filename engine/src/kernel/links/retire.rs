//! Deleting links behind the answer. Deleting a veth or a bridge costs the kernel an RCU grace
//! period per request (~19 ms a veth, ~30 ms a bridge here), deleting many in one request about
//! the same as one. So a disconnect *retires* its veth — the container end renamed out of the
//! way and down, the host end down, both unreachable at once — into a link group of wasmnet's,
//! and a reaper deletes the whole group in one request moments later. A crash in between
//! leaves retired links the reconciler reaps at the next start.

use std::path::Path;

use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use rtnetlink::{Handle, LinkUnspec};

use super::{fail, index_of, is_errno, Links, ENODEV};
use crate::kernel::netns::netlink_in;
use crate::kernel::KResult;

/// The link group retired links wait in (`ip link show group 0x776e6474`): an arbitrary
/// number, unlikely to be anyone else's ("wndt").
pub const RETIRED_GROUP: u32 = 0x776e_6474;

/// The name a retired container end takes in its sandbox: out of the way of the next
/// endpoint's `eth0`.
pub fn retired_name(host_name: &str) -> String {
    let tail: String = host_name.chars().skip(3).take(12).collect();
    format!("wnr{tail}")
}

/// Puts link `index` down and in the retired group, renamed to `rename` if given.
async fn retire(h: &Handle, index: u32, rename: Option<String>, what: &str) -> KResult<()> {
    let mut msg = LinkUnspec::new_with_index(index).down();
    if let Some(name) = rename {
        msg = msg.name(name);
    }
    let msg = msg
        .append_extra_attribute(LinkAttribute::Group(RETIRED_GROUP))
        .build();
    h.link()
        .set(msg)
        .execute()
        .await
        .map_err(fail(format!("retiring {what}")))
}

impl Links {
    /// Retires an endpoint's veth pair: its container end `ifname` in the namespace at
    /// `inside` (when given and still there) renamed and down, its host end `host_name` down
    /// and in the retired group. Already gone is fine.
    pub async fn retire_veth(&self, host_name: &str, inside: Option<(&Path, &str)>) -> KResult<()> {
        if let Some((netns, ifname)) = inside.filter(|(p, _)| p.exists()) {
            let h = netlink_in(netns, &[]).await?;
            if let Some(i) = index_of(&h, ifname).await? {
                let what = format!("{ifname} in {}", netns.display());
                retire(&h, i, Some(retired_name(host_name)), &what).await?;
            }
        }
        self.retire_link(host_name).await
    }

    /// Retires a link of the daemon's namespace (a veth's host end, a bridge).
    pub async fn retire_link(&self, name: &str) -> KResult<()> {
        self.bridge_cache().remove(name);
        match index_of(&self.host, name).await? {
            Some(i) => retire(&self.host, i, None, name).await,
            None => Ok(()),
        }
    }

    /// Deletes every retired link of the daemon's namespace in one request.
    pub async fn reap_retired(&self) -> KResult<()> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::Group(RETIRED_GROUP));
        match self.host.link().del_with_message(msg).execute().await {
            Err(e) if is_errno(&e, ENODEV) => Ok(()),
            r => r.map_err(fail("deleting the retired links")),
        }
    }
}
