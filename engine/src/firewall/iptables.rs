//! The iptables backend: the same Docker semantics as iptables-restore scripts, applied with
//! `--noflush` so that only wasmnet's own chains (`WASMNET-*`) are replaced, each table in one
//! atomic commit. Rules are linear (one per network and per published port), so this is the
//! slower backend; nftables is the default.
//!
//! Without reading the kernel's tables, the jumps from the built-in chains are kept single by
//! deleting and re-inserting them in the same commit; when the delete fails (first start, or
//! after someone wiped them) the commit is retried with the insert alone. Since wasmnet cannot
//! tell whether someone changed its chains, the watcher simply re-applies every few seconds.

use std::io::Write;
use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::iptables_policy::Builder;
use super::policy;
use super::{Backend, ChainView, Desired, Firewall, FirewallError, RuleView};
use crate::kernel::write_sysctl;
use crate::model::option_true;
use crate::model::{Endpoint, Network};
use crate::names::{self, bridge_name};

/// Jumps from built-in chains into ours, per table.
const JUMPS: [(&str, &[(&str, &str)]); 2] = [
    ("filter", &[("FORWARD", names::IPT_FORWARD)]),
    (
        "nat",
        &[
            ("PREROUTING", names::IPT_PREROUTING),
            ("OUTPUT", names::IPT_OUTPUT),
            ("POSTROUTING", names::IPT_POSTROUTING),
        ],
    ),
];

pub struct Iptables;

/// Our chains' rules for one table and family (`v6`), without the table header.
pub fn chain_rules(table: &str, desired: &Desired, v6: bool) -> Vec<String> {
    match table {
        "filter" => filter_rules(desired, v6),
        _ => nat_rules(desired, v6),
    }
}

fn filter_rules(d: &Desired, v6: bool) -> Vec<String> {
    let mut r = vec![
        ":WASMNET-FORWARD - [0:0]".to_string(),
        "-A WASMNET-FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT".into(),
        "-A WASMNET-FORWARD -m conntrack --ctstate INVALID -j DROP".into(),
        "-A WASMNET-FORWARD -o wnbr+ -m conntrack --ctstate DNAT -j ACCEPT".into(),
    ];
    let mut policies = Builder::new(d, v6);
    for n in &d.networks {
        if let Some(applied) = d.plan.governs(&n.id) {
            policies.network(n, applied);
            r.append(&mut policies.lines);
            continue;
        }
        let br = bridge_name(&n.id);
        let icc = if option_true(n, "icc", true) {
            "ACCEPT"
        } else {
            "DROP"
        };
        let out = if n.internal { "DROP" } else { "ACCEPT" };
        r.push(format!("-A WASMNET-FORWARD -i {br} -o {br} -j {icc}"));
        r.push(format!("-A WASMNET-FORWARD -i {br} -o wnbr+ -j DROP"));
        r.push(format!("-A WASMNET-FORWARD -i {br} -j {out}"));
    }
    r.push("-A WASMNET-FORWARD -o wnbr+ -j DROP".into());
    r
}

fn nat_rules(d: &Desired, v6: bool) -> Vec<String> {
    let mut r: Vec<String> = [
        "WASMNET-PREROUTING",
        "WASMNET-OUTPUT",
        "WASMNET-POSTROUTING",
        "WASMNET-DNAT",
    ]
    .iter()
    .map(|c| format!(":{c} - [0:0]"))
    .collect();
    r.push("-A WASMNET-PREROUTING -m addrtype --dst-type LOCAL -j WASMNET-DNAT".into());
    r.push("-A WASMNET-OUTPUT -m addrtype --dst-type LOCAL -j WASMNET-DNAT".into());
    if !v6 {
        r.push("-A WASMNET-POSTROUTING -s 127.0.0.0/8 -o wnbr+ -j MASQUERADE".into());
    }
    for n in &d.networks {
        let Some(subnet) = (if v6 {
            n.ipv6.as_ref().map(|c| c.subnet)
        } else {
            Some(n.ipv4.subnet)
        }) else {
            continue;
        };
        let br = bridge_name(&n.id);
        // Hairpin: a sandbox reaching a published port of its own network through the host.
        r.push(format!(
            "-A WASMNET-POSTROUTING -s {subnet} -o {br} -m conntrack --ctstate DNAT -j MASQUERADE"
        ));
        match policy::nat(n, d.plan.governs(&n.id).unwrap_or_default()) {
            (_, Some(to)) if to.is_ipv6() == v6 => r.push(format!(
                "-A WASMNET-POSTROUTING -s {subnet} ! -o {br} -j SNAT --to-source {to}"
            )),
            (_, Some(_)) => {}
            (true, None) => r.push(format!(
                "-A WASMNET-POSTROUTING -s {subnet} ! -o {br} -j MASQUERADE"
            )),
            (false, None) => {}
        }
    }
    for e in &d.endpoints {
        r.extend(dnat_rules(e, v6));
    }
    r
}

fn dnat_rules(e: &Endpoint, v6: bool) -> Vec<String> {
    let Some(target) = (if v6 { e.ipv6 } else { e.ipv4 }) else {
        return vec![];
    };
    e.ports
        .iter()
        .filter(|p| p.host_ip.is_none_or(|ip| ip.is_ipv6() == v6))
        .map(|p| {
            let dst = p.host_ip.map_or(String::new(), |ip| format!("-d {ip} "));
            let to = match target {
                IpAddr::V6(a) => format!("[{a}]:{}", p.container_port),
                IpAddr::V4(a) => format!("{a}:{}", p.container_port),
            };
            let proto = p.protocol;
            format!("-A WASMNET-DNAT {dst}-p {proto} -m {proto} --dport {} -j DNAT --to-destination {to}", p.host_port)
        })
        .collect()
}

/// The whole iptables-restore input for one table.
pub fn table_script(table: &str, desired: &Desired, v6: bool, replace_jumps: bool) -> String {
    let mut lines = vec![format!("*{table}")];
    let (chains, jumps): (Vec<String>, Vec<String>) = chain_rules(table, desired, v6)
        .into_iter()
        .partition(|l| l.starts_with(':'));
    lines.extend(chains);
    for (builtin, ours) in JUMPS
        .iter()
        .find(|(t, _)| *t == table)
        .map(|(_, j)| *j)
        .unwrap_or_default()
    {
        if replace_jumps {
            lines.push(format!("-D {builtin} -j {ours}"));
        }
        lines.push(format!("-I {builtin} 1 -j {ours}"));
    }
    lines.extend(jumps);
    lines.push("COMMIT".into());
    lines.join("\n") + "\n"
}

/// Commits one table's script with (ip6)tables-restore.
fn restore(v6: bool, table: &'static str, script: &str) -> Result<(), FirewallError> {
    let program = if v6 {
        "ip6tables-restore"
    } else {
        "iptables-restore"
    };
    let mut child = Command::new(program)
        .args(["--noflush", "-w", "5"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| FirewallError::io(format!("running {program}"), e))?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(script.as_bytes())
        .map_err(|e| FirewallError::io(format!("writing to {program}"), e))?;
    let out = child
        .wait_with_output()
        .map_err(|e| FirewallError::io(format!("waiting for {program}"), e))?;
    if out.status.success() {
        return Ok(());
    }
    Err(FirewallError::IptablesRestore {
        program,
        table,
        status: out.status,
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    })
}

impl Iptables {
    fn apply_family(&self, desired: &Desired, v6: bool) -> Result<(), FirewallError> {
        for (table, _) in JUMPS {
            if restore(v6, table, &table_script(table, desired, v6, true)).is_err() {
                // The jumps were not there to delete: insert them alone.
                restore(v6, table, &table_script(table, desired, v6, false))?;
            }
        }
        Ok(())
    }
}

impl Firewall for Iptables {
    fn kind(&self) -> Backend {
        Backend::Iptables
    }

    fn apply(&self, desired: &Desired) -> Result<(), FirewallError> {
        // iptables sees bridged frames only through br_netfilter: icc=false needs it on.
        if desired.plan.needs_br_netfilter()
            || desired
                .networks
                .iter()
                .any(|n| !option_true(n, "icc", true))
        {
            for key in [
                "net/bridge/bridge-nf-call-iptables",
                "net/bridge/bridge-nf-call-ip6tables",
            ] {
                write_sysctl(key, "1").map_err(|source| FirewallError::Sysctl {
                    why: "icc=false and policies need br_netfilter",
                    source,
                })?;
            }
        }
        self.apply_family(desired, false)?;
        if desired.networks.iter().any(|n| n.ipv6.is_some()) {
            self.apply_family(desired, true)?;
        }
        Ok(())
    }

    /// Linear rules: an endpoint change re-renders wasmnet's chains.
    fn incremental(&self) -> bool {
        false
    }

    fn endpoint(
        &self,
        e: &Endpoint,
        _: &Network,
        _: bool,
        desired: &Desired,
    ) -> Result<(), FirewallError> {
        if e.ports.is_empty() && desired.plan.is_empty() {
            return Ok(());
        }
        self.apply(desired)
    }

    fn reassert(&self, desired: &Desired) -> Result<bool, FirewallError> {
        self.apply(desired)?;
        Ok(false)
    }

    fn watch_interval(&self) -> Duration {
        Duration::from_secs(2)
    }

    /// iptables-restore cannot read counters back: the rules, without them.
    fn chains(&self, desired: &Desired) -> Result<Vec<ChainView>, FirewallError> {
        let mut out: Vec<ChainView> = Vec::new();
        for (v6, family) in [(false, "iptables"), (true, "ip6tables")] {
            for (table, _) in JUMPS {
                for line in chain_rules(table, desired, v6) {
                    let Some(rest) = line.strip_prefix("-A ") else {
                        continue;
                    };
                    let (chain, rule) = rest.split_once(' ').unwrap_or((rest, ""));
                    let name = format!("{family} {table}");
                    if !out
                        .last()
                        .is_some_and(|c| c.table == name && c.chain == chain)
                    {
                        out.push(ChainView {
                            table: name,
                            chain: chain.to_string(),
                            rules: Vec::new(),
                        });
                    }
                    out.last_mut().expect("just pushed").rules.push(RuleView {
                        text: rule.to_string(),
                        counters: None,
                    });
                }
            }
        }
        Ok(out)
    }

    fn render(&self, desired: &Desired) -> String {
        let mut out = String::new();
        for (v6, family) in [(false, "iptables"), (true, "ip6tables")] {
            for (table, _) in JUMPS {
                out += &format!(
                    "# {family}-restore --noflush\n{}",
                    table_script(table, desired, v6, false)
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::fixtures::{endpoint, net, sample_ports};
    use std::sync::Arc;

    #[test]
    fn golden_scripts() {
        let n = net('a', "10.1.0.0/24", false, true);
        let mut e = endpoint(&n, "10.1.0.2", sample_ports());
        e.ipv6 = None;
        let d = Desired {
            networks: vec![Arc::new(n)],
            endpoints: vec![Arc::new(e)],
            plan: Default::default(),
            remotes: vec![],
        };
        assert_eq!(
            table_script("filter", &d, false, true),
            "*filter\n:WASMNET-FORWARD - [0:0]\n-D FORWARD -j WASMNET-FORWARD\n-I FORWARD 1 -j WASMNET-FORWARD\n\
             -A WASMNET-FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
             -A WASMNET-FORWARD -m conntrack --ctstate INVALID -j DROP\n\
             -A WASMNET-FORWARD -o wnbr+ -m conntrack --ctstate DNAT -j ACCEPT\n\
             -A WASMNET-FORWARD -i wnbraaaaaaaaaaa -o wnbraaaaaaaaaaa -j ACCEPT\n\
             -A WASMNET-FORWARD -i wnbraaaaaaaaaaa -o wnbr+ -j DROP\n\
             -A WASMNET-FORWARD -i wnbraaaaaaaaaaa -j ACCEPT\n\
             -A WASMNET-FORWARD -o wnbr+ -j DROP\nCOMMIT\n"
        );
        let nat = table_script("nat", &d, false, false);
        assert!(
            nat.contains("-I POSTROUTING 1 -j WASMNET-POSTROUTING\n") && !nat.contains("-D "),
            "{nat}"
        );
        assert!(
            nat.contains(
                "-A WASMNET-DNAT -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.1.0.2:80\n"
            ),
            "{nat}"
        );
        assert!(nat.contains("-A WASMNET-DNAT -d 127.0.0.1 -p udp -m udp --dport 5353 -j DNAT --to-destination 10.1.0.2:53\n"), "{nat}");
        assert!(
            nat.contains(
                "-A WASMNET-POSTROUTING -s 10.1.0.0/24 ! -o wnbraaaaaaaaaaa -j MASQUERADE\n"
            ),
            "{nat}"
        );
        assert!(
            table_script("nat", &d, true, false)
                .lines()
                .all(|l| !l.contains("DNAT --to")),
            "no IPv6 address, no IPv6 DNAT"
        );
    }
}
