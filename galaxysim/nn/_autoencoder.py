"""AEEncoder and VAEEncoder: unsupervised latent features, reconstructions and generation."""

import numbers
from functools import partial

import numpy as np
import torch
from sklearn.base import ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils import check_random_state

from galaxysim.nn._augment import dihedral_mean
from galaxysim.nn._estimator import MAX_WIDTH, _TorchImageEstimator
from galaxysim.nn._modules import ConvAutoencoderModule, ConvVAEModule
from galaxysim.nn._nets import _AENet, _VAENet
from galaxysim.nn._runtime import RUNTIME_PARAMS_DOC, autocast, torch_threads
from galaxysim.nn._tensors import INFER_BATCH_SIZE, check_nn_images, tensor_to_images
from galaxysim.utils._memory import check_memory
from galaxysim.utils._sklearn_compat import Interval, Real, fit_context, positive_int

__all__ = ["AEEncoder", "VAEEncoder"]

_COMMON_PARAMS_DOC = (
    """
    orientation_invariant : bool, default=False
        If True, ``transform`` returns the mean latent code of the image's 8 flips and
        90-degree rotations (4 flips for non-square images): every orientation of a
        galaxy gets the same code, so a search in latent space ranks by morphology, not
        by position angle (the benchmarks page shows what it does to retrieval).
        Encoding costs 8 forward passes. Decoding such a code gives a
        symmetrised, blurrier galaxy; ``generate_like`` and ``interpolate`` always use
        the plain codes.
    channels : int, default=32
        Filters per (transposed) convolution.
    augment : bool, default=True
        Random flips and 90-degree rotations of training images.
    max_epochs : int, default=10
        Training epochs.
    lr : float, default=1e-3
        Adam learning rate.
    batch_size : int, default=64
        Training batch size.
    validation_fraction : float or None, default=0.1
        Share of the images held out to report ``valid_loss`` in ``history_``;
        ``None`` or 0 trains on everything."""
    + RUNTIME_PARAMS_DOC
    + """
    random_state : int, RandomState instance or None, default=None
        Seeds initialisation, shuffling and augmentation inside ``torch.random.fork_rng``
        (the global torch RNG is untouched). The same int gives a bitwise identical
        model on the CPU for the same ``n_jobs`` (thread count), kind of CPU and torch
        version (not guaranteed on a GPU).
    verbose : int, default=0
        1 shows a progress bar over epochs, 2 also skorch's per-epoch table."""
)


class _BaseAutoencoder(ClassNamePrefixFeaturesOutMixin, TransformerMixin, _TorchImageEstimator):
    _module = None
    _net_cls = None
    _parameter_constraints = {
        **_TorchImageEstimator._parameter_constraints,
        "latent_dim": [positive_int(MAX_WIDTH)],
        "orientation_invariant": ["boolean"],
    }

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = False
        return tags

    def _net_params(self):
        return {}

    @fit_context
    def fit(self, X, y=None):
        """Train the network to reconstruct ``X`` (labels are ignored).

        Parameters
        ----------
        X : array-like of shape (n_samples, height, width, n_channels)
            Training images, uint8 (0-255) or float in [0, 1]; height and width
            multiples of 16.
        y : None
            Ignored; accepted for Pipeline compatibility.

        Returns
        -------
        self
            The fitted estimator.
        """
        X = check_nn_images(X)
        if len(X) < 2:
            raise ValueError(f"Got {len(X)} image; training needs at least 2 images.")
        self.image_shape_ = tuple(X.shape[1:])
        self._fit_net(
            X, None, module_init=partial(_init_output_bias, channel_mean=_channel_mean(X))
        )
        self._n_features_out = self.latent_dim
        return self

    def _net_spec(self):
        return {
            "net_cls": self._net_cls,
            "module": self._module,
            "criterion": torch.nn.MSELoss,  # unused: the nets compute their own loss
            "net_params": {"augment": self.augment, **self._net_params()},
            "balanced": False,
        }

    def _module_params(self):
        h, w, c = self.image_shape_
        return {
            "latent_dim": self.latent_dim,
            "in_channels": c,
            "image_size": (h, w),
            "channels": self.channels,
        }

    def _restore_net(self, module_state, criterion_state):
        super()._restore_net(module_state, criterion_state)
        self._n_features_out = self.latent_dim
        return self

    def _encode_fn(self):
        return lambda m, x: m.encode(x)

    def transform(self, X):
        """Latent codes of ``X`` (averaged over orientations if ``orientation_invariant``).

        Parameters
        ----------
        X : array-like of shape (n_samples, height, width, n_channels)
            Images of the fitted size.

        Returns
        -------
        latents : ndarray of shape (n_samples, latent_dim)
            float32.
        """
        return self._encode(X, invariant=self.orientation_invariant)

    def _encode(self, X, invariant=False):
        X = self._validate_fitted(X)
        encode = self._encode_fn()
        if invariant:
            return self._infer(X, lambda m, x: dihedral_mean(partial(encode, m), x))
        return self._infer(X, encode)

    def _check_decode_memory(self, n_images, what):
        """A clear error, before anything is allocated, when ``n_images`` decoded images
        (uint8) and their latent draws (float64, then float32) do not fit in memory."""
        per_image = int(np.prod(self.image_shape_)) + 12 * self.latent_dim
        check_memory(
            n_images * per_image,
            f"{type(self).__name__}.{what} of {n_images:,} images",
            per_item=(per_image, "images"),
            hint="Ask for fewer images per call.",
        )

    def _decode(self, Z):
        if not np.isfinite(Z).all():  # draws far out (a huge scale) overflow float32
            raise ValueError(
                "The latent codes to decode hold NaN or infinite values (a scale too large "
                "for float32?). Pass finite codes of a sensible size."
            )
        module = self.net_.module_.eval()
        device = self.net_.device
        out = np.empty((len(Z), *self.image_shape_), dtype=np.uint8)
        with (
            torch_threads(self.n_jobs),
            torch.inference_mode(),
            autocast(device, self.precision),
        ):
            for start in range(0, len(Z), INFER_BATCH_SIZE):
                z = torch.as_tensor(Z[start : start + INFER_BATCH_SIZE], device=device)
                decoded = module.decode(z)
                if not bool(torch.isfinite(decoded).all()):
                    raise ValueError(
                        "The decoder output NaN or infinite values for latent codes of "
                        f"magnitude up to {float(np.abs(Z).max()):.3g}; pass codes on the "
                        "scale of transform's output (a smaller scale in generate_like)."
                    )
                out[start : start + len(z)] = tensor_to_images(decoded)
        return out

    def inverse_transform(self, X):
        """Decode latent codes to uint8 images ``(n_samples, height, width, n_channels)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, latent_dim)
            Latent codes (from ``transform``).

        Returns
        -------
        images : ndarray of shape (n_samples, height, width, n_channels)
            uint8, the catalogue's format.
        """
        self._check_fitted()
        Z = np.asarray(X)
        if not (np.issubdtype(Z.dtype, np.number) or Z.dtype == np.bool_) or np.iscomplexobj(Z):
            raise TypeError(
                f"inverse_transform expects latent codes (real numbers); got dtype {Z.dtype}."
            )
        Z = Z.astype(np.float32, copy=False)
        if Z.ndim == 1:
            Z = Z[np.newaxis]
        if Z.ndim != 2 or Z.shape[1] != self.latent_dim or len(Z) == 0:
            raise ValueError(
                f"inverse_transform expects latent codes of shape (n_samples, {self.latent_dim}) "
                f"with n_samples >= 1; got {Z.shape}. Pass the output of transform."
            )
        if not np.all(np.isfinite(Z)):
            raise ValueError("Latent codes contain NaN or infinite values.")
        return self._decode(Z)

    def reconstruct(self, X):
        """Encode and decode ``X``: uint8 reconstructions of the fitted image shape."""
        return self.inverse_transform(self.transform(X))

    def reconstruction_error(self, X):
        """Mean squared reconstruction error per image, in [0, 1] pixel units.

        Parameters
        ----------
        X : array-like of shape (n_samples, height, width, n_channels)
            Images of the fitted size.

        Returns
        -------
        errors : ndarray of shape (n_samples,)
            float64; compare with the error of the mean training image to check that
            training did not collapse.
        """
        X = self._validate_fitted(X)
        recon_fn = self._recon_fn()

        def fn(m, x):
            return (recon_fn(m, x) - x).pow(2).flatten(1).mean(1)

        return self._infer(X, fn).astype(np.float64)

    def _recon_fn(self):
        return lambda m, x: m(x)


class AEEncoder(_BaseAutoencoder):
    __doc__ = (
        """Convolutional autoencoder whose latent codes are search features.

    Unsupervised: ``fit(X)`` trains the network to reconstruct the images (mean squared
    error, Adam); ``transform`` gives the latent codes, ``inverse_transform`` decodes
    codes back to uint8 images, and ``reconstruction_error`` gives the per-image error.
    The activations are LeakyReLU (with ReLU the reference network collapsed to black
    reconstructions).

    Parameters
    ----------
    latent_dim : int, default=64
        Size of the latent code."""
        + _COMMON_PARAMS_DOC
        + """

    Attributes
    ----------
    image_shape_ : tuple of int
        ``(height, width, n_channels)`` of the training images.
    net_ : skorch.NeuralNet
        The trained net; its ``module_`` is a :class:`ConvAutoencoderModule`.
    history_ : list of dict
        Per epoch: ``epoch``, ``train_loss`` and ``valid_loss`` (pixel MSE), ``dur``.

    See Also
    --------
    VAEEncoder : Variational version that also generates images.

    Examples
    --------
    >>> import numpy as np
    >>> from galaxysim.nn import AEEncoder
    >>> X = np.random.default_rng(0).integers(0, 256, (16, 16, 16, 3), dtype=np.uint8)
    >>> ae = AEEncoder(latent_dim=8, max_epochs=1, random_state=0).fit(X)
    >>> Z = ae.transform(X)
    >>> Z.shape, Z.dtype
    ((16, 8), dtype('float32'))
    >>> ae.inverse_transform(Z).shape
    (16, 16, 16, 3)
    """
    )

    _module = ConvAutoencoderModule
    _net_cls = _AENet
    _progress_desc = "autoencoder"

    def __init__(
        self,
        latent_dim=64,
        *,
        orientation_invariant=False,
        channels=32,
        augment=True,
        max_epochs=10,
        lr=1e-3,
        batch_size=64,
        validation_fraction=0.1,
        device="cpu",
        n_jobs=None,
        precision="float32",
        random_state=None,
        verbose=0,
    ):
        self.latent_dim = latent_dim
        self.orientation_invariant = orientation_invariant
        self.channels = channels
        self.augment = augment
        self.max_epochs = max_epochs
        self.lr = lr
        self.batch_size = batch_size
        self.validation_fraction = validation_fraction
        self.device = device
        self.n_jobs = n_jobs
        self.precision = precision
        self.random_state = random_state
        self.verbose = verbose


class VAEEncoder(_BaseAutoencoder):
    __doc__ = (
        """Convolutional variational autoencoder: latent search features and new galaxies.

    ``transform`` gives posterior means; ``sample`` decodes draws from the prior into
    new galaxies; ``generate_like`` draws latents around a query's (the Milky Way:
    "more galaxies like ours"); ``interpolate`` walks the latent line between two
    galaxies. Generated images are uint8, in the catalogue's format.

    The loss per image is the summed squared pixel error plus ``beta`` times the KL
    divergence of the posterior from the standard normal prior.

    Parameters
    ----------
    latent_dim : int, default=64
        Size of the latent code.
    beta : float, default=1.0
        Weight of the KL term (larger: smoother latent space, blurrier images)."""
        + _COMMON_PARAMS_DOC
        + """

    Attributes
    ----------
    image_shape_ : tuple of int
        ``(height, width, n_channels)`` of the training images.
    net_ : skorch.NeuralNet
        The trained net; its ``module_`` is a :class:`ConvVAEModule`.
    history_ : list of dict
        Per epoch: ``epoch``, ``train_loss`` and ``valid_loss`` (summed squared error
        plus ``beta`` KL, per image), ``dur``.

    See Also
    --------
    AEEncoder : Deterministic autoencoder.

    Examples
    --------
    >>> import numpy as np
    >>> from galaxysim.nn import VAEEncoder
    >>> X = np.random.default_rng(0).integers(0, 256, (16, 16, 16, 3), dtype=np.uint8)
    >>> vae = VAEEncoder(latent_dim=8, max_epochs=1, random_state=0).fit(X)
    >>> vae.sample(4, random_state=0).shape
    (4, 16, 16, 3)
    >>> vae.generate_like(X[:1], 3, random_state=0).dtype
    dtype('uint8')
    >>> vae.interpolate(X[0], X[1], n_steps=5).shape
    (5, 16, 16, 3)
    """
    )

    _module = ConvVAEModule
    _net_cls = _VAENet
    _progress_desc = "VAE"
    _divergence_hint = "Lower lr or beta"
    _parameter_constraints = {
        **_BaseAutoencoder._parameter_constraints,
        "beta": [Interval(Real, 0, None, closed="left")],
    }

    def __init__(
        self,
        latent_dim=64,
        *,
        beta=1.0,
        orientation_invariant=False,
        channels=32,
        augment=True,
        max_epochs=10,
        lr=1e-3,
        batch_size=64,
        validation_fraction=0.1,
        device="cpu",
        n_jobs=None,
        precision="float32",
        random_state=None,
        verbose=0,
    ):
        self.latent_dim = latent_dim
        self.beta = beta
        self.orientation_invariant = orientation_invariant
        self.channels = channels
        self.augment = augment
        self.max_epochs = max_epochs
        self.lr = lr
        self.batch_size = batch_size
        self.validation_fraction = validation_fraction
        self.device = device
        self.n_jobs = n_jobs
        self.precision = precision
        self.random_state = random_state
        self.verbose = verbose

    def _net_params(self):
        return {"beta": float(self.beta)}

    def _encode_fn(self):
        return lambda m, x: m.encode(x)[0]

    def _recon_fn(self):
        return lambda m, x: m.decode(m.encode(x)[0])

    def sample(self, n_samples=1, *, random_state=None):
        """Generate new galaxies by decoding draws from the standard normal prior.

        Parameters
        ----------
        n_samples : int, default=1
            Number of images.
        random_state : int, RandomState instance or None, default=None
            Seed of the draws (NumPy; torch's RNG is not used).

        Returns
        -------
        images : ndarray of shape (n_samples, height, width, n_channels)
            uint8.
        """
        self._check_fitted()
        n_samples = _check_n(n_samples, "n_samples")
        self._check_decode_memory(n_samples, "sample")
        rng = check_random_state(random_state)
        Z = rng.standard_normal((n_samples, self.latent_dim)).astype(np.float32)
        return self._decode(Z)

    def generate_like(self, X, n_samples=16, *, scale=0.5, random_state=None):
        """Generate galaxies near the latent code of each query image.

        Latents are drawn from ``N(mean(x), scale**2 I)``, where ``mean(x)`` is the
        posterior mean of the query and ``scale`` is in units of the prior's standard
        deviation (the spread of the whole catalogue in latent space): ``scale=0``
        gives the query's reconstruction, ``scale=1`` roughly a random galaxy.

        Parameters
        ----------
        X : array-like of shape (n_queries, height, width, n_channels)
            Query images (one image is accepted), of the fitted size.
        n_samples : int, default=16
            Images per query.
        scale : float, default=0.5
            Spread around the query's latent code.
        random_state : int, RandomState instance or None, default=None
            Seed of the draws.

        Returns
        -------
        images : ndarray of shape (n_queries * n_samples, height, width, n_channels)
            uint8, grouped by query.
        """
        n_samples = _check_n(n_samples, "n_samples")
        if not (
            isinstance(scale, numbers.Real)
            and not isinstance(scale, bool)
            and np.isfinite(scale)
            and scale >= 0
        ):
            raise ValueError(f"scale must be a finite number >= 0; got {scale!r}.")
        X = self._validate_fitted(X)
        self._check_decode_memory(len(X) * n_samples, "generate_like")
        mean = self._encode(X)
        rng = check_random_state(random_state)
        noise = rng.standard_normal((len(mean), n_samples, self.latent_dim)).astype(np.float32)
        Z = mean[:, np.newaxis, :] + np.float32(scale) * noise
        return self._decode(Z.reshape(-1, self.latent_dim))

    def interpolate(self, x_a, x_b, n_steps=8):
        """Decode evenly spaced points on the latent line from image ``x_a`` to ``x_b``.

        Parameters
        ----------
        x_a, x_b : array-like of shape (height, width, n_channels)
            The two end images (a batch of one is accepted).
        n_steps : int, default=8
            Number of images, end points included (at least 2).

        Returns
        -------
        images : ndarray of shape (n_steps, height, width, n_channels)
            uint8.
        """
        n_steps = _check_n(n_steps, "n_steps", minimum=2)
        self._check_fitted()
        self._check_decode_memory(n_steps, "interpolate")
        za = self._encode(_one_image(x_a, "x_a"))[0]
        zb = self._encode(_one_image(x_b, "x_b"))[0]
        t = np.linspace(0.0, 1.0, n_steps, dtype=np.float32)[:, np.newaxis]
        return self._decode((1 - t) * za + t * zb)


def _channel_mean(X, max_images=2048):
    """Mean pixel value per channel in [0, 1], from at most ``max_images`` images."""
    step = max(1, len(X) // max_images)
    m = X[::step].mean(axis=(0, 1, 2), dtype=np.float64)
    return m / 255.0 if X.dtype == np.uint8 else m


def _init_output_bias(module, channel_mean):
    """Start the decoder at the mean colour: sigmoid(bias) = per-channel mean.

    Galaxy images are mostly dark sky; from the default sigmoid(0) = 0.5 the network
    first spends its early steps learning the background, and a ReLU network can die
    there (the reference autoencoder collapsed to black).
    """
    p = np.clip(np.asarray(channel_mean, dtype=np.float64), 1e-3, 1 - 1e-3)
    final_conv = module.decoder.deconv[-2]
    with torch.no_grad():
        final_conv.bias.copy_(torch.as_tensor(np.log(p / (1 - p)), dtype=final_conv.bias.dtype))


def _check_n(n, name, minimum=1):
    if not isinstance(n, numbers.Integral) or isinstance(n, bool) or n < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}; got {n!r}.")
    return int(n)


def _one_image(x, name):
    x = check_nn_images(x, name=name)
    if len(x) != 1:
        raise ValueError(f"{name} must be one image; got a batch of {len(x)}.")
    return x
