"""The bf16, onnx and onnx-int8 runtimes on tiny saved models of every family and real Emo-DB clips: ONNX Runtime
reproduces torch fp32 under padding and at any batch and length, the exported graphs are cached by the weights and
reused, a model that cannot be exported is refused, and bf16 / int8 give the same top-1 answers as fp32."""

import numpy as np
import pytest
import torch
from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2ForSequenceClassification

from helpers import EMODB, TINY_SPECS, require
from ser.audio import load_audio
from ser.encoders import scratch_model
from ser.onnx_runtime import cache_folder
from ser.predictor import EmotionPredictor
from helpers import WHISPER_SPEC

pytestmark = pytest.mark.slow  # six exports with torch.export: about 2 minutes on 2 shared cores

LABELS = ["angry", "happy", "neutral", "sad"]
CLIPS = ["03a01Wa.wav", "03a02Ta.wav", "03a04Fd.wav", "03a05Aa.wav", "03a02Wb.wav", "03a01Nc.wav"]
MODELS = {  # one per family; heads as in test_predictor
    "wav2vec2-stock": ("wav2vec2", {"pooling": "mean", "feature_layer": "weighted"}),  # saved as the stock class
    "hubert": ("hubert", {"pooling": "stats", "head_hidden_sizes": [16], "feature_layer": 1}),
    "wavlm": ("wavlm", {"pooling": "attentive"}),
    "wav2vec2-bert": ("wav2vec2-bert", {"pooling": "stats", "head_hidden_sizes": [16]}),
    "whisper": ("whisper", {"pooling": "stats"}),
    "logmel-cnn-speaker": ("logmel-cnn", {"pooling": "stats", "normalisation": "speaker"}),
}
SPECS = {**TINY_SPECS, "whisper": WHISPER_SPEC}
LOGIT_TOLERANCE = 1e-4  # ONNX Runtime against torch, both float32: kernels differ in summation order only


@pytest.fixture(scope="module")
def audio():
    return [load_audio(require(EMODB / "wav") / name) for name in CLIPS]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("onnx-models")
    out = {}
    for kind, (family, head) in MODELS.items():
        torch.manual_seed(0)
        model, fe = scratch_model(SPECS[family], LABELS, head_dropout=0.0, **head)
        torch.nn.init.normal_(model.classifier.weight, std=0.5)  # probabilities clearly apart, not saturated
        model.eval().save_pretrained(root / kind)
        fe.save_pretrained(root / kind)
        out[kind] = root / kind
    return out


@pytest.fixture(scope="module")
def onnx_predictors(folders):
    """Loading exports each model once (into <folder>/onnx/<key>/); every test below reuses these graphs."""
    return {kind: EmotionPredictor.from_pretrained(folder, runtime="onnx") for kind, folder in folders.items()}


def torch_logits_alone(predictor_fp32, clip):
    inputs = predictor_fp32.feature_extractor([clip], sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        return predictor_fp32.model(**inputs).logits[0]


@pytest.mark.parametrize("kind", list(MODELS))
def test_onnx_matches_torch_at_any_batch_and_length(kind, folders, onnx_predictors, audio):
    """One padded batch of clips from 1.4 to 3.3 s through the graph = each clip alone, unpadded, through torch."""
    fp32 = EmotionPredictor.from_pretrained(folders[kind])
    onnx = onnx_predictors[kind]
    clips = [audio[0], audio[1][:22000], audio[2], audio[3][:30000]]
    batch = onnx.feature_extractor(clips, sampling_rate=16000, padding=True, return_tensors="pt")
    got = onnx.model(**batch).logits
    want = torch.stack([torch_logits_alone(fp32, clip) for clip in clips])
    assert want.abs().max() > 0.1 and np.ptp(want.numpy(), axis=0).max() > 100 * LOGIT_TOLERANCE
    torch.testing.assert_close(got, want, atol=LOGIT_TOLERANCE, rtol=0)
    # and through the predictor's own API (trimming, batching, calibration), against fp32
    for a, b in zip(onnx.classify_batch(audio), fp32.classify_batch(audio)):
        np.testing.assert_allclose(list(a.values()), list(b.values()), atol=1e-5)


def test_speaker_statistics_go_into_a_second_graph(folders, onnx_predictors, audio):
    fp32 = EmotionPredictor.from_pretrained(folders["logmel-cnn-speaker"])
    onnx = onnx_predictors["logmel-cnn-speaker"]
    stats = fp32.speaker_statistics(audio * 2)  # the six clips hold just under the 10 s of speech needed
    assert torch.equal(stats, onnx.speaker_statistics(audio * 2))  # the torch front end, shared by both
    for a, b in zip(onnx.classify_batch(audio, stats), fp32.classify_batch(audio, stats)):
        np.testing.assert_allclose(list(a.values()), list(b.values()), atol=1e-5)
    assert (onnx.model.cache / "model-stats.onnx").exists()


def test_second_load_reuses_the_cached_graphs(folders, onnx_predictors, audio):
    folder = folders["hubert"]
    first = EmotionPredictor.from_pretrained(folder, runtime="onnx-int8")  # quantises the cached export once
    files = {p: p.stat().st_mtime_ns for p in (folder / "onnx").rglob("*") if p.is_file()}
    assert [p.parent for p in files] == [onnx_predictors["hubert"].model.cache] * len(files)  # one key
    assert {p.name for p in files} >= {"model.onnx", "model.int8.onnx"}
    for runtime in ("onnx", "onnx-int8"):
        again = EmotionPredictor.from_pretrained(folder, runtime=runtime)
        assert {p: p.stat().st_mtime_ns for p in (folder / "onnx").rglob("*") if p.is_file()} == files
    assert again.classify_batch(audio) == first.classify_batch(audio)


def test_a_model_folder_we_cannot_write_to_falls_back_to_the_user_cache(folders, tmp_path, monkeypatch):
    """Here a file stands where the onnx/ folder would go (root, who runs the tests here, writes through chmod)."""
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "onnx").write_text("not a folder")
    monkeypatch.setenv("SER_CACHE", str(tmp_path / "user-cache"))
    assert cache_folder(folder, "abc") == tmp_path / "user-cache" / "onnx" / "abc"
    assert cache_folder(folders["hubert"], "abc") == folders["hubert"] / "onnx" / "abc"
    assert cache_folder("org/hub-model", "abc") == tmp_path / "user-cache" / "onnx" / "abc"  # a Hub id


class SignDependentWav2Vec2(Wav2Vec2ForSequenceClassification):
    """A stock model with Python control flow on a tensor's value, which no traced graph can hold."""

    def forward(self, *args, **kwargs):
        out = super().forward(*args, **kwargs)
        if out.logits.sum() > 0:
            out.logits = -out.logits
        return out


def test_a_model_that_cannot_be_exported_is_refused(tmp_path, monkeypatch):
    """Refused at load with the class named and the exporter's reason, and nothing is left in the cache."""
    monkeypatch.setenv("SER_CACHE", str(tmp_path))  # a model without a folder caches in the user cache
    torch.manual_seed(0)
    config = Wav2Vec2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                            conv_dim=(32, 32, 32), conv_kernel=(10, 4, 4), conv_stride=(5, 4, 4), num_labels=len(LABELS))
    model = SignDependentWav2Vec2(config).eval()
    with pytest.raises(ValueError, match="SignDependentWav2Vec2 cannot be exported to ONNX: "):
        EmotionPredictor(model, Wav2Vec2FeatureExtractor(return_attention_mask=True), runtime="onnx")
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


# largest probability difference from fp32 allowed on these tiny random models (16-wide projections, so one
# rounded activation weighs more than in a real encoder); the benchmarks measure agreement on real model sizes
def test_onnx_int8_agrees_with_fp32_in_top_1(folders, onnx_predictors, audio):
    for kind, folder in folders.items():
        fp32 = EmotionPredictor.from_pretrained(folder).classify_batch(audio)
        fast = EmotionPredictor.from_pretrained(folder, runtime="onnx-int8").classify_batch(audio)
        top = lambda rows: [max(s, key=s.get) for s in rows]  # noqa: E731
        assert top(fast) == top(fp32), kind
        assert max(abs(a[k] - b[k]) for a, b in zip(fast, fp32) for k in LABELS) < 0.1, kind


# bf16 keeps 8 significant bits: every rounding is within 2**-8 of the value. Through the trained default model the
# probabilities move by a few such steps; 16 of them is the tolerance. A random-weight model is no test of it: its
# near-tied logits flip on any rounding, and how they round differs by CPU (AMX-BF16 matrix units or not).
BF16_TOLERANCE = 16 * 2 ** -8


def test_bf16_agrees_with_fp32_on_the_trained_default_model(audio):
    from helpers import ROOT
    from ser.defaults import DEFAULT_MODEL

    fp32, bf16 = (EmotionPredictor.from_pretrained(ROOT / DEFAULT_MODEL, runtime=r) for r in ("fp32", "bf16"))
    for want, got in zip(fp32.classify_batch(audio), bf16.classify_batch(audio)):
        assert max(abs(got[k] - want[k]) for k in want) < BF16_TOLERANCE
        first, second = sorted(want.values())[-2:][::-1]
        if first - second > 2 * BF16_TOLERANCE:  # a clear fp32 answer is bf16's answer too
            assert max(got, key=got.get) == max(want, key=want.get)


def test_the_embedded_default_model_runs_in_onnx_runtime(audio, tmp_path):
    """The trained log-mel CNN (4 blocks: a minimum length the exporter must not fix) exports and gives fp32's
    probabilities on real clips, the shortest one it takes included."""
    import shutil

    from helpers import ROOT
    from ser.defaults import DEFAULT_MODEL

    folder = shutil.copytree(ROOT / DEFAULT_MODEL, tmp_path / "default")  # the graph is cached in the copy
    onnx, fp32 = (EmotionPredictor.from_pretrained(folder, runtime=r) for r in ("onnx", "fp32"))
    shortest = audio[0][8000:8000 + int(round(fp32.min_seconds * 16000))]
    for got, want in zip(onnx.classify_batch([*audio, shortest]), fp32.classify_batch([*audio, shortest])):
        assert max(abs(got[k] - want[k]) for k in want) < 1e-3
