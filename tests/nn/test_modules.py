"""The fast layers behind the torch modules: Dropout and FewOutputsConv2d."""

import pytest
import torch
from torch import nn

from galaxysim.nn._modules import (
    CNNClassifierModule,
    ConvAutoencoderModule,
    ConvVAEModule,
    Dropout,
    FewOutputsConv2d,
    MaxPool2x2,
)


@pytest.mark.parametrize("p", [0.1, 0.25, 0.5, 0.9])
def test_dropout_keeps_the_right_fraction_and_the_expectation(p):
    torch.manual_seed(0)
    x = torch.rand(400_000) + 0.5
    y = Dropout(p).train()(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - (1 - p)) < 4e-3
    scale = (y[kept] / x[kept]).unique()
    assert torch.allclose(scale, torch.full_like(scale, 1 / (1 - p)), rtol=1e-4)
    assert abs(y.mean().item() / x.mean().item() - 1) < 1e-2


def test_dropout_is_seeded_by_torch_and_varies_between_calls():
    drop = Dropout(0.5).train()
    x = torch.ones(1000)
    torch.manual_seed(3)
    a, b = drop(x), drop(x)
    torch.manual_seed(3)
    assert torch.equal(drop(x), a)
    assert not torch.equal(a, b)


def test_dropout_gradient_is_the_scaled_mask():
    torch.manual_seed(0)
    x = torch.rand(4, 8, 6, 6).requires_grad_()
    y = Dropout(0.25).train()(x)
    y.sum().backward()
    mask = (y != 0).float() / 0.75
    assert torch.allclose(x.grad, mask)


def test_dropout_keeps_memory_format_and_dtype():
    torch.manual_seed(0)
    x = torch.rand(2, 5, 4, 4).to(memory_format=torch.channels_last)
    y = Dropout(0.3).train()(x)
    assert y.is_contiguous(memory_format=torch.channels_last)
    kept = y != 0
    assert torch.allclose(y[kept], x[kept] / 0.7)
    assert Dropout(0.3).train()(x.bfloat16()).dtype == torch.bfloat16


def test_dropout_identity_in_eval_and_edge_rates():
    x = torch.rand(3, 4)
    assert torch.equal(Dropout(0.5).eval()(x), x)
    assert torch.equal(Dropout(0.0).train()(x), x)
    assert torch.equal(Dropout(1.0).train()(x), torch.zeros_like(x))
    strided = torch.rand(6, 6)[:, ::2]  # neither layout: falls back to torch's dropout
    assert Dropout(0.5).train()(strided).shape == (6, 3)


@pytest.mark.parametrize("out_channels", [1, 3, 8])
def test_few_outputs_conv_matches_conv2d(out_channels):
    torch.manual_seed(0)
    fast = FewOutputsConv2d(6, out_channels, 3, padding=1)
    ref = nn.Conv2d(6, out_channels, 3, padding=1)
    ref.load_state_dict(fast.state_dict())
    x = torch.rand(3, 6, 10, 12).to(memory_format=torch.channels_last)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = fast(xa), ref(xb)
    assert torch.allclose(ya, yb, atol=1e-6)
    g = torch.rand_like(ya)
    ya.backward(g)
    yb.backward(g)
    assert torch.allclose(xa.grad, xb.grad, atol=1e-5)
    assert torch.allclose(fast.weight.grad, ref.weight.grad, rtol=1e-4, atol=1e-4)
    assert torch.allclose(fast.bias.grad, ref.bias.grad, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "kwargs", [dict(padding=0), dict(padding=1, stride=2), dict(padding=2, dilation=2)]
)
def test_few_outputs_conv_other_configurations_are_conv2d(kwargs):
    torch.manual_seed(0)
    fast = FewOutputsConv2d(4, 3, 3, **kwargs)
    x = torch.rand(2, 4, 9, 9)
    ref = nn.functional.conv2d(
        x,
        fast.weight,
        fast.bias,
        stride=fast.stride,
        padding=fast.padding,
        dilation=fast.dilation,
    )
    assert torch.equal(fast(x), ref)


@pytest.mark.parametrize("module", [CNNClassifierModule, ConvAutoencoderModule, ConvVAEModule])
def test_state_dicts_are_those_of_the_plain_layers(module):
    # the fast layers add no parameters or buffers: saved weights stay interchangeable
    names = list(module().state_dict())
    assert all(n.endswith(("weight", "bias")) for n in names)
    assert not any(isinstance(m, nn.Dropout) and type(m) is nn.Dropout for m in module().modules())


@pytest.mark.parametrize("shape", [(3, 5, 8, 6), (1, 32, 64, 64), (2, 3, 7, 8)])
def test_max_pool_inference_equals_max_pool2d(shape):
    torch.manual_seed(0)
    x = torch.randn(shape)
    x[:, :, :2, :2] = 0.5  # ties
    pool = MaxPool2x2()
    for layout in (torch.channels_last, torch.contiguous_format):
        xl = x.to(memory_format=layout)
        with torch.inference_mode():
            assert torch.equal(pool(xl), nn.functional.max_pool2d(xl, 2))
        with torch.no_grad():
            assert torch.equal(pool(xl), nn.functional.max_pool2d(xl, 2))


def test_max_pool_training_routes_each_gradient_to_one_maximum():
    x = torch.zeros(1, 2, 4, 4).to(memory_format=torch.channels_last).requires_grad_()
    MaxPool2x2()(x).sum().backward()  # all ties: max_pool2d picks one per window
    assert x.grad.sum().item() == 8 and x.grad.max().item() == 1
