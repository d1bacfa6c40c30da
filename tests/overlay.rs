//! The overlay's kernel layer alone (`tests/cluster.rs` tests the whole driver): two test
//! hosts on an underlay bridge, each with a network bridge and a VXLAN device, and a sandbox.
//! Remote endpoints are programmed statically (forwarding entry + neighbour on the VXLAN
//! device), so the sandboxes reach each other across hosts with no learning and no flooding.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use common::net::{ping, stdout_in};
use common::{in_netns, sh, Host};
use wasmnet_engine::kernel::{IfAddr, Links, VethSpec, VxlanSpec};

/// Runs `f` with wasmnet's netlink layer inside the namespace at `ns`.
fn with_links<F, Fut>(ns: PathBuf, f: F)
where
    F: FnOnce(Links) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    in_netns(ns, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move { f(Links::new().unwrap()).await })
    })
}

const MAC_A: [u8; 6] = [0x02, 0x42, 0x0a, 0x3c, 0x00, 0x02];
const MAC_B: [u8; 6] = [0x02, 0x42, 0x0a, 0x3c, 0x00, 0x03];

/// Plumbs one host through wasmnet's kernel layer: bridge, VXLAN on the underlay, a sandbox,
/// and the other host's endpoint as a remote.
fn plumb(host: &Host, sandbox: &Host, me: (u8, [u8; 6]), peer: (u8, [u8; 6])) {
    let sandbox = sandbox.netns_path();
    with_links(host.netns_path(), move |links| async move {
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
                handoff: false,
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
    });
}

/// Runs a command that must succeed inside a test host's namespace.
fn run(h: &Host, args: &[&str]) {
    sh(&[&["ip", "netns", "exec", &h.name][..], args].concat());
}

#[test]
fn sandboxes_on_two_hosts_share_one_segment_over_vxlan() {
    let underlay = Host::new();
    let (host_a, host_b) = (Host::new(), Host::new());
    let (sand_a, sand_b) = (Host::new(), Host::new());
    run(&underlay, &["ip", "link", "add", "br0", "type", "bridge"]);
    run(&underlay, &["ip", "link", "set", "br0", "up"]);
    for (host, n) in [(&host_a, 1), (&host_b, 2)] {
        let peer = format!("up{n}");
        run(
            &underlay,
            &[
                "ip", "link", "add", &peer, "type", "veth", "peer", "name", "under", "netns",
                &host.name,
            ],
        );
        run(
            &underlay,
            &["ip", "link", "set", &peer, "master", "br0", "up"],
        );
        run(
            host,
            &[
                "ip",
                "addr",
                "add",
                &format!("192.0.2.{n}/24"),
                "dev",
                "under",
            ],
        );
        run(host, &["ip", "link", "set", "under", "up"]);
    }
    plumb(&host_a, &sand_a, (1, MAC_A), (2, MAC_B));
    plumb(&host_b, &sand_b, (2, MAC_B), (1, MAC_A));

    assert!(
        ping(&sand_a.netns_path(), "10.60.0.3"),
        "host a's sandbox reaches host b's over VXLAN"
    );
    assert!(ping(&sand_b.netns_path(), "10.60.0.2"), "and back");
    // Resolved from the programmed entries: the neighbour is the remote endpoint's MAC.
    let neigh = stdout_in(&sand_a.netns_path(), &["ip", "neigh", "show", "10.60.0.3"]);
    assert!(neigh.contains("02:42:0a:3c:00:03"), "{neigh}");
    let fdb = stdout_in(
        &host_a.netns_path(),
        &["bridge", "fdb", "show", "dev", "wnvxovl"],
    );
    assert!(
        fdb.contains("02:42:0a:3c:00:03 dst 192.0.2.2 self permanent"),
        "{fdb}"
    );
    let details = stdout_in(
        &host_a.netns_path(),
        &["ip", "-d", "link", "show", "wnvxovl"],
    );
    assert!(
        details.contains("vxlan id 4242")
            && details.contains("nolearning")
            && details.contains("proxy"),
        "{details}"
    );

    // Withdrawn: the remote is unreachable again, and removing twice is fine.
    with_links(host_a.netns_path(), |links| async move {
        let (vtep, ip) = ("192.0.2.2".parse().unwrap(), "10.60.0.3".parse().unwrap());
        links
            .remove_remote("wnvxovl", MAC_B, vtep, &[ip])
            .await
            .unwrap();
        links
            .remove_remote("wnvxovl", MAC_B, vtep, &[ip])
            .await
            .unwrap();
    });
    // (The bridge may still have learnt the MAC on its VXLAN port; the device has no way to it.)
    let fdb = stdout_in(
        &host_a.netns_path(),
        &["bridge", "fdb", "show", "dev", "wnvxovl"],
    );
    assert!(!fdb.contains("dst 192.0.2.2"), "{fdb}");
    run(&sand_a, &["ip", "neigh", "flush", "all"]);
    assert!(!ping(&sand_a.netns_path(), "10.60.0.3"), "withdrawn");
}
