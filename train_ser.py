"""Trains and evaluates a speech-emotion model per corpus, fold by fold, with the Hugging Face Trainer.

    python train_ser.py --config configs/emodb.yaml [--any_option value ...]
    python train_ser.py --config configs/emodb.yaml --recipe configs/recipes/logmel-cnn.yaml   # from scratch
    accelerate launch --num_processes 2 train_ser.py --config configs/emodb.yaml
    python train_ser.py --config configs/emodb.yaml --data_dir /data/corpora    # reads /data/corpora/emodb ($SER_DATA too)
    python train_ser.py --recipe configs/recipes/whisper-frozen.yaml --dataset_name DIR_OR_HUB_ID --speaker_column_name speaker
    python train_ser.py --recipe configs/recipes/whisper-frozen.yaml --dataset_name my_clips    # + metadata.csv
    python train_ser.py --config configs/emodb.yaml --export_dataset_dir datasets/emodb     # a corpus as a dataset

Options come from the YAML file, then the command line (which wins). Evaluation is speaker-independent by default
(leave-one-speaker-out); `--protocol random` is labelled "random (speaker-dependent)" in every output. Each fold
trains from the same initial weights, is evaluated on whole clips, and writes its result before the next starts,
so a killed run resumes at its last checkpoint. Results: `<output_dir>/results.json` and a confusion-matrix PNG.
"""

import sys
from pathlib import Path

from accelerate import PartialState

from ser.training.arguments import parse_arguments, write_resolved
from ser.training.calibration import calibrate
from ser.data.dataset_export import export_dataset
from ser.reporting.export import hub_repo
from ser.training.experiment import build_experiment, corpus_name, limit_threads, prepare_folds, read_corpus
from ser.training.run_outputs import export, train_final_model, write_results


def main(argv: list[str] | None = None) -> None:
    data_args, model_args, augment_args, training_args, export_args = parse_arguments(
        sys.argv[1:] if argv is None else argv)
    if training_args.process_index == 0 and not export_args.export_dataset_dir:
        write_resolved(training_args.output_dir, data_args, model_args, augment_args, training_args, export_args)
    training_args.remove_unused_columns = False
    push, training_args.push_to_hub = training_args.push_to_hub, False  # we upload the exported folder ourselves
    if push and training_args.process_index == 0:  # a missing token or a refused repo stops the run now, not after it
        hub_repo(training_args.hub_model_id, training_args.hub_token, bool(training_args.hub_private_repo))
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
    # Under `accelerate launch`, a process that leaves while the others still write, with its process group alive,
    # can be aborted at exit (seen once here: SIGABRT in the second of two CPU processes); all leave together.
    state = PartialState()
    state.wait_for_everyone()
    state.destroy_process_group()


if __name__ == "__main__":
    main()
