//! What the daemon counts while it serves (spawns served and failed, sandboxes ended,
//! warm-pool hits and misses, spawn latency) and its answer to a `Status` request, built
//! from those counters and the loop's own state. Runs in the zygote's loop; reading a
//! sandbox's memory reads `/proc`, nothing else.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::child::{Child, Phase};
use super::listener::Peer;
use super::server::Server;
use crate::protocol::{
    self, Count, DaemonStatus, EndReason, Event, PoolStatus, SandboxStatus, VethStatus,
};

/// The upper bounds of the spawn latency histogram's buckets, in seconds (request to
/// exec), Prometheus' `le` labels.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 5.0,
];

/// The daemon's counters, from the start of serving.
pub(super) struct Stats {
    /// When it started serving.
    pub(super) started: Instant,
    /// Spawns whose workload started, by how (`fresh`, `warm`).
    pub(super) served: BTreeMap<&'static str, u64>,
    /// Spawn requests answered with an error, by its kind.
    pub(super) failed: BTreeMap<&'static str, u64>,
    /// Sandboxes ended, by why.
    pub(super) ended: BTreeMap<&'static str, u64>,
    /// Poolable spawns an idle sandbox served.
    pub(super) pool_hits: u64,
    /// Poolable spawns that started fresh while the daemon keeps a pool.
    pub(super) pool_misses: u64,
    /// Spawns per latency bucket ([`LATENCY_BUCKETS`], then one for the rest).
    pub(super) latency_buckets: [u64; LATENCY_BUCKETS.len() + 1],
    /// The sum of every served spawn's latency.
    pub(super) latency_sum: Duration,
}

impl Stats {
    pub(super) fn new() -> Stats {
        Stats {
            started: Instant::now(),
            served: BTreeMap::new(),
            failed: BTreeMap::new(),
            ended: BTreeMap::new(),
            pool_hits: 0,
            pool_misses: 0,
            latency_buckets: [0; LATENCY_BUCKETS.len() + 1],
            latency_sum: Duration::ZERO,
        }
    }

    /// A spawn's workload started, `took` after its request arrived.
    pub(super) fn served(&mut self, warm: bool, took: Duration) {
        *self
            .served
            .entry(if warm { "warm" } else { "fresh" })
            .or_default() += 1;
        let seconds = took.as_secs_f64();
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|&le| seconds <= le)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.latency_buckets[bucket] += 1;
        self.latency_sum += took;
    }

    /// A spawn request was answered with an error of the kind named `kind`
    /// (`ErrorKind::name`).
    pub(super) fn failed(&mut self, kind: &'static str) {
        *self.failed.entry(kind).or_default() += 1;
    }

    /// A sandbox ended for `reason`.
    pub(super) fn ended(&mut self, reason: EndReason) {
        *self.ended.entry(reason.name()).or_default() += 1;
    }

    /// A poolable spawn was served by the pool (`hit`) or started fresh.
    pub(super) fn pool(&mut self, hit: bool) {
        match hit {
            true => self.pool_hits += 1,
            false => self.pool_misses += 1,
        }
    }
}

/// The most characters of a program a status shows (the log's label is longer).
const PROGRAM_MAX: usize = 80;

/// Room left in a message for everything in a status but its sandboxes.
const STATUS_HEADROOM: usize = 4096;

fn counts(map: &BTreeMap<&'static str, u64>) -> Vec<Count> {
    map.iter()
        .map(|(&name, &count)| Count {
            name: name.to_string(),
            count,
        })
        .collect()
}

impl Server {
    /// Answers a `Status` request of the connection `key`.
    pub(super) fn answer_status(&mut self, key: u64, id: u64) {
        let Some(peer) = self.conns.get(&key).map(|conn| conn.peer) else {
            return;
        };
        let status = self.status_for(peer);
        if let Some(conn) = self.conns.get_mut(&key) {
            conn.send(
                &Event::Status {
                    id,
                    status: Box::new(status),
                },
                Vec::new(),
            );
        }
    }

    /// The daemon's status as `peer` may see it: every sandbox for root, the daemon's own
    /// uid and the embedded zygote's client; a client's own otherwise.
    pub(super) fn status_for(&self, peer: Option<Peer>) -> DaemonStatus {
        let own_uid = nix::unistd::geteuid().as_raw();
        let all_owners = peer.is_none_or(|p| p.uid == 0 || p.uid == own_uid);
        let mut visible: Vec<&Child> = self
            .children
            .values()
            .filter(|child| all_owners || child.origin.client.map(|c| c.uid) == peer.map(|p| p.uid))
            .collect();
        visible.sort_by_key(|child| child.origin.sandbox);
        let mut sandboxes: Vec<SandboxStatus> = visible
            .iter()
            .map(|child| self.sandbox_status(child))
            .collect();
        let pool = &self.zygote.pool;
        let veth = match &self.zygote.network {
            Some(network) => VethStatus {
                enabled: true,
                leased: (self
                    .children
                    .values()
                    .filter(|c| c.network.is_some())
                    .count()
                    + pool.leases()) as u32,
                draining: network.draining_count() as u32,
                free: network.free() as u32,
            },
            None => VethStatus::default(),
        };
        let stats = &self.stats;
        let mut status = DaemonStatus {
            version: format!("hatchery {}", env!("CARGO_PKG_VERSION")),
            pid: std::process::id(),
            uptime_ms: stats.started.elapsed().as_millis() as u64,
            all_owners,
            sandboxes: Vec::new(),
            sandboxes_omitted: 0,
            live: self.children.len() as u32,
            max_children: self.zygote.max_children as u32,
            warm_pool: PoolStatus {
                size_per_shape: pool.size() as u32,
                shapes: pool.shape_count() as u32,
                idle: pool.idle() as u32,
                hits: stats.pool_hits,
                misses: stats.pool_misses,
            },
            veth,
            served: counts(&stats.served),
            failed: counts(&stats.failed),
            ended: counts(&stats.ended),
        };
        // The newest sandboxes give way until the answer fits in one message.
        let budget = protocol::MAX_MESSAGE_LEN - STATUS_HEADROOM;
        let mut omitted = 0;
        loop {
            status.sandboxes = std::mem::take(&mut sandboxes);
            let size = protocol::encode(&status).map_or(usize::MAX, |bytes| bytes.len());
            sandboxes = std::mem::take(&mut status.sandboxes);
            if size <= budget || sandboxes.is_empty() {
                break;
            }
            let drop = (sandboxes.len() / 8).max(1);
            sandboxes.truncate(sandboxes.len() - drop);
            omitted += drop;
        }
        status.sandboxes = sandboxes;
        status.sandboxes_omitted = omitted as u32;
        status
    }

    fn sandbox_status(&self, child: &Child) -> SandboxStatus {
        let phase = match child.phase {
            Phase::SettingUp => "setting_up",
            Phase::Failed => "failed",
            Phase::Running if child.workload.is_some() || child.kill_reason.is_some() => "ending",
            Phase::Running => "running",
        };
        let mut program: String = child.origin.program.chars().take(PROGRAM_MAX).collect();
        if child.origin.program.chars().nth(PROGRAM_MAX).is_some() {
            program.push('…');
        }
        SandboxStatus {
            sandbox: child.origin.sandbox,
            id: child.id,
            pid: child.pid(),
            owner_uid: child.origin.client.map(|c| c.uid),
            program,
            age_ms: child.age().as_millis() as u64,
            memory_bytes: resident_bytes(child.pid()),
            phase: phase.to_string(),
            client_connected: child.conn.is_some(),
        }
    }
}

/// The daemon's own resident memory, in bytes (0 if `/proc/self/statm` is unreadable).
pub(super) fn own_resident_bytes() -> u64 {
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .unwrap_or(4096) as u64;
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|statm| statm.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * page)
}

/// The most processes of one sandbox whose memory a status adds up.
const MAX_PROCESSES_READ: usize = 4096;

/// The resident memory of the process `pid` and its descendants, from `/proc`
/// (`statm`'s resident pages, and each thread's `children`); `None` if `pid` is gone.
fn resident_bytes(pid: i32) -> Option<u64> {
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .unwrap_or(4096) as u64;
    let mut total = None;
    let mut pending = vec![pid];
    let mut seen = 0;
    while let Some(pid) = pending.pop() {
        seen += 1;
        if seen > MAX_PROCESSES_READ {
            break;
        }
        let Ok(statm) = std::fs::read_to_string(format!("/proc/{pid}/statm")) else {
            continue;
        };
        let resident: u64 = statm
            .split_whitespace()
            .nth(1)
            .and_then(|pages| pages.parse().ok())
            .unwrap_or(0);
        *total.get_or_insert(0) += resident * page;
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let children = task.path().join("children");
            if let Ok(text) = std::fs::read_to_string(children) {
                pending.extend(
                    text.split_whitespace()
                        .filter_map(|p| p.parse::<i32>().ok()),
                );
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spawns_latency_lands_in_the_first_bucket_that_holds_it() {
        let mut stats = Stats::new();
        stats.served(false, Duration::from_micros(400));
        stats.served(true, Duration::from_micros(1500));
        stats.served(false, Duration::from_secs(9));
        assert_eq!(stats.latency_buckets[0], 1);
        assert_eq!(stats.latency_buckets[2], 1);
        assert_eq!(stats.latency_buckets[LATENCY_BUCKETS.len()], 1);
        assert_eq!(stats.served.get("fresh"), Some(&2));
        assert_eq!(stats.served.get("warm"), Some(&1));
    }

    #[test]
    fn the_memory_of_this_process_is_read_and_a_gone_one_is_none() {
        let own = resident_bytes(std::process::id() as i32).expect("our own statm");
        assert!(own > 1024 * 1024, "{own} bytes resident");
        assert_eq!(resident_bytes(i32::MAX), None);
    }
}
