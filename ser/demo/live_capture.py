"""The live microphone's transport, server side: a recording the page's recorder (ser/demo/live_recorder.js) sends in
numbered pieces of PCM and that reaches the analysis whole, whatever the server's load.

Why not gradio's streaming gr.Audio: its page sends every 0.1 s chunk on its own (it overrides `stream_every`), and
the server keeps one chunk per event (`event.data = body` in gradio/routes.py `/stream/{event_id}`), so a chunk that
arrives while the handler still works on the previous one replaces it; the page also drops chunks until the stream
is open. Here the page keeps what it captured until the server has acknowledged it: one piece in flight at a time,
carrying everything captured since the last one, sent again after a failure, and added once (by its number).

No gradio here: ser/demo/page.py exposes `open` and `receive` to the page and reads the sessions.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from ser.demo.analysis import MAX_SECONDS, DemoError, LiveSession

SEND_SECONDS = 0.25  # the page sends what it has captured at least this often (more at once while a piece is out)
IDLE_SECONDS = 60.0  # a capture that receives nothing for this long (a closed page) is dropped ...
SILENT_SECONDS = 10.0  # ... and one that never received anything, sooner (a page that opens captures and sends none)
MOST_RATE = 384_000  # a microphone rate above this is not a microphone
BUSY = "Too many people are using the live microphone right now. Please try again in a minute."
LOST = "The live recording was interrupted (the page lost its connection to the server). Please record again."


@dataclass
class Capture:
    session: LiveSession
    next_piece: int = 0  # the number of the piece it adds next; lower ones were added already
    touched: float = field(default_factory=time.monotonic)


class Captures:
    """The live recordings in progress, each under a key that only its page knows."""

    def __init__(self, most: int = 32, idle_seconds: float = IDLE_SECONDS, silent_seconds: float = SILENT_SECONDS):
        self.most = most
        self.idle_seconds = idle_seconds
        self.silent_seconds = silent_seconds
        self.lock = threading.Lock()
        self.captures: dict[str, Capture] = {}

    def open(self, rate) -> dict:
        """A new recording at the microphone's `rate`: {"key": ...}, or {"error": message}."""
        if not isinstance(rate, (int, float)) or not 8000 <= rate <= MOST_RATE or int(rate) != rate:
            return {"error": "The microphone reported an unusable sampling rate. Please try another microphone."}
        now = time.monotonic()
        with self.lock:
            for key, capture in list(self.captures.items()):
                if now - capture.touched > (self.idle_seconds if capture.next_piece else self.silent_seconds):
                    del self.captures[key]
            if len(self.captures) >= self.most:
                return {"error": BUSY}
            key = secrets.token_urlsafe(18)
            self.captures[key] = Capture(LiveSession(int(rate)))
        return {"key": key}

    def receive(self, piece: dict) -> dict:
        """Adds a piece {"key", "piece": its number, "pcm": base64 of little-endian int16 mono samples} once, in
        order. The answer: {"next": the number it wants next, "seconds": what it has heard}, or {"error": message}
        (the page stops; a failed request, by contrast, is sent again)."""
        try:
            key, number, pcm = piece["key"], int(piece["piece"]), base64.b64decode(piece["pcm"], validate=True)
        except (KeyError, TypeError, ValueError, binascii.Error):
            return {"error": "The page sent audio the server cannot read. Please reload the page."}
        capture = self.captures.get(key) if isinstance(key, str) else None
        if capture is None:
            return {"error": LOST}
        session = capture.session
        with session.lock:
            capture.touched = time.monotonic()
            if number == capture.next_piece:
                samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2")
                try:
                    session.add(session.rate, samples)
                except DemoError as err:
                    return {"error": str(err)}
                capture.next_piece += 1
            elif number > capture.next_piece:  # the page sends one piece at a time: a gap is a bug, never audio lost
                return {"error": LOST}
            return {"next": capture.next_piece, "seconds": session.seconds, "full": session.seconds >= MAX_SECONDS}

    def get(self, key) -> LiveSession | None:
        capture = self.captures.get(key) if isinstance(key, str) else None
        return capture and capture.session

    def close(self, key) -> LiveSession | None:
        """The recording, finished (its resampler's tail flushed), and forgotten."""
        with self.lock:
            capture = self.captures.pop(key, None) if isinstance(key, str) else None
        if capture is None:
            return None
        capture.session.finish()
        return capture.session
