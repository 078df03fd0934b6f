"""Corpus loaders: turn a corpus tree into labelled, speaker-tagged clips.

Loaders only parse file names (no audio is decoded), so they are cheap and
every corpus maps onto one canonical label vocabulary, which is what makes
cross-corpus training and label subsets (e.g. the 4-class
angry/happy/neutral/sad task) possible.

A file whose name does not fit the corpus scheme is never dropped silently:
it usually means a wrong root or a damaged download. Loaders raise
CorpusError listing such files, or with strict=False warn and skip them.
"""

from __future__ import annotations

import csv
import re
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from ser.audio import find_audio_files

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

CORPUS_LANGUAGE = {"emodb": "de", "ravdess": "en", "emovo": "it", "savee": "en", "aesdd": "el", "shemo": "fa"}

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

EMODB_EMOTIONS = {"W": "angry", "L": "boredom", "E": "disgust", "A": "fear",
                  "F": "happy", "T": "sad", "N": "neutral"}
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
    if letter not in EMODB_EMOTIONS:
        return f"unknown emotion letter {letter!r}"
    return Clip(str(path), EMODB_EMOTIONS[letter], speaker, text)


# --------------------------------------------------------------------------- RAVDESS

RAVDESS_EMOTIONS = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad",
                    "05": "angry", "06": "fear", "07": "disgust", "08": "surprise"}
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
    if emotion not in RAVDESS_EMOTIONS:
        return f"unknown emotion code {emotion!r}"
    return Clip(str(path), RAVDESS_EMOTIONS[emotion], actor, statement)


# --------------------------------------------------------------------------- EMOVO

EMOVO_EMOTIONS = {"dis": "disgust", "gio": "happy", "neu": "neutral", "pau": "fear",
                  "rab": "angry", "sor": "surprise", "tri": "sad"}
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
    if code not in EMOVO_EMOTIONS:
        return f"unknown emotion code {code!r}"
    folder = path.parent.name
    if _EMOVO_SPEAKER_FOLDER.match(folder) and folder != speaker:
        return f"speaker {speaker} is in folder {folder}"
    return Clip(str(path), EMOVO_EMOTIONS[code], speaker, sentence)


# --------------------------------------------------------------------------- SAVEE

SAVEE_EMOTIONS = {"a": "angry", "d": "disgust", "f": "fear", "h": "happy",
                  "n": "neutral", "sa": "sad", "su": "surprise"}
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
    if code not in SAVEE_EMOTIONS:
        return f"unknown emotion code {code!r}"
    return Clip(str(path), SAVEE_EMOTIONS[code], speaker, code + number)


# --------------------------------------------------------------------------- AESDD

AESDD_EMOTIONS = {"a": "angry", "d": "disgust", "f": "fear", "h": "happy", "s": "sad"}
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
    label = AESDD_EMOTIONS.get(letter.lower())
    if label is None:
        return f"unknown emotion letter {letter!r}"
    folder = canonical_label(path.parent.name)
    if folder in CANONICAL_LABELS and folder != label:
        return f"letter says {label} but folder says {folder}"
    return Clip(str(path), label, str(int(speaker)), utterance)


# --------------------------------------------------------------------------- ShEMO

SHEMO_EMOTIONS = {"A": "angry", "F": "fear", "H": "happy", "N": "neutral",
                  "S": "sad", "W": "surprise"}
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
    if letter not in SHEMO_EMOTIONS:
        return f"unknown emotion letter {letter!r}"
    folder_gender = _SHEMO_GENDER_FOLDERS.get(path.parent.name.lower())
    if folder_gender is not None and folder_gender != gender:
        return f"gender letter {gender} is in folder {path.parent.name}"
    return Clip(str(path), SHEMO_EMOTIONS[letter], gender + number, None)


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


# --------------------------------------------------------------------------- dispatch

LOADERS: dict[str, Callable[..., list[Clip]]] = {
    "emodb": load_emodb,
    "ravdess": load_ravdess,
    "emovo": load_emovo,
    "savee": load_savee,
    "aesdd": load_aesdd,
    "shemo": load_shemo,
    "folder": load_folder,
    "csv": load_csv,
}


def load_corpus(name: str, root: str | Path, **kw) -> list[Clip]:
    """Load a corpus by name; for "csv", `root` is the CSV file."""
    key = name.strip().lower()
    if key not in LOADERS:
        raise ValueError(f"unknown corpus {name!r}; choose one of {sorted(LOADERS)}")
    return LOADERS[key](root, **kw)
