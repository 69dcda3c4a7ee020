//! Zygote side: veth networks for sandboxes ([`NetworkConfig::Veth`]), over rtnetlink.
//!
//! Per networked sandbox the daemon, right after the clone and while the sandbox's init
//! builds its mounts in parallel:
//! 1. creates the pair in one request, the sandbox's end directly inside the sandbox's
//!    network namespace (named by the init's pid), both ends up;
//! 2. addresses the host end and, under the `none` policy, switches off IPv4 forwarding
//!    for packets that arrive on it (a second wall behind the policy's table);
//! 3. enters the sandbox's namespace just long enough to open a netlink socket there
//!    (through the init's pidfd: no namespace fd is ever held), addresses the sandbox's
//!    end and adds default routes via the host end;
//! 4. waits until both ends are operationally up, then tells the init to go on.
//!
//! The netlink work runs on a tokio current-thread runtime on the daemon's own thread:
//! the zygote stays single-threaded, as it must be whenever it clones. The socket inside
//! the sandbox's namespace is closed before the sandbox runs, so nothing of the daemon's
//! keeps a dead sandbox's namespace alive.
//!
//! What sandboxes may reach is the daemon's [`Policy`], enforced by an nftables table
//! loaded when the daemon starts and deleted when it exits (see [`policy`]).
//!
//! A subnet returns to the pool only once its host end is gone (the kernel tears the
//! pair down with the namespace, ~45 ms after the reap); a pair still there seconds
//! after the reap is deleted. At start the daemon removes veths of its name prefix that
//! a previous daemon left.
//!
//! [`NetworkConfig::Veth`]: crate::protocol::NetworkConfig::Veth

mod netlink;
pub mod policy;
pub mod subnets;

use std::net::IpAddr;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sched::CloneFlags;

use crate::protocol::{AddressFacts, NetworkFacts, VethConfig};
use crate::sys::{self, Context, SysError};
pub use policy::{Egress, Firewall, FirewallError, HostPort, Policy};
pub use subnets::{Cidr, Subnet, SubnetPool, SubnetPoolError};

/// The sandbox's interface name unless the request names one.
pub const DEFAULT_INTERFACE: &str = "eth0";
/// The MTU of both ends unless the request sets one.
pub const DEFAULT_MTU: u32 = 1500;
/// The name prefix of a daemon's host ends unless configured.
pub const DEFAULT_PREFIX: &str = "hatch";
/// The longest name prefix: the rest of the 15 bytes a name may have is the counter.
pub const MAX_PREFIX_LEN: usize = 8;
/// The IPv4 range of `hatchery run --net veth` without a daemon.
pub const EMBEDDED_POOL_V4: &str = "10.213.0.0/16";
/// The IPv6 range of `hatchery run --net veth` without a daemon.
pub const EMBEDDED_POOL_V6: &str = "fd68:6174:6368::/48";

/// How long both ends may take to come up before the spawn fails.
const CARRIER_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a taken host end name is skipped before the spawn fails.
const NAME_ATTEMPTS: usize = 16;
/// A pair still there this long after its sandbox was reaped is deleted by the daemon
/// (something outside the sandbox held its namespace).
const FORCE_DELETE_AFTER: Duration = Duration::from_secs(2);
/// How often the daemon looks for torn-down pairs while some are pending.
pub const COLLECT_EVERY: Duration = Duration::from_millis(10);

/// How the daemon networks sandboxes that ask for a veth.
#[derive(Debug, Clone)]
pub struct NetworkSettings {
    /// One IPv4 and/or one IPv6 range, cut into a /30 and a /126 per sandbox.
    pub pool: Vec<Cidr>,
    /// Host ends are named this plus a counter. The prefix belongs to this daemon: veths
    /// named so are removed when it starts.
    pub prefix: String,
    /// What sandboxes may reach: their host end's listed ports only, or the internet.
    pub policy: Policy,
    /// The pool's first slot (so that processes sharing a range start apart).
    pub first_slot: u32,
}

impl NetworkSettings {
    /// What `hatchery run --net veth` uses without a daemon: the embedded pools, a
    /// prefix of this process's own (`hr` and its pid), the `none` policy with no host
    /// port.
    pub fn embedded() -> NetworkSettings {
        let pid = std::process::id();
        NetworkSettings {
            pool: [EMBEDDED_POOL_V4, EMBEDDED_POOL_V6]
                .iter()
                .map(|range| range.parse().expect("the embedded pools are valid"))
                .collect(),
            prefix: format!("hr{}", base36(u64::from(pid))),
            policy: Policy::default(),
            first_slot: pid,
        }
    }
}

/// Why veth networking cannot be set up in this daemon.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// The address pool makes no sense.
    #[error("veth pool")]
    Pool(#[source] SubnetPoolError),
    /// The name prefix is empty, too long or holds characters a name cannot.
    #[error("veth name prefix {0:?} must be 1 to {max} bytes of [a-z0-9_-]", max = MAX_PREFIX_LEN)]
    Prefix(String),
    /// A system call or netlink request failed.
    #[error("veth networking")]
    Sys(#[source] SysError),
    /// The policy's nftables table cannot be loaded.
    #[error("veth policy")]
    Firewall(#[source] FirewallError),
}

impl From<SysError> for NetworkError {
    fn from(e: SysError) -> Self {
        NetworkError::Sys(e)
    }
}

/// A sandbox's network: its subnet and its host end.
#[derive(Debug)]
pub struct Lease {
    subnet: Subnet,
    host_name: String,
    host_index: u32,
    /// The sandbox end's name.
    interface: String,
}

impl Lease {
    /// The addresses.
    pub fn subnet(&self) -> &Subnet {
        &self.subnet
    }

    /// The host end's name.
    pub fn host_name(&self) -> &str {
        &self.host_name
    }

    /// What the client is told of this network in `Spawned`.
    pub fn facts(&self) -> NetworkFacts {
        let v4 = self.subnet.v4.map(|(host, sandbox)| AddressFacts {
            address: IpAddr::V4(sandbox),
            prefix_len: subnets::V4_SUBNET,
            gateway: IpAddr::V4(host),
        });
        let v6 = self.subnet.v6.map(|(host, sandbox)| AddressFacts {
            address: IpAddr::V6(sandbox),
            prefix_len: subnets::V6_SUBNET,
            gateway: IpAddr::V6(host),
        });
        NetworkFacts {
            interface: self.interface.clone(),
            host_interface: self.host_name.clone(),
            addresses: v4.into_iter().chain(v6).collect(),
        }
    }
}

/// A lease whose sandbox is gone, waiting for its pair to go.
#[derive(Debug)]
struct Draining {
    lease: Lease,
    since: Instant,
    deleted: bool,
}

/// The daemon's veth networking: its runtime and netlink connection, the pool and the
/// pairs being torn down.
pub struct Network {
    runtime: tokio::runtime::Runtime,
    handle: rtnetlink::Handle,
    /// The daemon's own network namespace, to return to after entering a sandbox's.
    home: OwnedFd,
    pool: SubnetPool,
    prefix: String,
    policy: Policy,
    /// The `/etc/resolv.conf` of `internet` sandboxes, if they have resolvers.
    resolv_conf: Option<Vec<u8>>,
    /// The policy's table; deleted when the daemon finishes or drops this.
    firewall: Firewall,
    next_name: u64,
    draining: Vec<Draining>,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("prefix", &self.prefix)
            .field("policy", &self.policy.egress)
            .field("free", &self.pool.free())
            .field("draining", &self.draining.len())
            .finish()
    }
}

impl Network {
    /// Loads the policy's table (replacing one a previous daemon of this prefix left),
    /// builds the runtime and the netlink connection, and removes the veths of this
    /// prefix that a previous daemon left.
    pub fn new(settings: NetworkSettings) -> Result<Network, NetworkError> {
        let prefix = settings.prefix.clone();
        let prefix_ok = (1..=MAX_PREFIX_LEN).contains(&prefix.len())
            && prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !prefix_ok {
            return Err(NetworkError::Prefix(prefix));
        }
        let pool =
            SubnetPool::new(&settings.pool, settings.first_slot).map_err(NetworkError::Pool)?;
        // A current-thread runtime with its I/O driver only: it runs on this thread,
        // inside `block_on`, and starts none of its own.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(|e| SysError::from_io("build the netlink runtime", None, &e))?;
        let handle = {
            let _entered = runtime.enter();
            let (connection, handle, _) = rtnetlink::new_connection()
                .map_err(|e| SysError::from_io("socket(NETLINK_ROUTE)", None, &e))?;
            runtime.spawn(connection);
            handle
        };
        let home = sys::own_netns()?;
        let firewall = Firewall::load(&prefix, &settings.pool, &settings.policy)
            .map_err(NetworkError::Firewall)?;
        tracing::info!(
            table = %format!("inet {}", firewall.table()),
            policy = settings.policy.egress.name(),
            host_ports = %settings.policy.host_ports.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
            "veth policy loaded"
        );
        if settings.policy.egress == Egress::Internet {
            for (v6, switch) in [
                (false, "net.ipv4.ip_forward"),
                (true, "net.ipv6.conf.all.forwarding"),
            ] {
                let family_in_pool = settings.pool.iter().any(|range| range.addr.is_ipv6() == v6);
                if family_in_pool && !policy::forwarding_enabled(v6) {
                    tracing::warn!(
                        "{switch} is 0: `internet` sandboxes reach nothing beyond their host end over {} until it is 1",
                        if v6 { "IPv6" } else { "IPv4" }
                    );
                }
            }
        }
        let resolv_conf = sandbox_resolvers(&settings).map(|r| policy::resolv_conf(&r));
        let mut network = Network {
            runtime,
            handle,
            home,
            pool,
            prefix,
            policy: settings.policy,
            resolv_conf,
            firewall,
            next_name: 0,
            draining: Vec::new(),
        };
        network.remove_stale()?;
        Ok(network)
    }

    /// The `/etc/resolv.conf` each veth sandbox gets, if any (`internet` with resolvers).
    pub fn resolv_conf(&self) -> Option<&[u8]> {
        self.resolv_conf.as_deref()
    }

    /// Deletes veths named like this daemon's host ends (the prefix, then a counter).
    fn remove_stale(&mut self) -> Result<(), SysError> {
        let handle = self.handle.clone();
        let ours: Vec<(u32, String)> = self
            .runtime
            .block_on(netlink::veths(&handle))?
            .into_iter()
            .filter(|(_, name)| self.is_ours(name))
            .collect();
        for (index, name) in ours {
            match self
                .runtime
                .block_on(netlink::delete(&handle, index, &name))
            {
                Ok(()) => {
                    tracing::info!(interface = %name, "removed a veth a previous daemon left")
                }
                // Its peer went first and took it along.
                Err(e) if e.errno() == Errno::ENODEV => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Whether a host end name is this daemon's: the prefix, then base-36 digits.
    fn is_ours(&self, name: &str) -> bool {
        name.strip_prefix(&self.prefix).is_some_and(|counter| {
            !counter.is_empty()
                && counter
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
        })
    }

    /// Takes a subnet for a sandbox about to be cloned; `None` when the pool is used up.
    pub fn reserve(&mut self) -> Option<Subnet> {
        self.pool.allocate()
    }

    /// Gives back a subnet that was reserved but never attached.
    pub fn unreserve(&mut self, subnet: Subnet) {
        self.pool.release(subnet);
    }

    /// Builds the veth network of the sandbox whose init is `pid` (and `pidfd`), in
    /// `subnet`, and returns once both ends are up. On failure the subnet is taken care
    /// of (freed, or held until the pair is gone); the caller kills the sandbox.
    pub fn attach(
        &mut self,
        subnet: Subnet,
        pid: i32,
        pidfd: BorrowedFd<'_>,
        config: &VethConfig,
    ) -> Result<Lease, SysError> {
        let mtu = config.mtu.unwrap_or(DEFAULT_MTU);
        let inside = config.interface.as_deref().unwrap_or(DEFAULT_INTERFACE);
        let handle = self.handle.clone();

        // The pair, under a fresh host name if one is taken by an interface not ours.
        let mut created = None;
        for _ in 0..NAME_ATTEMPTS {
            let host_name = format!("{}{}", self.prefix, base36(self.next_name));
            self.next_name += 1;
            let made = self
                .runtime
                .block_on(netlink::create_pair(&handle, &host_name, inside, pid, mtu));
            match made {
                Ok(()) => {
                    created = Some(host_name);
                    break;
                }
                Err(e) if e.errno() == Errno::EEXIST => {
                    tracing::warn!(interface = %host_name, "an interface has this daemon's next name; skipping it");
                }
                Err(e) => {
                    self.pool.release(subnet);
                    return Err(e);
                }
            }
        }
        let Some(host_name) = created else {
            self.pool.release(subnet);
            return Err(SysError::with_path(
                "find a free veth name",
                format!("{}*", self.prefix),
                Errno::EEXIST,
            ));
        };
        let host_index = match self
            .runtime
            .block_on(netlink::index_of(&handle, &host_name))
        {
            Ok(index) => index,
            Err(e) => {
                // No address was ever given out: the subnet is free again at once. The
                // pair goes with the sandbox's namespace.
                self.pool.release(subnet);
                return Err(e);
            }
        };
        let lease = Lease {
            subnet,
            host_name,
            host_index,
            interface: inside.to_string(),
        };
        match self.configure(&lease, pidfd, inside) {
            Ok(()) => Ok(lease),
            Err(e) => {
                let _ =
                    self.runtime
                        .block_on(netlink::delete(&handle, host_index, &lease.host_name));
                self.release(lease);
                Err(e)
            }
        }
    }

    /// Addresses, forwarding and routes of both ends, then the wait for carrier.
    fn configure(
        &self,
        lease: &Lease,
        pidfd: BorrowedFd<'_>,
        inside: &str,
    ) -> Result<(), SysError> {
        let (host, index) = (lease.host_name.as_str(), lease.host_index);
        let subnet = lease.subnet;
        let handle = &self.handle;
        if self.policy.egress == Egress::None && subnet.v4.is_some() {
            let path = format!("/proc/sys/net/ipv4/conf/{host}/forwarding");
            std::fs::write(&path, b"0").op_path("write", &path)?;
        }

        // A netlink socket inside the sandbox's namespace, made there and closed before
        // this function returns.
        let (connection, inside_handle) = {
            let _entered = self.runtime.enter();
            self.inside(pidfd, || {
                rtnetlink::new_connection()
                    .map(|(connection, handle, _)| (connection, handle))
                    .map_err(|e| SysError::from_io("socket(NETLINK_ROUTE) inside", None, &e))
            })?
        };
        // Both ends are configured at once, each end's independent requests in flight
        // together; the routes need the sandbox end's addresses first.
        let host_end = netlink::add_addresses(
            handle,
            index,
            host,
            subnet.v4.map(|(host, _)| host),
            subnet.v6.map(|(host, _)| host),
        );
        let sandbox_end = async {
            let inside_index = netlink::index_of(&inside_handle, inside).await?;
            futures_util::future::try_join(
                netlink::set_up(&inside_handle, inside_index, inside),
                netlink::add_addresses(
                    &inside_handle,
                    inside_index,
                    inside,
                    subnet.v4.map(|(_, sandbox)| sandbox),
                    subnet.v6.map(|(_, sandbox)| sandbox),
                ),
            )
            .await?;
            netlink::add_default_routes(
                &inside_handle,
                inside_index,
                inside,
                subnet.v4.map(|(host, _)| host),
                subnet.v6.map(|(host, _)| host),
            )
            .await?;
            Ok(inside_index)
        };
        let work = async {
            let ((), inside_index) = futures_util::future::try_join(host_end, sandbox_end).await?;
            netlink::wait_until_up(
                [
                    (handle, index, host),
                    (&inside_handle, inside_index, inside),
                ],
                CARRIER_TIMEOUT,
            )
            .await
        };
        // The connection is driven only while the work runs, and dropped with it.
        let outcome = self.runtime.block_on(async {
            futures_util::pin_mut!(work);
            match futures_util::future::select(work, connection).await {
                futures_util::future::Either::Left((outcome, _)) => outcome,
                futures_util::future::Either::Right(((), _)) => Err(SysError::new(
                    "netlink connection inside the sandbox",
                    Errno::ECONNRESET,
                )),
            }
        });
        drop(inside_handle);
        outcome
    }

    /// Runs `f` in the network namespace of the process behind `pidfd`, then returns to
    /// the daemon's own. A daemon that cannot return aborts rather than go on serving
    /// from a sandbox's namespace.
    fn inside<T>(
        &self,
        pidfd: BorrowedFd<'_>,
        f: impl FnOnce() -> Result<T, SysError>,
    ) -> Result<T, SysError> {
        nix::sched::setns(pidfd, CloneFlags::CLONE_NEWNET).op("setns(pidfd, CLONE_NEWNET)")?;
        let outcome = f();
        sys::return_to_netns(&self.home);
        outcome
    }

    /// Takes back the lease of a reaped sandbox: its subnet is free once its pair is gone.
    pub fn release(&mut self, lease: Lease) {
        self.draining.push(Draining {
            lease,
            since: Instant::now(),
            deleted: false,
        });
    }

    /// How many pairs of reaped sandboxes are being torn down.
    pub fn draining_count(&self) -> usize {
        self.draining.len()
    }

    /// How many subnets are free now.
    pub fn free(&self) -> usize {
        self.pool.free()
    }

    /// Whether pairs of reaped sandboxes are still being torn down.
    pub fn draining(&self) -> bool {
        !self.draining.is_empty()
    }

    /// Frees the subnets whose pairs are gone, and deletes pairs that outstay their
    /// sandbox by `FORCE_DELETE_AFTER` (two seconds).
    pub fn collect(&mut self) {
        let now = Instant::now();
        let handle = self.handle.clone();
        let mut i = 0;
        while i < self.draining.len() {
            let entry = &mut self.draining[i];
            let gone = match nix::net::if_::if_nametoindex(entry.lease.host_name.as_str()) {
                Ok(index) => index != entry.lease.host_index,
                Err(_) => true,
            };
            if gone {
                let entry = self.draining.swap_remove(i);
                self.pool.release(entry.lease.subnet);
                continue;
            }
            if !entry.deleted && now.duration_since(entry.since) >= FORCE_DELETE_AFTER {
                entry.deleted = true;
                let (index, name) = (entry.lease.host_index, entry.lease.host_name.clone());
                tracing::warn!(interface = %name, "a veth outlived its sandbox; deleting it");
                if let Err(e) = self
                    .runtime
                    .block_on(netlink::delete(&handle, index, &name))
                {
                    tracing::warn!(error = %e, "cannot delete a leftover veth");
                }
            }
            i += 1;
        }
    }

    /// At shutdown: waits up to `within` for the pairs of reaped sandboxes to go, deletes
    /// those left, then the policy's table.
    pub fn finish(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        while self.draining() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
            self.collect();
        }
        let handle = self.handle.clone();
        for entry in std::mem::take(&mut self.draining) {
            let (index, name) = (entry.lease.host_index, entry.lease.host_name);
            match self
                .runtime
                .block_on(netlink::delete(&handle, index, &name))
            {
                Ok(()) => {}
                Err(e) if e.errno() == Errno::ENODEV => {}
                Err(e) => tracing::warn!(error = %e, "cannot delete a leftover veth"),
            }
        }
        if let Err(e) = self.firewall.unload() {
            tracing::warn!(error = %crate::error_chain(&e), "cannot delete the veth policy's table");
        }
    }
}

/// Where a sandbox's resolvers are written.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";

/// Gives a veth sandbox its own `/etc/resolv.conf` holding `contents` (a read-only file
/// of its own, over whatever its root has; the host's is never touched), unless the
/// request binds or makes one there itself.
pub fn add_resolv_conf(sandbox: &mut crate::protocol::SandboxConfig, contents: &[u8]) {
    let target = std::path::Path::new(RESOLV_CONF);
    let named = sandbox.binds.iter().any(|b| b.target.as_path() == target)
        || sandbox
            .mounts
            .iter()
            .any(|m| m.target().as_path() == target);
    if !named && matches!(sandbox.network, crate::protocol::NetworkConfig::Veth(_)) {
        sandbox.mounts.push(crate::protocol::Mount::File {
            contents: contents.to_vec(),
            target: RESOLV_CONF.into(),
        });
    }
}

/// The resolvers of `internet` sandboxes: `--veth-dns`, else the host's that a sandbox
/// can reach; said in the log either way. `None` under `none`, or when there are none.
fn sandbox_resolvers(settings: &NetworkSettings) -> Option<Vec<std::net::IpAddr>> {
    let policy = &settings.policy;
    if policy.egress != Egress::Internet {
        return None;
    }
    if !policy.dns.is_empty() {
        let listed: Vec<String> = policy.dns.iter().map(ToString::to_string).collect();
        tracing::info!(resolvers = %listed.join(","), "internet sandboxes resolve with --veth-dns");
        return Some(policy.dns.clone());
    }
    let host: Vec<std::net::IpAddr> = nix::ifaddrs::getifaddrs()
        .map(|addresses| {
            addresses
                .filter_map(|a| a.address)
                .filter_map(|a| {
                    a.as_sockaddr_in()
                        .map(|v4| std::net::IpAddr::V4(v4.ip()))
                        .or_else(|| a.as_sockaddr_in6().map(|v6| std::net::IpAddr::V6(v6.ip())))
                })
                .collect()
        })
        .unwrap_or_default();
    let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let found = policy::reachable_resolvers(&text, &settings.pool, policy, &host);
    if found.is_empty() {
        tracing::warn!(
            "internet sandboxes get no resolver: none of /etc/resolv.conf's is reachable from a sandbox (loopback, private or the host's own); name one with --veth-dns"
        );
        return None;
    }
    let listed: Vec<String> = found.iter().map(ToString::to_string).collect();
    tracing::info!(resolvers = %listed.join(","), "internet sandboxes resolve with the host's reachable resolvers");
    Some(found)
}

/// `n` in lowercase base 36, as host end names carry their counter.
fn base36(mut n: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("ASCII digits")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_base36() {
        assert_eq!(base36(0), "0");
        assert_eq!(base36(35), "z");
        assert_eq!(base36(36), "10");
        assert!(base36(u64::from(u32::MAX)).len() <= 7);
    }

    #[test]
    fn embedded_settings_fit_the_name_limit() {
        let settings = NetworkSettings::embedded();
        assert!(settings.prefix.len() <= MAX_PREFIX_LEN);
        assert_eq!(settings.pool.len(), 2);
        // The prefix plus a 7-digit counter still fits in 15 bytes.
        assert!(settings.prefix.len() + 7 <= 15);
    }
}
