"""benchmarks.gpu_check: its CPU dry run writes the JSON and markdown of a real run (every
section, every case), and the pieces that decide what a GPU run measures."""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks import gpu_check
from model.errors import UserError


@pytest.mark.slow
def test_the_dry_run_writes_every_section_of_the_report(tmp_path):
    assert gpu_check.main(["--dry-run", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "gpu-check.json").read_text())
    md = (tmp_path / "gpu-check.md").read_text()
    assert report["format"] == "jca-live-gpu-check" and report["dry_run"] is True
    assert report["machine"]["torch"] == torch.__version__
    s = report["sections"]
    assert list(s) == list(gpu_check.SECTIONS)
    assert not [name for name, sec in s.items() if "error" in sec]

    assert s["tests"]["exit"] in (0, 5) and "skipped" in s["tests"]["summary"]  # no GPU here
    cases = {(r["network"], r["precision"], r["batch"]) for r in s["extractors"]["rows"]}
    assert cases == {(n, p, b) for n in ("vgg19", "vggish") for p in gpu_check.PRECISIONS
                     for b in gpu_check.DRY.batches}
    assert all(r["frames_per_s"] > 0 for r in s["extractors"]["rows"] if "error" not in r)
    assert [(r["backend"], r["batch"]) for r in s["window"]["rows"]] == [("eager", 1),
                                                                        ("eager", 2)]
    lat = s["latency"]
    assert lat["segments"] == 2 and set(lat["close_to_label_ms"]) == {"p50", "p95", "p99", "max"}
    assert lat["close_to_label_ms"]["p50"] <= lat["close_to_label_ms"]["p99"]
    streams = s["streams"]
    assert streams["runs"] and streams["runs"][0]["streams"] == 1
    assert 0 <= streams["max_realtime"] <= gpu_check.DRY.max_streams

    assert md.startswith("### GPU check: ") and "DRY RUN" in md
    for name in gpu_check.SECTIONS:
        assert f"**{name}**" in md
    assert "| vgg19 | bf16 | 2 |" in md and "| eager | 1 |" in md
    assert "close -> label p50" in md and "real-time streams" in md


def search(capacity: int, limit: int = gpu_check.MAX_STREAMS) -> tuple[int, list[int]]:
    """The stream counts next_count tries when `capacity` streams keep up."""
    ok, bad, tried = 0, None, []
    while (n := gpu_check.next_count(ok, bad, limit)) is not None:
        tried.append(n)
        ok, bad = (n, bad) if n <= capacity else (ok, n)
    return ok, tried


def test_the_streams_search_doubles_then_bisects_and_stops_at_200():
    assert search(37) == (37, [1, 2, 4, 8, 16, 32, 64, 48, 40, 36, 38, 37])
    assert search(0) == (0, [1])
    assert search(500) == (200, [1, 2, 4, 8, 16, 32, 64, 128, 200])
    assert search(150)[0] == 150


@pytest.mark.parametrize("version,ok", [("2.11.0+cu128", True), ("2.13.0", True),
                                        ("2.12.0a0+git", True), ("2.10.1", False),
                                        ("3.0.0", True)])
def test_any_torch_from_2_11_is_accepted(version, ok):
    assert gpu_check.torch_ok(version) is ok


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the line a CPU machine gets")
def test_without_cuda_it_is_one_line_naming_the_dry_run(tmp_path):
    with pytest.raises(UserError, match=r"no CUDA device.*--dry-run") as e:
        gpu_check.main(["--out", str(tmp_path)])
    assert "\n" not in str(e.value) and not (tmp_path / "gpu-check.json").exists()
