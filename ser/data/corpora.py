"""Corpus loaders: turn a corpus tree into labelled, speaker-tagged clips.

Loaders only parse file names (no audio is decoded), so they are cheap and
every corpus maps onto one canonical label vocabulary, which is what makes
cross-corpus training and label subsets (e.g. the 4-class
angry/happy/neutral/sad task) possible.

CORPORA is the one place that knows a named corpus: its loader, label
mapping, language, display names, licence and citation.

A file whose name does not fit the corpus scheme is never dropped silently:
it usually means a wrong root or a damaged download. Loaders raise
CorpusError listing such files, or with strict=False warn and skip them.
"""

from __future__ import annotations

import csv
import os
import re
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from ser.core.audio import find_audio_files

# Where the named corpora are, one folder per registry name (emodb/, ravdess/, ...): train_ser.py's --data_dir, else
# this environment variable, else DEFAULT_DATA_DIR (../shared/data beside the repository). `data_dir` decides.
DATA_ENV = "SER_DATA"
DEFAULT_DATA_DIR = Path(__file__).resolve().parents[3] / "shared" / "data"
DATA_PAGE = "docs/training.md#data"  # where each corpus comes from, its licence and the layout its loader expects

CANONICAL_LABELS = (
    "angry", "boredom", "calm", "disgust", "fear", "happy", "neutral", "sad", "surprise",
)

# Spellings met in corpus metadata and CSVs, mapped onto the canonical names.
LABEL_ALIASES = {
    "anger": "angry", "ang": "angry",
    "bored": "boredom", "boring": "boredom",
    "calmness": "calm",
    "disgusted": "disgust", "dis": "disgust",
    "fearful": "fear", "fea": "fear", "afraid": "fear",
    "happiness": "happy", "hap": "happy", "joy": "happy",
    "neu": "neutral",
    "sadness": "sad",
    "surprised": "surprise", "sur": "surprise",
}

LANGUAGE_NAMES = {"de": "German", "en": "English", "it": "Italian", "el": "Greek", "fa": "Persian"}

# Model weights trained on a corpus inherit its licence terms; this is the
# licence of corpora without stricter terms (and of custom data).
DEFAULT_LICENSE = "cc-by-nc-4.0"

UNKNOWN_SPEAKER = "unknown"

_SHOWN_BAD_NAMES = 5


class CorpusError(ValueError):
    """A corpus tree that cannot be loaded as asked (empty, or badly named files)."""


@dataclass
class Clip:
    """One labelled utterance; `speaker` drives speaker-independent splits."""

    path: str
    label: str
    speaker: str
    text: str | None = None
    # Registry name, so clips from several corpora can be told apart once mixed;
    # None for folder and CSV data.
    corpus: str | None = None


@dataclass(frozen=True)
class Corpus:
    """Everything known about a named corpus; CORPORA holds one per corpus."""

    name: str
    display_name: str
    short_name: str  # the model card's `datasets` value
    language: str
    license: str  # Hub licence id
    citation: str | None  # BibTeX
    emotions: dict[str, str]  # code in the file name -> canonical label
    loader: Callable[..., list[Clip]]
    # How the speech was produced: "acted" (actors portraying emotions on cue), "read" or "spontaneous". Cards and
    # the demo say "actors" only for acted corpora; data given as a folder, CSV or dataset has no kind recorded.
    speech: str = "acted"


def data_dir(given: str | Path | None = None) -> Path:
    """The folder holding the named corpora: `given` (--data_dir), else $SER_DATA, else DEFAULT_DATA_DIR."""
    chosen = given or os.environ.get(DATA_ENV) or DEFAULT_DATA_DIR
    return Path(chosen).expanduser()


def corpus_dir(name: str, folder: str | Path | None = None) -> Path:
    """Where the registered corpus `name` is: <data_dir(folder)>/<name>. A missing one is a CorpusError that names
    the folder searched and how to point elsewhere."""
    key = name.strip().lower()
    if key not in CORPORA:
        raise ValueError(f"{name!r} is not a named corpus ({', '.join(CORPORA)}): give its folder or CSV file as "
                         "--data_root")
    base = data_dir(folder)
    root = base / key
    if not root.is_dir():
        how = ("from --data_dir" if folder else f"from ${DATA_ENV}" if os.environ.get(DATA_ENV)
               else f"the default; set --data_dir DIR or ${DATA_ENV}=DIR")
        raise CorpusError(f"{key}: corpus not found at {root} (data folder {base}, {how}). Put "
                          f"{CORPORA[key].display_name} there as {key}/ in its release layout, point --data_dir or "
                          f"${DATA_ENV} at the folder that holds it, or give its own folder as --data_root; "
                          f"{DATA_PAGE} says where each corpus comes from and its layout")
    return root


def canonical_label(label: str) -> str:
    """Lower-case and map known aliases; unknown labels pass through for custom corpora."""
    name = label.strip().lower()
    return LABEL_ALIASES.get(name, name)


def has_speakers(clips: Iterable[Clip]) -> bool:
    """False when any clip lacks a speaker, so only a random split is possible."""
    return all(clip.speaker and clip.speaker != UNKNOWN_SPEAKER for clip in clips)


def select_labels(clips: list[Clip], labels: Iterable[str]) -> list[Clip]:
    """Keep clips whose label is requested; a label no clip carries is an error.

    Failing loudly catches typos and corpora lacking a class, which would
    otherwise silently shrink an N-class task.
    """
    wanted = [canonical_label(label) for label in labels]
    present = {clip.label for clip in clips}
    missing = [label for label in wanted if label not in present]
    if missing:
        raise ValueError(
            f"requested label(s) {missing} not found; labels present: {sorted(present)}"
        )
    keep = set(wanted)
    return [clip for clip in clips if clip.label in keep]


# --------------------------------------------------------------------------- helpers


def _require_dir(root: str | Path, corpus: str) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise CorpusError(f"{corpus}: corpus root {root} is not a directory")
    return root


# A parser returns a Clip, or a string saying why the file does not fit.
Parser = Callable[[Path], "Clip | str"]


def _parse_all(corpus: str, root: Path, files: list[Path], parse: Parser, strict: bool) -> list[Clip]:
    clips: list[Clip] = []
    bad: list[str] = []
    for path in files:
        result = parse(path)
        if isinstance(result, Clip):
            clips.append(result)
        else:
            bad.append(f"{path.name} ({result})")
    return _finish(corpus, root, clips, bad, strict)


def _finish(corpus: str, root: Path, clips: list[Clip], bad: list[str], strict: bool) -> list[Clip]:
    """Apply the strict/lenient policy for bad entries, then refuse empty corpora."""
    if bad:
        shown = ", ".join(bad[:_SHOWN_BAD_NAMES])
        more = f" and {len(bad) - _SHOWN_BAD_NAMES} more" if len(bad) > _SHOWN_BAD_NAMES else ""
        message = f"{corpus}: {len(bad)} file(s) under {root} do not fit the naming scheme: {shown}{more}"
        if strict:
            raise CorpusError(message + "; pass strict=False to skip them")
        warnings.warn(message + "; skipped", stacklevel=3)
    if not clips:
        raise CorpusError(f"{corpus}: no usable audio files found under {root}")
    return sorted(clips, key=lambda clip: clip.path)


# --------------------------------------------------------------------------- Emo-DB

_EMODB_NAME = re.compile(r"^(\d{2})([a-z]\d{2})([A-Z])([a-z])$")


def load_emodb(root: str | Path, strict: bool = True) -> list[Clip]:
    """Emo-DB: `03a01Fa.wav` = speaker, text id, emotion letter, take.

    `root` is the release folder holding `wav/`, or `wav/` itself.
    """
    root = _require_dir(root, "emodb")
    wav_dir = root / "wav" if (root / "wav").is_dir() else root
    return _parse_all("emodb", root, find_audio_files(wav_dir), _parse_emodb, strict)


def _parse_emodb(path: Path) -> Clip | str:
    match = _EMODB_NAME.match(path.stem)
    if not match:
        return "expected e.g. 03a01Fa"
    speaker, text, letter, _take = match.groups()
    label = CORPORA["emodb"].emotions.get(letter)
    if label is None:
        return f"unknown emotion letter {letter!r}"
    return Clip(str(path), label, speaker, text, corpus="emodb")


# --------------------------------------------------------------------------- RAVDESS

_RAVDESS_NAME = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})$")
_RAVDESS_SONG = "song"


def load_ravdess(root: str | Path, strict: bool = True) -> list[Clip]:
    """RAVDESS speech: `Actor_XX/03-01-05-01-02-01-12.wav`.

    Fields: modality-channel-emotion-intensity-statement-repetition-actor.
    Song files (channel 02) are a different task (sung emotion) and are
    skipped with a warning that counts them.
    """
    root = _require_dir(root, "ravdess")
    clips: list[Clip] = []
    bad: list[str] = []
    songs = 0
    for path in find_audio_files(root):
        result = _parse_ravdess(path)
        if isinstance(result, Clip):
            clips.append(result)
        elif result == _RAVDESS_SONG:
            songs += 1
        else:
            bad.append(f"{path.name} ({result})")
    if songs:
        warnings.warn(f"ravdess: skipped {songs} song file(s) (vocal channel 02) under {root}", stacklevel=2)
    return _finish("ravdess", root, clips, bad, strict)


def _parse_ravdess(path: Path) -> Clip | str:
    match = _RAVDESS_NAME.match(path.stem)
    if not match:
        return "expected e.g. 03-01-05-01-02-01-12"
    _modality, channel, emotion, _intensity, statement, _repetition, actor = match.groups()
    if channel == "02":
        return _RAVDESS_SONG
    if channel != "01":
        return f"unknown vocal channel {channel!r}"
    label = CORPORA["ravdess"].emotions.get(emotion)
    if label is None:
        return f"unknown emotion code {emotion!r}"
    return Clip(str(path), label, actor, statement, corpus="ravdess")


# --------------------------------------------------------------------------- EMOVO

_EMOVO_NAME = re.compile(r"^([a-z]{3})-([fm]\d)-([a-z]\d)$")
_EMOVO_SPEAKER_FOLDER = re.compile(r"^[fm]\d$")


def load_emovo(root: str | Path, strict: bool = True) -> list[Clip]:
    """EMOVO: `f1/dis-f1-b1.wav` = emotion (Italian initials), speaker, sentence.

    Speakers f1-f3 and m1-m3; the sentence id (b1-b3, l1-l4, n1-n5, d1-d2,
    the same 14 texts for every speaker and emotion) is kept as the text.
    A file in a speaker folder that names another speaker is reported
    rather than guessed at.
    """
    root = _require_dir(root, "emovo")
    return _parse_all("emovo", root, find_audio_files(root), _parse_emovo, strict)


def _parse_emovo(path: Path) -> Clip | str:
    match = _EMOVO_NAME.match(path.stem)
    if not match:
        return "expected e.g. dis-f1-b1"
    code, speaker, sentence = match.groups()
    label = CORPORA["emovo"].emotions.get(code)
    if label is None:
        return f"unknown emotion code {code!r}"
    folder = path.parent.name
    if _EMOVO_SPEAKER_FOLDER.match(folder) and folder != speaker:
        return f"speaker {speaker} is in folder {folder}"
    return Clip(str(path), label, speaker, sentence, corpus="emovo")


# --------------------------------------------------------------------------- SAVEE

# Two-letter codes first so "sa01" is not read as code "s".
_SAVEE_CODE = r"(sa|su|[a-z])(\d{2})"
_SAVEE_FLAT = re.compile(r"^([A-Z]{2})_" + _SAVEE_CODE + r"$")
_SAVEE_NESTED = re.compile(r"^" + _SAVEE_CODE + r"$")


def load_savee(root: str | Path, strict: bool = True) -> list[Clip]:
    """SAVEE: `AudioData/DC/sa01.wav`, or the flat `ALL/DC_sa01.wav` variant.

    `root` may hold `AudioData/` or `ALL/`, or be either folder. When both
    exist only AudioData is read, so no clip is counted twice.
    """
    root = _require_dir(root, "savee")
    base = root
    for name in ("AudioData", "ALL"):
        if (root / name).is_dir():
            base = root / name
            break
    return _parse_all("savee", root, find_audio_files(base), lambda p: _parse_savee(p, base), strict)


def _parse_savee(path: Path, base: Path) -> Clip | str:
    flat = _SAVEE_FLAT.match(path.stem)
    if flat:
        speaker, code, number = flat.groups()
    else:
        nested = _SAVEE_NESTED.match(path.stem)
        if not nested or path.parent == base:
            return "expected SPK/sa01 or SPK_sa01"
        code, number = nested.groups()
        speaker = path.parent.name
    label = CORPORA["savee"].emotions.get(code)
    if label is None:
        return f"unknown emotion code {code!r}"
    return Clip(str(path), label, speaker, code + number, corpus="savee")


# --------------------------------------------------------------------------- AESDD

_AESDD_NAME = re.compile(r"^([a-z])(\d{2})\s*\((\d+)\)\s*([a-z]?)$", re.IGNORECASE)


def load_aesdd(root: str | Path, strict: bool = True) -> list[Clip]:
    """AESDD: `anger/a01 (1).wav` = emotion letter, utterance, (speaker).

    A trailing `b` (`a01 (1)b.wav`) is a second take and is kept. When the
    folder names an emotion that contradicts the letter the file is reported
    rather than guessed at.
    """
    root = _require_dir(root, "aesdd")
    return _parse_all("aesdd", root, find_audio_files(root), _parse_aesdd, strict)


def _parse_aesdd(path: Path) -> Clip | str:
    match = _AESDD_NAME.match(path.stem)
    if not match:
        return "expected e.g. 'a01 (1)'"
    letter, utterance, speaker, _take = match.groups()
    label = CORPORA["aesdd"].emotions.get(letter.lower())
    if label is None:
        return f"unknown emotion letter {letter!r}"
    folder = canonical_label(path.parent.name)
    if folder in CANONICAL_LABELS and folder != label:
        return f"letter says {label} but folder says {folder}"
    return Clip(str(path), label, str(int(speaker)), utterance, corpus="aesdd")


# --------------------------------------------------------------------------- ShEMO

_SHEMO_NAME = re.compile(r"^([FM])(\d{2})([A-Z])(\d{2})$")
_SHEMO_GENDER_FOLDERS = {"female": "F", "male": "M"}


def load_shemo(root: str | Path, strict: bool = True) -> list[Clip]:
    """ShEMO: `female/F01A01.wav` = gender, speaker number, emotion, utterance.

    The speaker is gender+number ("F01") because numbering restarts per
    gender. `text` stays None: the trailing number is a running count, not a
    sentence id, so it must not be used for text-disjoint splits.
    """
    root = _require_dir(root, "shemo")
    return _parse_all("shemo", root, find_audio_files(root), _parse_shemo, strict)


def _parse_shemo(path: Path) -> Clip | str:
    match = _SHEMO_NAME.match(path.stem)
    if not match:
        return "expected e.g. F01A01"
    gender, number, letter, _utterance = match.groups()
    label = CORPORA["shemo"].emotions.get(letter)
    if label is None:
        return f"unknown emotion letter {letter!r}"
    folder_gender = _SHEMO_GENDER_FOLDERS.get(path.parent.name.lower())
    if folder_gender is not None and folder_gender != gender:
        return f"gender letter {gender} is in folder {path.parent.name}"
    return Clip(str(path), label, gender + number, None, corpus="shemo")


# --------------------------------------------------------------------------- generic


def load_folder(root: str | Path, speaker_regex: str | None = None, strict: bool = True) -> list[Clip]:
    """Folder-per-label corpus: `root/<label>/**/*.wav`.

    Without `speaker_regex` the speaker is "unknown" and only a random split
    is valid (see has_speakers). With it, the regex is searched in the file
    name (stem); the named group `speaker`, else group 1, else the whole
    match is the speaker. Files whose name does not match are bad entries.
    """
    root = _require_dir(root, "folder")
    pattern = re.compile(speaker_regex) if speaker_regex else None
    return _parse_all("folder", root, find_audio_files(root), lambda p: _parse_folder(p, root, pattern), strict)


def _parse_folder(path: Path, root: Path, pattern: re.Pattern[str] | None) -> Clip | str:
    parts = path.relative_to(root).parts
    if len(parts) < 2:
        return "file is not inside a label folder"
    label = canonical_label(parts[0])
    if pattern is None:
        return Clip(str(path), label, UNKNOWN_SPEAKER, None)
    speaker = _regex_speaker(pattern, path.stem)
    if not speaker:
        return f"speaker_regex {pattern.pattern!r} does not match"
    return Clip(str(path), label, speaker, None)


def _regex_speaker(pattern: re.Pattern[str], name: str) -> str | None:
    match = pattern.search(name)
    if not match:
        return None
    if "speaker" in pattern.groupindex:
        return match.group("speaker")
    return match.group(1) if pattern.groups else match.group(0)


def load_csv(csv_path: str | Path, strict: bool = True) -> list[Clip]:
    """CSV with header `path,label[,speaker[,text]]`.

    Relative paths are resolved against the CSV's folder so the list travels
    with the data. Labels outside the canonical set are kept (custom
    corpora), but an empty label or a missing audio file is a bad entry.
    A missing or empty speaker becomes "unknown".
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise CorpusError(f"csv: {csv_path} is not a file")
    with csv_path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = [name.strip().lower() for name in reader.fieldnames or []]
        if "path" not in columns or "label" not in columns:
            raise CorpusError(f"csv: {csv_path} needs a header with 'path' and 'label' columns, got {columns}")
        rows = [{key.strip().lower(): (value or "").strip() for key, value in row.items() if key} for row in reader]
    clips: list[Clip] = []
    bad: list[str] = []
    for line, row in enumerate(rows, start=2):
        result = _parse_csv_row(row, csv_path.parent)
        if isinstance(result, Clip):
            clips.append(result)
        else:
            bad.append(f"line {line} {row.get('path', '')!r} ({result})")
    return _finish("csv", csv_path, clips, bad, strict)


def _parse_csv_row(row: dict[str, str], base: Path) -> Clip | str:
    if not row.get("path"):
        return "empty path"
    if not row.get("label"):
        return "empty label"
    path = Path(row["path"])
    if not path.is_absolute():
        path = base / path
    if not path.is_file():
        return "audio file not found"
    speaker = row.get("speaker") or UNKNOWN_SPEAKER
    text = row.get("text") or None
    return Clip(str(path), canonical_label(row["label"]), speaker, text)


# --------------------------------------------------------------------------- registry

# One entry per named corpus: adding a corpus means writing its loader and
# adding its entry here; load_corpus, train_ser.py, the model cards and the app
# all read this table.
CORPORA: dict[str, Corpus] = {corpus.name: corpus for corpus in (
    Corpus(
        name="emodb",
        display_name="Emo-DB (Berlin Database of Emotional Speech)",
        short_name="Emo-DB",
        language="de",
        license=DEFAULT_LICENSE,
        citation="""@inproceedings{burkhardt2005emodb,
  title     = {A database of German emotional speech},
  author    = {Burkhardt, Felix and Paeschke, Astrid and Rolfes, Miriam and Sendlmeier, Walter F. and Weiss, Benjamin},
  booktitle = {Proc. Interspeech 2005},
  pages     = {1517--1520},
  year      = {2005},
  doi       = {10.21437/Interspeech.2005-446}
}""",
        emotions={"W": "angry", "L": "boredom", "E": "disgust", "A": "fear",
                  "F": "happy", "T": "sad", "N": "neutral"},
        loader=load_emodb,
        speech="acted",
    ),
    Corpus(
        name="ravdess",
        display_name="RAVDESS",
        short_name="RAVDESS",
        language="en",
        license="cc-by-nc-sa-4.0",
        citation="""@article{livingstone2018ravdess,
  title   = {The Ryerson Audio-Visual Database of Emotional Speech and Song (RAVDESS): A dynamic, multimodal set of facial and vocal expressions in North American English},
  author  = {Livingstone, Steven R. and Russo, Frank A.},
  journal = {PLoS ONE},
  volume  = {13},
  number  = {5},
  pages   = {e0196391},
  year    = {2018},
  doi     = {10.1371/journal.pone.0196391}
}""",
        emotions={"01": "neutral", "02": "calm", "03": "happy", "04": "sad",
                  "05": "angry", "06": "fear", "07": "disgust", "08": "surprise"},
        loader=load_ravdess,
        speech="acted",
    ),
    Corpus(
        name="emovo",
        display_name="EMOVO (Italian emotional speech)",
        short_name="EMOVO",
        language="it",
        license=DEFAULT_LICENSE,
        citation="""@inproceedings{costantini2014emovo,
  title     = {{EMOVO} Corpus: an {I}talian Emotional Speech Database},
  author    = {Costantini, Giovanni and Iaderola, Iacopo and Paoloni, Andrea and Todisco, Massimiliano},
  booktitle = {Proc. Ninth International Conference on Language Resources and Evaluation (LREC'14)},
  pages     = {3501--3504},
  year      = {2014}
}""",
        emotions={"dis": "disgust", "gio": "happy", "neu": "neutral", "pau": "fear",
                  "rab": "angry", "sor": "surprise", "tri": "sad"},
        loader=load_emovo,
        speech="acted",
    ),
    Corpus(
        name="savee",
        display_name="SAVEE",
        short_name="SAVEE",
        language="en",
        license=DEFAULT_LICENSE,
        citation="""@inproceedings{haq2009savee,
  title     = {Speaker-dependent audio-visual emotion recognition},
  author    = {Haq, Sanaul and Jackson, Philip J. B.},
  booktitle = {Proc. International Conference on Auditory-Visual Speech Processing (AVSP)},
  pages     = {53--58},
  year      = {2009}
}""",
        emotions={"a": "angry", "d": "disgust", "f": "fear", "h": "happy",
                  "n": "neutral", "sa": "sad", "su": "surprise"},
        loader=load_savee,
        speech="acted",
    ),
    Corpus(
        name="aesdd",
        display_name="AESDD (Acted Emotional Speech Dynamic Database)",
        short_name="AESDD",
        language="el",
        license=DEFAULT_LICENSE,
        citation="""@article{vryzas2018aesdd,
  title   = {Speech emotion recognition for performance interaction},
  author  = {Vryzas, Nikolaos and Kotsakis, Rigas and Liatsou, Aikaterini and Dimoulas, Charalampos A. and Kalliris, George},
  journal = {Journal of the Audio Engineering Society},
  volume  = {66},
  number  = {6},
  pages   = {457--467},
  year    = {2018}
}""",
        emotions={"a": "angry", "d": "disgust", "f": "fear", "h": "happy", "s": "sad"},
        loader=load_aesdd,
        speech="acted",
    ),
    Corpus(
        name="shemo",
        display_name="ShEMO (Sharif Emotional Speech Database)",
        short_name="ShEMO",
        language="fa",
        license=DEFAULT_LICENSE,
        citation="""@article{mohamadnezami2019shemo,
  title   = {ShEMO: a large-scale validated database for Persian speech emotion detection},
  author  = {Mohamad Nezami, Omid and Jamshid Lou, Paria and Karami, Mansoureh},
  journal = {Language Resources and Evaluation},
  volume  = {53},
  number  = {1},
  pages   = {1--16},
  year    = {2019},
  doi     = {10.1007/s10579-018-9427-x}
}""",
        emotions={"A": "angry", "F": "fear", "H": "happy", "N": "neutral",
                  "S": "sad", "W": "surprise"},
        loader=load_shemo,
        speech="acted",  # performances from radio plays (its authors call them semi-natural)
    ),
)}

# Loaders for custom data; they have no metadata, so they are not corpora.
GENERIC_LOADERS: dict[str, Callable[..., list[Clip]]] = {"folder": load_folder, "csv": load_csv}


SPEECH_KINDS = ("acted", "read", "spontaneous")


def speech_kind(name: str) -> str | None:
    """How a registered corpus's speech was produced (SPEECH_KINDS); None for folder, CSV and dataset data."""
    corpus = corpus_info(name)
    return corpus.speech if corpus else None


def corpus_info(name: str) -> Corpus | None:
    """The registry entry for a corpus name, or None for folder, csv and unknown names."""
    return CORPORA.get(name.strip().lower())


def load_corpus(name: str, root: str | Path | None = None, **kw) -> list[Clip]:
    """Load a corpus by name; for "csv", `root` is the CSV file. A named corpus without `root` is read from
    corpus_dir(name) (--data_dir, $SER_DATA or the default data folder)."""
    key = name.strip().lower()
    if key in CORPORA:
        return CORPORA[key].loader(root if root is not None else corpus_dir(key), **kw)
    if root is None:
        raise ValueError(f"{name!r} needs its folder or CSV file (--data_root)")
    if key in GENERIC_LOADERS:
        return GENERIC_LOADERS[key](root, **kw)
    raise ValueError(f"unknown corpus {name!r}; choose one of {sorted(CORPORA) + sorted(GENERIC_LOADERS)}")


# --------------------------------------------------------------------------- mixtures


def load_mixture(names: list[str], roots: list[str | Path], **kw) -> list[Clip]:
    """Several corpora as one clip list. Each clip keeps its corpus (folder and csv data are named by their root);
    with more than one corpus, speakers become "<corpus>-<speaker>", so ids never collide across corpora."""
    if len(names) != len(roots):
        raise ValueError(f"{len(names)} corpora but {len(roots)} roots: give one root per corpus, in the same order")
    if len(names) == 1:
        return load_corpus(names[0], roots[0], **kw)
    keys = [corpus_info(name).name if corpus_info(name) else Path(root).stem for name, root in zip(names, roots)]
    if len(set(keys)) < len(keys):
        raise ValueError(f"a mixture names the same corpus twice: {keys}")
    clips = []
    for name, root, key in zip(names, roots, keys):
        options = kw if name == "folder" else {k: v for k, v in kw.items() if k != "speaker_regex"}
        for clip in load_corpus(name, root, **options):
            clip.corpus = key
            clip.speaker = f"{key}-{clip.speaker}" if clip.speaker != UNKNOWN_SPEAKER else clip.speaker
            clips.append(clip)
    return clips


def shared_labels(clips: list[Clip]) -> list[str]:
    """The emotions every corpus of a mixture has (the default label set of a mixture); an error when none are."""
    by_corpus: dict[str, set[str]] = {}
    for clip in clips:
        by_corpus.setdefault(clip.corpus, set()).add(clip.label)
    shared = sorted(set.intersection(*by_corpus.values()))
    if len(shared) < 2:
        raise CorpusError(f"the corpora share fewer than two emotions ({shared}): choose labels with --labels")
    return shared


def mixture_language(names: list[str]) -> str | None:
    """The language code of the named corpora when they share one; "multilingual" when they do not; None when a
    corpus's language is unknown."""
    languages = {getattr(corpus_info(name), "language", None) for name in names}
    if None in languages:
        return None
    return languages.pop() if len(languages) == 1 else "multilingual"
