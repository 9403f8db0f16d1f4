"""Running a render tool (kubectl, helm, the jsonnet worker) as a subprocess within the caps.

A tool runs in its own process group with a scrubbed environment and a
private HOME; it is killed (with everything it started) when it outlives the
render's deadline or prints more than the output cap. Its output is read as
it comes, so a tool that prints without end costs at most the cap in memory.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from services.renderer.manifests import RenderError
from services.wiring import telemetry

# What of stderr is kept for the error message: the end, where tools say why.
STDERR_KEPT = 16 * 1024
CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class Limits:
    """The caps of one render: a deadline (time.monotonic) and a byte cap for input and output."""

    deadline: float
    max_bytes: int
    timeout: float

    @classmethod
    def starting_now(cls, *, timeout: float, max_bytes: int) -> Limits:
        return cls(deadline=time.monotonic() + timeout, max_bytes=max_bytes, timeout=timeout)

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def check_time(self, what: str, file: str) -> None:
        """RenderError naming the timeout if the deadline has passed."""
        if self.remaining() <= 0:
            raise timed_out(self, what, file)


def timed_out(limits: Limits, what: str, file: str) -> RenderError:
    return RenderError(
        file,
        None,
        f"{what} did not finish within the render timeout of {limits.timeout:g} s "
        "(render_timeout): killed",
    )


@dataclass(frozen=True, slots=True)
class Finished:
    returncode: int
    stdout: bytes
    stderr: str


def run_tool(
    argv: Sequence[str],
    *,
    what: str,
    file: str,
    limits: Limits,
    cwd: Path,
    stdin: bytes = b"",
    env: dict[str, str] | None = None,
) -> Finished:
    """Run `argv` to completion within `limits`; its exit status, stdout and stderr's tail.

    Raises RenderError naming `file` when the deadline passes (the process
    group is killed) or stdout exceeds the output cap.
    """
    with telemetry.child_span(
        f"run {Path(argv[0]).name}",
        {"process.executable.name": Path(argv[0]).name, "wake.render.file": file},
    ) as span:
        finished = _run_tool(
            argv, what=what, file=file, limits=limits, cwd=cwd, stdin=stdin, env=env
        )
        span.set_attribute("process.exit.code", finished.returncode)
        return finished


def _run_tool(
    argv: Sequence[str],
    *,
    what: str,
    file: str,
    limits: Limits,
    cwd: Path,
    stdin: bytes = b"",
    env: dict[str, str] | None = None,
) -> Finished:
    limits.check_time(what, file)
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(cwd),
        "XDG_CONFIG_HOME": str(cwd / ".config"),
        "XDG_CACHE_HOME": str(cwd / ".cache"),
        "XDG_DATA_HOME": str(cwd / ".local"),
        "LANG": "C.UTF-8",
        **(env or {}),
    }
    process = subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=environment,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    out = bytearray()
    err = bytearray()
    too_much = threading.Event()

    def read_stdout() -> None:
        assert process.stdout is not None
        while chunk := process.stdout.read1(CHUNK):
            if len(out) + len(chunk) > limits.max_bytes:
                too_much.set()
                _kill(process)
                return
            out.extend(chunk)

    def read_stderr() -> None:
        assert process.stderr is not None
        while chunk := process.stderr.read1(CHUNK):
            err.extend(chunk)
            del err[:-STDERR_KEPT]

    def write_stdin() -> None:
        assert process.stdin is not None
        try:
            process.stdin.write(stdin)
            process.stdin.close()
        except (BrokenPipeError, OSError):
            pass  # the tool exited or was killed before reading it all

    threads = [
        threading.Thread(target=target, daemon=True)
        for target in (read_stdout, read_stderr, write_stdin)
    ]
    for thread in threads:
        thread.start()
    try:
        process.wait(timeout=max(limits.remaining(), 0.001))
    except subprocess.TimeoutExpired:
        _kill(process)
        process.wait()
        raise timed_out(limits, what, file) from None
    finally:
        # Whatever the tool left running in its group would hold the pipes open.
        _kill(process)
        for thread in threads:
            thread.join(timeout=5)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
    if too_much.is_set():
        raise RenderError(
            file,
            None,
            f"{what} printed more than the output cap of {limits.max_bytes} bytes "
            "(render_max_bytes): killed",
        )
    return Finished(
        returncode=process.returncode,
        stdout=bytes(out),
        stderr=err.decode("utf-8", errors="replace").strip(),
    )


def _kill(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
