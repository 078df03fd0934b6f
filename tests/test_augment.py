"""Training-time augmentation: each perturbation changes a real clip as specified and keeps length and label."""

import numpy as np
import pytest
import torch

from helpers import EMODB, require
from ser.data import augment
from ser.core.audio import load_audio
from ser.data.augment import AugmentationArguments, WaveformAugmenter
from ser.data.inputs import CropDataset, PadCollator

RATE = 16000


def sine(frequency=440.0, seconds=1.0, amplitude=0.3):
    t = np.arange(int(seconds * RATE)) / RATE
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def dominant_frequency(audio):
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return np.fft.rfftfreq(len(audio), 1 / RATE)[spectrum.argmax()]


def test_crop_takes_a_piece_or_repeats_a_short_clip():
    rng = np.random.default_rng(0)
    audio = np.arange(1000, dtype=np.float32)
    piece = augment.crop(audio, 300, rng)
    assert len(piece) == 300 and np.all(np.diff(piece) == 1)  # one contiguous piece
    looped = augment.crop(audio[:120], 300, rng)
    np.testing.assert_array_equal(looped, np.resize(audio[:120], 300))
    assert len(augment.crop(audio[:120], 300, rng, loop_pad=False)) == 120


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_moves_pitch_and_length_together(factor):
    faster = augment.change_speed(sine(440.0), factor)
    assert abs(len(faster) - RATE / factor) <= 2
    assert dominant_frequency(faster) == pytest.approx(440.0 * factor, abs=3.0)


@pytest.mark.parametrize("snr_db", [5.0, 20.0])
def test_noise_is_added_at_the_requested_snr(snr_db, emodb_clips):
    speech = emodb_clips[0][0]
    noisy = augment.add_noise(speech, snr_db, np.random.default_rng(0))
    noise = noisy.astype(np.float64) - speech
    measured = 10 * np.log10(np.mean(speech.astype(np.float64) ** 2) / np.mean(noise ** 2))
    assert measured == pytest.approx(snr_db, abs=0.2)
    assert len(noisy) == len(speech) and noisy.dtype == np.float32
    silent = np.zeros(100, dtype=np.float32)
    np.testing.assert_array_equal(augment.add_noise(silent, 10.0, np.random.default_rng(0)), silent)


def test_gain_scales_and_clips_at_full_scale():
    quiet = augment.apply_gain(sine(amplitude=0.3), -20.0)
    assert np.abs(quiet).max() == pytest.approx(0.03, rel=1e-3)
    loud = augment.apply_gain(sine(amplitude=0.8), 6.0)
    assert np.abs(loud).max() == 1.0 and len(loud) == RATE


def test_augmented_training_draws_keep_the_crop_length_and_label(emodb_clips):
    audio, labels = emodb_clips
    args = AugmentationArguments(augment=True, noise_probability=1.0)
    dataset = CropDataset(audio, list(labels), [len(a) / RATE for a in audio], crop_seconds=1.5,
                          augment=WaveformAugmenter(args, 1.5, seed=0))
    short = CropDataset([audio[0][:8000]], [1], [0.5], crop_seconds=1.5, augment=WaveformAugmenter(args, 1.5, seed=0))
    for i in range(len(audio)):
        first, second = dataset[i], dataset[i]
        assert len(first["features"]) == len(second["features"]) == 24000
        assert first["labels"] == second["labels"] == labels[i]
        assert not np.array_equal(first["features"], second["features"])  # a fresh draw each time
    assert len(short[0]["features"]) == 24000 and short[0]["labels"] == 1


def test_augmenter_is_reproducible_from_its_seed(emodb_clips):
    clip = emodb_clips[0][0]
    args = AugmentationArguments(augment=True)
    draws = [[WaveformAugmenter(args, 1.0, seed=s)(clip) for _ in range(3)] for s in (7, 7, 8)]
    for a, b in zip(draws[0], draws[1]):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(draws[0][0], draws[2][0])


def test_mixup_blends_inputs_and_labels_with_the_same_weight():
    torch.manual_seed(0)
    batch = [{"features": np.full(10, float(i), dtype=np.float32), "labels": i} for i in range(6)]  # value = label
    mixed = PadCollator("input_values", mixup_alpha=0.4, num_labels=6)(batch)
    targets = mixed["labels"]
    assert mixed["input_values"].shape == (6, 10) and targets.shape == (6, 6)
    torch.testing.assert_close(targets.sum(dim=1), torch.ones(6))
    for row in range(6):
        lam = targets[row, row].item()
        assert lam >= 0.5
        partner = int(targets[row].argsort()[-2]) if lam < 1 else row
        expected = lam * row + (1 - lam) * partner  # inputs mixed with the labels' weight
        torch.testing.assert_close(mixed["input_values"][row], torch.full((10,), expected), atol=1e-5, rtol=0)


def test_bad_ranges_are_refused():
    with pytest.raises(ValueError, match="speed_range"):
        AugmentationArguments(speed_range=[1.1, 0.9])
    with pytest.raises(ValueError, match="positive"):
        AugmentationArguments(speed_range=[0.0, 1.1])


def test_balance_groups_gives_every_corpus_the_largest_count():
    from ser.data.inputs import balance_groups

    groups = ["emodb"] * 10 + ["ravdess"] * 25 + ["emovo"] * 7
    indices = list(range(3, 42))  # a fold's training clips: some of each corpus
    balanced = balance_groups(indices, groups, seed=0)
    counts = {g: sum(groups[i] == g for i in balanced) for g in set(groups)}
    assert counts == {"emodb": 25, "ravdess": 25, "emovo": 25}  # the fold holds 7, 25 and 7 clips of them
    assert set(balanced) == set(indices)  # nothing left out, nothing from outside the fold
    for group in counts:  # repeats are spread evenly: no clip more than once above another of its corpus
        members = [balanced.count(i) for i in indices if groups[i] == group]
        assert max(members) - min(members) <= 1
    assert balance_groups(indices, groups, seed=0) == balanced


def test_band_limit_keeps_the_telephone_band_only():
    audio = load_audio(require(EMODB / "wav") / "03a01Wa.wav")
    limited = augment.band_limit(audio)
    assert limited.size == audio.size and limited.dtype == np.float32
    spectrum = lambda a: np.abs(np.fft.rfft(a)) ** 2  # noqa: E731
    freqs = np.fft.rfftfreq(audio.size, 1 / 16000)
    high = freqs > 4100
    assert spectrum(limited)[high].sum() < 1e-3 * spectrum(audio)[high].sum()  # above 4 kHz: gone
    low = freqs < 3500
    assert spectrum(limited)[low].sum() == pytest.approx(spectrum(audio)[low].sum(), rel=0.05)  # below: kept
