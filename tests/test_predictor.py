"""EmotionPredictor on tiny saved models and real Emo-DB clips: exact probabilities, runtimes, resampling, bad
input, and the streaming timeline (row layout, silence, flat memory on a 10-minute recording)."""

import json
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch
from matplotlib.figure import Figure

import modeling_ser
from helpers import EMODB, ROOT, TINY_SPECS, require
from ser.core.audio import AudioError, load_audio
from ser.training.encoders import scratch_model
from ser.inference.predictor import EmotionPredictor
from ser.inference import rows as outputs
from ser.inference import timeline

LABELS = ["angry", "happy", "neutral", "sad"]
CLIPS = ["03a01Wa.wav", "03a02Ta.wav", "03a04Fd.wav", "03a05Aa.wav", "03a02Wb.wav", "03a01Nc.wav"]
HEADS = {
    # saved as the stock Wav2Vec2ForSequenceClassification (SUPERB recipe)
    "stock": ("wav2vec2", {"pooling": "mean", "feature_layer": "weighted"}),
    # saved with modeling_ser.py: stats pooling and a hidden layer
    "custom": ("hubert", {"pooling": "stats", "head_hidden_sizes": [16], "feature_layer": 1}),
    # log-mel front end (input_features) with a custom head
    "custom-w2vbert": ("wav2vec2-bert", {"pooling": "stats", "head_hidden_sizes": [16]}),
    # WavLM's attention reads its projection weights directly: int8 must leave those layers alone
    "custom-wavlm": ("wavlm", {"pooling": "attentive"}),
    # the compact 2-D CNN that computes its own log-mels (always saved with its code)
    "custom-cnn": ("logmel-cnn", {"pooling": "stats"}),
}
SR = 16000


def save_tiny_model(folder, family, **head):
    torch.manual_seed(0)
    model, fe = scratch_model(TINY_SPECS[family], LABELS, head_dropout=0.0, **head)
    torch.nn.init.normal_(model.classifier.weight, std=0.5)  # probabilities clearly apart, not saturated
    if family == "logmel-cnn":  # the log-mel statistics training would save
        model.set_global_statistics([torch.from_numpy(load_audio(clip_path(c))) for c in CLIPS])
    model.eval()
    model.save_pretrained(folder)
    fe.save_pretrained(folder)
    return model, fe


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    out = {}
    for kind, (family, head) in HEADS.items():
        model, fe = save_tiny_model(root / kind, family, **head)
        out[kind] = (model, fe, root / kind)
    return out


@pytest.fixture(scope="module")
def predictors(saved):
    """fp32, named: the default runtime ("onnx") exports each model first; the runtimes are tested below and in
    test_runtime_onnx.py."""
    return {kind: EmotionPredictor.from_pretrained(folder, runtime="fp32") for kind, (_, _, folder) in saved.items()}


def clip_path(name):
    return require(EMODB / "wav") / name


def own_softmax(model, fe, audio):
    with torch.no_grad():
        return model(**fe([audio], sampling_rate=SR, return_tensors="pt")).logits.softmax(-1)[0].numpy()


def assert_distribution(scores):
    assert list(scores) == LABELS
    assert all(isinstance(p, float) and 0.0 <= p <= 1.0 for p in scores.values())
    assert sum(scores.values()) == pytest.approx(1.0, abs=1e-5)


# --- loading and exact probabilities -----------------------------------------------------------------------------


def test_loads_stock_and_custom_heads_through_from_pretrained(saved, predictors):
    assert not (saved["stock"][2] / "modeling_ser.py").exists()
    assert type(predictors["stock"].model).__name__ == "Wav2Vec2ForSequenceClassification"
    assert isinstance(predictors["custom"].model, modeling_ser.HubertForEmotion)
    assert isinstance(predictors["custom-w2vbert"].model, modeling_ser.Wav2Vec2BertForEmotion)
    for predictor in predictors.values():
        assert predictor.labels == LABELS


def test_wrapping_a_model_leaves_it_untouched(saved):
    model, fe, _ = saved["custom"]
    encoder = model.hubert.feature_extractor
    predictor = EmotionPredictor(model, fe, runtime="fp32")
    assert model.hubert.feature_extractor is encoder  # the predictor rewires its own copy
    assert type(predictor.model.hubert.feature_extractor).__name__ == "TimeMajorFeatureEncoder"
    assert predictor.model.classifier.weight is model.classifier.weight  # ...which shares the weights


@pytest.mark.parametrize("kind", list(HEADS))
def test_probabilities_equal_the_models_own_softmax(kind, saved, predictors):
    model, fe, _ = saved[kind]
    predictor = predictors[kind]
    paths = [clip_path(name) for name in CLIPS[:4]]
    audio = [load_audio(path) for path in paths]
    expected = [own_softmax(model, fe, a) for a in audio]
    assert np.ptp(np.array(expected), axis=0).max() > 100 * 1e-5  # clips differ far more than the tolerance
    batch = predictor.classify_batch(audio)  # different lengths: padded batches
    for path, a, want, got in zip(paths, audio, expected, batch):
        for scores in (got, predictor.classify_file(path), predictor.classify_array(a, SR)):
            assert_distribution(scores)
            np.testing.assert_allclose([scores[label] for label in LABELS], want, atol=1e-5, rtol=0)


# --- runtimes: plumbing on these random-weight models (how close int8 and bf16 come to fp32 depends on the CPU's
# kernels, so it is tested on the trained default model, with tolerances from the formats: test_runtime_onnx.py) ---


@pytest.mark.parametrize("kind", ["stock", "custom", "custom-wavlm", "custom-w2vbert", "custom-cnn"])
def test_int8_runtime_quantises_the_linear_layers(kind, saved):
    """Every linear layer of the encoder (and a stock head's) becomes a dynamically quantised one with int8 weights,
    one scale per output channel, but for WavLM's attention projections (read as tensors by a fused kernel); our
    heads' small layers (HeadLinear) stay float32, and so does the log-mel CNN, which has no other. The predictor
    still gives a probability over the model's labels for every clip."""
    from torch.ao.nn.quantized.dynamic import Linear as QuantisedLinear

    folder = saved[kind][2]
    fp32, int8 = (EmotionPredictor.from_pretrained(folder, runtime=r) for r in ("fp32", "int8"))  # as saved: "stock"
    quantised = {name: module for name, module in int8.model.named_modules() if isinstance(module, QuantisedLinear)}
    plain = {name for name, module in fp32.model.named_modules() if type(module) is torch.nn.Linear}  # no HeadLinear
    fused = {name for name in plain if kind == "custom-wavlm" and ".attention." in name}
    assert set(quantised) == plain - fused and (kind == "custom-cnn") == (not quantised)
    for module in quantised.values():
        weight = module.weight()
        assert weight.dtype == torch.qint8 and weight.q_per_channel_scales().numel() == weight.shape[0]
    for scores in int8.classify_batch([load_audio(clip_path(name)) for name in CLIPS]):
        assert_distribution(scores)


def test_bf16_runtime_computes_in_bfloat16(saved):
    """Under bf16 the linear layers compute in bfloat16 (autocast) and the predictor still gets float32 logits and
    a probability over the model's labels."""
    _, _, folder = saved["custom"]
    bf16 = EmotionPredictor.from_pretrained(folder, runtime="bf16")
    dtypes = []
    hooks = [module.register_forward_hook(lambda _, __, out: dtypes.append(out.dtype))
             for module in bf16.model.modules() if isinstance(module, torch.nn.Linear)]
    try:
        rows = bf16.classify_batch([load_audio(clip_path(name)) for name in CLIPS[:2]])
    finally:
        for hook in hooks:
            hook.remove()
    assert dtypes and set(dtypes) == {torch.bfloat16}
    for scores in rows:
        assert_distribution(scores)


ZEN3_FLAGS = {"fpu", "sse2", "avx", "avx2", "fma", "bmi2", "sha_ni", "vaes", "vpclmulqdq"}  # AMD EPYC Zen 3: AVX2 only


def test_bf16_warns_where_the_cpu_has_no_native_bf16(saved, tmp_path, monkeypatch):
    """bf16 is emulated without AVX512-BF16 or AMX-BF16: selecting it warns with the measured slowdown (and still
    works); with either, or on a CPU whose flags are unknown, it says nothing. The flags come from /proc/cpuinfo."""
    import warnings

    from ser.inference import runtime

    assert "6.6x slower than fp32" in runtime.bf16_warning(ZEN3_FLAGS)
    for flags in (ZEN3_FLAGS | {"avx512f", "avx512_bf16"}, ZEN3_FLAGS | {"amx_bf16", "amx_tile"}, set(),
                  {"fp", "asimd", "bf16"}):  # (the last: an Arm CPU's Features)
        assert runtime.bf16_warning(flags) is None, flags
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: AMD EPYC 7R13 Processor\nflags\t\t: " + " ".join(ZEN3_FLAGS)
                       + "\n\nprocessor\t: 1\nflags\t\t: other\n")
    assert runtime.cpu_flags(cpuinfo) == ZEN3_FLAGS and runtime.cpu_flags(tmp_path / "none") == set()

    _, _, folder = saved["custom"]
    monkeypatch.setattr(runtime, "cpu_flags", lambda: frozenset(ZEN3_FLAGS))
    with pytest.warns(runtime.SlowRuntimeWarning, match="6.6x slower than fp32 on an AVX2-only AMD Zen 3"):
        bf16 = EmotionPredictor.from_pretrained(folder, runtime="bf16")
    assert_distribution(bf16.classify_array(load_audio(clip_path(CLIPS[0])), SR))
    monkeypatch.setattr(runtime, "cpu_flags", lambda: frozenset(ZEN3_FLAGS | {"avx512_bf16"}))
    with warnings.catch_warnings():
        warnings.simplefilter("error", runtime.SlowRuntimeWarning)
        for name in ("bf16", "fp32", "int8"):
            EmotionPredictor.from_pretrained(folder, runtime=name)
    monkeypatch.setattr(runtime, "cpu_flags", lambda: frozenset(ZEN3_FLAGS))
    with warnings.catch_warnings():
        warnings.simplefilter("error", runtime.SlowRuntimeWarning)
        EmotionPredictor.from_pretrained(folder, runtime="int8")  # only bf16 is emulated


def test_the_default_runtime_is_the_exact_onnx_one():
    """The predictor, predict_ser.py and the demo default to ser.core.defaults.RUNTIME: "onnx", float32 like fp32."""
    import inspect

    import predict_ser
    from ser.core import defaults

    assert defaults.RUNTIME == "onnx"
    assert inspect.signature(EmotionPredictor.from_pretrained).parameters["runtime"].default == "onnx"
    assert inspect.signature(EmotionPredictor).parameters["runtime"].default == "onnx"
    assert predict_ser.parse_args(["clip.wav"]).runtime == "onnx"


def test_stereo_44k_and_8k_inputs(tmp_path, predictors):
    predictor = predictors["stock"]
    speech = load_audio(clip_path(CLIPS[0]))
    reference = predictor.classify_array(speech, SR)

    left = soxr.resample(speech, SR, 44100).astype(np.float32)
    stereo = np.stack([left, 0.5 * left], axis=1)  # (n, 2)
    sf.write(tmp_path / "stereo.wav", stereo, 44100, subtype="FLOAT")
    from_file = predictor.classify_file(tmp_path / "stereo.wav")
    from_array = predictor.classify_array(stereo, 44100)
    pcm16 = predictor.classify_array((stereo * 32767).astype(np.int16), 44100)
    for scores in (from_file, from_array, pcm16):
        assert_distribution(scores)
        assert max(scores, key=scores.get) == max(reference, key=reference.get)
    for label in LABELS:
        assert from_array[label] == pytest.approx(from_file[label], abs=1e-5)
        assert pcm16[label] == pytest.approx(from_array[label], abs=1e-3)

    narrow = soxr.resample(speech, SR, 8000).astype(np.float32)
    sf.write(tmp_path / "narrow.flac", narrow, 8000)
    for scores in (predictor.classify_file(tmp_path / "narrow.flac"), predictor.classify_array(narrow, 8000)):
        assert_distribution(scores)


# --- bad input ---------------------------------------------------------------------------------------------------


def write_bad_file(tmp_path, case):
    path = tmp_path / f"{case}.wav"
    noise = np.random.default_rng(0).normal(0, 0.1, SR * 61).astype(np.float32)
    if case == "empty":
        sf.write(path, np.zeros(0, np.float32), SR)
    elif case == "silent":
        sf.write(path, np.zeros(2 * SR, np.float32), SR)
    elif case == "too-short":
        sf.write(path, noise[: SR // 10], SR)
    elif case == "too-long":
        sf.write(path, noise, SR)
    elif case == "corrupt":
        path.write_bytes(b"RIFF" + np.random.default_rng(1).bytes(3000))
    elif case == "text":
        path = tmp_path / "notes.txt"
        path.write_text("not audio at all\n" * 50)
    elif case == "missing":
        path = tmp_path / "nowhere.wav"
    return path


BAD_FILES = {
    "empty": (AudioError, "empty"),
    "silent": (ValueError, "silent"),
    "too-short": (ValueError, "too short"),
    "too-long": (ValueError, "timeline"),
    "corrupt": (AudioError, "not (a )?readable"),
    "text": (AudioError, "not (a )?readable"),  # with or without an ffmpeg fallback
    "missing": (AudioError, "no such audio file"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_files_raise_clear_errors(case, tmp_path, predictors):
    error, message = BAD_FILES[case]
    path = write_bad_file(tmp_path, case)
    with pytest.raises(error, match=message) as info:
        predictors["stock"].classify_file(path)
    assert path.name in str(info.value)


def test_bad_arrays_raise_clear_errors(predictors):
    predictor = predictors["stock"]
    speech = load_audio(clip_path(CLIPS[0]))
    with_nan = speech.copy()
    with_nan[100] = np.nan
    cases = [
        (np.zeros(0, np.float32), SR, "empty"),
        (np.zeros(SR, np.float32), SR, "silent"),
        (np.full(SR, 1e-4, np.float32), SR, "silent"),
        (speech[:2000], SR, "too short"),
        (np.tile(speech, 40), SR, "too long"),
        (with_nan, SR, "NaN"),
        (speech.tolist(), SR, "numpy array"),
        ("clip.wav", SR, "numpy array"),
        (speech.astype(np.complex64), SR, "dtype"),
        (speech.reshape(1, 1, -1), SR, "shape"),
        (np.stack([speech, speech]), SR, "transpose"),  # (channels, samples)
        (speech, 0, "sampling_rate"),
        (speech, 16000.0, "sampling_rate"),
    ]
    for array, rate, message in cases:
        with pytest.raises(ValueError, match=message):
            predictor.classify_array(array, rate)
    for batch, message in [(speech, "list"), ([speech, speech.reshape(-1, 1)], "clip 1"),
                           ([speech, with_nan], "clip 1: audio contains NaN")]:
        with pytest.raises(ValueError, match=message):
            predictor.classify_batch(batch)


def test_missing_model_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        EmotionPredictor.from_pretrained(str(tmp_path / "no-model"))
    with pytest.raises(FileNotFoundError, match="not found"):
        EmotionPredictor.from_pretrained("models/no-such-model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        EmotionPredictor.from_pretrained(str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="runtime"):
        EmotionPredictor.from_pretrained(str(tmp_path / "empty"), runtime="fp8")


# --- timeline ----------------------------------------------------------------------------------------------------


def write_recording(path, seconds, gap_seconds=4.0):
    """Real clips separated by near-silent gaps (noise at -80 dBFS), written block by block so that the test holds
    one clip at a time. Returns the (start, end) sample span of each clip's loudest 0.1 s and of each gap."""
    total = int(seconds * SR)
    names = sorted(p.name for p in require(EMODB / "wav").glob("*.wav"))[:20]
    rng = np.random.default_rng(0)
    loud, gaps, written, i = [], [], 0, 0
    with sf.SoundFile(path, "w", SR, 1, "PCM_16") as out:
        while written < total:
            clip = load_audio(EMODB / "wav" / names[i % len(names)])
            peak = int(np.argmax(np.abs(clip)))
            loud.append((written + max(peak - 800, 0), written + peak + 800))
            gap = rng.normal(0, 1e-4 / 3, int(gap_seconds * SR)).astype(np.float32)
            gaps.append((written + clip.size, written + clip.size + gap.size))
            for part in (clip, gap):
                part = part[: total - written]
                out.write(part)
                written += part.size
            i += 1
    return [s for s in loud if s[1] <= total], [g for g in gaps if g[1] <= total]


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    folder = tmp_path_factory.mktemp("recordings")
    out = {}
    for minutes in (2, 10):
        path = folder / f"{minutes}min.wav"
        out[minutes] = (path, *write_recording(path, minutes * 60))
    return out


def overlap(row, span):
    return min(row.end, span[1] / SR) - max(row.start, span[0] / SR)


def test_timeline_on_a_ten_minute_recording(recordings, predictors, tmp_path):
    path, loud, gaps = recordings[10]
    predictor = predictors["stock"]
    rows = list(predictor.timeline(path, max_segment_seconds=6.0))
    assert all(a.end <= b.start for a, b in zip(rows, rows[1:]))  # in time order, no overlap
    for row in rows:
        assert 0.25 <= row.seconds <= 6.0 + 1e-9
        assert_distribution(row.scores)
        assert row.label == max(row.scores, key=row.scores.get)
        assert row.uncertain == (max(row.scores.values()) < predictor.uncertain_below)
    for span in loud:  # every clip's loudest moment is in a segment ...
        assert any(overlap(row, span) > 0.09 for row in rows)
    for a, b in gaps:  # ... and the middle of a gap (noise at -80 dBFS) in none
        assert not any(overlap(row, (a + SR // 2, b - SR // 2)) > 0 for row in rows)

    outputs.write(rows, predictor.labels, tmp_path / "t.csv")
    lines = (tmp_path / "t.csv").read_text().splitlines()
    assert lines[0] == "start,end,label,uncertain," + ",".join(LABELS) and len(lines) == len(rows) + 1
    outputs.write(rows, predictor.labels, tmp_path / "t.jsonl")
    jsonl = (tmp_path / "t.jsonl").read_text().splitlines()
    assert [outputs.from_dict(json.loads(line)) for line in jsonl] == rows
    summary = predictor.summarise(rows)
    figure = predictor.plot_timeline(summary, tmp_path / "t.png", title="ten minutes")
    assert isinstance(figure, Figure)
    assert (tmp_path / "t.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sum(summary.shares.values()) == pytest.approx(1.0)
    assert summary.speech_seconds == pytest.approx(sum(r.seconds for r in rows))

    rows = list(predictor.timeline(path, max_segment_seconds=1.0))  # clips in pieces: stretches of several rows
    smoothed = list(predictor.timeline(path, max_segment_seconds=1.0, smooth_seconds=30.0))
    assert [(r.start, r.end) for r in smoothed] == [(r.start, r.end) for r in rows]
    # each row's smoothed scores: the duration-weighted mean over the rows of its stretch of speech centred within 15 s
    stretches = timeline.regions(rows)
    stretch = max(stretches, key=len)
    assert len(stretches) > 1 and len(stretch) > 1
    middle = rows.index(stretch[len(stretch) // 2])
    centre = lambda r: (r.start + r.end) / 2  # noqa: E731
    near = [r for r in stretch if abs(centre(r) - centre(rows[middle])) <= 15.0]
    weights = np.array([r.seconds for r in near])
    want = weights @ np.array([[r.scores[label] for label in LABELS] for r in near]) / weights.sum()
    np.testing.assert_allclose([smoothed[middle].scores[label] for label in LABELS], want, atol=1e-9)
    alone = [i for i, r in enumerate(rows) if len(next(s for s in stretches if r in s)) == 1]
    assert all(smoothed[i] == rows[i] for i in alone)  # a stretch of one segment is never smoothed


def test_timeline_segments_match_classify_and_refusals(tmp_path, saved, predictors):
    clips = [load_audio(clip_path(name)) for name in CLIPS[:3]]
    gap = np.zeros(2 * SR, np.float32)
    recording = np.concatenate([gap, clips[0], gap, clips[1], gap, clips[2], gap])
    sf.write(tmp_path / "talk.wav", recording, SR, subtype="FLOAT")
    for kind in ("stock", "custom-w2vbert", "custom-cnn"):
        predictor = predictors[kind]
        rows = list(predictor.timeline(tmp_path / "talk.wav", max_segment_seconds=3.0))
        starts = [2 * SR, 4 * SR + clips[0].size, 6 * SR + clips[0].size + clips[1].size]
        for start, clip in zip(starts, clips):  # each clip is covered by its own rows, nothing of a gap's middle
            inside = [r for r in rows if overlap(r, (start, start + clip.size)) > 0]
            assert inside and inside[0].start >= (start - 0.3 * SR) / SR
            assert inside[-1].end <= (start + clip.size + 0.3 * SR) / SR
        model, fe, _ = saved[kind]
        for row in rows:
            piece = recording[int(round(row.start * SR)): int(round(row.end * SR))]
            want = own_softmax(model, fe, piece)
            np.testing.assert_allclose([row.scores[label] for label in LABELS], want, atol=1e-5, rtol=0)

    stock = predictors["stock"]
    sf.write(tmp_path / "silent.wav", np.zeros(3 * SR, np.float32), SR)
    with pytest.raises(ValueError, match="no speech"):
        list(stock.timeline(tmp_path / "silent.wav"))
    noise = np.random.default_rng(0).normal(0, 0.01, 5 * SR).astype(np.float32)
    sf.write(tmp_path / "noise.wav", noise, SR)
    with pytest.raises(ValueError, match="no speech"):
        list(stock.timeline(tmp_path / "noise.wav"))
    with pytest.raises(ValueError, match="max_segment_seconds"):
        stock.timeline(tmp_path / "talk.wav", max_segment_seconds=0.1)
    with pytest.raises(ValueError, match="smooth_seconds"):
        stock.timeline(tmp_path / "talk.wav", smooth_seconds=-1)
    with pytest.raises(AudioError, match="no such"):
        stock.timeline(tmp_path / "nowhere.wav")


MEMORY_PROBE = textwrap.dedent("""
    import json, resource, sys, tracemalloc
    import torch
    torch.set_num_threads(1)
    from ser.inference.predictor import EmotionPredictor

    predictor = EmotionPredictor.from_pretrained(sys.argv[1], runtime="fp32")
    rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB

    def run(path):
        tracemalloc.start()
        count = sum(1 for _ in predictor.timeline(path))  # rows are consumed, not kept
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        return count, peak

    run(sys.argv[2])  # warm-up: allocator pools, lazily built kernels
    out = {"rss_before": rss()}
    out["rows_short"], out["traced_peak_short"] = run(sys.argv[2])
    out["rss_after_short"] = rss()
    out["rows_long"], out["traced_peak_long"] = run(sys.argv[3])
    out["rss_after_long"] = rss()
    print(json.dumps(out))
""")


@pytest.mark.slow
def test_timeline_memory_stays_flat_for_an_hour_long_recording(recordings, saved, tmp_path):
    """An hour at 16 kHz is 230 MB as float32: streaming must never hold it, nor grow with its length (the 2-minute
    recording against one of 60 minutes)."""
    hour = tmp_path / "60min.wav"
    write_recording(hour, 3600)
    done = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(saved["stock"][2]),
                           str(recordings[2][0]), str(hour)], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    print("timeline memory:", report)
    assert report["rows_short"] > 10 and report["rows_long"] > 25 * report["rows_short"]
    whole_file_mib = 3600 * SR * 4 / 2**20
    assert report["traced_peak_long"] < whole_file_mib / 20  # numpy allocations at their highest: a few MB
    # Independent of the length but for the frame levels the detector keeps (100 float32 a second: 1.4 MB an hour,
    # twice while they are joined) and the largest batch (8 pieces of at most 6 s, padded to the same length),
    # which the long file is likelier to fill with long pieces
    levels_mib = 2 * 3600 * 100 * 4 / 2**20
    one_batch_mib = 8 * 6 * SR * 4 / 2**20
    assert report["traced_peak_long"] - report["traced_peak_short"] < levels_mib + one_batch_mib
    assert report["rss_after_long"] - report["rss_before"] < 30  # process peak grows by far less than the file


@pytest.mark.parametrize("kind", ["stock", "custom-cnn"])
def test_calibration_temperature_is_applied_once(kind, saved, tmp_path):
    """Our classes divide their logits by the saved temperature in eval mode (so the stock pipeline gets calibrated
    scores too); a head saved as a stock class cannot, so the predictor does it. Either way: exactly once."""
    model, fe, folder = saved[kind]
    config = json.loads((folder / "config.json").read_text())
    calibrated = tmp_path / kind
    shutil.copytree(folder, calibrated)
    (calibrated / "config.json").write_text(json.dumps({**config, "calibration_temperature": 2.5}))
    audio = load_audio(clip_path(CLIPS[0]))
    with torch.no_grad():
        raw = model(**fe([audio], sampling_rate=SR, return_tensors="pt")).logits[0]
    want = torch.softmax(raw / 2.5, dim=-1).numpy()
    scores = EmotionPredictor.from_pretrained(calibrated, runtime="fp32").classify_batch([audio])[0]
    np.testing.assert_allclose([scores[label] for label in LABELS], want, atol=1e-5, rtol=0)
    assert not np.allclose(want, torch.softmax(raw, dim=-1).numpy(), atol=1e-3)  # the temperature matters here


def test_speaker_statistics_for_a_speaker_normalised_model(tmp_path):
    """--same-speaker end to end on a tiny speaker-normalised model: the statistics equal the model's own
    speech_statistics over the same clips, are refused under min_speaker_seconds of speech, and are used."""
    from ser.core.statistics import LogMelFrames, RunningStatistics

    torch.manual_seed(0)
    model, fe = scratch_model(TINY_SPECS["logmel-cnn"], LABELS, pooling="stats", normalisation="speaker")
    torch.nn.init.normal_(model.classifier.weight, std=0.5)
    model.eval().save_pretrained(tmp_path / "spk")
    fe.save_pretrained(tmp_path / "spk")
    predictor = EmotionPredictor.from_pretrained(tmp_path / "spk", runtime="fp32")
    speaker = sorted((require(EMODB / "wav")).glob("03*.wav"))[:12]  # about 30 s of one speaker
    audio = [load_audio(path) for path in speaker]
    stats = predictor.speaker_statistics(audio)
    want = model.cnn.speech_statistics([torch.from_numpy(a) for a in audio])
    np.testing.assert_allclose(stats.numpy(), want.numpy(), atol=1e-4)
    running = RunningStatistics(LogMelFrames(model.cnn.frontend))
    running.add(audio[0])
    assert 0 < running.seconds < predictor.min_speaker_seconds
    with pytest.raises(ValueError, match="too little speech"):
        predictor.speaker_statistics(audio[:1])
    own = predictor.classify_batch(audio[:3])
    adapted = predictor.classify_batch(audio[:3], stats)
    with torch.no_grad():
        logits = model(**fe(audio[:1], sampling_rate=SR, return_tensors="pt"), normalisation_stats=stats[None]).logits
    np.testing.assert_allclose([adapted[0][label] for label in LABELS], logits.softmax(-1)[0].numpy(), atol=1e-5)
    assert any(abs(own[i][label] - adapted[i][label]) > 1e-4 for i in range(3) for label in LABELS)


def test_shortest_clip_follows_the_cnn_and_trimming_never_goes_below_it():
    """A log-mel CNN halves its frames in every block, so it needs hop * (2**blocks - 1) + n_fft samples: the
    predictor takes that as its shortest clip (a clear "too short" below it, never a crash inside the model), and a
    short word in a short clip is classified whole rather than trimmed below it."""
    predictor = EmotionPredictor.from_pretrained(ROOT / "models" / "ser-cnn-mixture", runtime="fp32")  # from scratch
    config = predictor.model.config
    shortest = config.hop_length * (2 ** len(config.conv_channels) - 1) + config.n_fft
    assert config.shortest_input_samples == shortest
    assert predictor.min_seconds == shortest / SR
    speech = load_audio(clip_path(CLIPS[0]))
    assert sum(predictor.classify_array(speech[8000:8000 + shortest], SR).values()) == pytest.approx(1)
    with pytest.raises(ValueError, match="too short"):
        predictor.classify_array(speech[8000:8000 + shortest - 1], SR)
    word = np.zeros(SR // 2, np.float32)
    word[2000:6000] = speech[8000:12000]  # 0.25 s of speech in 0.5 s: trimmed, it would be too short
    assert sum(predictor.classify_array(word, SR).values()) == pytest.approx(1)
