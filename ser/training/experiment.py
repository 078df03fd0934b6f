"""The fold loop: a corpus read as a dataset, the model and its per-clip inputs built once per seed, and each
fold trained from the same initial weights with the Hugging Face Trainer and evaluated on whole test clips, its
result written before the next fold starts (so a killed run resumes)."""

import json
import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import Trainer, TrainingArguments, set_seed

import modeling_ser
import speech_ser as speech
from ser.data import corpora
from ser.data import inputs as data
from ser.data import dataset
from ser.data import splits
from ser.reporting import results as ser_results
from ser.training.arguments import DataArguments, ModelArguments
from feature_extraction_ser import Preparation, normalise_level, shortest_seconds
from ser.data.augment import AugmentationArguments, WaveformAugmenter, perturbed_copies
from ser.training.encoders import load_spec, pretrained_model, scratch_model
from ser.training.frozen import FeatureCache, FrozenEncoderHead
from ser.reporting.metrics import classification_metrics, compute_metrics_fn
from ser.core.statistics import cached_frame_statistics


def corpus_name(args: DataArguments) -> str:
    """How results, cards and logs name the training data: the corpus, a mixture as "emodb+ravdess+emovo", or the
    dataset's Hub id or folder name."""
    if args.dataset_name:
        return Path(args.dataset_name).name if Path(args.dataset_name).is_dir() else args.dataset_name
    return ser_results.mixture_name(args.corpus)


def corpus_roots(args: DataArguments) -> list:
    """Each --corpus's folder (or CSV): --data_root as given, else the named corpus under --data_dir ($SER_DATA,
    ../shared/data), a missing one reported with the folder searched."""
    return args.data_root or [corpora.corpus_dir(name, args.data_dir) for name in args.corpus]


def read_corpus(args: DataArguments):
    """The labelled clips as a `datasets.Dataset` (readable rows only: see --skip_bad_files), their metadata for the
    protocols, and the sorted label names. No audio is held: `prepared_audio` reads it when needed."""
    if args.dataset_name:
        table = dataset.load_any(args.dataset_name, args.dataset_config_name, args.audio_column_name,
                                 args.label_column_name, args.speaker_column_name, args.speaker_regex, args.language,
                                 dataset.parse_label_mapping(args.label_mapping))
        clips = dataset.to_clips(table)
        refuse_speakerless_metadata(args, clips)
    else:
        options = {"speaker_regex": args.speaker_regex} if args.speaker_regex else {}
        clips = corpora.load_mixture(args.corpus, corpus_roots(args), **options)
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


def refuse_speakerless_metadata(args: DataArguments, clips) -> None:
    """An audiofolder whose metadata gives no speakers cannot be split by speaker: say so, and how to go on, before
    any audio is read (a random split only when asked for; results then say it is speaker-dependent)."""
    metadata = dataset.metadata_files(args.dataset_name)
    if not metadata or args.protocol not in splits.SPEAKER_PROTOCOLS or corpora.has_speakers(clips):
        return
    column = args.speaker_column_name or dataset.SPEAKER
    missing = sum(not clip.speaker or clip.speaker == corpora.UNKNOWN_SPEAKER for clip in clips)
    what = (f"{missing} of {len(clips)} clips without a speaker" if column in dataset.metadata_columns(metadata)
            or args.speaker_regex else f"no {column!r} column")
    raise corpora.CorpusError(
        f"{args.dataset_name}: --protocol {args.protocol} needs speaker ids, but its metadata "
        f"({', '.join(str(path.relative_to(args.dataset_name)) for path in metadata)}) has {what}. Add a "
        f"{dataset.SPEAKER!r} column to the metadata (or name yours with --speaker_column_name, or find speakers in "
        "the file names with --speaker_regex) for speaker-independent folds, or pass --protocol random for a random "
        "split (speaker-dependent, and labelled so in results.json)")


def prepared_audio(table, feature_extractor):
    """Each clip's samples as the model sees them, one at a time: prepared by the model's feature extractor (the
    function the predictor and the stock pipeline call), not refused (a corpus clip with no speech found is kept
    whole)."""
    for _, samples in dataset.decoded(table):
        yield feature_extractor.prepare(samples, refuse=False)


def preparation(model, args: DataArguments) -> Preparation | None:
    """What --trim_silence, --speech_detector and --level_normalisation do to every clip, with the model's own
    shortest input (the log-mel CNN's blocks need a minimum length); None when neither is on (the extractor is then
    the stock one, and a stock head needs no code of ours)."""
    if not (args.trim_silence or args.level_normalisation):
        return None
    return Preparation(trim_silence=args.trim_silence, speech_detector=speech.Detector(args.speech_detector).to_dict(),
                       level_normalisation=args.level_normalisation, min_seconds=shortest_seconds(model.config))


def build_model(args: ModelArguments, labels: list[str]):
    """The model and its feature extractor. --normalisation is part of the saved model: the log-mel CNN normalises
    its log-mels, a frozen encoder's head its encoder frames (speaker statistics passed in). In --mode full a
    pretrained encoder reads its inputs as they are, so only speaker normalisation (outside the model) is possible."""
    head = args.head_options()
    spec = load_spec(args.encoder_config) if args.encoder_config else None
    if spec is not None and spec["family"] == "logmel-cnn":
        if args.normalisation == "none":
            raise ValueError(f"--normalisation none: the log-mel CNN always normalises its log-mels; choose one of "
                             f"{modeling_ser.CNN_NORMALISATIONS}")
        return scratch_model(spec, labels, **head, **({"normalisation": args.normalisation} if args.normalisation else {}))
    if args.mode == "frozen" and args.normalisation:
        head["frame_normalisation"] = args.normalisation
    elif args.mode == "full" and args.normalisation not in (None, "none", "speaker"):
        raise ValueError(f"--normalisation {args.normalisation} normalises a frozen encoder's frames: it needs "
                         "--mode frozen (in --mode full only speaker normalisation is possible)")
    return scratch_model(spec, labels, **head) if spec else pretrained_model(args.encoder_name_or_path, labels, **head)


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


def model_inputs(model, feature_extractor, table, clips, args: DataArguments, augment_args, cache_dir,
                 speaker_normalisation: bool = False) -> Inputs:
    if augment_args.copies and not model.config.freeze_backbone:
        raise ValueError("--copies is for --mode frozen (cached features); a model that reads samples takes --augment")
    if model.config.freeze_backbone:
        cache = FeatureCache(cache_dir, model, feature_extractor)
        prepared = feature_extractor.preparation  # what the model records, so what inference repeats
        level = normalise_level if prepared and prepared.level_normalisation else (lambda copy: copy)

        def clips_and_copies():  # perturbed after trimming; brought to the level again, as the predictor would
            for clip in prepared_audio(table, feature_extractor):
                yield clip
                yield from (level(copy) for copy in perturbed_copies(clip, augment_args))

        per_clip = 1 + augment_args.copies
        frames = cache.features(clips_and_copies(), total=len(clips) * per_clip)
        features = frames[::per_clip]
        variants = [frames[i + 1:i + per_clip] for i in range(0, len(frames), per_clip)] if augment_args.copies else None
        return Inputs(features, variants, features.durations(), None, "features",
                      {"hits": cache.hits, "misses": cache.misses, "folder": str(cache.folder)})
    audio = list(tqdm(prepared_audio(table, feature_extractor), total=len(clips), desc="preparing audio", unit="clip"))
    features = data.extract_features(feature_extractor, audio, per_utterance_norm=not speaker_normalisation)
    if speaker_normalisation and not model.speaker_normalised:  # fine-tuned filterbank encoders (w2v-BERT)
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
        if self.model.normalises_inputs and self.model.config.normalisation == "global":  # the training clips' only
            self.model.set_global_statistics([torch.from_numpy(self.features[i]) for i in train_idx])
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
    model, feature_extractor = build_model(model_args, names)
    # saved with the extractor: the predictor and the stock pipeline prepare every clip as training does
    prepared = preparation(model, data_args)
    feature_extractor.speech_preparation = prepared.to_dict() if prepared else None
    if model_args.speaker_normalisation and not model.speaker_normalised and (
            model_args.train_final_model or model_args.save_fold_models):
        raise ValueError("--normalisation speaker: this encoder in --mode full normalises its inputs outside the model "
                         "(only the logmel-cnn and --mode frozen heads carry it), so a saved model would be served "
                         "without it. Use --mode frozen, or --train_final_model false --save_fold_models false for "
                         "results only")
    inputs = inputs or model_inputs(model, feature_extractor, table, clips, data_args, augment_args,
                                    model_args.feature_cache_dir or output_dir / "feature-cache",
                                    model_args.speaker_normalisation)
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
