"""results.json: the one definition of what a training run records, and the only code that reads or writes it.

train_ser.py runs the whole evaluation protocol once per seed; each seed is one *run* with its folds. The file
holds the run settings, every run with its folds (metrics and predictions) and a summary over all runs:

- ``summary.wa|ua|macro_f1``: mean and std over all folds of all seeds;
- ``summary.pooled``: metrics of all test predictions of all seeds pooled (its confusion matrix sums over seeds);
- ``summary.over_seeds.wa|ua|macro_f1``: mean, std and values over seeds of each seed's pooled metric;
- ``summary.per_corpus`` (a mixture, when folds record each test clip's ``corpus``): per corpus, its test
  predictions pooled (``pooled``) and each seed's pooled metric over seeds (``over_seeds``).

Optional top-level fields: ``calibration`` (ser.training.calibration.calibrate: the temperature fitted on out-of-fold logits
and the ECE before and after), ``trim_silence``, ``speech_detector`` (speech_ser.Detector.to_dict: what found the
speech), ``level_normalisation`` and ``adaptation`` (ser.training.adaptation: the model was adapted without labels to
other recordings after these numbers were measured); folds may carry ``logits`` and ``corpus`` per test clip.

Every std is the population std (ddof=0). `SCHEMA` below is the contract; `validate` checks a dict against it,
`build` makes one, `write` and `read` store and load one. `read` also accepts the first format (one seed:
top-level ``seed``, ``folds`` and ``summary``) and returns it upgraded. Readers use the accessors at the end
(`headline`, `over_folds`, `fold_table`, ...) rather than digging into the layout.
"""

import json
from pathlib import Path

import numpy as np

from ser.reporting.metrics import SUMMARY_KEYS, classification_metrics, summarize_folds

FILENAME = "results.json"
FORMAT_VERSION = 2

# --- the schema ---------------------------------------------------------------------------------------------
# A spec is a type or tuple of types (a value of one of them; bool counts only where bool is named), a one-item
# list (a JSON array whose every item matches the item spec) or a dict (an object holding at least these keys,
# each matching its spec; more keys are allowed and kept).
NUMBER = (int, float)
NONE = type(None)
MEAN_STD = {"mean": NUMBER, "std": NUMBER}
METRICS = {"wa": NUMBER, "ua": NUMBER, "macro_f1": NUMBER, "confusion": [[int]]}
FOLD = {"name": str, "test_speakers": [str], "n_test": int, **METRICS, "y_true": [int], "y_pred": [int]}
FOLDS_SUMMARY = {"wa": MEAN_STD, "ua": MEAN_STD, "macro_f1": MEAN_STD, "pooled": METRICS}
OVER_SEEDS = {key: {"mean": NUMBER, "std": NUMBER, "values": [NUMBER]} for key in SUMMARY_KEYS}

SCHEMA = {
    "format_version": int,
    "corpus": str,
    "language": (str, NONE),
    "labels": [str],
    "protocol": {"name": str, "description": str, "speaker_independent": bool, "folds": int},
    "speaker_normalisation": bool,
    "seeds": [int],
    "encoder": {"name_or_path": str, "family": str, "pretrained": bool, "parameters": int},
    "head": {"pooling": str},
    "training": {"mode": str},
    "code_version": str,
    "trust_remote_code": bool,
    "feature_cache": (dict, NONE),
    "summary": {**FOLDS_SUMMARY, "over_seeds": OVER_SEEDS},
    "runs": [{"seed": int, "folds": [FOLD], "summary": FOLDS_SUMMARY}],
}
CALIBRATION = {"temperature": NUMBER, "ece_uncalibrated": NUMBER, "ece_calibrated": NUMBER, "ece_bins": int}
PER_CLIP = ("corpus", "logits")  # optional fold lists with one entry per test clip
OPTIONAL = {"hub_model_id": str, "calibration": (dict, NONE), "trim_silence": bool, "speech_detector": dict,
            "level_normalisation": bool, "adaptation": dict}  # hub_model_id: ser.reporting.export; adaptation: ser.training.adaptation
COMPUTED = ("format_version", "seeds", "summary", "runs")  # made by build(), never passed to it
LEGACY = ("seed", "folds")  # the first format's top-level keys, which now live in runs


# --- checking -----------------------------------------------------------------------------------------------
def _kind(value) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", NONE: "null"}.get(
        type(value), f"a number ({value!r})" if isinstance(value, (int, float)) else type(value).__name__)


def _expected(spec) -> str:
    if isinstance(spec, dict):
        return "an object"
    if isinstance(spec, list):
        return "an array"
    types = spec if isinstance(spec, tuple) else (spec,)
    if int in types and float in types:
        types = ("number", *(t for t in types if t not in (int, float)))
    names = {"number": "a number", int: "an integer", str: "a string", bool: "a boolean", dict: "an object",
             NONE: "null"}
    return " or ".join(names.get(t, getattr(t, "__name__", str(t))) for t in types)


def _check(value, spec, where: str) -> None:
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            raise ValueError(f"results.json field {where or '(top level)'} must be an object, got {_kind(value)}")
        for key, item_spec in spec.items():
            path = f"{where}.{key}" if where else key
            if key not in value:
                raise ValueError(f"results.json is missing the field {path}")
            _check(value[key], item_spec, path)
    elif isinstance(spec, list):
        if not isinstance(value, list):
            raise ValueError(f"results.json field {where} must be an array, got {_kind(value)}")
        for index, item in enumerate(value):
            _check(item, spec[0], f"{where}[{index}]")
    else:
        types = spec if isinstance(spec, tuple) else (spec,)
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise ValueError(f"results.json field {where} must be {_expected(spec)}, got {_kind(value)}")


def validate(results: dict) -> dict:
    """Returns `results` unchanged when it matches SCHEMA; otherwise a ValueError names the first bad field."""
    _check(results, SCHEMA, "")
    for key, spec in OPTIONAL.items():
        if key in results:
            _check(results[key], spec, key)
    if results.get("calibration") is not None:
        _check(results["calibration"], CALIBRATION, "calibration")
    if results["format_version"] != FORMAT_VERSION:
        raise ValueError(f"results.json has format_version {results['format_version']}; this code reads "
                         f"{FORMAT_VERSION} (and upgrades the first format, which has no format_version)")
    runs = results["runs"]
    if not runs:
        raise ValueError("results.json field runs is empty: it needs at least one seed's run")
    if results["seeds"] != [run["seed"] for run in runs] or len(set(results["seeds"])) != len(runs):
        raise ValueError(f"results.json field seeds {results['seeds']} must list each run's seed once, in order "
                         f"(runs have {[run['seed'] for run in runs]})")
    names = [fold["name"] for fold in runs[0]["folds"]]
    for index, run in enumerate(runs):
        if not run["folds"]:
            raise ValueError(f"results.json field runs[{index}].folds is empty")
        if [fold["name"] for fold in run["folds"]] != names:
            raise ValueError(f"results.json runs[{index}] (seed {run['seed']}) has folds "
                             f"{[fold['name'] for fold in run['folds']]}, runs[0] has {names}: every seed runs the "
                             "same folds")
        for number, fold in enumerate(run["folds"]):
            if not len(fold["y_true"]) == len(fold["y_pred"]) == fold["n_test"]:
                raise ValueError(f"results.json runs[{index}].folds[{number}] ({fold['name']}): n_test "
                                 f"{fold['n_test']} but {len(fold['y_true'])} y_true and {len(fold['y_pred'])} y_pred")
            for key in PER_CLIP:
                if key in fold and len(fold[key]) != fold["n_test"]:
                    raise ValueError(f"results.json runs[{index}].folds[{number}] ({fold['name']}): n_test "
                                     f"{fold['n_test']} but {len(fold[key])} entries in {key}")
    return results


# --- making, writing, reading -------------------------------------------------------------------------------
def _spread(values) -> dict:
    values = [float(v) for v in values]
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "values": values}


def build(*, corpus, language, labels, protocol, speaker_normalisation, runs, encoder, head, training,
          code_version, trust_remote_code, feature_cache=None, **extra) -> dict:
    """A validated results dict. `runs`: one `{"seed": int, "folds": [fold dicts]}` per seed, the folds as
    train_ser.py makes them (name, test_speakers, n_test, wa, ua, macro_f1, confusion, y_true, y_pred).
    Each run gets its "summary" (mean ± std over its folds, and its predictions pooled); the top-level
    "summary" covers all seeds (see the module docstring). `extra` fields (e.g. "augmentation") are kept as
    they are."""
    clash = sorted(set(extra) & {*COMPUTED, *LEGACY})
    if clash:
        raise ValueError(f"build() makes {', '.join(clash)} itself; pass the folds in runs instead")
    if not runs or not all(run["folds"] for run in runs):
        raise ValueError("build() needs at least one run, and every run at least one fold")
    num_labels = len(labels)
    runs = [{**run, "folds": list(run["folds"]), "summary": summarize_folds(run["folds"], num_labels)}
            for run in runs]
    summary = summarize_folds([fold for run in runs for fold in run["folds"]], num_labels)
    summary["over_seeds"] = {key: _spread(run["summary"]["pooled"][key] for run in runs) for key in SUMMARY_KEYS}
    for run in runs:  # per-clip lists are checked before they are summarised (validate checks them again)
        for fold in run["folds"]:
            if any(key in fold and len(fold[key]) != len(fold["y_true"]) for key in PER_CLIP):
                raise ValueError(f"fold {fold['name']}: a per-clip list ({', '.join(PER_CLIP)}) does not have one "
                                 "entry per test clip")
    with_corpus = [("corpus" in fold) for run in runs for fold in run["folds"]]
    if any(with_corpus) and not all(with_corpus):
        raise ValueError("some folds record each test clip's corpus and some do not: all or none must")
    corpora = sorted({name for run in runs for fold in run["folds"] for name in fold.get("corpus") or []})
    if len(corpora) > 1:
        summary["per_corpus"] = {name: _corpus_summary(runs, name, num_labels) for name in corpora}
    results = {
        "format_version": FORMAT_VERSION, "corpus": corpus, "language": language, "labels": list(labels),
        "protocol": protocol, "speaker_normalisation": speaker_normalisation,
        "seeds": [run["seed"] for run in runs],
        "encoder": encoder, "head": head, "training": training, "code_version": code_version,
        "trust_remote_code": trust_remote_code, "feature_cache": feature_cache, **extra,
        "summary": summary, "runs": runs,
    }
    return validate(results)


def _corpus_summary(runs, corpus: str, num_labels: int) -> dict:
    """The test predictions on one corpus of a mixture: pooled over all seeds, and each seed's pooled metric."""
    def predictions(folds):
        pairs = [(t, p) for fold in folds for t, p, c in zip(fold["y_true"], fold["y_pred"], fold["corpus"])
                 if c == corpus]
        return classification_metrics([t for t, _ in pairs], [p for _, p in pairs], num_labels)

    per_seed = [predictions(run["folds"]) for run in runs]
    return {"pooled": predictions([fold for run in runs for fold in run["folds"]]),
            "over_seeds": {key: _spread(metrics[key] for metrics in per_seed) for key in SUMMARY_KEYS}}


def upgrade(results: dict) -> dict:
    """A results dict in the current format: the first format (top-level seed + folds + summary) becomes one
    run, with its summaries recomputed from the folds; a current one is validated and returned as it is."""
    if "format_version" in results or "folds" not in results:
        return validate(results)
    required = [key for key in ("seed", *SCHEMA) if key not in (*COMPUTED, "feature_cache") and key not in results]
    if required:
        raise ValueError(f"results.json (first format, one seed) is missing the field {', '.join(required)}")
    fields = {key: value for key, value in results.items() if key not in (*LEGACY, "summary")}
    return build(runs=[{"seed": results["seed"], "folds": results["folds"]}], **fields)


def write(results: dict, folder) -> Path:
    """Validates `results` and writes `folder`/results.json; returns its path."""
    validate(results)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / FILENAME
    path.write_text(json.dumps(results, indent=1), encoding="utf-8")
    return path


def read(path) -> dict:
    """The results of a run folder or a results.json file, upgraded to the current format and validated."""
    path = Path(path)
    if path.is_dir():
        path = path / FILENAME
    try:
        return upgrade(json.loads(path.read_text(encoding="utf-8")))
    except ValueError as error:  # a JSONDecodeError is one too
        raise ValueError(f"{path}: {error}") from error


# --- accessors ------------------------------------------------------------------------------------------------
MIXTURE_SEPARATOR = "+"  # "corpus" of a mixture: its corpora's keys joined, in training order


def mixture_name(keys: list[str]) -> str:
    """The "corpus" field for training data of one corpus or several ("emodb+ravdess+emovo")."""
    return MIXTURE_SEPARATOR.join(keys)


def corpus_keys(results: dict) -> list[str]:
    """The corpora a run trained on: one key, or a mixture's keys in order."""
    return results["corpus"].split(MIXTURE_SEPARATOR)


def seeds(results: dict) -> list[int]:
    return list(results["seeds"])


def num_folds(results: dict) -> int:
    """Folds per seed (every seed runs the same folds)."""
    return len(results["runs"][0]["folds"])


def headline(results: dict) -> dict:
    """The numbers to quote: for "wa", "ua" and "macro_f1" the metric of all folds' test predictions pooled, as
    {"mean", "std"} over seeds (std 0 with one seed); plus "seeds" and "folds" (per seed) counts."""
    over_seeds = results["summary"]["over_seeds"]
    numbers = {key: {"mean": over_seeds[key]["mean"], "std": over_seeds[key]["std"]} for key in SUMMARY_KEYS}
    return {**numbers, "seeds": len(results["runs"]), "folds": num_folds(results)}


def over_folds(results: dict) -> dict:
    """For "wa", "ua" and "macro_f1": {"mean", "std"} over every fold of every seed; "n": how many folds that is."""
    summary = results["summary"]
    return {**{key: dict(summary[key]) for key in SUMMARY_KEYS},
            "n": sum(len(run["folds"]) for run in results["runs"])}


def pooled(results: dict) -> dict:
    """Metrics of all test predictions of all seeds pooled; the confusion matrix sums over seeds."""
    return results["summary"]["pooled"]


def fold_table(results: dict) -> list[dict]:
    """One row per fold (in protocol order): name, test_speakers and n_test (of the first seed's run: the folds
    are the same for every seed) and, for "wa", "ua" and "macro_f1", {"mean", "std", "values"} over seeds."""
    runs = results["runs"]
    rows = []
    for index, fold in enumerate(runs[0]["folds"]):
        row = {"name": fold["name"], "test_speakers": list(fold["test_speakers"]), "n_test": fold["n_test"]}
        for key in SUMMARY_KEYS:
            row[key] = _spread(run["folds"][index][key] for run in runs)
        rows.append(row)
    return rows


def per_corpus(results: dict) -> dict:
    """A mixture's numbers per corpus: {corpus: {"wa"|"ua"|"macro_f1": {"mean", "std"} over seeds of each seed's
    pooled metric on that corpus's test clips}}; {} for a single corpus."""
    return {name: {key: {"mean": entry["over_seeds"][key]["mean"], "std": entry["over_seeds"][key]["std"]}
                   for key in SUMMARY_KEYS}
            for name, entry in results["summary"].get("per_corpus", {}).items()}


def seed_table(results: dict) -> list[dict]:
    """One row per seed: "seed" and its pooled "wa", "ua", "macro_f1"."""
    return [{"seed": run["seed"], **{key: run["summary"]["pooled"][key] for key in SUMMARY_KEYS}}
            for run in results["runs"]]

