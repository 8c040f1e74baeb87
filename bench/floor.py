"""The CPU that the bytes of one image cost, before any gateway logic: the floor under
scenario B's CPU per image.

    .venv/bin/python bench/floor.py [--count 300]

A generation answered with ``b64_json`` moves the upstream's answer (the bench image as
base64 in JSON, 2.3 MB) through these steps, whatever the code around them; each is
timed here on its own, in this process, with the gateway's own functions where it has
them:

- receive: the answer read from a loopback TCP socket, into chunks joined into one
  buffer (what an HTTP client does; the sender is another process);
- copy: the one further copy of the answer that an HTTP client's parser makes;
- decode: the base64 decoded (``decode_b64_checked``);
- store: the image written as the local blob store writes it (temp file, SHA-256,
  ``fdatasync``, page cache dropped, rename, directory flush: ``LocalBlobStore._write``);
- send: the base64 answer written to a loopback TCP socket (the reader is another
  process).

CPU is this process's user plus system time (``getrusage``), the lower quartile of the
second half of the runs, per image. Nothing here touches a database or parses HTTP.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import resource
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from units import lower_quartile
from upstream import noise_png

from imagegate.blobs.local import LocalBlobStore
from imagegate.providers.http import decode_b64_checked

# The peer processes: one sends the answer ``count`` times, one reads and drops what it gets.
_SENDER = """
import socket, sys
body = sys.stdin.buffer.read()
count = int(sys.argv[1])
with socket.create_connection(("127.0.0.1", int(sys.argv[2]))) as sock:
    for _ in range(count):
        sock.sendall(body)
"""
_SINK = """
import socket, sys
with socket.create_connection(("127.0.0.1", int(sys.argv[-1]))) as sock:
    buffer = bytearray(1 << 20)
    while sock.recv_into(buffer):
        pass
"""


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(step: Callable[[], object], count: int) -> float:
    """ms of CPU per run of ``step``, as bench/units.py reports it: the lower quartile of
    the second half (the first half warms the caches)."""
    samples = []
    for _ in range(count):
        before = cpu()
        step()
        samples.append(cpu() - before)
    return lower_quartile(samples[count // 2 :]) * 1000


def peer(code: str, *args: str, stdin: bytes | None = None) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([sys.executable, "-c", code, *args], stdin=subprocess.PIPE)
    assert process.stdin is not None
    if stdin is not None:
        process.stdin.write(stdin)
    process.stdin.close()
    return process


@contextlib.contextmanager
def connected(code: str, *args: str, stdin: bytes | None = None) -> Iterator[socket.socket]:
    """A loopback TCP connection to a peer process running ``code`` (its last argument is
    the port to connect to)."""
    server = socket.create_server(("127.0.0.1", 0))
    process = peer(code, *args, str(server.getsockname()[1]), stdin=stdin)
    connection, _ = server.accept()
    try:
        yield connection
    finally:
        connection.close()
        server.close()
        process.wait()


def receive(connection: socket.socket, size: int) -> None:
    """One answer of ``size`` bytes read in 64 KB reads and joined, as a client reading a
    body chunk by chunk does."""
    chunks, received = [], 0
    while received < size:
        chunk = connection.recv(min(1 << 16, size - received))
        if not chunk:
            raise SystemExit("the sender stopped early")
        chunks.append(chunk)
        received += len(chunk)
    b"".join(chunks)


@dataclass
class Floor:
    steps: dict[str, float]  # ms of CPU per image, in the order of the module's list
    answer_bytes: int
    image_bytes: int
    count: int

    @property
    def total(self) -> float:
        return sum(self.steps.values())


def measure(count: int = 300) -> Floor:
    png = noise_png()
    text = base64.b64encode(png)
    answer = json.dumps({"created": 0, "data": [{"b64_json": text.decode()}]}).encode()
    view = memoryview(answer)[answer.index(text[:64]) :][: len(text)]
    steps: dict[str, float] = {}
    with connected(_SENDER, str(count), stdin=answer) as connection:
        steps["receive"] = timed(lambda: receive(connection, len(answer)), count)
    steps["copy"] = timed(lambda: bytearray(answer), count)
    steps["decode"] = timed(lambda: decode_b64_checked(view), count)
    with tempfile.TemporaryDirectory(dir=Path(__file__).parent) as root:
        store = LocalBlobStore(Path(root))
        keys = iter(range(10**9))
        steps["store"] = timed(lambda: store._write(f"w/outputs/{next(keys)}.png", png), count)
    with connected(_SINK) as connection:  # another process drains it
        steps["send"] = timed(lambda: connection.sendall(answer), count)
    return Floor(steps, len(answer), len(png), count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=300)
    args = parser.parse_args()
    floor = measure(args.count)
    print(
        f"answer {floor.answer_bytes:,} bytes, image {floor.image_bytes:,} bytes, "
        f"{floor.count} runs per step"
    )
    for name, ms in floor.steps.items():
        print(f"{name:8} {ms:6.2f} ms CPU per image")
    print(f"{'total':8} {floor.total:6.2f} ms CPU per image")


if __name__ == "__main__":
    main()
