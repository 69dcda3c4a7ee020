//! What a daemon says of itself when asked ([`super::Request::Status`]): its uptime and
//! version, the live sandboxes the asking uid may see, its warm pool, its veth leases and
//! its spawn counters. The body of [`super::Event::Status`]; used by both sides.

use serde::{Deserialize, Serialize};

/// A daemon's report on itself: the body of [`super::Event::Status`], returned by
/// `Client::status`.
///
/// ```no_run
/// use hatchery::Client;
///
/// let status = Client::connect("/run/hatchery/hatchery.sock")?.status()?;
/// println!("{} up {} s, {} sandboxes", status.version, status.uptime_ms / 1000, status.sandboxes.len());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonStatus {
    /// The daemon's name and version, e.g. `"hatchery 0.1.0"`.
    pub version: String,
    /// The daemon's process id, in its own pid namespace.
    pub pid: u32,
    /// Milliseconds since the daemon started serving.
    pub uptime_ms: u64,
    /// Whether [`DaemonStatus::sandboxes`] holds every live sandbox (the asker is root or
    /// the daemon's own uid) or only the asker's own.
    pub all_owners: bool,
    /// The live sandboxes the asker may see (every one for root and the daemon's own
    /// uid; a client's own otherwise), oldest first.
    pub sandboxes: Vec<SandboxStatus>,
    /// Sandboxes left out of [`DaemonStatus::sandboxes`] to keep the answer within one
    /// message (the newest go first).
    pub sandboxes_omitted: u32,
    /// Live sandboxes in all, of every owner.
    pub live: u32,
    /// The most live sandboxes at once (`serve --max-children`).
    pub max_children: u32,
    /// The warm pool.
    pub warm_pool: PoolStatus,
    /// Veth networks: in use, being torn down, free.
    pub veth: VethStatus,
    /// Spawns the workload of which started, by how (`fresh`, `warm`).
    pub served: Vec<Count>,
    /// Spawn requests answered with an error, by its kind (`ErrorKind::name`).
    pub failed: Vec<Count>,
    /// Sandboxes that have ended, by why (`EndReason::name`).
    pub ended: Vec<Count>,
}

/// One live sandbox, as [`DaemonStatus`] shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxStatus {
    /// The daemon-wide number of its spawn request (the `sandbox` field of the log).
    pub sandbox: u64,
    /// Its request id on its client's connection.
    pub id: u64,
    /// The pid of its init, as the daemon sees it.
    pub pid: i32,
    /// The uid of the client that asked for it (`None`: the embedded zygote's own client).
    pub owner_uid: Option<u32>,
    /// What it runs: the program as requested, or `entry:NAME`, escaped and shortened.
    pub program: String,
    /// Milliseconds since its request arrived.
    pub age_ms: u64,
    /// Resident memory of its processes, in bytes, when it could be read.
    pub memory_bytes: Option<u64>,
    /// `setting_up`, `running`, `failed` (its failure told, its reap to come) or
    /// `ending` (its workload ended or it was killed; its reap to come).
    pub phase: String,
    /// Whether its client is still connected.
    pub client_connected: bool,
}

/// The warm pool's state and how often it served.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolStatus {
    /// Idle sandboxes kept per shape (`serve --warm-pool`).
    pub size_per_shape: u32,
    /// Pooled shapes.
    pub shapes: u32,
    /// Idle sandboxes now, all shapes together.
    pub idle: u32,
    /// Poolable spawns an idle sandbox served.
    pub hits: u64,
    /// Poolable spawns that found none idle of their shape and started fresh (counted
    /// only while the daemon keeps a pool).
    pub misses: u64,
}

impl PoolStatus {
    /// Hits over hits and misses, or `None` before any poolable spawn.
    pub fn hit_rate(&self) -> Option<f64> {
        let total = self.hits + self.misses;
        (total > 0).then(|| self.hits as f64 / total as f64)
    }
}

/// The daemon's veth networks (`serve --veth-pool`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VethStatus {
    /// Whether the daemon has a veth pool at all.
    pub enabled: bool,
    /// Subnets held by live sandboxes and idle warm ones.
    pub leased: u32,
    /// Subnets whose pairs are being torn down (free again once they are gone).
    pub draining: u32,
    /// Subnets free now.
    pub free: u32,
}

/// A named counter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Count {
    /// What it counts.
    pub name: String,
    /// How many.
    pub count: u64,
}

impl DaemonStatus {
    /// The status as JSON (what `hatchery status --json` prints), with the pool's hit
    /// rate added.
    pub fn to_json(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        if let Some(pool) = value.get_mut("warm_pool").and_then(|v| v.as_object_mut()) {
            pool.insert("hit_rate".into(), self.warm_pool.hit_rate().into());
        }
        value
    }

    /// The count named `name` in `counts` (0 when absent).
    pub fn count(counts: &[Count], name: &str) -> u64 {
        counts
            .iter()
            .find(|c| c.name == name)
            .map_or(0, |c| c.count)
    }
}
