//! The iptables backend: the neutral rules rendered as iptables-restore scripts
//! (`render_iptables`), applied with `--noflush` so that only wasmnet's own chains
//! (`WASMNET-*`) are replaced, each table in one atomic commit. Rules are linear (one per
//! network and per published port, lookups expanded), so this is the slower backend; nftables
//! is the default.
//!
//! Without reading the kernel's tables, the jumps from the built-in chains are kept single by
//! deleting and re-inserting them in the same commit; when the delete fails (first start, or
//! after someone wiped them) the commit is retried with the insert alone. Since wasmnet cannot
//! tell whether someone changed its chains, the watcher simply re-applies every few seconds.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::render_iptables::{self, IptTable};
use super::rules::{Fam, Rules};
use super::{Backend, ChainView, Desired, Firewall, FirewallError, RuleView};
use crate::kernel::write_sysctl;
use crate::model::{Endpoint, Network};
use crate::names;

/// Jumps from built-in chains into ours, per table.
const JUMPS: [(IptTable, &[(&str, &str)]); 2] = [
    (
        IptTable::Filter,
        &[("FORWARD", names::IPT_FORWARD), ("INPUT", names::IPT_INPUT)],
    ),
    (
        IptTable::Nat,
        &[
            ("PREROUTING", names::IPT_PREROUTING),
            ("OUTPUT", names::IPT_OUTPUT),
            ("POSTROUTING", names::IPT_POSTROUTING),
        ],
    ),
];

pub struct Iptables;

fn fam(v6: bool) -> Fam {
    if v6 {
        Fam::V6
    } else {
        Fam::V4
    }
}

/// The whole iptables-restore input for one table and family (`v6`).
pub fn table_script(table: IptTable, rules: &Rules, v6: bool, replace_jumps: bool) -> String {
    let script = render_iptables::script(rules, table, fam(v6));
    let mut lines = vec![format!("*{}", table.name())];
    lines.extend(script.chains.iter().map(|c| format!(":{c} - [0:0]")));
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
    lines.extend(
        script
            .lines
            .iter()
            .map(|l| format!("-A {} {}", l.chain, l.text)),
    );
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
    fn apply_family(&self, rules: &Rules, v6: bool) -> Result<(), FirewallError> {
        for (table, _) in JUMPS {
            let name = table.name();
            if restore(v6, name, &table_script(table, rules, v6, true)).is_err() {
                // The jumps were not there to delete: insert them alone.
                restore(v6, name, &table_script(table, rules, v6, false))?;
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
        if desired.needs_br_netfilter() || desired.networks.iter().any(|n| !n.options.icc()) {
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
        let rules = super::lower(desired);
        self.apply_family(&rules, false)?;
        if desired.networks.iter().any(|n| n.ipv6.is_some()) {
            self.apply_family(&rules, true)?;
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
        let rules = super::lower(desired);
        let mut out: Vec<ChainView> = Vec::new();
        for (v6, family) in [(false, "iptables"), (true, "ip6tables")] {
            for (table, _) in JUMPS {
                let name = format!("{family} {}", table.name());
                for line in render_iptables::script(&rules, table, fam(v6)).lines {
                    if !out
                        .last()
                        .is_some_and(|c| c.table == name && c.chain == line.chain)
                    {
                        out.push(ChainView {
                            table: name.clone(),
                            chain: line.chain.clone(),
                            rules: Vec::new(),
                        });
                    }
                    out.last_mut().expect("just pushed").rules.push(RuleView {
                        text: line.text,
                        counters: None,
                        tag: line.tag,
                    });
                }
            }
        }
        Ok(out)
    }

    fn render(&self, desired: &Desired) -> String {
        let rules = super::lower(desired);
        let mut out = String::new();
        for (v6, family) in [(false, "iptables"), (true, "ip6tables")] {
            for (table, _) in JUMPS {
                out += &format!(
                    "# {family}-restore --noflush\n{}",
                    table_script(table, &rules, v6, false)
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
            services: vec![],
        };
        let rules = crate::firewall::lower(&d);
        assert_eq!(
            table_script(IptTable::Filter, &rules, false, true),
            "*filter\n:WASMNET-FORWARD - [0:0]\n:WASMNET-INPUT - [0:0]\n-D FORWARD -j WASMNET-FORWARD\n-I FORWARD 1 -j WASMNET-FORWARD\n\
             -D INPUT -j WASMNET-INPUT\n-I INPUT 1 -j WASMNET-INPUT\n\
             -A WASMNET-FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
             -A WASMNET-FORWARD -m conntrack --ctstate INVALID -j DROP\n\
             -A WASMNET-FORWARD -o wnbr+ -m conntrack --ctstate DNAT -j ACCEPT\n\
             -A WASMNET-FORWARD -i wnbraaaaaaaaaaa -o wnbraaaaaaaaaaa -j ACCEPT\n\
             -A WASMNET-FORWARD -i wnbraaaaaaaaaaa -o wnbr+ -m limit --limit 10/second -j NFLOG --nflog-group 2387 --nflog-prefix \"wn:d:isolation:aaaaaaaaaaaa\"\n\
             -A WASMNET-FORWARD -i wnbraaaaaaaaaaa -o wnbr+ -j DROP\n\
             -A WASMNET-FORWARD -i wnbraaaaaaaaaaa -j ACCEPT\n\
             -A WASMNET-FORWARD -o wnbr+ -m limit --limit 10/second -j NFLOG --nflog-group 2387 --nflog-prefix \"wn:d:isolation:-\"\n\
             -A WASMNET-FORWARD -o wnbr+ -j DROP\nCOMMIT\n"
        );
        let nat = table_script(IptTable::Nat, &rules, false, false);
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
            nat.contains("-A WASMNET-POSTROUTING -s 10.1.0.0/24 ! -o wnbr+ -j MASQUERADE\n"),
            "{nat}"
        );
        assert!(
            table_script(IptTable::Nat, &rules, true, false)
                .lines()
                .all(|l| !l.contains("DNAT --to")),
            "no IPv6 address, no IPv6 DNAT"
        );
    }
}
