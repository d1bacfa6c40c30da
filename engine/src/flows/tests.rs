use super::*;

#[test]
fn prefixes_read_back_and_fit_nflog() {
    let p = prefix(
        FlowVerdict::WouldDrop,
        &"ab".repeat(32),
        Some(&"cd".repeat(32)),
    );
    assert_eq!(p, "wn:w:abababababab:cdcdcdcdcdcd");
    assert!(p.len() <= 64);
    assert_eq!(
        parse_prefix(&p),
        Some((FlowVerdict::WouldDrop, "abababababab", Some("cdcdcdcdcdcd")))
    );
    let iso = prefix(FlowVerdict::Dropped, "isolation", None);
    assert_eq!(
        parse_prefix(&iso),
        Some((FlowVerdict::Dropped, "isolation", None))
    );
    for bad in ["", "wn:", "wn:x:a:b", "wasmnet p: ", "wn:d::-"] {
        assert_eq!(parse_prefix(bad), None, "{bad:?}");
    }
}

#[test]
fn headers_of_tcp_over_ipv4_and_udp_over_ipv6() {
    let mut v4 = vec![
        0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0, 10, 0, 0, 2, 10, 0, 1, 3,
    ];
    v4.extend([0x9c, 0x40, 0x00, 0x50, 0, 0, 0, 0]);
    let h = parse_headers(&v4).unwrap();
    assert_eq!(h.src, "10.0.0.2".parse::<IpAddr>().unwrap());
    assert_eq!(h.dst, "10.0.1.3".parse::<IpAddr>().unwrap());
    assert_eq!((h.protocol, h.ports), (6, Some((40000, 80))));

    let mut v6 = vec![0x60, 0, 0, 0, 0, 8, 17, 64];
    v6.extend("fd00::2".parse::<Ipv6Addr>().unwrap().octets());
    v6.extend("fd00::1:3".parse::<Ipv6Addr>().unwrap().octets());
    v6.extend([0, 53, 0, 54]);
    let h = parse_headers(&v6).unwrap();
    assert_eq!(h.dst, "fd00::1:3".parse::<IpAddr>().unwrap());
    assert_eq!((h.protocol, h.ports), (17, Some((53, 54))));

    // ICMP: no ports; short or foreign packets: nothing.
    let mut icmp = v4.clone();
    icmp[9] = 1;
    assert_eq!(parse_headers(&icmp).unwrap().ports, None);
    assert_eq!(parse_headers(&v4[..19]), None);
    assert_eq!(parse_headers(&[0x50; 40]), None);
    assert_eq!(parse_headers(&[]), None);
    assert_eq!(parse_headers(&[0x4f, 0, 0]), None);
}

fn flow(sandbox: &str, verdict: FlowVerdict) -> Flow {
    let peer = |s: &str| FlowPeer {
        address: "10.0.0.2".parse().unwrap(),
        port: None,
        endpoint: None,
        sandbox: Some(s.to_string()),
    };
    Flow {
        seq: 0,
        time: String::new(),
        network: Some("n".into()),
        source: peer(sandbox),
        destination: peer("other"),
        protocol: "icmp".into(),
        verdict,
        decided_by: "isolation".into(),
        policy: None,
    }
}

#[test]
fn the_ring_is_bounded_numbered_and_filtered() {
    let mut ring = Ring::new(3);
    for i in 0..5 {
        let v = if i % 2 == 0 {
            FlowVerdict::Dropped
        } else {
            FlowVerdict::WouldDrop
        };
        let got = ring.push(flow(&format!("s{i}"), v));
        assert_eq!(got.seq, i + 1);
    }
    assert_eq!(ring.len(), 3);
    let all = ring.query(&FlowFilter::default(), 10);
    assert_eq!(all.iter().map(|f| f.seq).collect::<Vec<_>>(), [3, 4, 5]);
    let dropped = FlowFilter {
        verdict: Some(FlowVerdict::Dropped),
        ..Default::default()
    };
    assert_eq!(ring.query(&dropped, 10).len(), 2);
    let by_sandbox = FlowFilter {
        sandbox: Some("s4".into()),
        ..Default::default()
    };
    assert_eq!(ring.query(&by_sandbox, 10)[0].seq, 5);
    let since = FlowFilter {
        since: Some(4),
        ..Default::default()
    };
    assert_eq!(ring.query(&since, 10).len(), 1);
    assert_eq!(ring.query(&FlowFilter::default(), 1)[0].seq, 5);
}
