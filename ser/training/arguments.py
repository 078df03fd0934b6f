"""train_ser.py's options: one dataclass per owner (data, model, export; augmentation in ser.data.augment and the
Trainer's own `TrainingArguments`), read from a corpus YAML, its included recipe, then the command line."""

from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path

import torch
import yaml
from transformers import HfArgumentParser, TrainingArguments

import modeling_ser
import speech_ser as speech
from ser.data import corpora
from ser.data import splits
from ser.core.audio import LEVEL_DBFS
from ser.data.augment import AugmentationArguments


@dataclass
class DataArguments:
    corpus: list[str] | None = field(default=None, metadata={"help": f"{', '.join(corpora.CORPORA)}, folder (one folder per label) or csv; several names train on their mixture"})
    data_root: list[str] | None = field(default=None, metadata={"help": "The corpus folder in its original layout, or the CSV file; one per --corpus, in the same order (for named corpora optional: they are found under --data_dir)"})
    data_dir: str | None = field(default=None, metadata={"help": f"The folder holding the named corpora, one folder per name (emodb/, ravdess/, ...); default ${corpora.DATA_ENV}, else ../shared/data beside the repository"})
    dataset_name: str | None = field(default=None, metadata={"help": "Instead of --corpus: any audio dataset, a Hub id or a local folder (saved with datasets' save_to_disk, or an audiofolder: audio files with a metadata.csv of file_name, label and speaker, or one folder per label); all its splits are used"})
    dataset_config_name: str | None = field(default=None, metadata={"help": "--dataset_name: the dataset's configuration"})
    audio_column_name: str = field(default="audio", metadata={"help": "--dataset_name: the column holding the audio"})
    label_column_name: str = field(default="label", metadata={"help": "--dataset_name: the column holding the emotion"})
    speaker_column_name: str | None = field(default=None, metadata={"help": "--dataset_name: the column holding the speaker (an audiofolder's metadata: 'speaker' unless given); without one (or --speaker_regex), only --protocol random works, and the results say so"})
    label_mapping: list[str] | None = field(default=None, metadata={"help": "--dataset_name: the dataset's labels onto ours, e.g. hap=happy ang=angry (known spellings map by themselves)"})
    speaker_regex: str | None = field(default=None, metadata={"help": "--corpus folder or --dataset_name: regex finding the speaker in each file name (group 'speaker' or 1); without it only --protocol random works"})
    language: str | None = field(default=None, metadata={"help": "Language code of the speech (known for the named corpora)"})
    labels: list[str] | None = field(default=None, metadata={"help": "Keep only these emotions, e.g. angry happy neutral sad (a mixture: default the emotions every corpus has)"})
    protocol: str = field(default="loso", metadata={"help": f"{' | '.join(splits.PROTOCOLS)} (loco: leave one corpus out; random: speaker-dependent, labelled so)", "choices": splits.PROTOCOLS})
    num_folds: int | None = field(default=None, metadata={"help": "k for speaker_kfold and random"})
    fold_seed: int | None = field(default=None, metadata={"help": "Shuffle speakers (speaker_kfold) or clips (random) with this seed; unset: speakers in sorted order (EmoBox RAVDESS: actors 1-4, 5-8, ...)"})
    split_file: str | None = field(default=None, metadata={"help": "Train/test assignment for --protocol fixed"})
    only_folds: list[str] | None = field(default=None, metadata={"help": "Run only these folds (by name), e.g. for a quick check"})
    normalisation_group: str = field(default="speaker", metadata={"help": "With --normalisation speaker: whose unlabelled audio the statistics come from", "choices": ("speaker", "corpus")})
    trim_silence: bool = field(default=True, metadata={"help": "Cut each clip to its speech (speech_ser.py) before anything else, as the predictor does; recorded in the saved model"})
    level_normalisation: bool = field(default=True, metadata={"help": f"Scale each clip (after --trim_silence) to an RMS of {LEVEL_DBFS:g} dBFS, as the predictor does; recorded in the saved model"})
    speech_detector: str = field(default=speech.DEFAULT.name, metadata={"help": f"What finds the speech for --trim_silence: {' | '.join(speech.DETECTORS)}; recorded in the saved model", "choices": speech.DETECTORS})
    crop_seconds: float = field(default=3.0, metadata={"help": "Random crop length for training; evaluation uses whole clips"})
    skip_bad_files: bool = field(default=False, metadata={"help": "Leave out (and report) unreadable files instead of stopping"})


HEAD = modeling_ser.EmotionHeadFields  # the head's defaults


@dataclass
class ModelArguments:
    encoder_name_or_path: str | None = field(default=None, metadata={"help": "Pretrained encoder: Hub id or local folder"})
    encoder_config: str | None = field(default=None, metadata={"help": "Encoder spec JSON to train from scratch (configs/encoders/)"})
    mode: str = field(default="full", metadata={"help": "full (fine-tune) | frozen (cached encoder features, head only)", "choices": ("full", "frozen")})
    # The head's options: their defaults are the config class's (modeling_ser.EmotionHeadFields)
    pooling: str = field(default=HEAD.pooling, metadata={"help": " | ".join(modeling_ser.POOLINGS), "choices": modeling_ser.POOLINGS})
    feature_layer: str = field(default=str(HEAD.feature_layer), metadata={"help": "last | weighted | a layer index"})
    classifier_proj_size: int | None = field(default=None, metadata={"help": "Projector size (default: the config's)"})
    head_hidden_sizes: list[int] = field(default_factory=lambda: list(HEAD.head_hidden_sizes), metadata={"help": "Hidden layers of the head"})
    head_dropout: float = field(default=HEAD.head_dropout, metadata={"help": "Dropout in the head"})
    pooled_norm: bool = field(default=HEAD.pooled_norm, metadata={"help": "Standardise the pooled vector (batch norm without learned scale) before the classifier"})
    freeze_feature_encoder: bool = field(default=HEAD.freeze_feature_encoder, metadata={"help": "Keep the convolutional front end fixed"})
    class_balanced_loss: bool = field(default=True, metadata={"help": "Weight the loss by inverse class frequency"})
    corpus_balanced: bool = field(default=False, metadata={"help": "A mixture: every corpus contributes as many training draws per epoch as the largest (smaller corpora repeated)"})
    normalisation: str | None = field(default=None, metadata={"help": "Z-normalise per dimension: " + "; ".join(f"{name} ({meaning})" for name, meaning in modeling_ser.NORMALISATIONS.items()) + ". What is normalised: the log-mel CNN's log-mels, a --mode frozen head's encoder frames (in --mode full only speaker works, for results). Unset: the family's default (logmel-cnn global, others none)", "choices": tuple(modeling_ser.NORMALISATIONS)})
    feature_cache_dir: str | None = field(default=None, metadata={"help": "--mode frozen: where encoder features are cached (default <output_dir>/feature-cache); runs sharing it extract each clip's features once"})
    save_fold_models: bool = field(default=False, metadata={"help": "Keep each fold's trained model in <fold>/model (for benchmarks on held-out speakers)"})
    train_final_model: bool = field(default=True, metadata={"help": "After the folds, train once on all clips and save it to <output_dir>/final"})
    seeds: list[int] | None = field(default=None, metadata={"help": "Run the whole protocol once per seed (initial weights, crops, augmentation), e.g. 0 1 2; results report the mean ± std over seeds. Default: --seed alone. The final model uses the first."})

    @property
    def speaker_normalisation(self) -> bool:
        return self.normalisation == "speaker"

    def head_options(self) -> dict:
        layer = int(self.feature_layer) if self.feature_layer.isdigit() else self.feature_layer
        options = dict(pooling=self.pooling, feature_layer=layer, head_hidden_sizes=self.head_hidden_sizes,
                       head_dropout=self.head_dropout, freeze_feature_encoder=self.freeze_feature_encoder,
                       freeze_backbone=self.mode == "frozen", pooled_norm=self.pooled_norm)
        if self.classifier_proj_size:
            options["classifier_proj_size"] = self.classifier_proj_size
        return options


@dataclass
class ExportArguments:
    export_dir: str | None = field(default=None, metadata={"help": "Write the Hub model repo (weights, config, card, results) here"})
    export_dataset_dir: str | None = field(default=None, metadata={"help": "Instead of training: write the clips as a datasets folder, one split per fold of --protocol, with a dataset card (ser/data/dataset_export.py)"})


def parse_arguments(argv: list[str]):
    """YAML values first, then the command line, so any option can be overridden there. `--recipe FILE` replaces
    the recipe a corpus config includes (e.g. configs/recipes/logmel-cnn.yaml, the from-scratch CNN)."""
    parser = HfArgumentParser((DataArguments, ModelArguments, AugmentationArguments, TrainingArguments, ExportArguments))
    recipe = None
    if "--recipe" in argv:
        at = argv.index("--recipe")
        recipe, argv = argv[at + 1], argv[:at] + argv[at + 2 :]
    if "--config" in argv:
        at = argv.index("--config")
        argv = yaml_to_argv(argv[at + 1], recipe) + argv[:at] + argv[at + 2 :]
    elif recipe:
        argv = yaml_to_argv(recipe) + argv
    if not torch.cuda.is_available() and "--use_cpu" not in argv:
        argv = argv + ["--use_cpu", "true"]  # without it, the Trainer ignores a 2-process CPU launch's process group
    data_args, model_args, augment_args, training_args, export_args = parser.parse_args_into_dataclasses(args=argv)
    if training_args.push_to_hub and not (training_args.hub_model_id and export_args.export_dir):
        parser.error("--push_to_hub needs --hub_model_id org/name and --export_dir (the folder that is uploaded)")
    if (data_args.corpus is None) == (data_args.dataset_name is None):
        parser.error("give exactly one of --corpus (with --data_root) and --dataset_name")
    if data_args.corpus and not data_args.data_root and not all(map(corpora.corpus_info, data_args.corpus)):
        parser.error("--corpus folder or csv needs --data_root (one per corpus); only named corpora are found under "
                     "--data_dir")
    if data_args.data_root and data_args.corpus and len(data_args.data_root) != len(data_args.corpus):
        parser.error(f"{len(data_args.corpus)} corpora but {len(data_args.data_root)} --data_root: give one per "
                     "corpus, in the same order, or none for named corpora (found under --data_dir)")
    if (model_args.encoder_name_or_path is None) == (model_args.encoder_config is None):
        parser.error("give exactly one of --encoder_name_or_path (pretrained) and --encoder_config (from scratch)")
    return data_args, model_args, augment_args, training_args, export_args


def yaml_to_argv(path: str, recipe: str | None = None) -> list[str]:
    """A YAML config as command-line options. `include: other.yaml` (relative to the including file), or `recipe`
    in its place, comes first, so the including file's own keys win, as the command line wins over both."""
    config = yaml.safe_load(Path(path).read_text()) or {}
    argv = []
    included = config.pop("include", None)
    if recipe or included:
        argv += yaml_to_argv(recipe or str(Path(path).parent / included))
    for key, value in config.items():
        values = value if isinstance(value, list) else [value]
        argv += [f"--{key}", *(str(v) for v in values)]
    return argv


RESOLVED_CONFIG = "run_config.yaml"  # in the run's output folder


def write_resolved(output_dir: str | Path, *groups) -> Path:
    """Every option of the run that differs from its default, as the YAML files and the command line resolved it:
    `train_ser.py --config <output_dir>/run_config.yaml` repeats the run (tokens are never written)."""
    values = {}
    for group in groups:
        for option in fields(group):
            default = option.default_factory() if option.default_factory is not MISSING else option.default
            value = getattr(group, option.name)
            if not option.init or value in (default, []) or option.name.endswith("token"):  # []: report_to none
                continue
            value = [getattr(v, "value", v) for v in value] if isinstance(value, (list, tuple)) else value
            value = getattr(value, "value", value)  # an enum (lr_scheduler_type) as its name
            if all(isinstance(v, (str, int, float)) for v in (value if isinstance(value, list) else [value])):
                values[option.name] = value  # not objects TrainingArguments derives (accelerator_config)
    path = Path(output_dir) / RESOLVED_CONFIG
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# This run's options, resolved from its YAML files and command line (the rest are the defaults)\n"
                    + yaml.safe_dump(values, sort_keys=False), encoding="utf-8")
    return path
