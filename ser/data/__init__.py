"""Data: corpora, labelled-clip datasets, evaluation splits, augmentation, and export of datasets."""
