"""predict_ser.py on a tiny saved model: folders of real clips, bad files as error rows, exit codes, timeline."""

import csv
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

import predict_ser
from helpers import EMODB, ROOT, TINY_SPECS, require
from ser.core.audio import load_audio
from ser.training.encoders import scratch_model
from ser.inference.predictor import EmotionPredictor

LABELS = ["angry", "happy", "neutral", "sad"]
CLIPS = ["03a01Wa.wav", "03a02Ta.wav", "03a04Fd.wav"]
SR = 16000
# the default runtime exports an ONNX graph per model on first load; the runtimes have their own tests
# (test_runtime_onnx.py), these are of the command line
FP32 = ["--runtime", "fp32"]


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli") / "tiny-model"
    torch.manual_seed(0)
    model, fe = scratch_model(TINY_SPECS["wav2vec2"], LABELS, pooling="mean", feature_layer="weighted")
    torch.nn.init.normal_(model.classifier.weight, std=0.5)
    model.eval().save_pretrained(folder)
    fe.save_pretrained(folder)
    return folder


@pytest.fixture
def clip_folder(tmp_path):
    """Two WAVs and a FLAC in nested folders, a corrupt WAV, and a text file that a folder scan skips."""
    wav_dir = require(EMODB / "wav")
    (tmp_path / "in" / "sub").mkdir(parents=True)
    shutil.copy(wav_dir / CLIPS[0], tmp_path / "in" / CLIPS[0])
    shutil.copy(wav_dir / CLIPS[1], tmp_path / "in" / "sub" / CLIPS[1])
    sf.write(tmp_path / "in" / "sub" / "third.FLAC", load_audio(wav_dir / CLIPS[2]), SR)
    (tmp_path / "in" / "broken.wav").write_bytes(b"RIFF" + np.random.default_rng(0).bytes(2000))
    (tmp_path / "in" / "notes.txt").write_text("not audio")
    return tmp_path / "in"


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_folder_to_csv_with_error_rows_and_failing_exit_code(model_folder, clip_folder, tmp_path, capsys):
    out = tmp_path / "predictions.csv"
    missing = tmp_path / "missing.wav"
    code = predict_ser.main(["--model", str(model_folder), *FP32, str(clip_folder), str(missing), "--output", str(out)])
    assert code == 1
    stderr = capsys.readouterr().err
    assert "broken.wav" in stderr and "missing.wav" in stderr

    rows = read_csv(out)
    assert list(rows[0]) == ["file", "label", "uncertain", *LABELS, "error"]
    by_name = {row["file"].split("/")[-1]: row for row in rows}
    assert set(by_name) == {CLIPS[0], CLIPS[1], "third.FLAC", "broken.wav", "missing.wav"}
    for name in ("broken.wav", "missing.wav"):
        assert by_name[name]["error"] and name in by_name[name]["error"] and not by_name[name]["label"]
    predictor = EmotionPredictor.from_pretrained(model_folder, runtime="fp32")
    for name in (CLIPS[0], CLIPS[1], "third.FLAC"):
        row = by_name[name]
        assert row["error"] == ""
        scores = {label: float(row[label]) for label in LABELS}
        assert sum(scores.values()) == pytest.approx(1.0, abs=1e-5)
        assert row["label"] == max(scores, key=scores.get)
        assert row["uncertain"] == str(max(scores.values()) < predictor.uncertain_below)
        expected = predictor.classify_file(row["file"])
        assert scores == pytest.approx(expected, abs=1e-6)


def test_subprocess_jsonl_with_int8_runtime_exits_zero(model_folder, tmp_path):
    wav_dir = require(EMODB / "wav")
    out = tmp_path / "out.jsonl"
    done = subprocess.run([sys.executable, str(ROOT / "predict_ser.py"), "--model", str(model_folder),
                           "--runtime", "int8", str(wav_dir / CLIPS[0]), str(wav_dir / CLIPS[1]), "--output", str(out)],
                          capture_output=True, text=True, timeout=300,
                          env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["file"].split("/")[-1] for row in rows] == CLIPS[:2]
    for row in rows:
        assert row["error"] is None and list(row["scores"]) == LABELS
        assert row["label"] == max(row["scores"], key=row["scores"].get)


def test_csv_to_stdout_and_missing_model(model_folder, tmp_path, capsys):
    clip = require(EMODB / "wav") / CLIPS[0]
    assert predict_ser.main(["--model", str(model_folder), *FP32, str(clip)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "file,label,uncertain," + ",".join(LABELS) + ",error" and len(lines) == 2
    assert predict_ser.main(["--model", str(tmp_path / "no-model"), str(clip)]) == 2
    assert "no-model" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        predict_ser.main(["--model", str(model_folder), str(clip), "--output", "out.txt"])


def test_timeline_writes_segments_summary_and_plot(model_folder, tmp_path, capsys):
    speech = [load_audio(require(EMODB / "wav") / name) for name in CLIPS]
    gap = np.zeros(3 * SR, np.float32)
    recording = np.concatenate([speech[0], gap, speech[1], gap, speech[2]])
    sf.write(tmp_path / "talk.wav", recording, SR)
    out, plot = tmp_path / "talk.csv", tmp_path / "talk.png"
    args = ["--model", str(model_folder), *FP32, "--timeline", "--segment", "2", str(tmp_path / "talk.wav"),
            "--output", str(out), "--plot", str(plot)]
    assert predict_ser.main(args) == 0
    err = capsys.readouterr().err
    assert "talk.wav: " in err and " s of speech, mostly " in err and "of the speech time; unsure for " in err
    rows = read_csv(out)
    assert list(rows[0])[:5] == ["file", "start", "end", "label", "uncertain"]
    assert all(float(row["end"]) - float(row["start"]) <= 2.0 + 1e-6 for row in rows)
    gaps = [(speech[0].size / SR + 0.5, (speech[0].size + gap.size) / SR - 0.5)]
    assert not any(float(r["start"]) < gaps[0][1] and float(r["end"]) > gaps[0][0] for r in rows)
    assert all(sum(float(row[label]) for label in LABELS) == pytest.approx(1, abs=1e-5) for row in rows)
    assert plot.read_bytes()[:4] == b"\x89PNG"

    (tmp_path / "bad.wav").write_bytes(b"garbage" * 100)
    assert predict_ser.main(args[:4] + ["--timeline", str(tmp_path / "bad.wav"), "--output", str(out)]) == 1
    assert "bad.wav" in capsys.readouterr().err
    assert read_csv(out)[0]["error"]


def test_timeline_with_words_writes_each_segments_text(tmp_path, capsys):
    """--timeline --words on the default model: a text column with the German sentences; --words asks for
    --timeline, and a model without a decoder says so."""
    speech = [load_audio(require(EMODB / "wav") / name) for name in CLIPS[:2]]
    gap = np.zeros(SR, np.float32)
    sf.write(tmp_path / "talk.wav", np.concatenate([speech[0], gap, speech[1]]), SR)
    out = tmp_path / "talk.csv"
    assert predict_ser.main(["--timeline", "--words", "--language", "de", str(tmp_path / "talk.wav"),
                             "--output", str(out)]) == 0
    rows = read_csv(out)
    assert list(rows[0])[-2:] == ["text", "error"] and len(rows) == 2
    assert "Lappen" in rows[0]["text"]
    with pytest.raises(SystemExit):
        predict_ser.main(["--words", str(tmp_path / "talk.wav")])
    cnn = ROOT / "models" / "ser-cnn-emodb"
    assert predict_ser.main(["--model", str(cnn), "--timeline", "--words", str(tmp_path / "talk.wav")]) == 2
    assert "no decoder" in capsys.readouterr().err


def test_same_speaker_needs_a_speaker_normalised_model(model_folder, tmp_path, capsys):
    clip = require(EMODB / "wav") / CLIPS[0]
    assert predict_ser.main(["--model", str(model_folder), *FP32, "--same-speaker", str(clip),
                             "--output", str(tmp_path / "o.csv")]) == 1
    assert "speaker normalisation" in capsys.readouterr().err


def test_same_speaker_adapts_a_speaker_normalised_model(tmp_path):
    """All inputs decoded once for the speaker's statistics, which every clip is then classified with; a file that
    cannot be read is reported in its row and leaves the others alone."""
    torch.manual_seed(0)
    model, fe = scratch_model(TINY_SPECS["logmel-cnn"], LABELS, pooling="stats", normalisation="speaker")
    torch.nn.init.normal_(model.classifier.weight, std=0.5)
    model.eval().save_pretrained(tmp_path / "spk")
    fe.save_pretrained(tmp_path / "spk")
    speaker = tmp_path / "speaker"
    speaker.mkdir()
    for path in sorted(require(EMODB / "wav").glob("03*.wav"))[:12]:  # about 30 s of one speaker
        shutil.copy(path, speaker / path.name)
    (speaker / "broken.wav").write_bytes(b"RIFF" + np.random.default_rng(0).bytes(2000))
    out = tmp_path / "o.csv"
    assert predict_ser.main(["--model", str(tmp_path / "spk"), *FP32, "--same-speaker", str(speaker),
                             "--output", str(out)]) == 1
    rows = {row["file"].split("/")[-1]: row for row in read_csv(out)}
    assert rows["broken.wav"]["error"] and not rows["broken.wav"]["label"]
    predictor = EmotionPredictor.from_pretrained(tmp_path / "spk", runtime="fp32")
    names = sorted(name for name in rows if name != "broken.wav")
    audio = [predictor.load_file(speaker / name) for name in names]
    expected = predictor.classify_batch(audio, predictor.speaker_statistics(audio))
    for name, scores in zip(names, expected):
        assert {label: float(rows[name][label]) for label in LABELS} == pytest.approx(scores, abs=1e-6)
