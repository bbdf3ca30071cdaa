"""`autotts envs fetch` against a real HTTP server on 127.0.0.1 serving ../shared's stores."""

import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autotts.cli import app
from autotts.envs.fetch import fetch_environments, load_manifest, sha256_of


class MirrorHandler(SimpleHTTPRequestHandler):
    """Serves files with Range support; can corrupt one file or drop a connection once."""

    corrupt: set = set()
    drop_once: set = set()
    ranges: list = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        path = self.translate_path(self.path)
        name = self.path.lstrip("/")
        try:
            data = Path(path).read_bytes()
        except OSError:
            self.send_error(404)
            return
        if name in self.corrupt:
            data = data[:100] + b"X" + data[101:]
        start = 0
        if "Range" in self.headers:
            start = int(self.headers["Range"].split("=")[1].rstrip("-"))
            self.ranges.append((name, start))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if name in self.drop_once:
            self.drop_once.discard(name)
            self.wfile.write(body[: len(body) // 3])
            self.wfile.flush()
            self.connection.shutdown(2)  # the connection drops mid-transfer
            return
        self.wfile.write(body)


@pytest.fixture
def mirror(env_dir):
    MirrorHandler.corrupt, MirrorHandler.drop_once, MirrorHandler.ranges = set(), set(), []
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(MirrorHandler, directory=str(env_dir)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_fetch_all_verifies_and_skips_present(mirror, tmp_path):
    outcomes = fetch_environments(tmp_path, mirror)
    assert [o.status for o in outcomes] == ["downloaded"] * 8
    for name, digest in load_manifest()["files"].items():
        assert sha256_of(tmp_path / name) == digest
    again = fetch_environments(tmp_path, mirror, only=["Qwen3-8B/aime24"])
    assert [(o.name, o.status) for o in again] == [("Qwen3-8B/aime24.json", "present")]


def test_corrupted_file_is_rejected_and_others_still_land(mirror, tmp_path):
    MirrorHandler.corrupt = {"Qwen3-4B/aime25.json"}
    outcomes = {
        o.name: o.status
        for o in fetch_environments(tmp_path, mirror, only=["Qwen3-4B/aime25", "Qwen3-4B/aime24"])
    }
    assert outcomes["Qwen3-4B/aime24.json"] == "downloaded"
    assert "checksum mismatch" in outcomes["Qwen3-4B/aime25.json"]
    assert not (tmp_path / "Qwen3-4B" / "aime25.json").exists()
    assert not (tmp_path / "Qwen3-4B" / "aime25.json.part").exists()


def test_dropped_connection_resumes_with_range(mirror, tmp_path):
    MirrorHandler.drop_once = {"Qwen3-1.7B/aime24.json"}
    outcomes = fetch_environments(tmp_path, mirror, only=["Qwen3-1.7B/aime24"])
    assert outcomes[0].status == "downloaded"
    assert MirrorHandler.ranges and MirrorHandler.ranges[0][0] == "Qwen3-1.7B/aime24.json"
    assert MirrorHandler.ranges[0][1] > 0


def test_cli_fetch_and_unknown_id(mirror, tmp_path):
    runner = CliRunner()
    ok = runner.invoke(
        app,
        [
            "envs",
            "fetch",
            "--dest",
            str(tmp_path),
            "--base-url",
            mirror,
            "--only",
            "Qwen3-0.6B/aime25",
        ],
    )
    assert ok.exit_code == 0 and "downloaded Qwen3-0.6B/aime25.json" in ok.output
    listed = runner.invoke(app, ["envs", "--env-dir", str(tmp_path)], env={"COLUMNS": "200"})
    assert listed.exit_code == 0 and "Qwen3-0.6B/aime25" in listed.output
    bad = runner.invoke(
        app,
        ["envs", "fetch", "--dest", str(tmp_path), "--base-url", mirror, "--only", "Qwen3-9B/x"],
    )
    assert bad.exit_code == 2 and "not in the manifest" in bad.output


def test_failed_downloads_back_off_and_name_the_id(tmp_path):
    import socket
    import time

    from autotts.envs.fetch import FetchError, fetch_file

    with socket.socket() as probe:  # a port on 127.0.0.1 that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(
        FetchError, match=r"^Qwen3-8B/aime24: download from .* failed after 3 tries"
    ):
        fetch_file(
            "Qwen3-8B/aime24.json", "0" * 64, f"http://127.0.0.1:{port}", tmp_path,
            retries=2, timeout=2, backoff_s=0.2,
        )  # fmt: skip
    assert time.monotonic() - start >= 0.2 + 0.4  # waited, and longer the second time
