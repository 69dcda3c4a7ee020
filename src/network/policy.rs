//! Zygote side: what a veth sandbox may reach ([`Policy`], `serve --veth-policy`), and
//! the nftables table that enforces it ([`Firewall`]), one per daemon.
//!
//! The rules match host ends by the daemon's name prefix (`hatch*`) and sandboxes by
//! the daemon's pool, so they are written once, when the daemon starts, and nothing
//! changes per spawn: a spawn pays no rule update. The table is loaded by nftables' own
//! `nft` program from the text [`ruleset`] makes, in one transaction that also deletes a
//! table of the same name a killed daemon left, and deleted when the daemon exits.
//!
//! Why `nft` and not netlink from Rust: the rules run once per daemon (so the cost of
//! starting a program does not matter); the text loaded is exactly what an operator
//! reads back with `nft list table` and what `docs/networking.md` shows; and the Rust
//! nftables crates either wrap the C libraries (libnftnl) or are young and thinly
//! maintained, which is not what a security boundary should rest on.
//!
//! Every packet from a sandbox goes through the `from_sandbox` chain at prerouting,
//! after destination NAT, before routing (so the refusals do not depend on the host's
//! forwarding switches): a packet whose source is not the sandbox's own is dropped;
//! replies pass; the sandbox's own host end on the listed ports passes; with `internet`,
//! anything but the pool, the host's own addresses and the deny list passes (the allow
//! list first); everything else is refused with a TCP reset or an ICMP
//! "administratively prohibited", so a refused `connect` fails at once.

use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;

use super::subnets::Cidr;

/// The IPv4 ranges an `internet` sandbox may not reach unless `--veth-allow` lifts them:
/// "this network", private (RFC 1918), shared address space (CGNAT), loopback,
/// link-local (cloud metadata services), IETF protocol assignments, documentation,
/// benchmarking, multicast, reserved and broadcast.
pub const DENIED_V4: [&str; 12] = [
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
];

/// Multicast, reserved (240/4) and broadcast, kept apart from [`DENIED_V4`] only to keep
/// each list short: both are always denied together.
pub const DENIED_V4_HIGH: &str = "224.0.0.0/3";

/// The IPv6 ranges an `internet` sandbox may not reach unless `--veth-allow` lifts them:
/// unspecified and loopback, IPv4-mapped, NAT64 (both well-known prefixes: they lead to
/// IPv4 addresses, private ones too), discard-only, benchmarking, documentation (both),
/// 6to4 (it embeds IPv4 addresses), unique local (ULA), link-local, site-local and
/// multicast.
pub const DENIED_V6: [&str; 14] = [
    "::/127",
    "::ffff:0:0/96",
    "64:ff9b::/96",
    "64:ff9b:1::/48",
    "100::/64",
    "2001:2::/48",
    "2001:db8::/32",
    "2002::/16",
    "3fff::/20",
    "fc00::/7",
    "fe80::/10",
    "fec0::/10",
    "ff00::/8",
    "::ffff:0:0:0/96",
];

/// Where a veth sandbox may open connections beyond its own host end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Egress {
    /// Nowhere: only its host end, on the listed host ports.
    #[default]
    None,
    /// The internet through NAT: anything but the deny list, the daemon's pool and the
    /// host's own addresses.
    Internet,
}

impl Egress {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Egress::None => "none",
            Egress::Internet => "internet",
        }
    }
}

impl FromStr for Egress {
    type Err = String;

    fn from_str(text: &str) -> Result<Egress, String> {
        match text {
            "none" => Ok(Egress::None),
            "internet" => Ok(Egress::Internet),
            _ => Err(format!("{text:?} is not a policy: none or internet")),
        }
    }
}

/// A transport protocol of a host port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

/// A port of the host end that sandboxes may reach, `8080/tcp` or `53/udp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostPort {
    /// The port number (1 to 65535).
    pub port: u16,
    /// TCP or UDP.
    pub transport: Transport,
}

impl FromStr for HostPort {
    type Err = String;

    fn from_str(text: &str) -> Result<HostPort, String> {
        let wrong = || format!("{text:?} is not PORT/tcp or PORT/udp (e.g. 8080/tcp)");
        let (port, transport) = text.split_once('/').ok_or_else(wrong)?;
        let transport = match transport {
            "tcp" => Transport::Tcp,
            "udp" => Transport::Udp,
            _ => return Err(wrong()),
        };
        match port.parse::<u16>() {
            Ok(port) if port != 0 => Ok(HostPort { port, transport }),
            _ => Err(wrong()),
        }
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let transport = match self.transport {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        };
        write!(f, "{}/{transport}", self.port)
    }
}

/// What the daemon's veth sandboxes may reach.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// Beyond the host end: nothing, or the internet.
    pub egress: Egress,
    /// The ports of its own host end a sandbox may reach (`--veth-host-port`).
    pub host_ports: Vec<HostPort>,
    /// Ranges an `internet` sandbox may reach although the deny list has them
    /// (`--veth-allow`); never the daemon's pool or the host's own addresses.
    pub allow: Vec<Cidr>,
    /// Ranges an `internet` sandbox may not reach, beyond the deny list (`--veth-deny`).
    pub deny: Vec<Cidr>,
    /// The resolvers written into `internet` sandboxes' `/etc/resolv.conf`
    /// (`--veth-dns`); their port 53 is reachable whatever the deny list says. Empty: the
    /// host's resolvers that a sandbox can reach, if any.
    pub dns: Vec<IpAddr>,
}

/// The name of a daemon's table: `hatchery-` and its host end prefix.
pub fn table_name(prefix: &str) -> String {
    format!("hatchery-{prefix}")
}

/// `elements = { ... };` for the ranges of one family, or nothing for none.
fn elements(ranges: impl IntoIterator<Item = String>) -> String {
    let ranges: Vec<String> = ranges.into_iter().collect();
    if ranges.is_empty() {
        String::new()
    } else {
        format!(" elements = {{ {} }};", ranges.join(", "))
    }
}

fn of_family(ranges: &[Cidr], v4: bool) -> Vec<String> {
    ranges
        .iter()
        .filter(|range| range.addr.is_ipv4() == v4)
        .map(Cidr::to_string)
        .collect()
}

/// The nftables script that replaces the daemon's table (`table_name(prefix)`) with one
/// enforcing `policy` on the host ends named `prefix*` and the sandboxes of `pool`.
pub fn ruleset(prefix: &str, pool: &[Cidr], policy: &Policy) -> String {
    let table = table_name(prefix);
    let ends = format!("\"{prefix}*\"");
    let mut deny4: Vec<String> = DENIED_V4.iter().map(|r| r.to_string()).collect();
    deny4.push(DENIED_V4_HIGH.to_string());
    deny4.extend(of_family(&policy.deny, true));
    let mut deny6: Vec<String> = DENIED_V6.iter().map(|r| r.to_string()).collect();
    deny6.extend(of_family(&policy.deny, false));
    let ports: Vec<String> = policy
        .host_ports
        .iter()
        .map(|p| {
            let transport = match p.transport {
                Transport::Tcp => "tcp",
                Transport::Udp => "udp",
            };
            format!("{transport} . {}", p.port)
        })
        .collect();
    let set = |name: &str, kind: &str, items: Vec<String>| {
        format!(
            "    set {name} {{ type {kind}; flags interval; auto-merge;{} }}\n",
            elements(items)
        )
    };

    let mut s = String::new();
    // Create-then-delete makes the delete succeed whether or not a table was left; the
    // whole script is one transaction, so the old table never coexists with the new.
    let _ = writeln!(s, "table inet {table}");
    let _ = writeln!(s, "delete table inet {table}");
    let _ = writeln!(s, "table inet {table} {{");
    s.push_str(&set("pool4", "ipv4_addr", of_family(pool, true)));
    s.push_str(&set("pool6", "ipv6_addr", of_family(pool, false)));
    s.push_str(&set("deny4", "ipv4_addr", deny4));
    s.push_str(&set("deny6", "ipv6_addr", deny6));
    s.push_str(&set("allow4", "ipv4_addr", of_family(&policy.allow, true)));
    s.push_str(&set("allow6", "ipv6_addr", of_family(&policy.allow, false)));
    let dns = |v4: bool| -> Vec<String> {
        policy
            .dns
            .iter()
            .filter(|a| a.is_ipv4() == v4)
            .map(IpAddr::to_string)
            .collect()
    };
    let _ = writeln!(
        s,
        "    set dns4 {{ type ipv4_addr;{} }}",
        elements(dns(true))
    );
    let _ = writeln!(
        s,
        "    set dns6 {{ type ipv6_addr;{} }}",
        elements(dns(false))
    );
    let _ = writeln!(
        s,
        "    set host_ports {{ type inet_proto . inet_service;{} }}",
        elements(ports)
    );
    let _ = writeln!(
        s,
        "    chain prerouting {{\n\
         \x20       type filter hook prerouting priority dstnat + 10; policy accept;\n\
         \x20       iifname {ends} jump from_sandbox\n\
         \x20   }}"
    );
    s.push_str("    chain from_sandbox {\n");
    s.push_str("        fib saddr . iif oif missing drop\n");
    s.push_str("        fib saddr type local drop\n");
    s.push_str("        ct state established,related accept\n");
    s.push_str(
        "        icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } ip6 hoplimit 255 accept\n",
    );
    s.push_str("        fib daddr . iif type local meta l4proto . th dport @host_ports accept\n");
    if policy.egress == Egress::Internet {
        s.push_str("        ip daddr @pool4 jump refuse\n");
        s.push_str("        ip6 daddr @pool6 jump refuse\n");
        s.push_str("        ip daddr @dns4 meta l4proto { tcp, udp } th dport 53 accept\n");
        s.push_str("        ip6 daddr @dns6 meta l4proto { tcp, udp } th dport 53 accept\n");
        s.push_str("        fib daddr type { local, broadcast, anycast, multicast } jump refuse\n");
        s.push_str("        ip daddr @allow4 accept\n");
        s.push_str("        ip6 daddr @allow6 accept\n");
        s.push_str("        ip daddr @deny4 jump refuse\n");
        s.push_str("        ip6 daddr @deny6 jump refuse\n");
        s.push_str("        accept\n");
    }
    s.push_str("        jump refuse\n");
    s.push_str("    }\n");
    s.push_str(
        "    chain refuse {\n\
         \x20       meta l4proto tcp reject with tcp reset\n\
         \x20       reject with icmpx admin-prohibited\n\
         \x20   }\n",
    );
    let _ = writeln!(
        s,
        "    chain forward {{\n\
         \x20       type filter hook forward priority filter - 10; policy accept;\n\
         \x20       oifname {ends} ct state established,related accept\n\
         \x20       oifname {ends} drop\n\
         \x20   }}"
    );
    if policy.egress == Egress::Internet {
        let _ = writeln!(
            s,
            "    chain postrouting {{\n\
             \x20       type nat hook postrouting priority srcnat; policy accept;\n\
             \x20       oifname {ends} return\n\
             \x20       ip saddr @pool4 masquerade\n\
             \x20       ip6 saddr @pool6 masquerade\n\
             \x20   }}"
        );
    }
    s.push_str("}\n");
    s
}

/// Why the daemon's table cannot be loaded or deleted.
#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    /// No `nft` program.
    #[error("the veth policy needs nftables' `nft` program (Debian: apt install nftables); none in PATH, /usr/sbin or /sbin")]
    NoNft,
    /// `nft` could not be run.
    #[error("run {0}")]
    Spawn(String, #[source] std::io::Error),
    /// `nft` refused the rules.
    #[error("nft refused the {action} of table inet {table}: {stderr}")]
    Refused {
        /// `load` or `delete`.
        action: &'static str,
        /// The table.
        table: String,
        /// What `nft` said.
        stderr: String,
    },
}

/// The daemon's nftables table: loaded at start, deleted when dropped by the process
/// that loaded it.
#[derive(Debug)]
pub struct Firewall {
    nft: PathBuf,
    table: String,
    owner: u32,
    loaded: bool,
}

impl Firewall {
    /// Loads the table of a daemon with host ends `prefix*` and `pool`, replacing one
    /// a previous daemon of that prefix left.
    pub fn load(prefix: &str, pool: &[Cidr], policy: &Policy) -> Result<Firewall, FirewallError> {
        let nft = find_nft().ok_or(FirewallError::NoNft)?;
        let table = table_name(prefix);
        run_nft(&nft, &ruleset(prefix, pool, policy), "load", &table)?;
        Ok(Firewall {
            nft,
            table,
            owner: std::process::id(),
            loaded: true,
        })
    }

    /// The table's name (in the `inet` family).
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Deletes the table (once; later calls do nothing).
    pub fn unload(&mut self) -> Result<(), FirewallError> {
        if !self.loaded || self.owner != std::process::id() {
            return Ok(());
        }
        self.loaded = false;
        let script = format!("delete table inet {}\n", self.table);
        run_nft(&self.nft, &script, "delete", &self.table)
    }
}

impl Drop for Firewall {
    fn drop(&mut self) {
        if let Err(e) = self.unload() {
            tracing::warn!(error = %crate::error_chain(&e), "cannot delete the veth policy's table");
        }
    }
}

/// `nft` in `PATH`, else in `/usr/sbin` or `/sbin` (where Debian puts it, and which a
/// non-root `PATH` often lacks).
fn find_nft() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join("nft"))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Runs `nft -f -` with `script` on its stdin. `nft` starts no thread of the daemon's:
/// it is a child process, waited for here.
fn run_nft(
    nft: &Path,
    script: &str,
    action: &'static str,
    table: &str,
) -> Result<(), FirewallError> {
    let spawn_failed = |e| FirewallError::Spawn(format!("{} -f -", nft.display()), e);
    let mut child = Command::new(nft)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_failed)?;
    let written = child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(script.as_bytes());
    let output = child.wait_with_output().map_err(spawn_failed)?;
    written.map_err(spawn_failed)?;
    if output.status.success() {
        return Ok(());
    }
    Err(FirewallError::Refused {
        action,
        table: table.to_string(),
        stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
    })
}

/// The nameservers of a `resolv.conf` text that an `internet` sandbox can reach: not
/// loopback or unspecified, not an address of the host (`host`), not in the daemon's
/// pool, and not on the deny list unless the allow list has them.
pub fn reachable_resolvers(
    resolv_conf: &str,
    pool: &[Cidr],
    policy: &Policy,
    host: &[IpAddr],
) -> Vec<IpAddr> {
    let denied: Vec<Cidr> = DENIED_V4
        .iter()
        .chain([&DENIED_V4_HIGH])
        .chain(DENIED_V6.iter())
        .map(|range| range.parse().expect("the deny list is valid"))
        .chain(policy.deny.iter().copied())
        .collect();
    let within = |address: IpAddr, ranges: &[Cidr]| ranges.iter().any(|r| r.contains(address));
    resolv_conf
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("nameserver"))
                .then(|| words.next())
                .flatten()
        })
        // An IPv6 link-local resolver carries its zone (`fe80::1%eth0`): never reachable.
        .filter_map(|address| address.parse::<IpAddr>().ok())
        .filter(|&address| {
            !address.is_loopback()
                && !address.is_unspecified()
                && !host.contains(&address)
                && !within(address, pool)
                && (within(address, &policy.allow) || !within(address, &denied))
        })
        .collect()
}

/// The `/etc/resolv.conf` of a sandbox that uses `resolvers`.
pub fn resolv_conf(resolvers: &[IpAddr]) -> Vec<u8> {
    let mut text = String::from("# written by hatchery for this sandbox (serve --veth-dns)\n");
    for resolver in resolvers {
        let _ = writeln!(text, "nameserver {resolver}");
    }
    text.into_bytes()
}

/// Whether the kernel forwards packets of this family at all (`internet` needs it; the
/// daemon does not switch it on, as that changes how the host treats every interface).
pub fn forwarding_enabled(v6: bool) -> bool {
    let path = if v6 {
        "/proc/sys/net/ipv6/conf/all/forwarding"
    } else {
        "/proc/sys/net/ipv4/ip_forward"
    };
    std::fs::read_to_string(path).is_ok_and(|v| v.trim() == "1")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `address` is in one of `ranges`.
    fn covered(address: std::net::IpAddr, ranges: &[Cidr]) -> bool {
        ranges.iter().any(|range| range.contains(address))
    }

    fn cidrs(ranges: &[&str]) -> Vec<Cidr> {
        ranges.iter().map(|r| r.parse().unwrap()).collect()
    }

    #[test]
    fn host_ports_read_as_port_slash_transport() {
        assert_eq!(
            "8080/tcp".parse::<HostPort>(),
            Ok(HostPort {
                port: 8080,
                transport: Transport::Tcp
            })
        );
        assert_eq!("53/udp".parse::<HostPort>().unwrap().to_string(), "53/udp");
        for bad in ["8080", "0/tcp", "65536/tcp", "80/sctp", "/tcp", "x/udp"] {
            let err = bad.parse::<HostPort>().unwrap_err();
            assert!(err.contains("PORT/tcp"), "{bad}: {err}");
        }
    }

    #[test]
    fn the_default_resolvers_are_the_hosts_that_a_sandbox_can_reach() {
        let text = "# a comment\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nnameserver 1.1.1.1\n\
                    nameserver fe80::1%eth0\nnameserver 2606:4700:4700::1111\nnameserver 11.22.33.1\n\
                    search example.org\nnameserver 10.213.0.1\n";
        let host: Vec<IpAddr> = vec!["11.22.33.1".parse().unwrap()];
        let pool = cidrs(&["10.213.0.0/16"]);
        let mut policy = Policy {
            egress: Egress::Internet,
            ..Policy::default()
        };
        let found = |policy: &Policy| -> Vec<String> {
            reachable_resolvers(text, &pool, policy, &host)
                .iter()
                .map(ToString::to_string)
                .collect()
        };
        assert_eq!(found(&policy), ["1.1.1.1", "2606:4700:4700::1111"]);
        // The allow list lifts a private resolver; never the pool's or the host's.
        policy.allow = cidrs(&["10.0.0.0/8", "11.22.33.0/24"]);
        assert_eq!(
            found(&policy),
            ["10.0.0.2", "1.1.1.1", "2606:4700:4700::1111"]
        );
        policy.deny = cidrs(&["1.1.1.0/24"]);
        assert_eq!(found(&policy), ["10.0.0.2", "2606:4700:4700::1111"]);
        assert_eq!(
            resolv_conf(&["1.1.1.1".parse().unwrap()]),
            b"# written by hatchery for this sandbox (serve --veth-dns)\nnameserver 1.1.1.1\n"
        );
    }

    #[test]
    fn policies_have_names() {
        assert_eq!("none".parse(), Ok(Egress::None));
        assert_eq!("internet".parse(), Ok(Egress::Internet));
        assert!("all"
            .parse::<Egress>()
            .unwrap_err()
            .contains("none or internet"));
        assert_eq!(Egress::default(), Egress::None);
        assert_eq!(Egress::Internet.name(), "internet");
    }

    #[test]
    fn every_denied_range_is_a_valid_range() {
        for range in DENIED_V4.iter().chain([&DENIED_V4_HIGH]) {
            assert!(range.parse::<Cidr>().unwrap().addr.is_ipv4(), "{range}");
        }
        for range in DENIED_V6 {
            assert!(range.parse::<Cidr>().unwrap().addr.is_ipv6(), "{range}");
        }
    }

    #[test]
    fn the_deny_list_covers_what_a_public_service_must_refuse() {
        let v4: Vec<Cidr> = cidrs(&DENIED_V4)
            .into_iter()
            .chain(cidrs(&[DENIED_V4_HIGH]))
            .collect();
        let v6 = cidrs(&DENIED_V6);
        for refused in [
            "10.1.2.3",
            "172.31.255.255",
            "192.168.1.1",
            "127.0.0.53",
            "169.254.169.254",
            "100.100.100.200",
            "0.0.0.0",
            "224.0.0.251",
            "255.255.255.255",
        ] {
            assert!(covered(refused.parse().unwrap(), &v4), "{refused}");
        }
        for refused in [
            "::1",
            "fd00:ec2::254",
            "fe80::1",
            "ff02::1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
        ] {
            assert!(covered(refused.parse().unwrap(), &v6), "{refused}");
        }
        for public in ["1.1.1.1", "8.8.8.8", "11.22.33.44"] {
            assert!(!covered(public.parse().unwrap(), &v4), "{public}");
        }
        for public in ["2606:4700:4700::1111", "2a00:1450::1"] {
            assert!(!covered(public.parse().unwrap(), &v6), "{public}");
        }
    }

    #[test]
    fn none_refuses_all_but_the_listed_host_ports() {
        let policy = Policy {
            host_ports: vec!["8080/tcp".parse().unwrap(), "53/udp".parse().unwrap()],
            ..Policy::default()
        };
        let script = ruleset("hatch", &cidrs(&["10.213.0.0/16", "fd68::/48"]), &policy);
        assert!(script.starts_with(
            "table inet hatchery-hatch\ndelete table inet hatchery-hatch\ntable inet hatchery-hatch {\n"
        ));
        assert!(
            script.contains("elements = { tcp . 8080, udp . 53 }"),
            "{script}"
        );
        assert!(
            script.contains("iifname \"hatch*\" jump from_sandbox"),
            "{script}"
        );
        assert!(script.contains("set pool4 { type ipv4_addr; flags interval; auto-merge; elements = { 10.213.0.0/16 }; }"), "{script}");
        // Nothing beyond the host end: no NAT, no accept after the host ports.
        assert!(!script.contains("masquerade"), "{script}");
        let chain = script
            .split("chain from_sandbox {")
            .nth(1)
            .and_then(|rest| rest.split("\n    }").next())
            .unwrap();
        let after_ports = chain.split("@host_ports accept").nth(1).unwrap();
        assert_eq!(after_ports.trim(), "jump refuse", "{chain}");
    }

    #[test]
    fn internet_refuses_the_pool_the_host_and_the_deny_list_before_it_accepts() {
        let policy = Policy {
            egress: Egress::Internet,
            allow: cidrs(&["10.9.0.0/16"]),
            deny: cidrs(&["1.2.3.0/24", "2001:4860::/32"]),
            ..Policy::default()
        };
        let script = ruleset("hx", &cidrs(&["10.213.0.0/16"]), &policy);
        let order = [
            "fib saddr . iif oif missing drop",
            "ct state established,related accept",
            "@host_ports accept",
            "ip daddr @pool4 jump refuse",
            "fib daddr type { local, broadcast, anycast, multicast } jump refuse",
            "ip daddr @allow4 accept",
            "ip daddr @deny4 jump refuse",
            "ip6 daddr @deny6 jump refuse",
            "        accept\n",
            "jump refuse\n    }",
        ];
        let mut at = 0;
        for rule in order {
            let found = script[at..]
                .find(rule)
                .unwrap_or_else(|| panic!("{rule} after {at}:\n{script}"));
            at += found + rule.len();
        }
        assert!(script.contains("1.2.3.0/24"), "{script}");
        assert!(script.contains("2001:4860::/32"), "{script}");
        assert!(script.contains("set allow4 { type ipv4_addr; flags interval; auto-merge; elements = { 10.9.0.0/16 }; }"));
        assert!(script.contains("set pool6 { type ipv6_addr; flags interval; auto-merge; }"));
        assert!(script.contains("ip saddr @pool4 masquerade"), "{script}");
    }
}

#[cfg(test)]
mod documented {
    use super::*;

    /// docs/networking.md shows the exact rules of its example daemon: these.
    #[test]
    fn the_documented_rules_are_the_rules() {
        let doc = include_str!("../../docs/networking.md");
        let begin = "<!-- rules of the example: begin -->\n```nft\n";
        let shown = doc
            .split_once(begin)
            .and_then(|(_, rest)| rest.split_once("```\n<!-- rules of the example: end -->"))
            .map(|(rules, _)| rules)
            .expect("docs/networking.md shows the example's rules between the markers");
        let policy = Policy {
            egress: Egress::Internet,
            host_ports: vec!["3128/tcp".parse().unwrap()],
            allow: Vec::new(),
            deny: Vec::new(),
            dns: Vec::new(),
        };
        let pool: Vec<Cidr> = ["10.213.0.0/16", "fd68:6174:6368::/48"]
            .iter()
            .map(|r| r.parse().unwrap())
            .collect();
        let rules = ruleset("hatch", &pool, &policy);
        assert_eq!(shown, rules, "docs/networking.md should show:\n{rules}");
    }
}
