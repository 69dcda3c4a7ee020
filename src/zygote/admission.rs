//! Admission: every check a spawn request passes before anything is made for it, in one
//! place and in the order a client would want to hear about them (the daemon's state
//! first, then the request itself, then what this daemon can offer it). Runs in the
//! zygote's loop; pure but for the last step, which makes the sandbox's cgroup.
//!
//! A refused request costs no process, pipe, subnet or cgroup, and its client gets one
//! `Error` with the [`Refusal`]'s kind and message.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Instant;

use super::entries::Entries;
use crate::limits::{Enforcement, Enforcer, Refusal};
use crate::protocol::validate;
use crate::protocol::{ErrorKind, Layer, Mount, NetworkConfig, SandboxConfig, SpawnRequest, Stdio};
use crate::sandbox::Workload;
use crate::seccomp::CompiledPolicies;

/// What the daemon's state and configuration say about a new spawn.
pub(super) struct Gate<'a> {
    /// Sandboxes alive now (set up, running or not yet reaped).
    pub live: usize,
    /// The most the daemon runs at once.
    pub max_children: usize,
    /// The daemon is stopping: it starts nothing more.
    pub shutting_down: bool,
    /// The programs and entries this zygote runs.
    pub entries: &'a Entries,
    /// The daemon has a veth pool.
    pub veth_available: bool,
    /// The limit policy and the cgroups.
    pub enforcer: &'a mut Enforcer,
    /// The layers a request may switch off (`serve --allow-unsafe-disable`).
    pub allowed_opt_outs: &'a [Layer],
    /// Whether a request may bind device nodes usable (`serve --allow-dev-bind`).
    pub allow_dev_binds: bool,
    /// The seccomp policies a request may pick from.
    pub seccomp: &'a CompiledPolicies,
}

/// A request admitted: what its sandbox runs and how its limits are enforced.
pub(super) struct Admission {
    /// An exec or an entry, its arguments already decoded.
    pub workload: Workload,
    /// Its limits resolved against the policy, with its cgroup if a limit needs one.
    pub enforcement: Enforcement,
    /// Its seccomp policy's name, `None` for the daemon's default (however the request
    /// named it), so that it matches a warm-pool shape as the pool's are matched.
    pub seccomp_policy: Option<String>,
}

impl Gate<'_> {
    /// Admits `request`, which came with `fds`, or says why not. `started` is when the
    /// request arrived (its wall-time limit counts from then).
    pub fn admit(
        &mut self,
        request: &SpawnRequest,
        fds: &[OwnedFd],
        started: Instant,
    ) -> Result<Admission, Refusal> {
        if self.shutting_down {
            return Err(refusal(
                ErrorKind::ShuttingDown,
                "the daemon is shutting down",
            ));
        }
        if self.live >= self.max_children {
            return Err(refusal(
                ErrorKind::Busy,
                format!(
                    "{} sandboxes are running, the most this daemon allows",
                    self.live
                ),
            ));
        }
        validate::validate(request)
            .map_err(|e| refusal(ErrorKind::InvalidRequest, e.to_string()))?;
        // The daemon's policy, not the client's wish: layers and devices only where its
        // operator allowed them, seccomp policies only among those it loaded.
        let config = &request.sandbox;
        if let Some(layer) = config
            .opt_out
            .iter()
            .find(|layer| !self.allowed_opt_outs.contains(layer))
        {
            return Err(refusal(
                ErrorKind::PermissionDenied,
                format!(
                    "this daemon does not let a request switch off the {name} layer \
                     (--unsafe-disable {name}); its operator can allow it with \
                     `hatchery serve --allow-unsafe-disable {name}`",
                    name = layer.name()
                ),
            ));
        }
        if !self.allow_dev_binds {
            if let Some(Mount::DevBind { source, .. }) = config
                .mounts
                .iter()
                .find(|mount| matches!(mount, Mount::DevBind { .. }))
            {
                return Err(refusal(
                    ErrorKind::PermissionDenied,
                    format!(
                        "this daemon does not allow device binds (--dev-bind {}); its \
                         operator can allow them with `hatchery serve --allow-dev-bind`",
                        source.as_path().display()
                    ),
                ));
            }
        }
        let seccomp_policy = pick_seccomp_policy(config, self.seccomp)
            .map_err(|message| refusal(ErrorKind::InvalidRequest, message))?;
        // Unknown entries and arguments that do not decode fail here, before any cgroup,
        // pipe or process exists.
        let workload = self
            .entries
            .prepare(&request.command, &request.env)
            .map_err(|(kind, message)| Refusal { kind, message })?;
        check_passed(request.stdio(), fds)?;
        if matches!(request.sandbox.network, NetworkConfig::Veth(_)) && !self.veth_available {
            return Err(refusal(
                ErrorKind::NetworkUnavailable,
                "this daemon has no veth network (start it with --veth-pool)",
            ));
        }
        // Last, as it makes the cgroup a limited sandbox is cloned into.
        let enforcement =
            self.enforcer
                .prepare(&config.limits, config.allow_unenforced_limits, started)?;
        Ok(Admission {
            workload,
            enforcement,
            seccomp_policy,
        })
    }
}

/// Checks the fds passed with a request against the streams that name one: as many as
/// those, each a stream (a spawn's, or a persistent sandbox's command's).
pub(super) fn check_passed(stdio: [&Stdio; 3], fds: &[OwnedFd]) -> Result<(), Refusal> {
    let passed: Vec<&str> = ["stdin", "stdout", "stderr"]
        .into_iter()
        .zip(stdio)
        .filter(|(_, stdio)| matches!(stdio, Stdio::Fd(_)))
        .map(|(name, _)| name)
        .collect();
    if fds.len() != passed.len() {
        return Err(refusal(
            ErrorKind::InvalidRequest,
            format!(
                "the request names {} passed fds but {} came with it",
                passed.len(),
                fds.len()
            ),
        ));
    }
    for (stream, fd) in passed.into_iter().zip(fds) {
        check_stream(fd.as_fd()).map_err(|what| {
            refusal(
                ErrorKind::InvalidRequest,
                format!(
                    "the fd passed as {stream} is {what}, which cannot be a stream: pass \
             a pipe, a socket, a regular file or a character device"
                ),
            )
        })?;
    }
    Ok(())
}

/// The seccomp policy `config` picks among the daemon's `policies`: `None` for the
/// default (named or not), else its name; an unknown name is refused with the names
/// there are. (The warm pool's shapes are resolved here too, so that a request and a
/// shape of one policy match.)
pub(super) fn pick_seccomp_policy(
    config: &SandboxConfig,
    policies: &CompiledPolicies,
) -> Result<Option<String>, String> {
    match config.seccomp_policy.as_deref() {
        None => Ok(None),
        Some(name) if name == policies.default_name() => Ok(None),
        Some(name) if policies.get(Some(name)).is_some() => Ok(Some(name.to_string())),
        Some(name) => Err(format!(
            "this daemon has no seccomp policy named {name:?} (--seccomp-policy); it has: {}",
            policies.names().collect::<Vec<_>>().join(", ")
        )),
    }
}

/// Whether a client's fd may be a workload's stream: a pipe, a socket, a regular file or
/// a character device the client opened. A directory would give the workload a handle
/// to a host directory (`openat` from it reaches outside the sandbox's root), and an
/// `O_PATH` fd is a handle to a path rather than an open stream; both are refused, and
/// so is anything else (a block device, a symlink). Returns what the fd is, if refused.
fn check_stream(fd: BorrowedFd<'_>) -> Result<(), &'static str> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    use nix::sys::stat::{fstat, SFlag};
    let flags = fcntl(fd, FcntlArg::F_GETFL).map_err(|_| "not an open file")?;
    if OFlag::from_bits_retain(flags).contains(OFlag::O_PATH) {
        return Err("an O_PATH handle");
    }
    let mode = fstat(fd).map_err(|_| "not an open file")?.st_mode;
    match SFlag::from_bits_truncate(mode & SFlag::S_IFMT.bits()) {
        SFlag::S_IFIFO | SFlag::S_IFSOCK | SFlag::S_IFREG | SFlag::S_IFCHR => Ok(()),
        SFlag::S_IFDIR => Err("a directory"),
        SFlag::S_IFBLK => Err("a block device"),
        SFlag::S_IFLNK => Err("a symbolic link"),
        _ => Err("of an unknown type"),
    }
}

fn refusal(kind: ErrorKind, message: impl Into<String>) -> Refusal {
    Refusal {
        kind,
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::LimitPolicy;
    use crate::protocol::{Limits, VethConfig};

    /// A daemon with no cgroups, no veth pool and room for two sandboxes.
    struct Daemon {
        entries: Entries,
        enforcer: Enforcer,
        seccomp: CompiledPolicies,
    }

    impl Daemon {
        fn new(policy: LimitPolicy) -> Daemon {
            let compiled = |policy: Result<crate::seccomp::SeccompPolicy, _>| {
                policy.unwrap().compile().unwrap()
            };
            Daemon {
                entries: Entries::exec_only(),
                enforcer: Enforcer::new(policy, None),
                seccomp: CompiledPolicies::new(vec![
                    (
                        "default".into(),
                        compiled(crate::seccomp::SeccompPolicy::default_policy()),
                    ),
                    (
                        "strict".into(),
                        compiled(crate::seccomp::SeccompPolicy::strict_policy()),
                    ),
                ])
                .unwrap(),
            }
        }

        fn gate(&mut self, live: usize) -> Gate<'_> {
            Gate {
                live,
                max_children: 2,
                shutting_down: false,
                entries: &self.entries,
                veth_available: false,
                enforcer: &mut self.enforcer,
                allowed_opt_outs: &[],
                allow_dev_binds: false,
                seccomp: &self.seccomp,
            }
        }
    }

    #[test]
    fn a_layer_is_switched_off_only_where_the_operator_allows_it() {
        let mut daemon = Daemon::new(LimitPolicy::default());
        let mut shared = request();
        shared.sandbox.opt_out = vec![Layer::NetworkNamespace];
        let refusal = refused(daemon.gate(0).admit(&shared, &[], Instant::now()));
        assert_eq!(refusal.kind, ErrorKind::PermissionDenied);
        assert!(
            refusal
                .message
                .contains("--allow-unsafe-disable network-namespace"),
            "{}",
            refusal.message
        );
        let mut gate = daemon.gate(0);
        gate.allowed_opt_outs = &[Layer::NetworkNamespace];
        assert!(gate.admit(&shared, &[], Instant::now()).is_ok());
        // Allowing one layer does not allow the other.
        shared.sandbox.opt_out.push(Layer::Seccomp);
        let mut gate = daemon.gate(0);
        gate.allowed_opt_outs = &[Layer::NetworkNamespace];
        let refusal = refused(gate.admit(&shared, &[], Instant::now()));
        assert!(
            refusal.message.contains("--allow-unsafe-disable seccomp"),
            "{}",
            refusal.message
        );
    }

    #[test]
    fn a_device_bind_needs_the_operators_leave() {
        let mut daemon = Daemon::new(LimitPolicy::default());
        let mut devices = request();
        devices.sandbox.mounts = vec![Mount::DevBind {
            source: "/dev/fuse".into(),
            target: "/dev/fuse".into(),
        }];
        let refusal = refused(daemon.gate(0).admit(&devices, &[], Instant::now()));
        assert_eq!(refusal.kind, ErrorKind::PermissionDenied);
        assert!(
            refusal.message.contains("--allow-dev-bind"),
            "{}",
            refusal.message
        );
        let mut gate = daemon.gate(0);
        gate.allow_dev_binds = true;
        assert!(gate.admit(&devices, &[], Instant::now()).is_ok());
    }

    #[test]
    fn a_request_picks_a_loaded_seccomp_policy_or_is_told_which_there_are() {
        let mut daemon = Daemon::new(LimitPolicy::default());
        let mut strict = request();
        strict.sandbox.seccomp_policy = Some("strict".into());
        let admission = daemon
            .gate(0)
            .admit(&strict, &[], Instant::now())
            .unwrap_or_else(|r| panic!("refused: {}", r.message));
        assert_eq!(admission.seccomp_policy.as_deref(), Some("strict"));
        // The default, named, is the default.
        strict.sandbox.seccomp_policy = Some("default".into());
        let admission = daemon
            .gate(0)
            .admit(&strict, &[], Instant::now())
            .unwrap_or_else(|r| panic!("refused: {}", r.message));
        assert_eq!(admission.seccomp_policy, None);
        strict.sandbox.seccomp_policy = Some("lax".into());
        let refusal = refused(daemon.gate(0).admit(&strict, &[], Instant::now()));
        assert_eq!(refusal.kind, ErrorKind::InvalidRequest);
        assert!(
            refusal.message.contains("\"lax\"") && refusal.message.contains("default, strict"),
            "{}",
            refusal.message
        );
    }

    fn refused(result: Result<Admission, Refusal>) -> Refusal {
        match result {
            Ok(_) => panic!("admitted a request that should be refused"),
            Err(refusal) => refusal,
        }
    }

    fn request() -> SpawnRequest {
        SpawnRequest::new("/bin/true")
    }

    #[test]
    fn a_plain_request_is_admitted_with_its_limits_resolved() {
        let mut daemon = Daemon::new(LimitPolicy::default());
        let admission = daemon
            .gate(0)
            .admit(&request(), &[], Instant::now())
            .unwrap_or_else(|r| panic!("refused: {}", r.message));
        assert!(matches!(admission.workload, Workload::Exec));
        assert!(admission.enforcement.cgroup.is_none());
    }

    #[test]
    fn a_stopping_daemon_refuses_before_anything_else() {
        let mut daemon = Daemon::new(LimitPolicy::default());
        let mut gate = daemon.gate(5);
        gate.shutting_down = true;
        let refusal = refused(gate.admit(&request(), &[], Instant::now()));
        assert_eq!(refusal.kind, ErrorKind::ShuttingDown);
    }

    #[test]
    fn a_full_daemon_is_busy() {
        let mut daemon = Daemon::new(LimitPolicy::default());
        let refusal = refused(daemon.gate(2).admit(&request(), &[], Instant::now()));
        assert_eq!(refusal.kind, ErrorKind::Busy);
        assert!(
            refusal.message.contains("2 sandboxes"),
            "{}",
            refusal.message
        );
    }

    #[test]
    fn an_invalid_request_is_refused_as_such() {
        let mut daemon = Daemon::new(LimitPolicy::default());
        let mut nameless = request();
        nameless.sandbox.hostname = String::new();
        let refusal = refused(daemon.gate(0).admit(&nameless, &[], Instant::now()));
        assert_eq!(refusal.kind, ErrorKind::InvalidRequest);
        assert!(refusal.message.contains("hostname"), "{}", refusal.message);
    }

    #[test]
    fn an_entry_this_zygote_lacks_is_unknown() {
        let mut daemon = Daemon::new(LimitPolicy::default());
        let mut entry = request();
        entry.command = crate::protocol::Command::Entry {
            name: "nope".into(),
            args: Vec::new(),
        };
        let refusal = refused(daemon.gate(0).admit(&entry, &[], Instant::now()));
        assert_eq!(
            refusal.kind,
            ErrorKind::UnknownEntry {
                name: "nope".into()
            }
        );
    }

    #[test]
    fn the_passed_fds_must_match_the_request() {
        let mut daemon = Daemon::new(LimitPolicy::default());
        let null = std::fs::File::open("/dev/null").unwrap();
        let refusal = refused(daemon.gate(0).admit(
            &request(),
            &[OwnedFd::from(null)],
            Instant::now(),
        ));
        assert_eq!(refusal.kind, ErrorKind::InvalidRequest);
        assert!(
            refusal.message.contains("names 0 passed fds but 1"),
            "{}",
            refusal.message
        );
    }

    /// A request whose stdin is the client's fd `fd`.
    fn with_stdin(fd: OwnedFd) -> (SpawnRequest, Vec<OwnedFd>) {
        let request = request().stdin(Stdio::fd(fd.try_clone().unwrap()));
        (request, vec![fd])
    }

    #[test]
    fn a_directory_or_an_o_path_fd_is_no_stream() {
        use nix::fcntl::{open, OFlag};
        use nix::sys::stat::Mode;
        let mut daemon = Daemon::new(LimitPolicy::default());
        let cases = [
            ("/", OFlag::O_RDONLY | OFlag::O_DIRECTORY, "a directory"),
            ("/dev/null", OFlag::O_PATH, "an O_PATH handle"),
            ("/", OFlag::O_PATH, "an O_PATH handle"),
        ];
        for (path, flags, what) in cases {
            let fd = open(path, flags | OFlag::O_CLOEXEC, Mode::empty()).unwrap();
            let (request, fds) = with_stdin(fd);
            let refusal = refused(daemon.gate(0).admit(&request, &fds, Instant::now()));
            assert_eq!(refusal.kind, ErrorKind::InvalidRequest, "{path}");
            assert!(
                refusal
                    .message
                    .contains(&format!("passed as stdin is {what}")),
                "{path}: {}",
                refusal.message
            );
        }
    }

    #[test]
    fn pipes_files_sockets_and_character_devices_are_streams() {
        let mut daemon = Daemon::new(LimitPolicy::default());
        let (read, _write) = nix::unistd::pipe().unwrap();
        let (socket, _peer) = std::os::unix::net::UnixStream::pair().unwrap();
        let file = tempfile::tempfile().unwrap();
        let null = std::fs::File::open("/dev/null").unwrap();
        for fd in [
            read,
            OwnedFd::from(socket),
            OwnedFd::from(file),
            OwnedFd::from(null),
        ] {
            let (request, fds) = with_stdin(fd);
            if let Err(refusal) = daemon.gate(0).admit(&request, &fds, Instant::now()) {
                panic!("refused: {}", refusal.message);
            }
        }
    }

    #[test]
    fn a_veth_request_needs_a_veth_pool() {
        let mut daemon = Daemon::new(LimitPolicy::default());
        let mut veth = request();
        veth.sandbox.network = NetworkConfig::Veth(VethConfig::default());
        let refusal = refused(daemon.gate(0).admit(&veth, &[], Instant::now()));
        assert_eq!(refusal.kind, ErrorKind::NetworkUnavailable);
    }

    #[test]
    fn a_limit_without_a_cgroup_to_enforce_it_is_refused_unless_allowed() {
        let mut daemon = Daemon::new(LimitPolicy::default());
        let mut limited = request();
        limited.sandbox.limits = Limits {
            memory_bytes: Some(64 << 20),
            ..Limits::default()
        };
        let refusal = refused(daemon.gate(0).admit(&limited, &[], Instant::now()));
        assert!(
            matches!(refusal.kind, ErrorKind::UnenforceableLimits { .. }),
            "{:?}",
            refusal.kind
        );
        limited.sandbox.allow_unenforced_limits = true;
        let admission = daemon
            .gate(0)
            .admit(&limited, &[], Instant::now())
            .unwrap_or_else(|r| panic!("refused: {}", r.message));
        assert_eq!(admission.enforcement.skipped.len(), 1);
    }
}
