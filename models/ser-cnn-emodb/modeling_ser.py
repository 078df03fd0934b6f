"""Speech emotion recognition: a self-supervised speech encoder with one shared classification head.

The same head sits on five pretrained encoder families (wav2vec 2.0, HuBERT, WavLM, w2v-BERT 2.0, Whisper's
encoder at each clip's own length) and on a compact log-mel CNN trained from scratch:

    frames of the chosen encoder layer(s)  (B, T, H)
      -> projector (linear, per frame)       (B, T, P)
      -> masked pooling: mean | stats | attentive  (B, P) or (B, 2P)
      -> feed-forward layers with dropout
      -> classifier                          (B, num_labels)

Every option is a config field, so `save_pretrained` keeps it. A head the stock
`*ForSequenceClassification` classes can express (last layer or weighted layer sum, projector,
masked mean, linear classifier: the SUPERB recipe) is saved as that stock class, so the stock
`pipeline("audio-classification", model=...)` loads it without `trust_remote_code`. Any other head
is saved with this file beside the weights (`auto_map`), loadable with `trust_remote_code=True`.

This file is uploaded next to every published model, with the feature extractors (feature_extraction_ser.py: each
clip prepared as training prepared it) and the speech detector they use (speech_ser.py).
"""

import math
from dataclasses import dataclass, fields

import torch
from huggingface_hub.dataclasses import strict
from torch import nn
from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoModelForAudioClassification,
    HubertConfig,
    PreTrainedConfig,
    PreTrainedModel,
    HubertForSequenceClassification,
    HubertModel,
    Wav2Vec2BertConfig,
    Wav2Vec2BertForSequenceClassification,
    Wav2Vec2BertModel,
    Wav2Vec2Config,
    Wav2Vec2ForSequenceClassification,
    Wav2Vec2Model,
    WavLMConfig,
    WavLMForSequenceClassification,
    WavLMModel,
    WhisperConfig,
)
from transformers import initialization as init
from transformers.audio_utils import mel_filter_bank
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_outputs import BaseModelOutput, SequenceClassifierOutput
from transformers.models.hubert.modeling_hubert import HubertPreTrainedModel
from transformers.models.wav2vec2.modeling_wav2vec2 import Wav2Vec2PreTrainedModel
from transformers.models.wav2vec2_bert.modeling_wav2vec2_bert import Wav2Vec2BertPreTrainedModel
from transformers.models.wavlm.modeling_wavlm import WavLMPreTrainedModel
from transformers.models.whisper.modeling_whisper import WhisperEncoder, WhisperPreTrainedModel
from transformers.utils import logging as hf_logging

try:  # beside this file in a saved model (a package), or the project's top-level module
    from .feature_extraction_ser import (Wav2Vec2BertEmotionFeatureExtractor, Wav2Vec2EmotionFeatureExtractor,
                                         WhisperEmotionFeatureExtractor)
except ImportError:
    from feature_extraction_ser import (Wav2Vec2BertEmotionFeatureExtractor, Wav2Vec2EmotionFeatureExtractor,
                                        WhisperEmotionFeatureExtractor)

POOLINGS = ("mean", "stats", "attentive")
# How a head z-normalises per dimension (the log-mel CNN its log-mels, `normalisation`; the other families the
# chosen encoder frames, `frame_normalisation`):
NORMALISATIONS = {
    "none": "the frames as they are; not for the log-mel CNN",
    "global": "the training clips' statistics, saved in the model",
    "utterance": "each clip's own statistics",
    "speaker": "the statistics of all of one speaker's speech, given beside the clip (predict_ser.py --same-speaker)",
}
FRAME_NORMALISATIONS = tuple(NORMALISATIONS)
CNN_NORMALISATIONS = tuple(name for name in NORMALISATIONS if name != "none")


@dataclass(repr=False)
class ServingFields:
    """What training did to a model's scores, which serving must repeat: declared here, set by training, and read by
    the predictor through `serving_settings` only. The defaults are a model that records none of it. (What training
    did to its input is the feature extractor's: feature_extraction_ser.Preparation.)"""

    calibration_temperature: float | int | None = None  # logits / T (fitted on out-of-fold predictions)


def serving_settings(config) -> ServingFields:
    """The serving fields of any config: declared by our classes; carried as extra attributes by a head saved as a
    stock class; absent (the defaults) in models saved before they existed."""
    return ServingFields(**{f.name: getattr(config, f.name, f.default) for f in fields(ServingFields)})


@dataclass(repr=False)
class EmotionHeadFields(ServingFields):
    """Head options shared by every encoder family (`classifier_proj_size` comes from the encoder config), and
    the serving fields (kept when a head is saved as a stock class)."""

    pooling: str = "mean"  # "mean" | "stats" (mean and std) | "attentive"
    feature_layer: str | int = "last"  # "last" | "weighted" (learned softmax over all layers) | a layer index
    head_hidden_sizes: list[int] | tuple[int, ...] = ()
    head_dropout: float | int = 0.1
    freeze_feature_encoder: bool = False
    freeze_backbone: bool = False
    # Standardise the pooled vector (batch norm, no learned scale): every statistic reaches the classifier on one
    # scale, as after a logistic-regression probe's standard scaler (Whisper's residual stream has a few huge
    # dimensions). Measured on Emo-DB LOSO, frozen tiny.en layer 2: UA 0.903 without, 0.925 with.
    pooled_norm: bool = False
    # Z-normalise the encoder frames of the chosen layer(s) per dimension before the head, with statistics of:
    # "global", the training clips (saved in the model as `frame_stats`); "utterance", each clip's own; "speaker", one
    # speaker's, passed to forward as `normalisation_stats` (B, 2, [L,] H) (ser.core.statistics computes them from that
    # speaker's speech; without them, the clip's own). "none" leaves them as they are. The log-mel CNN normalises
    # its log-mels instead (`normalisation`).
    frame_normalisation: str = "none"


# The head's own options: a stock class cannot hold them (the serving fields it carries along)
HEAD_FIELDS = tuple(f.name for f in fields(EmotionHeadFields) if f.name not in {g.name for g in fields(ServingFields)})


@strict
class Wav2Vec2EmotionConfig(Wav2Vec2Config, EmotionHeadFields):
    model_type = "wav2vec2-emotion"


@strict
class HubertEmotionConfig(HubertConfig, EmotionHeadFields):
    model_type = "hubert-emotion"


@strict
class WavLMEmotionConfig(WavLMConfig, EmotionHeadFields):
    model_type = "wavlm-emotion"


@strict
class Wav2Vec2BertEmotionConfig(Wav2Vec2BertConfig, EmotionHeadFields):
    model_type = "wav2vec2-bert-emotion"


@strict
class WhisperEmotionConfig(WhisperConfig, EmotionHeadFields):
    """A Whisper encoder (the decoder's fields are kept but unused) with the shared head."""

    model_type = "whisper-emotion"
    # The shared head checks `layerdrop`; Whisper names the encoder's `encoder_layerdrop`.
    attribute_map = {**WhisperConfig.attribute_map, "layerdrop": "encoder_layerdrop"}
    # Set when the encoder was cut to the layer its head reads (`WhisperForEmotion.cut_to_feature_layer`): the
    # checkpoint's encoder had this many layers, this one keeps the first `encoder_layers` and no final layer norm.
    cut_from_layers: int | None = None


@strict
class LogMelCnnConfig(PreTrainedConfig):
    """A compact 2-D convolutional encoder over log-mel filterbanks, for training from scratch on small corpora.

    The model computes its own log-mels from raw 16 kHz samples (so waveform augmentation, training and inference
    share one front end), normalises them per mel bin with statistics of speech frames only, and runs VGG-style
    blocks (3x3 conv, batch norm, ReLU, 2x2 max-pool) over time and frequency; the mean over frequency of the last
    block gives one frame every `hop_length * 2**len(conv_channels)` samples for the shared head.
    """

    model_type = "logmel-cnn"

    sampling_rate: int = 16000
    n_fft: int = 400  # 25 ms windows
    hop_length: int = 320  # 20 ms hop: emotion cues are slow, and it halves the cost of every block
    num_mel_bins: int = 64
    f_min: float | int = 50.0
    f_max: float | int = 8000.0
    # How log-mels are z-normalised per bin. "global": with fixed statistics saved in the model (`global_stats`,
    # those of the training clips' speech), which keeps each clip's level and spectral tilt, strong emotion cues;
    # "utterance": with each clip's own statistics (level-invariant, but the cues go too); "speaker": with those
    # passed in `normalisation_stats` (of all a speaker's speech), falling back to the clip's own when none are.
    normalisation: str = "global"
    # Frames more than this many dB below the clip's loudest frame count as silence: they are left out of the
    # normalisation statistics and of the pooling, so leading, trailing and inner silence do not decide the answer.
    speech_threshold_db: float | int | None = 40.0
    # Set the normalised log-mels of non-speech frames to the mean (0) before the convolutions, so that silence or
    # noise next to the speech reaches no speech frame's features through the receptive field.
    mask_non_speech: bool = False
    conv_channels: list[int] | tuple[int, ...] = (16, 32, 64, 128)
    conv_dropout: float | int = 0.0
    # SpecAugment, applied in training mode only: masks of up to `width` frames / mel bins, set to the mean (0).
    spec_augment_time_masks: int = 2
    spec_augment_time_width: int = 20
    spec_augment_freq_masks: int = 2
    spec_augment_freq_width: int = 8
    classifier_proj_size: int = 64
    initializer_range: float = 0.02

    @property
    def hidden_size(self) -> int:
        return self.conv_channels[-1]

    @property
    def num_hidden_layers(self) -> int:
        return len(self.conv_channels)

    @property
    def frames_per_output(self) -> int:
        """Log-mel frames per encoder output frame (each block halves time)."""
        return 2 ** len(self.conv_channels)

    @property
    def shortest_input_samples(self) -> int:
        """The fewest samples that leave one frame after the last block: shorter clips are too short to classify."""
        return self.hop_length * (self.frames_per_output - 1) + self.n_fft

    def validate_architecture(self):
        if self.normalisation not in CNN_NORMALISATIONS:
            raise ValueError(f"normalisation={self.normalisation!r} is not one of {CNN_NORMALISATIONS}")
        if self.num_mel_bins < 2 ** len(self.conv_channels):
            raise ValueError(f"num_mel_bins={self.num_mel_bins} is too few for {len(self.conv_channels)} blocks "
                             "that each halve frequency")


@strict
class LogMelCnnEmotionConfig(LogMelCnnConfig, EmotionHeadFields):
    model_type = "logmel-cnn-emotion"


def check_head_options(config) -> None:
    """Fail at construction, naming the flag, rather than deep inside a forward pass."""
    if config.pooling not in POOLINGS:
        raise ValueError(f"pooling={config.pooling!r} is not one of {POOLINGS}")
    layer = config.feature_layer
    if isinstance(layer, int):
        if not 0 <= layer <= config.num_hidden_layers:
            raise ValueError(f"feature_layer={layer} is outside 0..{config.num_hidden_layers} (0 = encoder input)")
    elif layer not in ("last", "weighted"):
        raise ValueError(f"feature_layer={layer!r} must be 'last', 'weighted' or a layer index")
    if layer != "last" and config.layerdrop > 0:
        # A dropped layer is missing from hidden_states, which shifts every index and the layer weights.
        raise ValueError(f"feature_layer={layer!r} needs layerdrop=0 (got layerdrop={config.layerdrop})")
    if config.frame_normalisation not in FRAME_NORMALISATIONS:
        raise ValueError(f"frame_normalisation={config.frame_normalisation!r} is not one of {FRAME_NORMALISATIONS}")
    if config.frame_normalisation != "none" and isinstance(config, LogMelCnnConfig):
        raise ValueError("the log-mel CNN normalises its log-mels: use normalisation='speaker', "
                         "not frame_normalisation")
    if getattr(config, "add_adapter", False):
        raise ValueError("add_adapter=True is not supported: the head pools the encoder's own frames")


def label_maps(labels: list[str]) -> dict:
    """The config's `id2label` / `label2id` for labels in class-index order."""
    if len(labels) < 2 or len(set(labels)) != len(labels):
        raise ValueError(f"labels must be at least two distinct names, got {labels}")
    return {"id2label": dict(enumerate(labels)), "label2id": {label: i for i, label in enumerate(labels)}}


class HeadLinear(nn.Linear):
    """A linear layer of the head. Initialised with Glorot rather than the encoder's N(0, 0.02): two stacked
    layers that small start training on a long plateau."""


FRAME_STATS_EPS = 1e-5  # added to the variance of encoder frames before the square root (ser/core/statistics.py too)


def frame_statistics(frames: torch.Tensor, frame_mask: torch.Tensor, eps: float = FRAME_STATS_EPS) -> torch.Tensor:
    """Mean and std (B, 2, ...) of each clip's real frames (B, T, ...), for frame normalisation: the population
    std, with `eps` added to the variance (ser.core.statistics.RunningStatistics gives the same over many clips)."""
    weights = frame_mask.to(frames.dtype).view(*frame_mask.shape, *[1] * (frames.dim() - 2))
    count = weights.sum(dim=1).clamp(min=1)
    mean = (frames * weights).sum(dim=1) / count
    variance = ((frames - mean.unsqueeze(1)) ** 2 * weights).sum(dim=1) / count
    return torch.stack([mean, (variance + eps).sqrt()], dim=1)


class MaskedPooling(nn.Module):
    """Pools frames (B, T, P) into one vector per clip, ignoring padded frames exactly."""

    def __init__(self, pooling: str, size: int):
        super().__init__()
        self.pooling = pooling
        if pooling == "attentive":
            self.attention = nn.Sequential(HeadLinear(size, size), nn.Tanh(), HeadLinear(size, 1))

    @property
    def output_multiplier(self) -> int:
        return 2 if self.pooling == "stats" else 1

    def forward(self, frames: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        weights = frame_mask.to(frames.dtype).unsqueeze(-1)  # (B, T, 1): 1 for real frames
        if self.pooling == "attentive":
            scores = self.attention(frames).masked_fill(~frame_mask.unsqueeze(-1), float("-inf"))
            weights = torch.softmax(scores, dim=1)
        else:
            weights = weights / weights.sum(dim=1, keepdim=True).clamp(min=1)
        mean = (frames * weights).sum(dim=1)  # (B, P)
        if self.pooling != "stats":
            return mean
        variance = ((frames - mean.unsqueeze(1)) ** 2 * weights).sum(dim=1)
        return torch.cat([mean, variance.clamp(min=1e-6).sqrt()], dim=-1)  # clamp: sqrt has no gradient at 0


class EmotionModelMixin:
    """The shared head. A family class sets the backbone attribute (named as in the stock class) and calls
    `_build_head()` before `post_init()`; parameter names match the stock classes where they overlap."""

    stock_class: type | None = None  # the stock *ForSequenceClassification of the family, if there is one
    applies_calibration = True  # divides its logits by config.calibration_temperature in eval mode (stock: not)
    family: str = None  # the encoder's model_type ("wav2vec2", ...; "logmel-cnn" for our own)
    normalises_inputs = False  # speaker statistics normalise the encoder's input (log-mel CNN), else its frames

    def _build_head(self, config) -> None:
        check_head_options(config)
        if config.feature_layer == "weighted":
            num_layers = config.num_hidden_layers + 1  # transformer layers + encoder input
            self.layer_weights = nn.Parameter(torch.ones(num_layers) / num_layers)
        self.projector = HeadLinear(config.hidden_size, config.classifier_proj_size)
        self.pooling = MaskedPooling(config.pooling, config.classifier_proj_size)
        size = config.classifier_proj_size * self.pooling.output_multiplier
        self.pooled_norm = nn.BatchNorm1d(size, affine=False) if config.pooled_norm else nn.Identity()
        if config.frame_normalisation == "global":  # (2, [L,] H): set from the training clips, saved with the model
            self.register_buffer("frame_stats", torch.stack([torch.zeros(self.statistics_shape),
                                                             torch.ones(self.statistics_shape)]))
        layers = [nn.Dropout(config.head_dropout)]
        for hidden in config.head_hidden_sizes:
            layers += [HeadLinear(size, hidden), nn.ReLU(), nn.Dropout(config.head_dropout)]
            size = hidden
        self.head = nn.Sequential(*layers)
        self.classifier = HeadLinear(size, config.num_labels)

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, HeadLinear):
            init.xavier_uniform_(module.weight)
            init.zeros_(module.bias)
        if module is self and hasattr(self, "frame_stats"):
            init.copy_(self.frame_stats, torch.stack([torch.zeros(self.statistics_shape),
                                                      torch.ones(self.statistics_shape)]))
        if module is self and hasattr(self, "layer_weights"):
            init.constant_(self.layer_weights, 1.0 / self.layer_weights.numel())

    def apply_freezing(self) -> None:
        """Sets requires_grad from the config flags (after construction, loading, or restoring a state dict)."""
        if self.config.freeze_feature_encoder:
            self.freeze_feature_encoder()
        if self.config.freeze_backbone:
            self.freeze_base_model()

    def freeze_feature_encoder(self) -> None:
        """Stops gradients into the convolutional feature encoder (w2v-BERT: its input feature projection)."""
        frontend = getattr(self.base_model, "feature_extractor", None) or self.base_model.feature_projection
        for param in frontend.parameters():
            param.requires_grad = False

    def freeze_base_model(self) -> None:
        """Trains the head only."""
        for param in self.base_model.parameters():
            param.requires_grad = False

    def encoder_frames(self, outputs) -> torch.Tensor:
        """Frames of the configured encoder layer: (B, T, H), or all layers (B, T, L, H) for a weighted sum. These
        are what a frozen encoder's feature cache holds."""
        layer = self.config.feature_layer
        if layer == "last":
            return outputs.last_hidden_state
        if layer == "weighted":
            return torch.stack(outputs.hidden_states, dim=2)
        return outputs.hidden_states[layer]

    def mix_layers(self, frames: torch.Tensor) -> torch.Tensor:
        """Learned softmax-weighted sum of all layers: (B, T, L, H) -> (B, T, H)."""
        weights = torch.softmax(self.layer_weights, dim=-1)
        return (frames * weights.view(-1, 1)).sum(dim=2)

    def normalise_frames(self, frames: torch.Tensor, frame_mask: torch.Tensor,
                         normalisation_stats: torch.Tensor | None) -> torch.Tensor:
        """(frames - mean) / std per dimension, as `frame_normalisation` says: with the saved training statistics,
        the statistics passed (B, 2, [L,] H), or each clip's own over its real frames."""
        mode = self.config.frame_normalisation
        if mode == "none":
            return frames
        if mode == "global":
            normalisation_stats = self.frame_stats.unsqueeze(0)
        elif mode == "utterance" or normalisation_stats is None:
            normalisation_stats = frame_statistics(frames, frame_mask)
        mean, std = normalisation_stats.to(frames.dtype).unbind(dim=1)
        return (frames - mean.unsqueeze(1)) / std.unsqueeze(1)

    def classify(self, frames: torch.Tensor, frame_mask: torch.Tensor,
                 normalisation_stats: torch.Tensor | None = None) -> torch.Tensor:
        """The head alone: `encoder_frames` (B, T, [L,] H) and their mask (B, T) -> logits (B, num_labels). Training
        on cached encoder features calls this directly."""
        frames = self.normalise_frames(frames, frame_mask, normalisation_stats)
        if frames.dim() == 4:
            frames = self.mix_layers(frames)
        frames = self.projector(frames)  # (B, T, P)
        return self.classifier(self.head(self.pooled_norm(self.pooling(frames, frame_mask))))

    def frame_mask(self, frames: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """Turns the input-level attention mask into a (B, T) mask of real encoder frames."""
        if attention_mask is None:
            return torch.ones(frames.shape[:2], dtype=torch.bool, device=frames.device)
        return self._get_feature_vector_attention_mask(frames.shape[1], attention_mask).bool()

    def forward(
        self,
        input_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        input_features: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        normalisation_stats: torch.Tensor | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput:
        """`input_values` are raw samples (wav2vec 2.0, HuBERT, WavLM); `input_features` are the log-mel
        filterbanks of w2v-BERT 2.0. Either name is accepted for either family, as the pipeline passes what the
        feature extractor produced. `normalisation_stats` (B, 2, F): a speaker's log-mel statistics for a logmel-cnn
        model with "speaker" normalisation."""
        inputs = input_values if input_values is not None else input_features
        if inputs is None:
            raise ValueError("pass input_values (raw audio) or input_features (filterbanks)")
        # the log-mel CNN normalises its log-mels with the statistics; the other families their encoder frames
        to_encoder = self.normalises_inputs and normalisation_stats is not None
        extra = {"normalisation_stats": normalisation_stats} if to_encoder else {}
        outputs = self.base_model(
            inputs,
            attention_mask=attention_mask,
            output_hidden_states=bool(output_hidden_states) or self.config.feature_layer != "last",
            output_attentions=output_attentions,
            **extra,
        )
        frames = self.encoder_frames(outputs)  # (B, T, H) or (B, T, L, H)
        frame_mask = getattr(outputs, "frame_mask", None)  # logmel-cnn: speech frames only
        if frame_mask is None:
            frame_mask = self.frame_mask(frames, attention_mask)
        logits = self.classify(frames, frame_mask, None if self.normalises_inputs else normalisation_stats)
        temperature = self.config.calibration_temperature
        if temperature and not self.training:
            logits = logits / temperature  # calibrated probabilities for the pipeline too; the top label is unchanged
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits, labels.view(-1).to(logits.device))
        return SequenceClassifierOutput(
            loss=loss,
            logits=logits,
            hidden_states=outputs.hidden_states if output_hidden_states else None,
            attentions=outputs.attentions,
        )

    # --- saving -------------------------------------------------------------------------------------------------

    @property
    def is_stock_expressible(self) -> bool:
        """True when the stock *ForSequenceClassification computes exactly this head (the SUPERB recipe)."""
        config = self.config
        return (self.stock_class is not None and config.pooling == "mean" and not config.head_hidden_sizes
                and config.feature_layer in ("last", "weighted") and not config.pooled_norm
                and config.frame_normalisation == "none")

    @property
    def statistics_shape(self) -> tuple[int, ...]:
        """The shape of one speaker's statistics, after their (mean, std) axis: per mel bin (log-mel CNN), or per
        dimension of the chosen encoder layer, or of every layer (L, H) for a weighted sum."""
        if self.normalises_inputs:
            return (self.config.num_mel_bins,)
        layers = (self.config.num_hidden_layers + 1,) if self.config.feature_layer == "weighted" else ()
        return (*layers, self.config.hidden_size)

    @property
    def speaker_normalised(self) -> bool:
        """Whether forward expects one speaker's `normalisation_stats` (ser.core.statistics computes them)."""
        if self.normalises_inputs:
            return self.config.normalisation == "speaker"
        return self.config.frame_normalisation == "speaker"

    def to_stock(self):
        """The same weights as the family's stock *ForSequenceClassification (shares tensors, copies nothing)."""
        if not self.is_stock_expressible:
            raise ValueError("this head has options the stock class cannot express; save it with its code instead")
        fields = self.config.to_dict()
        for key in (*HEAD_FIELDS, "model_type", "architectures", "auto_map", "transformers_version"):
            fields.pop(key, None)
        fields["use_weighted_layer_sum"] = self.config.feature_layer == "weighted"
        stock_config = self.stock_class.config_class(**fields)
        with torch.device("meta"):
            stock = self.stock_class(stock_config)
        stock.load_state_dict(self.state_dict(), strict=True, assign=True)
        return stock.eval() if not self.training else stock

    def save_pretrained(self, save_directory, **kwargs):
        """Stock-expressible heads are saved as the stock class; others with this file and an `auto_map`."""
        if self.is_stock_expressible:
            return self.to_stock().save_pretrained(save_directory, **kwargs)
        return super().save_pretrained(save_directory, **kwargs)

    # --- building ----------------------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        loaded = super().from_pretrained(*args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded  # (model, info) with output_loading_info
        model.apply_freezing()  # loading swaps in new parameter tensors, which forgets requires_grad
        return loaded

    @classmethod
    def from_backbone(cls, name_or_path: str, labels: list[str], **head_options):
        """Wraps an existing encoder checkpoint (a Hub id or a local folder, through the same `from_pretrained`)
        in the emotion head; the head is newly initialised, the encoder weights are loaded."""
        label_fields = label_maps(labels)  # checked before any download
        backbone_config = AutoConfig.from_pretrained(name_or_path)
        expected = cls.family
        if backbone_config.model_type != expected:
            raise ValueError(
                f"{name_or_path} is a {backbone_config.model_type!r} encoder; {cls.__name__} needs {expected!r} "
                "(use modeling_ser.from_backbone to pick the class automatically)"
            )
        fields = backbone_config.to_dict()
        for key in ("model_type", "architectures", "auto_map", "transformers_version", "id2label", "label2id"):
            fields.pop(key, None)
        if head_options.get("feature_layer", "last") != "last":
            fields["layerdrop"] = 0.0  # see check_head_options; an explicit layerdrop in head_options still wins
        fields.update(head_options)
        fields.update(label_fields)
        config = cls.config_class(**fields)
        # The head is new, so its weights are missing by design: the loader's report of them is silenced, and any
        # other missing weight (the encoder's) is an error, not a warning.
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        try:
            model, info = cls.from_pretrained(name_or_path, config=config, output_loading_info=True)
        finally:
            hf_logging.set_verbosity(verbosity)
        encoder = next(name for name, module in model.named_children() if module is model.base_model)
        encoder_missing = sorted(key for key in info["missing_keys"] if key.startswith(encoder + "."))
        if encoder_missing:
            raise ValueError(f"{name_or_path} lacks encoder weights {encoder_missing[:5]}: not a {expected} checkpoint")
        model.cut_to_feature_layer()
        return model

    def cut_to_feature_layer(self) -> None:
        """Drops the encoder layers above the one the head reads; a family whose encoder can be cut overrides it."""


class Wav2Vec2ForEmotion(EmotionModelMixin, Wav2Vec2PreTrainedModel):
    config_class = Wav2Vec2EmotionConfig
    stock_class = Wav2Vec2ForSequenceClassification
    family = "wav2vec2"

    def __init__(self, config: Wav2Vec2EmotionConfig):
        super().__init__(config)
        self.wav2vec2 = Wav2Vec2Model(config)
        self._build_head(config)
        self.post_init()
        self.apply_freezing()


class HubertForEmotion(EmotionModelMixin, HubertPreTrainedModel):
    config_class = HubertEmotionConfig
    stock_class = HubertForSequenceClassification
    family = "hubert"

    def __init__(self, config: HubertEmotionConfig):
        super().__init__(config)
        self.hubert = HubertModel(config)
        self._build_head(config)
        self.post_init()
        self.apply_freezing()


class WavLMForEmotion(EmotionModelMixin, WavLMPreTrainedModel):
    config_class = WavLMEmotionConfig
    stock_class = WavLMForSequenceClassification
    family = "wavlm"

    def __init__(self, config: WavLMEmotionConfig):
        super().__init__(config)
        self.wavlm = WavLMModel(config)
        self._build_head(config)
        self.post_init()
        self.apply_freezing()


class Wav2Vec2BertForEmotion(EmotionModelMixin, Wav2Vec2BertPreTrainedModel):
    config_class = Wav2Vec2BertEmotionConfig
    stock_class = Wav2Vec2BertForSequenceClassification
    family = "wav2vec2-bert"
    main_input_name = "input_features"

    def __init__(self, config: Wav2Vec2BertEmotionConfig):
        super().__init__(config)
        self.wav2vec2_bert = Wav2Vec2BertModel(config)
        self._build_head(config)
        self.post_init()
        self.apply_freezing()


# --- Whisper: the encoder at the input's own length --------------------------------------------------------------


@dataclass
class WhisperEmotionEncoderOutput(BaseModelOutput):
    """`frame_mask` (B, T): encoder frames that hold the clip (not padding)."""

    frame_mask: torch.BoolTensor | None = None


class WhisperEmotionEncoder(WhisperEncoder):
    """Whisper's encoder (the same parameters) at the input's own length, exact under padding.

    The stock encoder takes exactly `2 * max_source_positions` mel frames (30 s) and attends to all of them. Here T
    mel frames use the first ceil(T / 2) positions (the sinusoids are a fixed table, so a prefix of it is what a clip
    of that length gets at the start of a 30 s window, without the padding after it). For a padded batch,
    `attention_mask` marks the real mel frames: padded frames are zeroed before each convolution (where the clip
    alone sees the convolution's zero padding) and left out of self-attention as keys, so every real frame equals
    the clip's own. Without a mask, padding would change every frame through attention.
    """

    def __init__(self, config):
        super().__init__(config)
        if config.cut_from_layers:  # the last layer kept is read as it is, not through the full encoder's final norm
            self.layer_norm = nn.Identity()

    def frame_lengths(self, mel_lengths: torch.Tensor) -> torch.Tensor:
        """Encoder frames for a number of mel frames: conv2 has kernel 3, stride 2, padding 1."""
        return (mel_lengths - 1) // 2 + 1

    def forward(self, input_features: torch.Tensor, attention_mask: torch.Tensor | None = None,
                output_hidden_states: bool | None = None, output_attentions: bool | None = None,
                **kwargs) -> WhisperEmotionEncoderOutput:
        """input_features (B, F, T) log-mels; attention_mask (B, T), 1 for real mel frames."""
        mel_mask = None if attention_mask is None else attention_mask.bool()
        frames = self.frame_lengths(input_features.shape[-1])
        if frames > self.max_source_positions:
            raise ValueError(f"{input_features.shape[-1]} mel frames need {frames} positions; this Whisper encoder has "
                             f"{self.max_source_positions} (30 s of audio at Whisper's 10 ms hop)")
        hidden_states = input_features
        for conv in (self.conv1, self.conv2):
            if mel_mask is not None:
                hidden_states = hidden_states * mel_mask.unsqueeze(1).to(hidden_states.dtype)
            hidden_states = nn.functional.gelu(conv(hidden_states))
        positions = torch.arange(hidden_states.shape[-1], device=hidden_states.device)
        lengths = self.frame_lengths(mel_mask.sum(-1)) if mel_mask is not None else positions.new_full(
            hidden_states.shape[:1], hidden_states.shape[-1])
        frame_mask = positions < lengths.unsqueeze(1)  # (B, T') real encoder frames
        hidden_states = hidden_states.transpose(1, 2) + self.embed_positions.weight[: hidden_states.shape[-1]]
        hidden_states = nn.functional.dropout(hidden_states, p=self.dropout, training=self.training)
        attention = create_bidirectional_mask(config=self.config, inputs_embeds=hidden_states,
                                              attention_mask=None if mel_mask is None else frame_mask)
        all_states = [hidden_states]
        for layer in self.layers:
            if self.training and self.layerdrop > 0 and torch.rand([]) < self.layerdrop:
                all_states.append(hidden_states)  # never with a layer-wise head: check_head_options refuses it
                continue
            hidden_states = layer(hidden_states, attention)
            all_states.append(hidden_states)
        hidden_states = self.layer_norm(hidden_states)
        all_states[-1] = hidden_states  # as the stock encoder: the last entry is the normed output
        return WhisperEmotionEncoderOutput(last_hidden_state=hidden_states,
                                           hidden_states=tuple(all_states) if output_hidden_states else None,
                                           frame_mask=frame_mask)


class WhisperForEmotion(EmotionModelMixin, WhisperPreTrainedModel):
    """The shared head on a Whisper encoder, at each clip's own length (`WhisperEmotionEncoder`), fed by
    `WhisperEmotionFeatureExtractor` (no 30 s padding; a mask of real frames).

    No stock class: `WhisperForAudioClassification` pads every clip to 30 s and averages the padding into its pooled
    features, so it computes this head (mean pooling, linear classifier) only for clips of exactly 30 s. Every head
    is therefore saved with this file (`trust_remote_code=True` in the stock pipeline). Parameter names are the
    stock class's (`encoder.*`, `projector`, `classifier`), so its weights load either way.
    """

    config_class = WhisperEmotionConfig
    stock_class = None
    family = "whisper"
    main_input_name = "input_features"
    # A WhisperModel / WhisperForConditionalGeneration checkpoint also holds the decoder: only encoder.* is used.
    _keys_to_ignore_on_load_unexpected = [r"decoder\.", r"proj_out\."]

    def __init__(self, config: WhisperEmotionConfig):
        super().__init__(config)
        self.encoder = WhisperEmotionEncoder(config)
        self._build_head(config)
        self.post_init()
        self.apply_freezing()

    @property
    def base_model(self) -> WhisperEmotionEncoder:
        # `base_model_prefix` stays Whisper's "model", which lets the loader strip the "model." of a
        # WhisperForConditionalGeneration checkpoint, as for the stock class; the backbone itself is `encoder`.
        return self.encoder

    def freeze_feature_encoder(self) -> None:
        """Stops gradients into the two convolutions before the transformer layers."""
        for param in (*self.encoder.conv1.parameters(), *self.encoder.conv2.parameters()):
            param.requires_grad = False

    def cut_to_feature_layer(self) -> None:
        """Keeps only the encoder layers up to the one the head reads (`feature_layer` k): the layers above it and
        the final layer norm change nothing the head sees, so the model is smaller and faster and its outputs are
        the same. The config records it (`encoder_layers` k, `cut_from_layers` the checkpoint's count)."""
        layer, kept = self.config.feature_layer, self.config.encoder_layers
        if not isinstance(layer, int) or layer >= kept or self.config.cut_from_layers:
            return
        self.encoder.layers = self.encoder.layers[:layer]
        self.encoder.layer_norm = nn.Identity()
        self.config.cut_from_layers, self.config.encoder_layers = kept, layer


@dataclass
class LogMelCnnOutput(BaseModelOutput):
    """`frame_mask` (B, T): output frames that hold real speech (not padding, not silence)."""

    frame_mask: torch.BoolTensor | None = None


class LogMelFrontend(nn.Module):
    """Raw samples (B, N) -> log-mel frames (B, T, F), the mask of real frames and the mask of speech frames.
    Frames lie wholly inside the clip (no centring), so the real frames of a padded clip equal the clip's own."""

    def __init__(self, config: LogMelCnnConfig):
        super().__init__()
        self.config = config
        self.n_fft, self.hop_length = config.n_fft, config.hop_length
        self.speech_threshold_db = config.speech_threshold_db
        # Computed from the config, never saved: (n_fft // 2 + 1, F) and (n_fft,)
        self.register_buffer("mel_filters", self.computed_buffers()[0], persistent=False)
        self.register_buffer("window", self.computed_buffers()[1], persistent=False)

    def computed_buffers(self) -> tuple[torch.Tensor, torch.Tensor]:
        config = self.config
        filters = mel_filter_bank(num_frequency_bins=config.n_fft // 2 + 1, num_mel_filters=config.num_mel_bins,
                                  min_frequency=config.f_min, max_frequency=config.f_max,
                                  sampling_rate=config.sampling_rate, norm="slaney", mel_scale="slaney")
        return torch.tensor(filters, dtype=torch.float32), torch.hann_window(config.n_fft)

    def num_frames(self, num_samples: torch.Tensor) -> torch.Tensor:
        return torch.div(num_samples - self.n_fft, self.hop_length, rounding_mode="floor").add(1).clamp(min=0)

    def forward(self, samples: torch.Tensor, attention_mask: torch.Tensor | None = None):
        if samples.shape[-1] < self.n_fft:
            samples = nn.functional.pad(samples, (0, self.n_fft - samples.shape[-1]))  # no real frame (mask below)
            attention_mask = attention_mask if attention_mask is not None else torch.zeros_like(samples)
        spectrum = torch.stft(samples, self.n_fft, self.hop_length, window=self.window, center=False,
                              return_complex=True)  # (B, n_fft // 2 + 1, T)
        mel = spectrum.abs().pow(2).transpose(1, 2) @ self.mel_filters  # (B, T, F) power
        num_samples = attention_mask.sum(-1) if attention_mask is not None else torch.full(
            (samples.shape[0],), samples.shape[-1], device=samples.device)
        real = torch.arange(mel.shape[1], device=mel.device) < self.num_frames(num_samples).unsqueeze(1)  # (B, T)
        speech = real
        if self.speech_threshold_db is not None:
            energy = torch.log(mel.sum(-1) + 1e-10)  # (B, T), natural log of power
            loudest = energy.masked_fill(~real, float("-inf")).amax(dim=1, keepdim=True)
            speech = real & (energy >= loudest - self.speech_threshold_db * math.log(10) / 10)
        return torch.log(mel + 1e-10), real, speech


def masked_statistics(log_mel: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-bin mean and std over the masked frames: (B, T, F), (B, T) -> (B, 2, F)."""
    weights = mask.unsqueeze(-1).to(log_mel.dtype)
    count = weights.sum(dim=1).clamp(min=1)
    mean = (log_mel * weights).sum(dim=1) / count
    variance = ((log_mel - mean.unsqueeze(1)) ** 2 * weights).sum(dim=1) / count
    return torch.stack([mean, (variance + 1e-4).sqrt()], dim=1)


def spec_augment(features: torch.Tensor, real: torch.Tensor, config: LogMelCnnConfig) -> torch.Tensor:
    """SpecAugment (Park et al. 2019) on normalised log-mels (B, T, F): time and frequency bands of random width
    up to the configured one, inside each clip's real frames, set to the mean (0)."""
    batch, frames, bins = features.shape
    masked = torch.zeros_like(features, dtype=torch.bool)
    lengths = real.sum(dim=1)
    bands = [(1, config.spec_augment_time_masks, config.spec_augment_time_width, lengths),
             (2, config.spec_augment_freq_masks, config.spec_augment_freq_width, torch.full_like(lengths, bins))]
    for axis, count, width, extent in bands:
        positions = torch.arange(features.shape[axis], device=features.device)
        for _ in range(count):
            size = (torch.rand(batch, device=features.device) * (width + 1)).long()
            start = (torch.rand(batch, device=features.device) * (extent - size + 1).clamp(min=1)).long()
            band = (positions >= start[:, None]) & (positions < (start + size)[:, None])  # (B, T or F)
            masked |= band.unsqueeze(3 - axis)
    return features.masked_fill(masked, 0.0)


class ConvBlock(nn.Module):
    """3x3 convolution, batch norm, ReLU, 2x2 max-pool over (time, frequency), dropout."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(out_channels)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, real: torch.Tensor, speech: torch.Tensor):
        """x (B, C, T, F); real and speech (B, T). Padded frames are zeroed first, so the convolution sees what it
        sees beyond the end of the clip alone; a pooled frame is real if both its frames are, speech if either is."""
        x = self.dropout(nn.functional.max_pool2d(torch.relu(self.norm(self.conv(x * real[:, None, :, None]))), 2))
        pairs = lambda mask: mask[:, : 2 * (mask.shape[1] // 2)].unflatten(1, (-1, 2))  # noqa: E731
        real = pairs(real).all(dim=-1)
        return x, real, real & pairs(speech).any(dim=-1)


class LogMelCnnPreTrainedModel(PreTrainedModel):
    config_class = LogMelCnnConfig
    base_model_prefix = "cnn"
    main_input_name = "input_values"

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, nn.Conv2d):
            init.kaiming_normal_(module.weight, nonlinearity="relu")  # ReLU follows every convolution
        if isinstance(module, LogMelCnnModel):
            init.copy_(module.global_stats, torch.stack([torch.zeros_like(module.global_stats[0]),
                                                         torch.ones_like(module.global_stats[1])]))
        if isinstance(module, LogMelFrontend):  # unsaved buffers: loading leaves them empty
            filters, window = module.computed_buffers()
            init.copy_(module.mel_filters, filters)
            init.copy_(module.window, window)


class LogMelCnnModel(LogMelCnnPreTrainedModel):
    """Raw samples -> log-mels -> speech-frame normalisation -> (SpecAugment) -> conv blocks -> frames (B, T', C)."""

    def __init__(self, config: LogMelCnnConfig):
        super().__init__(config)
        self.frontend = LogMelFrontend(config)
        # (2, F): mean and std per mel bin for "global" normalisation, set from the training clips and saved
        bins = config.num_mel_bins
        self.register_buffer("global_stats", torch.stack([torch.zeros(bins), torch.ones(bins)]))
        channels = [1, *config.conv_channels]
        self.blocks = nn.ModuleList(ConvBlock(i, o, config.conv_dropout) for i, o in zip(channels, channels[1:]))
        self.post_init()

    def normalised_log_mel(self, input_values, attention_mask=None, normalisation_stats=None):
        """Log-mels (B, T, F) z-normalised per bin, with the real and speech frame masks (B, T). Statistics: the
        saved ones ("global"), those passed (B, 2, F) ("speaker"), else each clip's own speech frames."""
        log_mel, real, speech = self.frontend(input_values, attention_mask)
        mode = self.config.normalisation
        if mode == "global":
            normalisation_stats = self.global_stats.unsqueeze(0)
        elif mode == "utterance" or normalisation_stats is None:
            normalisation_stats = masked_statistics(log_mel, speech)
        mean, std = normalisation_stats.to(log_mel.dtype).unbind(dim=1)
        return (log_mel - mean.unsqueeze(1)) / std.unsqueeze(1), real, speech

    def speech_statistics(self, clips: list[torch.Tensor]) -> torch.Tensor:
        """Mean and std per mel bin (2, F) over the speech frames of several clips of one speaker (1-D samples), for
        "speaker" normalisation."""
        frames = []
        with torch.no_grad():
            for clip in clips:
                log_mel, _, speech = self.frontend(clip.reshape(1, -1).float())
                frames.append(log_mel[speech])
        frames = torch.cat(frames)
        return masked_statistics(frames.unsqueeze(0), torch.ones(1, len(frames), dtype=torch.bool))[0]

    def forward(self, input_values, attention_mask=None, normalisation_stats=None, output_hidden_states=None,
                output_attentions=None, **kwargs) -> LogMelCnnOutput:
        features, real, speech = self.normalised_log_mel(input_values, attention_mask, normalisation_stats)
        if self.config.mask_non_speech:
            features = features.masked_fill(~speech.unsqueeze(-1), 0.0)
        if self.training:
            features = spec_augment(features, real, self.config)
        x, hidden_states = features.unsqueeze(1), []  # (B, 1, T, F)
        for block in self.blocks:
            x, real, speech = block(x, real, speech)
            hidden_states.append(x.mean(dim=3).transpose(1, 2))  # (B, T_i, C_i): mean over frequency
        return LogMelCnnOutput(last_hidden_state=hidden_states[-1],
                               hidden_states=tuple(hidden_states) if output_hidden_states else None,
                               frame_mask=speech)


class LogMelCnnForEmotion(EmotionModelMixin, LogMelCnnPreTrainedModel):
    config_class = LogMelCnnEmotionConfig
    family = "logmel-cnn"
    normalises_inputs = True

    def __init__(self, config: LogMelCnnEmotionConfig):
        if config.feature_layer != "last":
            raise ValueError(f"feature_layer={config.feature_layer!r}: the logmel-cnn blocks differ in size, so "
                             "only 'last' is supported")
        super().__init__(config)
        self.cnn = LogMelCnnModel(config)
        self._build_head(config)
        self.post_init()
        self.apply_freezing()

    def freeze_feature_encoder(self) -> None:
        """Stops gradients into the first convolution block (the front end: local time-frequency patterns)."""
        for param in self.cnn.blocks[0].parameters():
            param.requires_grad = False

    @property
    def frontend(self) -> LogMelFrontend:
        """The log-mels and speech frames that speaker statistics are taken over (ser/core/statistics.py)."""
        return self.cnn.frontend

    def set_global_statistics(self, clips: list[torch.Tensor]) -> None:
        """`normalisation="global"`: the statistics of the speech in `clips` (the training clips' samples), saved
        with the weights."""
        self.cnn.global_stats.copy_(self.cnn.speech_statistics(clips))


EMOTION_CLASSES = {
    cls.family: cls
    for cls in (Wav2Vec2ForEmotion, HubertForEmotion, WavLMForEmotion, Wav2Vec2BertForEmotion, WhisperForEmotion,
                LogMelCnnForEmotion)
}

FEATURE_EXTRACTORS = {family: Wav2Vec2EmotionFeatureExtractor for family in EMOTION_CLASSES} | {
    "wav2vec2-bert": Wav2Vec2BertEmotionFeatureExtractor, "whisper": WhisperEmotionFeatureExtractor}


def from_backbone(name_or_path: str, labels: list[str], **head_options):
    """Picks the emotion class from the encoder's `model_type` ("wav2vec2", "hubert", "wavlm", "wav2vec2-bert",
    "whisper": any Whisper checkpoint, of which only the encoder is used)."""
    model_type = AutoConfig.from_pretrained(name_or_path).model_type
    if model_type not in EMOTION_CLASSES:
        raise ValueError(f"{name_or_path} is a {model_type!r} model; supported encoders: {sorted(EMOTION_CLASSES)}")
    return EMOTION_CLASSES[model_type].from_backbone(name_or_path, labels, **head_options)


def register_auto_classes() -> None:
    """Lets `AutoConfig` / `AutoModelForAudioClassification` / `AutoFeatureExtractor` load our saved models inside
    this process (a feature extractor of ours is found by its class name once registered for one config)."""
    for cls in EMOTION_CLASSES.values():
        AutoConfig.register(cls.config_class.model_type, cls.config_class, exist_ok=True)
        AutoModelForAudioClassification.register(cls.config_class, cls, exist_ok=True)
        AutoFeatureExtractor.register(cls.config_class, FEATURE_EXTRACTORS[cls.family], exist_ok=True)


# Saving writes `auto_map` and copies this file beside the weights, for `trust_remote_code=True` loading.
for _cls in EMOTION_CLASSES.values():
    _cls.config_class.register_for_auto_class()
    _cls.register_for_auto_class("AutoModelForAudioClassification")
