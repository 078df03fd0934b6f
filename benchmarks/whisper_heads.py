"""Probes and small heads on the frozen Whisper tiny.en encoder (ser.training.convert_whisper.BUNDLED), layer by layer.

    python benchmarks/whisper_heads.py --corpus emodb --probe lr --layer 2                   # pooled UA 0.919
    python benchmarks/whisper_heads.py --corpus emodb --probe lr --layer 2 --speaker-norm    # 0.930
    python benchmarks/whisper_heads.py --corpus emodb --probe head --frame-norm none         # 0.903
    python benchmarks/whisper_heads.py --corpus emodb --probe head --pooled-norm             # 0.925
    python benchmarks/whisper_heads.py --corpus emodb --probe head --pooled-norm --frame-norm none       # 0.913
    python benchmarks/whisper_heads.py --corpus emodb --probe head --pooled-norm --frame-norm utterance  # 0.912
    python benchmarks/whisper_heads.py --corpus emodb --probe head --pooled-norm --speaker-norm          # 0.940
    python benchmarks/whisper_heads.py --corpus ravdess --probe lr --layer 2                 # 0.730
    python benchmarks/whisper_heads.py --corpus ravdess --probe lr --layer all               # 0.755
    python benchmarks/whisper_heads.py --corpus ravdess --probe head --pooled-norm           # 0.758
    python benchmarks/whisper_heads.py --corpus emovo --probe lr --layer 2                   # 0.526
    python benchmarks/whisper_heads.py --corpus emovo --probe head --pooled-norm             # 0.554
    python benchmarks/whisper_heads.py --probe head --epochs 2 --quick                       # smoke run

Seed 0, UA pooled over every clip; the LR probe takes seconds, a head minutes. Folds as `train_ser.py --config
configs/<corpus>.yaml` makes them (Emo-DB, EMOVO: leave-one-speaker-out; RAVDESS: 6 folds of 4 consecutive actors).
Each clip is trimmed (speech_ser.ENERGY, the detector of the table's runs) and encoded once; its 5 hidden states (encoder input and 4 layers) are cached
in float16 in runs/whisper_heads/<corpus>-<encoder fingerprint>.npz. The head is configs/recipes/whisper-frozen.yaml's,
trained per fold on random crops (AdamW, one-cycle schedule with 10% warm-up, class-weighted loss).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import transformers
import yaml
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from _common import ROOT, table, write_result
from modeling_ser import frame_statistics
import speech_ser as speech
from ser.data import corpora
from ser.data import splits
from ser.data.inputs import PadCollator, class_weights, load_clips_audio, speaker_normalise
from ser.training.encoders import pretrained_model
from ser.training.convert_whisper import BUNDLED
from ser.training.frozen import encoder_fingerprint
from ser.reporting.metrics import classification_metrics, summarize_folds
from ser.core.statistics import EncoderFrames

CACHE = ROOT / "runs" / "whisper_heads"
QUICK_FOLDS = 2


def corpus_and_folds(corpus: str):
    """The clips and folds `train_ser.py --config configs/<corpus>.yaml` uses (its protocol, num_folds, fold_seed)."""
    config = yaml.safe_load((ROOT / "configs" / f"{corpus}.yaml").read_text())
    root = Path(config["data_root"]) if config.get("data_root") else corpora.corpus_dir(config["corpus"])
    clips = corpora.load_mixture([config["corpus"]], [root if root.is_absolute() else ROOT / root])
    folds, protocol = splits.make_folds(clips, config.get("protocol", "loso"), k=config.get("num_folds"),
                                        seed=config.get("fold_seed"))
    return clips, folds, protocol


def encoder_states(corpus: str, clips: list[corpora.Clip]) -> list[np.ndarray]:
    """All hidden states (T, L, H) of every trimmed clip, from the cache when it holds these clips. The encoder is
    loaded either way: its fingerprint names the cache. feature_layer="weighted": EncoderFrames gives every layer."""
    model, extractor = pretrained_model(str(ROOT / BUNDLED["tiny.en"]["output"]), ["a", "b"], feature_layer="weighted")
    path = CACHE / f"{corpus}-{encoder_fingerprint(model, extractor)}.npz"
    paths = np.array([str(c.path) for c in clips])
    if path.exists():
        cached = np.load(path)
        if np.array_equal(cached["paths"], paths):
            return np.split(cached["frames"], np.cumsum(cached["lengths"])[:-1])
    _, audio = load_clips_audio(clips)
    frames_of = EncoderFrames(model, extractor)
    with torch.no_grad():
        frames = [frames_of(speech.ENERGY.trim(samples)).numpy().astype(np.float16) for samples in audio]
    CACHE.mkdir(parents=True, exist_ok=True)
    # float16 halves the cache (~1 GB for the three corpora); the docstring's figures were measured on float16 frames
    np.savez(path, frames=np.concatenate(frames), lengths=[len(f) for f in frames], paths=paths)
    return frames


def cross_validate(predict, folds, y, num_labels: int) -> dict:
    """predict(train indices, test indices) -> test predictions, on every fold; fold and pooled metrics."""
    results = []
    for fold in folds:
        pred = predict(np.array(fold.train), np.array(fold.test))
        results.append({"name": fold.name, "test_speakers": fold.test_speakers, "n_test": len(fold.test),
                        **classification_metrics(y[fold.test], pred, num_labels),
                        "y_true": y[fold.test].tolist(), "y_pred": pred.tolist()})
    return {"folds": results, "summary": summarize_folds(results, num_labels)}


def lr_probe(frames, y, C: float):
    """Mean and std of each clip's frames (every layer's with --layer all), standardised, logistic regression."""
    pooled = np.stack([np.concatenate([f.mean(0).ravel(), f.std(0).ravel()]) for f in frames])

    def predict(train, test):
        scaler = StandardScaler().fit(pooled[train])
        clf = LogisticRegression(C=C, max_iter=2000, class_weight="balanced")
        clf.fit(scaler.transform(pooled[train]), y[train])
        return clf.predict(scaler.transform(pooled[test]))
    return predict


class Head(torch.nn.Module):
    """modeling_ser's frozen head (frame normalisation, layer mix, projection, stats pooling, [batch norm], dropout,
    classifier), written as in the experiments behind the docstring's figures so that they reproduce to the last
    digit: torch's default init, and pooling whose float rounding differs from modeling_ser.MaskedPooling's."""

    def __init__(self, layers, hidden, classes, args, frame_stats=None):
        super().__init__()
        self.frame_norm, self.frame_stats = args.frame_norm, frame_stats
        self.layer_weights = torch.nn.Parameter(torch.zeros(layers))  # one layer: a weight of 1, never trained
        self.projector = torch.nn.Linear(hidden, args.proj)
        # No learned scale: only standardises, as the LR probe's StandardScaler does (a few Whisper dims are huge)
        pooled = 2 * args.proj  # mean and std
        self.pooled_norm = torch.nn.BatchNorm1d(pooled, affine=False) if args.pooled_norm else torch.nn.Identity()
        self.dropout = torch.nn.Dropout(args.dropout)
        self.classifier = torch.nn.Linear(pooled, classes)

    def normalise(self, frames, mask):
        if self.frame_norm == "none":
            return frames
        # (B or 1, 2, L, H): each clip's own statistics over its real frames, or the training clips'
        stats = frame_statistics(frames, mask) if self.frame_norm == "utterance" else self.frame_stats.unsqueeze(0)
        mean, std = stats.unbind(1)
        return (frames - mean.unsqueeze(1)) / std.unsqueeze(1)

    def forward(self, frames, mask):  # frames (B, T, L, H), mask (B, T)
        frames = self.normalise(frames, mask)
        frames = self.projector((frames * torch.softmax(self.layer_weights, 0).view(-1, 1)).sum(2))
        weights = mask.unsqueeze(-1).float()
        count = weights.sum(1)
        mean = (frames * weights).sum(1) / count
        std = (((frames - mean.unsqueeze(1)) ** 2 * weights).sum(1) / count).clamp(min=1e-6).sqrt()
        return self.classifier(self.dropout(self.pooled_norm(torch.cat([mean, std], -1))))


def batch(frames, y, indices, crop=None, rng=None):
    """Padded frames, mask and labels; with `crop`, a random crop of each longer clip (a fresh one every epoch)."""
    items = []
    for i in indices:
        f = frames[i]
        if crop and len(f) > crop:
            start = rng.integers(0, len(f) - crop + 1)
            f = f[start:start + crop]
        items.append({"features": f, "labels": int(y[i])})
    padded = PadCollator("features")(items)
    return padded["features"], padded["attention_mask"].bool(), padded["labels"]


def train_head(frames, y, train, num_labels: int, args) -> Head:
    torch.manual_seed(args.seed)  # every fold starts from the same draws
    rng = np.random.default_rng(args.seed)
    stats = None
    if args.frame_norm == "global":  # numpy's std + eps as in the experiments (modeling_ser: sqrt(var + eps))
        every = np.concatenate([frames[i] for i in train])
        stats = torch.from_numpy(np.stack([every.mean(0), every.std(0) + 1e-5]))
    head = Head(frames[0].shape[1], frames[0].shape[2], num_labels, args, stats)
    opt = torch.optim.AdamW(head.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    steps = args.epochs * -(-len(train) // args.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, total_steps=steps, pct_start=0.1)
    weights = class_weights(y[train].tolist(), num_labels)
    head.train()
    for _ in range(args.epochs):
        order = rng.permutation(train)
        for start in range(0, len(order), args.batch_size):
            x, mask, target = batch(frames, y, order[start:start + args.batch_size], args.crop, rng)
            loss = torch.nn.functional.cross_entropy(head(x, mask), target, weight=weights)
            opt.zero_grad()
            loss.backward()
            opt.step()
            schedule.step()
    return head.eval()


def torch_head(frames, y, num_labels: int, args):
    def predict(train, test):
        head = train_head(frames, y, train, num_labels, args)
        with torch.no_grad():  # whole clips, 64 at a time
            return np.concatenate([head(*batch(frames, y, test[s:s + 64])[:2]).argmax(-1).numpy()
                                   for s in range(0, len(test), 64)])
    return predict


def variant_name(args) -> str:
    """The result file's name, e.g. head-layer2-frames-global-pooled-norm-e30-seed0-speaker-norm."""
    head = [f"frames-{args.frame_norm}", *["pooled-norm"] * args.pooled_norm, f"e{args.epochs}", f"seed{args.seed}"]
    parts = [args.probe, f"layer{args.layer}", *([f"C{args.C:g}"] if args.probe == "lr" else head)]
    return "-".join(parts + ["speaker-norm"] * args.speaker_norm)


HEAD_DEFAULTS = {"proj": 256, "dropout": 0.3, "lr": 1e-3, "weight_decay": 0.05, "epochs": 30, "batch_size": 32,
                 "crop": 150}  # crop: encoder frames, 50 per second


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", choices=["emodb", "ravdess", "emovo"], default="emodb")
    parser.add_argument("--probe", choices=["lr", "head"], default="lr")
    parser.add_argument("--layer", default="2", help="0-4 (0: encoder input), all (lr) or weighted (head)")
    parser.add_argument("--speaker-norm", action="store_true",
                        help="z-normalise frames with each speaker's statistics first (test speaker's included)")
    parser.add_argument("--C", type=float, default=1.0, help="lr: inverse regularisation strength")
    parser.add_argument("--frame-norm", choices=["none", "global", "utterance"], default="global",
                        help="head: frames z-normalised with the training clips' statistics, each clip's own, or not")
    parser.add_argument("--pooled-norm", action="store_true", help="head: batch norm of the pooled vector")
    for name, default in HEAD_DEFAULTS.items():
        parser.add_argument("--" + name.replace("_", "-"), type=type(default), default=default, help="head")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help=f"only the first {QUICK_FOLDS} folds (a smoke run)")
    args = parser.parse_args()
    allowed = {"lr": "all", "head": "weighted"}[args.probe]
    if not (args.layer.isdigit() and int(args.layer) <= 4 or args.layer == allowed):
        parser.error(f"--probe {args.probe} takes --layer 0..4 or {allowed}")
    return args


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()  # hides the "newly initialized" report of a head that is never used

    clips, folds, protocol = corpus_and_folds(args.corpus)
    folds = folds[:QUICK_FOLDS] if args.quick else folds
    labels = sorted({c.label for c in clips})
    y = np.array([labels.index(c.label) for c in clips])
    layers = slice(None) if args.layer in ("all", "weighted") else slice(int(args.layer), int(args.layer) + 1)
    frames = [f[:, layers].astype(np.float32) for f in encoder_states(args.corpus, clips)]  # (T, L or 1, H)
    if args.speaker_norm:
        frames = speaker_normalise(frames, [c.speaker for c in clips])
    start = time.perf_counter()
    predict = lr_probe(frames, y, args.C) if args.probe == "lr" else torch_head(frames, y, len(labels), args)
    result = cross_validate(predict, folds, y, len(labels))
    seconds = time.perf_counter() - start

    s, name = result["summary"], variant_name(args)
    row = {"corpus": args.corpus, "variant": name, "folds": len(folds), "pooled UA": s["pooled"]["ua"],
           "pooled WA": s["pooled"]["wa"], "pooled macro-F1": s["pooled"]["macro_f1"],
           "fold UA": f"{s['ua']['mean']:.3f} ± {s['ua']['std']:.3f}", "seconds": seconds}
    print(table([row], list(row), {k: ".3f" for k in row if k.startswith("pooled")} | {"seconds": ".0f"}))
    write_result("whisper_heads", {"settings": vars(args), "labels": labels, "protocol": protocol, "table": [row],
                                   **result}, quick=args.quick, name=f"whisper_heads-{args.corpus}-{name}")


if __name__ == "__main__":
    main()
