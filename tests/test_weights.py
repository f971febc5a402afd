"""Weight download, resume, checksums, cache lookup and recipe identities, on a local server."""

import hashlib
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from model import weights
from model.errors import UserError
from model.extractors import build_extractors

ROOT = Path(__file__).resolve().parents[1]


class FileServer:
    """Serves {name: bytes} on 127.0.0.1, honouring `Range: bytes=N-` unless told not to."""

    def __init__(self, files: dict[str, bytes], ranges: bool = True) -> None:
        self.files, self.ranges, self.seen = files, ranges, []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.seen.append((self.path, self.headers.get("Range")))
                data = server.files.get(self.path.lstrip("/"))
                if data is None:
                    self.send_error(404)
                    return
                start, status = 0, 200
                rng = self.headers.get("Range")
                if rng and server.ranges:
                    start = int(rng.removeprefix("bytes=").rstrip("-"))
                    if start >= len(data):
                        self.send_error(416)
                        return
                    status = 206
                self.send_response(status)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                self.wfile.write(data[start:])

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "FileServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def entry(data: bytes, algo: str = "sha256", prefix: bool = True) -> weights.WeightFile:
    digest = hashlib.new(algo, data).hexdigest()
    return weights.WeightFile("test", "test-file.bin", "http://unused.invalid/test-file.bin",
                              algo, digest[:8] if prefix else digest, prefix, "test-identity",
                              "a test file")


DATA = bytes(range(256)) * 4000  # ~1 MB, crosses the download chunk size


def test_download_verifies_and_renames(tmp_path):
    w = entry(DATA, "md5", prefix=False)
    with FileServer({"f": DATA}) as srv:
        path = weights.download(w, tmp_path, f"{srv.url}/f", progress=False)
    assert path == tmp_path / "test-file.bin" and path.read_bytes() == DATA
    assert not (tmp_path / "test-file.bin.part").exists()


def test_download_resumes_a_partial_file_with_range(tmp_path):
    w = entry(DATA)
    (tmp_path / "test-file.bin.part").write_bytes(DATA[:300_000])
    with FileServer({"f": DATA}) as srv:
        path = weights.download(w, tmp_path, f"{srv.url}/f", progress=False)
    assert srv.seen == [("/f", "bytes=300000-")]
    assert path.read_bytes() == DATA


def test_server_without_range_support_restarts_cleanly(tmp_path):
    w = entry(DATA)
    (tmp_path / "test-file.bin.part").write_bytes(b"garbage" * 10)
    with FileServer({"f": DATA}, ranges=False) as srv:
        path = weights.download(w, tmp_path, f"{srv.url}/f", progress=False)
    assert path.read_bytes() == DATA


def test_complete_part_file_is_verified_after_416(tmp_path):
    w = entry(DATA)
    (tmp_path / "test-file.bin.part").write_bytes(DATA)
    with FileServer({"f": DATA}) as srv:
        path = weights.download(w, tmp_path, f"{srv.url}/f", progress=False)
    assert path.read_bytes() == DATA


def test_checksum_mismatch_removes_the_part_and_says_so(tmp_path):
    w = entry(b"the file the publisher hashed")
    with FileServer({"f": DATA}) as srv, pytest.raises(UserError, match="checksum mismatch"):
        weights.download(w, tmp_path, f"{srv.url}/f", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_cached_valid_file_is_not_downloaded_again(tmp_path):
    w = entry(DATA)
    (tmp_path / "test-file.bin").write_bytes(DATA)
    with FileServer({"f": DATA}) as srv:
        weights.download(w, tmp_path, f"{srv.url}/f", progress=False)
    assert srv.seen == []


def test_http_error_is_a_user_error(tmp_path):
    with FileServer({}) as srv, pytest.raises(UserError, match="HTTP 404"):
        weights.download(entry(DATA), tmp_path, f"{srv.url}/missing", progress=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_fetch_offline_cli_one_line_no_traceback(tmp_path):
    mirror = f"http://127.0.0.1:{free_port()}"
    proc = subprocess.run(
        [sys.executable, "-m", "model.weights", "fetch", "--weights-dir", str(tmp_path),
         "--mirror", mirror, "--timeout", "5"],
        cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    for name in weights.DEFAULT_FETCH:
        assert weights.REGISTRY[name].filename in lines[0]
    assert str(tmp_path) in lines[0]


def test_fetch_cli_rejects_a_wrong_file_from_a_mirror(tmp_path, capsys):
    vgg = weights.REGISTRY["vgg19-keras"]
    with FileServer({vgg.filename: b"not the keras weights"}) as srv, \
            pytest.raises(UserError, match="checksum mismatch"):
        weights.main(["fetch", "vgg19-keras", "--weights-dir", str(tmp_path),
                      "--mirror", srv.url])
    assert not (tmp_path / vgg.filename).exists()


def test_unknown_name_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="unknown weights"):
        weights.main(["fetch", "resnet", "--weights-dir", str(tmp_path)])


def test_weights_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv(weights.ENV_VAR, str(tmp_path / "env"))
    assert weights.weights_dir() == tmp_path / "env"
    assert weights.weights_dir(tmp_path / "flag") == tmp_path / "flag"
    monkeypatch.delenv(weights.ENV_VAR)
    assert weights.weights_dir() == Path.home() / ".cache" / "jca-live" / "weights"


def test_resolve_missing_names_fetch_command_and_folder(tmp_path):
    with pytest.raises(UserError) as e:
        weights.resolve("vggish", tmp_path)
    msg = str(e.value)
    assert "vggish-10086976.pth" in msg and "python -m model.weights fetch" in msg
    assert str(tmp_path) in msg and "\n" not in msg


def test_identity_of_unknown_and_of_impostor_files(tmp_path):
    data = b"some weights"
    p = tmp_path / "my.pth"
    p.write_bytes(data)
    assert weights.identity(p) == f"my.pth:sha256:{hashlib.sha256(data).hexdigest()[:12]}"
    impostor = tmp_path / weights.REGISTRY["vgg19-torchvision"].filename
    impostor.write_bytes(data)  # right name, wrong checksum -> not the registry identity
    assert weights.identity(impostor).startswith("vgg19-dcbb9e9d.pth:sha256:")


def test_identity_of_a_verified_registry_file(tmp_path, monkeypatch):
    data = b"pretend these are the keras weights"
    w = weights.REGISTRY["vgg19-keras"]
    fake = weights.WeightFile(w.name, w.filename, w.url, "md5",
                              hashlib.md5(data).hexdigest(), False, w.identity, w.what)
    monkeypatch.setitem(weights.REGISTRY, "vgg19-keras", fake)
    (tmp_path / w.filename).write_bytes(data)
    assert weights.identity(tmp_path / w.filename) == "vgg19-keras-imagenet"


def test_digest_cache_follows_file_changes(tmp_path):
    p = tmp_path / "w.bin"
    p.write_bytes(b"a")
    first = weights.file_digests(p)
    assert (tmp_path / "w.bin.digests.json").exists()
    p.write_bytes(b"bb")
    assert weights.file_digests(p)["sha256"] == hashlib.sha256(b"bb").hexdigest() != first["sha256"]


def test_extractors_refuse_to_run_without_weights(tmp_path):
    with pytest.raises(UserError) as e:
        build_extractors(weights_dir=tmp_path)
    msg = str(e.value)
    for name in ("vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5", "vggish-10086976.pth",
                 "python -m model.weights fetch", str(tmp_path), "--random-weights"):
        assert name in msg
    with pytest.raises(UserError, match=r"vgg19-dcbb9e9d\.pth"):
        build_extractors(weights_dir=tmp_path, visual_preprocess="torchvision")
    with pytest.raises(UserError, match="vggish_pca_params"):
        build_extractors(weights_dir=tmp_path, audio_postprocess="pca")
