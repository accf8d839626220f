"""CIFAR-10 (local original-format folder or tensorflow-datasets), JAX augmentations, Penn Treebank."""

from nasjax.data.augment import augment_batch, random_crop, random_cutout, random_flip
from nasjax.data.autoaugment import CIFAR10_POLICY, apply_op, cifar10_autoaugment
from nasjax.data.cifar10 import (CIFAR10_MEAN, CIFAR10_STD, DataError, Dataset, load_cifar10, normalize,
                                 resolve_data_dir, stratified_split)
from nasjax.data.ptb import PTB, batchify, bptt_batches, load_ptb, unigram_perplexity

__all__ = ["CIFAR10_MEAN", "CIFAR10_POLICY", "CIFAR10_STD", "DataError", "Dataset", "PTB", "apply_op",
           "augment_batch", "batchify", "bptt_batches", "cifar10_autoaugment", "load_cifar10", "load_ptb",
           "normalize", "random_crop", "random_cutout", "random_flip", "resolve_data_dir", "stratified_split",
           "unigram_perplexity"]
