"""The torch modules the builtin families build, apart from the families themselves.

A family's `suits` and `space` need no torch, so the plan (`automl validate`, and the agent
before its first trial) imports the families without it; `build` imports this module.

Sequences arrive as float (n, length, channels) with every step valid; text arrives as
int64 token ids (n, length) with padding (id 0) at the end. The stem turns both into
(n, length, width) features plus a boolean mask of the steps that count. Position 0 is
always counted, so an empty text pools to a finite vector (its padding embedding, zero)
instead of dividing by zero or masking every attention key, which gives NaN.
Everything here is plain tensor arithmetic so `torch.jit.trace` keeps the batch size free.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from automl.data.base import Profile
from automl.families.base import ACTIVATIONS, output_size
from automl.families.sequence_input import sequence_length


# -- shared by the sequence and text families: the input stem, masked pooling, the head ------------
def valid_steps(tokens: torch.Tensor) -> torch.Tensor:
    """True for real tokens, and for position 0 so that no row is empty."""
    positions = torch.arange(tokens.shape[1], device=tokens.device)
    return (tokens != 0) | (positions == 0)


class InputStem(nn.Module):
    """Text -> embedding (padding_idx 0); sequences -> raw channels, or a linear projection when asked."""

    def __init__(self, profile: Profile, embed_dim: int | None = None, project: bool = False):
        super().__init__()
        self.text = profile.modality == "text"
        if self.text:
            if not profile.vocab_size or embed_dim is None:
                raise ValueError("text input needs profile.vocab_size and an embed_dim")
            self.encode: nn.Module = nn.Embedding(profile.vocab_size, embed_dim, padding_idx=0)
            self.width = embed_dim
        elif project:
            self.encode = nn.Linear(profile.input_shape[1], embed_dim)
            self.width = embed_dim
        else:
            self.encode = nn.Identity()
            self.width = profile.input_shape[1]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.text:
            return self.encode(x), valid_steps(x)
        return self.encode(x), torch.ones_like(x[..., 0], dtype=torch.bool)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the valid steps of (n, length, width) -> (n, width)."""
    weights = mask.unsqueeze(-1).to(x.dtype)
    return (x * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def masked_max(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Max over the valid steps; position 0 is always valid, so the result is finite."""
    return x.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(1)


POOLS = {"mean": masked_mean, "max": masked_max}


def head(width: int, out: int, dropout: float) -> nn.Sequential:
    """Dropout then the output layer, shared by every pooled family."""
    layers: list[nn.Module] = [nn.Dropout(dropout)] if dropout > 0 else []
    return nn.Sequential(*layers, nn.Linear(width, out))


# -- cnn1d ----------------------------------------------------------------------------------------
class ConvBlock(nn.Module):
    """Conv1d ('same' length, so the step mask stays aligned) -> optional BN -> activation -> dropout."""

    def __init__(self, channels_in: int, channels: int, kernel_size: int, norm: str, activation: str,
                 dropout: float):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv1d(channels_in, channels, kernel_size, padding=kernel_size // 2,
                                             bias=norm == "none")]
        if norm == "batch":
            layers.append(nn.BatchNorm1d(channels))
        layers.append(ACTIVATIONS[activation]())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class CNN1dNet(nn.Module):
    def __init__(self, config, profile):
        super().__init__()
        self.stem = InputStem(profile, config.get("embed_dim"))
        channels_in, blocks = self.stem.width, []
        for _ in range(config["blocks"]):
            blocks.append(ConvBlock(channels_in, config["channels"], config["kernel_size"], config["norm"],
                                    config["activation"], config["dropout"]))
            channels_in = config["channels"]
        self.blocks = nn.Sequential(*blocks)
        self.pool = POOLS[config["pooling"]]
        self.head = head(channels_in, output_size(profile), config["dropout"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features, mask = self.stem(x)
        # padded steps are zero embeddings, so they only blur the edges of the last real tokens
        features = self.blocks(features.transpose(1, 2)).transpose(1, 2)
        return self.head(self.pool(features, mask))


# -- embedding_bag --------------------------------------------------------------------------------
class EmbeddingBagNet(nn.Module):
    def __init__(self, config, profile):
        super().__init__()
        self.stem = InputStem(profile, config["embed_dim"])
        self.pool = POOLS[config["pooling"]]
        layers: list[nn.Module] = []
        width_in = self.stem.width
        for _ in range(config["depth"]):
            layers += [nn.Linear(width_in, config["width"]), nn.ReLU()]
            if config["dropout"] > 0:
                layers.append(nn.Dropout(config["dropout"]))
            width_in = config["width"]
        self.hidden = nn.Sequential(*layers)
        head_dropout = config["dropout"] if config["depth"] == 0 else 0.0  # hidden layers already end in dropout
        self.head = head(width_in, output_size(profile), head_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        embedded, mask = self.stem(x)
        return self.head(self.hidden(self.pool(embedded, mask)))


# -- fcn: Wang et al. (2017) ----------------------------------------------------------------------
KERNELS = (8, 5, 3)


def conv_bn_relu(channels_in: int, channels: int, kernel_size: int) -> nn.Sequential:
    # 'same' padding keeps every step, as in the paper (explicit: Conv1d's "same" copies the input for even
    # kernels, with a warning); the bias would only shift the batch norm
    return nn.Sequential(nn.ConstantPad1d(((kernel_size - 1) // 2, kernel_size // 2), 0.0),
                         nn.Conv1d(channels_in, channels, kernel_size, bias=False),
                         nn.BatchNorm1d(channels), nn.ReLU())


class FCNNet(nn.Module):
    def __init__(self, config, profile):
        super().__init__()
        width = config["channels"]
        widths = (width, 2 * width, width)
        channels_in, layers = profile.input_shape[1], []
        for channels, kernel_size in zip(widths, KERNELS):
            layers.append(conv_bn_relu(channels_in, channels, kernel_size))
            channels_in = channels
        self.layers = nn.Sequential(*layers)
        self.head = head(channels_in, output_size(profile), config["dropout"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layers(x.transpose(1, 2)).mean(2))


# -- resmlp: Gorishniy et al. (2021) --------------------------------------------------------------
NORMS = {"batch": nn.BatchNorm1d, "layer": nn.LayerNorm}


class ResidualBlock(nn.Module):
    def __init__(self, width: int, hidden: int, norm: str, hidden_dropout: float, residual_dropout: float):
        super().__init__()
        self.branch = nn.Sequential(
            NORMS[norm](width), nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(hidden_dropout),
            nn.Linear(hidden, width), nn.Dropout(residual_dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.branch(x)


# -- resnet: He et al. (2016) ---------------------------------------------------------------------
class BasicBlock(nn.Module):
    """Two 3x3 conv + BN layers with an identity shortcut, or a 1x1 projection when the shape changes."""

    def __init__(self, channels_in: int, channels: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels_in, channels, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels))
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or channels_in != channels:
            self.shortcut = nn.Sequential(nn.Conv2d(channels_in, channels, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(channels))
        self.activation = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.body(x) + self.shortcut(x))


# -- rnn --------------------------------------------------------------------------------------------
CELLS = {"gru": nn.GRU, "lstm": nn.LSTM}


class RNNNet(nn.Module):
    def __init__(self, config, profile):
        super().__init__()
        self.stem = InputStem(profile, config.get("embed_dim"))
        layers, directions = config["layers"], 2 if config["bidirectional"] else 1
        self.rnn = CELLS[config["cell"]](
            self.stem.width, config["hidden"], num_layers=layers, batch_first=True,
            bidirectional=config["bidirectional"], dropout=config["dropout"] if layers > 1 else 0.0)
        self.directions = directions
        self.pool_last = config["pooling"] == "last"
        self.head = head(config["hidden"] * directions, output_size(profile), config["dropout"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features, mask = self.stem(x)
        length = features.shape[1]
        if self.stem.text:
            lengths = mask.sum(1).cpu()  # pack_padded_sequence wants the lengths on the CPU
            packed = pack_padded_sequence(features, lengths, batch_first=True, enforce_sorted=False)
            packed_out, state = self.rnn(packed)
            outputs, _ = pad_packed_sequence(packed_out, batch_first=True, total_length=length)
        else:
            outputs, state = self.rnn(features)
        if self.pool_last:
            hidden = state[0] if isinstance(state, tuple) else state  # an LSTM also returns its cell state
            # the last layer's final state per direction -> (n, directions * hidden)
            pooled = hidden[-self.directions:].transpose(0, 1).flatten(1)
        else:
            pooled = masked_mean(outputs, mask)
        return self.head(pooled)


# -- transformer ------------------------------------------------------------------------------------
class TransformerNet(nn.Module):
    def __init__(self, config, profile):
        super().__init__()
        d_model = config["d_model"]
        self.stem = InputStem(profile, d_model, project=True)
        self.position = nn.Parameter(torch.zeros(1, sequence_length(profile), d_model))
        nn.init.normal_(self.position, std=0.02)
        layer = nn.TransformerEncoderLayer(d_model, config["heads"], d_model * config["ff_factor"],
                                           config["dropout"], batch_first=True, norm_first=True)
        # pre-norm leaves the last layer's output unnormalised, hence the final LayerNorm
        self.encoder = nn.TransformerEncoder(layer, config["layers"], norm=nn.LayerNorm(d_model),
                                             enable_nested_tensor=False)
        self.head = head(d_model, output_size(profile), config["dropout"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features, mask = self.stem(x)
        # sequences have no padding; for text the mask keeps position 0, so no row masks every key (NaN)
        padding = ~mask if self.stem.text else None
        encoded = self.encoder(features + self.position, src_key_padding_mask=padding)
        return self.head(masked_mean(encoded, mask))


# -- rocket: Dempster et al. (2020) ---------------------------------------------------------------
LENGTHS = (7, 9, 11)
SEED = 0  # fixed: every trial, refit and export of a configuration gets the same kernels


def dilations(steps: int, length: int, count: int = 8) -> list[int]:
    """Up to `count` distinct dilations, exponentially spaced, whose kernel still fits in `steps`."""
    top = math.log2(max((steps - 1) / (length - 1), 1.0))
    return sorted({int(2 ** (top * i / max(count - 1, 1))) for i in range(count)})


class RandomKernels(nn.Module):
    """(n, length, channels) -> (n, 2 * kernels) PPV and max features of fixed random kernels."""

    def __init__(self, steps: int, channels: int, kernels: int):
        super().__init__()
        generator = torch.Generator().manual_seed(SEED)
        groups = [(length, dilation) for length in LENGTHS for dilation in dilations(steps, length)]
        per_group = max(2, math.ceil(kernels / len(groups)))
        # (dilation, padding, kernels kept padded) of weight_i / bias_i: the first half of each group,
        # or all of it when the series is shorter than the kernel's span and nothing unpadded is left
        self.groups: list[tuple[int, int, int]] = []
        for i, (length, dilation) in enumerate(groups):
            weight = torch.randn(per_group, channels, length, generator=generator)
            weight -= weight.mean(dim=(1, 2), keepdim=True)
            bias = torch.rand(per_group, generator=generator) * 2 - 1
            self.register_buffer(f"weight_{i}", weight)  # buffers: saved and traced, never trained
            self.register_buffer(f"bias_{i}", bias)
            span = (length - 1) * dilation  # even: the lengths are odd, so 'same' padding is span / 2
            self.groups.append((dilation, span // 2, per_group // 2 if steps > span else per_group))
        self.per_group, self.features = per_group, 2 * per_group * len(groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(1, 2)
        steps = x.shape[2]
        features = []
        for i, (dilation, padding, kept) in enumerate(self.groups):
            out = nn.functional.conv1d(x, getattr(self, f"weight_{i}"), getattr(self, f"bias_{i}"),
                                       padding=padding, dilation=dilation)
            parts = [out[:, :kept]] + ([out[:, kept:, padding:steps - padding]] if kept < self.per_group else [])
            for part in parts:
                features += [(part > 0).to(x.dtype).mean(2), part.amax(2)]
        return torch.cat(features, 1)


class RocketNet(nn.Module):
    def __init__(self, config, profile):
        super().__init__()
        steps, channels = profile.input_shape
        self.kernels = RandomKernels(steps, channels, config["kernels"])
        # PPV lies in [0, 1] and max is unbounded: standardise both so one learning rate fits
        self.norm = nn.BatchNorm1d(self.kernels.features, affine=False)
        self.head = head(self.kernels.features, output_size(profile), config["dropout"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.kernels(x)))
