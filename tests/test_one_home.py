"""Facts with one home: the sample rate, the integer-PCM scale and the predictor's clip limits are defined once, and
every other file refers to that definition (a literal elsewhere is how two definitions start to drift)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# the model file is uploaded next to every model and may import only torch and transformers: it keeps its own
SOURCES = [p for p in [*ROOT.glob("*.py"), *(ROOT / "ser").rglob("*.py"), *(ROOT / "benchmarks").glob("*.py")] if p.name != "modeling_ser.py"]


def places(pattern: str) -> list[str]:
    """`file: line` for every line of code (comments left out) matching `pattern`."""
    regex = re.compile(pattern)
    return sorted(f"{path.relative_to(ROOT)}: {line.strip()}" for path in SOURCES
                  for line in path.read_text().splitlines() if regex.search(line.split("#")[0]))


def test_the_sample_rate_is_written_once():
    assert [place.split("  #")[0] for place in places(r"\b16_?000\b")] == ["speech_ser.py: SAMPLING_RATE = 16000"]


def test_integer_pcm_has_one_scale():
    assert places(r"\b3276[78]\b|2 ?\*\* ?15\b") == []
    assert len(places(r"2 ?\*\* ?\(.*bits")) == 1  # ser.core.audio.to_float_mono: 2**(bits - 1), for every caller


def test_the_clip_limits_are_defined_once():
    """The model's own limits (the shortest clip, the level of silence) live with its preparation, which the stock
    pipeline applies too; the predictor's InputPolicy adds the rest; the command line and the demo read them from
    their predictor."""
    limit = r"\b((min|max)_(speaker_)?seconds|silence_db)\s*(:\s*\w+\s*)?=\s*-?[\d.]+"
    assert [place.split("  #")[0] for place in places(f"(?i){limit}")] == [
        "feature_extraction_ser.py: MIN_SECONDS = 0.25", "feature_extraction_ser.py: SILENCE_DB = -70.0",
        "ser/inference/predictor.py: max_seconds: float = 60.0", "ser/inference/predictor.py: min_speaker_seconds: float = 10.0"]


def test_the_entry_points_are_console_commands_too():
    """`pip install -e .` (scripts/setup.sh) installs train_ser.py, predict_ser.py and app.py as commands: each
    names the script's own `main`."""
    from importlib.metadata import entry_points

    import app
    import predict_ser
    import train_ser

    commands = {ep.name: ep for ep in entry_points(group="console_scripts") if ep.name.startswith("ser-")}
    for name, module in [("ser-train", train_ser), ("ser-predict", predict_ser), ("ser-demo", app)]:
        assert commands[name].load() is module.main


def test_encoder_specs_hold_only_overrides_of_the_config_defaults(tmp_path):
    """A default has one home, the config class: a spec repeating one would silently keep the old value if the
    class's default changed. A field the class does not have is refused (a config keeps unknown keys silently)."""
    import json

    import pytest

    from ser.training import encoders

    specs = sorted((ROOT / "configs" / "encoders").glob("*.json"))
    assert specs
    for path in specs:
        spec = encoders.load_spec(path)
        defaults = encoders.emotion_class(spec["family"]).config_class().to_dict()
        repeated = [key for key, value in spec["encoder"].items() if json.loads(json.dumps(defaults[key])) == value]
        assert not repeated, f"{path.name} repeats the defaults of {repeated}"
    misspelt = tmp_path / "spec.json"
    misspelt.write_text(json.dumps({"family": "logmel-cnn", "encoder": {"num_mel_bin": 32}}))
    with pytest.raises(ValueError, match="num_mel_bin"):
        encoders.load_spec(misspelt)
