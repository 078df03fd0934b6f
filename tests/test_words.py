"""Words per segment (ser/inference/words.py): one encoder pass gives the plain predictor's emotion and the words, the words
are the corpus sentences, the decoder is the one the emotion model's encoder came from, and what has none says so."""

import numpy as np
import pytest
import torch

from helpers import EMODB, RAVDESS, ROOT, require
from ser.inference import words
from ser.core.audio import load_audio

BASE, TINY = ROOT / "encoders/whisper-base", ROOT / "encoders/whisper-tiny.en"
MIXTURE, RAVDESS_MODEL, CNN = (ROOT / "models" / name for name in ("ser-whisper-mixture", "ser-whisper-ravdess",
                                                                     "ser-cnn-emodb"))
# (file, sentence): both RAVDESS sentences, two speakers each, two emotions; German sentences from Emo-DB
RAVDESS_CLIPS = [("Actor_01/03-01-05-01-02-01-01.flac", "Dogs are sitting by the door"),
                 ("Actor_02/03-01-04-02-01-02-02.flac", "Kids are talking by the door"),
                 ("Actor_11/03-01-03-01-01-01-11.flac", "Kids are talking by the door"),
                 ("Actor_14/03-01-06-02-02-01-14.flac", "Dogs are sitting by the door")]
EMODB_CLIPS = [("03a01Wa.wav", "Der Lappen liegt auf dem Eisschrank."),
               ("08b03Fe.wav", "An den Wochenenden bin ich jetzt immer nach Hause gefahren und habe Agnes besucht."),
               ("03a02Ta.wav", "Das will sie am Mittwoch abgeben.")]


def require_checkpoint(folder):
    if not (folder / "model.safetensors").is_file():
        pytest.skip(f"{folder} not converted (python -m ser.training.convert_whisper --bundled)")
    return folder


@pytest.fixture(scope="module")
def ravdess():
    root = require(RAVDESS)
    return [load_audio(root / name) for name, _ in RAVDESS_CLIPS], [text for _, text in RAVDESS_CLIPS]


@pytest.fixture(scope="module")
def emodb():
    root = require(EMODB / "wav")
    return [load_audio(root / name) for name, _ in EMODB_CLIPS], [text for _, text in EMODB_CLIPS]


@pytest.fixture(scope="module")
def base_transcriber():
    require_checkpoint(BASE)
    return words.Transcriber.for_emotion_model(MIXTURE)


@pytest.fixture(scope="module")
def tiny():
    return words.Transcriber.from_pretrained(require_checkpoint(TINY))


def test_the_emotion_models_find_the_checkpoint_their_encoder_came_from(base_transcriber):
    """By the weights: the default model (base, cut to 3 layers) and the RAVDESS one (tiny.en, uncut)."""
    require_checkpoint(TINY)
    assert base_transcriber.source.resolve() == BASE.resolve()
    assert base_transcriber.multilingual and base_transcriber.head is not None
    assert words.decoder_folder(RAVDESS_MODEL).resolve() == TINY.resolve()


def test_an_encoder_that_matches_no_checkpoint_is_refused(base_transcriber):
    head = base_transcriber.head
    changed = head.encoder.layers[0].fc1.weight
    saved = changed[0, 0].item()
    try:
        with torch.no_grad():
            changed[0, 0] += 1e-3
        with pytest.raises(words.NoDecoderError, match="no converted Whisper checkpoint has this emotion model's"):
            words.decoder_folder(head)
    finally:
        with torch.no_grad():
            changed[0, 0] = saved


def test_a_model_of_another_family_says_it_has_no_decoder():
    require(CNN / "config.json")
    with pytest.raises(words.NoDecoderError, match="has no decoder to give words"):
        words.Transcriber.for_emotion_model(CNN)


def test_the_english_only_checkpoint_refuses_german(tiny, ravdess):
    with pytest.raises(ValueError, match="English-only.*cannot transcribe German"):
        tiny.transcribe(ravdess[0][:1], language="de")
    with pytest.raises(ValueError, match="English-only"):
        tiny.transcribe(ravdess[0][:1], language="german")
    with pytest.raises(ValueError, match="not a language Whisper knows"):
        words.Transcriber.check_language(tiny, "klingon")


@pytest.fixture(scope="module")
def default_predictors():
    """The default model's predictor in torch (fp32) and in the default runtime (ONNX), loaded once."""
    from ser.inference.predictor import EmotionPredictor

    return {runtime: EmotionPredictor.from_pretrained(MIXTURE, runtime=runtime) for runtime in ("fp32", "onnx")}


@pytest.mark.parametrize("runtime", ["fp32", "onnx"])
def test_one_pass_gives_the_plain_predictors_emotion(runtime, default_predictors, base_transcriber, ravdess, emodb):
    """The whole encoder once, the head reading its layer 3: the probabilities of the plain path (torch, and the
    default ONNX runtime), on clips of two corpora in one call (a padded batch), and the words beside them."""
    predictor = default_predictors[runtime]
    clips = ravdess[0] + emodb[0]
    probabilities, texts = words.emotion_and_words(predictor, clips, base_transcriber)
    plain = predictor._probabilities(clips)
    np.testing.assert_allclose(probabilities, plain, atol=1e-4, rtol=0)
    assert (probabilities.argmax(-1) == plain.argmax(-1)).all()
    assert len(texts) == len(clips)
    assert words.word_error_rate(ravdess[1], texts[:len(ravdess[0])]) <= 0.1
    assert words.word_error_rate(emodb[1], texts[len(ravdess[0]):]) <= 0.25


def test_an_uncut_tiny_model_shares_its_pass_too(ravdess):
    """models/ser-whisper-ravdess reads layer 2 of tiny.en's 4 and keeps all of them (not cut): the same emotion,
    and the words, with words from a separate padded run on request."""
    from ser.inference.predictor import EmotionPredictor

    require_checkpoint(TINY)
    predictor = EmotionPredictor.from_pretrained(RAVDESS_MODEL, runtime="fp32")
    transcriber = words.Transcriber.for_emotion_model(predictor)  # a float32 predictor lends its torch model
    clips, references = ravdess
    plain = predictor._probabilities(clips)
    for padded in (False, True):
        probabilities, texts = words.emotion_and_words(predictor, clips, transcriber, padded=padded)
        np.testing.assert_allclose(probabilities, plain, atol=1e-4, rtol=0)
        assert words.word_error_rate(references, texts) <= 0.15, texts


def test_a_predictor_without_its_torch_model_asks_for_the_folder(default_predictors):
    with pytest.raises(ValueError, match="runtime='onnx'.*pass the model's folder"):
        words.Transcriber.for_emotion_model(default_predictors["onnx"])


def test_ravdess_clips_transcribe_to_their_sentence_with_base(base_transcriber, ravdess):
    clips, references = ravdess
    for padded in (True, False):
        texts = base_transcriber.transcribe(clips, padded=padded)
        assert words.word_error_rate(references, texts) <= 0.1, texts
    assert base_transcriber.transcribe(clips[:1], language="english") == base_transcriber.transcribe(clips[:1])


def test_the_greedy_loop_decodes_as_transformers_generate(tiny, ravdess):
    """Our batched loop (key/value cache, finished rows leaving the batch) gives the tokens stock `generate` gives
    on the same 30 s-padded input."""
    clips = ravdess[0][:2]
    features = tiny.padded_features(clips, sampling_rate=16000, return_tensors="pt").input_features
    with torch.inference_mode():
        stock = tiny.model.generate(features, max_new_tokens=40)
    expected = tiny.tokenizer.batch_decode(stock, skip_special_tokens=True)
    assert tiny.transcribe(clips, padded=True) == [text.strip() for text in expected]


def test_word_error_rate_normalises_case_punctuation_and_german_spelling():
    assert words.normalise("Heute Abend könnte ich's, Straße!") == ["heute", "abend", "koennte", "ichs", "strasse"]
    assert words.word_error_rate(["Was sind denn das für Tüten?"], ["was sind denn das fuer tueten"]) == 0
    assert words.word_errors("Kids are talking by the door", "are talking by the big door") == (2, 6)


def test_a_looping_text_is_cut_after_its_first_round():
    loop = [1, 2, 3, 4, 5] + [6, 7, 8, 9] * 3
    assert words._repeats(loop)
    assert words._without_repeat(loop) == [1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert not words._repeats([1, 2, 3, 4, 5, 6, 7, 8])


def test_a_timeline_with_words_keeps_its_emotions_and_writes_the_text(default_predictors, ravdess, tmp_path):
    """predictor.timeline(words=True): the segments and scores of the plain timeline, each with its sentence; the
    CSV gets a text column; the demo's clip path gives the clip's probabilities with its words."""
    import soundfile as sf

    from ser.demo import analysis as demo
    from ser.inference import rows

    predictor = default_predictors["onnx"]  # the default runtime: the words path loads the torch model beside it
    pause = np.zeros(16000, np.float32)
    path = tmp_path / "two.wav"
    sf.write(path, np.concatenate([ravdess[0][0], pause, ravdess[0][1], pause]), 16000)
    plain = list(predictor.timeline(path))
    said = list(predictor.timeline(path, words=True, language="en"))
    assert [(r.start, r.end) for r in said] == [(r.start, r.end) for r in plain] and len(said) == 2
    for with_words, without in zip(said, plain):
        assert with_words.label == without.label
        np.testing.assert_allclose(list(with_words.scores.values()), list(without.scores.values()), atol=1e-4)
    assert words.word_error_rate(ravdess[1][:2], [r.text for r in said]) <= 0.1
    rows.write(said, predictor.labels, tmp_path / "two.csv", words=True)
    assert (tmp_path / "two.csv").read_text().splitlines()[0].endswith(",text")

    recording = demo.check_recording(write_clip(tmp_path / "clip.wav", ravdess[0][1]))
    analysis = demo.analyse(predictor, recording, 6.0, 10.0, words=True)
    assert analysis.scores == pytest.approx(predictor.classify_array(ravdess[0][1], 16000), abs=1e-4)
    assert "by the door" in analysis.text.lower() and "**Words:**" in demo.headline_text(analysis)


def write_clip(path, audio):
    import soundfile as sf

    sf.write(path, audio, 16000)
    return str(path)
