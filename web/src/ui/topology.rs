//! The topology picture: networks on the left, sandboxes on the right, an edge per endpoint
//! (labelled with its address and its traffic; red when it had a drop lately). Plain SVG
//! rendered on the server: no script needed to see it.

use std::collections::{HashMap, HashSet};
use std::fmt::Write;

use wasmnet_engine::kernel::LinkCounters;
use wasmnet_engine::model::{Endpoint, Network, Sandbox};

const ROW: usize = 56;
const NET_X: usize = 20;
const SB_X: usize = 520;
const BOX_W: usize = 220;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// What the edges show beyond the endpoints: each one's traffic (by endpoint id), and which
/// had a drop lately (drawn red).
#[derive(Default)]
pub struct Traffic {
    pub counters: HashMap<String, LinkCounters>,
    pub dropping: HashSet<String>,
}

/// Bytes the way people read them: 0 B, 1.5 kB, 12.0 MB.
fn human(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < units.len() {
        v /= 1000.0;
        u += 1;
    }
    match u {
        0 => format!("{bytes} B"),
        _ => format!("{v:.1} {}", units[u]),
    }
}

/// An edge's label: interface and address, and its traffic (sent ↑, received ↓).
fn edge_label(e: &Endpoint, t: &Traffic) -> String {
    let addr = e.ipv4.map(|a| a.to_string()).unwrap_or_default();
    match t.counters.get(&e.id) {
        Some(c) => format!(
            "{} {addr} ↑{} {}p ↓{} {}p",
            e.interface,
            human(c.rx_bytes),
            c.rx_packets,
            human(c.tx_bytes),
            c.tx_packets
        ),
        None => format!("{} {addr}", e.interface),
    }
}

pub fn svg(
    networks: &[&Network],
    sandboxes: &[&Sandbox],
    endpoints: &[&Endpoint],
    traffic: &Traffic,
) -> String {
    let rows = networks.len().max(sandboxes.len()).max(1);
    let height = rows * ROW + 40;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 760 {height}\" role=\"img\" aria-label=\"networks and sandboxes\" font-family=\"sans-serif\" font-size=\"13\">"
    );
    let y = |i: usize| 20 + i * ROW;
    for e in endpoints {
        let (Some(ni), Some(si)) = (
            networks.iter().position(|n| n.id == e.network_id),
            sandboxes.iter().position(|s| s.id == e.sandbox_id),
        ) else {
            continue;
        };
        let (y1, y2) = (y(ni) + 18, y(si) + 18);
        let (class, stroke) = match traffic.dropping.contains(&e.id) {
            true => ("edge dropped", "#dc2626"),
            false => ("edge", "#888"),
        };
        let _ = write!(
            out,
            "<g class=\"{class}\"><line x1=\"{}\" y1=\"{y1}\" x2=\"{SB_X}\" y2=\"{y2}\" stroke=\"{stroke}\"/><text x=\"{}\" y=\"{}\" fill=\"#555\" font-size=\"11\">{}</text></g>",
            NET_X + BOX_W,
            NET_X + BOX_W + 8,
            (y1 + y2) / 2 - 4,
            esc(&edge_label(e, traffic))
        );
    }
    for (i, n) in networks.iter().enumerate() {
        let _ = write!(
            out,
            "<g class=\"network\"><rect x=\"{NET_X}\" y=\"{}\" width=\"{BOX_W}\" height=\"36\" rx=\"6\" fill=\"#dbeafe\" stroke=\"#1d4ed8\"/><text x=\"{}\" y=\"{}\">{} {}</text></g>",
            y(i),
            NET_X + 10,
            y(i) + 23,
            esc(&n.name),
            esc(&n.ipv4.subnet.to_string())
        );
    }
    for (i, s) in sandboxes.iter().enumerate() {
        let _ = write!(
            out,
            "<g class=\"sandbox\"><rect x=\"{SB_X}\" y=\"{}\" width=\"{BOX_W}\" height=\"36\" rx=\"6\" fill=\"#dcfce7\" stroke=\"#15803d\"/><text x=\"{}\" y=\"{}\">{}</text></g>",
            y(i),
            SB_X + 10,
            y(i) + 23,
            esc(&s.name)
        );
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_names_and_draws_one_edge_per_endpoint() {
        let n: Network = serde_json::from_value(serde_json::json!({"id": "n1", "name": "a<b", "driver": "bridge", "ipv4": {"subnet": "10.0.0.0/24", "gateway": "10.0.0.1"}, "ipv6": null, "internal": false, "labels": {}, "options": {}, "created": ""})).unwrap();
        let s: Sandbox = serde_json::from_value(serde_json::json!({"id": "s1", "name": "box", "labels": {}, "netns": "/x", "netns_owned": true, "handoff": false, "created": ""})).unwrap();
        let e: Endpoint = serde_json::from_value(serde_json::json!({"id": "e1", "network_id": "n1", "network_name": "a<b", "sandbox_id": "s1", "sandbox_name": "box", "interface": "eth0", "mac": "", "ipv4": "10.0.0.2", "ipv6": null, "aliases": [], "ports": [], "labels": {}, "created": ""})).unwrap();
        let out = svg(&[&n], &[&s], &[&e], &Traffic::default());
        assert!(out.contains("a&lt;b") && !out.contains("a<b"));
        assert_eq!(out.matches("class=\"edge\"").count(), 1);
        assert!(out.contains("eth0 10.0.0.2"));
        // With traffic and a recent drop: the counters on the edge, drawn red.
        let mut t = Traffic::default();
        let c = LinkCounters {
            rx_bytes: 1500,
            tx_bytes: 98,
            rx_packets: 3,
            tx_packets: 1,
        };
        t.counters.insert("e1".into(), c);
        t.dropping.insert("e1".into());
        let out = svg(&[&n], &[&s], &[&e], &t);
        assert!(out.contains("eth0 10.0.0.2 ↑1.5 kB 3p ↓98 B 1p"), "{out}");
        assert!(out.contains("class=\"edge dropped\"") && out.contains("#dc2626"));
    }
}
