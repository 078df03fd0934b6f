"""Adaptation without labels (`ser-adapt`): a saved model's normalisation statistics re-estimated from the user's own
unlabelled recordings, saved as a new model folder whose card says what it was adapted to, and from which model.

A head trained with `--normalisation global` z-normalises what it reads (a frozen encoder's frames; the log-mel
CNN's log-mels) with statistics of its training clips, saved in the model. Another language, microphone or room
shifts those statistics; the statistics of the user's own speech move the new audio to where the head expects it.
Nothing is trained and no label is needed: only the two saved tensors change.

    ser-adapt models/ser-whisper-mixture my-recordings/ --output models/my-adapted
    predictor = adapted_predictor("models/ser-whisper-mixture", ["my-recordings/"])   # the same, in memory

Adapt to recordings that between them hold the range of emotions expected: statistics of speech that is mostly one
emotion take that emotion away (benchmarks/README.md, "A recording adapted to itself").
"""

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import torch

import modeling_ser
from modeling_ser import FRAME_STATS_EPS
from ser.core import defaults
from ser.reporting import other_corpora, results as results_file
from ser.inference import timeline as timelines
from ser.core.audio import SAMPLING_RATE, AudioError, audio_duration, find_audio_files
from ser.reporting.card import CROSS_CORPUS_FILENAME, write_card
from ser.inference.predictor import EmotionPredictor
from ser.core.statistics import EncoderFrames, RunningStatistics


def audio_files(inputs: list[str | Path]) -> list[Path]:
    """Files as given, and the audio files under folders (recursively, sorted)."""
    files = []
    for item in map(Path, inputs):
        if item.is_dir():
            files += find_audio_files(item)
        elif item.is_file():
            files.append(item)
        else:
            raise FileNotFoundError(f"{item}: no such file or folder")
    if not files:
        raise ValueError(f"no audio files in {', '.join(map(str, inputs))}")
    return files


def speech_of(path: Path, predictor: EmotionPredictor) -> list[np.ndarray]:
    """A recording's speech as the model hears it: the prepared clip (as a training clip was), or for a recording
    longer than the model takes, its speech segments in pieces it takes (as the timeline classifies them)."""
    if audio_duration(path) <= predictor.max_seconds:  # one clip (refused where no speech is found)
        return [predictor.feature_extractor.prepare(predictor.load_file(path))]
    longest = int(predictor.max_seconds * SAMPLING_RATE)
    segments = timelines.pieces(timelines.find_segments(path, predictor.detector, SAMPLING_RATE), longest)
    shortest = predictor.min_seconds * SAMPLING_RATE
    return [predictor.feature_extractor.prepare(piece, refuse=False)
            for _, piece in timelines.cut(path, segments, SAMPLING_RATE) if piece.size >= shortest]


@torch.no_grad()
def set_statistics(model, feature_extractor, clips: list[np.ndarray]) -> None:
    """The global normalisation statistics the model would have had with these clips as its training clips."""
    if model.normalises_inputs:  # the log-mel CNN takes its training clips' samples
        model.set_global_statistics([torch.from_numpy(clip) for clip in clips])
        return
    statistics = RunningStatistics(EncoderFrames(model, feature_extractor), eps=FRAME_STATS_EPS)
    for clip in clips:
        statistics.add(clip)
    model.frame_stats.copy_(statistics.result())


def check_adaptable(model) -> None:
    config = model.config
    normalisation = config.normalisation if model.normalises_inputs else config.frame_normalisation
    if normalisation != "global":
        raise ValueError(f"this model normalises with {normalisation!r} statistics, not global ones: only a model "
                         "trained with --normalisation global carries statistics to re-estimate")


def adapted_model(model_folder: str | Path, inputs: list[str | Path]) -> tuple:
    """(the model in `model_folder` with its normalisation statistics taken from the speech of `inputs`, files or
    folders; its feature extractor; what it was adapted to, for its card)."""
    from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

    modeling_ser.register_auto_classes()
    model = AutoModelForAudioClassification.from_pretrained(model_folder, dtype=torch.float32).eval()
    check_adaptable(model)
    predictor = EmotionPredictor(model, AutoFeatureExtractor.from_pretrained(model_folder), runtime="fp32")
    files, clips, skipped = audio_files(inputs), [], []
    for path in files:
        try:
            clips += speech_of(path, predictor)
        except AudioError as error:
            skipped.append(f"{path}: {error.reason.value}")
    if not clips:
        raise ValueError(f"no speech found in {len(files)} file(s): " + "; ".join(skipped[:5]))
    set_statistics(model, predictor.feature_extractor, clips)
    return model, predictor.feature_extractor, {
        "adapted_from": str(model_folder), "files": len(files) - len(skipped), "skipped": skipped,
        "speech_minutes": round(sum(clip.size for clip in clips) / SAMPLING_RATE / 60, 2)}


def adapted_predictor(model_folder: str | Path, inputs: list[str | Path], runtime: str = defaults.RUNTIME
                      ) -> EmotionPredictor:
    """The predictor of the model adapted to `inputs` (as `adapt` would save it), in memory: nothing is written
    but the runtime's cache of exported graphs."""
    model, feature_extractor, _ = adapted_model(model_folder, inputs)
    return EmotionPredictor(model, feature_extractor, runtime=runtime, owns_model=True)


def adapt(model_folder: str | Path, inputs: list[str | Path], output: str | Path) -> Path:
    """The model in `model_folder` with its normalisation statistics taken from the speech of `inputs` (files or
    folders), saved to `output` with its results and a card that says so."""
    model_folder, output = Path(model_folder), Path(output)
    if output.resolve() == model_folder.resolve():
        raise ValueError("--output must be a new folder: the model adapted from stays as it is")
    model, feature_extractor, adaptation = adapted_model(model_folder, inputs)
    save(model, feature_extractor, model_folder, output, adaptation)
    return output


def save(model, feature_extractor, source: Path, output: Path, adaptation: dict) -> None:
    output.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output)
    feature_extractor.save_pretrained(output)
    if (source / results_file.FILENAME).is_file():  # the numbers stay the unadapted model's: the card says so
        results = {**results_file.read(source), "adaptation": adaptation}
        results_file.write(results, output)
        for name in (CROSS_CORPUS_FILENAME, other_corpora.FILENAME, "confusion_matrix.png"):
            if (source / name).is_file():
                shutil.copy2(source / name, output / name)
        write_card(output)
    else:
        (output / "adaptation.json").write_text(json.dumps(adaptation, indent=2) + "\n")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Adapt a saved emotion model to your own unlabelled recordings: "
                                     "its normalisation statistics re-estimated from their speech, saved as a new "
                                     "model folder (nothing is trained, no label is needed).")
    parser.add_argument("model", help="a saved model folder trained with --normalisation global")
    parser.add_argument("audio", nargs="+", help="audio files or folders of them (recursively)")
    parser.add_argument("--output", required=True, help="the new model folder")
    args = parser.parse_args(argv)
    try:
        folder = adapt(args.model, args.audio, args.output)
    except (OSError, ValueError) as error:
        parser.exit(2, f"ser-adapt: {error}\n")
    print(f"adapted model: {folder}")


if __name__ == "__main__":
    main()
