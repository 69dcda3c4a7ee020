#!/usr/bin/env python3
"""A hatchery client in Python: the example of docs/protocol.md, section 8.

Standard library only, Python 3.9 or later, Linux. tests/docs_client.rs runs every mode
below against real daemons, so this file cannot drift from the protocol unnoticed.

Usage:
  python3 client.py SOCKET               the tour: handshake, spawn /bin/true with Null
                                         stdio and a wall-time limit, wait, print events
  python3 client.py SOCKET SCENARIO...   provoke error kinds, one line per scenario:
                                         "SCENARIO: KIND EVENT" (see SCENARIOS below)
  python3 client.py SOCKET --status      ask the daemon about itself (Request::Status)
                                         and print its answer as JSON
  python3 client.py --decode HEX...      decode events given as hex, one line each:
                                         "KIND EVENT" for errors, else "NAME EVENT"
  python3 client.py --self-test          encode and decode the golden bytes of
                                         docs/protocol.md, section 6
"""
import array
import ipaddress
import json
import os
import select
import signal
import socket
import struct
import sys

MAX_MESSAGE_LEN = 128 * 1024
MAX_FDS_PER_MESSAGE = 16


def protocol_version():
    """The PROTOCOL_VERSION this client speaks (src/protocol/mod.rs); the daemon accepts
    only its own."""
    return 6


# Variant and field names, in declaration order: the index on the wire is the position.
LIMIT_FIELDS = ["memory_bytes", "pids", "cpu_millicores", "cpu_time_ms", "wall_time_ms",
                "file_size_bytes", "open_files", "tmp_size_bytes", "tmp_inodes"]
LIMIT_KINDS = ["Memory", "Pids", "Cpu", "CpuTime", "WallTime",
               "FileSize", "OpenFiles", "TmpSize", "TmpInodes"]
END_REASONS = ["Exited", "Signaled", "OomKilled", "WallTimeout", "CpuTimeout",
               "KilledByClient", "DaemonShutdown"]
FD_ROLES = ["Stdin", "Stdout", "Stderr", "Pidfd", "Result", "Pty"]

# Stdio variants and NetworkConfig values, encoded.
PIPE, NULL = b"\x00", b"\x01"
NETWORK_NONE = b"\x00"
NETWORK_VETH = b"\x01\x00\x00"          # Veth(VethConfig { interface: None, mtu: None })


# ---- encoding ----

def varint(n):
    """Unsigned LEB128: 7 bits per byte, least significant first, 0x80 = more follow."""
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def i32(n):
    """Zigzag, then varint: 0, -1, 1, -2, 2 ... become 0, 1, 2, 3, 4 ..."""
    return varint((n << 1) ^ (n >> 31))


def blob(data):
    """String and OsBytes: varint length, then the bytes."""
    return varint(len(data)) + data


def option_u64(value):
    """Option<u64>: 00 for None, 01 and the varint for Some."""
    return b"\x00" if value is None else b"\x01" + varint(value)


def encode_limits(limits, unlimited=()):
    """Limits: nine Option<u64>, in LIMIT_FIELDS order (a missing key is None), then
    `unlimited`, a LimitSet: the LIMIT_KINDS whose daemon default the request lifts."""
    unknown = set(limits) - set(LIMIT_FIELDS)
    if unknown:
        raise ValueError(f"unknown limits {sorted(unknown)}")
    kinds = sorted(set(unlimited), key=LIMIT_KINDS.index)
    return b"".join(option_u64(limits.get(field)) for field in LIMIT_FIELDS) \
        + varint(len(kinds)) + b"".join(varint(LIMIT_KINDS.index(k)) for k in kinds)


def hello(name, version=None):
    """Request::Hello { version, client }."""
    return varint(0) + varint(protocol_version() if version is None else version) \
        + blob(name.encode())


def signal_request(request_id, signo):
    """Request::Signal { id, signal }."""
    return varint(2) + varint(request_id) + i32(signo)


def status_request(request_id):
    """Request::Status { id }."""
    return varint(3) + varint(request_id)


def exec_command(program, argv=None):
    """Command::Exec { program, argv }: program first on the wire."""
    argv = [program] if argv is None else argv
    return varint(0) + blob(program) + varint(len(argv)) + b"".join(blob(a) for a in argv)


def entry_command(name, args):
    """Command::Entry { name, args }: args are the entry's postcard-encoded arguments."""
    return varint(1) + blob(name.encode()) + blob(args)


def spawn(request_id, command, stdio=(NULL, NULL, NULL), chroot_dir=None,
          hostname=b"hatchery", network=NETWORK_NONE, limits=None,
          allow_unenforced_limits=False, kill_on_disconnect=True):
    """Request::Spawn { id, request: SpawnRequest }, with an empty environment, cwd "/",
    no binds, uid and gid 1000 and nothing opted out."""
    request = b"".join([
        command,                                   # command
        varint(0),                                 # env: no pairs
        blob(b"/"),                                # cwd
        *stdio,                                    # stdin, stdout, stderr
        b"\x00" if chroot_dir is None else b"\x01" + blob(chroot_dir),
        varint(0),                                 # sandbox.binds: none
        blob(hostname),                            # sandbox.hostname
        network,                                   # sandbox.network
        varint(1000), varint(1000),                # sandbox.uid, sandbox.gid
        varint(0),                                 # sandbox.opt_out: none
        encode_limits(limits or {}),               # sandbox.limits
        b"\x01" if allow_unenforced_limits else b"\x00",
        b"\x01" if kill_on_disconnect else b"\x00",
        varint(0),                                 # sandbox.mounts: none
        b"\x00",                                   # sandbox.seccomp_policy: None
    ])
    return varint(1) + varint(request_id) + request


# ---- decoding ----

class Reader:
    """Reads postcard values from one message; every read checks the bounds."""

    def __init__(self, data):
        self.data, self.pos = data, 0

    def byte(self):
        if self.pos >= len(self.data):
            raise ValueError("truncated message")
        self.pos += 1
        return self.data[self.pos - 1]

    def varint(self, max_bytes=10):
        value = shift = 0
        for _ in range(max_bytes):
            b = self.byte()
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                return value
            shift += 7
        raise ValueError("overlong varint")

    def i32(self):
        n = self.varint(5)
        return (n >> 1) ^ -(n & 1)

    def blob(self):
        n = self.varint()
        if self.pos + n > len(self.data):
            raise ValueError("truncated message")
        self.pos += n
        return self.data[self.pos - n:self.pos]

    def string(self):
        return self.blob().decode("utf-8")

    def option(self, read):
        tag = self.byte()
        if tag not in (0, 1):
            raise ValueError(f"bad Option tag {tag}")
        return read() if tag else None

    def seq(self, read):
        return [read() for _ in range(self.varint())]

    def variant(self, names):
        index = self.varint()
        if index >= len(names):
            raise ValueError(f"unknown variant {index} of {names}")
        return names[index]


def sys_error(r):
    """SysError { op, path, errno }."""
    return {"op": r.string(), "path": r.option(r.string), "errno": r.i32()}


# SetupStep, the step of the sandbox's setup that failed, in declaration order (append-only).
SETUP_STEPS = ["Clone", "PlaceFds", "HoldSignals", "PrepareWorkload", "IdMaps", "UserIds",
               "DieWithZygote", "ScratchRoot", "RootDirectories", "ProcAndTmp", "Dev",
               "Binds", "PivotRoot", "DetachOldRoot", "ReadOnlyRoot", "Hostname",
               "Loopback", "BoundingSet", "DropCapabilities", "NoNewPrivs",
               "VerifyPrivileges", "Handover", "WorkingDirectory", "Session",
               "ResourceLimits", "Network", "StartWorkload", "OpenFilesLimit", "Seccomp",
               "Exec", "ForwardSignals", "Undumpable", "Devpts"]


def setup_step(r):
    """ErrorKind::Setup's step: a SetupStep, e.g. "RootDirectories"."""
    return r.variant(SETUP_STEPS)


def setup_failure(r):
    """ErrorKind::Setup's error: a SetupFailure. A failed system call decodes as its
    SysError; the others as (variant, fields...)."""
    kind = r.variant(["Sys", "Protocol", "ZygoteGone", "Verification", "Request"])
    if kind == "Sys":
        return sys_error(r)
    if kind == "Protocol":
        return (kind, r.string(), r.string())                         # expected, received
    if kind == "ZygoteGone":
        return (kind,)
    return (kind, r.string())                                         # what


# ErrorKind variants in index order, each with the reader of its fields. A kind added to
# the daemon must be added here (tests/docs_client.rs checks against docs/protocol.md).
ERROR_KINDS = [
    ("Protocol", lambda r: ()),
    ("VersionMismatch", lambda r: (r.varint(5),)),                    # supported
    ("PermissionDenied", lambda r: ()),
    ("InvalidRequest", lambda r: ()),
    ("Busy", lambda r: ()),
    ("NotFound", lambda r: ()),
    ("CannotExecute", lambda r: (r.i32(),)),                          # errno
    ("Setup", lambda r: (setup_step(r), setup_failure(r))),           # step, error
    ("Internal", lambda r: (r.option(lambda: sys_error(r)),)),        # error
    ("UnknownId", lambda r: ()),
    ("ShuttingDown", lambda r: ()),
    ("UnenforceableLimits", lambda r: (r.seq(lambda: r.variant(LIMIT_KINDS)),)),
    ("NetworkUnavailable", lambda r: ()),
    ("AddressPoolExhausted", lambda r: ()),
    ("UnknownEntry", lambda r: (r.string(),)),                        # name
    ("BadEntryArgs", lambda r: (r.string(),)),                        # name
    ("UnknownSandbox", lambda r: (r.string(),)),                      # name
]


def error_kind(r):
    index = r.varint()
    if index >= len(ERROR_KINDS):
        raise ValueError(f"unknown error kind {index}")
    name, fields = ERROR_KINDS[index]
    return (name, *fields(r))


def verdict(r):
    status = (r.variant(["Exited", "Signaled"]), r.i32())
    v = {"status": status, "reason": r.variant(END_REASONS)}
    for field in ("wall_time_us", "user_cpu_us", "system_cpu_us", "max_rss_kib"):
        v[field] = r.varint()
    v["memory_peak_bytes"] = r.option(r.varint)
    v["tasks_started"] = r.option(r.varint)
    v["limits"] = {field: r.option(r.varint) for field in LIMIT_FIELDS}
    v["limits"]["unlimited"] = r.seq(lambda: r.variant(LIMIT_KINDS))
    v["skipped_limits"] = r.seq(lambda: r.variant(LIMIT_KINDS))
    v["limits_reached"] = r.seq(lambda: r.variant(LIMIT_KINDS))
    return v


def daemon_status(r):
    """DaemonStatus (docs/protocol.md, section 2.3), as a dict."""
    counts = lambda: r.seq(lambda: (r.string(), r.varint()))  # noqa: E731
    status = {"version": r.string(), "pid": r.varint(5), "uptime_ms": r.varint(),
              "all_owners": r.byte() == 1}
    status["sandboxes"] = r.seq(lambda: {
        "sandbox": r.varint(), "id": r.varint(), "pid": r.i32(),
        "owner_uid": r.option(lambda: r.varint(5)), "program": r.string(),
        "age_ms": r.varint(), "memory_bytes": r.option(r.varint), "phase": r.string(),
        "client_connected": r.byte() == 1})
    for field in ("sandboxes_omitted", "live", "max_children"):
        status[field] = r.varint(5)
    status["warm_pool"] = {"size_per_shape": r.varint(5), "shapes": r.varint(5),
                           "idle": r.varint(5), "hits": r.varint(), "misses": r.varint()}
    status["veth"] = {"enabled": r.byte() == 1, "leased": r.varint(5),
                      "draining": r.varint(5), "free": r.varint(5)}
    for field in ("served", "failed", "ended"):
        status[field] = dict(counts())
    return status


SANDBOX_END_REASONS = ["Destroyed", "IdleTimeout", "Lifetime", "CreatorGone", "OomKilled",
                       "CpuTimeout", "DaemonShutdown", "Died"]


def sandbox_verdict(r):
    v = {"name": r.string(), "reason": r.variant(SANDBOX_END_REASONS)}
    for field in ("wall_time_us", "user_cpu_us", "system_cpu_us"):
        v[field] = r.varint()
    v["memory_peak_bytes"] = r.option(r.varint)
    v["commands_run"] = r.varint()
    v["limits"] = {field: r.option(r.varint) for field in LIMIT_FIELDS}
    v["limits"]["unlimited"] = r.seq(lambda: r.variant(LIMIT_KINDS))
    return v


def ip_addr(r):
    """An IpAddr: 00 and 4 bytes (IPv4) or 01 and 16 bytes (IPv6), as text."""
    family = r.variant(["V4", "V6"])
    raw = bytes(r.byte() for _ in range(4 if family == "V4" else 16))
    return str(ipaddress.ip_address(raw))


def network_facts(r):
    """A NetworkFacts: the veth ends' names and the sandbox end's addresses."""
    interface, host_interface = r.string(), r.string()
    addresses = r.seq(lambda: {"address": ip_addr(r), "prefix_len": r.byte(),
                               "gateway": ip_addr(r)})
    return {"interface": interface, "host_interface": host_interface,
            "addresses": addresses}


def decode_event(data):
    """One Event, exactly: trailing bytes are an error, as they are to the daemon."""
    r = Reader(data)
    tag = r.varint()
    if tag == 0:
        event = ("Welcome", r.varint(5), r.string())
    elif tag == 1:
        request_id, pid = r.varint(), r.i32()
        roles = r.seq(lambda: r.variant(FD_ROLES))
        event = ("Spawned", request_id, pid, roles, r.option(lambda: network_facts(r)))
    elif tag == 2:
        event = ("Exited", r.varint(), verdict(r))
    elif tag == 3:
        event = ("Error", r.option(r.varint), error_kind(r), r.string())
    elif tag == 4:
        event = ("Status", r.varint(), daemon_status(r))
    elif tag == 5:
        request_id, name = r.varint(), r.string()
        event = ("SandboxCreated", request_id, name, r.i32())
    elif tag == 6:
        request_id = r.varint()
        event = ("SandboxEnded", request_id, sandbox_verdict(r))
    elif tag == 7:
        request_id = r.varint()
        event = ("Sandboxes", request_id, r.seq(lambda: {
            "name": r.string(), "owner_uid": r.option(r.varint), "age_ms": r.varint(),
            "commands_running": r.varint(), "memory_peak_bytes": r.option(r.varint)}))
    else:
        raise ValueError(f"unknown event {tag}")
    if r.pos != len(data):
        raise ValueError(f"{len(data) - r.pos} trailing bytes")
    return event


# ---- transport ----

def connect(path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sock.connect(path)
    return sock


def send(sock, message, fds=()):
    if fds:
        socket.send_fds(sock, [message], list(fds))   # Stdio::Fd streams only
    else:
        sock.send(message)


def recv_event(sock):
    """One event and the fds that came with it. recvmsg, not socket.recv_fds, which
    ignores its flags argument (CPython gh-107898) and so cannot set close-on-exec."""
    data, ancdata, flags, _ = sock.recvmsg(
        MAX_MESSAGE_LEN + 1,
        socket.CMSG_SPACE(MAX_FDS_PER_MESSAGE * 4),
        socket.MSG_CMSG_CLOEXEC,
    )
    fds = array.array("i")
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[:len(payload) - len(payload) % fds.itemsize])
    fds = list(fds)
    if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
        for fd in fds:
            os.close(fd)
        raise ValueError("truncated datagram")
    if not data and not fds:
        raise EOFError("the daemon closed the connection")
    return decode_event(data), fds


def handshake(path, name="python-client"):
    """A connection on which Welcome has arrived."""
    sock = connect(path)
    send(sock, hello(name))
    event, _ = recv_event(sock)
    if event[0] != "Welcome":
        sock.close()
        raise RuntimeError(f"handshake refused: {event}")   # Error, then end of stream
    return sock


def answer(sock, request_id):
    """The answer to spawn `request_id` (Spawned or Error); the fds of a Spawned are
    closed. Events of other ids are skipped."""
    while True:
        event, fds = recv_event(sock)
        for fd in fds:
            os.close(fd)
        if event[0] in ("Spawned", "Error") and event[1] == request_id:
            return event


def exited(sock, request_id):
    """The Exited event of `request_id`."""
    while True:
        event, fds = recv_event(sock)
        for fd in fds:
            os.close(fd)
        if event[0] == "Exited" and event[1] == request_id:
            return event


# ---- the tour ----

def tour(path):
    with connect(path) as sock:
        send(sock, hello("python-client"))
        event, _ = recv_event(sock)
        if event[0] != "Welcome":
            raise SystemExit(f"handshake refused: {event}")
        print("welcome:", event)

        send(sock, spawn(1, exec_command(b"/bin/true"), limits={"wall_time_ms": 10_000}))
        event, fds = recv_event(sock)
        if event[0] != "Spawned":
            raise SystemExit(f"spawn failed: {event}")
        print("spawned:", event)
        roles = dict(zip(event[3], fds))   # Null stdio: only {"Pidfd": fd}
        pidfd = roles.get("Pidfd")
        if pidfd is not None:
            poller = select.poll()
            poller.register(pidfd, select.POLLIN)
            poller.poll()                    # readable once the sandbox has exited
        for fd in fds:
            os.close(fd)

        event, _ = recv_event(sock)          # Exited { id: 1, verdict }
        print("exited:", event)
        if event[0] != "Exited" or event[1] != 1:
            raise SystemExit(f"expected Exited for id 1: {event}")


def status(path):
    """The daemon's answer to Status, as a dict."""
    with handshake(path) as sock:
        send(sock, status_request(1))
        while True:
            event, fds = recv_event(sock)
            for fd in fds:
                os.close(fd)
            if event[0] == "Status" and event[1] == 1:
                return event[2]


# ---- scenarios: each provokes one error kind ----

def first_event(path, message):
    """Sends `message` as the first datagram of a new connection; its answer."""
    with connect(path) as sock:
        send(sock, message)
        return recv_event(sock)[0]


def spawn_answer(path, message, request_id=1):
    with handshake(path) as sock:
        send(sock, message)
        return answer(sock, request_id)


def garbage(path):
    # FF FF FF is no Request: a variant index whose varint never ends.
    with handshake(path) as sock:
        send(sock, b"\xff\xff\xff")
        return recv_event(sock)[0]


def wrong_version(path):
    return first_event(path, hello("python-client", version=protocol_version() - 1))


def permission_denied(path):
    """As uid and gid 65534, which the daemon must not allow (start it with
    --allow-uid for another uid, so that the socket is 0666). Needs root, to switch.
    A forked child connects; it passes the answer's bytes back on a pipe."""
    read_end, write_end = os.pipe()
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            with connect(path) as sock:
                send(sock, hello("python-client"))
                os.write(write_end, sock.recv(MAX_MESSAGE_LEN + 1))
            status = 0
        except BaseException as e:  # said here: the fork never returns to raise it
            print(f"permission-denied: {type(e).__name__}: {e}", file=sys.stderr)
        finally:
            os._exit(status)    # never return into the parent's code
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        data = reader.read()
    _, status = os.waitpid(pid, 0)
    if status != 0:
        raise RuntimeError(f"the unprivileged connection failed (wait status {status})")
    return decode_event(data)


def invalid_request(path):
    # An empty hostname: hostnames are 1 to 64 bytes.
    return spawn_answer(path, spawn(1, exec_command(b"/bin/true"), hostname=b""))


def over_ceiling(path):
    # Against a daemon started with --max-wall-time below 120 s: InvalidRequest too.
    message = spawn(1, exec_command(b"/bin/true"), limits={"wall_time_ms": 120_000})
    return spawn_answer(path, message)


def busy(path):
    """Against a daemon started with --max-children 1: a second sandbox is refused while
    the first lives; then the first is killed with Signal(SIGKILL)."""
    with handshake(path) as sock:
        send(sock, spawn(1, exec_command(b"/bin/sleep", [b"sleep", b"60"])))
        first = answer(sock, 1)
        if first[0] != "Spawned":
            raise RuntimeError(f"the first sandbox did not start: {first}")
        send(sock, spawn(2, exec_command(b"/bin/true")))
        refused = answer(sock, 2)
        send(sock, signal_request(1, signal.SIGKILL))
        end = exited(sock, 1)
        if end[2]["reason"] != "KilledByClient":
            raise RuntimeError(f"the first sandbox ended otherwise: {end}")
        return refused


def not_found(path):
    return spawn_answer(path, spawn(1, exec_command(b"/nonexistent/program")))


def cannot_execute(path):
    # A readable file without execute permission: execve gives EACCES.
    return spawn_answer(path, spawn(1, exec_command(b"/etc/passwd")))


def setup_failed(path):
    return spawn_answer(path, spawn(1, exec_command(b"/bin/true"),
                                    chroot_dir=b"/nonexistent-root"))


def internal(path):
    """Against a zygote that cannot fork (hatchery-test-zygote with
    HATCHERY_TEST_ZYGOTE_THREAD=1): an entry call it must refuse on its side."""
    return spawn_answer(path, spawn(1, entry_command("echo", blob(b"hi"))))


def exec_in_sandbox(request_id, sandbox, program):
    """Request::Exec { id, sandbox, request: ExecRequest }: one more command in a
    persistent sandbox (§3.12), with /dev/null streams and no limits of its own."""
    return (varint(5) + varint(request_id) + blob(sandbox) + blob(program)
            + varint(1) + blob(program) + varint(0) + blob(b"/") + NULL * 3
            + option_u64(None) + option_u64(None) + b"\x00")        # no limits, no pty


def unknown_sandbox(path):
    return spawn_answer(path, exec_in_sandbox(1, b"no-such-sandbox", b"/bin/true"))


def unknown_id(path):
    with handshake(path) as sock:
        send(sock, signal_request(99, signal.SIGTERM))
        return recv_event(sock)[0]


def shutting_down(path):
    """Sends SIGTERM to the daemon (its pid from SO_PEERCRED): it ends the connection
    with ShuttingDown. Leaves no daemon behind: run it last."""
    with handshake(path) as sock:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        daemon_pid, _, _ = struct.unpack("3i", creds)
        os.kill(daemon_pid, signal.SIGTERM)
        return recv_event(sock)[0]


def unenforceable_limits(path):
    """Against a daemon that has no cgroup to enforce a memory limit with."""
    message = spawn(1, exec_command(b"/bin/true"), limits={"memory_bytes": 64 << 20})
    return spawn_answer(path, message)


def network_unavailable(path):
    # Against a daemon started without --veth-pool.
    return spawn_answer(path, spawn(1, exec_command(b"/bin/true"), network=NETWORK_VETH))


def pool_exhausted(path):
    """Against a daemon whose --veth-pool holds one subnet: a second networked sandbox
    is refused while the first lives."""
    with handshake(path) as sock:
        sleeper = exec_command(b"/bin/sleep", [b"sleep", b"60"])
        send(sock, spawn(1, sleeper, network=NETWORK_VETH))
        first = answer(sock, 1)
        if first[0] != "Spawned":
            raise RuntimeError(f"the first sandbox did not start: {first}")
        send(sock, spawn(2, exec_command(b"/bin/true"), network=NETWORK_VETH))
        refused = answer(sock, 2)
        send(sock, signal_request(1, signal.SIGKILL))
        exited(sock, 1)
        return refused


def unknown_entry(path):
    return spawn_answer(path, spawn(1, entry_command("no-such-entry", b"")))


def bad_entry_args(path):
    """Against a zygote with an entry `echo` taking a String (hatchery-test-zygote):
    FF starts a length that never ends."""
    return spawn_answer(path, spawn(1, entry_command("echo", b"\xff")))


# Name → function; each returns the event that answered it.
SCENARIOS = {
    "garbage": garbage,
    "wrong-version": wrong_version,
    "permission-denied": permission_denied,
    "invalid-request": invalid_request,
    "over-ceiling": over_ceiling,
    "busy": busy,
    "not-found": not_found,
    "cannot-execute": cannot_execute,
    "setup-failed": setup_failed,
    "internal": internal,
    "unknown-id": unknown_id,
    "shutting-down": shutting_down,
    "unenforceable-limits": unenforceable_limits,
    "network-unavailable": network_unavailable,
    "pool-exhausted": pool_exhausted,
    "unknown-entry": unknown_entry,
    "bad-entry-args": bad_entry_args,
    "unknown-sandbox": unknown_sandbox,
}


def describe(event):
    """The kind of an Error, else the event's name, then the event."""
    return f"{event[2][0] if event[0] == 'Error' else event[0]} {event!r}"


# ---- the golden bytes of docs/protocol.md, section 6 ----

def self_test():
    expect = [
        (hello("t", version=1), "00 01 01 74"),
        (signal_request(300, 15), "02 AC 02 1E"),
        (spawn(1, exec_command(b"/bin/true"), stdio=(PIPE, PIPE, PIPE)),
         "01 01 00 09 2F 62 69 6E 2F 74 72 75 65 01 09 2F 62 69 6E 2F 74 72 75 65 00 01 2F"
         " 00 00 00 00 00 08 68 61 74 63 68 65 72 79 00 E8 07 E8 07 00 00 00 00 00 00 00 00"
         " 00 00 00 00 01 00 00"),
    ]
    # The tour's request: Null streams (offsets 27-29) and a wall-time limit (offset 51).
    tour_request = bytearray(expect[2][0])
    tour_request[27:30] = NULL * 3
    tour_request[51:52] = bytes.fromhex("01 90 4E")
    expect.append((spawn(1, exec_command(b"/bin/true"), limits={"wall_time_ms": 10_000}),
                   tour_request.hex(" ")))
    expect.append((status_request(3), "03 03"))
    for encoded, golden in expect:
        assert encoded == bytes.fromhex(golden), (encoded.hex(" "), golden)
    decoded = [
        ("01 02 9A 01 02 01 03 00", ("Spawned", 2, 77, ["Stdout", "Pidfd"], None)),
        ("01 01 04 01 03 01 01 65 02 68 30 01 00 0A 00 00 02 1E 00 0A 00 00 01",
         ("Spawned", 1, 2, ["Pidfd"],
          {"interface": "e", "host_interface": "h0",
           "addresses": [{"address": "10.0.0.2", "prefix_len": 30, "gateway": "10.0.0.1"}]})),
        ("03 00 01 01 01 76", ("Error", None, ("VersionMismatch", 1), "v")),
        ("03 01 05 07 08 00 01 6D 00 04 00",
         ("Error", 5, ("Setup", "RootDirectories", {"op": "m", "path": None, "errno": 2}),
          "")),
        ("03 01 05 07 14 03 01 76 00",
         ("Error", 5, ("Setup", "VerifyPrivileges", ("Verification", "v")), "")),
        ("03 01 05 08 00 00", ("Error", 5, ("Internal", None), "")),
        ("05 03 02 61 62 9A 01", ("SandboxCreated", 3, "ab", 77)),
        ("03 01 05 08 01 01 6D 01 01 70 1A 00",
         ("Error", 5, ("Internal", {"op": "m", "path": "p", "errno": 13}), "")),
    ]
    for golden, event in decoded:
        assert decode_event(bytes.fromhex(golden)) == event, (golden, event)
    exited_event = decode_event(bytes.fromhex(
        "02 07 01 12 06 DC 0B 00 00 80 10 01 80 20 01 03 00 00 00 00 01 E8 07 00 00 00 00"
        " 01 01 01 00 01 07"))
    assert exited_event[:2] == ("Exited", 7)
    v = exited_event[2]
    assert v["status"] == ("Signaled", 9) and v["reason"] == "DaemonShutdown", v
    assert (v["wall_time_us"], v["max_rss_kib"], v["memory_peak_bytes"]) == (1500, 2048, 4096)
    assert v["tasks_started"] == 3 and v["limits"]["wall_time_ms"] == 1000, v
    assert v["limits"]["unlimited"] == ["Pids"], v
    assert v["skipped_limits"] == ["Memory"] and v["limits_reached"] == ["TmpSize"], v
    status_event = decode_event(bytes.fromhex(
        "04 03 01 76 09 E8 07 01 01 01 02 9A 01 01 E8 07 01 70 05 00 01 72 01 00 01 04 01"
        " 01 00 02 01 00 00 00 00 01 01 77 02 00 00"))
    assert status_event[:2] == ("Status", 3)
    st = status_event[2]
    assert (st["version"], st["pid"], st["uptime_ms"], st["all_owners"]) == ("v", 9, 1000, True)
    assert st["sandboxes"] == [{"sandbox": 1, "id": 2, "pid": 77, "owner_uid": 1000,
                                "program": "p", "age_ms": 5, "memory_bytes": None,
                                "phase": "r", "client_connected": True}], st
    assert (st["live"], st["max_children"], st["warm_pool"]["hits"]) == (1, 4, 2), st
    assert st["served"] == {"w": 2} and st["failed"] == {} and not st["veth"]["enabled"], st
    ended = decode_event(bytes.fromhex("06 07 01 73 01 DC 0B 00 00 01 80 20 02" + " 00" * 10))
    assert ended[:2] == ("SandboxEnded", 7), ended
    assert ended[2]["reason"] == "IdleTimeout" and ended[2]["commands_run"] == 2, ended
    assert (exec_in_sandbox(2, b"s", b"/t")
            == bytes.fromhex("05 02 01 73 02 2F 74 01 02 2F 74 00 01 2F 01 01 01 00 00 00")), \
        exec_in_sandbox(2, b"s", b"/t").hex(" ")
    for bad in ["03 01 05 63 00", "00 03 01 74 00", "03 01 05 08 02"]:
        try:
            decode_event(bytes.fromhex(bad))
        except ValueError:
            continue
        raise AssertionError(f"{bad} decoded")
    print("self-test: ok")


def main(args):
    if args[:1] == ["--self-test"]:
        self_test()
    elif args[:1] == ["--decode"]:
        for text in args[1:]:
            print(describe(decode_event(bytes.fromhex(text))))
    elif len(args) == 1:
        tour(args[0])
    elif args[1:] == ["--status"]:
        print(json.dumps(status(args[0]), sort_keys=True))
    elif len(args) > 1:
        path = args[0]
        for name in args[1:]:
            print(f"{name}: {describe(SCENARIOS[name](path))}", flush=True)
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
