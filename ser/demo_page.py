"""The demo's Gradio page: upload and live microphone tabs, the result, the timeline plot, and the API
(`/predict`, `/timeline`). What the page does with audio lives in ser/demo.py; app.py loads the model and serves
the page."""

from pathlib import Path

import gradio as gr
import pandas as pd
from gradio.data_classes import FileData

from ser import defaults, demo
from ser.predictor import EmotionPredictor

LIVE_LISTENERS = 8  # live microphone sessions served at once
ANALYSES_AT_ONCE = 2  # uploads and API calls; two keep a small CPU responsive, the rest wait in line

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
