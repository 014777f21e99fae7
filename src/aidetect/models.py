"""The CNNs, with the original project's architectures. Each returns one logit (FAKE = 1).

The originals ended in Sigmoid and trained with BCELoss; here the sigmoid moves into
BCEWithLogitsLoss, which is the numerically stable form of the same objective.
"""

from torch import nn

MODELS = ("seed_cifake_cnn", "seed_flux_cnn")


def seed_cifake_cnn() -> nn.Sequential:
    """3 convs for 32x32 CIFAKE images (the original `CNN` class)."""
    def block(cin, cout):
        return [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]

    return nn.Sequential(
        *block(3, 32), *block(32, 64), *block(64, 128),
        nn.Flatten(),
        nn.Linear(128 * 4 * 4, 256), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(256, 64), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(64, 1),
    )


def seed_flux_cnn() -> nn.Sequential:
    """5 convs for high-resolution images (the original FLUX model, 2,389,313 parameters).

    Adaptive pooling at the end makes it independent of the input resolution.
    """
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, stride=2, padding=3), nn.ReLU(), nn.MaxPool2d(3, 2, 1),
        nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2, 1),
        nn.Conv2d(64, 128, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(128, 256, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(256, 512, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(512, 1024), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(1024, 256), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(256, 1),
    )


def build_model(arch: str) -> nn.Module:
    if arch == "seed_cifake_cnn":
        return seed_cifake_cnn()
    elif arch == "seed_flux_cnn":
        return seed_flux_cnn()
    raise ValueError(f"unknown model.arch={arch!r}; valid names: {', '.join(MODELS)}")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
