"""Speech emotion recognition demo: upload a recording or speak into the microphone, and see the emotion.

Ready to run as a Hugging Face Space (`python app.py`; README "Deploying as a Space") or locally:

    python app.py --model models/ser-cnn-emodb            # a saved model folder
    python app.py --model org/emotion-model --runtime int8   # a Hub id, int8 CPU runtime

An upload gets the probability of every emotion; one longer than a speech segment also gets a timeline of its speech
segments (smoothed), a summary of the time per emotion and the segments as CSV. The live microphone updates a meter
and a rolling timeline while the person speaks, and analyses the whole recording when they stop. The API has
`/predict` (scores) and `/timeline` (segments). What the page does with audio lives in ser/demo.py; the model is
loaded once, in `main()`, so importing this file loads nothing.
"""

import os

# Before gradio is imported: it reads the variable at import time, and a demo should not phone home by default.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import argparse
from pathlib import Path

import gradio as gr
import pandas as pd
from gradio.data_classes import FileData

from ser.corpora import LANGUAGE_NAMES, corpus_info
from ser import card, defaults, demo
from ser.defaults import DEFAULT_MODEL
from ser.predictor import EmotionPredictor
from ser.runtime import RUNTIMES
from ser import results as results_file

HERE = Path(__file__).resolve().parent
LIVE_LISTENERS = 8  # live microphone sessions served at once
ANALYSES_AT_ONCE = 2  # uploads and API calls; two keep a small CPU responsive, the rest wait in line


def describe_model(name_or_path: str, labels: list[str]) -> tuple[str, str]:
    """For a person trying the demo, in plain words (no file names, no jargon): one short line on what the model
    recognises and what speech it learned from, and the details for a fold: how often it is right on voices (and,
    where measured, on whole collections) it never heard."""
    short = f"Recognises {len(labels)} emotions: {', '.join(labels[:-1])} and {labels[-1]}."
    results = read_results(name_or_path)
    if not results:
        return short, ""
    keys = results_file.corpus_keys(results)
    acted = all(corpus_info(key) for key in keys)  # every corpus of the registry is acted speech
    speakers = card.speaker_count(results)
    language = card.language_name(results)
    short += (f" Learned from {'actors' if acted else 'people'}" + (f" speaking {language}" if language else "")
              + (f" ({speakers} voices)." if speakers else "."))
    unheard = ("voices it never heard" if results["protocol"].get("speaker_independent")
               else "recordings it did not learn from (but of voices it did hear, so expect less on new voices)")
    per_corpus = results_file.per_corpus(results)
    if per_corpus:
        right = ", ".join(f"{where(key)} {numbers['ua']['mean']:.0%}" for key, numbers in per_corpus.items())
    else:
        right = f"{results_file.headline(results)['ua']['mean']:.0%}"
    details = [f"**How often it is right** on {unheard}: {right} (every emotion counted the same; guessing would "
               f"be right {1 / len(results['labels']):.0%} of the time)."]
    cross = read_results(name_or_path, card.CROSS_CORPUS_FILENAME)
    if cross:
        rows, _ = card.cross_corpus_table(cross)
        right = ", ".join(f"{where(row['corpus'])} {row['ua']['mean']:.0%}" for row in rows)
        details.append(f"**On a whole collection it never learned from** (new voices, studio and often language): "
                       f"{right}.")
    details.append(f"**Learned from:** {card.corpus_name(results)}.")
    return short, "  \n".join(details)


def where(corpus_key: str) -> str:
    """A collection by its language and name, e.g. "German (Emo-DB)"."""
    info = corpus_info(corpus_key)
    name = card.short_name(corpus_key)
    return f"{LANGUAGE_NAMES.get(info.language, info.language)} ({name})" if info else name


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


# Fixed colours per emotion (matplotlib's tab10), so an emotion looks the same in every plot and session.
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf"]
CSS = """
#status.error { border-left: 4px solid #d62728; padding-left: 0.75em; }
#status.note { border-left: 4px solid #1f77b4; padding-left: 0.75em; }
"""
# The default theme with the bold face too (gradio ships Source Sans Pro 700 but loads only 400 and 600), so bold
# lead-ins do not fall back to another font.
THEME = gr.themes.Default(font=[gr.themes.LocalFont("Source Sans Pro", weights=(400, 600, 700)), "ui-sans-serif",
                                "system-ui", "sans-serif"])
# After an analysis the result comes into view (on a phone it would sit below the upload box, off-screen).
SCROLL_TO_RESULT = "() => document.getElementById('result')?.scrollIntoView({behavior: 'smooth', block: 'start'})"
# The browser's UTC offset at the epoch, in minutes: timeline times are sent as dates that the browser shows in local
# time, so they are shifted by this to read m:ss from 0:00 in every time zone.
UTC_OFFSET_JS = "() => -new Date(0).getTimezoneOffset()"


def refuse(message: str) -> gr.Error:
    """An expected bad input, for an API caller: no traceback in the server log."""
    return gr.Error(message, print_exception=False)


def label_payload(analysis: demo.Analysis) -> dict:
    """The API's answer, what the page shows: the headline (an emotion, or "mixed" for a recording whose timeline
    has no dominant emotion), gr.Label's confidences (largest first), what they measure ("probability", or "share
    of speech time" for a timeline), whether the model is unsure, and the notes (damaged samples, a very quiet
    recording, unsure)."""
    ranked = sorted(analysis.scores.items(), key=lambda item: -item[1])
    return {"label": analysis.headline, "confidences": [{"label": k, "confidence": v} for k, v in ranked],
            "measure": analysis.measure, "uncertain": analysis.uncertain, "notes": analysis.notes}


def build_demo(predictor: EmotionPredictor, segment_seconds: float = defaults.SEGMENT_SECONDS,
               smooth_seconds: float = defaults.SMOOTH_SECONDS, model_info: tuple[str, str] | None = None
               ) -> gr.Blocks:
    labels = list(predictor.labels)
    colors = {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(labels)}

    def analyse(path: str | None) -> tuple[demo.Analysis, demo.Recording]:
        recording = demo.check_recording(path)
        return demo.analyse(predictor, recording, segment_seconds, smooth_seconds), recording

    # --- the API: plain data, errors raised (gradio_client turns them into exceptions) -------------------------------
    def analyse_upload(audio: FileData | None) -> demo.Analysis:
        try:
            return analyse(audio and audio["path"])[0]
        except demo.DemoError as err:
            raise refuse(str(err)) from None

    def predict(audio: FileData) -> dict:
        """The emotion of a recording of up to ten minutes: the probability of every emotion, or for one longer than
        a segment, the share of its speech time each emotion is on top and a headline ("mixed" when none holds
        half)."""
        return label_payload(analyse_upload(audio))

    def timeline(audio: FileData) -> list[dict]:
        """The speech segments of a recording longer than one segment, smoothed: start, end, label, scores,
        uncertain. A shorter recording gives no rows."""
        return analyse_upload(audio).rows or []

    # --- the page: errors and notes stay in the output area until the next action --------------------------------
    def show(path: str | None, utc_offset: float | None):
        try:
            analysis, recording = analyse(path)
        except demo.DemoError as err:
            return show_error(str(err))
        notes = " ".join(analysis.notes)
        status = gr.Markdown(notes, visible=bool(notes), elem_classes=["note"])
        if not analysis.rows:
            return status, gr.Markdown(visible=False), emotion_label(analysis.scores), *hide_timeline()
        plot = timeline_plot(analysis.rows, f"Emotion over time (smoothed over {smooth_seconds:g} s)", utc_offset)
        csv = demo.write_segments(analysis.rows, Path(recording.path).name)
        return (status, gr.Markdown(demo.headline_text(analysis), visible=True),
                emotion_label(analysis.scores, "Share of the speech time"),
                gr.Markdown(demo.summary_text(analysis, recording.seconds, colors), visible=True), plot,
                gr.File(value=str(csv), visible=True))

    def emotion_label(scores: dict | None, share_of: str | None = None) -> gr.Label:
        """Probabilities under their top emotion; shares of a timeline without a heading (the headline says it)."""
        return gr.Label(value=scores, label=share_of or "Emotion", show_heading=share_of is None)

    def show_error(message: str):
        return (gr.Markdown(f"**Could not analyse the recording.** {message}", visible=True, elem_classes=["error"]),
                gr.Markdown(visible=False), emotion_label(None), *hide_timeline())

    def hide_timeline():
        return gr.Markdown(visible=False), gr.LinePlot(value=None, visible=False), gr.File(value=None, visible=False)

    def clear():
        return gr.Markdown(visible=False), gr.Markdown(visible=False), emotion_label(None), *hide_timeline()

    def timeline_plot(rows: list[dict], title: str, utc_offset: float | None) -> gr.LinePlot:
        table = pd.DataFrame(demo.timeline_table(rows))
        table["time"] = pd.to_datetime((table["time"] - 60 * (utc_offset or 0)) * 1000, unit="ms")
        return gr.LinePlot(value=table, x="time", y="probability", color="emotion", title=title,
                           x_title="time (m:ss)", x_axis_format="%-M:%S", y_title="probability", y_lim=[0, 1],
                           tooltip=["emotion", "probability"], colors_in_legend=[],  # the legend is text beside it
                           color_map={label: colors[label] for label in table["emotion"].unique()}, visible=True)

    # --- live microphone: the meter and a rolling timeline after every chunk, the full analysis when it stops -------
    def listen(chunk, session: demo.LiveSession | None, utc_offset: float | None):
        if chunk is None:
            return gr.skip(), gr.skip(), gr.skip(), session
        rate, samples = chunk
        session = session or demo.LiveSession(rate)
        try:
            session.add(rate, samples)
        except demo.DemoError as err:
            return gr.skip(), gr.skip(), str(err), session
        row = session.listen(predictor)
        heard = f"Listening: {session.seconds:.1f} s heard"
        if row is None:
            return gr.skip(), gr.skip(), f"{heard} · waiting for speech", session
        based_on = f"the last {row['end'] - row['start']:.1f} s"
        rows = session.recent_rows()
        plot = timeline_plot(rows, f"Last {demo.LIVE_HISTORY_SECONDS:g} s", utc_offset)
        legend = demo.legend_text(rows, colors)
        return (gr.Label(value=row["scores"], label=f"Emotion of {based_on}"), plot,
                f"{heard} · emotion of {based_on}  \n{legend}", session)

    def stop_listening(session: demo.LiveSession | None, utc_offset: float | None):
        cleared = gr.Label(value=None, label="Emotion now"), gr.LinePlot(value=None, visible=False)
        if session is None or session.samples == 0:
            return *show_error("Nothing was heard. Please allow the microphone and speak."), *cleared, "Stopped.", None
        recording = session.save()
        return (*show(recording.path, utc_offset), *cleared,
                f"Stopped after {demo.clock(recording.seconds)}. The result is below.", None)

    with gr.Blocks(title="Speech emotion recognition", delete_cache=(3600, 3600)) as page:
        gr.Markdown("# Speech emotion recognition\nUpload a recording or speak into your microphone: the model "
                    "tells which emotion the voice expresses. Recordings of up to "
                    f"{demo.MAX_MINUTES} minutes; longer than {segment_seconds:g} s, they also get a timeline of "
                    "the emotion over time.")
        short, details = model_info or (f"Recognises: {', '.join(labels)}.", "")
        gr.Markdown(short, elem_id="model-info")
        if details:
            with gr.Accordion("About the model", open=False, elem_id="model-details"):
                gr.Markdown(details)
        with gr.Tabs():
            with gr.Tab("Upload a recording", elem_id="upload-tab"):
                upload = gr.Audio(sources=["upload"], type="filepath", elem_id="speech-input",
                                  label=f"WAV, FLAC, OGG or MP3, up to {demo.MAX_MINUTES} minutes")
            with gr.Tab("Microphone (live)", elem_id="live-tab"):
                gr.Markdown("Press record and speak: the emotion of the last few seconds updates while you talk. "
                            f"Press stop for the summary (at most {demo.MAX_MINUTES} minutes).")
                live = gr.Audio(sources=["microphone"], streaming=True, elem_id="live-input", label="Microphone")
                live_status = gr.Markdown(elem_id="live-status")
                live_meter = gr.Label(num_top_classes=3, label="Emotion now", elem_id="live-meter")
                live_plot = gr.LinePlot(label="Emotion over the last minute", visible=False, elem_id="live-timeline")
        with gr.Column(elem_id="result"):
            status = gr.Markdown(visible=False, elem_id="status")
            headline = gr.Markdown(visible=False, elem_id="headline")
            label = gr.Label(num_top_classes=len(labels), label="Emotion", elem_id="emotion-label")
            summary = gr.Markdown(visible=False, elem_id="summary")
            plot = gr.LinePlot(label="Timeline", visible=False, elem_id="emotion-timeline")
            segments = gr.File(label="Segments (CSV)", visible=False, elem_id="segments-csv")
        session = gr.State(None)
        utc_offset = gr.Number(visible=False)
        page.load(None, js=UTC_OFFSET_JS, outputs=utc_offset)

        results = [status, headline, label, summary, plot, segments]
        live_outputs = [live_meter, live_plot, live_status, session]
        # One queue for the heavy work (uploads, the end of a live session, API calls). Live chunks are light (a few
        # ms each) and have their own, so a listener's meter never waits behind an upload.
        heavy = dict(concurrency_id="analysis", concurrency_limit=ANALYSES_AT_ONCE)
        upload.upload(show, inputs=[upload, utc_offset], outputs=results, api_visibility="private",
                      **heavy).then(None, js=SCROLL_TO_RESULT)
        upload.clear(clear, outputs=results, api_visibility="private", queue=False)
        live.start_recording(lambda: (*clear(), gr.Label(value=None, label="Emotion now"), gr.skip(), "Listening…",
                                      None), outputs=[*results, *live_outputs], api_visibility="private", queue=False)
        live.stream(listen, inputs=[live, session, utc_offset], outputs=live_outputs,
                    stream_every=0.5, time_limit=demo.MAX_SECONDS, concurrency_id="live",
                    concurrency_limit=LIVE_LISTENERS, api_visibility="private", show_progress="hidden")
        live.stop_recording(stop_listening, inputs=[session, utc_offset], outputs=[*results, *live_outputs],
                            api_visibility="private", **heavy).then(None, js=SCROLL_TO_RESULT)
        gr.api(predict, api_name="predict", **heavy)
        gr.api(timeline, api_name="timeline", **heavy)
    page.queue(max_size=64)
    return page

def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=os.environ.get("SER_MODEL", DEFAULT_MODEL),
                        help="model folder or Hub id (default: $SER_MODEL or %(default)s)")
    parser.add_argument("--runtime", choices=RUNTIMES, default=defaults.RUNTIME, help="CPU inference runtime")
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
    page = build_demo(predictor, args.segment_seconds, args.smooth_seconds,
                      model_info=describe_model(model, list(predictor.labels)))
    # The limit people meet is in minutes (demo.check_recording); the byte limit only keeps absurd uploads off the
    # disk: 1 GB holds 10 minutes of 96 kHz stereo 32-bit float WAV.
    page.launch(server_name=args.host, server_port=args.port, share=args.share, max_file_size="1gb", css=CSS,
                theme=THEME)


if __name__ == "__main__":
    main()
