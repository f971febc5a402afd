"""Broken media files (tests/media_fuzz.py's corpus, fixed seed) through replay and extraction:
never a signal death, never a traceback, never a hang, and the predictions made before a fault
are in the log. Every file runs through main.py's body and model.file_features in one child
process; a few run through the real CLIs too (main.py, python -m model.extract), which must
agree with it. The corpus size and the outcomes are printed at the end of the test run."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from media_fuzz import build_corpus

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 300  # a hang fails the test, it does not stall the suite
CLI_REPLAYS = ("mp4-flip-mid0", "no-packets-mp4")  # a fault with predictions, a refusal
CLI_EXTRACTS = ("good-mkv", "mp4-flip-mid0", "mkv-flip-header0", "no-packets")


def started(argv: list[str], **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *argv], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def finished(proc: subprocess.Popen, what: str, progress: Path | None = None
             ) -> tuple[str, str]:
    """stdout, stderr of a child that ended by itself, without a signal or a traceback;
    `progress`: a file whose last line says what the child was doing."""
    try:
        out, err = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"{doing(what, progress)} hung ({TIMEOUT_S} s)") from None
    assert proc.returncode >= 0, \
        f"{doing(what, progress)} died of signal {-proc.returncode}: {err[-1500:]}"
    assert "Traceback" not in err, f"{what}: {err[-3000:]}"
    return out, err


def doing(what: str, progress: Path | None) -> str:
    if progress is None or not progress.exists():
        return what
    return f"{what} (last: {progress.read_text().splitlines()[-1:]})"


def replay_cli(path: Path, log: Path) -> subprocess.Popen:
    return started(["main.py", "--replay", str(path), "--fast", "--headless", "--random-weights",
                    "--backend", "eager", "--device", "cpu", "--frames-per-segment", "1",
                    "--log", str(log), "--events", ""])


def extract_cli(files: list[Path], folder: Path) -> subprocess.Popen:
    videos = folder / "videos"
    videos.mkdir()
    rows = ["file,label,start,end"]
    for p in files:
        (videos / p.name).write_bytes(p.read_bytes())
        rows.append(f"{p.name},beep,0,1")
    (folder / "events.csv").write_text("\n".join(rows) + "\n")
    return started(["-m", "model.extract", "--videos", str(videos), "--annotations",
                    str(folder / "events.csv"), "--out", str(folder / "out"), "--random-weights",
                    "--frames-per-segment", "1", "--no-audio", "silence", "--no-progress"])


def outcomes(results: list[dict], what: str) -> str:
    counts = Counter(r[what]["outcome"] for r in results)
    return ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))


@pytest.mark.slow
def test_broken_files_never_crash_hang_or_lose_predictions(tmp_path, summary_lines):
    cases = build_corpus(tmp_path / "corpus")
    names = {p.name: name for name, p in cases.items()}
    report = tmp_path / "fuzz.jsonl"
    harness = started(["tests/media_fuzz.py", str(report), *map(str, cases.values())])
    logs = {name: tmp_path / f"cli-{name}.jsonl" for name in CLI_REPLAYS}
    replays = {name: replay_cli(cases[name], logs[name]) for name in CLI_REPLAYS}
    (tmp_path / "extract").mkdir()
    extraction = extract_cli([cases[n] for n in CLI_EXTRACTS], tmp_path / "extract")

    finished(harness, "the harness", progress=report)
    lines = [json.loads(x) for x in report.read_text().splitlines()]
    results = {names[r["file"]]: r for r in lines if "file" in r}
    assert len(results) == len(cases), f"the harness stopped in {lines[-1]}"
    bugs = {k: r[w]["traceback"] for k, r in results.items() for w in ("replay", "extract")
            if r[w]["outcome"] == "bug"}
    assert not bugs, bugs

    good = {k.removeprefix("good-"): r["replay"]["probs"] for k, r in results.items()
            if k.startswith("good-")}
    assert all(len(p) == 3 for p in good.values())  # 3-s clips
    for name, r in results.items():
        replay = r["replay"]
        if replay["outcome"] == "ok":  # every segment the run labelled is in its log
            assert replay["segments"] == len(replay["probs"]), name
        else:
            assert replay["message"] and "\n" not in replay["message"], name
        if "-cut" in name:  # a cut file: the segments before the cut as in the whole file
            kept = replay["probs"][:-1]
            np.testing.assert_allclose(kept, good[name.split("-")[0]][:len(kept)], atol=1e-6,
                                       err_msg=name)

    for name, proc in replays.items():  # main.py as a user runs it agrees with the harness
        out, err = finished(proc, f"main.py --replay {name}")
        expected = results[name]["replay"]
        assert proc.returncode == (0 if expected["outcome"] == "ok" else 2), (name, err)
        assert len(out.splitlines()) == len(expected["probs"]), name
        if expected["outcome"] != "ok":
            assert err.splitlines()[-1] == f"error: {expected['message']}", name
    finished(extraction, "python -m model.extract")
    assert extraction.returncode == 0
    failed = json.loads((tmp_path / "extract/out/extract_summary.json").read_text())["failed"]
    assert set(failed) == {cases[n].name for n in CLI_EXTRACTS
                           if results[n]["extract"]["outcome"] != "ok"}

    rs = list(results.values())
    summary_lines.append(
        f"media fuzz: {len(cases)} files ({len(good)} good, {len(cases) - len(good)} broken or "
        f"odd), seed fixed; replay: {outcomes(rs, 'replay')}; extraction: "
        f"{outcomes(rs, 'extract')}; main.py on {len(CLI_REPLAYS)} and model.extract on "
        f"{len(CLI_EXTRACTS)} agree; no signal death, traceback or hang")
