"""Corpus loaders on the real Emo-DB/RAVDESS/EMOVO trees and on generated mini trees."""

import dataclasses
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from helpers import DATA
from ser.data import corpora
from ser.data.corpora import (
    CANONICAL_LABELS,
    CORPORA,
    LANGUAGE_NAMES,
    Clip,
    Corpus,
    CorpusError,
    corpus_info,
    has_speakers,
    load_aesdd,
    load_corpus,
    load_csv,
    load_emodb,
    load_emovo,
    load_folder,
    load_mixture,
    load_ravdess,
    load_savee,
    load_shemo,
    mixture_language,
    select_labels,
    shared_labels,
)

FOUR_CLASS = ["angry", "happy", "neutral", "sad"]


def corpus_dir(name: str) -> Path:
    path = DATA / name
    if not path.is_dir():
        pytest.skip(f"real corpus {name} not found at {path.resolve()}")
    return path


def write_tone(path: Path, seconds: float = 0.05, rate: int = 16000) -> Path:
    """A tiny real WAV so the trees look like corpora; loaders never decode it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    sf.write(path, 0.1 * np.sin(2 * np.pi * 220 * t), rate)
    return path


def make_tree(root: Path, names: list[str]) -> Path:
    for name in names:
        write_tone(root / name)
    return root


# --------------------------------------------------------------------------- real corpora


def test_emodb_real_counts():
    clips = load_emodb(corpus_dir("emodb"))
    assert len(clips) == 535
    assert Counter(c.label for c in clips) == {
        "angry": 127, "boredom": 81, "neutral": 79, "happy": 71, "fear": 69, "sad": 62, "disgust": 46,
    }
    per_speaker = Counter(c.speaker for c in clips)
    assert per_speaker == {"03": 49, "08": 58, "09": 43, "10": 38, "11": 55,
                           "12": 35, "13": 61, "14": 69, "15": 56, "16": 71}
    assert len({c.text for c in clips}) == 10
    assert [c.path for c in clips] == sorted(c.path for c in clips)
    first = clips[0]
    assert Path(first.path).name == "03a01Fa.wav" and first.label == "happy" and first.text == "a01"
    assert {c.corpus for c in clips} == {"emodb"}


def test_emodb_accepts_wav_folder_itself():
    assert len(load_emodb(corpus_dir("emodb") / "wav")) == 535


def test_ravdess_real_counts():
    clips = load_ravdess(corpus_dir("ravdess"))
    assert len(clips) == 1440
    assert len({c.speaker for c in clips}) == 24
    assert {c.speaker for c in clips} == {f"{i:02d}" for i in range(1, 25)}
    labels = Counter(c.label for c in clips)
    assert len(labels) == 8
    assert labels["neutral"] == 96
    assert all(labels[name] == 192 for name in labels if name != "neutral")
    assert {c.text for c in clips} == {"01", "02"}
    assert {c.corpus for c in clips} == {"ravdess"}


def test_emovo_real_counts():
    clips = load_emovo(corpus_dir("emovo"))
    assert len(clips) == 588
    assert Counter(c.speaker for c in clips) == {s: 98 for s in ("f1", "f2", "f3", "m1", "m2", "m3")}
    assert Counter(c.label for c in clips) == {
        label: 84 for label in ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
    }
    assert {c.text for c in clips} == {"b1", "b2", "b3", "l1", "l2", "l3", "l4",
                                       "n1", "n2", "n3", "n4", "n5", "d1", "d2"}
    # Every speaker says every sentence once per emotion, so speaker- and sentence-disjoint splits exist.
    assert len({(c.speaker, c.label, c.text) for c in clips}) == 588
    assert [c.path for c in clips] == sorted(c.path for c in clips)
    first = clips[0]
    assert Path(first.path).name == "dis-f1-b1.flac"
    assert (first.label, first.speaker, first.text, first.corpus) == ("disgust", "f1", "b1", "emovo")
    assert load_corpus("emovo", corpus_dir("emovo")) == clips


def test_real_corpora_four_class_subset():
    emodb = select_labels(load_emodb(corpus_dir("emodb")), FOUR_CLASS)
    assert len(emodb) == 127 + 71 + 79 + 62
    ravdess = select_labels(load_ravdess(corpus_dir("ravdess")), FOUR_CLASS)
    assert len(ravdess) == 96 + 3 * 192
    emovo = select_labels(load_emovo(corpus_dir("emovo")), FOUR_CLASS)
    assert len(emovo) == 4 * 84


def test_corpus_languages():
    assert {name: corpus.language for name, corpus in CORPORA.items()} == {
        "emodb": "de", "ravdess": "en", "emovo": "it", "savee": "en", "aesdd": "el", "shemo": "fa",
    }


# --------------------------------------------------------------------------- registry


def test_registry_entries_are_complete():
    assert set(CORPORA) == {"emodb", "ravdess", "emovo", "savee", "aesdd", "shemo"}
    for name, corpus in CORPORA.items():
        assert corpus.name == name
        for field in dataclasses.fields(Corpus):
            assert getattr(corpus, field.name), f"{name}: empty {field.name}"
        assert callable(corpus.loader)
        assert corpus.language in LANGUAGE_NAMES
        assert corpus.citation.startswith("@") and corpus.citation.endswith("}")
        assert set(corpus.emotions.values()) <= set(CANONICAL_LABELS)


def test_registry_licences():
    assert CORPORA["ravdess"].license == "cc-by-nc-sa-4.0"
    assert {corpus.license for name, corpus in CORPORA.items() if name != "ravdess"} == {"cc-by-nc-4.0"}


def test_corpus_info():
    assert corpus_info("emodb") is CORPORA["emodb"]
    assert corpus_info(" RAVDESS ") is CORPORA["ravdess"]
    assert corpus_info("folder") is None and corpus_info("csv") is None and corpus_info("iemocap") is None


# One file name per corpus in its own layout, with the label it encodes.
ONE_FILE = {
    "emodb": ("wav/03a01Fa.wav", "happy"),
    "ravdess": ("Actor_01/03-01-05-01-02-01-01.wav", "angry"),
    "emovo": ("f1/tri-f1-b1.wav", "sad"),
    "savee": ("AudioData/DC/n01.wav", "neutral"),
    "aesdd": ("fear/f01 (1).wav", "fear"),
    "shemo": ("male/M01W01.wav", "surprise"),
}


@pytest.mark.parametrize("name", sorted(CORPORA))
def test_named_loaders_tag_clips_with_their_corpus(tmp_path, name):
    relative, label = ONE_FILE[name]
    make_tree(tmp_path, [relative])
    clips = load_corpus(name, tmp_path)
    assert [(c.label, c.corpus) for c in clips] == [(label, name)]


def test_folder_and_csv_clips_have_no_corpus(tmp_path):
    make_tree(tmp_path, ["angry/a.wav"])
    (tmp_path / "list.csv").write_text("path,label\nangry/a.wav,angry\n")
    assert [c.corpus for c in load_corpus("folder", tmp_path)] == [None]
    assert [c.corpus for c in load_corpus("csv", tmp_path / "list.csv")] == [None]


def test_new_registry_entry_is_loadable(tmp_path, monkeypatch):
    def load_mini(root, strict=True):
        return [Clip(str(path), "happy", "s1", None, corpus="mini") for path in sorted(Path(root).glob("*.wav"))]

    mini = Corpus(name="mini", display_name="Mini corpus", short_name="Mini", language="en",
                  license="cc-by-4.0", citation="@misc{mini}", emotions={"h": "happy"}, loader=load_mini)
    monkeypatch.setattr(corpora, "CORPORA", {**CORPORA, "mini": mini})
    make_tree(tmp_path, ["h1.wav"])
    assert [c.corpus for c in load_corpus("mini", tmp_path)] == ["mini"]
    assert corpus_info("mini") is mini


# --------------------------------------------------------------------------- generated trees


def test_emodb_generated_bad_names(tmp_path):
    make_tree(tmp_path / "wav", ["03a01Fa.wav", "03a01Xa.wav", "notes.wav"])
    (tmp_path / "wav" / "readme.txt").write_text("not audio, ignored")
    with pytest.raises(CorpusError, match=r"2 file\(s\).*03a01Xa"):
        load_emodb(tmp_path)
    with pytest.warns(UserWarning, match="2 file"):
        clips = load_emodb(tmp_path, strict=False)
    assert [c.label for c in clips] == ["happy"]


def test_ravdess_song_skipped_with_count(tmp_path):
    make_tree(tmp_path, [
        "Actor_01/03-01-05-01-02-01-01.wav",
        "Actor_01/03-02-05-01-02-01-01.wav",
        "Actor_02/03-02-03-01-01-01-02.wav",
        "Actor_02/03-01-08-02-01-02-02.flac",
    ])
    with pytest.warns(UserWarning, match="skipped 2 song"):
        clips = load_ravdess(tmp_path)
    assert [(c.label, c.speaker, c.text) for c in clips] == [("angry", "01", "02"), ("surprise", "02", "01")]


def test_ravdess_unknown_emotion_code(tmp_path):
    make_tree(tmp_path, ["Actor_01/03-01-05-01-02-01-01.wav", "Actor_01/03-01-09-01-02-01-01.wav"])
    with pytest.raises(CorpusError, match="unknown emotion code '09'"):
        load_ravdess(tmp_path)


def test_emovo_generated(tmp_path):
    make_tree(tmp_path, [f"{spk}/{code}-{spk}-b1.wav" for spk in ("f1", "m3")
                         for code in ("dis", "gio", "neu", "pau", "rab", "sor", "tri")])
    clips = load_emovo(tmp_path)
    assert len(clips) == 14
    assert [(c.label, c.speaker, c.text) for c in clips[:7]] == [
        ("disgust", "f1", "b1"), ("happy", "f1", "b1"), ("neutral", "f1", "b1"), ("fear", "f1", "b1"),
        ("angry", "f1", "b1"), ("surprise", "f1", "b1"), ("sad", "f1", "b1"),
    ]
    assert {c.speaker for c in clips} == {"f1", "m3"}


def test_emovo_generated_bad_names(tmp_path):
    make_tree(tmp_path, ["f1/gio-f1-l2.flac", "f1/xyz-f1-l2.flac", "f1/gio-m2-l2.flac",
                         "f1/gio_f1_l2.flac", "m2/tri-m2-n5.wav"])
    with pytest.raises(CorpusError, match=r"3 file\(s\).*xyz-f1-l2"):
        load_emovo(tmp_path)
    with pytest.raises(CorpusError, match="unknown emotion code 'xyz'"):
        load_emovo(tmp_path)
    with pytest.raises(CorpusError, match="speaker m2 is in folder f1"):
        load_emovo(tmp_path)
    with pytest.warns(UserWarning, match="3 file"):
        clips = load_emovo(tmp_path, strict=False)
    assert [(c.label, c.speaker, c.text) for c in clips] == [("happy", "f1", "l2"), ("sad", "m2", "n5")]


SAVEE_NAMES = [f"AudioData/{spk}/{code}01.wav" for spk in ("DC", "JE", "JK", "KL")
               for code in ("a", "d", "f", "h", "n", "sa", "su")]


def test_savee_nested_layout(tmp_path):
    clips = load_savee(make_tree(tmp_path, SAVEE_NAMES))
    assert len(clips) == 28
    assert {c.speaker for c in clips} == {"DC", "JE", "JK", "KL"}
    by_text = {(c.speaker, c.text): c.label for c in clips}
    assert by_text[("DC", "sa01")] == "sad"
    assert by_text[("KL", "su01")] == "surprise"
    assert by_text[("JE", "a01")] == "angry"
    assert Counter(c.label for c in clips) == {label: 4 for label in
                                                ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")}


def test_savee_flat_all_layout(tmp_path):
    make_tree(tmp_path, ["ALL/DC_a01.wav", "ALL/JK_sa15.wav", "ALL/KL_n30.wav"])
    clips = load_savee(tmp_path)
    assert [(c.speaker, c.label, c.text) for c in clips] == [
        ("DC", "angry", "a01"), ("JK", "sad", "sa15"), ("KL", "neutral", "n30"),
    ]
    assert len(load_savee(tmp_path / "ALL")) == 3


def test_savee_bad_code(tmp_path):
    make_tree(tmp_path, ["AudioData/DC/a01.wav", "AudioData/DC/x01.wav"])
    with pytest.raises(CorpusError, match="x01"):
        load_savee(tmp_path)


def test_aesdd(tmp_path):
    make_tree(tmp_path, [
        "anger/a01 (1).wav", "anger/a01 (1)b.wav", "disgust/d02 (2).wav", "fear/f20 (6).wav",
        "happiness/h03 (3).wav", "sadness/s04 (4).wav",
    ])
    clips = load_aesdd(tmp_path)
    assert len(clips) == 6
    assert [(c.label, c.speaker, c.text) for c in clips] == [
        ("angry", "1", "01"), ("angry", "1", "01"), ("disgust", "2", "02"),
        ("fear", "6", "20"), ("happy", "3", "03"), ("sad", "4", "04"),
    ]


def test_aesdd_folder_letter_mismatch_and_bad_name(tmp_path):
    make_tree(tmp_path, ["anger/a01 (1).wav", "anger/s01 (1).wav", "anger/a01.wav"])
    with pytest.raises(CorpusError, match="2 file"):
        load_aesdd(tmp_path)
    with pytest.warns(UserWarning, match="folder says angry"):
        assert len(load_aesdd(tmp_path, strict=False)) == 1


def test_shemo(tmp_path):
    make_tree(tmp_path, ["female/F01A01.wav", "female/F01W02.wav", "male/M01N01.wav",
                         "male/M12S03.wav", "male/M02H01.wav", "female/F03F01.wav"])
    clips = load_shemo(tmp_path)
    assert {(c.speaker, c.label) for c in clips} == {
        ("F01", "angry"), ("F01", "surprise"), ("M01", "neutral"), ("M12", "sad"), ("M02", "happy"), ("F03", "fear"),
    }
    assert all(c.text is None for c in clips)


def test_shemo_bad_letter(tmp_path):
    make_tree(tmp_path, ["female/F01A01.wav", "female/F01Z01.wav"])
    with pytest.raises(CorpusError, match="F01Z01"):
        load_shemo(tmp_path)


@pytest.mark.parametrize("loader", [load_emodb, load_ravdess, load_emovo, load_savee, load_aesdd, load_shemo,
                                    load_folder])
def test_empty_corpus_raises(tmp_path, loader):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "notes.txt").write_text("no audio here")
    with pytest.raises(CorpusError, match=str(tmp_path)):
        loader(tmp_path)


def test_missing_root_raises(tmp_path):
    with pytest.raises(CorpusError, match="not a directory"):
        load_emodb(tmp_path / "absent")


def test_hidden_metadata_files_ignored(tmp_path):
    make_tree(tmp_path, ["wav/03a01Fa.wav", "wav/._03a01Fa.wav", "__MACOSX/wav/._03a01Fa.wav"])
    assert len(load_emodb(tmp_path)) == 1


def test_folder_loader(tmp_path):
    make_tree(tmp_path, ["Anger/spk1_001.wav", "happiness/deep/spk2_002.wav",
                         "calm/spk1_003.WAV", "custom/spk3_004.flac"])
    clips = load_folder(tmp_path)
    assert sorted(c.label for c in clips) == ["angry", "calm", "custom", "happy"]
    assert not has_speakers(clips)
    with_speakers = load_folder(tmp_path, speaker_regex=r"^(?P<speaker>spk\d+)_")
    assert has_speakers(with_speakers)
    assert sorted(c.speaker for c in with_speakers) == ["spk1", "spk1", "spk2", "spk3"]


def test_folder_loader_bad_entries(tmp_path):
    make_tree(tmp_path, ["angry/spk1_001.wav", "loose.wav", "sad/nospeaker.wav"])
    with pytest.raises(CorpusError, match="loose.wav"):
        load_folder(tmp_path)
    with pytest.warns(UserWarning, match="2 file"):
        clips = load_folder(tmp_path, speaker_regex=r"(spk\d+)_", strict=False)
    assert [(c.label, c.speaker) for c in clips] == [("angry", "spk1")]


def test_csv_loader(tmp_path):
    make_tree(tmp_path, ["audio/one.wav", "audio/two.wav", "audio/three.wav"])
    absolute = write_tone(tmp_path / "elsewhere" / "four.wav")
    (tmp_path / "list.csv").write_text(
        "path,label,speaker,text\n"
        "audio/one.wav,Anger,s1,hello\n"
        "audio/two.wav, happiness ,s2,\n"
        "audio/three.wav,frustrated,s1,x\n"
        f"{absolute},fearful,s3,y\n"
    )
    clips = load_csv(tmp_path / "list.csv")
    assert [(Path(c.path).name, c.label, c.speaker, c.text) for c in clips] == [
        ("one.wav", "angry", "s1", "hello"), ("three.wav", "frustrated", "s1", "x"),
        ("two.wav", "happy", "s2", None), ("four.wav", "fear", "s3", "y"),
    ]
    assert all(Path(c.path).is_file() for c in clips)
    assert has_speakers(clips)


def test_csv_without_speaker_column(tmp_path):
    make_tree(tmp_path, ["a.wav"])
    (tmp_path / "list.csv").write_text("path,label\na.wav,sadness\n")
    clips = load_corpus("csv", tmp_path / "list.csv")
    assert clips == [Clip(str(tmp_path / "a.wav"), "sad", "unknown", None)]
    assert not has_speakers(clips)


def test_csv_bad_rows(tmp_path):
    make_tree(tmp_path, ["a.wav", "b.wav"])
    (tmp_path / "list.csv").write_text("path,label\na.wav,sad\nb.wav,\nmissing.wav,happy\n")
    with pytest.raises(CorpusError, match="empty label"):
        load_csv(tmp_path / "list.csv")
    with pytest.warns(UserWarning, match="2 file"):
        assert len(load_csv(tmp_path / "list.csv", strict=False)) == 1
    (tmp_path / "noheader.csv").write_text("a.wav,sad\n")
    with pytest.raises(CorpusError, match="'path' and 'label'"):
        load_csv(tmp_path / "noheader.csv")
    (tmp_path / "empty.csv").write_text("path,label\n")
    with pytest.raises(CorpusError, match="empty.csv"):
        load_csv(tmp_path / "empty.csv")


def test_select_labels_four_class_across_loaders(tmp_path):
    savee = load_savee(make_tree(tmp_path / "savee", SAVEE_NAMES))
    shemo = load_shemo(make_tree(tmp_path / "shemo", ["female/F01A01.wav", "female/F01H01.wav",
                                                       "male/M01N01.wav", "male/M01S01.wav", "male/M01W01.wav"]))
    for clips in (savee, shemo):
        subset = select_labels(clips, FOUR_CLASS)
        assert {c.label for c in subset} == set(FOUR_CLASS)
    # Aliases are accepted when selecting too.
    assert len(select_labels(savee, ["anger", "sadness"])) == 8


def test_select_labels_missing_label(tmp_path):
    aesdd = load_aesdd(make_tree(tmp_path, ["anger/a01 (1).wav", "sadness/s01 (1).wav", "happiness/h01 (1).wav"]))
    with pytest.raises(ValueError, match="neutral"):
        select_labels(aesdd, FOUR_CLASS)


def test_load_corpus_dispatch(tmp_path):
    make_tree(tmp_path, ["female/F01A01.wav"])
    assert load_corpus("shemo", tmp_path)[0].speaker == "F01"
    with pytest.raises(ValueError, match="unknown corpus"):
        load_corpus("iemocap", tmp_path)


def test_load_corpus_error_lists_every_name(tmp_path):
    with pytest.raises(ValueError) as error:
        load_corpus("iemocap", tmp_path)
    for name in [*CORPORA, "folder", "csv"]:
        assert repr(name) in str(error.value)


# --------------------------------------------------------------------------- mixtures

THREE = ["emodb", "ravdess", "emovo"]


@pytest.fixture(scope="module")
def three_corpora():
    """The real corpora loaded one by one and as one mixture."""
    roots = [corpus_dir(name) for name in THREE]
    single = {name: load_corpus(name, root) for name, root in zip(THREE, roots)}
    return single, load_mixture(THREE, roots)


def test_mixture_of_the_real_corpora(three_corpora):
    single, mixture = three_corpora
    assert len(mixture) == 535 + 1440 + 588
    assert Counter(c.corpus for c in mixture) == {"emodb": 535, "ravdess": 1440, "emovo": 588}
    # The corpora in the order named, each clip as its own loader made it except for the corpus-prefixed speaker.
    alone = [clip for name in THREE for clip in single[name]]
    assert [c.path for c in mixture] == [c.path for c in alone]
    for mixed, own in zip(mixture, alone):
        assert mixed.speaker == f"{own.corpus}-{own.speaker}"
        assert (mixed.label, mixed.text, mixed.corpus) == (own.label, own.text, own.corpus)
    speakers = {name: {c.speaker for c in mixture if c.corpus == name} for name in THREE}
    assert {name: len(ids) for name, ids in speakers.items()} == {"emodb": 10, "ravdess": 24, "emovo": 6}
    assert len(set.union(*speakers.values())) == 40  # no id is shared across corpora
    assert "emodb-03" in speakers["emodb"] and "ravdess-03" in speakers["ravdess"]  # "03" alone would collide
    assert "emovo-f1" in speakers["emovo"] and has_speakers(mixture)


def test_mixture_shared_labels(three_corpora):
    single, mixture = three_corpora
    six = ["angry", "disgust", "fear", "happy", "neutral", "sad"]
    assert shared_labels(mixture) == six
    assert six == sorted(set.intersection(*({c.label for c in clips} for clips in single.values())))
    assert six == sorted(set.intersection(*(set(CORPORA[name].emotions.values()) for name in THREE)))
    subset = select_labels(mixture, shared_labels(mixture))  # every corpus keeps clips of every shared emotion
    assert {(c.corpus, c.label) for c in subset} == {(name, label) for name in THREE for label in six}
    assert shared_labels([c for c in mixture if c.corpus != "emodb"]) == sorted({*six, "surprise"})


def test_shared_labels_needs_two_shared_emotions():
    clips = [Clip("/a/1.wav", "angry", "1", corpus="x"), Clip("/a/2.wav", "sad", "1", corpus="x"),
             Clip("/b/1.wav", "angry", "2", corpus="y"), Clip("/b/2.wav", "happy", "2", corpus="y")]
    with pytest.raises(CorpusError, match="fewer than two"):
        shared_labels(clips)
    assert shared_labels(clips + [Clip("/b/3.wav", "sad", "2", corpus="y")]) == ["angry", "sad"]


def test_mixture_of_one_corpus_is_the_corpus():
    root = corpus_dir("emovo")
    assert load_mixture(["emovo"], [root]) == load_emovo(root)  # speakers keep their own ids


def test_mixture_names_a_corpus_once(tmp_path):
    root = corpus_dir("emodb")
    with pytest.raises(ValueError, match="same corpus twice"):
        load_mixture(["emodb", "emodb"], [root, root])
    with pytest.raises(ValueError, match="same corpus twice"):
        load_mixture(["emodb", " EmoDB "], [root, tmp_path])  # one corpus, however it is spelt


def test_mixture_with_folder_data(tmp_path):
    emodb = make_tree(tmp_path / "berlin", ["wav/03a01Fa.wav", "wav/08a02Wb.wav"])
    folder = make_tree(tmp_path / "studio", ["angry/s7_take1.wav", "sad/s9_take2.wav"])
    clips = load_mixture(["emodb", "folder"], [emodb, folder], speaker_regex=r"s(\d+)_")
    assert [(c.corpus, c.speaker, c.label) for c in clips] == [
        ("emodb", "emodb-03", "happy"), ("emodb", "emodb-08", "angry"),
        ("studio", "studio-7", "angry"), ("studio", "studio-9", "sad")]
    unknown = load_mixture(["emodb", "folder"], [emodb, folder])  # no speaker ids: they stay unknown
    assert [c.speaker for c in unknown] == ["emodb-03", "emodb-08", "unknown", "unknown"]
    assert not has_speakers(unknown)


def test_mixture_language():
    assert mixture_language(["emodb"]) == "de"
    assert mixture_language(["emovo"]) == "it"
    assert mixture_language(THREE) == "multilingual"
    assert mixture_language(["emodb", "ravdess"]) == "multilingual"
    assert mixture_language(["ravdess", "savee"]) == "en"  # several corpora, one language
    assert mixture_language(["emodb", "folder"]) is None  # custom data: language unknown
