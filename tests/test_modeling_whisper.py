"""WhisperForEmotion: the shared head on Whisper's encoder at each clip's own length (no 30 s padding)."""

import numpy as np
import pytest
import soundfile as sf
import torch
from transformers import (AutoFeatureExtractor, AutoModelForAudioClassification, WhisperConfig,
                          WhisperFeatureExtractor, WhisperForAudioClassification, WhisperForConditionalGeneration,
                          WhisperModel)

import modeling_ser
from helpers import EMODB, TINY_WHISPER as TINY, WHISPER_SPEC as SPEC
from ser.training.encoders import feature_extractor_for, pretrained_model, scratch_model
from ser.inference.predictor import EmotionPredictor
from helpers import run_fresh_pipeline

LABELS = ["angry", "happy", "neutral", "sad"]
def tiny_model(**head_options):
    torch.manual_seed(0)
    model, fe = scratch_model(SPEC, LABELS, **head_options)
    torch.nn.init.normal_(model.classifier.weight, std=3.0)  # logits far from 0, so a match means something
    return model.eval(), fe


def logits(model, fe, clips, **call_options):
    with torch.no_grad():
        return model(**fe(clips, sampling_rate=16000, return_tensors="pt", **call_options)).logits


@pytest.fixture(scope="module")
def clips(emodb_clips):
    audio = emodb_clips[0]
    return [audio[0][:16000], audio[1][:9000], audio[2][:12345], audio[3]]  # lengths not multiples of the hop too


@pytest.mark.parametrize("pooling,layer", [("mean", "last"), ("stats", "weighted"), ("attentive", 1)])
def test_padded_batch_matches_each_clip_alone(pooling, layer, clips):
    model, fe = tiny_model(pooling=pooling, feature_layer=layer)
    padded = logits(model, fe, clips)
    alone = torch.cat([logits(model, fe, [clip]) for clip in clips])
    assert padded.abs().max() > 0.1
    torch.testing.assert_close(padded, alone, atol=1e-5, rtol=1e-6)  # the tolerance of the other families
    # the same clip padded far past its end (30 s, as the stock extractor would) still gives its own logits
    torch.testing.assert_close(logits(model, fe, clips[:1], padding="max_length"), alone[:1], atol=1e-5, rtol=1e-6)


def test_features_follow_the_input_length_and_match_whisper_for_one_clip(clips):
    fe = feature_extractor_for("whisper")
    batch = fe(clips, sampling_rate=16000, return_tensors="pt")
    lengths = [len(c) // 160 for c in clips]  # Whisper's STFT gives N // hop frames (its last one is dropped)
    assert batch["input_features"].shape == (4, 80, max(lengths))  # not the stock 3000 frames (30 s)
    assert batch["attention_mask"].sum(-1).tolist() == lengths
    stock = WhisperFeatureExtractor()
    for clip, features, length in zip(clips, batch["input_features"], lengths):
        own = stock(clip, sampling_rate=16000, padding="longest", return_tensors="pt")["input_features"][0]
        torch.testing.assert_close(features[:, :length], own, atol=0, rtol=0)
    assert fe(clips[0], sampling_rate=16000, return_tensors="np")["input_features"].shape == (1, 80, 100)


def test_encoder_runs_at_the_clip_length_and_refuses_more_than_its_positions(clips):
    model, fe = tiny_model()
    with torch.no_grad():
        out = model.encoder(**fe(clips[:2], sampling_rate=16000, return_tensors="pt"))
    assert out.last_hidden_state.shape == (2, 50, 32)  # 100 mel frames -> 50 encoder frames, not 1500
    assert out.frame_mask.sum(-1).tolist() == [50, 28]  # 56 mel frames -> 28
    with pytest.raises(ValueError, match="1500"):
        model.encoder(torch.zeros(1, 80, 3002))


def test_at_exactly_30_s_the_head_is_the_stock_class(clips):
    """The one length where stock `WhisperForAudioClassification` (30 s padding, mean over all frames) and this head
    agree: with no padding to average. Elsewhere they differ, which is why no head is saved as the stock class."""
    model, fe = tiny_model(feature_layer="weighted")
    assert not model.is_stock_expressible
    stock = WhisperForAudioClassification(WhisperConfig(**TINY, use_weighted_layer_sum=True, num_labels=4)).eval()
    stock.load_state_dict(model.state_dict(), strict=True)
    stock_fe = WhisperFeatureExtractor()
    with torch.no_grad():
        for audio in (np.tile(np.concatenate(clips), 20)[:480000], clips[3]):
            ours = logits(model, fe, [audio])
            theirs = stock(stock_fe(audio, sampling_rate=16000, return_tensors="pt")["input_features"]).logits
            assert torch.allclose(ours, theirs, atol=1e-5) == (len(audio) == 480000)


def test_loss_falls_on_real_clips_and_a_frozen_encoder_stays_unchanged(emodb_clips):
    torch.manual_seed(0)
    audio, labels = emodb_clips
    model, fe = scratch_model(SPEC, ["angry", "sad"], pooling="stats", feature_layer="weighted",
                              head_hidden_sizes=[16], head_dropout=0.0, freeze_backbone=True)
    inputs = fe([a[:16000] for a in audio], sampling_rate=16000, return_tensors="pt")
    before = {n: p.detach().clone() for n, p in model.encoder.named_parameters()}
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(25):
        loss = model(**inputs, labels=torch.tensor(labels)).loss
        losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert min(losses[-5:]) < losses[0] * 0.8, losses
    for name, param in model.encoder.named_parameters():
        assert not param.requires_grad and torch.equal(param, before[name]), name


@pytest.mark.parametrize("checkpoint", [WhisperModel, WhisperForConditionalGeneration])
def test_from_backbone_takes_the_encoder_of_a_whisper_checkpoint(checkpoint, tmp_path):
    torch.manual_seed(0)
    whisper = checkpoint(WhisperConfig(**TINY))
    folder = tmp_path / "tiny-whisper"
    whisper.save_pretrained(folder)
    WhisperFeatureExtractor().save_pretrained(folder)  # as a checkpoint ships it: 30 s padding, no mask
    model = modeling_ser.from_backbone(str(folder), ["neutral", "angry"], pooling="stats", feature_layer="weighted",
                                       freeze_feature_encoder=True)
    assert type(model) is modeling_ser.WhisperForEmotion
    encoder = whisper.get_encoder().state_dict()
    assert set(model.encoder.state_dict()) == set(encoder)
    for name, param in encoder.items():
        torch.testing.assert_close(model.encoder.state_dict()[name], param, atol=0, rtol=0)
    torch.testing.assert_close(model.layer_weights, torch.full((3,), 1 / 3))
    assert not any(p.requires_grad for p in model.encoder.conv1.parameters())
    assert all(p.requires_grad for p in model.encoder.layers.parameters())
    with pytest.raises(ValueError, match="whisper"):
        modeling_ser.HubertForEmotion.from_backbone(str(folder), ["a", "b"])
    _, fe = pretrained_model(str(folder), ["neutral", "angry"])  # the checkpoint's extractor settings, no padding
    assert type(fe) is modeling_ser.WhisperEmotionFeatureExtractor and fe.return_attention_mask
    assert fe(np.zeros(8000, dtype=np.float32), sampling_rate=16000)["input_features"].shape == (1, 80, 50)


def test_an_encoder_is_cut_to_the_layer_its_head_reads(clips, tmp_path):
    """A head reading layer 1 of 2 keeps the first layer only and no final norm (config: encoder_layers 1,
    cut_from_layers 2): its frames equal the whole encoder's layer 1, and the saved model reloads cut."""
    torch.manual_seed(0)
    whisper = WhisperModel(WhisperConfig(**TINY))
    whisper.save_pretrained(tmp_path / "tiny-whisper")
    WhisperFeatureExtractor().save_pretrained(tmp_path / "tiny-whisper")
    model, fe = pretrained_model(str(tmp_path / "tiny-whisper"), LABELS, feature_layer=1, pooling="stats")
    model.eval()
    assert (model.config.encoder_layers, model.config.cut_from_layers, len(model.encoder.layers)) == (1, 2, 1)
    whole = modeling_ser.WhisperEmotionEncoder(modeling_ser.WhisperEmotionConfig(**TINY)).eval()
    whole.load_state_dict(whisper.get_encoder().state_dict())
    inputs = fe(clips, sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        want = whole(**inputs, output_hidden_states=True).hidden_states[1]
        got = model.encoder_frames(model.base_model(**inputs, output_hidden_states=True))
        assert torch.equal(got, want)
        model.eval().save_pretrained(tmp_path / "cut")
        again = modeling_ser.WhisperForEmotion.from_pretrained(tmp_path / "cut").eval()
        assert len(again.encoder.layers) == 1 and not any("layer_norm." in k for k in again.encoder.state_dict()
                                                          if not k.startswith("layers."))
        torch.testing.assert_close(again(**inputs).logits, model(**inputs).logits, atol=0, rtol=0)


def test_saved_model_round_trip_predictor_and_stock_pipeline(clips, tmp_path):
    model, fe = tiny_model(pooling="attentive", head_hidden_sizes=[8])
    folder = tmp_path / "whisper-model"
    model.save_pretrained(folder)
    fe.save_pretrained(folder)
    assert "modeling_ser.py" in {p.name for p in folder.iterdir()}
    expected = logits(model, fe, clips).softmax(-1)

    modeling_ser.register_auto_classes()
    loaded = AutoModelForAudioClassification.from_pretrained(folder).eval()
    loaded_fe = AutoFeatureExtractor.from_pretrained(folder)
    assert type(loaded) is modeling_ser.WhisperForEmotion
    assert type(loaded_fe) is modeling_ser.WhisperEmotionFeatureExtractor
    torch.testing.assert_close(logits(loaded, loaded_fe, clips).softmax(-1), expected)

    predictor = EmotionPredictor.from_pretrained(folder, runtime="fp32")
    predictor.max_padding = 10.0  # let clips of different lengths share one padded batch
    assert len(predictor._batches([len(c) for c in clips])) == 1 and predictor.pads_exactly
    scores = predictor.classify_batch(clips)
    for row, probs in zip(scores, expected):
        assert [row[label] for label in LABELS] == pytest.approx(probs.tolist(), abs=1e-5)
    assert predictor.max_seconds == 30.0  # Whisper's positions; longer clips go through the timeline

    clip = EMODB / "wav" / "03a01Wa.wav"
    result = run_fresh_pipeline(folder, clip, remote=True)
    assert result["class"] == "WhisperForEmotion"
    pipeline_scores = {r["label"]: r["score"] for r in result["out"]}
    alone = logits(model, fe, [sf.read(clip, dtype="float32")[0]]).softmax(-1)[0]
    assert [pipeline_scores[label] for label in LABELS] == pytest.approx(alone.tolist(), abs=1e-5)



def test_from_backbone_refuses_a_checkpoint_without_all_encoder_weights(tmp_path):
    """The new head's weights are missing by design and not reported; a missing encoder weight is an error."""
    from safetensors.torch import load_file, save_file

    torch.manual_seed(0)
    config = WhisperConfig(**{k: v for k, v in TINY.items() if k != "classifier_proj_size"})
    WhisperModel(config).save_pretrained(tmp_path / "whole")
    model = modeling_ser.from_backbone(str(tmp_path / "whole"), LABELS, feature_layer=1, pooled_norm=True)
    assert type(model).__name__ == "WhisperForEmotion"
    WhisperModel(config).save_pretrained(tmp_path / "partial")
    weights = load_file(tmp_path / "partial" / "model.safetensors")
    del weights["encoder.layers.1.fc1.weight"]
    save_file(weights, tmp_path / "partial" / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match="lacks encoder weights"):
        modeling_ser.from_backbone(str(tmp_path / "partial"), LABELS)
