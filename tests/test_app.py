"""The Gradio demo (app.py) served for real: a subprocess on a free local port with the embedded model, called through
gradio_client and driven in headless Debian chromium. No mocks: the model, the audio and the server are real."""

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from playwright.sync_api import expect, sync_playwright

from helpers import EMODB, ROOT, free_port, require, serving

from ser.core.defaults import DEFAULT_MODEL
from ser.demo.analysis import MAX_MINUTES, MAX_SECONDS, NO_INPUT, NO_SPEECH, UNREADABLE

EMODB_EMOTIONS = ["angry", "boredom", "disgust", "fear", "happy", "neutral", "sad"]  # models/ser-cnn-emodb
_DEFAULT_CONFIG = json.loads((ROOT / DEFAULT_MODEL / "config.json").read_text())
EMOTIONS = [_DEFAULT_CONFIG["id2label"][str(i)] for i in range(len(_DEFAULT_CONFIG["id2label"]))]  # the demo's
CLIPS = ["03a01Wa.wav", "03a02Ta.wav"]  # angry, sad
EMOTION_PATTERN = re.compile("^(" + "|".join(EMOTIONS) + ")$")  # the label heading shows exactly one emotion
SHARES = "Share of the speech time each emotion is on top:"  # the summary's line of shares
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def clips():
    wav = require(EMODB / "wav")
    return [wav / name for name in CLIPS]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`python app.py` as a Space runs it (no --model: the embedded default model, as on a fresh clone), on a
    free port; stopped when the module's tests are done."""
    tmp = tmp_path_factory.mktemp("app-server")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "OMP_NUM_THREADS": "1",
           "GRADIO_TEMP_DIR": str(tmp / "gradio")}  # uploads land in tmp, not in the shared /tmp/gradio
    port = free_port()
    with serving([sys.executable, str(ROOT / "app.py"), "--port", str(port), "--threads", "1"], ROOT, env,
                 port, tmp / "server.log") as url:
        yield url


@pytest.fixture(scope="module")
def client(server, tmp_path_factory):
    return Client(server, verbose=False, download_files=str(tmp_path_factory.mktemp("client-downloads")),
                  analytics_enabled=False)


def confidences(result: dict) -> dict[str, float]:
    """The label payload as {emotion: probability}, checking it covers every emotion and sums to 1."""
    scores = {item["label"]: item["confidence"] for item in result["confidences"]}
    assert sorted(scores) == sorted(EMOTIONS)
    assert abs(sum(scores.values()) - 1.0) < 1e-4, scores
    assert result["label"] == max(scores, key=scores.get)
    return scores


def write_clip(path: Path, audio: np.ndarray, rate: int = 16000, subtype: str = "PCM_16") -> Path:
    sf.write(path, audio, rate, subtype=subtype)
    return path


def speech_of(seconds: float, files: list[Path]) -> np.ndarray:
    """Real Emo-DB speech, the files in turn with 0.6 s pauses, cut to `seconds` at 16 kHz."""
    parts, total, i = [], 0, 0
    while total < seconds * 16000:
        audio = sf.read(files[i % len(files)], dtype="float32")[0]
        parts += [audio, np.zeros(9600, dtype=np.float32)]
        total += audio.size + 9600
        i += 1
    return np.concatenate(parts)[: int(seconds * 16000)]


@pytest.fixture(scope="module")
def bad_files(clips, tmp_path_factory):
    """One file of each kind the demo must refuse, with (a part of) the message the user must see."""
    tmp = tmp_path_factory.mktemp("bad-audio")
    real = sf.read(clips[0], dtype="float32")[0]
    corrupt = tmp / "corrupt.wav"
    # A WAV header cut off inside its format chunk: neither libsndfile nor ffmpeg can decode it.
    corrupt.write_bytes(b"RIFF\x64\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00")
    text = tmp / "notes.txt"
    text.write_text("These are meeting notes, not a recording.\n" * 20)
    too_long = MAX_SECONDS + 5
    all_nan = np.full(16000, np.nan, dtype=np.float32)
    return {
        "empty": (write_clip(tmp / "empty.wav", np.zeros(0, dtype=np.float32)), "holds no sound"),
        "silent": (write_clip(tmp / "silent.wav", np.zeros(32000, dtype=np.float32)), NO_SPEECH),
        "too short": (write_clip(tmp / "short.wav", real[:1600]), "too short"),
        # 8 kHz keeps the file at ~10 MB; the demo refuses it from the header, before decoding.
        "too long": (write_clip(tmp / "long.wav", np.zeros(int(too_long * 8000), dtype=np.float32), 8000),
                     f"up to {MAX_MINUTES} minutes"),
        "corrupt": (corrupt, UNREADABLE),
        "not audio": (text, UNREADABLE),
        "all NaN": (write_clip(tmp / "nan.wav", all_nan, subtype="FLOAT"), "every sample is damaged"),
    }


def test_predict_returns_every_emotion(client, clips):
    payload = client.predict(handle_file(str(clips[0])), api_name="/predict")
    scores = confidences(payload)
    assert all(0.0 <= p <= 1.0 for p in scores.values())
    assert payload["uncertain"] == (max(scores.values()) < 0.5) and payload["notes"] == []


def test_bad_inputs_get_plain_words_and_the_server_keeps_serving(client, clips, bad_files):
    with pytest.raises(AppError) as caught:
        client.predict(None, api_name="/predict")
    assert NO_INPUT in str(caught.value)
    for kind, (path, message) in bad_files.items():
        with pytest.raises(AppError) as caught:
            client.predict(handle_file(str(path)), api_name="/predict")
        text = str(caught.value)
        assert message.lower() in text.lower(), f"{kind}: {text!r}"
        # No server path (the upload's name is in it), no developer's units.
        assert path.name not in text and "dBFS" not in text and "NaN" not in text, f"{kind}: {text!r}"
    confidences(client.predict(handle_file(str(clips[1])), api_name="/predict"))


def test_partly_damaged_and_quiet_speech_are_classified_with_a_note(client, clips, tmp_path):
    speech = sf.read(clips[0], dtype="float32")[0]
    damaged = speech.copy()
    damaged[:1600] = np.nan  # the first 0.1 s
    payload = client.predict(handle_file(str(write_clip(tmp_path / "damaged.wav", damaged, subtype="FLOAT"))),
                             api_name="/predict")
    confidences(payload)
    share = 1600 / speech.size
    assert payload["notes"][0].startswith(f"{share:.1%} of the samples were damaged")
    quiet = speech / np.abs(speech).max() * 10 ** (-48 / 20)  # speech peaking at -48 dBFS
    payload = client.predict(handle_file(str(write_clip(tmp_path / "quiet.wav", quiet, subtype="FLOAT"))),
                             api_name="/predict")
    confidences(payload)
    assert any("very quiet" in note for note in payload["notes"])


def test_ten_minutes_of_48_khz_stereo_float_are_accepted(client, clips, tmp_path):
    """The limit is ten minutes, not a number of bytes: this file is 230 MB."""
    import soxr

    mono = soxr.resample(speech_of(MAX_SECONDS, clips), 16000, 48000).astype(np.float32)
    path = write_clip(tmp_path / "ten-minutes-48k.wav", np.stack([mono, mono], axis=1), 48000, subtype="FLOAT")
    assert path.stat().st_size > 200e6
    rows = client.predict(handle_file(str(path)), api_name="/timeline")
    assert rows[-1]["end"] > MAX_SECONDS - 10 and {row["label"] for row in rows} <= set(EMOTIONS)


def test_webm_recording_without_a_duration_is_classified(client, clips, tmp_path):
    """A browser that cannot encode WAV uploads its microphone recording as webm named audio.wav, with no duration
    in the header (written as a stream); the demo decodes it rather than calling it unreadable."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        pytest.skip("ffmpeg not installed: webm recordings need it (scripts/setup.sh installs it)")
    recording = tmp_path / "audio.wav"
    with open(recording, "wb") as out:  # to a pipe: the muxer cannot go back to write the duration
        subprocess.run([ffmpeg, "-v", "error", "-i", str(clips[0]), "-c:a", "libopus", "-f", "webm", "pipe:1"],
                       stdout=out, check=True)
    confidences(client.predict(handle_file(str(recording)), api_name="/predict"))


@pytest.fixture(scope="module")
def long_recording(clips, tmp_path_factory):
    """12 s of real speech with pauses: more than one 6 s segment."""
    return write_clip(tmp_path_factory.mktemp("long-audio") / "twelve-seconds.wav", speech_of(12, clips))


def test_long_recording_gets_a_label_from_its_segments(client, clips, long_recording):
    payload = client.predict(handle_file(str(long_recording)), api_name="/predict")
    rows = client.predict(handle_file(str(long_recording)), api_name="/timeline")
    assert len(rows) >= 2 and all(row["end"] - row["start"] <= 6.0 + 1e-6 for row in rows)
    assert all(abs(sum(row["scores"].values()) - 1) < 1e-4 and row["label"] in EMOTIONS for row in rows)
    # the share of speech time each emotion is on top in the timeline, and the headline it gives
    assert payload["measure"] == "share of speech time"
    shares = {item["label"]: item["confidence"] for item in payload["confidences"]}
    assert sorted(shares) == sorted(EMOTIONS) and abs(sum(shares.values()) - 1) < 1e-6
    speech = sum(row["end"] - row["start"] for row in rows)
    for emotion, share in shares.items():
        assert share == pytest.approx(sum(r["end"] - r["start"] for r in rows if r["label"] == emotion) / speech)
    top = max(shares, key=shares.get)
    assert payload["label"] == (top if shares[top] >= 0.5 else "mixed")
    assert client.predict(handle_file(str(clips[0])), api_name="/timeline") == []  # 1.9 s: one segment


# --- in the browser -------------------------------------------------------------------------------------------------


def screenshot(page, name: str, tmp_path: Path) -> None:
    """Screenshots for a person to check: $SER_SCREENSHOTS (docs/screenshots holds the committed ones) or tmp."""
    folder = Path(os.environ.get("SER_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


@pytest.fixture(scope="module")
def ten_minutes(clips, tmp_path_factory):
    """Ten minutes of real speech, blocks of angry then sad clips, so the emotion changes along the timeline."""
    wav = require(EMODB / "wav")
    angry, sad = sorted(wav.glob("??a??W?.wav"))[:12], sorted(wav.glob("??a??T?.wav"))[:12]
    blocks = [speech_of(60, angry if i % 2 == 0 else sad) for i in range(10)]
    return write_clip(tmp_path_factory.mktemp("ten-minutes") / "meeting.wav", np.concatenate(blocks))


@contextlib.contextmanager
def page_at(server: str, width: int, timeout_ms: int, *extra_args: str):
    """The demo in headless Debian chromium, in a window `width` px wide; `extra_args` go to chromium."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: install Debian chromium (apt-get install chromium; scripts/setup.sh does)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, *extra_args])
        try:
            page = chromium.new_page(viewport={"width": width, "height": 800 if width > 600 else 844})
            page.set_default_timeout(timeout_ms)
            page.goto(server)
            yield page
        finally:
            chromium.close()


def upload(page, path: Path) -> None:
    """Puts `path` into the upload input (clearing a previous one); the demo analyses it at once."""
    audio = page.locator("#speech-input")
    if audio.locator("button[aria-label='Clear']").count():
        audio.locator("button[aria-label='Clear']").click()  # a loaded recording hides the file input
    audio.locator("input[type=file]").set_input_files(str(path))


def test_browser_error_stays_readable_and_a_good_upload_then_works(server, clips, bad_files, tmp_path):
    with page_at(server, 1280, 30_000) as page:
        expect(page.locator("#model-info")).to_contain_text(f"Recognises {len(EMOTIONS)} emotions")
        details = page.get_by_text("Emo-DB (Berlin Database of Emotional Speech)").first
        expect(details).to_be_hidden()  # the details wait behind a fold
        page.locator("#model-details").get_by_text("About the model").click()
        expect(details).to_be_visible()
        expect(page.get_by_role("tab", name="Upload a recording")).to_be_visible()
        expect(page.get_by_role("tab", name="Microphone (live)")).to_be_visible()

        upload(page, bad_files["corrupt"][0])
        status = page.locator("#status")
        expect(status).to_contain_text(UNREADABLE)
        page.wait_for_timeout(15_000)  # a toast would be gone by now
        expect(status).to_be_visible()
        expect(status).to_contain_text(UNREADABLE)
        screenshot(page, "error-after-15-seconds", tmp_path)

        upload(page, clips[0])
        expect(page.locator("#emotion-label [data-testid=label-output-value]")).to_have_text(EMOTION_PATTERN)
        expect(status).to_be_hidden()
        screenshot(page, "upload-1280px", tmp_path)


def test_browser_ten_minute_recording_at_phone_width(server, ten_minutes, tmp_path):
    """A 390 px wide page: the label, the summary, the segment timeline (its text at least 10 px high, nothing
    wider than the screen) and the CSV of the segments."""
    with page_at(server, 390, 120_000) as page:
        upload(page, ten_minutes)
        # the whole analysis (about 100 segments through the encoder) comes before the result: give it the page's time
        expect(page.locator("#headline")).to_contain_text("speech time", timeout=120_000)
        summary = page.locator("#summary")
        expect(summary).to_contain_text("of 10 min 0 s")
        expect(summary).to_contain_text(SHARES)
        texts = page.locator("#emotion-timeline svg text")
        expect(texts.first).to_be_visible()
        heights = [box["height"] for box in (t.bounding_box() for t in texts.all()) if box and box["height"]]
        assert heights and min(heights) >= 10, heights
        ticks = texts.all_text_contents()
        assert "time (m:ss)" in ticks and "1:00" in ticks and "5:00" in ticks, ticks  # minutes and seconds
        assert not any(emotion in ticks for emotion in EMOTIONS)  # the legend is the summary's text, which wraps
        check_legend(page, summary)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        link = page.locator("#segments-csv a[download]")
        expect(link).to_have_attribute("href", re.compile(r"meeting-segments\.csv$"))
        with page.expect_download() as download:
            link.click()
        csv_path = tmp_path / "segments.csv"
        download.value.save_as(csv_path)
        header, *rows = csv_path.read_text().splitlines()
        assert header.startswith("start,end,label,uncertain,") and len(rows) > 50
        screenshot(page, "ten-minutes-390px", tmp_path)


def test_browser_words_of_a_clip_and_the_api_timeline_with_words(server, client, clips, tmp_path):
    """With "Also the words" ticked, a clip's headline carries what was said (one encoder pass); /timeline with
    words gives each segment its text."""
    with page_at(server, 1280, 60_000) as page:
        page.locator("#words input[type=checkbox]").check()
        upload(page, clips[0])
        expect(page.locator("#headline")).to_contain_text("Words:", timeout=60_000)
        expect(page.locator("#headline")).to_contain_text("Lappen")
        screenshot(page, "words-1280px", tmp_path)
    pause = np.zeros(32000, dtype=np.float32)  # longer than a segment in all: a recording of two
    talk = write_clip(tmp_path / "talk.wav", np.concatenate([sf.read(clips[0], dtype="float32")[0], pause,
                                                             sf.read(clips[1], dtype="float32")[0], pause]))
    rows = client.predict(handle_file(str(talk)), True, api_name="/timeline")
    assert len(rows) == 2 and "Lappen" in rows[0]["text"] and rows[1]["text"]


def check_legend(page, summary, width: int = 390) -> None:
    """The timeline's legend (the summary's coloured entries): one swatch per emotion the summary lists, each fully
    inside the page `width` px wide."""
    shown = summary.inner_text().split(SHARES)[1].split("Unsure")[0]
    assert summary.locator(".swatch").count() == sum(emotion in shown for emotion in EMOTIONS) > 0
    left, right = swatch_extent(page, "#summary")
    assert 0 <= left and right <= width, (left, right)
    assert page.evaluate("document.querySelector('#summary').getBoundingClientRect().right") <= width


def swatch_extent(page, selector: str) -> tuple[float, float]:
    """The leftmost and rightmost edge of the legend's colour swatches inside `selector`, read in one go."""
    edges = page.evaluate(f"""() => [...document.querySelectorAll("{selector} .swatch")]
                                 .map(e => e.getBoundingClientRect()).map(r => [r.left, r.right])""")
    assert edges, f"no legend in {selector}"
    return min(left for left, _ in edges), max(right for _, right in edges)


@pytest.fixture(scope="module")
def two_minutes_mixed(tmp_path_factory):
    """About two minutes of Emo-DB: 7 clips of each of the six emotions the default model knows, in blocks."""
    wav = require(EMODB / "wav")
    codes = {"angry": "W", "disgust": "E", "fear": "A", "happy": "F", "sad": "T", "neutral": "N"}
    files = [path for code in codes.values() for path in sorted(wav.glob(f"??a??{code}?.wav"))[:7]]
    return write_clip(tmp_path_factory.mktemp("mixed") / "mixed.wav", speech_of(130, files))


@pytest.mark.parametrize("width, height", [(390, 844), (1280, 800)])
def test_browser_mixed_recording_headline_matches_its_summary(server, two_minutes_mixed, tmp_path, width, height):
    """On a phone and a laptop: after the upload the headline and the whole timeline are in view without scrolling;
    the headline says what the summary says (the emotion on top for at least half of the speech time, else mixed)
    and the unsure note shows when more than half is unsure."""
    with page_at(server, width, 120_000) as page:
        upload(page, two_minutes_mixed)
        headline = page.locator("#headline")
        expect(headline).to_contain_text("speech time", timeout=60_000)  # 2 minutes of speech through the encoder
        expect(page.locator("#emotion-timeline svg").first).to_be_visible()
        page.wait_for_timeout(1500)  # the smooth scroll
        for element in ("#headline", "#emotion-timeline"):
            box = page.locator(element).bounding_box()
            assert box and -1 <= box["y"] and box["y"] + box["height"] <= height + 1, (element, box)  # in view (to a pixel)
        summary = page.locator("#summary").inner_text()
        shares = {emotion: int(share) for emotion, share in re.findall(r"(\w+) (\d+)%", summary.split(SHARES)[1].split("Unsure")[0])}
        top = max(shares, key=shares.get)
        if shares[top] >= 50:
            expect(headline).to_have_text(f"Mostly {top}: on top for {shares[top]}% of the speech time.")
        else:
            expect(headline).to_contain_text("Mixed emotions")
        unsure = int(re.search(r"Unsure \(no emotion reaches 50%\):\s*(\d+)%", summary).group(1))
        status = page.locator("#status")
        if unsure > 50:
            expect(status).to_contain_text(f"unsure for {unsure}% of the speech time")
        else:
            assert "unsure" not in (status.inner_text() if status.is_visible() else "")
        check_legend(page, page.locator("#summary"), width)
        screenshot(page, f"mixed-two-minutes-{width}px", tmp_path)


def test_browser_live_microphone_updates_while_api_requests_run(server, client, clips, tmp_path):
    """Chromium's fake microphone plays a real Emo-DB file in a loop. The live status and meter update at least
    once a second, also while 8 API requests are answered; stopping gives a label and a summary."""
    with page_at(server, 390, 30_000, "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                 f"--use-file-for-fake-audio-capture={clips[0]}") as page:
        page.get_by_role("tab", name="Microphone (live)").click()
        page.locator("#live-record").click()
        status = page.locator("#live-status")
        expect(status).to_contain_text("emotion of the last")
        expect(page.locator("#live-meter [data-testid=label-output-value]")).to_have_text(EMOTION_PATTERN)
        expect(page.locator("#live-meter")).to_contain_text(re.compile(r"Emotion of the last \d\.\d s"))
        left, right = swatch_extent(page, "#live-status")  # the live legend, read at one instant (it updates)
        assert 0 <= left and right <= 390, (left, right)
        quiet = watch_updates(page, "#live-status", seconds=4)  # the meter's updates: each says how much it has heard
        jobs = [client.submit(handle_file(str(clips[i % 2])), api_name="/predict") for i in range(8)]
        busy = watch_updates(page, "#live-status", seconds=4)
        expected = [confidences(client.predict(handle_file(str(c)), api_name="/predict")) for c in clips]
        for i, job in enumerate(jobs):
            assert confidences(job.result(timeout=60)) == pytest.approx(expected[i % 2], abs=1e-5)
        assert max(quiet) <= 1.0 and max(busy) <= 1.0, (quiet, busy)
        screenshot(page, "live-microphone-390px", tmp_path)
        # more than one segment heard (on a loaded machine the fake microphone runs slower than the clock)
        expect(status).to_contain_text(re.compile(r"\b([7-9]|\d\d+)\.\d s heard"), timeout=60_000)
        page.locator("#live-stop").click()
        expect(status).to_contain_text("Stopped after", timeout=30_000)
        expect(page.locator("#headline")).to_contain_text("speech time", timeout=30_000)
        expect(page.locator("#summary")).to_contain_text(SHARES)
        # no stale reading left above the result: the meter and the rolling timeline are cleared
        expect(page.locator("#live-meter [data-testid=label-output-value]")).to_have_count(0)
        expect(page.locator("#live-meter")).to_be_hidden()
        expect(page.locator("#live-timeline")).to_be_hidden()
        screenshot(page, "live-microphone-stopped-390px", tmp_path)


@pytest.fixture(scope="module")
def angry_sad_happy(tmp_path_factory):
    """21 s of Emo-DB speech: 7 s of angry clips, then sad, then happy (0.6 s pauses between clips)."""
    wav = require(EMODB / "wav")
    blocks = [speech_of(7, sorted(wav.glob(f"??a??{code}?.wav"))[:6]) for code in "WTF"]  # angry, sad, happy
    return write_clip(tmp_path_factory.mktemp("live-audio") / "angry-sad-happy.wav", np.concatenate(blocks))


def test_browser_live_microphone_hears_every_sample_idle_and_under_load(server, client, angry_sad_happy, tmp_path):
    """Chromium's fake microphone plays 21 s of speech (angry, sad, happy) for 20 s, first on an idle machine, then
    beside two CPU-bound processes. The page hears at least 98 % (idle) and 95 % (loaded) of the time it recorded
    (gradio's streaming microphone heard 45 %, and 25-45 % under load); the saved recording is the played audio
    with nothing lost or repeated; the meter updates more than once a second, follows the emotion and stays close
    behind the recording; after Stop, the result is /predict's for the recording."""
    source = sf.read(angry_sad_happy, dtype="float32")[0]
    with page_at(server, 1280, 30_000, "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                 f"--use-file-for-fake-audio-capture={angry_sad_happy}") as page:
        page.get_by_role("tab", name="Microphone (live)").click()
        figures = {}
        for load, least in ((0, 0.98), (2, 0.95)):
            hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(load)]
            try:
                looks, heard, recorded, wav = record_live(page, 20.0, tmp_path / f"live-{load}.wav")
            finally:
                for hog in hogs:
                    hog.kill()
                    hog.wait()
            gaps = np.diff([look["t"] for look in looks])
            lags = [look["recorded"] - look["heard"] for look in looks]
            figures[load] = dict(heard=heard, recorded=recorded, share=heard / recorded, looks=len(looks),
                                 per_second=len(looks) / recorded, gap_90=np.percentile(gaps, 90),
                                 longest_gap=gaps.max(), lag_90=np.percentile(lags, 90), longest_lag=max(lags))
            assert heard / recorded >= least, figures
            # what was saved is what was played: every second of speech in it lines up with the (looped) file
            saved = sf.read(wav, dtype="float32")[0]
            assert abs(saved.size / 16000 - heard) <= 0.06, (saved.size, heard)
            places = alignment(saved, source)
            assert np.median([match for _, match in places]) >= 0.99, places  # sample-exact, bar 10 ms steps
            assert max(abs(shift) for shift, _ in places) <= 0.1, places  # nothing lost or repeated (>= 0.25 s)
            # the result after Stop is the upload path's for that recording
            payload = client.predict(handle_file(str(wav)), api_name="/predict")
            shown = page.evaluate("""() => Object.fromEntries([...document.querySelectorAll('#emotion-label meter')]
                                         .map((bar) => [bar.getAttribute('aria-label'), +bar.getAttribute('value')]))""")
            assert shown == pytest.approx({c["label"]: c["confidence"] for c in payload["confidences"]}, abs=1e-9)
            assert payload["label"] in page.locator("#headline").inner_text().lower(), payload
            if load == 0:  # the meter follows the speech: angry at first, then something else
                tops = [look["top"] for look in looks if look["top"]]
                assert tops[0] == "angry" and len(set(tops)) >= 2, tops
        print("live microphone:", {load: {k: round(float(v), 3) for k, v in f.items()} for load, f in figures.items()})
        # The meter looks twice a second at what was heard by then, a few tenths of a second behind what was
        # recorded. On this shared 2-core machine a look or an acknowledgement is sometimes late, more so beside the
        # CPU-bound processes: idle, 90 % of the looks come within a second and none later than 2 s, and 90 % are
        # less than a second behind; loaded (here with the machine's other work: a load of 8-10 on 2 cores), the
        # meter still moves, more than once every 2 s.
        idle, loaded = figures[0], figures[2]
        assert idle["per_second"] >= 1.5 and idle["gap_90"] <= 1.0 and idle["longest_gap"] <= 2.0, figures
        assert idle["lag_90"] <= 1.0 and idle["longest_lag"] <= 2.0, figures
        assert loaded["per_second"] >= 0.5, figures
        print("live microphone:", {load: {k: round(float(v), 3) for k, v in f.items()} for load, f in figures.items()})
        screenshot(page, "live-microphone-stopped-1280px", tmp_path)


def record_live(page, seconds: float, wav: Path) -> tuple[list[dict], float, float, Path]:
    """Records for `seconds` and stops. The meter's looks as the page showed them ({t: seconds on the page's clock,
    heard, recorded, top}: one per change of the live status), the seconds heard and recorded that Stop reports,
    and the recording the page offers, saved to `wav`."""
    page.locator("#live-record").click()
    text = page.locator("#live-status [data-testid=markdown]")
    expect(text).to_contain_text("Listening")
    page.evaluate(r"""() => {
        const status = document.querySelector('#live-status');
        const pattern = /Listening: ([\d.]+) s heard of ([\d.]+) s recorded/;
        window.liveLooks = [];
        window.liveObserver = new MutationObserver(() => {
            const found = (status.querySelector('[data-testid=markdown]')?.innerText || '').match(pattern);
            const top = document.querySelector('#live-meter [data-testid=label-output-value]')?.innerText || null;
            const last = window.liveLooks[window.liveLooks.length - 1];
            if (found && (!last || last.heard !== +found[1] || last.recorded !== +found[2]))
                window.liveLooks.push({t: performance.now() / 1000, heard: +found[1], recorded: +found[2], top});
        });
        window.liveObserver.observe(status, {subtree: true, childList: true, characterData: true});
    }""")
    time.sleep(seconds)
    page.locator("#live-stop").click()
    expect(text).to_contain_text("Stopped after", timeout=60_000)
    looks = page.evaluate("() => { window.liveObserver.disconnect(); return window.liveLooks; }")
    heard, recorded = map(float, re.search(r"([\d.]+) s heard of ([\d.]+) s recorded", text.inner_text()).groups())
    expect(page.locator("#headline")).to_be_visible()
    expect(page.locator("#live-meter")).to_be_hidden()
    with page.expect_download() as download:
        page.locator("#live-recording a[download]").click()
    download.value.save_as(wav)
    return looks, heard, recorded, wav


def alignment(recording: np.ndarray, played: np.ndarray, rate: int = 16000) -> list[tuple[float, float]]:
    """Where each half second of `recording` with speech in it (from 0.5 s on) lies in `played`, which the fake
    microphone loops: (its shift in seconds against the first one's place, its normalised correlation there). A
    lost or repeated piece (a quarter of a second or more) shifts all that follows by as much. Chromium's capture
    itself is not sample-exact: it pads or drops a 10 ms buffer now and then (an underrun or overrun between its
    capture and audio threads, seen at the start and under load) and turns its loop a few ms early or late, so a
    few halves straddle a 10 ms step, and the shift moves by 10 ms steps. A half that straddles one matches
    poorly (seen: a fifth of them on a loaded CI machine) and its best place says little, so only the halves that
    match well (0.9 or more) are placed, against the first of them."""
    looped = np.concatenate([played, played[:rate]]).astype(np.float64)
    size, n = 1 << int(np.ceil(np.log2(looped.size + rate))), rate // 2
    spectrum = np.fft.rfft(looped, size)
    power = np.concatenate([[0.0], np.cumsum(looped ** 2)])
    energy = power[n:] - power[:-n]  # of each n samples of the file
    places = []
    for start in range(n, recording.size - n + 1, n):
        probe = recording[start: start + n].astype(np.float64)
        if np.abs(probe).max() < 0.1:
            continue
        correlation = np.fft.irfft(spectrum * np.conj(np.fft.rfft(probe, size)), size)[: energy.size]
        normalised = correlation / np.sqrt(energy * (probe @ probe) + 1e-12)
        best = int(np.argmax(normalised))
        places.append(((best - start) % played.size, float(normalised[best])))
    good = [(place, match) for place, match in places if match >= 0.9]
    assert len(good) >= 2 / 3 * len(places), f"only {len(good)} of {len(places)} halves match the played file"
    places = good
    first = places[0][0]
    half = played.size // 2
    return [(((place - first + half) % played.size - half) / rate, match) for place, match in places]


def watch_updates(page, selector: str, seconds: float) -> list[float]:
    """The gaps in seconds between meter updates (the live status changes to a new "N s heard · emotion of the
    last ..."), timed in the page itself by a MutationObserver over `seconds` (polling from the test would add its
    own interval and round trips to every gap)."""
    page.evaluate("""(selector) => {
        const status = document.querySelector(selector);
        let last = status.innerText;
        window.meterUpdates = [performance.now()];
        window.meterObserver = new MutationObserver(() => {
            const text = status.innerText;
            if (text !== last && text.includes("emotion of the last")) window.meterUpdates.push(performance.now());
            last = text;
        });
        window.meterObserver.observe(status, {subtree: true, childList: true, characterData: true});
    }""", selector)
    time.sleep(seconds)
    times = page.evaluate("() => { window.meterObserver.disconnect(); return [...window.meterUpdates, performance.now()]; }")
    return [(b - a) / 1000 for a, b in zip(times, times[1:])]
