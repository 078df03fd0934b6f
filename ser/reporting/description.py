"""The model in plain words, for a person trying the demo: a section of its card (what speech it learned from, how
often it is right on voices and collections it never heard), which the demo shows (ser/demo/about.py)."""

from ser.reporting import card
from ser.reporting import results as results_file
from ser.data.corpora import LANGUAGE_NAMES, corpus_info, speech_kind
from ser.core.defaults import PLAIN_WORDS_HEADING


def plain_words(results: dict, cross: dict | None = None) -> str:
    """The card's section for a person trying the demo (ser/demo/about.py shows it), in plain words (no file names, no
    jargon): what speech the model learned from, then how often it is right on voices (and, where measured, on
    whole collections) it never heard."""
    keys = results_file.corpus_keys(results)
    acted = all(speech_kind(key) == "acted" for key in keys)  # a folder, CSV or dataset has no kind recorded
    speakers = card.speaker_count(results)
    language = card.language_name(results)
    learned = (f"Learned from {'actors' if acted else 'people'}" + (f" speaking {language}" if language else "")
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
    if cross:
        rows, _ = card.cross_corpus_table(cross)
        right = ", ".join(f"{where(row['corpus'])} {row['ua']['mean']:.0%}" for row in rows)
        details.append(f"**On a whole collection it never learned from** (new voices, studio and often language): "
                       f"{right}.")
    details.append(f"**Learned from:** {card.corpus_name(results)}.")
    return f"{PLAIN_WORDS_HEADING}\n\n{learned}\n\n" + "  \n".join(details) + "\n"


def where(corpus_key: str) -> str:
    """A collection by its language and name, e.g. "German (Emo-DB)"."""
    info = corpus_info(corpus_key)
    name = card.short_name(corpus_key)
    return f"{LANGUAGE_NAMES.get(info.language, info.language)} ({name})" if info else name
