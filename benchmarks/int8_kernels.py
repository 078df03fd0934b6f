"""What onnx-int8 gives on a CPU we do not have: its int8 products emulated exactly in torch, with and without the
16-bit saturation of ONNX Runtime's u8 x s8 kernel for AVX2 without VNNI, for 8-bit and 7-bit weights.

    python benchmarks/default_runtimes.py ...                 # (its fold models: train_ser.py --save_fold_models true)
    python benchmarks/int8_kernels.py --run runs/mixture --clips 100

ONNX Runtime's dynamic quantisation (ser/onnx_runtime.quantise) turns each large matrix product into: activations to
uint8 over the tensor's range (DynamicQuantizeLinear), weights to int8 with one symmetric scale per output channel,
an integer product, and a float rescale. On AVX-512 VNNI / AVX-VNNI (vpdpbusd) the integer sums are exact. On AVX2
without VNNI, MLAS's kernel (QgemmU8S8KernelAvx2.S: vpmaddubsw, then vpmaddwd) adds each pair of neighbouring
products a[2j] b[2j] + a[2j+1] b[2j+1] into a signed 16-bit word with saturation: up to 2 x 255 x 127 = 64770 with
8-bit weights, which does not fit in int16; with 7-bit weights (-64..64, `reduce_range`) at most 32640, which does.

Variants, each through `EmotionPredictor.classify_batch` on held-out clips of the run's first --folds folds, against
fp32: "onnx-int8" (the runtime itself, on this CPU), and the emulations "8-bit" and "7-bit" (exact integer sums, as
with VNNI) and "8-bit AVX2" / "7-bit AVX2" (pair sums saturated to 16 bits). "8-bit" reproducing onnx-int8's figures
on a VNNI CPU checks the emulation; "8-bit AVX2" then stands for an AVX2-only CPU. The emulation replaces the same
products the runtime quantises (ser.inference.onnx_runtime.small_products: weights of 256 x 256 entries or more).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn

from _common import ROOT, fold_model, run_clips, table, write_result  # noqa: I001
from default_runtimes import compare, cpu, every_nth

SMALLEST = 256 * 256  # ser.inference.onnx_runtime.small_products: smaller products stay float32
INT16 = torch.iinfo(torch.int16)  # where AVX2 without VNNI saturates the sum of two u8 x s8 products


class EmulatedLinear(nn.Module):
    """A linear layer computed as ONNX Runtime's dynamically quantised MatMul, integer sums exact or saturated."""

    def __init__(self, linear: nn.Linear, bits: int, saturate: bool):
        super().__init__()
        weight = linear.weight.detach().T.double()  # (K, N): the graph's constant B
        qmax = 127 if bits == 8 else 64  # ONNX Runtime's symmetric int8 range, and its reduced range
        scale = weight.abs().amax(0) / qmax
        scale[scale == 0] = 1.0
        self.qb = torch.clamp(torch.round(weight / scale), -qmax, qmax).to(torch.int32)
        self.scale_b, self.column_sums = scale, self.qb.sum(0).long()
        self.bias = None if linear.bias is None else linear.bias.detach()
        self.saturate = saturate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1]).double()
        low, high = min(0.0, rows.min().item()), max(0.0, rows.max().item())  # DynamicQuantizeLinear
        scale_a = (high - low) / 255 if high > low else 1.0
        zero_a = int(np.clip(np.round(-low / scale_a), 0, 255))
        qa = torch.clamp(torch.round(rows / scale_a) + zero_a, 0, 255).to(torch.int32)
        if self.saturate:
            sums = torch.empty(qa.shape[0], self.qb.shape[1], dtype=torch.int64)
            even, odd = self.qb[0::2], self.qb[1::2]
            for i in range(0, qa.shape[0], 16):  # (16, K/2, N) pair sums at a time
                a = qa[i:i + 16]
                pairs = a[:, 0::2, None] * even[None] + a[:, 1::2, None] * odd[None]
                sums[i:i + 16] = pairs.clamp_(INT16.min, INT16.max).sum(1)
        else:
            sums = (qa.double() @ self.qb.double()).long()
        out = ((sums - zero_a * self.column_sums[None]).double() * (scale_a * self.scale_b)[None]).float()
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], -1)


def emulated(model: nn.Module, bits: int, saturate: bool) -> int:
    """Swaps the large linear layers of `model` (in place) for emulated ones; returns how many."""
    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Linear) and child.weight.numel() >= SMALLEST:
                if child.weight.shape[1] % 2:
                    raise SystemExit(f"{name}: an odd number of inputs; the pair emulation assumes an even one")
                setattr(parent, name, EmulatedLinear(child, bits, saturate))
                count += 1
    return count


VARIANTS = {"8-bit": (8, False), "8-bit AVX2": (8, True), "7-bit": (7, False), "7-bit AVX2": (7, True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=str, default=str(ROOT / "runs" / "mixture"))
    parser.add_argument("--folds", type=int, default=2)
    parser.add_argument("--clips", type=int, default=100, help="held-out clips in all, split evenly over the folds")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--name", help="results file name (default: int8_kernels-<run folder name>)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from pathlib import Path

    from ser.reporting import results as results_file
    from ser.core.audio import load_audio
    from ser.inference.predictor import EmotionPredictor

    run = Path(args.run).resolve()
    results = results_file.read(run)
    clips = run_clips(results)
    folds = results["runs"][0]["folds"][:args.folds]
    processor = cpu()
    print(f"CPU: {processor['model']}; " + ", ".join(f"{f} {'yes' if has else 'no'}"
                                                   for f, has in processor["flags"].items()))
    pooled: dict[str, list] = {}
    for fold in folds:
        speakers = set(fold["test_speakers"])
        chosen = every_nth([c for c in clips if c.speaker in speakers], max(1, args.clips // len(folds)))
        audio = [load_audio(c.path) for c in chosen]
        model = fold_model(run, results, fold["name"])
        for variant in ["fp32", "onnx-int8", *VARIANTS]:
            start = time.perf_counter()
            if variant in VARIANTS:
                predictor = EmotionPredictor.from_pretrained(model, runtime="fp32")
                replaced = emulated(predictor.model, *VARIANTS[variant])
            else:
                predictor, replaced = EmotionPredictor.from_pretrained(model, runtime=variant), 0
            pooled.setdefault(variant, []).extend(predictor.classify_batch(audio))
            print(f"{fold['name']}: {variant} ({replaced} products emulated) {time.perf_counter() - start:.0f} s",
                  flush=True)
    reference = pooled.pop("fp32")
    rows = [{"variant": variant, "clips": len(probs), **compare(probs, reference)} for variant, probs in pooled.items()]
    print(table(rows, ["variant", "clips", "top1_agreement", "max_abs_prob_diff", "mean_abs_prob_diff"],
                {"top1_agreement": ".3f", "max_abs_prob_diff": ".3g", "mean_abs_prob_diff": ".3g"}))
    write_result("int8_kernels", {"cpu": processor, "run": args.run, "folds": [f["name"] for f in folds],
                                  "threads": args.threads, "agreement": rows},
                 name=args.name or f"int8_kernels-{run.name}")


if __name__ == "__main__":
    main()
