"""Training protocols (`001_*` §4): a frozen `TrainConfig` and named presets.

base: SGD momentum 0.9, lr 0.025 cosine-annealed to 0, weight decay 3e-4, gradient clipping 5, crop+flip;
the presets add cutout 16, drop-path 0.2 (ramped linearly from 0 over the epochs, as DARTS does), an auxiliary tower of weight 0.4 and AutoAugment in turn.
`ema_decay` > 0 (LaNet's training, `002_*` A.2) evaluates an exponential moving average of the weights
(`nasjax.train.optim.iterate_ema`) instead of the weights themselves.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run; hashable, so compiled programs are cached per config.

    The learning-rate schedule always spans `epochs`, whatever budget a call trains for, so training
    k epochs and then m more is the same run as training k + m at once.
    """

    epochs: int = 1
    batch_size: int = 128
    lr: float = 0.025
    final_lr: float = 0.0
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 3e-4
    grad_clip: float = 5.0  # global-norm clip; 0 disables
    label_smoothing: float = 0.0
    crop_padding: int = 4
    flip: bool = True
    cutout: int = 0
    autoaugment: bool = False
    drop_path: float = 0.0
    auxiliary_weight: float = 0.0
    ema_decay: float = 0.0  # evaluate an exponential moving average of the weights; 0 disables
    eval_batch_size: int = 500

    def __post_init__(self):
        positive = dict(epochs=self.epochs, batch_size=self.batch_size, eval_batch_size=self.eval_batch_size)
        bad = [f"{k}={v}" for k, v in positive.items() if v < 1]
        nonneg = dict(lr=self.lr, final_lr=self.final_lr, momentum=self.momentum,
                      weight_decay=self.weight_decay, grad_clip=self.grad_clip, cutout=self.cutout,
                      crop_padding=self.crop_padding, auxiliary_weight=self.auxiliary_weight)
        bad += [f"{k}={v}" for k, v in nonneg.items() if v < 0]
        if not 0.0 <= self.label_smoothing < 1.0:
            bad.append(f"label_smoothing={self.label_smoothing} (need [0, 1))")
        if not 0.0 <= self.drop_path < 1.0:
            bad.append(f"drop_path={self.drop_path} (need [0, 1))")
        if not 0.0 <= self.ema_decay < 1.0:
            bad.append(f"ema_decay={self.ema_decay} (need [0, 1))")
        if bad:
            raise ValueError("invalid TrainConfig: " + ", ".join(bad))

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def drop_path_rate(self, epoch):
        """Drop-path probability during `epoch` (0-based; an int or a traced scalar): DARTS's linear
        ramp `drop_path * epoch / epochs`, 0 in the first epoch, held constant within an epoch."""
        return self.drop_path * epoch / self.epochs


# The network's size is the space's (e.g. DARTSSpace(init_channels=36, layers=20), DARTS' defaults).
_BASE = TrainConfig(epochs=600, batch_size=96)
PRESETS: dict[str, TrainConfig] = {
    "base": _BASE,
    "cutout": _BASE.replace(cutout=16),
    "cutout+droppath": _BASE.replace(cutout=16, drop_path=0.2),
    "+auxiliary": _BASE.replace(cutout=16, drop_path=0.2, auxiliary_weight=0.4),
    "+autoaugment": _BASE.replace(cutout=16, drop_path=0.2, auxiliary_weight=0.4, autoaugment=True),
}


def preset(name: str, **overrides) -> TrainConfig:
    """A named protocol of `001_*` §4 (see `PRESETS`), with fields overridden, e.g. epochs=1."""
    if name not in PRESETS:
        raise ValueError(f"unknown protocol {name!r}; known: {sorted(PRESETS)}")
    return PRESETS[name].replace(**overrides)
