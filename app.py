"""Speech emotion recognition demo: upload a recording or speak into the microphone, and see the emotion.

Ready to run as a Hugging Face Space (`python app.py`; docs/demo.md, "Deploying as a Space") or locally:

    python app.py --model models/ser-cnn-emodb            # a saved model folder
    python app.py --model org/emotion-model --runtime int8   # a Hub id, int8 CPU runtime

An upload gets the probability of every emotion; one longer than a speech segment also gets a timeline of its speech
segments (smoothed), a summary of the time per emotion and the segments as CSV. The live microphone updates a meter
and a rolling timeline while the person speaks, and analyses the whole recording when they stop. The API has
`/predict` (scores) and `/timeline` (segments). The page is ser/demo/page.py, what it does with audio ser/demo/analysis.py; the
model is loaded once, in `main()`, so importing this file loads nothing.
"""

import os

# Before gradio is imported: it reads the variable at import time, and a demo should not phone home by default.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import argparse
from pathlib import Path

from ser.core import defaults
from ser.core.defaults import DEFAULT_MODEL
from ser.demo.page import CSS, THEME, build_demo
from ser.demo.about import describe_model
from ser.inference.predictor import EmotionPredictor
from ser.inference.runtime import RUNTIMES

HERE = Path(__file__).resolve().parent


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
