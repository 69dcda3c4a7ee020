//! The spawn request of `hatchery run`, made from its options: host paths as typed,
//! resolved against the current directory; paths inside the sandbox checked to be
//! absolute; every refusal naming the flag and the value as typed.

use std::ffi::OsString;
use std::os::fd::AsFd;
use std::path::{Component, Path, PathBuf};

use hatchery::protocol::{
    Bind, Mount, NetworkConfig, SandboxConfig, SpawnRequest, Stdio, VethConfig, DEFAULT_SANDBOX_ID,
};

use super::profile::Options;
use super::report::io_reason;
use super::values::Net;
use super::Failure;

/// The request for `command` under `options`, with this process's stdio.
pub fn build(options: &Options, command: &[OsString]) -> Result<SpawnRequest, Failure> {
    let request = sandboxed(options, command)?;
    // Our own stdin, stdout and stderr, passed through.
    let stdio: Vec<Stdio> = [
        std::io::stdin().as_fd(),
        std::io::stdout().as_fd(),
        std::io::stderr().as_fd(),
    ]
    .into_iter()
    .map(|fd| fd.try_clone_to_owned().map(Stdio::fd))
    .collect::<Result<_, _>>()
    .map_err(|e| Failure::hatchery(format!("cannot pass stdio: {e}")))?;
    let [stdin, stdout, stderr]: [Stdio; 3] = stdio
        .try_into()
        .map_err(|_| Failure::hatchery("cannot pass stdio"))?;
    Ok(request.stdin(stdin).stdout(stdout).stderr(stderr))
}

/// The request for `command` under `options`, its stdio left as the request's default
/// (for the caller to set: `run` passes its own, `mcp` pipes).
pub fn sandboxed(options: &Options, command: &[OsString]) -> Result<SpawnRequest, Failure> {
    let cwd = match &options.cwd {
        Some(dir) => inside("--cwd", dir, dir)?,
        None => PathBuf::from("/"),
    };
    let mut request = SpawnRequest::new(&command[0]).args(&command[1..]).cwd(cwd);
    for entry in &options.env {
        let (key, value) = entry
            .split_once('=')
            .filter(|(key, _)| !key.is_empty())
            .ok_or_else(|| Failure::hatchery(format!("--env {entry}: expected KEY=VALUE")))?;
        request = request.env(key, value);
    }
    let binds = options
        .binds
        .iter()
        .map(|(spec, writable)| {
            let flag = if *writable { "--bind" } else { "--ro-bind" };
            bind(flag, spec, *writable)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let chroot_dir = options
        .chroot
        .as_deref()
        .map(|dir| on_host("--chroot", dir))
        .transpose()?;
    request.sandbox = SandboxConfig {
        chroot_dir: chroot_dir.map(|dir| dir.as_os_str().into()),
        binds,
        hostname: options
            .hostname
            .clone()
            .unwrap_or_else(|| "hatchery".into()),
        uid: options.uid.unwrap_or(DEFAULT_SANDBOX_ID),
        gid: options.gid.unwrap_or(DEFAULT_SANDBOX_ID),
        opt_out: options.disable.clone(),
        limits: options.limits,
        allow_unenforced_limits: options.allow_unenforced_limits,
        kill_on_disconnect: true,
        network: match options.net {
            Net::None => NetworkConfig::None,
            Net::Veth => NetworkConfig::Veth(VethConfig {
                interface: options.net_interface.clone(),
                mtu: options.net_mtu,
            }),
        },
        mounts: mounts(options)?,
        seccomp_policy: options.seccomp_policy.clone(),
    };
    Ok(request)
}

/// `--bind SRC[:DST]`: SRC on the host (relative: from the current directory), DST
/// inside the sandbox (absolute), the resolved SRC when left out.
fn bind(flag: &str, spec: &str, writable: bool) -> Result<Bind, Failure> {
    let shown = format!("{flag} {spec}");
    let (source, target) = match spec.split_once(':') {
        Some((source, target)) => (source, Some(target)),
        None => (spec, None),
    };
    if source.is_empty() {
        return Err(Failure::hatchery(format!(
            "{shown}: the source is empty; expected SRC[:DST]"
        )));
    }
    let source = on_host(&shown, Path::new(source))?;
    let target = match target {
        Some(target) => inside(&shown, Path::new(target), Path::new(target))?,
        None => source.clone(),
    };
    Ok(if writable {
        Bind::writable(source, target)
    } else {
        Bind::read_only(source, target)
    })
}

/// The mounts of `--ro-bind-try`, `--bind-try`, `--dev-bind`, `--tmpfs`, `--dir`,
/// `--file`, `--file-from` and `--symlink`, in that order.
fn mounts(options: &Options) -> Result<Vec<Mount>, Failure> {
    let mut mounts = Vec::new();
    for (spec, writable) in &options.try_binds {
        let source = spec
            .split_once(':')
            .map_or(spec.as_str(), |(source, _)| source);
        // A relative source that is not there is skipped here (it cannot be resolved).
        if !Path::new(source).is_absolute() && !Path::new(source).exists() {
            continue;
        }
        let flag = if *writable {
            "--bind-try"
        } else {
            "--ro-bind-try"
        };
        mounts.push(Mount::BindIfExists(bind(flag, spec, *writable)?));
    }
    for spec in &options.dev_binds {
        let shown = format!("--dev-bind {spec}");
        let (source, target) = spec.split_once(':').unwrap_or((spec, spec));
        let source = on_host(&shown, Path::new(source))?;
        let target = inside(&shown, Path::new(target), Path::new(target))?;
        mounts.push(Mount::DevBind {
            source: source.as_os_str().into(),
            target: target.as_os_str().into(),
        });
    }
    for dir in &options.tmpfs {
        let target = inside(&format!("--tmpfs {}", dir.display()), dir, dir)?;
        mounts.push(Mount::Tmpfs {
            target: target.as_os_str().into(),
        });
    }
    for dir in &options.dirs {
        let target = inside(&format!("--dir {}", dir.display()), dir, dir)?;
        mounts.push(Mount::Dir {
            target: target.as_os_str().into(),
        });
    }
    for (fd, target) in &options.files {
        let shown = format!(
            "--file {} {}",
            fd.to_string_lossy(),
            target.to_string_lossy()
        );
        let fd: u32 = fd
            .to_str()
            .and_then(|fd| fd.parse().ok())
            .ok_or_else(|| Failure::hatchery(format!("{shown}: FD must be a number")))?;
        let contents = read_small(Path::new(&format!("/proc/self/fd/{fd}")))
            .map_err(|e| Failure::hatchery(format!("{shown}: {e}")))?;
        let target = inside(&shown, Path::new(target), Path::new(target))?;
        mounts.push(Mount::File {
            contents,
            target: target.as_os_str().into(),
        });
    }
    for (path, target) in &options.files_from {
        let shown = format!(
            "--file-from {} {}",
            path.to_string_lossy(),
            target.to_string_lossy()
        );
        let contents =
            read_small(Path::new(path)).map_err(|e| Failure::hatchery(format!("{shown}: {e}")))?;
        let target = inside(&shown, Path::new(target), Path::new(target))?;
        mounts.push(Mount::File {
            contents,
            target: target.as_os_str().into(),
        });
    }
    for (points_to, target) in &options.symlinks {
        let shown = format!(
            "--symlink {} {}",
            points_to.to_string_lossy(),
            target.to_string_lossy()
        );
        let target = inside(&shown, Path::new(target), Path::new(target))?;
        mounts.push(Mount::Symlink {
            points_to: points_to.as_os_str().into(),
            target: target.as_os_str().into(),
        });
    }
    Ok(mounts)
}

/// Reads a file for `--file`/`--file-from`, refusing one larger than a request may carry.
fn read_small(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let limit = hatchery::protocol::validate::MAX_FILE_BYTES;
    let mut contents = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(limit as u64 + 1).read_to_end(&mut contents))
        .map_err(|e| io_reason(&e))?;
    if contents.len() > limit {
        return Err(format!(
            "larger than the {} KiB a request may carry",
            limit / 1024
        ));
    }
    Ok(contents)
}

/// A host path as typed: an absolute one without `..` as it is (the daemon reads it with
/// the sandbox's credentials); anything else resolved against the current directory.
fn on_host(flag: &str, path: &Path) -> Result<PathBuf, Failure> {
    if path.is_absolute() && plain(path) {
        return Ok(path.to_path_buf());
    }
    std::fs::canonicalize(path).map_err(|e| {
        let cwd = std::env::current_dir()
            .map(|dir| format!(" (from {})", dir.display()))
            .unwrap_or_default();
        Failure::hatchery(format!(
            "{flag}: {}{cwd}: {}",
            path.display(),
            io_reason(&e)
        ))
    })
}

/// A path inside the sandbox: absolute, without `..`.
fn inside(flag: &str, path: &Path, typed: &Path) -> Result<PathBuf, Failure> {
    if path.is_absolute() && plain(path) {
        return Ok(path.to_path_buf());
    }
    let example = Path::new("/").join(
        path.components()
            .filter(|c| matches!(c, Component::Normal(_)))
            .collect::<PathBuf>(),
    );
    Err(Failure::hatchery(format!(
        "{flag}: {} is a path inside the sandbox and must be absolute, without \"..\" \
         (e.g. {})",
        typed.display(),
        example.display()
    )))
}

/// No `.` or `..` components.
fn plain(path: &Path) -> bool {
    !path
        .components()
        .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message<T>(result: Result<T, Failure>) -> String {
        match result {
            Ok(_) => panic!("accepted"),
            Err(failure) => failure.message,
        }
    }

    #[test]
    fn relative_sources_resolve_and_targets_must_be_absolute() {
        let here = std::env::current_dir().unwrap();
        let bound = bind("--bind", ".:/job", true).ok().unwrap();
        assert_eq!(bound.source.as_path(), here.as_path());
        assert_eq!(bound.target.as_path(), Path::new("/job"));
        let same = bind("--ro-bind", ".", false).ok().unwrap();
        assert_eq!(same.target.as_path(), here.as_path());
        assert_eq!(
            message(bind("--bind", ".:job", true)),
            "--bind .:job: job is a path inside the sandbox and must be absolute, \
             without \"..\" (e.g. /job)"
        );
        let missing = message(bind("--ro-bind", "no-such-dir:/x", false));
        assert!(
            missing.starts_with("--ro-bind no-such-dir:/x: no-such-dir (from "),
            "{missing}"
        );
        assert!(missing.ends_with("No such file or directory"), "{missing}");
    }

    #[test]
    fn the_shipped_profiles_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/profiles");
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if !path
                .extension()
                .is_some_and(|ext| ext == "toml" || ext == "json")
            {
                continue;
            }
            let options = match super::super::profile::load(&path) {
                Ok(options) => options,
                Err(failure) => panic!("{}", failure.message),
            };
            let request = match build(&options, &["/bin/true".into()]) {
                Ok(request) => request,
                Err(failure) => panic!("{}", failure.message),
            };
            hatchery::protocol::validate::validate(&request)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            if name == "network-client" {
                assert_eq!(options.net, Net::Veth);
            }
            names.push(name);
        }
        names.sort();
        assert_eq!(names, ["network-client", "python-judge", "shell"]);
    }
}
