"""A full disk and cut files: every output writes whole lines, an output that cannot be written
stops alone (one line naming it and the cause, exit 2, the others go on), and every reader of
the project's JSONL files takes the whole records of a cut or damaged file and counts the rest.

The disk fills for real where it can: stdout on /dev/full, and a 24 KiB tmpfs mounted for the
test (skipped where mounting is not permitted); the same behaviour is also checked everywhere
with a file descriptor that refuses the write with ENOSPC part way through a line."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from stream_fakes import fake_runtime

import streamer.sinks as sinks
from model.errors import UserError
from streamer.multi import run_many
from streamer.options import AppOptions
from streamer.overlay import OverlayOptions, OverlayWriter
from streamer.plot import main as plot_main
from streamer.records import log_line, read_jsonl, read_log, read_predictions
from streamer.runtime import assemble
from streamer.sinks import EventLog, JsonlLog, LineFile, OutputFault, output_faults
from streamer.synthetic import Script, synthetic_source, write_media

ROOT = Path(__file__).resolve().parents[1]
FULL = os.strerror(errno.ENOSPC)  # "No space left on device"
PAGE = 4096  # tmpfs counts whole pages
RUN_S = 300  # main.py on a short clip, on a loaded 2-core machine


class DiskOf:
    """`os` for streamer.sinks where the file at `path`, once opened, is on a disk with `room`
    bytes left: a write past it writes what fits (a short write, as the kernel does) and the
    next one fails with ENOSPC; every other file writes as ever."""

    def __init__(self, path: Path, room: int) -> None:
        self.path, self.room = path, room
        self.fd: int | None = None

    def __getattr__(self, name: str):
        return getattr(os, name)

    def open(self, path, *args) -> int:
        fd = os.open(path, *args)
        if Path(path) == self.path:
            self.fd = fd
        return fd

    def write(self, fd: int, data) -> int:
        if fd != self.fd:
            return os.write(fd, data)
        if self.room <= 0:
            raise OSError(errno.ENOSPC, FULL)
        n = os.write(fd, bytes(data[:self.room]))
        self.room -= n
        return n


def lines_of(path: Path) -> list[dict]:
    """Every line of a file as JSON: fails on a half line."""
    text = path.read_text()
    assert text == "" or text.endswith("\n"), f"{path} ends in half a line"
    return [json.loads(x) for x in text.splitlines()]


def record(i: int) -> dict:
    return {"segment": i, "start": float(i), "end": float(i + 1), "label": "beep",
            "class_id": 0, "confidence": 0.9, "probs": [0.9, 0.05, 0.05]}


# ---- the line writer ---------------------------------------------------------------------------

def test_a_full_disk_cuts_the_file_back_to_its_last_whole_line(tmp_path, monkeypatch):
    lines = [log_line(record(i)) for i in range(5)]
    room = len(lines[0]) + len(lines[1]) + 2 + len(lines[2]) // 2  # two lines and a half
    monkeypatch.setattr(sinks, "os", DiskOf(tmp_path / "log.jsonl", room))
    f = LineFile(tmp_path / "log.jsonl", "pass another --log")
    assert [f.write(x) for x in lines] == [True, True, False, False, False]
    f.close()
    assert [r["segment"] for r in lines_of(tmp_path / "log.jsonl")] == [0, 1]
    assert f.lines == 2
    assert str(f.fault) == (f"cannot write {tmp_path / 'log.jsonl'} ({FULL}): it holds the 2 "
                            "whole lines written before, nothing after; free space on its disk "
                            "or pass another --log")


def test_a_dead_log_stops_alone_and_the_stream_goes_on(tmp_path, monkeypatch):
    """The log's disk fills after about two records: the log keeps those whole, the events file
    and the other sinks get every segment, the run ends without an error of its own."""
    got: list[dict] = []
    spy = SimpleNamespace(on_segment=got.append, close=lambda: None)
    monkeypatch.setattr(sinks, "os", DiskOf(tmp_path / "log.jsonl", 2500))
    log = JsonlLog(tmp_path / "log.jsonl")
    events = EventLog(tmp_path / "events.jsonl", min_event=0.0)
    pipe = assemble(fake_runtime(1), synthetic_source(Script.demo(6.0, size=(48, 64))),
                    [log, events, spy])
    summary = pipe.run()
    assert summary.error is None and summary.segments == 6 == len(got)
    kept = lines_of(tmp_path / "log.jsonl")
    assert 0 < len(kept) < 6 and kept == [json.loads(log_line(r)) for r in got[:len(kept)]]
    intervals = lines_of(tmp_path / "events.jsonl")
    assert intervals and intervals[-1]["end"] == got[-1]["end"]  # written to the end
    (fault,) = output_faults([log, events, spy])
    assert str(fault).startswith(f"cannot write {tmp_path / 'log.jsonl'} ({FULL}): it holds "
                                 f"the {len(kept)} whole lines")


def test_several_streams_share_a_dead_log_and_end_with_its_line(tmp_path, monkeypatch, capsys):
    """Two streams, one log: it fills after about two records; both streams run to their end,
    the events file and stdout get everything, then the one line (exit 2 from main.py)."""
    clip = write_media(tmp_path / "a.mkv", Script.demo(3.0, size=(48, 64)), fps=10,
                       audio_rate=16000)
    log, events = tmp_path / "log.jsonl", tmp_path / "events.jsonl"
    monkeypatch.setattr(sinks, "os", DiskOf(log, 2500))
    opts = AppOptions(source="replay", sources=(("replay", str(clip)), ("replay", str(clip))),
                      fast=True, log=str(log), events=str(events), headless=True, min_event=0,
                      min_gap=0)
    with pytest.raises(OutputFault, match=f"cannot write {log} \\({FULL}\\): it holds the"):
        run_many(opts, runtime=fake_runtime(1))
    shown = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    kept = lines_of(log)
    assert len(shown) == 6 and 0 < len(kept) < 6 and kept == shown[:len(kept)]
    assert {iv["stream"] for iv in lines_of(events)} == {0, 1}


def test_stdout_that_cannot_be_written_leaves_a_fault_and_the_run_goes_on():
    from streamer.console import JsonSink, PlainSink

    full = open("/dev/full", "w")  # noqa: SIM115 (closed below, where it fails once more)
    gone: list[int] = []
    plain = PlainSink({"source": "x"}, full, ("beep", "background"),
                      on_reader_gone=lambda: gone.append(1))
    json_sink = JsonSink(full)
    for i in range(3):
        plain.on_segment(record(i))
        json_sink.on_segment(record(i))
    assert gone == []  # not a closed pipe: the run is not stopped
    for sink in (plain, json_sink):
        assert str(sink.fault).startswith(f"cannot write /dev/full ({FULL})")
    with pytest.raises(OSError):  # what its buffer still holds (stdout goes to /dev/null)
        full.close()


# ---- the overlay -------------------------------------------------------------------------------

def overlay_frames(writer: OverlayWriter, seconds: float, fps: int = 10) -> None:
    rng = np.random.default_rng(0)  # noise: nothing compresses it away
    for i in range(int(seconds * fps)):
        writer.add_frame(i / fps, rng.integers(0, 256, (64, 80, 3), dtype=np.uint8))
        writer.add_audio(i / fps, rng.standard_normal(1600).astype(np.float32) * 0.1)
        if i % fps == fps - 1:
            writer.on_segment({**record(i // fps), "start": float(i // fps),
                               "end": float(i // fps + 1)})


class FullAfter:
    """A PyAV output container whose disk fills after `packets` packets."""

    def __init__(self, container, packets: int) -> None:
        self.container, self.packets = container, packets

    def __getattr__(self, name: str):
        return getattr(self.container, name)

    def mux(self, packet) -> None:
        self.packets -= 1
        if self.packets < 0:
            raise OSError(errno.ENOSPC, FULL)
        self.container.mux(packet)


@pytest.mark.parametrize("threaded", [True, False])
def test_an_overlay_that_cannot_be_written_is_one_fault_and_no_file(tmp_path, threaded):
    writer = OverlayWriter(tmp_path / "o.mp4", fps=10, sample_rate=16000,
                           options=OverlayOptions(threaded=threaded))
    writer._enc.container = FullAfter(writer._enc.container, 3)
    overlay_frames(writer, 3.0)
    writer.close()  # no exception: the stream's other outputs are not stopped by it
    assert str(writer.fault) == (f"cannot write the overlay {tmp_path / 'o.mp4'} ({FULL}): "
                                 "removed the unfinished video; free space on its disk or "
                                 "give another --overlay")
    assert not (tmp_path / "o.mp4").exists()


# ---- a real small disk -------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """A 24 KiB tmpfs at tmp_path/disk (root only; skipped where mounting is not permitted)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    try:
        p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24k", "tmpfs", str(mnt)],
                           capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        pytest.skip(f"cannot mount a tmpfs here: {e}")
    if p.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {p.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=30)


def fill(disk: Path, pages: int) -> None:
    """Leave `pages` pages free on the small disk."""
    (disk / "filler").write_bytes(b"\0" * (24 * 1024 - pages * PAGE))


def test_the_line_file_on_a_really_full_disk(small_disk):
    fill(small_disk, 1)
    f = LineFile(small_disk / "log.jsonl")
    written = 0
    while f.write(log_line(record(written))):
        written += 1
    f.close()
    assert written > 0 and FULL in str(f.fault)
    assert [r["segment"] for r in lines_of(small_disk / "log.jsonl")] == list(range(written))


def test_the_overlay_on_a_really_full_disk(small_disk):
    writer = OverlayWriter(small_disk / "o.mp4", fps=10, sample_rate=16000)
    overlay_frames(writer, 3.0)
    writer.close()
    assert FULL in str(writer.fault) and not (small_disk / "o.mp4").exists()


def test_the_timeline_on_a_full_disk_is_one_line_and_no_half_picture(small_disk, tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text("".join(log_line(record(i)) + "\n" for i in range(30)))
    fill(small_disk, 1)
    with pytest.raises(UserError, match=f"cannot write {small_disk / 't.png'} \\({FULL}\\)"):
        plot_main([str(log), "--out", str(small_disk / "t.png")])
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]


# ---- main.py on a full disk --------------------------------------------------------------------

@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_media(tmp_path_factory.mktemp("clip") / "clip.mkv",
                       Script.demo(8.0, size=(48, 64)), fps=10, audio_rate=16000)


def run_main(clip: Path, tmp_path: Path, log: Path, events: Path,
             stdout) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "main.py", "--replay", str(clip), "--random-weights", "--fast",
         "--headless", "--device", "cpu", "--backend", "eager", "--frames-per-segment", "1",
         "--extractor-path", "fp32", "--log", str(log), "--events", str(events)],
        cwd=ROOT, stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=RUN_S,
        env={**os.environ, "JCA_LIVE_CACHE": str(tmp_path / "cache"),
             "MPLCONFIGDIR": str(tmp_path / "mpl")})


def errors(stderr: str) -> list[str]:
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr
    return [x for x in stderr.splitlines() if x.startswith("error:")]


def plot_says(log: Path, tmp_path: Path, capsys) -> str:
    assert plot_main([str(log), "--out", str(tmp_path / "t.png")]) == 0
    assert (tmp_path / "t.png").stat().st_size > 0
    return capsys.readouterr().out


@pytest.mark.slow
def test_main_with_its_log_on_a_full_disk(clip, small_disk, tmp_path, capsys):
    """The log and the events file on a disk with three pages free: one line naming what
    could not be written, exit 2, whole lines in both files, stdout got every segment, and the
    log plots."""
    fill(small_disk, 2)
    log, events = small_disk / "log.jsonl", small_disk / "events.jsonl"
    p = run_main(clip, tmp_path, log, events, subprocess.PIPE)
    (line,) = errors(p.stderr)
    assert p.returncode == 2, p.stderr
    assert line == p.stderr.splitlines()[-1]
    assert line.startswith(f"error: cannot write {log} ({FULL}): it holds the "), line
    shown = [json.loads(x) for x in p.stdout.splitlines()]
    kept = lines_of(log)
    assert len(shown) == 8 and 0 < len(kept) < 8 and kept == shown[:len(kept)]
    for interval in lines_of(events):
        assert {"label", "start", "end", "confidence"} <= interval.keys()
    assert f"({len(kept)} segments, 0 lines skipped)" in plot_says(log, tmp_path, capsys)


@pytest.mark.slow
def test_main_with_stdout_on_dev_full(clip, tmp_path, capsys):
    """stdout cannot take a byte: one line naming stdout, exit 2; the log and the events file
    are written to the end."""
    log, events = tmp_path / "log.jsonl", tmp_path / "events.jsonl"
    with open("/dev/full", "w") as full:
        p = run_main(clip, tmp_path, log, events, full)
    (line,) = errors(p.stderr)
    assert p.returncode == 2, p.stderr
    assert line.startswith(f"error: cannot write stdout ({FULL})"), line
    assert [r["segment"] for r in lines_of(log)] == list(range(8))
    assert lines_of(events)[-1]["end"] == 8.0
    assert "(8 segments, 0 lines skipped)" in plot_says(log, tmp_path, capsys)


# ---- readers -----------------------------------------------------------------------------------

def test_a_log_cut_mid_line_or_with_binary_bytes_gives_its_whole_records(tmp_path, capsys):
    whole = "".join(log_line(record(i)) + "\n" for i in range(4))
    cut = tmp_path / "cut.jsonl"
    cut.write_text(whole + log_line(record(4))[:40])  # what a crash leaves
    got = read_predictions(cut)
    assert [r["segment"] for r in got.records] == [0, 1, 2, 3] and got.skipped == 1
    assert "(4 segments, 1 line skipped (not a whole record))" in plot_says(cut, tmp_path, capsys)

    damaged = tmp_path / "damaged.jsonl"
    damaged.write_bytes(whole.encode() + b"\xff\xfe\x00garbage\n" + b'{"segment": NaN}\n'
                        + b'{"label": "beep"}\n' + b"[1, 2]\n" + log_line(record(4)).encode())
    got = read_predictions(damaged)
    assert [r["segment"] for r in got.records] == [0, 1, 2, 3, 4] and got.skipped == 4
    assert read_log(damaged) == got.records


def test_a_file_that_is_not_a_log_is_one_line(tmp_path):
    binary = tmp_path / "clip.mkv"
    binary.write_bytes(bytes(range(256)) * 40)
    with pytest.raises(UserError, match=r"clip\.mkv is not a prediction log: none of its \d+ "
                                        "lines is a record with segment, label, class_id"):
        read_log(binary)
    events = tmp_path / "events.jsonl"  # JSON, but not what a log holds
    events.write_text('{"label": "beep", "start": 0, "end": 3, "confidence": 0.9}\n')
    with pytest.raises(UserError, match="is not a prediction log"):
        plot_main([str(events), "--out", str(tmp_path / "t.png")])
    got = read_jsonl(events, "event file", ("label", "start", "end"), "give --events' file")
    assert got.records[0]["end"] == 3 and got.skipped == 0
    with pytest.raises(UserError, match="not found"):
        read_log(tmp_path / "none.jsonl")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(UserError, match="no predictions"):
        read_log(empty)


# ---- every command -----------------------------------------------------------------------------

def test_a_command_whose_output_fills_the_disk_is_one_line_and_exit_2(tmp_path, capsys):
    from model.errors import run_cli

    def writes() -> int:
        raise OSError(errno.ENOSPC, FULL, str(tmp_path / "x.h5"))

    with pytest.raises(SystemExit) as end:
        run_cli(writes)
    assert end.value.code == 2
    assert capsys.readouterr().err == (f"error: cannot write {tmp_path / 'x.h5'} ({FULL}); "
                                       "free space on its disk or write elsewhere\n")

    def bug() -> int:  # any other OSError is the code's, and keeps its traceback
        raise FileNotFoundError(errno.ENOENT, "gone", "y")

    with pytest.raises(FileNotFoundError):
        run_cli(bug)


def test_the_plot_with_stdout_on_dev_full(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text("".join(log_line(record(i)) + "\n" for i in range(5)))
    with open("/dev/full", "w") as full:
        p = subprocess.run([sys.executable, "-m", "streamer.plot", str(log), "--out",
                            str(tmp_path / "t.png")], cwd=ROOT, stdout=full,
                           stderr=subprocess.PIPE, text=True, timeout=RUN_S,
                           env={**os.environ, "MPLCONFIGDIR": str(tmp_path / "mpl")})
    assert p.returncode == 2 and (tmp_path / "t.png").stat().st_size > 0
    assert p.stderr == f"error: cannot write stdout ({FULL}); free space on its disk or write " \
                       "elsewhere\n"


# ---- cache and list files ----------------------------------------------------------------------

DAMAGED = [b"", b"\xff\xfe\x00\x01binary", b'{"format": "jca-live', b"[1, 2]",
           b'{"format": "x", "machines": [1]}']


def test_a_damaged_extractor_choice_cache_is_measured_again(tmp_path):
    from model.extractors.paths import CACHE_FILE, CACHE_FORMAT, CACHE_VERSION, ChoiceCache

    good = {"format": CACHE_FORMAT, "version": CACHE_VERSION}
    for raw in [*DAMAGED, json.dumps({**good, "machines": {"m": [1]}}).encode(),
                json.dumps({**good, "machines": [1]}).encode()]:
        (tmp_path / CACHE_FILE).write_bytes(raw)
        cache = ChoiceCache(tmp_path, "m")
        assert cache.load("slot") is None  # nothing trusted, nothing raised
        cache.store("slot", {"path": "fp32"})
        assert ChoiceCache(tmp_path, "m").load("slot") == {"path": "fp32"}


def test_feature_cache_files_that_are_not_whole_are_one_line_or_extracted_again(tmp_path):
    from model.feature_cache import SETTINGS, FeatureCache
    from model.file_features import FileFeatures
    from model.recipe import FeatureRecipe

    recipe, policy = FeatureRecipe.ave(frames_per_segment=1), {"pad": "repeat"}
    cache = FeatureCache(tmp_path, recipe, policy)
    ff = FileFeatures(audio=np.zeros((1, 10, 128), np.float32),
                      visual=np.zeros((1, 10, 7, 7, 512), np.float32),
                      starts=np.zeros(1), duration=10.0, notes=[])
    cache.save("a.mp4", ff)
    assert cache.has("a.mp4")
    whole = cache.path("a.mp4").read_bytes()
    cache.path("a.mp4").write_bytes(whole[:len(whole) // 2])  # what a crash mid-copy leaves
    assert not cache.has("a.mp4") and not cache.has("never.mp4")
    for raw in [b"\xff\xfe\x00binary", b'{"recipe": ', b"[]", b'{"recipe": 1, "policy": {}}']:
        (tmp_path / SETTINGS).write_bytes(raw)
        with pytest.raises(UserError, match=f"{SETTINGS} is not a feature cache's settings "
                                            f"file .*: delete {tmp_path} to start over"):
            FeatureCache(tmp_path, recipe, policy)


def test_category_files_that_are_not_text_are_one_line(tmp_path):
    from model.annotations import read_categories

    bad = tmp_path / "categories.txt"
    bad.write_bytes(b"\xff\xfe\x00\x01bell\n")
    with pytest.raises(UserError, match="is not a text file"):
        read_categories(bad)


def test_a_line_file_appended_to_keeps_whole_lines_and_cuts_a_half_one(tmp_path):
    path = tmp_path / "train_log.jsonl"
    path.write_text('{"epoch": 1}\n{"epo')  # a crash mid-line
    f = LineFile(path, append=True)
    assert f.write('{"epoch": 2}')
    f.close()
    assert lines_of(path) == [{"epoch": 1}, {"epoch": 2}]


def test_the_demo_training_log_on_a_full_disk_is_one_line(tmp_path, monkeypatch):
    """The demo's per-epoch lines: kept whole until the disk fills, then its one line."""
    import io

    from rich.console import Console

    from streamer.demo import run_training

    log = tmp_path / "train_log.jsonl"
    epochs = [json.dumps({"epoch": i, "train_loss": 1.0 / i}) for i in range(1, 6)]
    cmd = [sys.executable, "-c", f"print({chr(10).join(epochs)!r})"]
    monkeypatch.setattr(sinks, "os", DiskOf(log, len(epochs[0]) + len(epochs[1]) + 5))
    with pytest.raises(OutputFault, match=f"cannot write {log} \\({FULL}\\): it holds the 2 "):
        run_training(cmd, log, 5, Console(file=io.StringIO()))
    assert [r["epoch"] for r in lines_of(log)] == [1, 2]


def test_an_annotation_csv_cut_mid_row_is_one_line_naming_the_row(tmp_path):
    from model.annotations import read_annotations

    cut = tmp_path / "events.csv"
    cut.write_text("file,label,start,end\nkettle_01.mp4,kettle,3.0,9.5\ndoor_02.mp4,kn")
    with pytest.raises(UserError, match=r"events\.csv:3: the row has fewer fields than the "
                                        "header"):
        read_annotations(cut)
    binary = tmp_path / "clip.csv"
    binary.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(UserError, match="missing column"):
        read_annotations(binary)


def test_feature_files_and_checkpoints_on_a_full_disk_name_the_file(small_disk):
    """h5py and torch.save hide the errno (RuntimeError; HDF5 even crashes the process once a
    write failed): both are an OSError(ENOSPC) naming the file, and leave no file."""
    import torch

    from model.checkpoint import atomic_torch_save
    from model.data import write_feature_file

    h5 = small_disk / "audio_feature.h5"
    with pytest.raises(OSError, match=FULL) as e:
        write_feature_file(h5, (100, 10, 128), np.float32, [np.ones((100, 10, 128), np.float32)])
    assert (e.value.errno, e.value.filename) == (errno.ENOSPC, str(h5))
    pt = small_disk / "jca.pt"
    with pytest.raises(OSError, match=FULL) as e:
        atomic_torch_save({"w": torch.ones(100_000)}, pt)
    assert (e.value.errno, e.value.filename) == (errno.ENOSPC, str(pt))
    assert list(small_disk.iterdir()) == []
