"""The demo's Gradio page: upload and live microphone tabs, the result, the timeline plot, and the API
(`/predict`, `/timeline`). What the page does with audio lives in ser/demo/analysis.py; app.py loads the model and serves
the page."""

from pathlib import Path

import gradio as gr
import pandas as pd
from gradio.data_classes import FileData

from ser.core import defaults
from ser.demo import analysis as demo
from ser.demo import live_page
from ser.demo.live_capture import Captures
from ser.inference.predictor import EmotionPredictor
from ser.inference.rows import Segment

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
# After an analysis the result comes into view (on a phone it would sit below the upload box, off-screen), once the
# timeline has drawn (the plot renders after the event returns; scrolling sooner left it below the fold).
SCROLL_TO_RESULT = """async () => {
    const plot = document.getElementById('emotion-timeline');
    for (let i = 0; i < 50 && plot && plot.offsetParent !== null && !plot.querySelector('canvas, svg'); i++)
        await new Promise((resolve) => setTimeout(resolve, 100));
    document.getElementById('result')?.scrollIntoView({behavior: 'smooth', block: 'start'});
}"""
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

    can_transcribe = predictor.can_transcribe

    def analyse(path: str | None, words: bool = False) -> tuple[demo.Analysis, demo.Recording]:
        recording = demo.check_recording(path)
        if words and not can_transcribe:
            raise demo.DemoError("This model cannot give the words: only a Whisper model with its converted "
                                 "checkpoint has a decoder.")
        return demo.analyse(predictor, recording, segment_seconds, smooth_seconds, words), recording

    # --- the API: plain data, errors raised (gradio_client turns them into exceptions) -------------------------------
    def analyse_upload(audio: FileData | None, words: bool = False) -> demo.Analysis:
        try:
            return analyse(audio and audio["path"], words)[0]
        except demo.DemoError as err:
            raise refuse(str(err)) from None

    def predict(audio: FileData) -> dict:
        """The emotion of a recording of up to ten minutes: the probability of every emotion, or for one longer than
        a segment, the share of its speech time each emotion is on top and a headline ("mixed" when none holds
        half)."""
        return label_payload(analyse_upload(audio))

    def timeline(audio: FileData, words: bool = False) -> list[dict]:
        """The speech segments of a recording with more than one, as the page plots them (smoothed within each
        stretch of speech): start, end, label, scores, uncertain, and with `words` their text. A clip gives no
        rows."""
        recording = analyse_upload(audio, words).recording
        return [row.to_dict() for row in recording.segments] if recording else []

    # --- the page: errors and notes stay in the output area until the next action --------------------------------
    def show(path: str | None, utc_offset: float | None, words: bool = False):
        try:
            analysis, recording = analyse(path, words)
        except demo.DemoError as err:
            return show_error(str(err))
        notes = " ".join(analysis.notes)
        status = gr.Markdown(notes, visible=bool(notes), elem_classes=["note"])
        headline = gr.Markdown(demo.headline_text(analysis), visible=True)
        summary = analysis.recording
        if summary is None:
            return status, headline, emotion_label(analysis.scores), *hide_timeline()
        smoothed = f" (smoothed over {summary.smoothed_seconds:g} s within each stretch of speech)" \
            if summary.smoothed_seconds else ""
        plot = timeline_plot(summary.segments, f"Emotion over time{smoothed}", utc_offset)
        csv = demo.write_segments(summary, labels, Path(recording.path).name, words)
        return (status, headline, emotion_label(analysis.scores, "Share of the speech time each emotion is on top"),
                gr.Markdown(demo.summary_text(summary, recording.seconds, colors), visible=True), plot,
                gr.File(value=str(csv), visible=True))

    def emotion_label(scores: dict | None, share_of: str | None = None) -> gr.Label:
        """Probabilities under their top emotion; shares of a timeline without a heading (the headline says it)."""
        return gr.Label(value=scores, label=share_of or "Probability of each emotion", show_heading=share_of is None)

    def show_error(message: str):
        return (gr.Markdown(f"**Could not analyse the recording.** {message}", visible=True, elem_classes=["error"]),
                gr.Markdown(visible=False), emotion_label(None), *hide_timeline())

    def hide_timeline():
        return gr.Markdown(visible=False), gr.LinePlot(value=None, visible=False), gr.File(value=None, visible=False)

    def clear():
        return gr.Markdown(visible=False), gr.Markdown(visible=False), emotion_label(None), *hide_timeline()

    def timeline_plot(rows: list[Segment], title: str, utc_offset: float | None) -> gr.LinePlot:
        table = pd.DataFrame(demo.timeline_table(rows))
        hover = ["emotion", "probability"] + (["words"] if table["words"].any() else [])
        table["time"] = pd.to_datetime((table["time"] - 60 * (utc_offset or 0)) * 1000, unit="ms")
        return gr.LinePlot(value=table, x="time", y="probability", color="emotion", title=title,
                           x_title="time (m:ss)", x_axis_format="%-M:%S", y_title="probability", y_lim=[0, 1],
                           tooltip=hover, colors_in_legend=[],  # the legend is text beside it
                           color_map={label: colors[label] for label in table["emotion"].unique()}, visible=True)

    # --- live microphone: the page's recorder (ser/demo/live_page.py) sends every captured sample to `captures`; a timer
    # looks at the last seconds twice a second (meter, rolling timeline); Stop analyses the whole recording ---------
    captures = Captures(most=4 * LIVE_LISTENERS)

    def live_idle(message: str, file: str | None = None):
        """The live view at rest: no meter card, no rolling timeline, the timer off, Record on."""
        return (gr.Label(value=None, label="Emotion now", visible=False), gr.LinePlot(value=None, visible="hidden"),
                message, gr.Timer(active=False), gr.Button(interactive=True), gr.Button(interactive=False),
                gr.File(value=file, visible=file is not None))

    def start_listening(report: str | None):
        opened = live_page.Report.parse(report)
        if opened.error or captures.get(opened.key) is None:
            return *clear(), *live_idle(opened.error or "The microphone could not be opened. Please try again.")
        return (*clear(), gr.Label(value=None, label="Emotion now", visible=False),
                gr.LinePlot(value=None, visible="hidden"), "Listening…", gr.Timer(active=True),
                gr.Button(interactive=False), gr.Button(interactive=True), gr.File(value=None, visible=False))

    def listen(report: str | None, utc_offset: float | None):
        now = live_page.Report.parse(report)
        session = captures.get(now.key)
        if session is None or now.stopped:
            return gr.skip(), gr.skip(), gr.skip()
        if now.error:
            return gr.skip(), gr.skip(), f"**The recording stopped.** {now.error}"
        row = session.listen(predictor)
        if session.finished:  # Stop came while it looked
            return gr.skip(), gr.skip(), gr.skip()
        heard = f"Listening: {now.heard:.1f} s heard of {now.recorded:.1f} s recorded"  # both as the page sent it
        if row is None:
            return gr.skip(), gr.skip(), f"{heard} · waiting for speech"
        based_on = f"the last {row.seconds:.1f} s"
        rows = session.recent_rows()
        # the rolling timeline every few looks: drawing it is the page's heaviest work, and a minute changes slowly
        plot = timeline_plot(rows, f"Last {demo.LIVE_HISTORY_SECONDS:g} s", utc_offset) \
            if (len(session.rows) - 1) % live_page.PLOT_EVERY == 0 else gr.skip()
        legend = demo.legend_text(rows, colors)
        return (gr.Label(value=row.scores, label=f"Emotion of {based_on}", visible=True), plot,
                f"{heard} · emotion of {based_on}  \n{legend}")

    def stop_listening(report: str | None, utc_offset: float | None):
        stopped = live_page.Report.parse(report)
        session = captures.close(stopped.key)
        if session is None or session.samples == 0:
            message = stopped.error or "Nothing was heard. Please allow the microphone and speak."
            return *show_error(message), *live_idle("Stopped.")
        recording = session.save()
        heard = f"{recording.seconds:.1f} s heard of {stopped.recorded:.1f} s recorded"
        problem = f" {stopped.error}" if stopped.error else ""
        return (*show(recording.path, utc_offset),
                *live_idle(f"Stopped after {demo.clock(recording.seconds)} ({heard}).{problem} The result is below.",
                           recording.path))

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
                words = gr.Checkbox(label="Also the words: what was said in each part (slower)", value=False,
                                    visible=can_transcribe, elem_id="words")
            with gr.Tab("Microphone (live)", elem_id="live-tab"):
                gr.Markdown("Press record and speak: the emotion of the last few seconds updates while you talk. "
                            f"Press stop for the summary (at most {demo.MAX_MINUTES} minutes).")
                with gr.Row():
                    record = gr.Button("Record", variant="primary", elem_id="live-record", min_width=120)
                    stop = gr.Button("Stop", interactive=False, elem_id="live-stop", min_width=120)
                live_page.recorder(captures)
                live_status = gr.Markdown(elem_id="live-status")
                live_meter = gr.Label(num_top_classes=3, label="Emotion now", visible=False, elem_id="live-meter")
                # "hidden", not False: on the page (out of sight) from the start, so its first drawing does not stall
                # the meter while the browser loads the plotting code
                live_plot = gr.LinePlot(label="Emotion over the last minute", visible="hidden", elem_id="live-timeline")
                live_file = gr.File(label="Your recording (WAV, as analysed)", visible=False, elem_id="live-recording")
                live_timer = gr.Timer(live_page.LOOK_SECONDS, active=False)
                live_report = gr.Textbox(visible=False)  # filled by the events' js with the recorder's report
        with gr.Column(elem_id="result"):  # the headline and the timeline first: both in view on a phone
            status = gr.Markdown(visible=False, elem_id="status")
            headline = gr.Markdown(visible=False, elem_id="headline")
            plot = gr.LinePlot(label="Timeline", visible=False, elem_id="emotion-timeline")
            summary = gr.Markdown(visible=False, elem_id="summary")
            label = gr.Label(num_top_classes=len(labels), label="Emotion", elem_id="emotion-label")
            segments = gr.File(label="Segments (CSV)", visible=False, elem_id="segments-csv")
        utc_offset = gr.Number(visible=False)
        page.load(None, js=UTC_OFFSET_JS, outputs=utc_offset)

        results = [status, headline, label, summary, plot, segments]
        live_outputs = [live_meter, live_plot, live_status, live_timer, record, stop, live_file]
        # One queue for the heavy work (uploads, the end of a live session, API calls). The live meter's looks are
        # light (~0.1 s each) and have their own, so a listener's meter never waits behind an upload; the live audio
        # itself goes through the recorder's server functions, outside the queue.
        heavy = dict(concurrency_id="analysis", concurrency_limit=ANALYSES_AT_ONCE)
        upload.upload(show, inputs=[upload, utc_offset, words], outputs=results, api_visibility="private",
                      **heavy).then(None, js=SCROLL_TO_RESULT)
        words.input(lambda path, utc, asked: show(path, utc, asked) if path else clear(),  # the loaded file again
                    inputs=[upload, utc_offset, words], outputs=results, api_visibility="private", **heavy)
        upload.clear(clear, outputs=results, api_visibility="private", queue=False)
        record.click(start_listening, inputs=live_report, outputs=[*results, *live_outputs], js=live_page.START_JS,
                     api_visibility="private", queue=False, show_progress="hidden")
        live_timer.tick(listen, inputs=[live_report, utc_offset], outputs=live_outputs[:3], js=live_page.REPORT_JS,
                        concurrency_id="live", concurrency_limit=LIVE_LISTENERS, api_visibility="private",
                        show_progress="hidden", trigger_mode="always_last")  # a slow look: the next one right after
        stop.click(stop_listening, inputs=[live_report, utc_offset], outputs=[*results, *live_outputs],
                   js=live_page.STOP_JS, api_visibility="private", **heavy).then(None, js=SCROLL_TO_RESULT)
        gr.api(predict, api_name="predict", **heavy)
        gr.api(timeline, api_name="timeline", **heavy)
    page.queue(max_size=64)
    return page
