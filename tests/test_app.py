"""The Gradio demo (app.py) served for real: a subprocess on a free local port with the embedded model, called through
gradio_client and driven in headless Debian chromium. No mocks: the model, the audio and the server are real."""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from playwright.sync_api import expect, sync_playwright

from app import MAX_SECONDS, NO_INPUT, UNREADABLE
from conftest import EMODB, ROOT, require

from ser.defaults import DEFAULT_MODEL

EMODB_EMOTIONS = ["angry", "boredom", "disgust", "fear", "happy", "neutral", "sad"]  # models/ser-cnn-emodb
_DEFAULT_CONFIG = json.loads((ROOT / DEFAULT_MODEL / "config.json").read_text())
EMOTIONS = [_DEFAULT_CONFIG["id2label"][str(i)] for i in range(len(_DEFAULT_CONFIG["id2label"]))]  # the demo's
CLIPS = ["03a01Wa.wav", "03a02Ta.wav"]  # angry, sad
EMOTION_PATTERN = re.compile("^(" + "|".join(EMOTIONS) + ")$")  # the label heading shows exactly one emotion
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
START_TIMEOUT = 120  # importing torch, transformers and gradio on two busy cores


@pytest.fixture(scope="module")
def clips():
    wav = require(EMODB / "wav")
    return [wav / name for name in CLIPS]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`python app.py` as a Space runs it (no --model: the embedded default model, as on a fresh clone), on a
    free port; stopped when the module's tests are done."""
    tmp = tmp_path_factory.mktemp("app-server")
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "OMP_NUM_THREADS": "1",
           "GRADIO_TEMP_DIR": str(tmp / "gradio")}  # uploads land in tmp, not in the shared /tmp/gradio
    log_path = tmp / "server.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "app.py"), "--port", str(port), "--threads", "1"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_until_serving(process, url, log_path)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def client(server, tmp_path_factory):
    return Client(server, verbose=False, download_files=str(tmp_path_factory.mktemp("client-downloads")),
                  analytics_enabled=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_serving(process: subprocess.Popen, url: str, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"app.py exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"app.py did not serve {url} within {START_TIMEOUT} s:\n{log_path.read_text()[-3000:]}")


def confidences(result: dict) -> dict[str, float]:
    """The label payload as {emotion: probability}, checking it covers every emotion and sums to 1."""
    scores = {item["label"]: item["confidence"] for item in result["confidences"]}
    assert sorted(scores) == sorted(EMOTIONS)
    assert abs(sum(scores.values()) - 1.0) < 1e-4, scores
    assert result["label"] == max(scores, key=scores.get)
    return scores


def write_clip(path: Path, audio: np.ndarray, rate: int = 16000) -> Path:
    sf.write(path, audio, rate, subtype="PCM_16")
    return path


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
    return {
        "empty": (write_clip(tmp / "empty.wav", np.zeros(0, dtype=np.float32)), "empty"),
        "silent": (write_clip(tmp / "silent.wav", np.zeros(32000, dtype=np.float32)), "silen"),
        "too short": (write_clip(tmp / "short.wav", real[:1600]), "short"),
        # 8 kHz keeps the file at ~10 MB; the demo refuses it from the header, before decoding.
        "too long": (write_clip(tmp / "long.wav", np.zeros(int(too_long * 8000), dtype=np.float32), 8000),
                     "minutes long"),
        "corrupt": (corrupt, UNREADABLE),
        "not audio": (text, UNREADABLE),
    }


def test_predict_returns_every_emotion(client, clips):
    scores = confidences(client.predict(handle_file(str(clips[0])), api_name="/predict"))
    assert all(0.0 <= p <= 1.0 for p in scores.values())


def test_bad_inputs_raise_clear_errors_and_the_server_keeps_serving(client, clips, bad_files):
    with pytest.raises(AppError) as caught:
        client.predict(None, api_name="/predict")
    assert NO_INPUT in str(caught.value)
    for kind, (path, message) in bad_files.items():
        with pytest.raises(AppError) as caught:
            client.predict(handle_file(str(path)), api_name="/predict")
        text = str(caught.value)
        assert message.lower() in text.lower(), f"{kind}: {text!r}"
        # The server keeps the upload's name in its temporary path, so the name would show a leaked path.
        assert path.name not in text, f"{kind}: the message leaks a server path: {text!r}"
    confidences(client.predict(handle_file(str(clips[1])), api_name="/predict"))


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


def test_eight_concurrent_requests_are_all_answered(client, clips):
    expected = [confidences(client.predict(handle_file(str(c)), api_name="/predict")) for c in clips]
    jobs = [client.submit(handle_file(str(clips[i % 2])), api_name="/predict") for i in range(8)]
    for i, job in enumerate(jobs):
        scores = confidences(job.result(timeout=60))
        assert scores == pytest.approx(expected[i % 2], abs=1e-5)


@pytest.fixture(scope="module")
def long_recording(clips, tmp_path_factory):
    """12 s of real speech: clips back to back, longer than one 2 s timeline window."""
    parts = [sf.read(c, dtype="float32")[0] for c in clips]
    audio = np.concatenate(parts * 8)[: 12 * 16000]
    assert audio.size == 12 * 16000
    return write_clip(tmp_path_factory.mktemp("long-audio") / "twelve-seconds.wav", audio)


def test_long_recording_gets_labels_and_a_timeline(client, clips, long_recording):
    confidences(client.predict(handle_file(str(long_recording)), api_name="/predict"))
    plot = client.predict(handle_file(str(long_recording)), api_name="/timeline")
    assert plot["visible"] is True
    assert plot["value"]["type"] == "matplotlib"
    assert plot["value"]["plot"].startswith("data:image/")
    short = client.predict(handle_file(str(clips[0])), api_name="/timeline")  # 1.9 s: one window, no timeline
    assert short["visible"] is False and short["value"] is None


def test_recording_longer_than_the_model_takes_is_scored_by_windows(client, clips, tmp_path):
    """Over the predictor's 60 s the demo averages 60 s windows rather than refusing."""
    parts = [sf.read(c, dtype="float32")[0] for c in clips]
    audio = np.concatenate(parts * 20)[: 65 * 16000]
    assert audio.size == 65 * 16000
    path = write_clip(tmp_path / "sixty-five-seconds.wav", audio)
    confidences(client.predict(handle_file(str(path)), api_name="/predict"))


def test_browser_upload_predict_error_and_recover(server, clips, bad_files, long_recording, tmp_path):
    """A user's path in headless chromium: upload a clip, submit, read the label; a corrupt file shows the error
    toast; the next good file, a long one, gets a label again and a timeline."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: install Debian chromium (apt-get install chromium; scripts/setup.sh does)")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(30_000)
            page.goto(server)
            expect(page.get_by_text("Emo-DB (Berlin Database of Emotional Speech)")).to_be_visible()
            shown = page.locator("#emotion-label [data-testid=label-output-value]")

            upload_and_submit(page, clips[0])
            expect(shown).to_have_text(EMOTION_PATTERN)
            expect(page.locator("#emotion-timeline")).to_be_hidden()  # a clip shorter than one window
            page.screenshot(path=str(tmp_path / "app-label.png"), full_page=True)

            upload_and_submit(page, bad_files["corrupt"][0])
            expect(page.get_by_text(UNREADABLE).first).to_be_visible()
            page.screenshot(path=str(tmp_path / "app-error.png"), full_page=True)

            upload_and_submit(page, long_recording)
            expect(shown).to_have_text(EMOTION_PATTERN)
            expect(page.locator("#emotion-timeline img")).to_be_visible()
            page.screenshot(path=str(tmp_path / "app-timeline.png"), full_page=True)
        finally:
            browser.close()


def upload_and_submit(page, path: Path) -> None:
    """Replace the audio input with `path` through its file input, wait for the upload, then submit."""
    audio = page.locator("#speech-input")
    clear = audio.locator("button[aria-label='Clear']")
    if audio.locator("[data-testid=download-link]").count():
        clear.click()  # a loaded recording hides the file input; clearing brings it back
    if not audio.locator("input[type=file]").count():
        audio.locator("button[aria-label='Upload file']").click()  # microphone is the first source
    audio.locator("input[type=file]").set_input_files(str(path))
    # The file is on the server once the component offers it for download under its name.
    page.wait_for_selector(f"#speech-input [data-testid=download-link][href$='/{path.name}']")
    # A new recording clears the previous result, so a label seen after submitting is the new one.
    expect(page.locator("#emotion-label [data-testid=label-output-value]")).to_have_count(0)
    page.locator("#submit-button").click()


# --- the model description (describe_model): plain words, from the model folder's results files -------------------
def test_description_of_a_mixture_for_a_person(tmp_path):
    from app import describe_model
    from ser import results as results_file
    from ser.export import add_cross_corpus
    from test_card import MIXTURE_LABELS, write_model_and_loco

    model, loco = write_model_and_loco(tmp_path, seeds=(0, 1))
    text = describe_model(str(model), MIXTURE_LABELS)
    lines = text.split("  \n")
    assert len(lines) == 3
    assert lines[0] == "**Model:** ser-mix · recognises 4 emotions: angry, happy, neutral, sad"
    assert lines[1] == ("**Learned from:** acted speech (actors portraying emotions) from 3 collections, Emo-DB "
                        "(Berlin Database of Emotional Speech), RAVDESS and EMOVO (Italian emotional speech): German, "
                        "English and Italian, 6 speakers.")
    per_corpus = results_file.per_corpus(results_file.read(model))
    short = {"emodb": "Emo-DB", "ravdess": "RAVDESS", "emovo": "EMOVO"}
    assert "speakers it never heard" in lines[2] and "guessing would score 25%" in lines[2]
    for corpus, numbers in per_corpus.items():  # pooled UA per corpus, mean over the seeds
        assert f"{short[corpus]} {numbers['ua']['mean']:.0%}" in lines[2]
    assert str(tmp_path) not in text and "configs/" not in text and "`" not in text

    add_cross_corpus(model, loco)
    lines = describe_model(str(model), MIXTURE_LABELS).split("  \n")
    assert len(lines) == 4 and lines[3].startswith("**On a whole corpus left out of training**")
    for row in results_file.fold_table(results_file.read(loco)):
        assert f"{short[row['name']]} {row['ua']['mean']:.0%}" in lines[3]


def test_description_of_a_single_corpus_model_and_of_none():
    from app import describe_model
    from ser import results as results_file

    results = results_file.read(ROOT / "models" / "ser-cnn-emodb")
    text = describe_model(str(ROOT / "models" / "ser-cnn-emodb"), EMODB_EMOTIONS)
    assert "Emo-DB (Berlin Database of Emotional Speech): German, 10 speakers." in text
    assert f"never heard, each emotion counted equally: {results_file.headline(results)['ua']['mean']:.0%}; " \
           "guessing would score 14%." in text
    assert str(ROOT) not in text and "configs/" not in text and "left out of training" not in text
    assert describe_model("no/such-model-offline", EMODB_EMOTIONS) == \
        "**Model:** no/such-model-offline · recognises 7 emotions: " + ", ".join(EMODB_EMOTIONS)
