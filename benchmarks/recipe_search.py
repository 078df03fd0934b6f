"""Recipe search: a small Wav2Vec2-BERT (conformer on log-mels) trained from scratch on Emo-DB, leave-one-speaker-out.

A plain PyTorch loop that mirrors the project's training recipe: AdamW, linear warmup then cosine decay, random
fixed-length crops for training (zero padding + attention mask for shorter clips), full clips at evaluation
(padding + attention mask), class-balanced cross-entropy (weights inversely proportional to the class frequency of
the training fold), fixed seed. Log-mels are computed once per clip (the SeamlessM4T extractor, unpadded, without its
per-utterance normalisation) and normalised here:

  --norm utt      per utterance, per feature dim (what the extractor's default `do_normalize_per_mel_bins` does)
  --norm global   z-normalised with the training fold's global mean/std per feature dim
  --norm speaker  (= --speaker-norm) each speaker z-normalised with the mean/std over all frames of all that
                  speaker's clips, per feature dim (test speaker included: unlabelled audio)

Usage:
  python benchmarks/recipe_search.py --folds 10 --speaker-norm
  python benchmarks/recipe_search.py --folds 10 --norm utt --spec configs/encoders/small-w2vbert.json
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ser.audio import load_audio  # noqa: E402
from ser.corpora import load_emodb  # noqa: E402
from ser.encoders import feature_extractor_for, scratch_model  # noqa: E402
from ser.metrics import classification_metrics  # noqa: E402
from ser.splits import leave_one_speaker_out  # noqa: E402

FRAMES_PER_SECOND = 50  # w2v-BERT frames: 10 ms fbank hop, stacked in pairs


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(ROOT.parent / "shared/data/emodb"))
    p.add_argument("--folds", type=int, default=10, help="number of LOSO folds to run (evenly spaced speakers)")
    p.add_argument("--fold-ids", default=None, help="comma-separated fold indices (overrides --folds)")
    p.add_argument("--speaker-norm", action="store_true", help="same as --norm speaker")
    p.add_argument("--norm", choices=("utt", "global", "speaker"), default="utt")
    p.add_argument("--spec", default=None, help="encoder spec JSON; the --hidden ... flags are ignored if given")
    p.add_argument("--write-spec", default=None, help="write the encoder spec used to this path")
    # encoder
    p.add_argument("--hidden", type=int, default=96)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--intermediate", type=int, default=192)
    p.add_argument("--kernel", type=int, default=15)
    p.add_argument("--pos", default="none", help="relative_key | rotary | relative | none")
    p.add_argument("--dropout", type=float, default=0.1, help="hidden/feat_proj/activation/attention dropout")
    p.add_argument("--conv-dropout", type=float, default=0.1)
    p.add_argument("--mask-time-prob", type=float, default=0.1)
    p.add_argument("--mask-time-length", type=int, default=5)
    p.add_argument("--mask-feature-prob", type=float, default=0.1)
    p.add_argument("--mask-feature-length", type=int, default=8)
    # head
    p.add_argument("--pooling", default="stats")
    p.add_argument("--proj", type=int, default=64, help="classifier_proj_size")
    p.add_argument("--head-hidden", default="", help="comma-separated head_hidden_sizes")
    p.add_argument("--head-dropout", type=float, default=0.3)
    # optimisation
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--wd", type=float, default=0.05)
    p.add_argument("--warmup", type=float, default=0.1, help="warmup fraction of all steps")
    p.add_argument("--schedule", choices=("cosine", "linear"), default="cosine")
    p.add_argument("--crop", type=float, default=2.0, help="training crop in seconds")
    p.add_argument("--input-freq-mask", type=int, default=0,
                   help="input SpecAugment: 2 masks of up to this many of the 80 mel bins per training crop (0: off)")
    p.add_argument("--input-time-mask", type=int, default=0,
                   help="input SpecAugment: 2 masks of up to this many frames per training crop (0: off)")
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cache", default="/tmp/emodb_w2vbert_fbank.pt")
    p.add_argument("--out", default=None, help="results JSON (default benchmarks/results/recipe_search_<tag>.json)")
    p.add_argument("--tag", default=None)
    args = p.parse_args(argv)
    if args.speaker_norm:
        args.norm = "speaker"
    return args


def encoder_spec(args) -> dict:
    if args.spec:
        return json.loads(Path(args.spec).read_text())
    pos = None if args.pos in ("none", "None", "") else args.pos
    d = args.dropout
    return {
        "family": "wav2vec2-bert",
        "encoder": {
            "hidden_size": args.hidden,
            "output_hidden_size": args.hidden,
            "num_hidden_layers": args.layers,
            "num_attention_heads": args.heads,
            "intermediate_size": args.intermediate,
            "conv_depthwise_kernel_size": args.kernel,
            "position_embeddings_type": pos,
            "layerdrop": 0.0,
            "hidden_dropout": d,
            "feat_proj_dropout": d,
            "activation_dropout": d,
            "attention_dropout": d,
            "conformer_conv_dropout": args.conv_dropout,
            "apply_spec_augment": True,
            "mask_time_prob": args.mask_time_prob,
            "mask_time_length": args.mask_time_length,
            "mask_time_min_masks": 2,
            "mask_feature_prob": args.mask_feature_prob,
            "mask_feature_length": args.mask_feature_length,
            "classifier_proj_size": args.proj,
        },
        "feature_extractor": {},
    }


def head_options(args) -> dict:
    hidden = [int(h) for h in args.head_hidden.split(",") if h.strip()]
    return {"pooling": args.pooling, "head_hidden_sizes": hidden, "head_dropout": args.head_dropout}


def load_features(data: str, cache: str):
    """Raw (un-normalised) stacked log-mels per clip, (T, 160) float32, plus labels and speakers."""
    clips = load_emodb(data)
    cache_path = Path(cache)
    if cache_path.exists():
        stored = torch.load(cache_path)
        if stored["paths"] == [str(c.path) for c in clips]:
            return clips, stored["features"]
    extractor = feature_extractor_for("wav2vec2-bert")
    features = []
    for clip in clips:
        out = extractor(load_audio(clip.path), sampling_rate=16000, do_normalize_per_mel_bins=False,
                        return_tensors="np")
        features.append(torch.from_numpy(out["input_features"][0].astype(np.float32)))
    torch.save({"paths": [str(c.path) for c in clips], "features": features}, cache_path)
    return clips, features


def zscore(x, mean, std):
    return (x - mean) / std


def stats(frames: list[torch.Tensor]):
    cat = torch.cat(frames, dim=0)
    return cat.mean(0), cat.std(0).clamp(min=1e-3)


def normalise(features, clips, norm, train_idx):
    if norm == "utt":
        return [zscore(f, f.mean(0), f.std(0).clamp(min=1e-3)) for f in features]
    if norm == "global":
        mean, std = stats([features[i] for i in train_idx])
        return [zscore(f, mean, std) for f in features]
    out = list(features)
    for speaker in {c.speaker for c in clips}:
        idx = [i for i, c in enumerate(clips) if c.speaker == speaker]
        mean, std = stats([features[i] for i in idx])
        for i in idx:
            out[i] = zscore(features[i], mean, std)
    return out


def pad_batch(items: list[torch.Tensor]):
    length = max(x.shape[0] for x in items)
    batch = torch.zeros(len(items), length, items[0].shape[1])
    mask = torch.zeros(len(items), length, dtype=torch.long)
    for j, x in enumerate(items):
        batch[j, : x.shape[0]] = x
        mask[j, : x.shape[0]] = 1
    return batch, mask


def random_crop(x: torch.Tensor, frames: int, rng: random.Random) -> torch.Tensor:
    if x.shape[0] <= frames:
        return x
    start = rng.randint(0, x.shape[0] - frames)
    return x[start : start + frames]


def input_spec_augment(x: torch.Tensor, freq: int, time_: int, rng: random.Random) -> torch.Tensor:
    """Masks (to 0 = the normalised mean) mel bins and frames of a (T, 160) crop; the 160 dims are two stacked
    80-bin frames, so a mel band is masked in both halves."""
    if not freq and not time_:
        return x
    x = x.clone()
    mels = x.shape[1] // 2
    for _ in range(2):
        if freq:
            width = rng.randint(0, freq)
            start = rng.randint(0, mels - width)
            x[:, start : start + width] = 0
            x[:, mels + start : mels + start + width] = 0
        if time_ and x.shape[0] > time_:
            width = rng.randint(0, time_)
            start = rng.randint(0, x.shape[0] - width)
            x[start : start + width] = 0
    return x


def lr_lambda(total: int, warmup: int, schedule: str):
    def f(step):
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        if schedule == "linear":
            return max(0.0, 1.0 - progress)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return f


def run_fold(args, spec, labels, feats, y, train_idx, test_idx, seed):
    torch.manual_seed(seed)
    np.random.seed(seed)  # the encoder's SpecAugment draws its masks with numpy
    rng = random.Random(seed)
    model, _ = scratch_model(spec, labels, **head_options(args))
    counts = np.bincount([y[i] for i in train_idx], minlength=len(labels)).astype(np.float64)
    weights = torch.tensor(len(train_idx) / (len(labels) * np.maximum(counts, 1)), dtype=torch.float32)
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        (no_decay if param.ndim < 2 or "norm" in name else decay).append(param)
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.wd}, {"params": no_decay, "weight_decay": 0.0}], lr=args.lr
    )
    steps_per_epoch = math.ceil(len(train_idx) / args.batch)
    total = steps_per_epoch * args.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(total, max(1, int(args.warmup * total)),
                                                                       args.schedule))
    crop = int(round(args.crop * FRAMES_PER_SECOND))
    loss_fn = torch.nn.CrossEntropyLoss(weight=weights, label_smoothing=args.label_smoothing)
    model.train()
    order = list(train_idx)
    for _ in range(args.epochs):
        rng.shuffle(order)
        epoch_loss, epoch_correct = 0.0, 0
        for s in range(0, len(order), args.batch):
            idx = order[s : s + args.batch]
            x, mask = pad_batch([
                input_spec_augment(random_crop(feats[i], crop, rng), args.input_freq_mask, args.input_time_mask, rng)
                for i in idx
            ])
            logits = model(input_features=x, attention_mask=mask).logits
            target = torch.tensor([y[i] for i in idx])
            loss = loss_fn(logits, target)
            epoch_loss += loss.item() * len(idx)
            epoch_correct += int((logits.argmax(-1) == target).sum())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
            scheduler.step()
    train_stats = {"train_loss": epoch_loss / len(order), "train_acc": epoch_correct / len(order)}
    model.eval()
    preds = {}
    ordered = sorted(test_idx, key=lambda i: feats[i].shape[0])
    with torch.no_grad():
        for s in range(0, len(ordered), 32):
            idx = ordered[s : s + 32]
            x, mask = pad_batch([feats[i] for i in idx])
            for i, p in zip(idx, model(input_features=x, attention_mask=mask).logits.argmax(-1).tolist()):
                preds[i] = p
    return [preds[i] for i in test_idx], sum(p.numel() for p in model.parameters()), train_stats


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    spec = encoder_spec(args)
    if args.write_spec:
        Path(args.write_spec).parent.mkdir(parents=True, exist_ok=True)
        Path(args.write_spec).write_text(json.dumps(spec, indent=2) + "\n")
    clips, raw = load_features(args.data, args.cache)
    labels = sorted({c.label for c in clips})
    y = [labels.index(c.label) for c in clips]
    folds = leave_one_speaker_out(clips)
    if args.fold_ids:
        chosen = [int(i) for i in args.fold_ids.split(",")]
    else:
        chosen = sorted({int(round(v)) for v in np.linspace(0, len(folds) - 1, min(args.folds, len(folds)))})
    start = time.time()
    fold_rows, all_true, all_pred = [], [], []
    for k in chosen:
        fold = folds[k]
        t0 = time.time()
        feats = normalise(raw, clips, args.norm, fold.train)
        preds, n_params, train_stats = run_fold(args, spec, labels, feats, y, fold.train, fold.test, args.seed + k)
        truth = [y[i] for i in fold.test]
        m = classification_metrics(truth, preds, len(labels))
        fold_rows.append({"fold": fold.name, "n": len(truth), "ua": m["ua"], "wa": m["wa"],
                          "seconds": time.time() - t0, **train_stats})
        all_true += truth
        all_pred += preds
        print(f"{fold.name}: UA {m['ua']:.3f} WA {m['wa']:.3f} n={len(truth)} "
              f"| last-epoch train loss {train_stats['train_loss']:.3f} acc {train_stats['train_acc']:.3f} "
              f"({time.time() - t0:.0f}s)",
              flush=True)
    pooled = classification_metrics(all_true, all_pred, len(labels))
    seconds = time.time() - start
    print(f"pooled ({len(all_true)} clips, norm={args.norm}, {n_params} params): WA {pooled['wa']:.3f} "
          f"UA {pooled['ua']:.3f} macro-F1 {pooled['macro_f1']:.3f}  [{seconds:.0f}s]", flush=True)
    tag = args.tag or f"{args.norm}_f{len(chosen)}"
    out = Path(args.out) if args.out else ROOT / "benchmarks/results" / f"recipe_search_{tag}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "args": vars(args), "encoder_spec": spec, "head_options": head_options(args), "labels": labels,
        "num_parameters": n_params, "folds": fold_rows, "pooled": pooled, "seconds": seconds,
        "torch_threads": args.threads,
    }
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
