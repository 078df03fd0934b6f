"""The demo: what it does with audio, its Gradio page, the live microphone and what it says of the model."""
