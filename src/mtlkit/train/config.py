"""The Trainer's typed hyper-parameters and the merge of a method's hyper-parameters: they live in
`mtlkit.methods.params` (the registry, below the Trainer, needs them); this module keeps the old import path."""

from mtlkit.methods.params import TRAIN_DEFAULTS, TRAIN_PARAMS, merge_hparams, method_defaults, method_params

__all__ = ["TRAIN_DEFAULTS", "TRAIN_PARAMS", "merge_hparams", "method_defaults", "method_params"]
