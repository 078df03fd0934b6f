"""The model in plain words for a person trying the demo: what it recognises, what speech it learned from, and how
often it is right on voices (and collections) it never heard, read from the results files beside the weights."""

from pathlib import Path

from ser import card
from ser import results as results_file
from ser.corpora import LANGUAGE_NAMES, corpus_info, speech_kind


def describe_model(name_or_path: str, labels: list[str]) -> tuple[str, str]:
    """For a person trying the demo, in plain words (no file names, no jargon): one short line on what the model
    recognises and what speech it learned from, and the details for a fold: how often it is right on voices (and,
    where measured, on whole collections) it never heard."""
    short = f"Recognises {len(labels)} emotions: {', '.join(labels[:-1])} and {labels[-1]}."
    results = read_results(name_or_path)
    if not results:
        return short, ""
    keys = results_file.corpus_keys(results)
    acted = all(speech_kind(key) == "acted" for key in keys)  # a folder, CSV or dataset has no kind recorded
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
