"""Speech emotion recognition: a self-supervised speech encoder with one shared classification head.

The same head sits on four encoder families (wav2vec 2.0, HuBERT, WavLM, w2v-BERT 2.0):

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

This file is uploaded next to every published model: it imports torch and transformers only.
"""

from dataclasses import dataclass

import torch
from huggingface_hub.dataclasses import strict
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForAudioClassification,
    HubertConfig,
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
)
from transformers import initialization as init
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.models.hubert.modeling_hubert import HubertPreTrainedModel
from transformers.models.wav2vec2.modeling_wav2vec2 import Wav2Vec2PreTrainedModel
from transformers.models.wav2vec2_bert.modeling_wav2vec2_bert import Wav2Vec2BertPreTrainedModel
from transformers.models.wavlm.modeling_wavlm import WavLMPreTrainedModel

POOLINGS = ("mean", "stats", "attentive")
HEAD_FIELDS = ("pooling", "feature_layer", "head_hidden_sizes", "head_dropout", "freeze_feature_encoder", "freeze_backbone")


@dataclass(repr=False)
class EmotionHeadFields:
    """Head options shared by every encoder family (`classifier_proj_size` comes from the encoder config)."""

    pooling: str = "mean"  # "mean" | "stats" (mean and std) | "attentive"
    feature_layer: str | int = "last"  # "last" | "weighted" (learned softmax over all layers) | a layer index
    head_hidden_sizes: list[int] | tuple[int, ...] = ()
    head_dropout: float | int = 0.1
    freeze_feature_encoder: bool = False
    freeze_backbone: bool = False


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

    stock_class: type = None  # the stock *ForSequenceClassification of the family

    def _build_head(self, config) -> None:
        check_head_options(config)
        if config.feature_layer == "weighted":
            num_layers = config.num_hidden_layers + 1  # transformer layers + encoder input
            self.layer_weights = nn.Parameter(torch.ones(num_layers) / num_layers)
        self.projector = HeadLinear(config.hidden_size, config.classifier_proj_size)
        self.pooling = MaskedPooling(config.pooling, config.classifier_proj_size)
        layers, size = [nn.Dropout(config.head_dropout)], config.classifier_proj_size * self.pooling.output_multiplier
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

    def select_frames(self, outputs) -> torch.Tensor:
        """Frames (B, T, H) of the configured encoder layer(s)."""
        layer = self.config.feature_layer
        if layer == "last":
            return outputs.last_hidden_state
        if layer == "weighted":
            return self.mix_layers(torch.stack(outputs.hidden_states, dim=1))
        return outputs.hidden_states[layer]

    def mix_layers(self, stacked: torch.Tensor) -> torch.Tensor:
        """Learned softmax-weighted sum of all layers: (B, L, T, H) -> (B, T, H)."""
        weights = torch.softmax(self.layer_weights, dim=-1)
        return (stacked * weights.view(-1, 1, 1)).sum(dim=1)

    def classify(self, frames: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        """The head alone: encoder frames (B, T, H) and their mask (B, T) -> logits (B, num_labels). Training on
        cached encoder features calls this directly."""
        frames = self.projector(frames)  # (B, T, P)
        return self.classifier(self.head(self.pooling(frames, frame_mask)))

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
        **kwargs,
    ) -> SequenceClassifierOutput:
        """`input_values` are raw samples (wav2vec 2.0, HuBERT, WavLM); `input_features` are the log-mel
        filterbanks of w2v-BERT 2.0. Either name is accepted for either family, as the pipeline passes what the
        feature extractor produced."""
        inputs = input_values if input_values is not None else input_features
        if inputs is None:
            raise ValueError("pass input_values (raw audio) or input_features (filterbanks)")
        outputs = self.base_model(
            inputs,
            attention_mask=attention_mask,
            output_hidden_states=bool(output_hidden_states) or self.config.feature_layer != "last",
            output_attentions=output_attentions,
        )
        frames = self.select_frames(outputs)  # (B, T, H)
        logits = self.classify(frames, self.frame_mask(frames, attention_mask))
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
        return config.pooling == "mean" and not config.head_hidden_sizes and config.feature_layer in ("last", "weighted")

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
        model = super().from_pretrained(*args, **kwargs)
        model.apply_freezing()  # loading swaps in new parameter tensors, which forgets requires_grad
        return model

    @classmethod
    def from_backbone(cls, name_or_path: str, labels: list[str], **head_options):
        """Wraps an existing encoder checkpoint (a Hub id or a local folder, through the same `from_pretrained`)
        in the emotion head; the head is newly initialised, the encoder weights are loaded."""
        label_fields = label_maps(labels)  # checked before any download
        backbone_config = AutoConfig.from_pretrained(name_or_path)
        expected = cls.stock_class.config_class.model_type
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
        return cls.from_pretrained(name_or_path, config=config)


class Wav2Vec2ForEmotion(EmotionModelMixin, Wav2Vec2PreTrainedModel):
    config_class = Wav2Vec2EmotionConfig
    stock_class = Wav2Vec2ForSequenceClassification

    def __init__(self, config: Wav2Vec2EmotionConfig):
        super().__init__(config)
        self.wav2vec2 = Wav2Vec2Model(config)
        self._build_head(config)
        self.post_init()
        self.apply_freezing()


class HubertForEmotion(EmotionModelMixin, HubertPreTrainedModel):
    config_class = HubertEmotionConfig
    stock_class = HubertForSequenceClassification

    def __init__(self, config: HubertEmotionConfig):
        super().__init__(config)
        self.hubert = HubertModel(config)
        self._build_head(config)
        self.post_init()
        self.apply_freezing()


class WavLMForEmotion(EmotionModelMixin, WavLMPreTrainedModel):
    config_class = WavLMEmotionConfig
    stock_class = WavLMForSequenceClassification

    def __init__(self, config: WavLMEmotionConfig):
        super().__init__(config)
        self.wavlm = WavLMModel(config)
        self._build_head(config)
        self.post_init()
        self.apply_freezing()


class Wav2Vec2BertForEmotion(EmotionModelMixin, Wav2Vec2BertPreTrainedModel):
    config_class = Wav2Vec2BertEmotionConfig
    stock_class = Wav2Vec2BertForSequenceClassification
    main_input_name = "input_features"

    def __init__(self, config: Wav2Vec2BertEmotionConfig):
        super().__init__(config)
        self.wav2vec2_bert = Wav2Vec2BertModel(config)
        self._build_head(config)
        self.post_init()
        self.apply_freezing()


EMOTION_CLASSES = {
    cls.stock_class.config_class.model_type: cls
    for cls in (Wav2Vec2ForEmotion, HubertForEmotion, WavLMForEmotion, Wav2Vec2BertForEmotion)
}


def from_backbone(name_or_path: str, labels: list[str], **head_options):
    """Picks the emotion class from the encoder's `model_type` ("wav2vec2", "hubert", "wavlm", "wav2vec2-bert")."""
    model_type = AutoConfig.from_pretrained(name_or_path).model_type
    if model_type not in EMOTION_CLASSES:
        raise ValueError(f"{name_or_path} is a {model_type!r} model; supported encoders: {sorted(EMOTION_CLASSES)}")
    return EMOTION_CLASSES[model_type].from_backbone(name_or_path, labels, **head_options)


def register_auto_classes() -> None:
    """Lets `AutoConfig` / `AutoModelForAudioClassification` load our saved models inside this process."""
    for cls in EMOTION_CLASSES.values():
        AutoConfig.register(cls.config_class.model_type, cls.config_class, exist_ok=True)
        AutoModelForAudioClassification.register(cls.config_class, cls, exist_ok=True)


# Saving writes `auto_map` and copies this file beside the weights, for `trust_remote_code=True` loading.
for _cls in EMOTION_CLASSES.values():
    _cls.config_class.register_for_auto_class()
    _cls.register_for_auto_class("AutoModelForAudioClassification")
