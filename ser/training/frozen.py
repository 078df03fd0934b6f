"""Frozen-encoder training: encoder features computed once and cached on disk, then only the head trains.

A cache entry is keyed by the encoder's weights, the layer choice and the audio content (after trimming, level and
augmentation), so a changed encoder, layer or clip can never be served stale features, and later epochs, folds,
seeds and runs read instead of recompute.
"""

import hashlib
import json
import mmap
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from accelerate import PartialState
from datasets import Features, List, Value
from datasets.arrow_writer import ArrowWriter
from torch import nn
from tqdm.auto import tqdm
from transformers.modeling_outputs import SequenceClassifierOutput

from ser.core.audio import SAMPLING_RATE


def encoder_fingerprint(model, feature_extractor) -> str:
    """Hash of everything that decides the cached features: encoder weights, layer choice, front end."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.base_model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    layer = model.config.feature_layer
    digest.update(json.dumps({"layer": "all" if layer == "weighted" else layer}).encode())
    digest.update(feature_extractor.to_json_string().encode())
    return digest.hexdigest()[:16]


CACHE_FEATURES = Features({"key": Value("string"), "frames": Value("binary"), "shape": List(Value("int32")),
                           "samples": Value("int64")})


class FeatureCache:
    """Encoder frames per clip, (T, H) or (T, L, H) for a weighted layer sum, as a `datasets` table: Arrow files
    under `root/<encoder fingerprint>/` (written by datasets' ArrowWriter; `Dataset.from_file` reads them), one row
    per distinct audio, keyed by the hash of the samples the encoder sees, so a change of trimming, level or
    augmentation is a new key. Runs, folds and seeds share them; reading them does not hold them in memory
    (CacheFiles).

    Under several processes (`accelerate launch`), each encodes every `num_processes`-th clip not yet cached and
    writes its own file; the frames are those one process computes, as every clip is encoded alone."""

    def __init__(self, root, model, feature_extractor):
        self.model, self.feature_extractor = model, feature_extractor
        self.folder = Path(root) / encoder_fingerprint(model, feature_extractor)
        self.state = PartialState()
        if self.state.is_main_process:
            self.folder.mkdir(parents=True, exist_ok=True)
        self.state.wait_for_everyone()
        self.files = CacheFiles(self.folder)
        self.state.wait_for_everyone()  # no process writes before every process has read the same cache
        self.hits = self.misses = 0

    def features(self, audio: Iterable[np.ndarray], total: int | None = None) -> "CachedFeatures":
        """The frames of each clip of `audio` (read one at a time), encoding those not cached yet."""
        keys, mine, seen = [], 0, set()
        path = self.folder / f"{uuid.uuid4().hex}.arrow"
        writer = None
        for clip in tqdm(audio, total=total, desc="encoder features (cached)", unit="clip",
                         disable=not self.state.is_main_process):
            key = hashlib.sha256(clip.tobytes()).hexdigest()[:24]
            keys.append(key)
            if key in self.files.index or key in seen:
                continue
            seen.add(key)
            mine += 1
            if (mine - 1) % self.state.num_processes != self.state.process_index:
                continue  # another process encodes it
            frames = self.encode(clip)
            writer = writer or ArrowWriter(features=CACHE_FEATURES, path=str(path.with_suffix(".tmp")))
            writer.write({"key": key, "frames": frames.tobytes(), "shape": list(frames.shape), "samples": len(clip)})
        if writer is not None:
            writer.finalize()
            writer.close()
            path.with_suffix(".tmp").replace(path)  # atomic: a killed run leaves no half-written file behind
        self.misses += len(seen)
        self.hits += len(keys) - len(seen)
        self.state.wait_for_everyone()
        self.files = CacheFiles(self.folder)
        return CachedFeatures(self.files, [self.files.index[key] for key in keys])

    @torch.no_grad()
    def encode(self, audio: np.ndarray) -> np.ndarray:
        inputs = self.feature_extractor(audio, sampling_rate=SAMPLING_RATE, prepare_speech=False,
                                        return_tensors="pt")  # prepared by the caller
        self.model.eval()
        outputs = self.model.base_model(inputs[self.feature_extractor.model_input_names[0]],
                                        output_hidden_states=self.model.config.feature_layer != "last")
        return self.model.encoder_frames(outputs)[0].float().numpy()  # (T, H), or (T, L, H) for a weighted sum


class CacheFiles:
    """The cache's Arrow files, memory-mapped, with `index`: key -> (file, row). Pages read through a memory map stay
    resident in the process (and count in its RSS) until released, so every RELEASE_EVERY reads the maps are
    released (madvise DONTNEED): the pages stay in the kernel's page cache, and the process's memory does not grow
    with the cache (benchmarks/data_scale.py)."""

    RELEASE_EVERY = 256

    def __init__(self, folder: Path):
        self.maps, self.tables, self.index, self.reads = [], [], {}, 0
        for number, path in enumerate(sorted(folder.glob("*.arrow"))):
            with open(path, "rb") as handle:
                self.maps.append(mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ))
            table = pa.ipc.open_stream(pa.py_buffer(self.maps[-1])).read_all()  # datasets' Arrow stream format
            self.tables.append(table)
            self.index.update((key, (number, row)) for row, key in enumerate(table.column("key").to_pylist()))

    def read(self, where: tuple[int, int]) -> np.ndarray:
        table, row = self.tables[where[0]], where[1]
        frames = np.frombuffer(table.column("frames")[row].as_buffer(), dtype=np.float32)
        frames = frames.reshape(table.column("shape")[row].as_py()).copy()
        self.reads += 1
        if self.reads % self.RELEASE_EVERY == 0:
            for memory in self.maps:
                memory.madvise(mmap.MADV_DONTNEED)
        return frames

    def samples(self, where: tuple[int, int]) -> int:
        return self.tables[where[0]].column("samples")[where[1]].as_py()


class CachedFeatures(Sequence):
    """Clips' cached frames, read from the cache files when indexed; `durations` in seconds of the audio each was
    computed from. Slicing and `take` give other views of the same files."""

    def __init__(self, files: CacheFiles, rows: list[tuple[int, int]]):
        self.files, self.row_of = files, rows

    def __len__(self) -> int:
        return len(self.row_of)

    def take(self, indices: list[int]) -> "CachedFeatures":
        return CachedFeatures(self.files, [self.row_of[i] for i in indices])

    def __getitem__(self, i):
        if isinstance(i, slice):
            return CachedFeatures(self.files, self.row_of[i])
        return self.files.read(self.row_of[i])

    def durations(self) -> list[float]:
        return [self.files.samples(row) / SAMPLING_RATE for row in self.row_of]


class FrozenEncoderHead(nn.Module):
    """Trains the head of `model` on cached frames; the trained weights live in `model` itself."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, features, attention_mask, labels=None, normalisation_stats=None):
        """features: (B, T, H), or (B, T, L, H) for a weighted layer sum; attention_mask: (B, T) real frames;
        normalisation_stats (B, 2, [L,] H): each clip's speaker's, for a speaker-normalised model."""
        logits = self.model.classify(features, attention_mask.bool(), normalisation_stats)
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)
