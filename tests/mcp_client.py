"""A real MCP client (the `mcp` package, pinned in test.sh) driving `hatchery mcp`.

Run by tests/mcp.rs as `PYTHON tests/mcp_client.py HATCHERY [SERVER ARGS...]`; prints
`ok NAME` for each check and exits non-zero at the first that fails.
"""

import os
import sys
import time

import anyio
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

HATCHERY = sys.argv[1]
SERVER_ARGS = sys.argv[2:]


def check(name, condition, detail=""):
    if not condition:
        raise AssertionError(f"{name}: {detail}")
    print(f"ok {name}", flush=True)


def sandboxes_running(marker):
    """Host processes whose command line holds `marker`."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    found.append(int(pid))
        except OSError:
            pass
    return found


def server(*extra):
    return StdioServerParameters(command=HATCHERY, args=["mcp", *SERVER_ARGS, *extra])


async def handshake_era():
    params = server("--max-output", "4K", "--memory", "256M")
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            check("initialize", init.protocol_version == "2025-11-25", init.protocol_version)

            tools = {tool.name: tool for tool in (await session.list_tools()).tools}
            check("tools are listed", set(tools) == {
                "run_command", "run_code", "status", "session_create", "session_run",
                "session_destroy", "job_status", "job_output", "job_kill", "file_write",
                "file_read", "file_list"}, list(tools))
            for tool in (tools["run_command"], tools["run_code"]):
                schema = tool.output_schema or {}
                check(f"{tool.name} has an output schema",
                      {"stdout", "stderr", "exit_code", "reason"} <= set(schema.get("required", [])),
                      schema)
            # The client checks structured content against the tool's outputSchema.
            status = await session.call_tool("status", {})
            out = status.structured_content
            check("status through the client",
                  not status.is_error and out["served_by"]["kind"] == "embedded"
                  and out["live"] == 0 and out["version"].startswith("hatchery "), out)
            languages = tools["run_code"].input_schema["properties"]["language"]["enum"]
            check("the languages present are offered", {"python", "sh"} <= set(languages), languages)

            programs = {
                "python": "import sys; print('hello from', 'python'); print('e', file=sys.stderr)",
                "sh": "echo hello from sh; echo e >&2",
                "bash": "echo hello from ${BASH_VERSINFO:+bash}; echo e >&2",
                "node": "console.log('hello from node'); console.error('e')",
            }
            for language in languages:
                result = await session.call_tool(
                    "run_code", {"language": language, "code": programs[language]})
                out = result.structured_content
                check(f"run_code {language}",
                      not result.is_error and out["stdout"] == f"hello from {language}\n"
                      and out["stderr"] == "e\n" and out["exit_code"] == 0
                      and out["reason"] == "exited", out)

            result = await session.call_tool("run_code", {
                "language": "python",
                "code": "import os; print(open('data/in.txt').read(), os.getcwd())",
                "files": {"data/in.txt": "from a file"}})
            check("run_code files", result.structured_content["stdout"] == "from a file /work\n",
                  result.structured_content)

            result = await session.call_tool("run_command", {
                "argv": ["sh", "-c", "cat; echo \"$GREETING\"; pwd; exit 3"],
                "stdin": "in\n", "env": {"GREETING": "hi"}, "cwd": "/tmp"})
            out = result.structured_content
            check("run_command argv, stdin, env, cwd",
                  out["stdout"] == "in\nhi\n/tmp\n" and out["exit_code"] == 3
                  and not result.is_error, out)

            result = await session.call_tool("run_command", {"command": "kill -SEGV $$"})
            out = result.structured_content
            check("a signal is named", out["signal"] == "SIGSEGV" and out["exit_code"] is None, out)

            result = await session.call_tool(
                "run_command", {"command": "sleep 30", "timeout_s": 0.5})
            out = result.structured_content
            check("a timeout is an error result",
                  result.is_error and out["reason"] == "timeout"
                  and "wall-time limit 500ms" in result.content[0].text, result)

            result = await session.call_tool("run_code", {
                "language": "python",
                "code": "b = bytearray(512 << 20); print('allocated')"})
            out = result.structured_content
            check("the memory limit is an error result",
                  result.is_error and out["reason"] == "oom", result)

            result = await session.call_tool(
                "run_command", {"command": "true", "memory": "1G"})
            check("a call cannot raise the server's memory limit",
                  result.is_error and "at most 256 MiB" in result.content[0].text, result)

            result = await session.call_tool("run_code", {"language": "ruby", "code": "p 1"})
            check("a missing language is an error result",
                  result.is_error and "not available" in result.content[0].text, result)

            result = await session.call_tool("run_command", {"argv": ["no-such-program"]})
            check("a missing program is an error result",
                  result.is_error and "not found" in result.content[0].text, result)

            result = await session.call_tool(
                "run_command", {"command": "head -c 100000 /dev/zero | tr '\\0' x"})
            out = result.structured_content
            check("output is bounded, head and tail kept, the cut said",
                  out["stdout_truncated"] and out["stdout_bytes"] == 100000
                  and out["stdout"].startswith("x" * 2048)
                  and out["stdout"].endswith("x" * 2048)
                  and "95904 bytes of stdout left out" in out["stdout"], out["stdout"][:2100])

            result = await session.call_tool("run_command", {"command": "printf '\\377\\000'"})
            out = result.structured_content
            check("binary output is base64",
                  out["stdout_encoding"] == "base64" and out["stdout"] == "/wA=", out)

            marker = "3600.4242"
            with anyio.move_on_after(1.5):
                await session.call_tool("run_command", {"argv": ["sleep", marker]})
            check("the call was cancelled", True)
            deadline = time.monotonic() + 5
            while sandboxes_running(marker) and time.monotonic() < deadline:
                await anyio.sleep(0.05)
            check("cancellation kills the sandbox", not sandboxes_running(marker))
            result = await session.call_tool("run_command", {"command": "echo still serving"})
            check("the server serves after a cancellation",
                  result.structured_content["stdout"] == "still serving\n")

            marker = "3600.4343"
            async with anyio.create_task_group() as group:
                group.start_soon(session.call_tool, "run_command", {"argv": ["sleep", marker]})
                deadline = time.monotonic() + 5
                while not sandboxes_running(marker) and time.monotonic() < deadline:
                    await anyio.sleep(0.05)
                check("a long call runs", sandboxes_running(marker))
                group.cancel_scope.cancel()
    # The client has closed the server's stdin and waited for it.
    deadline = time.monotonic() + 5
    while sandboxes_running(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    check("nothing is left after the client disconnects", not sandboxes_running(marker))


async def stateless_era():
    async with stdio_client(server()) as (read, write):
        async with ClientSession(read, write) as session:
            found = await session.discover()
            check("server/discover", "2026-07-28" in found.supported_versions, found)
            tools = (await session.list_tools()).tools
            check("tools/list without a handshake", len(tools) == 12, tools)
            result = await session.call_tool(
                "run_code", {"language": "python", "code": "print(6 * 7)"})
            check("tools/call without a handshake",
                  result.structured_content["stdout"] == "42\n", result)


async def sessions():
    marker = "3600.4444"
    async with stdio_client(server()) as (read, write):
        async with ClientSession(read, write) as mine:
            await mine.initialize()
            created = await mine.call_tool("session_create", {"name": "agent"})
            sid = created.structured_content["id"]
            check("session_create", not created.is_error and len(sid) == 32, created)
            await mine.call_tool("file_write", {"id": sid, "path": "state.txt", "content": "1\n"})
            ran = await mine.call_tool("session_run", {
                "id": sid, "language": "python",
                "code": "n = int(open('state.txt').read()); open('state.txt', 'w').write(f'{n + 1}\\n')"})
            check("session_run code", not ran.is_error and ran.structured_content["exit_code"] == 0,
                  ran)
            read_back = await mine.call_tool("file_read", {"id": sid, "path": "/work/state.txt"})
            check("a session's files persist across calls",
                  read_back.structured_content["content"] == "2\n", read_back)
            listed = await mine.call_tool("file_list", {"id": sid})
            check("file_list", "state.txt" in listed.structured_content["listing"], listed)

            started = await mine.call_tool("session_run", {
                "id": sid, "command": "for i in 1 2 3; do echo $i; sleep 0.2; done",
                "background": True})
            job = started.structured_content["job"]
            check("a background run answers with its job",
                  started.structured_content["running"], started)
            deadline = time.monotonic() + 10
            while True:
                status = await mine.call_tool("job_status", {"job": job})
                if not status.structured_content["running"] or time.monotonic() > deadline:
                    break
                await anyio.sleep(0.1)
            out = status.structured_content
            check("a background job polled to completion",
                  out["reason"] == "exited" and out["stdout"] == "1\n2\n3\n", out)
            output = await mine.call_tool("job_output", {"job": job, "stdout_since": 2})
            check("job_output from an offset",
                  output.structured_content["stdout"] == "2\n3\n"
                  and output.structured_content["stdout_next"] == 6, output)

            slow = await mine.call_tool("session_run", {
                "id": sid, "argv": ["sleep", "3600.4545"], "background": True})
            killed = await mine.call_tool("job_kill", {"job": slow.structured_content["job"]})
            check("job_kill", killed.structured_content["reason"] == "killed"
                  and not sandboxes_running("3600.4545"), killed)

            async with stdio_client(server()) as (read2, write2):
                async with ClientSession(read2, write2) as other:
                    await other.initialize()
                    for name, arguments in [
                            ("session_run", {"id": sid, "command": "cat state.txt"}),
                            ("file_read", {"id": sid, "path": "state.txt"}),
                            ("session_destroy", {"id": sid})]:
                        result = await other.call_tool(name, arguments)
                        check(f"another server cannot {name} a session",
                              result.is_error and "unknown session" in result.content[0].text,
                              result)
            still = await mine.call_tool("session_run", {"id": sid, "command": "cat state.txt"})
            check("the session lives on", still.structured_content["stdout"] == "2\n", still)

            await mine.call_tool("session_run", {
                "id": sid, "argv": ["sleep", marker], "background": True})
            check("a session's job runs", sandboxes_running(marker))
    deadline = time.monotonic() + 5
    while sandboxes_running(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    check("no session is left after the client disconnects", not sandboxes_running(marker))


async def main():
    await handshake_era()
    await sessions()
    await stateless_era()


anyio.run(main)
