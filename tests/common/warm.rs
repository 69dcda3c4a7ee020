//! Running a test's spawns both ways: in fresh sandboxes, and through a warm pool whose
//! shape is the test's sandbox config, checking that the pool really served them.

use std::time::{Duration, Instant};

use hatchery::protocol::SandboxConfig;
use hatchery::{ChildProcess, SpawnRequest};

use super::{children_of, Daemon, Facts, Output};

/// How a test's sandboxes are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spawns {
    /// A fresh sandbox per spawn (no pool).
    Fresh,
    /// From a warm pool of one sandbox of the test's shape; every spawn must be served
    /// by a sandbox that was idle in the pool before the request.
    Pooled,
}

/// The command name of an idle warm-pool sandbox's init.
pub const IDLE_NAME: &str = "hatchery-pool";

/// Idle warm-pool sandboxes of the daemon `pid`.
pub fn idle_sandboxes(pid: i32) -> Vec<i32> {
    children_of(pid)
        .into_iter()
        .filter(|&(child, _)| {
            std::fs::read_to_string(format!("/proc/{child}/comm"))
                .is_ok_and(|comm| comm.trim_end() == IDLE_NAME)
        })
        .map(|(child, _)| child)
        .collect()
}

/// Waits until the daemon `pid` has at least `count` idle sandboxes; returns them.
pub fn wait_for_idle(pid: i32, count: usize) -> Vec<i32> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let idle = idle_sandboxes(pid);
        if idle.len() >= count {
            return idle;
        }
        assert!(
            Instant::now() < deadline,
            "the warm pool did not fill: {idle:?} idle"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Starts a daemon with a warm pool of `size` sandboxes of `shape`, plus `args`.
pub fn pooled_daemon(size: usize, shape: &SandboxConfig, args: &[&str]) -> Daemon {
    let dir = super::open_tempdir();
    let file = dir.path().join("shape.json");
    std::fs::write(&file, serde_json::to_string(shape).expect("shape as JSON"))
        .expect("write the shape");
    let size = size.to_string();
    let file = file.display().to_string();
    let mut all = vec!["--warm-pool", &size, "--warm-pool-shape", &file];
    all.extend_from_slice(args);
    // The daemon has read the shape once it listens.
    Daemon::start_with(&all)
}

impl Spawns {
    /// A daemon for sandboxes of `shape`.
    pub fn daemon(self, shape: &SandboxConfig) -> Daemon {
        match self {
            Spawns::Fresh => Daemon::start(),
            Spawns::Pooled => pooled_daemon(1, shape, &[]),
        }
    }

    /// Spawns `request` on a new connection to `daemon` and collects its output; in
    /// pooled mode, fails the test unless an idle pooled sandbox served it.
    pub fn run(self, daemon: &Daemon, request: SpawnRequest) -> Output {
        super::collect(self.spawn(daemon, request))
    }

    /// Spawns `request` on a new connection to `daemon`; in pooled mode, fails the test
    /// unless an idle pooled sandbox served it (waiting up to 10 s for the pool to hold
    /// one, as it refills after an earlier spawn).
    pub fn spawn(self, daemon: &Daemon, request: SpawnRequest) -> ChildProcess {
        let idle = match self {
            Spawns::Fresh => Vec::new(),
            Spawns::Pooled => wait_for_idle(daemon.pid(), 1),
        };
        let child = daemon.client().spawn_child(request).expect("spawn");
        if self == Spawns::Pooled {
            assert!(
                idle.contains(&child.pid),
                "sandbox {} did not come from the warm pool {idle:?}",
                child.pid
            );
        }
        child
    }

    /// Runs the probe and returns its facts; fails the test unless it exits 0.
    pub fn probe_facts(self, daemon: &Daemon, request: SpawnRequest) -> Facts {
        super::facts_of_success(self.run(daemon, request))
    }
}

/// Defines each named test, a `fn NAME(spawns: Spawns)`, twice, in a module of the same
/// name: `NAME::fresh` and `NAME::pooled`. Attributes written before a name (`#[ignore =
/// "..."]`) go on both.
#[macro_export]
macro_rules! fresh_and_pooled {
    ($($(#[$attr:meta])* $name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                $(#[$attr])*
                fn fresh() {
                    super::$name($crate::common::warm::Spawns::Fresh)
                }

                #[test]
                $(#[$attr])*
                fn pooled() {
                    super::$name($crate::common::warm::Spawns::Pooled)
                }
            }
        )*
    };
}
