"""Trains and evaluates a speech-emotion model per corpus, fold by fold, with the Hugging Face Trainer.

    python train_ser.py --config configs/emodb.yaml [--any_option value ...]
    python train_ser.py --config configs/emodb.yaml --recipe configs/recipes/logmel-cnn.yaml   # from scratch
    accelerate launch --num_processes 2 train_ser.py --config configs/emodb.yaml

Options come from the YAML file, then the command line (which wins). Evaluation is speaker-independent by default
(leave-one-speaker-out); `--protocol random` is labelled "random (speaker-dependent)" in every output. Each fold
trains from the same initial weights, is evaluated on whole clips, and writes its result before the next starts,
so a killed run resumes at its last checkpoint. Results: `<output_dir>/results.json` and a confusion-matrix PNG.
"""

import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import yaml
from tqdm.auto import tqdm
from transformers import HfArgumentParser, Trainer, TrainingArguments, set_seed

import modeling_ser
from ser import corpora, data, dataset, speech, splits
from ser import results as ser_results
from ser.audio import LEVEL_DBFS, normalise_level
from ser.augment import AugmentationArguments, WaveformAugmenter, perturbed_copies
from ser.calibration import calibrate
from ser.encoders import load_spec, pretrained_model, scratch_model
from ser.dataset_export import export_dataset
from ser.export import export_run, push_folder
from ser.frozen import FeatureCache, FrozenEncoderHead
from ser.metrics import classification_metrics, compute_metrics_fn, plot_confusion
from ser.statistics import cached_frame_statistics


@dataclass
class DataArguments:
    corpus: list[str] | None = field(default=None, metadata={"help": f"{', '.join(corpora.CORPORA)}, folder (one folder per label) or csv; several names train on their mixture"})
    data_root: list[str] | None = field(default=None, metadata={"help": "The corpus folder in its original layout, or the CSV file; one per --corpus, in the same order"})
    dataset_name: str | None = field(default=None, metadata={"help": "Instead of --corpus: any audio dataset, a Hub id or a local folder (saved with datasets' save_to_disk, or an audiofolder); all its splits are used"})
    dataset_config_name: str | None = field(default=None, metadata={"help": "--dataset_name: the dataset's configuration"})
    audio_column_name: str = field(default="audio", metadata={"help": "--dataset_name: the column holding the audio"})
    label_column_name: str = field(default="label", metadata={"help": "--dataset_name: the column holding the emotion"})
    speaker_column_name: str | None = field(default=None, metadata={"help": "--dataset_name: the column holding the speaker; without it (or --speaker_regex), only --protocol random works, and the results say so"})
    label_mapping: list[str] | None = field(default=None, metadata={"help": "--dataset_name: the dataset's labels onto ours, e.g. hap=happy ang=angry (known spellings map by themselves)"})
    speaker_regex: str | None = field(default=None, metadata={"help": "--corpus folder or --dataset_name: regex finding the speaker in each file name (group 'speaker' or 1); without it only --protocol random works"})
    language: str | None = field(default=None, metadata={"help": "Language code of the speech (known for the named corpora)"})
    labels: list[str] | None = field(default=None, metadata={"help": "Keep only these emotions, e.g. angry happy neutral sad (a mixture: default the emotions every corpus has)"})
    protocol: str = field(default="loso", metadata={"help": "loso | speaker_kfold | loco (leave one corpus out) | fixed | random (speaker-dependent)"})
    num_folds: int | None = field(default=None, metadata={"help": "k for speaker_kfold and random"})
    fold_seed: int | None = field(default=None, metadata={"help": "Shuffle speakers (speaker_kfold) or clips (random) with this seed; unset: speakers in sorted order (EmoBox RAVDESS: actors 1-4, 5-8, ...)"})
    split_file: str | None = field(default=None, metadata={"help": "Train/test assignment for --protocol fixed"})
    only_folds: list[str] | None = field(default=None, metadata={"help": "Run only these folds (by name), e.g. for a quick check"})
    speaker_normalisation: bool = field(default=False, metadata={"help": "Z-normalise features per speaker with that speaker's unlabelled audio"})
    normalisation_group: str = field(default="speaker", metadata={"help": "With --speaker_normalisation: whose audio the statistics come from: speaker | corpus"})
    trim_silence: bool = field(default=True, metadata={"help": "Cut each clip to its speech (ser.speech) before anything else, as the predictor does; recorded in the saved model"})
    level_normalisation: bool = field(default=True, metadata={"help": f"Scale each clip (after --trim_silence) to an RMS of {LEVEL_DBFS:g} dBFS, as the predictor does; recorded in the saved model"})
    speech_detector: str = field(default=speech.DEFAULT.name, metadata={"help": f"What finds the speech for --trim_silence: {' | '.join(speech.DETECTORS)}; recorded in the saved model", "choices": speech.DETECTORS})
    crop_seconds: float = field(default=3.0, metadata={"help": "Random crop length for training; evaluation uses whole clips"})
    skip_bad_files: bool = field(default=False, metadata={"help": "Leave out (and report) unreadable files instead of stopping"})


@dataclass
class ModelArguments:
    encoder_name_or_path: str | None = field(default=None, metadata={"help": "Pretrained encoder: Hub id or local folder"})
    encoder_config: str | None = field(default=None, metadata={"help": "Encoder spec JSON to train from scratch (configs/encoders/)"})
    mode: str = field(default="full", metadata={"help": "full (fine-tune) | frozen (cached encoder features, head only)"})
    pooling: str = field(default="mean", metadata={"help": "mean | stats | attentive"})
    feature_layer: str = field(default="last", metadata={"help": "last | weighted | a layer index"})
    classifier_proj_size: int | None = field(default=None, metadata={"help": "Projector size (default: the config's)"})
    head_hidden_sizes: list[int] = field(default_factory=list, metadata={"help": "Hidden layers of the head"})
    head_dropout: float = field(default=0.1, metadata={"help": "Dropout in the head"})
    frame_normalisation: str = field(default="none", metadata={"help": f"--mode frozen: z-normalise the encoder frames before the head: {' | '.join(modeling_ser.FRAME_NORMALISATIONS)} (--speaker_normalisation true means speaker)"})
    pooled_norm: bool = field(default=False, metadata={"help": "Standardise the pooled vector (batch norm without learned scale) before the classifier"})
    freeze_feature_encoder: bool = field(default=False, metadata={"help": "Keep the convolutional front end fixed"})
    class_balanced_loss: bool = field(default=True, metadata={"help": "Weight the loss by inverse class frequency"})
    corpus_balanced: bool = field(default=False, metadata={"help": "A mixture: every corpus contributes as many training draws per epoch as the largest (smaller corpora repeated)"})
    normalisation: str | None = field(default=None, metadata={"help": "logmel-cnn: global (training-set statistics) | utterance (each clip's own); --speaker_normalisation true means speaker"})
    feature_cache_dir: str | None = field(default=None, metadata={"help": "--mode frozen: where encoder features are cached (default <output_dir>/feature-cache); runs sharing it extract each clip's features once"})
    save_fold_models: bool = field(default=False, metadata={"help": "Keep each fold's trained model in <fold>/model (for benchmarks on held-out speakers)"})
    train_final_model: bool = field(default=True, metadata={"help": "After the folds, train once on all clips and save it to <output_dir>/final"})
    seeds: list[int] | None = field(default=None, metadata={"help": "Run the whole protocol once per seed (initial weights, crops, augmentation), e.g. 0 1 2; results report the mean ± std over seeds. Default: --seed alone. The final model uses the first."})

    def head_options(self) -> dict:
        layer = int(self.feature_layer) if self.feature_layer.isdigit() else self.feature_layer
        options = dict(pooling=self.pooling, feature_layer=layer, head_hidden_sizes=self.head_hidden_sizes,
                       head_dropout=self.head_dropout, freeze_feature_encoder=self.freeze_feature_encoder,
                       freeze_backbone=self.mode == "frozen", pooled_norm=self.pooled_norm,
                       frame_normalisation=self.frame_normalisation)
        if self.classifier_proj_size:
            options["classifier_proj_size"] = self.classifier_proj_size
        return options


@dataclass
class ExportArguments:
    export_dir: str | None = field(default=None, metadata={"help": "Write the Hub model repo (weights, config, card, results) here"})
    export_dataset_dir: str | None = field(default=None, metadata={"help": "Instead of training: write the clips as a datasets folder, one split per fold of --protocol, with a dataset card (ser/dataset_export.py)"})


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
    if data_args.corpus and not data_args.data_root:
        parser.error("--corpus needs --data_root (one per corpus)")
    if (model_args.encoder_name_or_path is None) == (model_args.encoder_config is None):
        parser.error("give exactly one of --encoder_name_or_path (pretrained) and --encoder_config (from scratch)")
    if data_args.normalisation_group not in ("speaker", "corpus"):
        parser.error(f"--normalisation_group must be speaker or corpus, not {data_args.normalisation_group!r}")
    if model_args.mode not in ("full", "frozen"):
        parser.error(f"--mode must be full or frozen, not {model_args.mode!r}")
    if model_args.frame_normalisation not in modeling_ser.FRAME_NORMALISATIONS:
        parser.error(f"--frame_normalisation must be one of {modeling_ser.FRAME_NORMALISATIONS}")
    if model_args.frame_normalisation != "none" and model_args.mode != "frozen":
        parser.error("--frame_normalisation normalises a frozen encoder's frames: it needs --mode frozen")
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


def corpus_name(args: DataArguments) -> str:
    """How results, cards and logs name the training data: the corpus, a mixture as "emodb+ravdess+emovo", or the
    dataset's Hub id or folder name."""
    if args.dataset_name:
        return Path(args.dataset_name).name if Path(args.dataset_name).is_dir() else args.dataset_name
    return ser_results.mixture_name(args.corpus)


def read_corpus(args: DataArguments):
    """The labelled clips as a `datasets.Dataset` (readable rows only: see --skip_bad_files), their metadata for the
    protocols, and the sorted label names. No audio is held: `prepared_audio` reads it when needed."""
    if args.dataset_name:
        table = dataset.load_any(args.dataset_name, args.dataset_config_name, args.audio_column_name,
                                 args.label_column_name, args.speaker_column_name, args.speaker_regex, args.language,
                                 dataset.parse_label_mapping(args.label_mapping))
        clips = dataset.to_clips(table)
    else:
        options = {"speaker_regex": args.speaker_regex} if args.speaker_regex else {}
        clips = corpora.load_mixture(args.corpus, args.data_root, **options)
        table = None
    labels = args.labels or (corpora.shared_labels(clips) if args.corpus and len(args.corpus) > 1 else None)
    if labels:
        wanted = {clip.label for clip in corpora.select_labels(clips, labels)}
        rows = [i for i, clip in enumerate(clips) if clip.label in wanted]
        table = table.select(rows) if table is not None else None
        clips = [clips[i] for i in rows]
    names = sorted({clip.label for clip in clips})
    if len(names) < 2:
        raise corpora.CorpusError(f"{corpus_name(args)}: need at least two emotions, found {names}")
    table = dataset.readable(table if table is not None else dataset.from_clips(clips, args.language),
                             skip_bad=args.skip_bad_files)
    return table, dataset.to_clips(table), names


def prepared_audio(table, args: DataArguments):
    """Each clip's samples as the model sees them, one at a time: cut to speech (unless --trim_silence false) and
    brought to the level (unless --level_normalisation false), as the predictor does."""
    detector = speech.Detector(args.speech_detector) if args.trim_silence else None
    for _, samples in dataset.decoded(table):
        samples = detector.trim(samples) if detector else samples
        yield normalise_level(samples) if args.level_normalisation else samples


def build_model(args: ModelArguments, labels: list[str], speaker_normalisation: bool):
    """The model and its feature extractor. Speaker normalisation is part of the saved model: the log-mel CNN
    normalises its log-mels, a frozen pretrained encoder's head its encoder frames, both with statistics passed in."""
    head = args.head_options()
    spec = load_spec(args.encoder_config) if args.encoder_config else None
    cnn = spec is not None and spec["family"] == "logmel-cnn"
    if speaker_normalisation and args.mode == "frozen" and not cnn:
        head["frame_normalisation"] = "speaker"
    if spec:
        normalisation = args.normalisation
        if normalisation and not cnn:
            raise ValueError("--normalisation is a logmel-cnn option; other encoders normalise their own way")
        if speaker_normalisation and cnn:
            normalisation = "speaker"
        extra = {"normalisation": normalisation} if normalisation else {}
        return scratch_model(spec, labels, **head, **extra)
    return pretrained_model(args.encoder_name_or_path, labels, **head)


@dataclass
class Inputs:
    """Per-clip model inputs, the same for every seed: encoder frames (memory-mapped from the cache) in frozen mode,
    else the feature extractor's output; the frames of each clip's perturbed copies (frozen mode with --copies);
    the clips' durations in seconds; their audio (None in frozen mode, where nothing else needs it); cache counts."""

    features: object
    variants: list | None
    durations: list[float]
    audio: list | None
    input_name: str
    cache_stats: dict | None


def model_inputs(model, feature_extractor, table, clips, args: DataArguments, augment_args, cache_dir) -> Inputs:
    if augment_args.copies and not model.config.freeze_backbone:
        raise ValueError("--copies is for --mode frozen (cached features); a model that reads samples takes --augment")
    if model.config.freeze_backbone:
        cache = FeatureCache(cache_dir, model, feature_extractor)
        level = normalise_level if args.level_normalisation else (lambda copy: copy)

        def clips_and_copies():  # perturbed after trimming; brought to the level again, as the predictor would
            for clip in prepared_audio(table, args):
                yield clip
                yield from (level(copy) for copy in perturbed_copies(clip, augment_args))

        per_clip = 1 + augment_args.copies
        frames = cache.features(clips_and_copies(), total=len(clips) * per_clip)
        features = frames[::per_clip]
        variants = [frames[i + 1:i + per_clip] for i in range(0, len(frames), per_clip)] if augment_args.copies else None
        return Inputs(features, variants, features.durations(), None, "features",
                      {"hits": cache.hits, "misses": cache.misses, "folder": str(cache.folder)})
    audio = list(tqdm(prepared_audio(table, args), total=len(clips), desc="preparing audio", unit="clip"))
    features = data.extract_features(feature_extractor, audio, per_utterance_norm=not args.speaker_normalisation)
    if args.speaker_normalisation and not model.speaker_normalised:  # fine-tuned filterbank encoders (w2v-BERT)
        features = data.speaker_normalise(features, [clip.speaker for clip in clips])
    return Inputs(features, None, [len(a) / data.SAMPLING_RATE for a in audio], audio,
                  feature_extractor.model_input_names[0], None)


class WatchedTrainer(Trainer):
    """A Trainer whose evaluations during training (for the log) leave training's random stream as it was: a data
    loader draws its seed from torch's generator, so evaluating would otherwise change later crops and dropout."""

    def evaluate(self, *args, **kwargs):
        with torch.random.fork_rng(devices=[]):
            return super().evaluate(*args, **kwargs)


@dataclass
class Experiment:
    """Everything the folds share: the model and its initial weights, per-clip inputs, and where to write."""

    model: torch.nn.Module
    features: list
    variants: list | None  # per clip, the frames of its perturbed copies (frozen mode with --copies)
    labels: list[int]
    durations: list[float]
    collator: data.PadCollator
    names: list[str]
    training_args: TrainingArguments
    class_balanced: bool
    crop_seconds: float
    augment: AugmentationArguments
    corpora: list[str]  # per clip
    stats: list | None = None  # per clip, for a model that normalises with its speaker's statistics
    fold_model_extractor: object = None  # given: each fold's model is saved with this feature extractor
    corpus_balanced: bool = False

    def __post_init__(self):
        self.initial_state = {k: v.clone() for k, v in self.model.state_dict().items()}
        self.output_dir = Path(self.training_args.output_dir)
        self.raw_samples = self.features[0].ndim == 1
        if self.augment.augment and not self.raw_samples:
            raise ValueError("--augment perturbs raw samples; this encoder reads filterbanks (use logmel-cnn or a "
                             "wav2vec 2.0 / HuBERT / WavLM encoder)")

    @property
    def is_main(self) -> bool:
        return self.training_args.process_index == 0

    def log(self, message: str) -> None:
        if self.is_main:
            print(message, flush=True)

    def subset(self, indices: list[int], train: bool = False) -> data.CropDataset:
        """Whole clips for evaluation; for training, random crops (raw samples: loop-padded and perturbed as
        --augment says, with a generator seeded by the run's seed)."""
        pick = lambda values: data.take(values, indices)  # noqa: E731
        augment = None
        if train and self.raw_samples:
            augment = WaveformAugmenter(self.augment, self.crop_seconds, seed=self.training_args.seed)
        return data.CropDataset(pick(self.features), pick(self.labels), pick(self.durations),
                                self.crop_seconds if train else None, augment,
                                pick(self.stats) if self.stats is not None else None,
                                pick(self.variants) if train and self.variants is not None else None)

    def trainer(self, name: str, train_idx: list[int], test_idx: list[int] | None = None) -> Trainer:
        """A Trainer on the whole model, or on its head alone when the encoder is frozen and cached. The loss takes
        class indices or, after mixup, class probabilities. With --eval_strategy epoch (or steps), the test clips
        are evaluated during training for the log only (UA, WA, macro-F1): nothing is chosen by them."""
        args = replace(self.training_args, output_dir=str(self.output_dir / name))
        if not test_idx:
            args.eval_strategy = "no"  # the final model has no held-out clips
        if self.model.config.pooled_norm:  # batch statistics of a last batch of one clip are undefined
            args.dataloader_drop_last = True
        if self.corpus_balanced:  # before the class weights, which then count the repeated clips too
            train_idx = data.balance_groups(train_idx, self.corpora, seed=args.seed)
        weights = None
        if self.class_balanced:
            weights = data.class_weights([self.labels[i] for i in train_idx], len(self.names))

        def loss(outputs, labels, num_items_in_batch=None):
            weight = weights.to(outputs.logits.device) if weights is not None else None
            return torch.nn.functional.cross_entropy(outputs.logits, labels, weight=weight)

        collator = replace_mixup(self.collator, self.augment.mixup_alpha if self.augment.augment else 0.0,
                                 len(self.names))
        if collator.mixup_alpha and args.eval_strategy != "no":
            raise ValueError("--eval_strategy with --mixup_alpha: the Trainer would evaluate mixed-up batches; "
                             "evaluate after training (the fold results) or train without mixup")
        trainable = FrozenEncoderHead(self.model) if self.model.config.freeze_backbone else self.model
        return WatchedTrainer(model=trainable, args=args, train_dataset=self.subset(train_idx, train=True),
                       eval_dataset=self.subset(test_idx) if args.eval_strategy != "no" else None,
                       data_collator=collator, compute_loss_func=loss, compute_metrics=compute_metrics_fn(len(self.names)))

    def train(self, name: str, train_idx: list[int], test_idx: list[int] | None = None) -> dict | None:
        """Trains from the initial weights (resuming from the fold's last checkpoint if there is one) and returns
        the predictions on whole test clips."""
        self.model.load_state_dict(self.initial_state)
        self.model.apply_freezing()
        if getattr(self.model.config, "normalisation", None) == "global":  # statistics of the training clips only
            clips = [torch.from_numpy(self.features[i]) for i in train_idx]
            self.model.base_model.global_stats.copy_(self.model.base_model.speech_statistics(clips))
        if self.model.config.frame_normalisation == "global":  # of the training clips' cached frames only
            self.model.frame_stats.copy_(cached_frame_statistics(self.features[i] for i in train_idx))
        trainer = self.trainer(name, train_idx, test_idx)
        checkpoint = self.last_complete_checkpoint(trainer.args.output_dir)
        if checkpoint:
            self.log(f"{name}: resuming from {checkpoint}")
        trainer.train(resume_from_checkpoint=checkpoint)
        if not test_idx:
            return None
        trainer.data_collator = self.collator  # whole clips, no mixup
        trainer.args.dataloader_drop_last = False  # every test clip
        prediction = trainer.predict(self.subset(test_idx), metric_key_prefix="test")
        trainer.log(prediction.metrics)  # the fold's test UA, WA and macro-F1 in the Trainer's log and history
        logits = prediction.predictions
        return {"y_true": prediction.label_ids.tolist(), "y_pred": logits.argmax(-1).tolist(),
                "logits": logits.round(4).tolist()}

    def last_complete_checkpoint(self, folder: str) -> str | None:
        """The newest checkpoint whose trainer state exists (the Trainer writes it last). A run killed while saving
        leaves a partial folder: it is removed, so at most one checkpoint interval is lost."""
        for path in sorted(Path(folder).glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]), reverse=True):
            try:
                json.loads((path / "trainer_state.json").read_text())
                return str(path)
            except (OSError, ValueError):
                if self.is_main:
                    shutil.rmtree(path)
        return None

    def evaluate_fold(self, fold: splits.Fold) -> dict:
        predictions = self.train(fold.name, fold.train, fold.test)
        if self.fold_model_extractor is not None and self.is_main:
            self.model.save_pretrained(self.output_dir / fold.name / "model")
            self.fold_model_extractor.save_pretrained(self.output_dir / fold.name / "model")
        metrics = classification_metrics(predictions["y_true"], predictions["y_pred"], len(self.names))
        corpus = [self.corpora[i] for i in fold.test]
        return {"name": fold.name, "test_speakers": fold.test_speakers, "n_test": len(fold.test),
                **metrics, **predictions, **({"corpus": corpus} if None not in corpus else {})}

    def run_folds(self, folds: list[splits.Fold], clips, speaker_independent: bool) -> list[dict]:
        """Each fold's result goes to <fold>/fold_result.json; a finished fold is read back, not retrained."""
        results = []
        for fold in folds:
            if speaker_independent:
                splits.check_speaker_disjoint(clips, fold)
            done = self.output_dir / fold.name / "fold_result.json"
            if done.exists():
                result = json.loads(done.read_text())
            else:
                result = self.evaluate_fold(fold)
                if self.is_main:
                    done.write_text(json.dumps(result))
                    for checkpoint in done.parent.glob("checkpoint-*"):
                        shutil.rmtree(checkpoint)  # the fold is finished: its result is all a resume needs
            self.log(f"fold {fold.name}: WA {result['wa']:.3f}  UA {result['ua']:.3f}  macro-F1 {result['macro_f1']:.3f}")
            results.append(result)
        return results


def replace_mixup(collator: data.PadCollator, alpha: float, num_labels: int) -> data.PadCollator:
    return data.PadCollator(collator.input_name, collator.padding_value, mixup_alpha=alpha, num_labels=num_labels,
                            time_last=collator.time_last)


def code_version() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True,
                             cwd=Path(__file__).parent).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=Path(__file__).parent).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def weights_origin(config) -> dict:
    """Where a converted encoder's weights came from (ser/convert_whisper.py records it in the config)."""
    source = getattr(config, "ctranslate2_source", None) or {}
    if "model" not in source:
        return {}
    return {"weights": {"model": source["model"], "licence": source["licence"],
                        "via": f"{source['package']} (CTranslate2 float16, converted to float32 by ser/convert_whisper.py)"}}


def write_results(experiment: Experiment, runs, protocol, data_args, model_args, augment_args, cache_stats,
                  calibration) -> dict:
    """results.json (through ser.results, from the model's actual config) and the pooled confusion matrix."""
    names, model, training_args = experiment.names, experiment.model, experiment.training_args
    config = model.config
    results = ser_results.build(
        corpus=corpus_name(data_args), language=data_args.language or (corpora.mixture_language(data_args.corpus) if data_args.corpus else None),
        labels=names, protocol=protocol, speaker_normalisation=data_args.speaker_normalisation, runs=runs,
        normalisation_group=data_args.normalisation_group if data_args.speaker_normalisation else None,
        encoder={"name_or_path": model_args.encoder_name_or_path or model_args.encoder_config,
                 "family": model.family, "pretrained": model_args.encoder_name_or_path is not None,
                 "parameters": sum(p.numel() for p in model.parameters()), **weights_origin(config)},
        head={key: getattr(config, key) for key in (*modeling_ser.HEAD_FIELDS, "classifier_proj_size")},
        training={"mode": model_args.mode, "epochs": training_args.num_train_epochs,
                  "learning_rate": training_args.learning_rate, "weight_decay": training_args.weight_decay,
                  "batch_size": training_args.per_device_train_batch_size * training_args.world_size,
                  "warmup_steps": training_args.warmup_steps,
                  "lr_scheduler": getattr(training_args.lr_scheduler_type, "value", training_args.lr_scheduler_type),
                  "crop_seconds": data_args.crop_seconds, "class_balanced_loss": model_args.class_balanced_loss,
                  "corpus_balanced": model_args.corpus_balanced},
        augmentation=asdict(augment_args) if experiment.raw_samples or augment_args.copies else None,
        code_version=code_version(), trust_remote_code=not model.is_stock_expressible, feature_cache=cache_stats,
        trim_silence=data_args.trim_silence, speech_detector=config.speech_detector,
        level_normalisation=data_args.level_normalisation, calibration=calibration)
    ser_results.write(results, experiment.output_dir)
    title = f"{corpus_name(data_args)}: {protocol['description']}, pooled over folds and seeds"
    plot_confusion(results["summary"]["pooled"]["confusion"], names, experiment.output_dir / "confusion_matrix.png", title)
    headline = ser_results.headline(results)
    print(f"{protocol['description']}, {headline['seeds']} seed(s): pooled " + "  ".join(
        f"{m} {headline[m]['mean']:.3f} ± {headline[m]['std']:.3f}" for m in ("wa", "ua", "macro_f1")))
    for corpus, numbers in ser_results.per_corpus(results).items():
        print(f"  {corpus}: pooled UA {numbers['ua']['mean']:.3f} ± {numbers['ua']['std']:.3f}")
    if calibration:
        print(f"calibration: temperature {calibration['temperature']:.2f}, out-of-fold ECE "
              f"{calibration['ece_uncalibrated']:.3f} -> {calibration['ece_calibrated']:.3f}")
    return results


def train_final_model(experiment: Experiment, feature_extractor, num_clips: int) -> None:
    """The published model: the same recipe on all clips (skipped when `final/` already holds one)."""
    final = experiment.output_dir / "final"
    if (final / "model.safetensors").exists():
        return
    experiment.train("final-training", list(range(num_clips)))
    if experiment.is_main:
        experiment.model.save_pretrained(final)
        feature_extractor.save_pretrained(final)
        shutil.rmtree(experiment.output_dir / "final-training", ignore_errors=True)
        experiment.log(f"final model (all {num_clips} clips): {final}")


def export(experiment: Experiment, export_dir: str, training_args, push: bool) -> None:
    folder = export_run(experiment.output_dir, export_dir, training_args.hub_model_id)
    experiment.log(f"exported: {folder}")
    if push:
        url = push_folder(folder, training_args.hub_model_id, training_args.hub_token,
                          bool(training_args.hub_private_repo))
        experiment.log(f"uploaded: {url}")


def limit_threads() -> None:
    """Several processes on few cores: torch's default thread count each makes them spin against each other
    (measured here: 50x slower steps), so share the cores out unless the user chose."""
    processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if processes > 1 and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // processes))


def prepare_folds(clips, data_args: DataArguments):
    folds, protocol = splits.make_folds(clips, data_args.protocol, k=data_args.num_folds, seed=data_args.fold_seed,
                                        split_file=data_args.split_file)
    protocol["fold_seed"] = data_args.fold_seed
    if data_args.only_folds:
        unknown = sorted(set(data_args.only_folds) - {fold.name for fold in folds})
        if unknown:
            raise ValueError(f"--only_folds {unknown}: no such fold; the folds are {[fold.name for fold in folds]}")
        folds = [fold for fold in folds if fold.name in data_args.only_folds]
        protocol = {**protocol, "folds": len(folds), "only_folds": data_args.only_folds}
    return folds, protocol


def build_experiment(seed, table, clips, names, data_args, model_args, augment_args, training_args,
                     inputs: Inputs | None = None):
    """The model with this seed's initial weights, the per-clip inputs (computed unless given: they do not depend
    on the seed), and the seed's output folder."""
    set_seed(seed)
    seeds = model_args.seeds or [training_args.seed]
    output_dir = Path(training_args.output_dir)
    args = replace(training_args, seed=seed,
                   output_dir=str(output_dir / f"seed-{seed}" if len(seeds) > 1 else output_dir))
    model, feature_extractor = build_model(model_args, names, data_args.speaker_normalisation)
    # the predictor finds speech as training did, and cuts to it exactly when training did
    model.config.trim_silence = data_args.trim_silence
    model.config.level_normalisation = data_args.level_normalisation
    model.config.speech_detector = speech.Detector(data_args.speech_detector).to_dict()
    inputs = inputs or model_inputs(model, feature_extractor, table, clips, data_args, augment_args,
                                    model_args.feature_cache_dir or output_dir / "feature-cache")
    stats = None
    if model.speaker_normalised:
        groups = [clip.corpus if data_args.normalisation_group == "corpus" else clip.speaker for clip in clips]
        cached = inputs.features if model.config.freeze_backbone else None
        stats = data.speaker_statistics(model, feature_extractor, inputs.audio, groups, cached)
    experiment = Experiment(
        model=model, features=inputs.features, variants=inputs.variants,
        labels=[names.index(clip.label) for clip in clips], durations=inputs.durations,
        collator=data.PadCollator(inputs.input_name, float(getattr(feature_extractor, "padding_value", 0.0)),
                                  time_last=inputs.input_name != "features" and data.time_last(feature_extractor)),
        names=names, training_args=args, class_balanced=model_args.class_balanced_loss,
        crop_seconds=data_args.crop_seconds, augment=augment_args, corpora=[clip.corpus for clip in clips],
        stats=stats, fold_model_extractor=feature_extractor if model_args.save_fold_models else None,
        corpus_balanced=model_args.corpus_balanced)
    return experiment, feature_extractor, inputs


def main(argv: list[str]) -> None:
    data_args, model_args, augment_args, training_args, export_args = parse_arguments(argv)
    training_args.remove_unused_columns = False
    push, training_args.push_to_hub = training_args.push_to_hub, False  # we upload the exported folder ourselves
    limit_threads()
    table, clips, names = read_corpus(data_args)
    folds, protocol = prepare_folds(clips, data_args)
    if export_args.export_dataset_dir:
        folder = export_dataset(table, folds, protocol, corpus_name(data_args), data_args.corpus or [],
                                export_args.export_dataset_dir)
        print(f"dataset ({len(folds)} folds of {protocol['description']} as splits): {folder}")
        return
    runs, inputs = [], None
    for seed in model_args.seeds or [training_args.seed]:
        experiment, feature_extractor, inputs = build_experiment(
            seed, table, clips, names, data_args, model_args, augment_args, training_args, inputs)
        if not runs:
            first = (experiment, feature_extractor)
        experiment.log(f"{corpus_name(data_args)}: {len(clips)} clips, {len(names)} emotions, {protocol['description']}, "
                       f"{len(folds)} folds, seed {seed}; encoder "
                       f"{model_args.encoder_name_or_path or model_args.encoder_config} "
                       f"({'pretrained' if model_args.encoder_name_or_path else 'trained from scratch'})")
        runs.append({"seed": seed, "folds": experiment.run_folds(folds, clips, protocol["speaker_independent"])})
    experiment, feature_extractor = first
    experiment.output_dir = Path(training_args.output_dir)  # results, final model and export: the run's folder
    tested = [fold for run in runs for fold in run["folds"]]
    calibration = calibrate(tested) if all("logits" in fold for fold in tested) else None  # older folds lack logits
    if experiment.is_main:
        write_results(experiment, runs, protocol, data_args, model_args, augment_args, inputs.cache_stats, calibration)
    if calibration:
        experiment.model.config.calibration_temperature = calibration["temperature"]
    if model_args.train_final_model:
        train_final_model(experiment, feature_extractor, len(clips))
    if export_args.export_dir and experiment.is_main:
        if model_args.train_final_model:
            export(experiment, export_args.export_dir, training_args, push)
        else:  # e.g. a leave-one-corpus-out run of a config that exports its final model
            experiment.log(f"--train_final_model false: no final model, so nothing exported to {export_args.export_dir}")


if __name__ == "__main__":
    main(sys.argv[1:])
