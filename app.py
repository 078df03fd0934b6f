"""Speech emotion recognition demo: record or upload speech, get the probability of every emotion.

Ready to run as a Hugging Face Space (`python app.py`) or locally:

    python app.py --model models/ser-cnn-emodb            # a saved model folder
    python app.py --model org/emotion-model --runtime int8   # a Hub id, int8 CPU runtime

The model is loaded once, in `main()`; importing this file loads nothing. Recordings longer than one speech segment
also get a timeline: the emotion of every speech segment, smoothed, so a change of emotion within a recording shows.
"""

import os

# Before gradio is imported: it reads the variable at import time, and a demo should not phone home by default.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import argparse
from pathlib import Path

import gradio as gr
import numpy as np

from ser.audio import AudioError, audio_duration, load_audio
from ser.corpora import corpus_info
from ser import card, defaults
from ser.defaults import DEFAULT_MODEL
from ser.predictor import EmotionPredictor
from ser import results as results_file

HERE = Path(__file__).resolve().parent
MAX_SECONDS = 600.0  # longer uploads are refused before decoding: ten minutes take a few seconds to classify
NO_INPUT = "Please record or upload a speech recording first."
UNREADABLE = "This file could not be read as audio. Please upload a WAV, FLAC, OGG or MP3 recording of speech."


def refuse(message: str) -> gr.Error:
    """The error a user sees as a toast: an expected bad input, so no traceback in the server log."""
    return gr.Error(message, print_exception=False)


def check_recording(path: str | None) -> tuple[float, np.ndarray | None]:
    """(duration in seconds, samples or None) of a usable input, or a gr.Error saying what is wrong.

    The duration comes from the file header when it states one, so a long upload is refused undecoded. A browser
    that cannot encode WAV sends its recording as webm/ogg (named .wav) whose header has no duration; that file is
    decoded here (ffmpeg) and its samples are handed back.
    """
    if not path:
        raise refuse(NO_INPUT)
    audio = None
    try:
        duration = audio_duration(path)
    except AudioError:
        try:
            audio = load_audio(path, EmotionPredictor.sampling_rate)
        except AudioError:
            raise refuse(UNREADABLE) from None
        duration = audio.size / EmotionPredictor.sampling_rate
    if duration <= 0:
        raise refuse("The audio file is empty: it holds no samples.")
    if duration > MAX_SECONDS:
        raise refuse(f"The recording is {duration / 60:.1f} minutes long; this demo takes at most "
                     f"{MAX_SECONDS / 60:.0f} minutes. Please upload a shorter excerpt.")
    return duration, audio


def user_message(error: Exception, path: str) -> str:
    """The predictor's message without the server's temporary file path, which means nothing to the user."""
    message = str(error).strip()
    for prefix in (f"{path}: ", "audio: "):  # classify_file names the path, classify_array says "audio"
        message = message.removeprefix(prefix)
    if "readable" in message or "decod" in message:
        return UNREADABLE
    message = message.replace(str(path), "the file")
    return message[:1].upper() + message[1:]


def long_recording_scores(predictor: EmotionPredictor, path: str) -> dict[str, float]:
    """Scores of a recording longer than the model takes at once: the mean over its speech segments, each weighted
    by its duration."""
    totals, weight = dict.fromkeys(predictor.labels, 0.0), 0.0
    for row in predictor.timeline(path):
        duration = row["end"] - row["start"]
        for label, score in row["scores"].items():
            totals[label] += score * duration
        weight += duration
    return {label: total / weight for label, total in totals.items()}


def describe_model(name_or_path: str, labels: list[str]) -> str:
    """Markdown for a person trying the demo, in a few short lines: what the model recognises, what speech it learned
    from, and how often it is right on voices (and, where measured, on whole corpora) it never heard. No file paths."""
    results = read_results(name_or_path)
    folder = Path(name_or_path)
    name = folder.resolve().name if folder.is_dir() else name_or_path  # a folder's name, never its path; else a Hub id
    lines = [f"**Model:** {name} · recognises {len(labels)} emotions: {', '.join(labels)}"]
    if not results:
        return lines[0]
    keys = results_file.corpus_keys(results)
    known = all(corpus_info(key) for key in keys)  # every corpus of the registry is acted speech
    speech = "acted speech (actors portraying emotions)" if known else "speech"
    where = (f"{len(keys)} collections, {card.corpus_name(results)}" if len(keys) > 1 else card.corpus_name(results))
    speakers = card.speaker_count(results)
    about = ", ".join(part for part in (card.language_name(results), speakers and f"{speakers} speakers") if part)
    lines.append(f"**Learned from:** {speech} from {where}" + (f": {about}" if about else "") + ".")
    chance = f"guessing would score {1 / len(results['labels']):.0%}"
    unheard = ("speakers it never heard" if results["protocol"].get("speaker_independent")
               else "recordings it did not train on (but of speakers it did hear, so expect less on new voices)")
    per_corpus = results_file.per_corpus(results)
    if per_corpus:
        right = ", ".join(f"{card.short_name(key)} {numbers['ua']['mean']:.0%}" for key, numbers in per_corpus.items())
    else:
        right = f"{results_file.headline(results)['ua']['mean']:.0%}"
    lines.append(f"**How often it is right** on {unheard}, each emotion counted equally: {right}; {chance}.")
    cross = read_results(name_or_path, card.CROSS_CORPUS_FILENAME)
    if cross:
        rows, _ = card.cross_corpus_table(cross)
        right = ", ".join(f"{card.short_name(row['corpus'])} {row['ua']['mean']:.0%}" for row in rows)
        lines.append(f"**On a whole corpus left out of training** (new voices, recordings and often language): "
                     f"{right}.")
    return "  \n".join(lines)


def read_results(name_or_path: str, filename: str = results_file.FILENAME) -> dict | None:
    """results.json beside the weights (written by train_ser.py), or another results file stored there (such as the
    cross-corpus one, ser.export.add_cross_corpus), from a folder or the Hub; None when absent."""
    folder = Path(name_or_path)
    try:
        if folder.is_dir():
            path = folder / filename
        else:
            from huggingface_hub import hf_hub_download

            path = Path(hf_hub_download(name_or_path, filename))
        return results_file.read(path)  # validated, and a first-format file upgraded
    except Exception:  # the description is a nicety: no record, no network or a bad file must not stop the demo
        return None


def build_demo(predictor: EmotionPredictor, segment_seconds: float = defaults.SEGMENT_SECONDS,
               smooth_seconds: float = defaults.SMOOTH_SECONDS, model_info: str | None = None) -> gr.Blocks:
    labels = list(predictor.labels)

    def predict(audio_path: str | None) -> dict[str, float]:
        """The probability of every emotion for the whole recording."""
        duration, audio = check_recording(audio_path)
        try:
            if duration > predictor.max_seconds:
                return long_recording_scores(predictor, audio_path)
            if audio is not None:  # already decoded: a header without a duration
                return predictor.classify_array(audio, predictor.sampling_rate)
            return predictor.classify_file(audio_path)
        except ValueError as err:  # AudioError is a ValueError: silent, too short, unreadable, NaN
            raise refuse(user_message(err, audio_path)) from None

    def timeline(audio_path: str | None):
        """The emotion of each speech segment, for recordings longer than one segment; hidden otherwise."""
        duration, _ = check_recording(audio_path)
        if duration <= segment_seconds:
            return gr.Plot(value=None, visible=False)
        try:
            rows = list(predictor.timeline(audio_path, segment_seconds, smooth_seconds=smooth_seconds))
        except ValueError as err:
            raise refuse(user_message(err, audio_path)) from None
        title = f"Emotion of each speech segment (smoothed over {smooth_seconds:g} s)"
        return gr.Plot(value=EmotionPredictor.plot_timeline(rows, labels, title=title), visible=True)

    def clear_outputs():
        return None, gr.Plot(value=None, visible=False)

    # delete_cache: a public Space keeps every upload otherwise; drop files older than an hour, checked hourly.
    with gr.Blocks(title="Speech emotion recognition", delete_cache=(3600, 3600)) as demo:
        gr.Markdown("# Speech emotion recognition\nRecord or upload speech; the model gives the probability of "
                    "each emotion. Recordings longer than "
                    f"{segment_seconds:g} s also get a timeline of the emotion over time.")
        gr.Markdown(model_info or f"**Emotions:** {', '.join(labels)}")
        with gr.Row():
            with gr.Column():
                audio = gr.Audio(sources=["microphone", "upload"], type="filepath", label="Speech",
                                 elem_id="speech-input")
                with gr.Row():
                    clear = gr.Button("Clear", elem_id="clear-button")
                    submit = gr.Button("Recognise emotion", variant="primary", elem_id="submit-button")
            with gr.Column():
                label = gr.Label(num_top_classes=len(labels), label="Emotion", elem_id="emotion-label")
        plot = gr.Plot(label="Timeline", visible=False, elem_id="emotion-timeline")

        # The API endpoint returns only the label dict; the timeline follows for the page, only after a success.
        submit.click(predict, inputs=audio, outputs=label, api_name="predict").success(
            timeline, inputs=audio, outputs=plot, api_name="timeline")
        # A new recording makes the old result stale, so it disappears rather than mislead.
        audio.change(clear_outputs, inputs=None, outputs=[label, plot], api_visibility="private", queue=False)
        clear.click(lambda: (None, *clear_outputs()), inputs=None, outputs=[audio, label, plot],
                    api_visibility="private", queue=False)
    # Two requests at a time keep a small CPU responsive; the rest wait in line rather than being refused.
    demo.queue(default_concurrency_limit=2, max_size=64)
    return demo


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=os.environ.get("SER_MODEL", DEFAULT_MODEL),
                        help="model folder or Hub id (default: $SER_MODEL or %(default)s)")
    parser.add_argument("--runtime", choices=("fp32", "int8"), default=defaults.RUNTIME, help="CPU inference runtime")
    # A Space sets GRADIO_SERVER_NAME/PORT; locally the demo stays on this machine unless asked.
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                        help="address to serve on (default: $GRADIO_SERVER_NAME or 127.0.0.1)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
                        help="port to serve on (default: $GRADIO_SERVER_PORT or 7860)")
    parser.add_argument("--share", action="store_true", help="also serve through a public gradio.live link")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice, which follows $OMP_NUM_THREADS)")
    parser.add_argument("--segment-seconds", type=float, default=defaults.SEGMENT_SECONDS,
                        help="longest piece of speech classified at once (%(default)s s)")
    parser.add_argument("--smooth-seconds", type=float, default=defaults.SMOOTH_SECONDS,
                        help="timeline smoothing (%(default)s s)")
    return parser.parse_args(argv)


def resolve_model(name: str) -> str:
    """A relative folder is looked up beside app.py too, so the demo starts from any working directory."""
    beside_app = HERE / name
    if not Path(name).exists() and beside_app.exists():
        return str(beside_app)
    return name


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)  # several processes on few cores: more threads each only spin
    model = resolve_model(args.model)
    predictor = EmotionPredictor.from_pretrained(model, runtime=args.runtime)
    demo = build_demo(predictor, args.segment_seconds, args.smooth_seconds,
                      model_info=describe_model(model, list(predictor.labels)))
    # 200 MB holds 10 minutes of 48 kHz stereo 16-bit WAV; bigger uploads are refused before reaching us.
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, max_file_size="200mb")


if __name__ == "__main__":
    main()
