//! Warm-pool sandboxes, the zygote's half: a sandbox cloned and set up to its *shape*
//! before any request exists, then handed the one request it will ever run. Runs in
//! the zygote; the sandbox's half is `init::run_pooled`.
//!
//! A pooled sandbox runs the same recipe as a fresh one (the same `clone3`, the same
//! steps, see `init`), in another order where the request matters: before it has a
//! request it does every step that depends only on its shape, all the privileges
//! dropped included (id maps, user ids, root, hostname, loopback, capabilities,
//! `no_new_privs` and their check), waits for its veth network if the shape has one,
//! and installs the seccomp filter if the policy lets the init finish under it. The
//! handover brings the request and its stdio; then it builds the exec's arguments,
//! enters the working directory, starts a session, sets the rlimits, and its workload
//! installs any filter not yet installed, last before `execve`.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use super::{
    channel, init, HostIds, RootTemplate, Sandboxer, SpareNamespaces, StartError, Started,
    ZygoteEnd,
};
use crate::protocol::{ProtocolError, SandboxConfig, SpawnRequest, Stdio};
use crate::sys::{self, Context};

/// A warm-pool sandbox waiting for its request.
#[derive(Debug)]
pub struct Idle {
    /// Host pid of its init.
    pub pid: i32,
    pidfd: OwnedFd,
    channel: ZygoteEnd,
}

impl Idle {
    /// Ends it (a pool being emptied, or one that could not take its request); the
    /// zygote reaps it as any other child.
    pub fn kill(&self) {
        let _ = sys::pidfd_send_signal(self.pidfd.as_fd(), libc::SIGKILL);
    }

    /// Its pidfd, to build its veth network in its namespace.
    pub fn pidfd(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    /// The zygote's end of its channel, to read why it died (or tell it its network is
    /// up).
    pub fn channel(&self) -> &ZygoteEnd {
        &self.channel
    }
}

/// Why an idle sandbox did not take a request.
#[derive(Debug)]
pub enum NotTaken {
    /// It had died (its channel is closed): a fresh sandbox can serve the request, with
    /// the client's fds for [`Stdio::Fd`] streams given back, in stream order.
    Gone {
        /// The client's passed fds.
        passed: Vec<OwnedFd>,
        /// What the handover ran into.
        error: ProtocolError,
    },
    /// The request's stdio could not be prepared: no sandbox can serve it.
    Failed(StartError),
}

impl Sandboxer {
    /// Clones a sandbox of `shape` that builds its shape and then waits for a request.
    /// The caller must be single-threaded; this is checked, and refused otherwise.
    pub fn start_idle(
        &self,
        shape: &SandboxConfig,
        spares: Option<&mut SpareNamespaces>,
        host: HostIds,
    ) -> Result<Idle, StartError> {
        let single = self.check_single_threaded()?;
        // Its stdio until it has a request: /dev/null, never a zygote fd.
        let placeholders = [
            self.dev_null.try_clone().op("dup(/dev/null)")?,
            self.dev_null.try_clone().op("dup(/dev/null)")?,
            self.dev_null.try_clone().op("dup(/dev/null)")?,
        ];
        let (zygote_end, sandbox_end) = channel::pair()?;
        let template = self.root_template(shape);
        match super::clone(single, shape, None, spares)? {
            sys::Cloned::Child(process) => {
                drop(zygote_end);
                let template = template.as_deref().map(RootTemplate::fd);
                init::run_pooled(process, self, template, shape, placeholders, sandbox_end)
            }
            sys::Cloned::Parent { pid, pidfd } => {
                drop(sandbox_end);
                drop(placeholders);
                let started = Started {
                    pid,
                    pidfd,
                    channel: zygote_end,
                    pipes: [None, None, None, None],
                };
                self.release(&started, shape, host)?;
                Ok(Idle {
                    pid: started.pid,
                    pidfd: started.pidfd,
                    channel: started.channel,
                })
            }
        }
    }

    /// Hands `request` to `idle`, whose shape the caller has matched to the request's
    /// sandbox. `passed` holds the client's fds for [`Stdio::Fd`] streams, in stream
    /// order. The outcome (exec'd or failed) arrives on [`Started::channel`], as for a
    /// fresh sandbox.
    pub fn hand_over(
        &self,
        idle: Idle,
        request: &SpawnRequest,
        passed: Vec<OwnedFd>,
    ) -> Result<Started, NotTaken> {
        let (workload_stdio, pipes) = match self.stdio(request.stdio(), passed) {
            Ok(stdio) => stdio,
            Err(error) => {
                idle.kill();
                return Err(NotTaken::Failed(error));
            }
        };
        let [stdin, stdout, stderr] = &workload_stdio;
        let sent = idle
            .channel
            .hand_over(request, &[stdin.as_fd(), stdout.as_fd(), stderr.as_fd()]);
        match sent {
            Ok(()) => Ok(Started {
                pid: idle.pid,
                pidfd: idle.pidfd,
                channel: idle.channel,
                pipes,
            }),
            Err(error) => {
                idle.kill();
                let passed = request
                    .stdio()
                    .into_iter()
                    .zip(workload_stdio)
                    .filter(|(stdio, _)| matches!(stdio, Stdio::Fd(_)))
                    .map(|(_, fd)| fd)
                    .collect();
                Err(NotTaken::Gone { passed, error })
            }
        }
    }
}
