"""Evaluation protocols: speaker disjointness and coverage on real Emo-DB/RAVDESS."""

from collections import Counter
from pathlib import Path

import pytest

from helpers import DATA
from ser.data.corpora import Clip, load_emodb, load_mixture, load_ravdess
from ser.data.splits import (
    Fold,
    check_speaker_disjoint,
    fixed_split,
    leave_one_corpus_out,
    leave_one_speaker_out,
    make_folds,
    random_split,
    speaker_groups,
    speaker_kfold,
)



@pytest.fixture(scope="module")
def emodb():
    root = DATA / "emodb"
    if not root.is_dir():
        pytest.skip(f"real Emo-DB not found at {root.resolve()}")
    return load_emodb(root)


@pytest.fixture(scope="module")
def ravdess():
    root = DATA / "ravdess"
    if not root.is_dir():
        pytest.skip(f"real RAVDESS not found at {root.resolve()}")
    return load_ravdess(root)


def assert_partition(clips, folds):
    """Every clip is tested exactly once and train/test never overlap."""
    tested = Counter(i for fold in folds for i in fold.test)
    assert sorted(tested) == list(range(len(clips)))
    assert set(tested.values()) == {1}
    for fold in folds:
        assert not set(fold.train) & set(fold.test)
        assert len(fold.train) + len(fold.test) == len(clips)


def test_loso_real_emodb(emodb):
    folds, info = make_folds(emodb, "loso")
    assert info == {"name": "loso", "description": "leave-one-speaker-out", "speaker_independent": True, "folds": 10}
    assert [f.test_speakers for f in folds] == [[s] for s in
                                                ["03", "08", "09", "10", "11", "12", "13", "14", "15", "16"]]
    assert_partition(emodb, folds)
    for fold in folds:
        check_speaker_disjoint(emodb, fold)
    assert len(folds[0].test) == 49


def test_speaker_kfold_real_emodb(emodb):
    folds, info = make_folds(emodb, "speaker_kfold", k=5, seed=3)
    assert info["speaker_independent"] and info["folds"] == 5
    assert_partition(emodb, folds)
    for fold in folds:
        check_speaker_disjoint(emodb, fold)
        assert len(fold.test_speakers) == 2
    again, _ = make_folds(emodb, "speaker_kfold", k=5, seed=3)
    assert again == folds
    other, _ = make_folds(emodb, "speaker_kfold", k=5, seed=4)
    assert [f.test_speakers for f in other] != [f.test_speakers for f in folds]


def test_speaker_kfold_rejects_bad_k(emodb):
    with pytest.raises(ValueError, match="k=11"):
        speaker_kfold(emodb, 11)


def test_ravdess_emobox_groups(ravdess):
    expected = [[f"{a:02d}" for a in range(start, start + 4)] for start in range(1, 25, 4)]
    folds = speaker_kfold(ravdess, 6, seed=None)
    assert [f.test_speakers for f in folds] == expected
    assert folds == speaker_groups(ravdess, expected)
    explicit, info = make_folds(ravdess, "speaker_kfold", groups=expected)
    assert explicit == folds and info["folds"] == 6
    assert_partition(ravdess, folds)
    assert all(len(f.test) == 240 for f in folds)


def test_speaker_groups_validation(emodb):
    with pytest.raises(ValueError, match="no group"):
        speaker_groups(emodb, [["03", "08"], ["09"]])
    with pytest.raises(ValueError, match="more than one group"):
        speaker_groups(emodb, [["03", "08", "09", "10", "11"], ["11", "12", "13", "14", "15", "16"]])
    with pytest.raises(ValueError, match="unknown speakers"):
        speaker_groups(emodb, [["03", "08", "09", "10", "11"], ["12", "13", "14", "15", "16", "99"]])


def test_random_split_is_speaker_dependent(emodb):
    folds, info = make_folds(emodb, "random", k=5, seed=0)
    assert info == {"name": "random", "description": "random (speaker-dependent)",
                    "speaker_independent": False, "folds": 5}
    assert_partition(emodb, folds)
    # Stratified: each fold holds about a fifth of every emotion.
    for fold in folds:
        counts = Counter(emodb[i].label for i in fold.test)
        assert abs(counts["angry"] - 127 / 5) <= 1
    with pytest.raises(ValueError, match="both train and test"):
        check_speaker_disjoint(emodb, folds[0])
    assert random_split(emodb, 5, seed=0) == folds


def test_fixed_split_by_speaker(emodb, tmp_path):
    split = tmp_path / "split.csv"
    split.write_text("speaker,split\n" + "".join(
        f"{s},{'test' if s in ('03', '08') else 'train'}\n"
        for s in ["03", "08", "09", "10", "11", "12", "13", "14", "15", "16"]))
    folds, info = make_folds(emodb, "fixed", split_file=split)
    assert info["speaker_independent"] is True and info["folds"] == 1
    assert "speaker-independent" in info["description"]
    (fold,) = folds
    assert fold.test_speakers == ["03", "08"]
    assert len(fold.test) == 49 + 58
    check_speaker_disjoint(emodb, fold)


def test_fixed_split_by_path(emodb, tmp_path):
    lines = ["# basenames and root-relative paths both match"]
    for i, clip in enumerate(emodb):
        name = Path(clip.path).name
        key = name if i % 2 else f"wav/{name}"
        lines.append(f"{key}\t{'test' if i % 4 == 0 else 'train'}")
    split = tmp_path / "split.txt"
    split.write_text("\n".join(lines) + "\n")
    folds, info = make_folds(emodb, "fixed", split_file=split)
    assert info["speaker_independent"] is False
    assert "speaker-dependent" in info["description"]
    assert folds[0].test == list(range(0, len(emodb), 4))
    assert_partition(emodb, folds + [Fold("rest", folds[0].test, folds[0].train, [])])


def test_fixed_split_errors(emodb, tmp_path):
    split = tmp_path / "split.csv"
    split.write_text("03,test\nnot_a_clip.wav,train\n")
    with pytest.raises(ValueError, match="not_a_clip.wav"):
        fixed_split(emodb, split)
    split.write_text("03,test\n08,validation\n")
    with pytest.raises(ValueError, match="validation"):
        fixed_split(emodb, split)
    split.write_text("03,test\n08,train\n")
    with pytest.raises(ValueError, match="not assigned"):
        fixed_split(emodb, split)
    split.write_text("03,test\n03a01Fa.wav,train\n")
    with pytest.raises(ValueError, match="both train and test"):
        fixed_split(emodb, split)
    with pytest.raises(ValueError, match="split_file"):
        make_folds(emodb, "fixed")


def small_clips(speakers):
    return [Clip(f"/c/{i}.wav", label, spk) for i, (spk, label) in
            enumerate((s, l) for s in speakers for l in ("angry", "sad"))]


def test_speaker_independent_protocols_need_speakers():
    unknown = small_clips(["unknown", "unknown"])
    for protocol in ("loso", "speaker_kfold"):
        with pytest.raises(ValueError, match="random"):
            make_folds(unknown, protocol, k=2)
    single = small_clips(["a"])
    with pytest.raises(ValueError, match="at least 2 speakers"):
        make_folds(single, "loso")
    mixed = small_clips(["a", "b", "unknown"])
    with pytest.raises(ValueError, match="speaker ids"):
        leave_one_speaker_out(mixed)
    folds, info = make_folds(small_clips(["unknown"] * 3), "random", k=2)
    assert info["description"] == "random (speaker-dependent)" and len(folds) == 2


def test_unknown_protocol():
    with pytest.raises(ValueError, match="unknown protocol"):
        make_folds(small_clips(["a", "b"]), "holdout")


def test_numeric_speakers_sort_numerically():
    folds = leave_one_speaker_out(small_clips(["10", "2", "1"]))
    assert [f.test_speakers for f in folds] == [["1"], ["2"], ["10"]]


MIXTURE = ["emodb", "ravdess", "emovo"]


@pytest.fixture(scope="module")
def mixture():
    roots = [DATA / name for name in MIXTURE]
    missing = [root for root in roots if not root.is_dir()]
    if missing:
        pytest.skip(f"real corpora not found: {[str(root.resolve()) for root in missing]}")
    return load_mixture(MIXTURE, roots)


def test_loco_real_mixture(mixture):
    folds, info = make_folds(mixture, "loco")
    assert info == {"name": "loco", "description": "leave-one-corpus-out", "speaker_independent": True, "folds": 3}
    assert folds == leave_one_corpus_out(mixture)
    assert [fold.name for fold in folds] == sorted(MIXTURE)
    assert_partition(mixture, folds)
    sizes = {"emodb": 535, "ravdess": 1440, "emovo": 588}
    for fold in folds:
        assert fold.test == [i for i, clip in enumerate(mixture) if clip.corpus == fold.name]
        assert fold.train == [i for i, clip in enumerate(mixture) if clip.corpus != fold.name]
        assert len(fold.test) == sizes[fold.name]
        assert fold.test_speakers == sorted({mixture[i].speaker for i in fold.test})
        assert all(speaker.startswith(fold.name + "-") for speaker in fold.test_speakers)
        check_speaker_disjoint(mixture, fold)
    assert [len(fold.test_speakers) for fold in folds] == [10, 6, 24]


def corpus_clips(corpora):
    return [Clip(f"/{corpus}/{i}.wav", label, f"{corpus}-{i % 2}", corpus=corpus)
            for corpus in corpora for i, label in enumerate(("angry", "sad", "angry", "sad"))]


def test_loco_needs_two_known_corpora():
    folds = leave_one_corpus_out(corpus_clips(["b", "a"]))
    assert [(fold.name, fold.test, fold.train) for fold in folds] == [("a", [4, 5, 6, 7], [0, 1, 2, 3]),
                                                                       ("b", [0, 1, 2, 3], [4, 5, 6, 7])]
    with pytest.raises(ValueError, match="at least 2 corpora"):
        make_folds(corpus_clips(["a"]), "loco")  # one corpus: nothing to leave out
    no_corpus = [Clip(clip.path, clip.label, clip.speaker) for clip in corpus_clips(["a", "b"])]
    with pytest.raises(ValueError, match="corpus"):
        make_folds(no_corpus, "loco")  # folder/csv data: corpus unknown
    partly = corpus_clips(["a", "b"]) + [Clip("/c/0.wav", "angry", "c-0")]
    with pytest.raises(ValueError, match="every clip's corpus"):
        leave_one_corpus_out(partly)
