import pytest
import torch
import torch.nn as nn

from reidbench.models import (
    EmbedderContractError, ModuleEmbedder, build_architecture, from_fastreid, from_torchreid, validate_embedder,
)
from reidbench.registry import ARCHITECTURES

ARCHS = ARCHITECTURES.names()


@pytest.fixture(scope="module", params=ARCHS)
def model(request):
    from reidbench.models.imagenet import PretrainedMissingError

    torch.manual_seed(0)
    try:
        m = build_architecture(request.param, num_classes=7)
    except PretrainedMissingError as e:  # an architecture whose network code comes with reidbench[pretrained]
        pytest.skip(str(e))
    # small inputs keep the ResNet-50 / DenseNet-121 checks fast on a CPU; they are fully convolutional
    if request.param != "resnet-small":
        m.input_size = (64, 32)
    return m.eval()


def test_every_architecture_is_registered():
    assert {"ft-net", "ft-net-dense", "bnneck", "resnet-small"} <= set(ARCHS)


def test_contract_shapes_range_and_no_inplace_change(model):
    x = torch.rand(3, 3, *model.input_size, generator=torch.Generator().manual_seed(1))
    x0 = x.clone()
    with torch.no_grad():
        f = model(x)
    assert torch.equal(x, x0)
    assert f.shape == (3, model.feature_dim) and f.dtype == torch.float32
    assert torch.isfinite(f).all()
    assert validate_embedder(model) == model.feature_dim


def test_eval_feature_is_normalised_and_flip_symmetric(model):
    x = torch.rand(2, 3, *model.input_size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        f, f_flip = model(x), model(x.flip(3))
    torch.testing.assert_close(f.norm(dim=1), torch.ones(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(f, f_flip, atol=1e-5, rtol=0)
    model.flip_tta = False
    try:
        with torch.no_grad():
            g, g_flip = model(x), model(x.flip(3))
        assert not torch.allclose(g, g_flip, atol=1e-4)  # TTA is what made it symmetric
    finally:
        model.flip_tta = True


def test_logits_and_train_outputs(model):
    x = torch.rand(4, 3, *model.input_size)
    assert model.logits(x).shape == (4, 7)
    model.train()
    try:
        out = model.forward_train(x)
    finally:
        model.eval()
    assert out.logits.shape == (4, 7) and out.feature.shape[0] == 4


def test_gradient_reaches_the_input(model):
    x = torch.rand(2, 3, *model.input_size, requires_grad=True)
    (model(x) * torch.randn(2, model.feature_dim)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


# ---------------------------------------------------------------------------- validation errors

class Returns(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn
        self.lin = nn.Linear(1, 1)

    def forward(self, x):
        return self.fn(x)


@pytest.mark.parametrize("fn,message", [
    (lambda x: (x.mean((2, 3)), x.mean((2, 3))), "returned a tuple"),
    (lambda x: x.mean(2), "expected 2-D"),
    (lambda x: x.mean((2, 3))[:1], "returned 1 rows for a batch of 2"),
    (lambda x: x.mean((2, 3)) * float("nan"), "NaN or inf"),
    (lambda x: x.mul_(0.5).mean((2, 3)), "modified its input in place"),
    (lambda x: (x.mean((2, 3)) > 0.5).long(), "floating-point"),
])
def test_validate_embedder_says_what_is_wrong(fn, message):
    with pytest.raises(EmbedderContractError, match=message):
        validate_embedder(Returns(fn), input_size=(8, 4))


def test_validate_restores_train_mode():
    m = Returns(lambda x: x.mean((2, 3))).train()
    validate_embedder(m, input_size=(8, 4))
    assert m.training


# ---------------------------------------------------------------------------- adapters

class FastReIDLike(nn.Module):
    """Mimics fast-reid: dict input in [0, 255], in-place normalisation, features in eval mode."""

    def __init__(self):
        super().__init__()
        self.register_buffer("pixel_mean", torch.tensor([123.675, 116.28, 103.53]).view(1, 3, 1, 1))
        self.register_buffer("pixel_std", torch.tensor([58.395, 57.12, 57.375]).view(1, 3, 1, 1))
        self.conv = nn.Conv2d(3, 8, 3)

    def forward(self, batched):
        images = batched["images"]
        images.sub_(self.pixel_mean).div_(self.pixel_std)  # in place, as fast-reid's preprocess_image
        return self.conv(images).mean((2, 3))


class TorchreidLike(nn.Module):
    """Mimics torchreid: normalised input; eval -> features, train -> (logits, features)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        f = self.conv(x).mean((2, 3))
        return (self.fc(f), f) if self.training else f


def test_fastreid_adapter_scales_and_protects_the_input():
    torch.manual_seed(0)
    inner = FastReIDLike().eval()
    emb = from_fastreid(inner, input_size=(16, 8), flip_tta=False, normalize_feature=False)
    x = torch.rand(2, 3, 16, 8)
    x0 = x.clone()
    with torch.no_grad():
        f = emb(x)
        expected = inner.conv((x0 * 255 - inner.pixel_mean) / inner.pixel_std).mean((2, 3))
    assert torch.equal(x, x0)
    torch.testing.assert_close(f, expected)
    assert validate_embedder(emb) == 8


def test_torchreid_adapter_features_and_logits():
    inner = TorchreidLike()
    emb = from_torchreid(inner, input_size=(16, 8)).eval()
    assert validate_embedder(emb) == 8
    emb.train()
    out = emb.forward_train(torch.rand(3, 3, 16, 8))
    assert out.logits.shape == (3, 5) and out.feature.shape == (3, 8)


def test_module_embedder_without_normalisation_clones():
    inner = Returns(lambda x: x.mul_(2).mean((2, 3)))
    emb = ModuleEmbedder(inner, input_size=(8, 4), mean=None, std=None, flip_tta=False)
    assert validate_embedder(emb) == 3


def test_small_resnet_stems():
    m = build_architecture("resnet-small", 5, input_size=(256, 128), stem="resnet").eval()
    assert validate_embedder(m) == 192 and m.input_size == (256, 128)
    with pytest.raises(ValueError, match="stem must be"):
        build_architecture("resnet-small", 5, stem="vit")
