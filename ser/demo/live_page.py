"""The live microphone's recorder on the page: a gr.HTML running ser/demo/live_recorder.js (input level, time recorded,
lossless sending) with ser/demo/live_capture.py's `Captures` as its server functions, and what the page's events learn
from it (`Report`). ser/demo/page.py lays out the tab and wires Record, Stop and the meter's timer."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from ser.demo.analysis import MAX_SECONDS
from ser.demo.live_capture import SEND_SECONDS, Captures

RECORDER_JS = (Path(__file__).with_name("live_recorder.js")).read_text()
LOOK_SECONDS = 0.5  # the meter's timer: it looks at the last seconds this often (a look takes ~0.1 s on one core)
PLOT_EVERY = 4  # ... and redraws the rolling timeline every this many looks
# The events' js: Record and Stop drive the recorder (Stop waits until the server has all it captured); the timer's
# ticks carry the recorder's report (its key and the time recorded) to the server.
START_JS = "async () => await window.serLive.start()"
STOP_JS = "async (report, utc) => [await window.serLive.stop(), utc]"
REPORT_JS = "(report, utc) => [window.serLive.report(), utc]"

TEMPLATE = """<div class="ser-recorder">
  <label>Input level <meter class="ser-level" min="-60" max="0" low="-50" high="-6" optimum="-20" value="-60"
    title="the microphone's level: empty is silence, full is as loud as it can record"></meter></label>
  <span>Recorded <span class="ser-time">0:00</span></span>
</div>"""
CSS = """
.ser-recorder { display: flex; gap: 1.5em; align-items: center; flex-wrap: wrap; padding: 0.25em 0; }
.ser-recorder label { display: flex; gap: 0.5em; align-items: center; }
.ser-level { width: 12em; height: 1.1em; }
.ser-recorder .ser-time { font-variant-numeric: tabular-nums; }
"""


def recorder(captures: Captures) -> gr.HTML:
    def open_capture(rate):
        return captures.open(rate)

    def receive_audio(piece):
        return captures.receive(piece) if isinstance(piece, dict) else {"error": "No audio in the piece."}

    return gr.HTML(html_template=TEMPLATE, css_template=CSS, js_on_load=RECORDER_JS, elem_id="live-recorder",
                   server_functions=[open_capture, receive_audio], send_seconds=SEND_SECONDS, max_seconds=MAX_SECONDS)


@dataclass
class Report:
    """What the recorder says of itself, at one moment: its recording's key, the seconds recorded (wall time from
    the moment the microphone opened to now or to Stop), the seconds heard (the server's count in its last
    acknowledgement), an error it met, the seconds captured but not yet acknowledged, and whether Stop was pressed."""

    key: str | None = None
    recorded: float = 0.0
    heard: float = 0.0
    error: str | None = None
    unsent: float = 0.0
    stopped: bool = False

    @classmethod
    def parse(cls, text) -> Report:
        try:
            data = json.loads(text) if isinstance(text, str) else {}
        except ValueError:
            data = {}
        data = data if isinstance(data, dict) else {}

        def number(name: str) -> float:
            value = data.get(name)
            return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else 0.0

        key, error = data.get("key"), data.get("error")
        return cls(key=key if isinstance(key, str) else None, recorded=number("recorded"), heard=number("heard"),
                   error=error if isinstance(error, str) else None, unsent=number("unsent"),
                   stopped=data.get("stopped") is True)
