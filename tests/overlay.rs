//! The overlay's dataplane on the real kernel, without a cluster store yet: two test hosts on
//! an underlay bridge, each with a network bridge and a VXLAN device, and a sandbox on each.
//! Remote endpoints are programmed statically (forwarding entry + neighbour on the VXLAN
//! device), so the sandboxes reach each other across hosts with no learning and no flooding.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use common::net::{ping, stdout_in};
use common::{in_netns, sh};
use wasmnet_engine::kernel::{IfAddr, Links, VethSpec, VxlanSpec};

/// A namespace made for this test, deleted (with what is in it) when dropped.
struct Ns(String);

impl Ns {
    fn new(tag: &str) -> Ns {
        let name = format!("wnovl-{tag}-{}", std::process::id());
        sh(&["ip", "netns", "add", &name]);
        Ns(name)
    }
    fn path(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.0))
    }
    fn run(&self, args: &[&str]) {
        let mut all = vec!["ip", "netns", "exec", &self.0];
        all.extend_from_slice(args);
        sh(&all);
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .status();
    }
}

const MAC_A: [u8; 6] = [0x02, 0x42, 0x0a, 0x3c, 0x00, 0x02];
const MAC_B: [u8; 6] = [0x02, 0x42, 0x0a, 0x3c, 0x00, 0x03];

/// Plumbs one host through wasmnet's kernel layer: bridge, VXLAN on the underlay, a sandbox,
/// and the other host's endpoint as a remote.
fn plumb(host: &Ns, sandbox: &Ns, me: (u8, [u8; 6]), peer: (u8, [u8; 6])) {
    let sandbox = sandbox.path();
    in_netns(host.path(), move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let links = Links::new().unwrap();
            let gw = IfAddr {
                addr: "10.60.0.1".parse().unwrap(),
                prefix: 24,
            };
            links
                .ensure_bridge("wnbrovl", [0x02, 0x42, 0, 0, 0, me.0], Some(1450), &[gw])
                .await
                .unwrap();
            let vxlan = VxlanSpec {
                name: "wnvxovl",
                vni: 4242,
                local: Ipv4Addr::new(192, 0, 2, me.0),
                underlay: "under",
                port: 4789,
                bridge: "wnbrovl",
                mtu: 1450,
            };
            links.ensure_vxlan(&vxlan).await.unwrap();
            links.ensure_vxlan(&vxlan).await.unwrap(); // idempotent
            let ip: IpAddr = format!("10.60.0.{}", me.0 + 1).parse().unwrap();
            links
                .create_veth(&VethSpec {
                    host_name: "wnvovl",
                    bridge: "wnbrovl",
                    netns: &sandbox,
                    ifname: "eth0",
                    mac: me.1,
                    mtu: Some(1450),
                    addrs: vec![IfAddr {
                        addr: ip,
                        prefix: 24,
                    }],
                    gateways: vec![],
                    ipv6: false,
                    gateway_mac: [0x02, 0x42, 0, 0, 0, me.0],
                    gateway_addrs: vec![],
                })
                .await
                .unwrap();
            let remote: IpAddr = format!("10.60.0.{}", peer.0 + 1).parse().unwrap();
            let vtep: IpAddr = format!("192.0.2.{}", peer.0).parse().unwrap();
            links
                .add_remote("wnvxovl", peer.1, vtep, &[remote])
                .await
                .unwrap();
            links
                .add_remote("wnvxovl", peer.1, vtep, &[remote])
                .await
                .unwrap(); // idempotent
        })
    });
}

#[test]
fn sandboxes_on_two_hosts_share_one_segment_over_vxlan() {
    let underlay = Ns::new("u");
    let (host_a, host_b) = (Ns::new("a"), Ns::new("b"));
    let (sand_a, sand_b) = (Ns::new("sa"), Ns::new("sb"));
    underlay.run(&["ip", "link", "add", "br0", "type", "bridge"]);
    underlay.run(&["ip", "link", "set", "br0", "up"]);
    for (host, n) in [(&host_a, 1), (&host_b, 2)] {
        let peer = format!("up{n}");
        underlay.run(&[
            "ip", "link", "add", &peer, "type", "veth", "peer", "name", "under", "netns", &host.0,
        ]);
        underlay.run(&["ip", "link", "set", &peer, "master", "br0", "up"]);
        host.run(&[
            "ip",
            "addr",
            "add",
            &format!("192.0.2.{n}/24"),
            "dev",
            "under",
        ]);
        host.run(&["ip", "link", "set", "under", "up"]);
    }
    plumb(&host_a, &sand_a, (1, MAC_A), (2, MAC_B));
    plumb(&host_b, &sand_b, (2, MAC_B), (1, MAC_A));

    assert!(
        ping(&sand_a.path(), "10.60.0.3"),
        "host a's sandbox reaches host b's over VXLAN"
    );
    assert!(ping(&sand_b.path(), "10.60.0.2"), "and back");
    // Resolved from the programmed entries: the neighbour is the remote endpoint's MAC.
    let neigh = stdout_in(&sand_a.path(), &["ip", "neigh", "show", "10.60.0.3"]);
    assert!(neigh.contains("02:42:0a:3c:00:03"), "{neigh}");
    let fdb = stdout_in(&host_a.path(), &["bridge", "fdb", "show", "dev", "wnvxovl"]);
    assert!(
        fdb.contains("02:42:0a:3c:00:03 dst 192.0.2.2 self permanent"),
        "{fdb}"
    );
    let details = stdout_in(&host_a.path(), &["ip", "-d", "link", "show", "wnvxovl"]);
    assert!(
        details.contains("vxlan id 4242")
            && details.contains("nolearning")
            && details.contains("proxy"),
        "{details}"
    );

    // Withdrawn: the remote is unreachable again, and removing twice is fine.
    in_netns(host_a.path(), || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let links = Links::new().unwrap();
            let (vtep, ip) = ("192.0.2.2".parse().unwrap(), "10.60.0.3".parse().unwrap());
            links
                .remove_remote("wnvxovl", MAC_B, vtep, &[ip])
                .await
                .unwrap();
            links
                .remove_remote("wnvxovl", MAC_B, vtep, &[ip])
                .await
                .unwrap();
        })
    });
    // (The bridge may still have learnt the MAC on its VXLAN port; the device has no way to it.)
    let fdb = stdout_in(&host_a.path(), &["bridge", "fdb", "show", "dev", "wnvxovl"]);
    assert!(!fdb.contains("dst 192.0.2.2"), "{fdb}");
    let _ = sh(&[
        "ip", "netns", "exec", &sand_a.0, "ip", "neigh", "flush", "all",
    ]);
    assert!(!ping(&sand_a.path(), "10.60.0.3"), "withdrawn");
}
