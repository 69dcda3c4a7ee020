#!/usr/bin/env python3
"""The Python zygote against a plain `python3 -c` spawn and against pyspawner.

Usage (as root; benches/python_zygote.sh sets up a virtualenv with numpy, pandas,
pyspawner 1.0.0 and this repository's package, then runs this):

  python benches/python_zygote.py [--rounds N] [--preload MODULE,...] [--big-mib N]

Each round, interleaved, times spawn → the child's code has run → exit, for:
  exec, nothing       hatchery exec of `python3 -c pass` (the interpreter's start)
  exec, imports       hatchery exec of `python3 -c "import MODULES"` (what a job pays
                      without a zygote; the virtualenv's site-packages bound in)
  zygote, nothing     the Python zygote, nothing preloaded, child_main returns
  zygote, preloaded   the Python zygote with MODULES preloaded
  zygote, big         ... and N MiB of Python data in the zygote (--big-mib)
  pyspawner, ...      the same with pyspawner, where it is installed
  client, python      the Python client: spawn /bin/true (null stdio) and wait
  client, rust        the same through the Rust client (python/native's
                      rust-client-driver, one line over a pipe per spawn, so a pipe's
                      round trip is counted against Rust), where it is built
and prints the median, p90 and the ratios the issue asks about. HATCHERY_BENCH_QUICK=1:
three rounds, the stdlib as the preload, no figures kept (test.sh runs it so).
Environment: HATCHERY_BIN (default target/release/hatchery), HATCHERY_PYTHON_LIBRARY,
HATCHERY_RUST_DRIVER (default target/release/rust-client-driver).
"""
import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

import hatchery_sandbox as h  # noqa: E402  (installed: pip install ./python)
from hatchery_sandbox.zygote import Zygote  # noqa: E402

STDLIB = "decimal,json,email.mime.multipart,xml.dom.minidom,http.client,asyncio"
SYSTEM_PYTHON = "/usr/bin/python3"


def timed(action):
    start = time.perf_counter()
    action()
    return (time.perf_counter() - start) * 1000


def start_daemon(directory):
    binary = os.environ.get("HATCHERY_BIN") or os.path.join(REPO, "target", "release",
                                                              "hatchery")
    path = os.path.join(directory, "bench.sock")
    process = subprocess.Popen([binary, "serve", "--socket", path],
                               env=dict(os.environ, RUST_LOG="warn"), stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            return process, h.Client.connect(path)
        except h.Unreachable:
            if time.monotonic() > deadline or process.poll() is not None:
                raise SystemExit("the benchmark's daemon did not start")
            time.sleep(0.01)


def main():
    quick = os.environ.get("HATCHERY_BENCH_QUICK") == "1"
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3 if quick else 200)
    parser.add_argument("--preload", default=None)
    parser.add_argument("--big-mib", type=int, default=0)
    options = parser.parse_args()
    modules = options.preload or (
        "numpy,pandas" if not quick and importlib.util.find_spec("pandas") else STDLIB)
    modules = modules.split(",")
    site = sysconfig.get_paths()["purelib"]
    imports = "import " + ", ".join(modules)
    environment = {"LANG": "C.UTF-8", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    systems = {}
    with tempfile.TemporaryDirectory() as directory:
        os.chmod(directory, 0o755)
        daemon, client = start_daemon(directory)
        exec_env = dict(environment, PYTHONPATH=site)
        bind = [h.Bind(site, site)]

        def run_exec(code):
            def action():
                result = client.run([SYSTEM_PYTHON, "-c", code], env=exec_env, binds=bind)
                assert result.verdict.success, result.stderr.decode()
            return action

        def python_client():
            child = client.spawn(["/bin/true"], stdin=h.DEVNULL, stdout=h.DEVNULL,
                                 stderr=h.DEVNULL)
            assert child.wait().success

        systems["client, python"] = python_client
        driver_path = os.environ.get("HATCHERY_RUST_DRIVER") or os.path.join(
            REPO, "target", "release", "rust-client-driver")
        driver = None
        if os.access(driver_path, os.X_OK) and not quick:
            driver = subprocess.Popen([driver_path, os.path.join(directory, "bench.sock")],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE)

            def rust_client():
                driver.stdin.write(b"go\n")
                driver.stdin.flush()
                answer = driver.stdout.readline()
                assert answer == b"ok\n", answer

            systems["client, rust"] = rust_client
        systems["exec, nothing"] = run_exec("pass")
        systems["exec, imports"] = run_exec(imports)
        zygotes = [Zygote("python_jobs:noop", environment=environment, python_path=[HERE]),
                   Zygote("python_jobs:noop", preload_imports=modules,
                          environment=environment, python_path=[HERE])]
        systems["zygote, nothing"] = zygotes[0].call
        systems["zygote, preloaded"] = zygotes[1].call
        if options.big_mib:
            big_env = dict(environment, HATCHERY_BENCH_PRELOAD_MIB=str(options.big_mib))
            zygotes.append(Zygote("python_jobs:noop", preload_imports=[*modules, "python_jobs"],
                                  environment=big_env, python_path=[HERE]))
            systems[f"zygote, preloaded + {options.big_mib} MiB"] = zygotes[-1].call
        peers = []
        if importlib.util.find_spec("pyspawner") and not quick:
            import pyspawner

            def pyspawner_client(preload, env=environment):
                sys.path.insert(0, HERE)
                peer = pyspawner.Client(child_main="python_jobs.noop",
                                        environment=dict(env, PYTHONPATH=HERE),
                                        preload_imports=preload)
                peers.append(peer)

                def action():
                    child = peer.spawn_child([], sandbox_config=pyspawner.SandboxConfig())
                    child.stdin.close()
                    child.stdout.read()
                    child.stderr.read()
                    _, status = child.wait(0)
                    assert status == 0, status
                return action

            systems["pyspawner, nothing"] = pyspawner_client([])
            systems["pyspawner, preloaded"] = pyspawner_client(modules)
            if options.big_mib:
                systems[f"pyspawner, preloaded + {options.big_mib} MiB"] = pyspawner_client(
                    [*modules, "python_jobs"],
                    dict(environment, HATCHERY_BENCH_PRELOAD_MIB=str(options.big_mib)))
        try:
            for action in systems.values():  # warm up
                action()
            times = {name: [] for name in systems}
            for _ in range(options.rounds):
                for name, action in systems.items():
                    times[name].append(timed(action))
        finally:
            for peer in peers:
                peer.close()
            for zygote in zygotes:
                zygote.close()
            if driver is not None:
                driver.stdin.close()
                driver.wait()
            client.close()
            daemon.terminate()
            daemon.wait()
    if quick:
        print("python_zygote: ok (quick mode, no figures)")
        return
    print(f"preload: {', '.join(modules)}; {options.rounds} rounds; ms per spawn → exit")
    print(f"{'system':40} {'median':>8} {'p90':>8}")
    medians = {}
    for name, samples in times.items():
        samples.sort()
        medians[name] = statistics.median(samples)
        print(f"{name:40} {medians[name]:8.2f} {samples[int(len(samples) * 0.9)]:8.2f}")
    z = medians["zygote, preloaded"]
    print(f"zygote preloaded vs exec with imports: {medians['exec, imports'] / z:.1f}x faster")
    print(f"zygote preloaded / zygote nothing: {z / medians['zygote, nothing']:.2f}")
    if "client, rust" in medians:
        print(f"python client overhead over the rust client: "
              f"{medians['client, python'] - medians['client, rust']:.3f} ms")
    if "pyspawner, preloaded" in medians:
        print(f"zygote preloaded vs pyspawner preloaded: "
              f"{medians['pyspawner, preloaded'] / z:.1f}x faster")


if __name__ == "__main__":
    main()
