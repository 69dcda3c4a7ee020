"""pyspawner's networked spawn, driven by benches/network.rs.

Usage: python3 pyspawner_net.py PORT. Starts one pyspawner (its veth config: host end
192.168.123.1, child 192.168.123.2), then for each line read on stdin spawns a child
that connects to the host end's PORT, sends "ping" and reads the answer, waits for it
and prints "ok" (or "fail ..."). The Rust side times each line's round trip.
"""

import os
import socket
import sys

import pyspawner


def child_main(host: str, port: int) -> None:
    """Runs inside pyspawner's sandbox: connect to the host end, ping, read."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as conn:
        conn.settimeout(5)
        conn.connect((host, port))
        conn.sendall(b"ping\n")
        conn.recv(16)


def main() -> None:
    port = int(sys.argv[1])
    here = os.path.dirname(os.path.abspath(__file__))
    network = pyspawner.NetworkConfig()
    config = pyspawner.SandboxConfig(network=network)
    with pyspawner.Client(
        child_main="pyspawner_net.child_main",
        environment={"PYTHONPATH": here, "LC_ALL": "C.UTF-8"},
        # Host names are IDNA-encoded even when numeric: the codec must be loaded
        # before the sandbox closes the filesystem.
        preload_imports=["socket", "encodings.idna"],
    ) as client:
        for _ in sys.stdin:
            child = client.spawn_child(
                args=[network.kernel_ipv4_address, port], sandbox_config=config
            )
            child.stdin.close()
            _, status = child.wait(0)
            err = child.stderr.read()
            child.stdout.close()
            child.stderr.close()
            if status == 0:
                print("ok", flush=True)
            else:
                print("fail %d %r" % (status, err[-300:]), flush=True)


if __name__ == "__main__":
    main()
