"""What a finished run writes: results.json (through ser.reporting.results) with its confusion matrix, the final model
trained on all clips, and the exported Hub model folder."""

import shutil
import subprocess
from dataclasses import asdict
from pathlib import Path

import modeling_ser
from ser.data import corpora
from ser.reporting import results as ser_results
from speech_ser import Detector
from ser.training.experiment import Experiment, corpus_name, preparation
from ser.reporting.export import export_run, push_folder
from ser.reporting.metrics import plot_confusion


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
    """Where a converted encoder's weights came from (ser/training/convert_whisper.py records it in the config)."""
    source = getattr(config, "ctranslate2_source", None) or {}
    if "model" not in source:
        return {}
    return {"weights": {"model": source["model"], "licence": source["licence"],
                        "via": f"{source['package']} (CTranslate2 float16, converted to float32 by ser/training/convert_whisper.py)"}}


def kept_layers(config) -> dict:
    """A Whisper encoder cut to the layer its head reads (modeling_ser.WhisperForEmotion.cut_to_feature_layer)."""
    cut_from = getattr(config, "cut_from_layers", None)
    return {"layers_kept": [config.encoder_layers, cut_from]} if cut_from else {}


def write_results(experiment: Experiment, runs, protocol, data_args, model_args, augment_args, cache_stats,
                  calibration) -> dict:
    """results.json (through ser.reporting.results, from the model's actual config) and the pooled confusion matrix."""
    names, model, training_args = experiment.names, experiment.model, experiment.training_args
    config = model.config
    results = ser_results.build(
        corpus=corpus_name(data_args), language=data_args.language or (corpora.mixture_language(data_args.corpus) if data_args.corpus else None),
        labels=names, protocol=protocol, speaker_normalisation=model_args.speaker_normalisation, runs=runs,
        normalisation_group=data_args.normalisation_group if model_args.speaker_normalisation else None,
        encoder={"name_or_path": model_args.encoder_name_or_path or model_args.encoder_config,
                 "family": model.family, "pretrained": model_args.encoder_name_or_path is not None,
                 "parameters": sum(p.numel() for p in model.parameters()), **weights_origin(config),
                 **kept_layers(config)},
        head={key: getattr(config, key) for key in (*modeling_ser.HEAD_FIELDS, "classifier_proj_size")},
        training={"mode": model_args.mode, "epochs": training_args.num_train_epochs,
                  "learning_rate": training_args.learning_rate, "weight_decay": training_args.weight_decay,
                  "batch_size": training_args.per_device_train_batch_size * training_args.world_size,
                  "warmup_steps": training_args.warmup_steps,
                  "lr_scheduler": getattr(training_args.lr_scheduler_type, "value", training_args.lr_scheduler_type),
                  "crop_seconds": data_args.crop_seconds, "class_balanced_loss": model_args.class_balanced_loss,
                  "corpus_balanced": model_args.corpus_balanced},
        augmentation=asdict(augment_args) if experiment.raw_samples or augment_args.copies else None,
        code_version=code_version(), feature_cache=cache_stats, calibration=calibration,
        trust_remote_code=not model.is_stock_expressible or preparation(model, data_args) is not None,
        trim_silence=data_args.trim_silence, level_normalisation=data_args.level_normalisation,
        speech_detector=Detector(data_args.speech_detector).to_dict())
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
