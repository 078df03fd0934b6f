"""Frozen-encoder training: encoder features computed once and cached on disk, then only the head trains.

A cache entry is keyed by the encoder's weights, the layer choice and the audio content, so a changed encoder,
layer or clip can never be served stale features, and later epochs, folds and runs read instead of recompute.
"""

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm
from transformers.modeling_outputs import SequenceClassifierOutput

from ser.audio import SAMPLING_RATE


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


class FeatureCache:
    """Encoder frames per clip, (T, H) or (T, L, H) for a weighted layer sum, as .npy files under `root`."""

    def __init__(self, root, model, feature_extractor):
        self.model, self.feature_extractor = model, feature_extractor
        self.folder = Path(root) / encoder_fingerprint(model, feature_extractor)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.hits = self.misses = 0

    def path(self, audio: np.ndarray) -> Path:
        return self.folder / f"{hashlib.sha256(audio.tobytes()).hexdigest()[:24]}.npy"

    def features(self, audio_list: list[np.ndarray]) -> list[np.ndarray]:
        out = []
        for audio in tqdm(audio_list, desc="encoder features (cached)", unit="clip"):
            path = self.path(audio)
            if path.exists():
                self.hits += 1
                out.append(np.load(path))
                continue
            self.misses += 1
            frames = self.encode(audio)
            np.save(path.with_suffix(".tmp.npy"), frames)
            path.with_suffix(".tmp.npy").replace(path)  # atomic: a killed run leaves no half-written entry
            out.append(frames)
        return out

    @torch.no_grad()
    def encode(self, audio: np.ndarray) -> np.ndarray:
        inputs = self.feature_extractor(audio, sampling_rate=SAMPLING_RATE, return_tensors="pt")
        self.model.eval()
        outputs = self.model.base_model(inputs[self.feature_extractor.model_input_names[0]],
                                        output_hidden_states=self.model.config.feature_layer != "last")
        return self.model.encoder_frames(outputs)[0].float().numpy()  # (T, H), or (T, L, H) for a weighted sum


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
