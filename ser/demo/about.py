"""The model for a person trying the demo: what it recognises (its labels) and its card's section in plain words
(ser/reporting/description.py writes it), from a local folder or the Hub."""

from pathlib import Path

from ser.core.defaults import PLAIN_WORDS_HEADING


def describe_model(name_or_path: str, labels: list[str]) -> tuple[str, str]:
    """One short line (what it recognises and what speech it learned from) and the details for a fold; only the
    first where the card has no such section."""
    short = f"Recognises {len(labels)} emotions: {', '.join(labels[:-1])} and {labels[-1]}."
    section = plain_words_section(read_card(name_or_path) or "")
    if not section:
        return short, ""
    learned, _, details = section.partition("\n\n")
    return f"{short} {learned.strip()}", details.strip()


def plain_words_section(card: str) -> str:
    """The text of the card's plain-words section, without its heading; "" where it has none."""
    if PLAIN_WORDS_HEADING + "\n" not in card:
        return ""
    return card.split(PLAIN_WORDS_HEADING + "\n", 1)[1].split("\n## ", 1)[0].strip()


def read_card(name_or_path: str) -> str | None:
    """README.md of a model folder or Hub repo; None when absent."""
    folder = Path(name_or_path)
    try:
        if folder.is_dir():
            return (folder / "README.md").read_text(encoding="utf-8")
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(name_or_path, "README.md")).read_text(encoding="utf-8")
    except Exception:  # the description is a nicety: no card, no network or a bad file must not stop the demo
        return None
