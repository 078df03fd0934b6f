"""predict_ser.py at archive scale (ser/inference/archive.py): real Emo-DB clips, the embedded default model, real
`accelerate launch` subprocesses with 2 processes. Outputs of 1 and 2 processes are identical byte for byte; a run
killed half-way and started again skips what it had finished and gives the same output."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

import predict_ser
from helpers import EMODB, ROOT, require
from ser.inference import archive

LAUNCH = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
          "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
# the default runtime exports an ONNX graph on first load (a killed worker could leave its export half done); the
# runtimes have their own tests (test_runtime_onnx.py), these are of the archive
FP32 = ["--runtime", "fp32"]


@pytest.fixture(scope="module")
def clips():
    """67 real clips of all ten speakers (every eighth file), and a missing one that becomes an error row."""
    wav = sorted(require(EMODB / "wav").glob("*.wav"))[::8]
    return [str(path) for path in wav] + [str(EMODB / "wav" / "missing.wav")]


def launch(args, **popen):
    command = [*LAUNCH, str(ROOT / "predict_ser.py"), *FP32, *map(str, args)]
    if popen:
        return subprocess.Popen(command, cwd=ROOT, env=ENV, text=True, **popen)
    return subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)


def one_process(clips, output, *options):
    assert predict_ser.main([*FP32, *clips, "--output", str(output), *options]) == 1  # the missing file
    return output.read_bytes()


def part_lines(folder):
    """Each part file's complete lines (the kill may have cut the last one short)."""
    return {part: part.read_text().split("\n")[:-1] for part in sorted(folder.glob("part-*.jsonl"))}


def test_two_processes_write_what_one_process_writes(clips, tmp_path):
    reference = one_process(clips, tmp_path / "one.jsonl")
    done = launch([*clips, "--output", tmp_path / "two.jsonl"])
    assert done.returncode != 0 and "missing.wav" in done.stderr  # the error row fails the run, as with one process
    assert (tmp_path / "two.jsonl").read_bytes() == reference
    assert not (tmp_path / "two.jsonl.parts").exists()
    rows = [json.loads(line) for line in reference.decode().splitlines()]
    assert [row["file"] for row in rows] == clips  # input order, not the duration order of the batches
    assert rows[-1]["error"] and all(row["error"] is None for row in rows[:-1])


def test_killed_run_resumes_without_redoing_finished_files(clips, tmp_path):
    reference = one_process(clips, tmp_path / "one.csv", "--batch-size", "2").decode().splitlines()
    out = tmp_path / "two.csv"
    args = [*clips, "--output", out, "--batch-size", "2"]
    parts = tmp_path / "two.csv.parts"

    # Niced, so that on a busy machine this test's polling gets the CPU first and the kill comes soon after row 10
    run = launch(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=lambda: os.nice(10))
    deadline = time.monotonic() + 240
    while sum(len(lines) - 1 for lines in part_lines(parts).values()) < 10 and run.poll() is None:
        assert time.monotonic() < deadline, "no rows written"
        time.sleep(0.01)
    # The launcher and both workers, mid-run (torchrun starts each worker in a session of its own)
    for process in [*psutil.Process(run.pid).children(recursive=True), psutil.Process(run.pid)]:
        process.send_signal(signal.SIGKILL)
    run.wait()
    assert not out.exists(), "the run finished before it was killed"

    lines = part_lines(parts)
    first, last = sorted(lines)[0], sorted(lines)[-1]
    # A marker in a finished row: the restart must take that row from the part file, not classify the file again.
    marked = json.loads(lines[first][1])
    marked["rows"][0]["label"] = "MARKER"
    lines[first][1] = json.dumps(marked)
    # The last row of a batch of two removed: its batch is classified again whole, and only that row written.
    removed = json.loads(lines[last].pop())["index"]
    for part, text in lines.items():
        part.write_text("\n".join(text) + "\n")
    with open(first, "a") as handle:
        handle.write('{"index": 3, "rows": [{"fi')  # a line cut short by the kill
    finished = sum(len(text) - 1 for text in lines.values())
    assert 0 < finished < len(clips)

    done = launch(args)
    assert f"resuming: {finished} of {len(clips)} files already done" in done.stderr, done.stderr[-3000:]
    merged = out.read_text().splitlines()
    assert not parts.exists() and len(merged) == len(reference)
    index = marked["index"] + 1  # the header line comes first
    expected = next(csv.reader([reference[index]]))
    expected[1] = "MARKER"
    assert next(csv.reader([merged[index]])) == expected
    assert merged[:index] + merged[index + 1:] == reference[:index] + reference[index + 1:]
    assert merged[removed + 1] == reference[removed + 1]


def test_timelines_shard_by_recording(clips, tmp_path):
    """--timeline: one recording per unit, each recording's segments kept together and in order."""
    recordings = [*clips[:4], clips[-1]]
    options = ["--timeline", "--segment", "1"]
    reference = one_process(recordings, tmp_path / "one.csv", *options)
    launch([*recordings, "--output", tmp_path / "two.csv", *options])
    assert (tmp_path / "two.csv").read_bytes() == reference
    assert reference.count(b"\n") > len(recordings) + 1  # several segments per recording


def test_parts_of_another_run_are_refused(clips, tmp_path, capsys):
    out = tmp_path / "out.csv"
    parts = tmp_path / "out.csv.parts"
    parts.mkdir()
    key = archive.run_key([], mode="clips")
    (parts / "part-00000.jsonl").write_text(json.dumps({"run": key}) + "\n")
    assert predict_ser.main([*FP32, *clips[:3], "--output", str(out)]) == 2
    assert "holds results of another run" in capsys.readouterr().err and not out.exists()


def test_batches_by_duration_keep_similar_lengths_together():
    assert archive.batches_by_duration([3.0, 1.0, 2.0, 1.0, 9.0], 2) == [[1, 3], [2, 0], [4]]
