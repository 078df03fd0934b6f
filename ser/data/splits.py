"""Evaluation protocols: which clips train and which test, per fold.

Acted corpora repeat the same actors and sentences across emotions, so a
random split lets a model recognise the speaker instead of the emotion and
inflates accuracy. Speaker-independent protocols are the default for
reporting; the random split exists for comparison and is always labelled
speaker-dependent.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePath

import numpy as np
from sklearn.model_selection import StratifiedKFold

from ser.data.corpora import UNKNOWN_SPEAKER, Clip, has_speakers

PROTOCOLS = ("loso", "speaker_kfold", "loco", "fixed", "random")
SPEAKER_PROTOCOLS = ("loso", "speaker_kfold")  # the protocols that split by speaker ids


@dataclass
class Fold:
    """Indices into the clip list; test_speakers makes reports self-explaining."""

    name: str
    train: list[int]
    test: list[int]
    test_speakers: list[str]


def speaker_sort_key(speaker: str) -> tuple[int, int, str]:
    """Numeric ids sort numerically ("2" before "10"), others alphabetically."""
    return (0, int(speaker), speaker) if speaker.isdigit() else (1, 0, speaker)


def _speakers(clips: list[Clip]) -> list[str]:
    return sorted({clip.speaker for clip in clips}, key=speaker_sort_key)


def _require_speakers(clips: list[Clip], protocol: str) -> list[str]:
    """Speaker-independent protocols are meaningless without real speaker ids."""
    if not has_speakers(clips):
        raise ValueError(
            f"{protocol} needs speaker ids, but some clips have speaker {UNKNOWN_SPEAKER!r}; "
            "give a speaker column/regex or use the random (speaker-dependent) protocol"
        )
    speakers = _speakers(clips)
    if len(speakers) < 2:
        raise ValueError(f"{protocol} needs at least 2 speakers, found {speakers}")
    return speakers


def _fold_for_test_speakers(clips: list[Clip], name: str, test_speakers: Iterable[str]) -> Fold:
    held_out = set(test_speakers)
    train = [i for i, clip in enumerate(clips) if clip.speaker not in held_out]
    test = [i for i, clip in enumerate(clips) if clip.speaker in held_out]
    return Fold(name, train, test, sorted(held_out, key=speaker_sort_key))


def _speakers_of(clips: list[Clip], indices: list[int]) -> list[str]:
    return sorted({clips[i].speaker for i in indices}, key=speaker_sort_key)


def leave_one_speaker_out(clips: list[Clip]) -> list[Fold]:
    """One fold per speaker; the standard protocol for small acted corpora."""
    speakers = _require_speakers(clips, "leave-one-speaker-out")
    return [_fold_for_test_speakers(clips, f"speaker-{s}", [s]) for s in speakers]


def speaker_groups(clips: list[Clip], groups: list[list[str]]) -> list[Fold]:
    """One fold per given speaker group, to reproduce published protocols.

    The groups must be disjoint and cover every speaker, so each clip is
    tested exactly once (e.g. EmoBox RAVDESS: actors 1-4, 5-8, ...).
    """
    speakers = set(_require_speakers(clips, "speaker groups"))
    seen: set[str] = set()
    for group in groups:
        group_set = {str(s) for s in group}
        if not group_set:
            raise ValueError("speaker groups must not be empty")
        unknown = group_set - speakers
        if unknown:
            raise ValueError(f"speaker group names unknown speakers {sorted(unknown)}")
        repeated = group_set & seen
        if repeated:
            raise ValueError(f"speakers {sorted(repeated)} appear in more than one group")
        seen |= group_set
    uncovered = speakers - seen
    if uncovered:
        raise ValueError(f"speakers {sorted(uncovered, key=speaker_sort_key)} are in no group")
    if len(groups) < 2:
        raise ValueError("speaker groups need at least 2 groups")
    folds = []
    for group in groups:
        ordered = sorted({str(s) for s in group}, key=speaker_sort_key)
        folds.append(_fold_for_test_speakers(clips, "speakers-" + "+".join(ordered), ordered))
    return folds


def speaker_kfold(clips: list[Clip], k: int, seed: int | None = 0) -> list[Fold]:
    """k folds of whole speakers, near-equal speakers per fold.

    Speakers are shuffled with `seed` and cut into k consecutive chunks.
    seed=None keeps them in sorted order, which gives the consecutive
    groups used by EmoBox (RAVDESS, k=6: actors 1-4, 5-8, ...).
    """
    speakers = _require_speakers(clips, "speaker k-fold")
    if not 2 <= k <= len(speakers):
        raise ValueError(f"speaker k-fold needs 2 <= k <= {len(speakers)} speakers, got k={k}")
    if seed is not None:
        order = np.random.default_rng(seed).permutation(len(speakers))
        speakers = [speakers[i] for i in order]
    chunks = np.array_split(np.arange(len(speakers)), k)
    return speaker_groups(clips, [[speakers[i] for i in chunk] for chunk in chunks])


def leave_one_corpus_out(clips: list[Clip]) -> list[Fold]:
    """One fold per corpus of a mixture: train on the others, test on voices, language and recording conditions the
    model never met. Speakers must not cross corpora (a mixture's ids are prefixed with their corpus)."""
    names = sorted({clip.corpus for clip in clips if clip.corpus})
    if len(names) < 2 or any(not clip.corpus for clip in clips):
        raise ValueError(f"leave-one-corpus-out needs a mixture of at least 2 corpora with every clip's corpus "
                         f"known; found {names}")
    folds = []
    for name in names:
        test = [i for i, clip in enumerate(clips) if clip.corpus == name]
        train = [i for i, clip in enumerate(clips) if clip.corpus != name]
        folds.append(Fold(name, train, test, _speakers_of(clips, test)))
    return folds


def random_split(clips: list[Clip], k: int = 5, seed: int = 0) -> list[Fold]:
    """Stratified k-fold ignoring speakers: speaker-dependent by construction."""
    if k < 2:
        raise ValueError(f"random split needs k >= 2, got {k}")
    labels = [clip.label for clip in clips]
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    folds = []
    for number, (train, test) in enumerate(splitter.split(np.zeros(len(labels)), labels), start=1):
        train_list, test_list = sorted(train.tolist()), sorted(test.tolist())
        folds.append(Fold(f"random-{number}of{k}", train_list, test_list, _speakers_of(clips, test_list)))
    return folds


def fixed_split(clips: list[Clip], split_file: str | Path) -> list[Fold]:
    """One train/test fold read from a file, for official corpus splits.

    Format: one entry per line, `<key>,<split>` (a tab or spaces also
    separate), split being `train` or `test`. Blank lines and lines starting
    with `#` are ignored, as is a header whose second column is `split`.
    A key equal to a clip's speaker assigns all that speaker's clips;
    otherwise it is a path matched against the end of each clip path, so a
    basename (`03a01Fa.wav`) or a path relative to the corpus root
    (`Actor_01/03-01-01-01-01-01-01.flac`) both work.
    Entries matching no clip, or several clips, raise; so does any clip left
    unassigned or assigned to both sides, because a split that does not
    describe these clips exactly would report on a different protocol.
    """
    entries = _read_split_file(Path(split_file))
    assignment: dict[int, str] = {}
    by_speaker: dict[str, list[int]] = {}
    by_name: dict[str, list[int]] = {}
    for i, clip in enumerate(clips):
        by_speaker.setdefault(clip.speaker, []).append(i)
        by_name.setdefault(PurePath(clip.path).name, []).append(i)
    for key, side in entries:
        if key in by_speaker and key != UNKNOWN_SPEAKER:
            matched = by_speaker[key]
        else:
            matched = _match_path(clips, key, by_name)
        for i in matched:
            if assignment.get(i, side) != side:
                raise ValueError(f"{split_file}: clip {clips[i].path} is assigned to both train and test")
            assignment[i] = side
    missing = [clips[i].path for i in range(len(clips)) if i not in assignment]
    if missing:
        raise ValueError(f"{split_file}: {len(missing)} clip(s) not assigned, e.g. {missing[:3]}")
    train = [i for i in range(len(clips)) if assignment[i] == "train"]
    test = [i for i in range(len(clips)) if assignment[i] == "test"]
    if not train or not test:
        raise ValueError(f"{split_file}: split leaves train or test empty")
    return [Fold("fixed", train, test, _speakers_of(clips, test))]


def _read_split_file(split_file: Path) -> list[tuple[str, str]]:
    entries = []
    with split_file.open(newline="", encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            fields = next(csv.reader([text])) if "," in text else text.split()
            if len(fields) != 2:
                raise ValueError(f"{split_file}:{number}: expected '<key>,<split>', got {text!r}")
            key, side = fields[0].strip(), fields[1].strip().lower()
            if side == "split" and not entries:
                continue
            if side not in ("train", "test"):
                raise ValueError(f"{split_file}:{number}: split must be train or test, got {side!r}")
            entries.append((key, side))
    if not entries:
        raise ValueError(f"{split_file}: no split entries")
    return entries


def _match_path(clips: list[Clip], key: str, by_name: dict[str, list[int]]) -> list[int]:
    wanted = PurePath(key.replace("\\", "/")).parts
    candidates = by_name.get(wanted[-1], []) if wanted else []
    matched = [i for i in candidates if PurePath(clips[i].path).parts[-len(wanted):] == wanted]
    if not matched:
        raise ValueError(f"split entry {key!r} matches no speaker and no clip path")
    if len(matched) > 1:
        raise ValueError(f"split entry {key!r} matches {len(matched)} clips; give a longer path")
    return matched


def check_speaker_disjoint(clips: list[Clip], fold: Fold) -> None:
    """Guard against speaker leakage; "unknown" counts as shared since it cannot be checked."""
    train_speakers = {clips[i].speaker for i in fold.train}
    test_speakers = {clips[i].speaker for i in fold.test}
    shared = train_speakers & test_speakers
    if shared:
        raise ValueError(
            f"fold {fold.name}: speakers {sorted(shared, key=speaker_sort_key)} are in both train and test"
        )


def _is_speaker_disjoint(clips: list[Clip], folds: list[Fold]) -> bool:
    try:
        for fold in folds:
            check_speaker_disjoint(clips, fold)
    except ValueError:
        return False
    return True


def make_folds(
    clips: list[Clip],
    protocol: str,
    k: int | None = None,
    seed: int | None = 0,
    split_file: str | Path | None = None,
    groups: list[list[str]] | None = None,
) -> tuple[list[Fold], dict]:
    """Build folds for a named protocol plus a description for reports.

    protocol: "loso", "speaker_kfold" (k folds, default 5; or explicit
    `groups`), "fixed" (needs split_file) or "random" (k folds, default 5).
    """
    if protocol == "loso":
        folds = leave_one_speaker_out(clips)
        description, independent = "leave-one-speaker-out", True
    elif protocol == "speaker_kfold":
        if groups is not None:
            folds = speaker_groups(clips, groups)
            description = f"speaker groups ({len(folds)} folds)"
        else:
            folds = speaker_kfold(clips, k or 5, seed)
            description = f"speaker {len(folds)}-fold"
        independent = True
    elif protocol == "loco":
        folds = leave_one_corpus_out(clips)
        description, independent = "leave-one-corpus-out", True
    elif protocol == "fixed":
        if split_file is None:
            raise ValueError("the fixed protocol needs split_file")
        folds = fixed_split(clips, split_file)
        independent = has_speakers(clips) and _is_speaker_disjoint(clips, folds)
        kind = "speaker-independent" if independent else "speaker-dependent"
        description = f"fixed split from {Path(split_file).name} ({kind})"
    elif protocol == "random":
        folds = random_split(clips, k or 5, 0 if seed is None else seed)
        description, independent = "random (speaker-dependent)", False
    else:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {list(PROTOCOLS)}")
    info = {"name": protocol, "description": description, "speaker_independent": independent, "folds": len(folds)}
    return folds, info
