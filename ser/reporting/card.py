"""Render a Hugging Face model card (README.md) from a training results.json.

Every number in the card comes from results.json (read through ser.reporting.results) so
the card can never drift from what the training script measured; re-render
instead of editing by hand.
"""

from pathlib import Path

from huggingface_hub import EvalResult, ModelCardData

from ser.core.audio import LEVEL_DBFS
from ser.data.corpora import DEFAULT_LICENSE, LANGUAGE_NAMES, UNKNOWN_SPEAKER, corpus_info, speech_kind
from ser.core.defaults import UNCERTAIN_BELOW
from ser.reporting import other_corpora as other_corpora_file
from ser.reporting.results import corpus_keys, fold_table, headline, over_folds, per_corpus, read, seed_table, seeds, upgrade

CROSS_CORPUS_FILENAME = "cross_corpus_results.json"  # a leave-one-corpus-out run's results.json (ser.reporting.export)

# Licences from least to most restrictive: weights trained on a mixture take the most restrictive of its corpora's.
# A licence missing here is treated as more restrictive than all of them (it cannot be ranked, so it is not dropped).
LICENCE_ORDER = ("cc-by-4.0", "cc-by-sa-4.0", "cc-by-nc-4.0", "cc-by-nc-sa-4.0")


# Protocols whose test sets together hold every clip, so the folds' test speakers are all the speakers.
ALL_CLIPS_TESTED = ("loso", "speaker_kfold", "loco", "random")

SUPERB_CITATION = """@inproceedings{yang2021superb,
  title     = {{SUPERB}: Speech processing Universal PERformance Benchmark},
  author    = {Yang, Shu-wen and Chi, Po-Han and Chuang, Yung-Sung and Lai, Cheng-I Jeff and Lakhotia, Kushal and Lin, Yist Y. and Liu, Andy T. and Shi, Jiatong and Chang, Xuankai and Lin, Guan-Ting and Huang, Tzu-Hsien and Tseng, Wei-Cheng and Lee, Ko-tik and Liu, Da-Rong and Huang, Zili and Dong, Shuyan and Li, Shang-Wen and Watanabe, Shinji and Mohamed, Abdelrahman and Lee, Hung-yi},
  booktitle = {Proc. Interspeech 2021},
  pages     = {1194--1198},
  year      = {2021},
  doi       = {10.21437/Interspeech.2021-1775}
}"""

METRICS = (
    ("wa", "accuracy", "WA (weighted accuracy)"),
    ("ua", "recall", "UA (unweighted average recall)"),
    ("macro_f1", "f1", "Macro-F1"),
)


def is_mixture(results):
    return len(corpus_keys(results)) > 1


def join_words(words):
    """"a", "a and b", "a, b and c"."""
    words = list(words)
    return ", ".join(words[:-1]) + " and " + words[-1] if len(words) > 1 else "".join(words)


def display_name(key):
    """A corpus's readable name; unknown corpora fall back to their key."""
    corpus = corpus_info(key)
    return corpus.display_name if corpus else key


def short_name(key):
    """A corpus's short name (its `datasets` metadata value), else its key."""
    corpus = corpus_info(key)
    return corpus.short_name if corpus else key


def corpus_name(results):
    """Readable corpus name (a mixture's: all of them, "A, B and C"); unknown corpora fall back to their key."""
    return join_words(display_name(key) for key in corpus_keys(results))


def dataset_ids(results):
    """The `datasets` metadata: every corpus's short name."""
    return [short_name(key) for key in corpus_keys(results)]


def language_codes(results):
    """A mixture's language codes, one per language, in corpus order; the recorded code where none is known."""
    codes = []
    for key in corpus_keys(results):
        corpus = corpus_info(key)
        if corpus and corpus.language not in codes:
            codes.append(corpus.language)
    if not codes and results["language"] not in (None, "multilingual"):
        codes.append(results["language"])
    return codes


def language_name(results):
    """The training speech's language(s) by name; None when not recorded (data given without --language)."""
    if is_mixture(results) and language_codes(results):
        return join_words(LANGUAGE_NAMES.get(code, code) for code in language_codes(results))
    return LANGUAGE_NAMES.get(results["language"], results["language"]) or None


def licence_rank(licence):
    return LICENCE_ORDER.index(licence) if licence in LICENCE_ORDER else len(LICENCE_ORDER)


def license_for(results):
    """The corpus licence wins: weights trained on NC-SA data stay NC-SA. A mixture takes the most restrictive of its
    corpora's licences (LICENCE_ORDER); data outside the registry has the recorded licence, else the default."""
    licences = [corpus.license if corpus else results.get("license") or DEFAULT_LICENSE
                for corpus in map(corpus_info, corpus_keys(results))]
    return max(licences, key=licence_rank)  # the first of equally ranked ones


def speaker_count(results):
    """How many speakers the data has, from the folds' test speakers (the union over the first seed's folds); None
    when the test sets do not cover every clip (a fixed split) or a speaker is unknown."""
    if results["protocol"]["name"] not in ALL_CLIPS_TESTED:
        return None
    speakers = {speaker for fold in results["runs"][0]["folds"] for speaker in fold["test_speakers"]}
    if not speakers or UNKNOWN_SPEAKER in speakers:
        return None
    return len(speakers)


def read_cross_corpus(folder):
    """The leave-one-corpus-out results stored beside a model (ser.reporting.export.add_cross_corpus), or None."""
    path = Path(folder) / CROSS_CORPUS_FILENAME
    return read(path) if path.is_file() else None


def cross_corpus_table(cross):
    """One row per held-out corpus of a leave-one-corpus-out results dict: "corpus" (the fold name) and, for "wa",
    "ua" and "macro_f1", {"mean", "std", "values"} over seeds; and the chance UA (1 / number of labels)."""
    rows = [{"corpus": row["name"], **{key: row[key] for key in ("wa", "ua", "macro_f1")}}
            for row in fold_table(cross)]
    return rows, 1 / len(cross["labels"])


def speaker_independent(results):
    return bool(results["protocol"].get("speaker_independent"))


def protocol_label(results):
    """Short protocol label; speaker-dependent protocols are flagged as such."""
    protocol = results["protocol"]
    if not speaker_independent(results):
        return f"{protocol['name']} (speaker-dependent)"
    return f"{protocol['name']} ({protocol.get('description', protocol['name'])}, speaker-independent)"


def model_name(results):
    return results["hub_model_id"].split("/")[-1]


def augmentation_text(augmentation):
    """What perturbed the training clips (besides any SpecAugment the encoder config sets)."""
    if not augmentation:
        return "none recorded"
    if augmentation.get("copies"):  # a frozen encoder: perturbed copies of each clip, no speed change
        keys = ("copies", "noise_probability", "noise_snr_db", "band_limit_probability", "gain_db")
        return "perturbed copies of each clip: " + _settings({key: augmentation[key] for key in keys})
    if not augmentation.get("augment"):
        return "random crops only (no waveform perturbation, no mixup)"
    return _settings({key: value for key, value in augmentation.items() if key != "augment"})


def pct(value):
    return f"{100 * value:.1f}"


def pct_spread(spread, with_std=True):
    """"mean ± std" in %, or just the mean where there is no spread to show (one seed)."""
    return f"{pct(spread['mean'])} ± {pct(spread['std'])}" if with_std else pct(spread["mean"])


def seeds_text(count):
    return f"{count} seed" + ("s" if count != 1 else "")


def eval_results(results):
    """One model-index result per metric; the protocol goes in split/args so leaderboards show it."""
    protocol, head = results["protocol"], headline(results)
    args = {
        "protocol": protocol["name"],
        "speaker_independent": speaker_independent(results),
        "folds": protocol["folds"],
        "seeds": head["seeds"],
        "speaker_normalisation": bool(results.get("speaker_normalisation")),
    }
    return [
        EvalResult(
            task_type="audio-classification",
            task_name="Speech Emotion Recognition",
            dataset_type=results["corpus"],
            dataset_name=corpus_name(results),
            dataset_split=protocol_label(results),
            dataset_args=args,
            metric_type=metric_type,
            metric_name=f"{name}, all {args['folds']} folds' test predictions pooled, "
                        f"mean over {seeds_text(head['seeds'])}",
            metric_value=head[key]["mean"],
        )
        for key, metric_type, name in METRICS
    ]


def front_matter(results):
    """YAML metadata block, built through huggingface_hub so the Hub parses it."""
    encoder = results["encoder"]
    data = ModelCardData(
        license=license_for(results),
        language=language_codes(results) if is_mixture(results) else results["language"],
        library_name="transformers",
        pipeline_tag="audio-classification",
        tags=["audio", "speech-emotion-recognition", "audio-classification", encoder["family"]],
        datasets=dataset_ids(results),
        base_model=(encoder.get("weights", {}).get("model", encoder["name_or_path"]) if encoder.get("pretrained")
                    else None),
        model_name=model_name(results),
        eval_results=eval_results(results),
    )
    return f"---\n{data.to_yaml()}\n---\n"


def summary_section(results):
    head, folds = headline(results), over_folds(results)
    encoder = results["encoder"]
    several = head["seeds"] > 1
    pooled = (f"UA {pct_spread(head['ua'], several)} %, WA {pct_spread(head['wa'], several)} %, "
              f"macro-F1 {pct_spread(head['macro_f1'], several)} %")
    how = f"mean ± std over {head['seeds']} seeds" if several else "1 seed"
    spoken = f"{language_name(results)} speech" if language_name(results) else "speech"
    text = (
        f"`{results['hub_model_id']}` recognises emotions in {spoken}. "
        f"It is a {encoder['family']} encoder with a {results['head']['pooling']}-pooling classification head, "
        f"trained and evaluated on {corpus_name(results)} with the {protocol_label(results)} protocol "
        f"({head['folds']} folds, run with {seeds_text(head['seeds'])}): {pooled} "
        f"(all folds' test predictions pooled, {how}); per fold, WA {pct_spread(folds['wa'])} %, "
        f"UA {pct_spread(folds['ua'])} % (mean ± std over {folds['n']} folds)."
    )
    if not encoder.get("pretrained"):
        these, same = (("these corpora", "the same corpora") if is_mixture(results)
                       else ("this corpus", "the same corpus"))
        text += (
            f" The encoder was trained from scratch on {these} only (no self-supervised pretraining), "
            f"so these numbers are far below what pretrained-encoder models reach on {same}."
        )
    elif "weights" in encoder:
        weights = encoder["weights"]
        text += (f" The encoder is the pretrained `{weights['model']}` ({weights['licence']} licence), whose weights "
                 f"came from {weights['via']}.")
    else:
        text += f" The encoder was initialised from the pretrained `{encoder['name_or_path']}`."
    return f"# {model_name(results)}\n\n{text}\n"


def usage_section(results):
    model_id, folder = published_id(results)
    extra = ", trust_remote_code=True" if results.get("trust_remote_code") else ""
    local = f"  # or a local copy: model=\"{folder}\"" if folder else ""
    return f"""## How to use

```python
from transformers import pipeline

classifier = pipeline("audio-classification", model="{model_id}"{extra}){local}
print(classifier("speech.wav"))
```

To try it in a browser, run the Gradio demo: `python app.py --model {model_id}`
"""


LOCAL_FOLDERS = ("models", "exports", "runs")  # where this repository keeps models: folder names, not Hub owners


def published_id(results) -> tuple[str, str | None]:
    """The Hub id a card's usage loads, and the repository folder of a model kept here (whose recorded id is that
    folder): such a model is named as it would be published, under a placeholder owner."""
    model_id = results["hub_model_id"]
    if model_id.split("/")[0] in LOCAL_FOLDERS:
        return f"YOUR_HUB_NAME/{model_id.split('/')[-1]}", model_id
    return model_id, None


def training_section(results):
    protocol = results["protocol"]
    training = results["training"]
    head = results["head"]
    encoder = results["encoder"]
    independence = "speaker-independent" if speaker_independent(results) else "random (speaker-dependent)"
    normalisation = "used" if results.get("speaker_normalisation") else "not used"
    lines = [
        "## Training data and protocol",
        "",
        corpus_line(results),
        f"- Labels: {', '.join(results['labels'])}",
        f"- Protocol: {protocol['name']} - {protocol.get('description', '')}, {protocol['folds']} folds",
        f"- Split: {independence}",
        f"- Speaker normalisation: {normalisation}",
        f"- Seeds: {len(seeds(results))} ({', '.join(map(str, seeds(results)))}), the whole protocol run once per seed",
        "- Published weights: trained once more on all clips with the same recipe"
        + (f" and the first seed ({seeds(results)[0]})" if len(seeds(results)) > 1 else "")
        + " after the folds; the numbers below come from the folds' held-out test clips",
        f"- Encoder: `{encoder['name_or_path']}` ({encoder['family']}, "
        f"{'pretrained' if encoder.get('pretrained') else 'trained from scratch'}, {encoder['parameters']:,} parameters"
        + (", the first {} of its {} layers: those up to the one the head reads)".format(*encoder["layers_kept"])
           if encoder.get("layers_kept") else ")"),
        f"- Head: {_settings(head)}",
        f"- Training: {_settings(training)}",
        f"- Augmentation: {augmentation_text(results.get('augmentation'))}",
        f"- Code version: `{results.get('code_version', 'unknown')}`",
    ]
    if "trim_silence" in results:
        lines.insert(-5, "- Silence: " + (f"each clip cut to its speech ({detector_text(results)}) before training, "
                                          "as the predictor does" if results["trim_silence"]
                                          else "clips used whole (not cut to speech)"))
    if results.get("adaptation"):
        lines.insert(-5, adaptation_text(results["adaptation"]))
    if results.get("level_normalisation"):
        lines.insert(-5, f"- Level: each clip scaled to an RMS of {LEVEL_DBFS:g} dBFS before the encoder, as the "
                         "predictor does")
    return "\n".join(lines) + "\n"


def adaptation_text(adaptation: dict) -> str:
    return (f"- Adapted without labels: its normalisation statistics re-estimated from {adaptation['files']} of the "
            f"user's recordings ({adaptation['speech_minutes']:g} minutes of speech) by `ser-adapt`, from "
            f"`{adaptation['adapted_from']}`; the numbers on this card are that model's, measured before adaptation")


def detector_text(results) -> str:
    """Which speech detector found the speech, with its settings; a record without one used the energy detector."""
    detector = results.get("speech_detector") or {"name": "energy"}
    if detector["name"] != "silero-vad":
        return "energy detector"
    return (f"Silero VAD {detector['version']}, thresholds {detector['threshold']:g} / {detector['release']:g}; "
            f"the energy detector where no frame reaches {detector['threshold']:g} but one reaches "
            f"{detector['fallback']:g}")


def corpus_line(results):
    if not is_mixture(results):
        return f"- Corpus: {', '.join(filter(None, [corpus_name(results), language_name(results)]))}"
    speakers = speaker_count(results)
    return (f"- Corpora: {'; '.join(filter(None, [corpus_name(results), language_name(results)]))}"
            + (f"; {speakers} speakers" if speakers else ""))


def _settings(settings):
    return ", ".join(f"{key}={value}" for key, value in settings.items())


def results_section(results):
    head, folds = headline(results), over_folds(results)
    pooled, several = results["summary"]["pooled"], head["seeds"] > 1
    seed_list = ", ".join(map(str, seeds(results)))
    pooled_header = f"Pooled, mean ± std over {head['seeds']} seeds" if several else "Pooled (1 seed)"
    lines = [
        "## Results",
        "",
        f"The whole protocol ({head['folds']} folds) was run with {seeds_text(head['seeds'])} ({seed_list}). "
        "Pooled: the metrics of all folds' test predictions pooled together"
        + (f", mean ± std over the {head['seeds']} seeds" if several else "")
        + f". Per fold: mean ± std over the {folds['n']} folds" + (" of all seeds" if several else "")
        + ". Population std; values in %.",
        "",
        f"| Metric | {pooled_header} | Per fold, mean ± std over {folds['n']} folds |",
        "|---|---|---|",
    ]
    for key, _, name in METRICS:
        lines.append(f"| {name} | {pct_spread(head[key], several)} | {pct_spread(folds[key])} |")
    if several:
        lines += [
            "",
            "Per seed, all folds' test predictions pooled (pooling the predictions of all seeds together gives "
            f"WA {pct(pooled['wa'])}, UA {pct(pooled['ua'])}, macro-F1 {pct(pooled['macro_f1'])}):",
            "",
            "| Seed | WA | UA | Macro-F1 |",
            "|---|---|---|---|",
        ]
        for row in seed_table(results):
            lines.append(f"| {row['seed']} | {pct(row['wa'])} | {pct(row['ua'])} | {pct(row['macro_f1'])} |")
    lines += [
        "",
        f"Per fold (mean ± std over the {head['seeds']} seeds):" if several else "Per fold:",
        "",
        "| Fold | Test speakers | n | WA | UA | Macro-F1 |",
        "|---|---|---|---|---|---|",
    ]
    for fold in fold_table(results):
        speakers = ", ".join(fold["test_speakers"]) or "-"
        lines.append(
            f"| {fold['name']} | {speakers} | {fold['n_test']} | "
            f"{pct_spread(fold['wa'], several)} | {pct_spread(fold['ua'], several)} | "
            f"{pct_spread(fold['macro_f1'], several)} |"
        )
    lines += per_corpus_lines(results)
    over = "all folds and seeds" if several else "all folds"
    lines += ["", f"Pooled confusion matrix over {over}:", "", "![confusion matrix](confusion_matrix.png)"]
    return "\n".join(lines) + "\n"


def per_corpus_lines(results):
    """A mixture's table: each corpus's test clips pooled over all folds (mean ± std over seeds); none otherwise."""
    numbers = per_corpus(results)
    if not numbers:
        return []
    count = len(results["runs"])
    several = count > 1
    lines = [
        "",
        "Per corpus: each corpus's test clips of all folds pooled"
        + (f", mean ± std over the {count} seeds" if several else " (1 seed)") + ":",
        "",
        "| Corpus | UA | WA | Macro-F1 |",
        "|---|---|---|---|",
    ]
    for key, row in numbers.items():
        lines.append(f"| {short_name(key)} | {pct_spread(row['ua'], several)} | {pct_spread(row['wa'], several)} | "
                     f"{pct_spread(row['macro_f1'], several)} |")
    return lines


def calibration_section(results):
    """Calibrated confidence: the temperature and the out-of-fold ECE before and after; "" without calibration."""
    calibration = results.get("calibration")
    if not calibration:
        return ""
    return (
        "## Calibration\n\n"
        f"Confidence is calibrated by temperature scaling: temperature {calibration['temperature']:.2f}, fitted on "
        "the folds' test predictions. Expected calibration error of those out-of-fold predictions "
        f"({calibration['ece_bins']} bins): {pct(calibration['ece_uncalibrated'])} % → "
        f"{pct(calibration['ece_calibrated'])} % (the calibrated figure cross-fitted: each fold's predictions scaled "
        "with a temperature fitted on the other folds only). The saved config holds the temperature and the model "
        "divides its logits by it in inference (so the pipeline above returns calibrated scores); the project's "
        "predictor flags a prediction \"uncertain\" when its top probability is below "
        f"{UNCERTAIN_BELOW:g}.\n"
    )


CROSS_CORPUS_HEADING = "## Voices, languages and recordings it never heard (leave-one-corpus-out)"


def cross_corpus_section(cross):
    """Numbers of a leave-one-corpus-out run of the same recipe: each corpus tested by a model trained on the others
    only; "" when there is none."""
    if not cross:
        return ""
    rows, chance = cross_corpus_table(cross)
    count = len(cross["runs"])
    several = count > 1
    lines = [
        CROSS_CORPUS_HEADING,
        "",
        f"A separate leave-one-corpus-out run of the same recipe on {corpus_name(cross)} "
        f"({seeds_text(count)}): each row is a model trained on the other corpora only and tested on all clips of "
        "the held-out one, whose speakers and recordings it never met (nor its language, unless another corpus "
        "shares it). "
        + ("Mean ± std over the seeds; " if several else "")
        + f"values in %. Chance level: UA {pct(chance)} % (1 of {len(cross['labels'])} labels: "
        f"{', '.join(cross['labels'])}).",
        "",
        "| Held-out corpus | UA | WA | Macro-F1 |",
        "|---|---|---|---|",
    ]
    for row in rows:
        lines.append(f"| {short_name(row['corpus'])} | {pct_spread(row['ua'], several)} | "
                     f"{pct_spread(row['wa'], several)} | {pct_spread(row['macro_f1'], several)} |")
    return "\n".join(lines) + "\n"


OTHER_CORPORA_HEADING = "## Voices, languages and recordings it never heard (other corpora)"


def other_corpora_section(other):
    """This model's own weights on corpora it never trained on (ser.training.evaluate_other_corpora); "" when
    none were measured."""
    if not other:
        return ""
    lines = [
        OTHER_CORPORA_HEADING,
        "",
        "These weights classified every clip of each corpus below whose emotion they know, on the "
        f"`{other['runtime']}` runtime (`{other['command']}`): speakers, recordings and, unless the corpus shares "
        "it, a language the model never met. UA averages recall over the emotions the corpus shares with the model "
        "(chance: 1 over their number); an answer the corpus lacks counts as wrong. Values in %.",
        "",
        "| Corpus | Language | Emotions shared | Clips | UA | WA | Chance UA |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in other["rows"]:
        info = corpus_info(row["corpus"])
        language = LANGUAGE_NAMES.get(info.language, info.language) if info else "unknown"
        lines.append(f"| {short_name(row['corpus'])} | {language} | {', '.join(row['labels'])} | {row['clips']} | "
                     f"{pct(row['ua'])} | {pct(row['wa'])} | {pct(1 / len(row['labels']))} |")
    return "\n".join(lines) + "\n"


def acted(results):
    """True when every corpus a model learned from is an acted corpus of the registry (corpora.speech_kind)."""
    return all(speech_kind(key) == "acted" for key in corpus_keys(results))


USER_DATA = ("The training data was given as a folder, CSV or dataset (`{corpus}`): how its speech was produced "
             "(acted or natural), by how many speakers and in which conditions is not recorded here, so check the "
             "model on audio like yours before relying on it.")


def limitations_section(results, tested_elsewhere=False):
    language = language_name(results)
    untested = ("other languages and accents are tested only on the corpora above" if tested_elsewhere
                else "other languages and accents are untested")
    items = [
        "The corpus is acted speech: actors portray emotions on cue, which is more prototypical "
        "than emotion in spontaneous conversation; expect lower accuracy on real-world audio.",
        f"All training speech is {language}; {untested}." if language else
        "The language of the training speech is not recorded; other languages than the data's are untested.",
        "The corpus is small (few speakers, a few hundred to a few thousand utterances), so fold-to-fold variance is large and the "
        "model may not generalise to new recording conditions.",
        f"Only these labels are predicted: {', '.join(results['labels'])}.",
    ]
    if not acted(results):  # data given by the user, in part or whole: say only what is known
        items[0] = (USER_DATA.format(corpus=results["corpus"]) if not any(map(corpus_info, corpus_keys(results)))
                    else f"Not all of the training data ({corpus_name(results)}) is an acted corpus of the registry: "
                    "what the rest is (acted or natural speech, speakers, recording conditions) is not recorded here.")
        items[2] = ("Fold-to-fold variance is shown above; the model may not generalise to other speakers or "
                    "recording conditions than the data's.")
    if is_mixture(results) and acted(results):
        items[:3] = [
            "The corpora are acted speech: actors portray emotions on cue, which is more prototypical "
            "than emotion in spontaneous conversation; expect lower accuracy on real-world audio.",
            f"The training speech is {language_name(results)}; other languages and accents are untested.",
            "Each corpus is small (few speakers, a few hundred to a few thousand utterances) and recorded in its own "
            "conditions, so fold-to-fold variance is large and the model may not generalise to new recording "
            "conditions.",
        ]
    if not speaker_independent(results):
        items.append(
            "The protocol is random (speaker-dependent): test speakers were also seen in training, so "
            "the numbers overestimate accuracy on unseen speakers."
        )
    if results.get("speaker_normalisation"):
        items.append(
            "Numbers use speaker normalisation: at inference you need unlabelled audio of the same "
            "speaker to compute their statistics; without it, accuracy will be lower."
        )
    return "## Limitations\n\n" + "\n".join(f"- {item}" for item in items) + "\n"


def citation_section(results):
    corpora = [corpus_info(key) for key in corpus_keys(results)]
    entries = [corpus.citation for corpus in corpora if corpus and corpus.citation]
    entries.append(SUPERB_CITATION)
    what = "Corpora" if len(entries) > 2 else "Corpus"
    return f"## Citation\n\n{what} and evaluation method:\n\n```bibtex\n" + "\n\n".join(entries) + "\n```\n"


def render_card(results, cross_corpus=None, other_corpora=None):
    """Full README.md text for a model folder, from its results.json dict (the first format is upgraded) and, where
    the folder has them, the results dict of a leave-one-corpus-out run (`cross_corpus`) and its own weights'
    results on other corpora (`other_corpora`, ser.reporting.other_corpora)."""
    from ser.reporting.description import plain_words  # it reads this module's accessors

    results = upgrade(results)
    cross_corpus = upgrade(cross_corpus) if cross_corpus else None
    sections = [
        summary_section(results),
        plain_words(results, cross_corpus),
        usage_section(results),
        training_section(results),
        results_section(results),
        cross_corpus_section(cross_corpus),
        other_corpora_section(other_corpora),
        calibration_section(results),
        limitations_section(results, tested_elsewhere=bool(other_corpora)),
        citation_section(results),
    ]
    return front_matter(results) + "\n" + "\n".join(section for section in sections if section)


def write_card(folder):
    """Write folder/README.md from folder/results.json (and the cross-corpus and other-corpora results where they
    exist); returns the README path."""
    folder = Path(folder)
    results = read(folder)
    path = folder / "README.md"
    path.write_text(render_card(results, read_cross_corpus(folder), other_corpora_file.read(folder)),
                    encoding="utf-8")
    return path
