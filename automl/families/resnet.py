"""A small ResNet for images (He et al. 2016): BasicBlocks in stages that halve the maps and double the channels."""
from __future__ import annotations

from automl.families.base import Family, output_size
from automl.space import Float, Int

MIN_SIDE = 8  # smaller images leave no room for more than a stage or two; the plain cnn covers them
MOST_STAGES = 4


def max_stages(profile) -> int:
    """Stages after the first each halve the maps (stride 2, rounding up); stop before they fall under 2 pixels."""
    size, stages = min(profile.input_shape[1:]), 1
    while stages < MOST_STAGES and (size + 1) // 2 >= 2:
        size, stages = (size + 1) // 2, stages + 1
    return stages


class ResNetFamily(Family):
    name = "resnet"
    modalities = ("image",)

    def suits(self, profile):
        if profile.modality != "image":
            return super().suits(profile)
        side = min(profile.input_shape[1:])
        if side < MIN_SIDE:
            return False, f"images are too small ({side} px on the shorter side, under {MIN_SIDE}) for a residual net"
        return True, f"residual conv stages suit {tuple(profile.input_shape)} images"

    def space(self, profile):
        return [
            Int("stages", 1, max_stages(profile)),
            Int("blocks_per_stage", 1, 2),
            Int("channels", 16, 64, log=True),
            Float("dropout", 0.0, 0.5),
        ]

    def build(self, config, profile):
        from torch import nn

        from automl.families.networks import BasicBlock

        channels = config["channels"]
        layers: list[nn.Module] = [nn.Conv2d(profile.input_shape[0], channels, 3, padding=1, bias=False),
                                   nn.BatchNorm2d(channels), nn.ReLU()]
        channels_in = channels
        for stage in range(config["stages"]):
            width = channels * 2 ** stage
            for block in range(config["blocks_per_stage"]):
                stride = 2 if stage > 0 and block == 0 else 1
                layers.append(BasicBlock(channels_in, width, stride))
                channels_in = width
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        if config["dropout"] > 0:
            layers.append(nn.Dropout(config["dropout"]))
        layers.append(nn.Linear(channels_in, output_size(profile)))
        return nn.Sequential(*layers)
