"""A real S3-protocol server for tests: moto in server mode as a subprocess on loopback, plus a TCP proxy
in front of it that can drop every connection for a while (a restarting or unreachable server) or hold them
unanswered (a black hole: the client waits for its own timeouts)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
import types
import urllib.request


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MotoServer:
    """moto on loopback. With `recording` (a file path), moto logs every request there, and `restart()`
    replays the log into the new process: moto keeps objects in memory only, the log stands in for a disk."""

    def __init__(self, recording: str | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.recording = recording
        self._start()

    def _start(self) -> None:
        env = dict(os.environ)
        if self.recording:
            env.update(MOTO_ENABLE_RECORDING="true", MOTO_RECORDER_FILEPATH=self.recording)
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(self.url, timeout=1)
                break
            except Exception:
                if time.time() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError("moto server did not start")
                time.sleep(0.2)

    def restart(self) -> None:
        """SIGKILL the server, start a new process on the same port and restore its state from the log."""
        self.proc.kill()
        self.proc.wait()
        self._start()
        if self.recording:
            urllib.request.urlopen(urllib.request.Request(f"{self.url}/moto-api/recorder/replay-recording",
                                                          method="POST"), timeout=300).read()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class FlakyProxy:
    """Forwards 127.0.0.1:port -> target port; while `down`, accepted connections are closed at once (or,
    with `hang`, held open and never answered). `blocked_at` is when the current outage first blocked one."""

    def __init__(self, target_port: int):
        self.target = target_port
        self.down = False
        self.hang = False
        self.held: list[socket.socket] = []
        self.blocked_at: float | None = None
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.refused = 0
        self.live: set[socket.socket] = set()
        self._stop = False
        self._lock = threading.Lock()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            if self.down:
                self.refused += 1
                if self.blocked_at is None:
                    self.blocked_at = time.monotonic()
                if self.hang:
                    self.held.append(client)  # accepted, never read from or answered
                    continue
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                client.close()  # RST: the connection is reset, as by a server going away
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()
                continue
            with self._lock:
                self.live.update((client, upstream))
            pair = {"open": 2}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b, pair), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, pair: dict) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            with self._lock:
                pair["open"] -= 1
                last = pair["open"] == 0
                if last:  # both directions are done: release the descriptors (a long test proxies thousands)
                    self.live.difference_update((src, dst))
            if last:
                src.close()
                dst.close()

    def outage(self, seconds: float | None = None, hang: bool = False) -> None:
        """Drop every connection (or with `hang`, hold new ones unanswered) for `seconds` (in a background
        thread), or until `restore()` when None."""
        self.hang, self.blocked_at = hang, None
        self.down = True
        with self._lock:
            live, self.live = list(self.live), set()
        for s in live:  # open keep-alive connections break too, as in a restart
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if seconds is not None:
            timer = threading.Timer(seconds, self.restore)
            timer.daemon = True
            timer.start()

    def restore(self) -> None:
        self.down = False
        for s in self.held:
            s.close()
        self.held.clear()

    def close(self) -> None:
        self._stop = True
        self.sock.close()


@contextlib.contextmanager
def s3_stack(secret: str = "testing-secret", recording: str | None = None):
    """A moto server behind a FlakyProxy, with the environment, boto3 client and s3fs filesystem that reach
    it through the proxy: namespace(server, proxy, env, client, fs)."""
    import boto3
    import s3fs

    server = MotoServer(recording)
    proxy = FlakyProxy(server.port)
    try:
        yield types.SimpleNamespace(
            server=server, proxy=proxy, env=s3_env(proxy.url, secret),
            client=boto3.client("s3", endpoint_url=proxy.url, aws_access_key_id="testing",
                                aws_secret_access_key=secret, region_name="us-east-1"),
            fs=s3fs.S3FileSystem(endpoint_url=proxy.url, key="testing", secret=secret, skip_instance_cache=True))
    finally:
        proxy.close()
        server.stop()


def s3_env(endpoint: str, secret: str = "testing-secret") -> dict:
    """Environment for a process that talks to the test server only (no instance-metadata lookups)."""
    env = dict(os.environ)
    env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY=secret, AWS_DEFAULT_REGION="us-east-1",
               AWS_EC2_METADATA_DISABLED="true", AWS_ENDPOINT_URL=endpoint,
               AWS_SHARED_CREDENTIALS_FILE="/nonexistent", AWS_CONFIG_FILE="/nonexistent")
    return env
