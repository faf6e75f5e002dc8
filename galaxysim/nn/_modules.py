"""Torch modules behind the galaxysim estimators (module level, so that they pickle).

Defaults reproduce the reference architectures on 64x64x3 input:

- :class:`CNNClassifierModule`: three blocks of Conv2d(32, 3x3, same) + ReLU + MaxPool(2) +
  Dropout, flatten (2048), Dense 64, Dropout, Dense 64, Dropout, Dense ``n_classes``
  (155,013 parameters at 5 classes).
- :class:`ConvAutoencoderModule`: four blocks Conv2d(32, 3x3) + MaxPool(2) down to 4x4x32,
  flatten (512), Dense ``latent_dim``, Dense 512, reshape 4x4x32, four ConvTranspose2d(32,
  stride 2) up to 64x64x32, Conv2d to 3 channels and a sigmoid (132,611 parameters). The
  activations are LeakyReLU: with ReLU the reference autoencoder collapsed to black
  reconstructions after one epoch (dead units).
- :class:`ConvVAEModule`: the same encoder with mean and log-variance heads, the
  reparameterisation trick and the same decoder.

All take images ``(N, C, H, W)`` as float in [0, 1] with ``H`` and ``W`` multiples of 16.

In every conv block the 2x2 max pooling runs *before* the (leaky) ReLU. Both are
non-decreasing, so ``act(maxpool(x)) == maxpool(act(x))`` exactly (values and gradients),
but the activation then touches 4x fewer elements: in eager mode on CPU the activation
and pooling passes over the full-resolution feature maps cost as much as the
convolutions themselves. The parameter-free layers keep their indices, so state dicts
are unchanged.

Dropout is :class:`Dropout`, which computes what ``nn.Dropout`` computes but draws its
mask on the CPU from numpy instead of torch's much slower Bernoulli sampler. At
inference the 2x2 max pooling is :class:`MaxPool2x2`: the same values from two
element-wise maxima over a channels-last view, faster than ``max_pool2d`` (which also
computes the argmax indices that only training needs). The decoders' last convolution
(to the image's 3 channels) is :class:`FewOutputsConv2d`, an ``nn.Conv2d`` computed as
the equivalent transposed convolution, whose backward pass oneDNN runs faster on the
CPU for so few output channels. The benchmarks page has the measurements.
"""

import numpy as np
import torch
from torch import nn

__all__ = ["CNNClassifierModule", "ConvAutoencoderModule", "ConvVAEModule"]

_MASK_LEVELS = 65536  # the mask compares 16 random bits per element with a threshold


class Dropout(nn.Dropout):
    """Inverted dropout (as ``nn.Dropout``) with a fast mask on the CPU.

    On the CPU, torch draws a 32-bit Mersenne-Twister number per element for
    ``nn.Dropout``'s Bernoulli mask, a large share of a training step after the CNN's
    first block (see the benchmarks page). This module draws 16 bits per
    element from numpy's SFC64, seeded from torch's default generator (so
    ``torch.manual_seed`` still fixes every mask), and keeps an element when its bits
    reach ``round(p * 65536)``; kept elements are scaled by the inverse of the exact keep
    probability, so the expected output equals the input. On other devices it calls
    :func:`torch.nn.functional.dropout`.

    Examples
    --------
    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> y = Dropout(0.25).train()(torch.ones(100_000))
    >>> round(float((y > 0).float().mean()), 2), round(float(y.max()), 4)
    (0.75, 1.3333)
    >>> bool((Dropout(0.25).eval()(torch.ones(3)) == 1).all())
    True
    """

    def forward(self, x):
        """``x`` with elements zeroed with probability ``p`` (in training mode only)."""
        if not self.training or self.p == 0:
            return x
        dense = x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last)
        if x.device.type != "cpu" or self.inplace or self.p == 1 or not dense:
            return nn.functional.dropout(x, self.p, True, self.inplace)
        threshold = round(self.p * _MASK_LEVELS)
        scale = _MASK_LEVELS / (_MASK_LEVELS - threshold)
        seed = int(torch.randint(0, 2**62, (), dtype=torch.int64))
        n = x.numel()
        bits = np.random.SFC64(seed).random_raw((n + 3) // 4).view(np.int16)[:n]
        # uniform over int16: P(bits >= threshold - 32768) = 1 - threshold / 65536
        bits = torch.from_numpy(bits).as_strided(x.shape, x.stride())  # x's memory layout
        mask = (bits >= threshold - _MASK_LEVELS // 2).to(x.dtype).mul_(scale)
        return x * mask


class FewOutputsConv2d(nn.Conv2d):
    """``nn.Conv2d`` (stride 1, same padding) computed as a transposed convolution on the CPU.

    For 3 output channels, oneDNN's convolution backward pass is slow on the CPU; the
    same map written as ``conv_transpose2d`` with the flipped, transposed kernel gives
    the same forward values and gradients and runs its backward pass with faster
    kernels (see the benchmarks page).
    Parameters and state dict are those of ``nn.Conv2d``; off the CPU, or for other
    configurations, it is ``nn.Conv2d``.

    Examples
    --------
    >>> import torch
    >>> conv = FewOutputsConv2d(8, 3, 3, padding=1)
    >>> x = torch.rand(2, 8, 16, 16)
    >>> ref = torch.nn.functional.conv2d(x, conv.weight, conv.bias, padding=1)
    >>> bool(torch.allclose(conv(x), ref, atol=1e-6))
    True
    """

    def forward(self, x):
        """The convolution of ``x``."""
        k = self.kernel_size
        same = self.padding == (k[0] // 2, k[1] // 2) and k[0] % 2 == 1 and k[1] % 2 == 1
        plain = (
            self.stride == (1, 1)
            and self.dilation == (1, 1)
            and self.groups == 1
            and self.padding_mode == "zeros"
        )
        if x.device.type != "cpu" or not (same and plain):
            return super().forward(x)
        weight = self.weight.flip(2, 3).transpose(0, 1)
        return nn.functional.conv_transpose2d(x, weight, self.bias, padding=self.padding)


class MaxPool2x2(nn.MaxPool2d):
    """``nn.MaxPool2d(2)`` whose inference on the CPU skips the argmax indices.

    Without gradients, on a CPU tensor in channels-last layout with even height and
    width, the pooled values are computed as two ``torch.maximum`` passes over a
    ``(N, H/2, 2, W/2, 2, C)`` view: exactly the values of ``max_pool2d``. Training
    (gradients enabled) uses ``max_pool2d``, whose backward pass routes each gradient to
    one maximum.

    Examples
    --------
    >>> import torch
    >>> x = torch.rand(2, 4, 8, 8).to(memory_format=torch.channels_last)
    >>> with torch.no_grad():
    ...     same = torch.equal(MaxPool2x2()(x), torch.nn.functional.max_pool2d(x, 2))
    >>> same
    True
    """

    def __init__(self):
        super().__init__(2)

    def forward(self, x):
        """2x2 max pooling with stride 2."""
        fast = (
            not (torch.is_grad_enabled() and x.requires_grad)
            and x.device.type == "cpu"
            and x.dim() == 4
            and x.shape[2] % 2 == 0
            and x.shape[3] % 2 == 0
            and x.is_contiguous(memory_format=torch.channels_last)
        )
        if not fast:
            return super().forward(x)
        n, c, h, w = x.shape
        v = x.permute(0, 2, 3, 1).view(n, h // 2, 2, w // 2, 2, c)
        rows = torch.maximum(v[:, :, 0], v[:, :, 1])  # (n, h/2, w/2, 2, c)
        return torch.maximum(rows[:, :, :, 0], rows[:, :, :, 1]).permute(0, 3, 1, 2)


def _activation(negative_slope):
    if negative_slope:
        return nn.LeakyReLU(negative_slope)
    return nn.ReLU()


def _check_size(image_size, n_blocks):
    h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    factor = 2**n_blocks
    if h % factor or w % factor or h < factor or w < factor:
        raise ValueError(
            f"image_size {h}x{w} is not a multiple of {factor}; the network halves the "
            f"image {n_blocks} times. Crop or resize the images to a multiple of {factor}."
        )
    return h, w


class CNNClassifierModule(nn.Module):
    """Small convolutional classifier: conv blocks, then a two-layer dense head.

    Parameters
    ----------
    n_classes : int, default=5
        Number of output logits.
    in_channels : int, default=3
        Image channels.
    image_size : int or (int, int), default=64
        Input height and width (multiples of ``2 ** n_blocks``).
    channels : int, default=32
        Filters of every convolution.
    n_blocks : int, default=3
        Conv + pool blocks.
    hidden : int, default=64
        Width of the dense layers (the embedding size).
    dropout : float, default=0.25
        Dropout after every block and dense layer.
    negative_slope : float, default=0.0
        0 gives ReLU (the reference), a positive value LeakyReLU.

    Examples
    --------
    >>> import torch
    >>> m = CNNClassifierModule(n_classes=5)
    >>> sum(p.numel() for p in m.parameters())
    155013
    >>> m(torch.zeros(2, 3, 64, 64)).shape
    torch.Size([2, 5])
    """

    def __init__(
        self,
        n_classes=5,
        in_channels=3,
        image_size=64,
        channels=32,
        n_blocks=3,
        hidden=64,
        dropout=0.25,
        negative_slope=0.0,
    ):
        super().__init__()
        h, w = _check_size(image_size, n_blocks)
        layers = []
        c_in = in_channels
        for _ in range(n_blocks):
            layers += [
                nn.Conv2d(c_in, channels, 3, padding=1),
                MaxPool2x2(),  # before the activation: see the module docstring
                _activation(negative_slope),
                Dropout(dropout),
            ]
            c_in = channels
        self.features = nn.Sequential(*layers)
        n_flat = channels * (h // 2**n_blocks) * (w // 2**n_blocks)
        self.embedding = nn.Sequential(
            nn.Flatten(),
            nn.Linear(n_flat, hidden),
            _activation(negative_slope),
            Dropout(dropout),
            nn.Linear(hidden, hidden),
            _activation(negative_slope),
        )
        self.head = nn.Sequential(Dropout(dropout), nn.Linear(hidden, n_classes))

    def embed(self, x):
        """Penultimate activations ``(N, hidden)``."""
        return self.embedding(self.features(x))

    def forward(self, x):
        """Class logits ``(N, n_classes)``."""
        return self.head(self.embed(x))


def _make_encoder(in_channels, image_size, channels, n_blocks, negative_slope):
    """Conv + pool blocks and a flatten; returns the stack and its output shape (C, h, w)."""
    h, w = _check_size(image_size, n_blocks)
    layers = []
    c_in = in_channels
    for _ in range(n_blocks):
        layers += [
            nn.Conv2d(c_in, channels, 3, padding=1),
            MaxPool2x2(),  # before the activation: see the module docstring
            _activation(negative_slope),
        ]
        c_in = channels
    layers.append(nn.Flatten())
    return nn.Sequential(*layers), (channels, h // 2**n_blocks, w // 2**n_blocks)


class _Decoder(nn.Module):
    def __init__(self, latent_dim, out_channels, bottom_shape, n_blocks, negative_slope):
        super().__init__()
        channels = bottom_shape[0]
        self.bottom_shape = bottom_shape
        n_flat = bottom_shape[0] * bottom_shape[1] * bottom_shape[2]
        self.dense = nn.Sequential(nn.Linear(latent_dim, n_flat), _activation(negative_slope))
        layers = []
        for _ in range(n_blocks):
            layers += [
                nn.ConvTranspose2d(channels, channels, 3, stride=2, padding=1, output_padding=1),
                _activation(negative_slope),
            ]
        layers += [FewOutputsConv2d(channels, out_channels, 3, padding=1), nn.Sigmoid()]
        self.deconv = nn.Sequential(*layers)

    def forward(self, z):
        h = self.dense(z).view(-1, *self.bottom_shape)
        return self.deconv(h)


class ConvAutoencoderModule(nn.Module):
    """Convolutional autoencoder with a dense latent layer.

    Parameters
    ----------
    latent_dim : int, default=64
        Size of the latent code.
    in_channels : int, default=3
        Image channels.
    image_size : int or (int, int), default=64
        Input height and width (multiples of ``2 ** n_blocks``).
    channels : int, default=32
        Filters of every (transposed) convolution.
    n_blocks : int, default=4
        Down- and up-sampling blocks.
    negative_slope : float, default=0.01
        LeakyReLU slope; 0 gives ReLU (which collapsed in the reference).

    Examples
    --------
    >>> import torch
    >>> m = ConvAutoencoderModule()
    >>> sum(p.numel() for p in m.parameters())
    132611
    >>> m(torch.zeros(2, 3, 64, 64)).shape
    torch.Size([2, 3, 64, 64])
    """

    def __init__(
        self,
        latent_dim=64,
        in_channels=3,
        image_size=64,
        channels=32,
        n_blocks=4,
        negative_slope=0.01,
    ):
        super().__init__()
        self.encoder, bottom = _make_encoder(
            in_channels, image_size, channels, n_blocks, negative_slope
        )
        self.to_latent = nn.Linear(bottom[0] * bottom[1] * bottom[2], latent_dim)
        self.decoder = _Decoder(latent_dim, in_channels, bottom, n_blocks, negative_slope)

    def encode(self, x):
        """Latent codes ``(N, latent_dim)``."""
        return self.to_latent(self.encoder(x))

    def decode(self, z):
        """Images ``(N, C, H, W)`` in [0, 1] from latent codes."""
        return self.decoder(z)

    def forward(self, x):
        """Reconstructions of ``x``."""
        return self.decode(self.encode(x))


class ConvVAEModule(nn.Module):
    """Convolutional variational autoencoder (the autoencoder with Gaussian latents).

    Parameters are those of :class:`ConvAutoencoderModule`. ``forward`` returns
    ``(reconstruction, mean, log_variance)``; in eval mode the reconstruction decodes
    the mean.

    Examples
    --------
    >>> import torch
    >>> m = ConvVAEModule(latent_dim=8, image_size=16).eval()
    >>> [t.shape[1] for t in m(torch.zeros(2, 3, 16, 16))]
    [3, 8, 8]
    """

    def __init__(
        self,
        latent_dim=64,
        in_channels=3,
        image_size=64,
        channels=32,
        n_blocks=4,
        negative_slope=0.01,
    ):
        super().__init__()
        self.encoder, bottom = _make_encoder(
            in_channels, image_size, channels, n_blocks, negative_slope
        )
        n_flat = bottom[0] * bottom[1] * bottom[2]
        self.to_mean = nn.Linear(n_flat, latent_dim)
        self.to_logvar = nn.Linear(n_flat, latent_dim)
        self.decoder = _Decoder(latent_dim, in_channels, bottom, n_blocks, negative_slope)

    def encode(self, x):
        """Posterior means and log-variances, each ``(N, latent_dim)``."""
        h = self.encoder(x)
        # clamped so that exp() stays finite early in training
        return self.to_mean(h), self.to_logvar(h).clamp(-12.0, 8.0)

    def decode(self, z):
        """Images ``(N, C, H, W)`` in [0, 1] from latent codes."""
        return self.decoder(z)

    def forward(self, x):
        """``(reconstruction, mean, log_variance)``; sampled latents in train mode."""
        mean, logvar = self.encode(x)
        z = mean + torch.randn_like(mean) * torch.exp(0.5 * logvar) if self.training else mean
        return self.decode(z), mean, logvar
