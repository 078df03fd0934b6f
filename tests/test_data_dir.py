"""Where the named corpora are: --data_dir, else $SER_DATA, else ../shared/data beside the repository
(ser.data.corpora.data_dir). The real corpora reached through another folder (symlinks to them) load the same clips,
however the folder is given, and a corpus missing there is reported with the folder searched and how to change it."""

from pathlib import Path

import pytest

import train_ser
from helpers import DATA, ROOT, require
from ser.data import corpora
from ser.training.arguments import parse_arguments
from ser.data.corpora import DATA_ENV, DEFAULT_DATA_DIR, CorpusError, corpus_dir, data_dir, load_corpus, load_mixture
from ser.training.experiment import corpus_roots, read_corpus

REAL = ("emodb", "ravdess", "emovo")  # the corpora on this machine
MIXTURE = ROOT / "configs" / "mixture.yaml"


@pytest.fixture
def elsewhere(tmp_path):
    """A data folder somewhere else, holding the real corpora as symlinks under their registry names."""
    folder = tmp_path / "corpora elsewhere"
    folder.mkdir()
    for name in REAL:
        (folder / name).symlink_to(require(DATA / name), target_is_directory=True)
    return folder


def relative(clips, root):
    """What a clip is, wherever its corpus lies: its path inside the corpus folder, label, speaker, text, corpus."""
    return [(str(Path(clip.path).relative_to(root)), clip.label, clip.speaker, clip.text, clip.corpus)
            for clip in clips]


def test_the_order_is_the_argument_then_the_environment_then_the_default(tmp_path, monkeypatch):
    monkeypatch.delenv(DATA_ENV, raising=False)
    assert data_dir() == DEFAULT_DATA_DIR == ROOT.parent / "shared" / "data"
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "env"))
    assert data_dir() == tmp_path / "env"
    assert data_dir(tmp_path / "given") == tmp_path / "given"
    monkeypatch.setenv(DATA_ENV, "")  # set but empty: the default
    assert data_dir() == DEFAULT_DATA_DIR


@pytest.mark.parametrize("name", REAL)
def test_every_named_corpus_loads_the_same_clips_from_another_folder(name, elsewhere, monkeypatch):
    monkeypatch.delenv(DATA_ENV, raising=False)
    here = load_corpus(name)  # the default folder
    assert corpus_dir(name) == DATA / name
    monkeypatch.setenv(DATA_ENV, str(elsewhere))
    moved = load_corpus(name)
    assert corpus_dir(name) == elsewhere / name
    assert all(clip.path.startswith(str(elsewhere)) for clip in moved)
    assert relative(moved, elsewhere / name) == relative(here, DATA / name)


def test_train_ser_finds_every_corpus_of_a_config_under_data_dir_or_ser_data(elsewhere, tmp_path, monkeypatch):
    """configs/mixture.yaml names its corpora only: with --data_dir, or with $SER_DATA, all three are read from
    the other folder, and --data_dir wins over $SER_DATA."""
    monkeypatch.delenv(DATA_ENV, raising=False)
    output = ["--output_dir", str(tmp_path / "run")]
    default = parse_arguments(["--config", str(MIXTURE), *output])[0]
    assert default.data_root is None and default.corpus == list(REAL)
    here = load_mixture(default.corpus, corpus_roots(default))
    by_argument = parse_arguments(["--config", str(MIXTURE), "--data_dir", str(elsewhere), *output])[0]
    assert corpus_roots(by_argument) == [elsewhere / name for name in REAL]
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "nothing here"))  # the argument comes first
    moved = load_mixture(by_argument.corpus, corpus_roots(by_argument))
    monkeypatch.setenv(DATA_ENV, str(elsewhere))
    by_environment = parse_arguments(["--config", str(MIXTURE), *output])[0]
    assert corpus_roots(by_environment) == [elsewhere / name for name in REAL]
    assert len(moved) == len(here) == 535 + 1440 + 588
    for name in REAL:
        keep = lambda clips: [clip for clip in clips if clip.corpus == name]  # noqa: E731
        assert relative(keep(moved), elsewhere / name) == relative(keep(here), DATA / name)


def test_a_run_reads_the_corpus_from_data_dir(elsewhere, tmp_path, monkeypatch):
    """train_ser.py's reading of a corpus (the clips as a dataset, audio checked) through --data_dir."""
    monkeypatch.delenv(DATA_ENV, raising=False)
    args = ["--config", str(ROOT / "configs" / "emodb.yaml"), "--labels", "sad", "boredom", "--output_dir",
            str(tmp_path / "run")]
    here = read_corpus(parse_arguments(args)[0])
    moved = read_corpus(parse_arguments([*args, "--data_dir", str(elsewhere)])[0])
    assert moved[2] == here[2] == ["boredom", "sad"]
    assert relative(moved[1], elsewhere / "emodb") == relative(here[1], DATA / "emodb")
    assert len(moved[1]) == 62 + 81  # sadness and boredom in the corpus README


def test_a_missing_corpus_names_the_folder_searched_and_how_to_change_it(tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.delenv(DATA_ENV, raising=False)
    with pytest.raises(CorpusError) as given:
        corpus_dir("emovo", empty)
    message = str(given.value)
    assert str(empty / "emovo") in message and "from --data_dir" in message
    assert "--data_dir" in message and DATA_ENV in message and corpora.DATA_PAGE in message
    monkeypatch.setenv(DATA_ENV, str(empty))
    with pytest.raises(CorpusError, match=f"corpus not found at {empty / 'ravdess'}.*from \\${DATA_ENV}"):
        load_corpus("ravdess")
    # train_ser.py stops with it before anything is trained
    with pytest.raises(CorpusError, match=f"emodb: corpus not found at {empty / 'emodb'}"):
        train_ser.main(["--config", str(ROOT / "configs" / "emodb.yaml"), "--output_dir", str(tmp_path / "run"),
                        "--report_to", "none"])
    assert not (tmp_path / "run" / "results.json").exists()


def test_folder_and_csv_still_need_their_own_path(tmp_path):
    with pytest.raises(SystemExit):
        parse_arguments(["--corpus", "csv", "--encoder_config", "x.json", "--output_dir", str(tmp_path)])
    with pytest.raises(SystemExit):  # one root per corpus, or none
        parse_arguments(["--corpus", "emodb", "ravdess", "--data_root", "a", "--encoder_config", "x.json",
                         "--output_dir", str(tmp_path)])
