"""The emotion model classes: shapes, learning, exact padding, freezing, saving and loading."""


import numpy as np
import pytest
import torch
from huggingface_hub.errors import StrictDataclassError
from transformers import AutoModelForAudioClassification, Wav2Vec2Model

import modeling_ser
from helpers import FAMILIES, TINY_SPECS, run_fresh_pipelines
from ser.training.encoders import feature_extractor_for, scratch_model
import speech_ser as speech_detection

LABELS = ["angry", "sad"]
LAYERS = ["last", "weighted", 1]
STEPS, LR = 25, 3e-3


def layers_of(family):
    return ["last"] if family == "logmel-cnn" else LAYERS  # the CNN's blocks differ in size: last layer only


def frontend_prefix(model, family):
    """Parameters that freeze_feature_encoder freezes."""
    frontend = {"wav2vec2-bert": "feature_projection", "logmel-cnn": "blocks.0"}.get(family, "feature_extractor")
    return f"{model.base_model_prefix}.{frontend}."


def batch(feature_extractor, audio, seconds=1.0):
    clips = [a[: int(seconds * 16000)] for a in audio]
    return feature_extractor(clips, sampling_rate=16000, padding=True, return_tensors="pt")


@pytest.mark.parametrize("pooling", modeling_ser.POOLINGS)
@pytest.mark.parametrize("family,layer", [(f, layer) for f in FAMILIES for layer in layers_of(f)])
def test_shapes_and_loss_falls_on_real_clips(family, pooling, layer, emodb_clips):
    """The model learns 4 real clips. From an unlucky start such a tiny model can settle on the uniform guess (seen
    once for hubert-last-attentive, in one process of the full suite: CPU kernels are not bitwise reproducible
    across processes), so a second start is allowed."""
    audio, labels = emodb_clips
    for seed in (0, 1):
        torch.manual_seed(seed)
        losses = train_briefly(family, pooling, layer, audio, torch.tensor(labels))
        if min(losses[-5:]) < losses[0] * 0.8:
            break
    assert min(losses[-5:]) < losses[0] * 0.8, losses


def train_briefly(family, pooling, layer, audio, labels) -> list[float]:
    model, fe = scratch_model(TINY_SPECS[family], LABELS, pooling=pooling, feature_layer=layer,
                              head_hidden_sizes=[16], head_dropout=0.0)
    inputs = batch(fe, audio)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    losses = []
    for _ in range(STEPS):
        out = model(**inputs, labels=labels)
        assert out.logits.shape == (4, 2)
        losses.append(out.loss.item())
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    return losses


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("pooling", modeling_ser.POOLINGS)
def test_padded_batch_matches_each_clip_alone(family, pooling, emodb_clips):
    torch.manual_seed(0)
    model, fe = scratch_model(TINY_SPECS[family], LABELS, pooling=pooling, feature_layer=layers_of(family)[-1])
    torch.nn.init.normal_(model.classifier.weight, std=3.0)  # logits far from 0, so a match means something
    model.eval()
    audio, _ = emodb_clips
    clips = [audio[0][:16000], audio[1][:9000], audio[2][:12500]]
    with torch.no_grad():
        padded = model(**fe(clips, sampling_rate=16000, padding=True, return_tensors="pt")).logits
        alone = torch.cat([model(**fe([c], sampling_rate=16000, return_tensors="pt")).logits for c in clips])
    assert padded.abs().max() > 0.1
    torch.testing.assert_close(padded, alone, atol=1e-5, rtol=1e-6)  # float32 rounding on large logits


@pytest.mark.parametrize("family", FAMILIES)
def test_freezing_leaves_frozen_parameters_unchanged(family, emodb_clips):
    audio, labels = emodb_clips
    for flag in ("freeze_feature_encoder", "freeze_backbone"):
        model, fe = scratch_model(TINY_SPECS[family], LABELS, **{flag: True})
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
        model(**batch(fe, audio), labels=torch.tensor(labels)).loss.backward()
        optimizer.step()
        prefix = model.base_model_prefix + "." if flag == "freeze_backbone" else frontend_prefix(model, family)
        for name, param in model.named_parameters():
            frozen = name.startswith(prefix)
            assert param.requires_grad != frozen, name
            assert torch.equal(param, before[name]) == frozen, name


def test_bad_head_options_fail_at_construction():
    spec = TINY_SPECS["wav2vec2"]
    with pytest.raises(ValueError, match="pooling"):
        scratch_model(spec, LABELS, pooling="max")
    with pytest.raises(ValueError, match="feature_layer"):
        scratch_model(spec, LABELS, feature_layer=7)
    with pytest.raises(ValueError, match="feature_layer"):
        scratch_model(spec, LABELS, feature_layer="first")
    with pytest.raises(ValueError, match="feature_layer"):
        scratch_model(TINY_SPECS["logmel-cnn"], LABELS, feature_layer="weighted")
    with pytest.raises(StrictDataclassError, match="normalisation"):
        scratch_model(TINY_SPECS["logmel-cnn"], LABELS, normalisation="corpus")


def save(tmp_path, family, **head_options):
    torch.manual_seed(0)
    model, fe = scratch_model(TINY_SPECS[family], ["angry", "happy", "neutral", "sad"], **head_options)
    torch.nn.init.normal_(model.classifier.weight, std=3.0)
    model.eval()
    folder = tmp_path / f"{family}-model"
    model.save_pretrained(folder)
    fe.save_pretrained(folder)
    return model, fe, folder


CASES = [(f, h) for f in FAMILIES for h in (["mean", "mlp"] if f == "logmel-cnn" else ["stock", "mlp"])]


def test_saved_models_load_in_stock_pipeline_in_a_fresh_process(tmp_path, emodb_clips):
    """A SUPERB-style head is saved as the stock class; any other (and every logmel-cnn, which has no stock class)
    with its code. Every family and head loads in one fresh process (it imports transformers once) and gives the
    saved model's own probabilities."""
    from helpers import EMODB
    options = {"stock": {"feature_layer": "weighted"}, "mean": {"pooling": "mean"},
               "mlp": {"pooling": "attentive", "head_hidden_sizes": [8]}}
    saved = []
    for family, head in CASES:
        model, fe, folder = save(tmp_path / f"{family}-{head}", family, **options[head])
        assert model.is_stock_expressible == (head == "stock"), (family, head)
        files = {p.name for p in folder.iterdir()}
        assert "model.safetensors" in files and not any(f.endswith(".bin") for f in files)
        assert ("modeling_ser.py" in files) == (head != "stock"), (family, head)
        saved.append((model, fe, folder))
    results = run_fresh_pipelines([(folder, head != "stock") for (_, head), (_, _, folder) in zip(CASES, saved)],
                                  EMODB / "wav" / "03a01Wa.wav")
    for (family, head), (model, fe, _), result in zip(CASES, saved, results):
        expected_class = model.stock_class.__name__ if head == "stock" else type(model).__name__
        assert result["class"] == expected_class, (family, head)
        scores = {r["label"]: r["score"] for r in result["out"]}
        assert set(scores) == {"angry", "happy", "neutral", "sad"}
        assert sum(scores.values()) == pytest.approx(1.0, abs=1e-5)
        with torch.no_grad():
            probs = model(**fe([emodb_clips[0][0]], sampling_rate=16000, return_tensors="pt")).logits.softmax(-1)[0]
        for i, label in model.config.id2label.items():
            assert scores[label] == pytest.approx(probs[i].item(), abs=1e-5), (family, head, label)


def test_auto_model_loads_custom_head_after_registration(tmp_path, emodb_clips):
    model, fe, folder = save(tmp_path, "wavlm", pooling="stats", feature_layer=1)
    modeling_ser.register_auto_classes()
    loaded = AutoModelForAudioClassification.from_pretrained(folder).eval()
    assert type(loaded) is modeling_ser.WavLMForEmotion
    assert loaded.config.pooling == "stats" and loaded.config.feature_layer == 1
    inputs = fe([emodb_clips[0][0]], sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs).logits, model(**inputs).logits)


def test_from_backbone_wraps_a_saved_encoder_folder(tmp_path):
    torch.manual_seed(0)
    encoder = Wav2Vec2Model(modeling_ser.Wav2Vec2Config(**TINY_SPECS["wav2vec2"]["encoder"]))
    folder = tmp_path / "tiny-encoder"
    encoder.save_pretrained(folder)
    feature_extractor_for("wav2vec2").save_pretrained(folder)

    model = modeling_ser.from_backbone(str(folder), ["neutral", "angry", "sad"], pooling="stats",
                                       feature_layer="weighted", freeze_feature_encoder=True)
    assert type(model) is modeling_ser.Wav2Vec2ForEmotion
    assert model.config.id2label == {0: "neutral", 1: "angry", 2: "sad"}
    assert model.config.label2id == {"neutral": 0, "angry": 1, "sad": 2}
    for name, param in encoder.state_dict().items():
        torch.testing.assert_close(model.wav2vec2.state_dict()[name], param)
    torch.testing.assert_close(model.layer_weights, torch.full((3,), 1 / 3))
    assert not any(p.requires_grad for p in model.wav2vec2.feature_extractor.parameters())
    assert all(torch.isfinite(p).all() for p in model.parameters())
    with pytest.raises(ValueError, match="hubert"):
        modeling_ser.HubertForEmotion.from_backbone(str(folder), ["a", "b"])
    with pytest.raises(ValueError, match="labels"):
        modeling_ser.from_backbone(str(folder), ["a"])


# --- logmel-cnn -----------------------------------------------------------------------------------------------------

def cnn(**options):
    torch.manual_seed(0)
    model, fe = scratch_model(TINY_SPECS["logmel-cnn"], LABELS, pooling="stats", **options)
    torch.nn.init.normal_(model.classifier.weight, std=3.0)
    return model.eval(), fe


def test_logmel_cnn_leaves_silence_out_of_statistics_and_pooling(emodb_clips):
    """Two seconds of digital silence on both sides add no speech frame: the frames the head pools and the
    statistics the log-mels are normalised with stay those of the speech."""
    model, fe = cnn()
    speech = emodb_clips[0][0]
    silence = np.zeros(32000, dtype=np.float32)
    padded = np.concatenate([silence, speech, silence])
    with torch.no_grad():
        outputs = [model.cnn(**fe([clip], sampling_rate=16000, return_tensors="pt")) for clip in (speech, padded)]
        log_mel, real, speech_frames = model.cnn.frontend(torch.from_numpy(padded)[None])
    per_output = model.config.frames_per_output * model.config.hop_length
    assert outputs[1].frame_mask.shape[1] - outputs[0].frame_mask.shape[1] >= 2 * 32000 // per_output - 1
    assert abs(int(outputs[1].frame_mask.sum()) - int(outputs[0].frame_mask.sum())) <= 1
    assert not speech_frames[0, :90].any() and speech_frames[0, 110:-110].float().mean() > 0.5
    stats = [modeling_ser.masked_statistics(*model.cnn.frontend(torch.from_numpy(c)[None])[::2])
             for c in (speech, padded)]
    torch.testing.assert_close(stats[0], stats[1], atol=0.05, rtol=0)


def test_logmel_cnn_speaker_normalisation_uses_the_statistics_passed(emodb_clips):
    model, fe = cnn(normalisation="speaker")
    audio = [torch.from_numpy(a) for a in emodb_clips[0]]
    inputs = fe([emodb_clips[0][0]], sampling_rate=16000, return_tensors="pt")
    own = model.cnn.speech_statistics(audio[:1])
    speaker = model.cnn.speech_statistics(audio)
    assert speaker.shape == (2, 32) and (speaker[1] > 0).all()
    with torch.no_grad():
        alone = model(**inputs).logits  # no statistics: the clip's own
        with_own = model(**inputs, normalisation_stats=own[None]).logits
        with_speaker = model(**inputs, normalisation_stats=speaker[None]).logits
    torch.testing.assert_close(alone, with_own, atol=1e-4, rtol=1e-4)
    assert (alone - with_speaker).abs().max() > 1e-3


def test_spec_augment_masks_bands_in_training_only():
    config = modeling_ser.LogMelCnnConfig(spec_augment_time_masks=1, spec_augment_time_width=10,
                                          spec_augment_freq_masks=1, spec_augment_freq_width=5)
    torch.manual_seed(0)
    features = torch.randn(64, 100, 32) + 10  # no value is 0 before masking
    real = torch.arange(100) < torch.randint(50, 101, (64, 1))
    masked = modeling_ser.spec_augment(features, real, config)
    assert masked.shape == features.shape
    zero = masked == 0
    time_band, freq_band = zero.all(dim=2), zero.all(dim=1)  # (B, T), (B, F)
    assert (time_band.sum(1) <= 10).all() and (freq_band.sum(1) <= 5).all()
    assert time_band.any() and freq_band.any()
    assert not (time_band & ~real).any()  # time masks stay inside each clip's real frames
    changed = zero.sum(dim=(1, 2))
    assert (changed <= 10 * 32 + 5 * 100).all()
    torch.testing.assert_close(masked[~zero], features[~zero])


@pytest.mark.parametrize("mask", [False, True])
def test_logmel_cnn_mask_non_speech_hides_what_is_not_speech(mask, emodb_clips):
    """With `mask_non_speech`, what fills the non-speech frames (here 1 s of digital silence or of faint noise, both
    far below the speech) cannot change the answer; without it, it does."""
    # four blocks: a receptive field of about 30 frames, wider than the margin trimming leaves around the speech
    model, fe = cnn(normalisation="utterance", mask_non_speech=mask, conv_channels=[8, 8, 8, 8])
    speech = speech_detection.DEFAULT.trim(emodb_clips[0][0])  # speech near both ends, within the filler's reach
    faint = np.random.default_rng(0).normal(0, 1e-3, 16000).astype(np.float32)  # -60 dBFS: still not speech
    logits = []
    for filler in (np.zeros(16000, dtype=np.float32), faint):
        clip = np.concatenate([filler, speech, filler])
        with torch.no_grad():
            logits.append(model(**fe([clip], sampling_rate=16000, return_tensors="pt")).logits)
        assert not model.cnn.frontend(torch.from_numpy(clip)[None])[2][0, :45].any()  # the filler is no speech
    if mask:
        torch.testing.assert_close(logits[0], logits[1], atol=1e-5, rtol=0)
    else:
        assert not torch.allclose(logits[0], logits[1], atol=1e-4)
