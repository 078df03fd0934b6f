"""Inference at archive scale: files sharded over processes with Accelerate, every result written as soon as it is
known, a killed run resumed where it stopped, and one output merged in input order.

    accelerate launch --multi_gpu --num_processes 4 predict_ser.py archive/ --output predictions.csv

(`--multi_gpu` is Accelerate's multi-process launcher, torchrun; without GPUs it starts CPU processes, and the
processes here talk over gloo whatever the machine. Several machines: `--num_machines`, `--machine_rank`,
`--main_process_ip`, with the output on storage they all share: every process writes its part there and the main
process reads them all.)

Work is cut into units before anything is classified: clips sorted by the duration their headers give and taken
`batch_size` at a time (a batch then holds similar lengths: little padding), or one recording per unit for timelines.
Units depend on the files and the batch size only, never on the number of processes, and unit k goes to process
k % N. A clip's scores depend (by float rounding) on the batch it shares, so this is what makes the output of N
processes identical, byte for byte, to that of one.

Each process appends one JSON line per finished file to its own part file, `<output>.parts/part-<rank>.jsonl`,
flushed at once. A restart reads every part file (a last line cut short by the kill is dropped), skips finished
files, and classifies a unit that was left half-written whole again (the same batch gives the same numbers) but
writes only its missing files. When all processes are done, the main process merges the parts in input order into
the output (under a temporary name, then renamed, so an output is never half-written) and removes the parts.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from ser.core.audio import audio_duration
from ser.inference.rows import Prediction, from_dict

PART_GLOB = "part-*.jsonl"


class ArchiveError(ValueError):
    """Parts left by a different run (other inputs, model or settings) where this run would write its own."""


def run_key(files: list[Path], **settings) -> dict:
    """What a resumed run must share with the run that wrote the parts: the settings that change any row, and the
    input list (as a hash: an archive can hold millions of files)."""
    digest = hashlib.sha256("\n".join(map(str, files)).encode()).hexdigest()
    return {**settings, "files": len(files), "files_sha256": digest}


def num_processes() -> int:
    """How many processes `accelerate launch` started (1 without it)."""
    from accelerate import PartialState

    return PartialState(cpu=True).num_processes


def durations(files: list[Path], state) -> list[float]:
    """Header durations in seconds (0 for a file whose header cannot be read: it fails later, with its message).
    Each process reads the headers of a share, and all get the whole list: on network storage, headers are slow."""
    with state.split_between_processes(list(range(len(files)))) as share:
        mine = [_duration(files[i]) for i in share]
    from accelerate.utils import gather_object

    return gather_object(mine) if state.num_processes > 1 else mine


def _duration(path: Path) -> float:
    try:
        return audio_duration(path)
    except (OSError, ValueError):
        return 0.0


def batches_by_duration(seconds: list[float], batch_size: int) -> list[list[int]]:
    """Indices sorted by duration (ties in input order) and cut `batch_size` at a time."""
    order = sorted(range(len(seconds)), key=lambda i: (seconds[i], i))
    return [order[first:first + batch_size] for first in range(0, len(order), batch_size)]


def read_parts(folder: Path, key: dict) -> dict[int, list[Prediction]]:
    """Rows of every file already finished, by input index, from all part files (whatever number of processes wrote
    them). A line without its newline was cut by a kill and does not count."""
    done: dict[int, list[dict]] = {}
    for part in sorted(folder.glob(PART_GLOB)):
        lines = part.read_text(encoding="utf-8").split("\n")[:-1]  # the piece after the last newline is unfinished
        if not lines:
            continue
        header = json.loads(lines[0])
        if header.get("run") != key:
            raise ArchiveError(f"{part} holds results of another run (other inputs, model or settings); remove "
                               f"{folder} to start over, or write to another --output")
        for line in lines[1:]:
            entry = json.loads(line)
            done.setdefault(entry["index"], [from_dict(row) for row in entry["rows"]])
    return done


def open_part(folder: Path, rank: int, key: dict):
    """This process's part file, for appending: a line cut by a kill is cut off first (the file would otherwise glue
    it to the next line), and a new file starts with the run key."""
    path = folder / f"part-{rank:05d}.jsonl"
    if path.exists():
        data = path.read_bytes()
        with open(path, "r+b") as handle:
            handle.truncate(data.rfind(b"\n") + 1)
    handle = open(path, "a", encoding="utf-8")
    if handle.tell() == 0:
        handle.write(json.dumps({"run": key}) + "\n")
        handle.flush()
    return handle


def run(files: list[Path], work: Callable[[list[Path]], list[list[Prediction]]],
        write: Callable[[list[Prediction], str | None], object], output: str | None, key: dict,
        batch_size: int | None) -> int:
    """Classifies `files` across the launched processes and writes the merged rows with `write(rows, path)`
    (`output` None: stdout, one process only, no resuming). `work(paths)` returns each path's rows (one row per
    clip; a timeline's segments) and is called with a batch of clips, or one recording when `batch_size` is None.
    Returns the number of error rows (on the main process; 0 on the others)."""
    from accelerate import PartialState

    state = PartialState(cpu=True)  # gloo between processes: inference here runs on the CPU
    if output is None and state.num_processes > 1:
        raise ArchiveError("several processes need --output (each writes its part beside it)")
    scratch = tempfile.TemporaryDirectory() if output is None else None
    folder = Path(scratch.name if scratch else f"{output}.parts")
    if state.is_main_process:
        folder.mkdir(parents=True, exist_ok=True)
    state.wait_for_everyone()
    start = time.perf_counter()

    seconds = durations(files, state)
    units = batches_by_duration(seconds, batch_size) if batch_size else [[i] for i in range(len(files))]
    done = read_parts(folder, key)
    state.wait_for_everyone()  # every process has read the parts before any appends to its own
    if done and state.is_main_process:
        log(f"resuming: {len(done)} of {len(files)} files already done in {folder}, skipping them")
    mine = [unit for position, unit in enumerate(units) if position % state.num_processes == state.process_index
            and not all(i in done for i in unit)]
    with open_part(folder, state.process_index, key) as part:
        _classify(files, mine, seconds, done, work, part, state)
    state.wait_for_everyone()
    failed = _merge(files, folder, key, write, output) if state.is_main_process else 0
    if state.is_main_process:
        elapsed = time.perf_counter() - start
        log(f"{len(files) - len(done)} files ({sum(seconds) / 3600:.3f} h of audio in all) classified in "
            f"{elapsed:.2f} s by {state.num_processes} process(es): {(len(files) - len(done)) / elapsed:.1f} files/s")
    if scratch:
        scratch.cleanup()
    return failed


def _classify(files, units, seconds, done, work, part, state) -> None:
    """Runs this process's units, writing each file's rows as soon as its unit is classified. Only the main process
    draws a progress bar (of its own share: the processes get equal shares of similar durations)."""
    total = sum(len(unit) for unit in units)
    hours = 0.0
    where = f" (process 1 of {state.num_processes}: its share)" if state.num_processes > 1 else ""
    with tqdm(total=total, desc=f"classifying{where}", unit="file", file=sys.stderr,
              disable=not state.is_main_process) as bar:
        for unit in units:
            rows = work([files[i] for i in unit])
            for i, file_rows in zip(unit, rows):
                if i not in done:  # a half-written unit: its finished files keep their rows
                    part.write(json.dumps({"index": i, "rows": [row.to_dict() for row in file_rows]}) + "\n")
            part.flush()
            hours += sum(seconds[i] for i in unit) / 3600
            bar.update(len(unit))
            bar.set_postfix_str(f"{hours:.3f} h of audio")


def _merge(files: list[Path], folder: Path, key: dict, write, output: str | None) -> int:
    """All parts in input order into the output, through a temporary name; then the parts go."""
    done = read_parts(folder, key)
    missing = [str(files[i]) for i in range(len(files)) if i not in done]
    if missing:  # only if a process died without failing the launch
        raise ArchiveError(f"{len(missing)} file(s) have no result in {folder}, e.g. {missing[0]}; run again to "
                           "finish them")
    rows = [row for i in range(len(files)) for row in done[i]]
    if output is None:
        write(rows, None)
    else:
        target = Path(output)
        temporary = target.with_name(f".{target.stem}.merging{target.suffix}")
        write(rows, str(temporary))
        os.replace(temporary, target)
        shutil.rmtree(folder)
    return sum(row.error is not None for row in rows)


def log(message: str) -> None:
    tqdm.write(message, file=sys.stderr)

