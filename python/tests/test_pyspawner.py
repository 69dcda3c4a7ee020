"""The pyspawner drop-in, tested on what pyspawner's documentation promises."""
import os
import pathlib
import shutil
import stat
import subprocess
import tempfile

import pytest

from hatchery_sandbox import pyspawner

TESTS = os.path.dirname(os.path.abspath(__file__))
ENVIRONMENT = {"LC_ALL": "C.UTF-8", "HOME": "/", "SANDBOX": "yes"}


@pytest.fixture
def shared_tmp():
    """A temporary directory the sandbox's uid can enter (pytest's own are 0700)."""
    path = tempfile.mkdtemp(prefix="hatchery-pyspawner-")
    os.chmod(path, 0o755)
    yield pathlib.Path(path)
    shutil.rmtree(path)


@pytest.fixture(scope="module")
def client():
    if os.geteuid() != 0:
        if os.environ.get("HATCHERY_TESTS_MUST_RUN") == "1":
            pytest.fail("the pyspawner tests need root (HATCHERY_TESTS_MUST_RUN=1)")
        pytest.skip("the pyspawner tests need root")
    with pyspawner.Client(child_main="pyspawner_jobs.dispatch", environment=ENVIRONMENT,
                          preload_imports=["pyspawner_jobs", "subprocess"],
                          python_path=[TESTS]) as client:
        yield client


def run(client, *args, stdin=b"", sandbox_config=pyspawner.SandboxConfig()):
    child = client.spawn_child(list(args), process_name="job",
                               sandbox_config=sandbox_config)
    child.stdin.write(stdin)
    child.stdin.close()
    out, err = child.stdout.read(), child.stderr.read()
    pid, status = child.wait(0)
    assert pid == child.pid
    return os.waitstatus_to_exitcode(status), out.decode(), err.decode()


def test_stdout_and_stderr_three_ways(client):
    code, out, err = run(client, "write_three_ways")
    # print and sys.__stdout__ share a buffer, flushed at exit; os.write is at once.
    assert (code, out, err) == (0, "os.write\nprint\n__stdout__\n", "stderr\n")


def test_an_exception_exits_1_with_the_traceback(client):
    code, out, err = run(client, "raise_error")
    assert code == 1 and out == ""
    assert err.startswith("Traceback") and err.endswith("RuntimeError: the child failed\n")


def test_stdin_is_echoed(client):
    assert run(client, "echo_stdin", stdin=b"hello\n" * 1000) == (0, "hello\n" * 1000, "")


def test_sys_exit_is_the_exit_code(client):
    assert run(client, "exit_code", 3)[0] == 3


def test_the_environment_is_exact(client):
    expected = "".join(f"{k}={v}\n" for k, v in sorted(ENVIRONMENT.items()))
    assert run(client, "print_environment") == (0, expected, "")


def test_fds_3_to_19_are_closed(client):
    assert run(client, "open_fds") == (0, "[]\n", "")


def test_no_network_is_unreachable(client):
    assert run(client, "connect_out") == (0, "ENETUNREACH\n", "")


def test_no_capabilities(client):
    assert run(client, "try_chroot") == (0, "EPERM\n", "")


def test_the_id_maps_are_not_writable(client):
    code, out, _ = run(client, "write_id_maps")
    assert code == 0 and "written" not in out, out
    assert [line.split()[0] for line in out.splitlines()] == ["uid_map", "setgroups", "gid_map"]


def test_getcwd_is_root(client):
    assert run(client, "getcwd") == (0, "/\n", "")


def test_wait_nohang_and_kill(client):
    child = client.spawn_child(["echo_stdin"])
    assert child.wait(os.WNOHANG) == (0, 0)
    child.kill()
    pid, status = child.wait(0)
    assert pid == child.pid and os.WIFSIGNALED(status) and os.WTERMSIG(status) == 9


def test_chroot_into_an_empty_directory_with_a_static_binary(client, shared_tmp):
    tmp_path = shared_tmp
    source = tmp_path / "hello.c"
    source.write_text('#include <unistd.h>\nint main(void) { write(1, "static\\n", 7); return 0; }\n')
    root = tmp_path / "root"
    root.mkdir()
    compiled = subprocess.run(["cc", "-static", "-o", str(root / "hello"), str(source)],
                              capture_output=True, text=True)
    assert compiled.returncode == 0, compiled.stderr
    os.chmod(root, 0o755)
    config = pyspawner.SandboxConfig(chroot_dir=root)
    code, out, err = run(client, "list_root_and_exec", "/hello", sandbox_config=config)
    assert (code, err) == (0, ""), err
    listing, rest = out.split("\n", 1)
    assert listing.startswith("['dev', 'hello', 'proc', 'tmp'] /"), listing
    assert rest == "static\n"


def test_setuid_root_binaries_are_inert(client, shared_tmp):
    """A setuid-root copy of `id` bound into the sandbox runs as the child's uid (were the
    bit honoured, its euid would be the file owner's: root, seen as 65534 inside)."""
    program = shared_tmp / "id"
    shutil.copy("/usr/bin/id", program)
    os.chmod(program, 0o755 | stat.S_ISUID)
    assert os.stat(program).st_mode & stat.S_ISUID and os.stat(program).st_uid == 0
    child = client._zygote.spawn("run_setuid", "/mnt/id", "-u", stdin=pyspawner.t.DEVNULL,
                                 binds=[pyspawner.t.Bind(str(shared_tmp), "/mnt")])
    assert child.stdout.read() == b"1000\n"
    assert child.wait().success


def test_what_hatchery_does_not_do_is_refused_plainly(client):
    with pytest.raises(pyspawner.NotSupported, match="--veth-pool"):
        client.spawn_child([], sandbox_config=pyspawner.SandboxConfig(
            network=pyspawner.NetworkConfig()))
    with pytest.raises(pyspawner.NotSupported, match="never switches sandbox layers off"):
        client.spawn_child([], sandbox_config=pyspawner.SandboxConfig(
            skip_sandbox_except=frozenset({"seccomp"})))
