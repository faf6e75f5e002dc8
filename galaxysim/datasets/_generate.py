"""Procedural, survey-like galaxy images in the ten Galaxy10 DECaLS classes.

Every image is rendered from a small set of structural parameters (a Sersic bulge, an
exponential disk with logarithmic spiral arms, a bar, a companion, tidal features, a dust
lane) and then observed like a DECaLS colour cutout: Gaussian PSF, foreground stars,
per-band sky noise and an asinh stretch. Lengths are in *reference pixels*: the pixels of
the central 64x64 crop of a 256 px Galaxy10 DECaLS cutout (0.262 arcsec each), so the
frame always spans 64 reference pixels whatever ``image_size`` is.
"""

import math
import numbers
from functools import lru_cache

import numpy as np
from sklearn.utils import check_random_state

from galaxysim import GALAXY10_CLASSES
from galaxysim.utils._memory import check_memory

__all__ = ["PARAM_FIELDS", "make_galaxies", "render_galaxy"]

_FRAME = 64.0  # reference pixels across the frame, at every image_size

# (name, dtype, description); the order is the order of the record array's fields
_FIELDS = [
    ("label", np.int64, "Galaxy10 class code 0-9"),
    ("seed", np.int64, "seed of the per-image randomness (knots, clumps, stars, noise)"),
    ("x0", np.float32, "centre offset to the right, reference pixels"),
    ("y0", np.float32, "centre offset downwards, reference pixels"),
    ("pa", np.float32, "position angle of the major axis, radians"),
    ("incl", np.float32, "disk inclination, degrees (0 face-on, 90 edge-on)"),
    ("thickness", np.float32, "intrinsic disk axis ratio (edge-on thickness)"),
    ("flux", np.float32, "total flux of the galaxy (companion excluded)"),
    ("bulge_frac", np.float32, "bulge-to-total flux ratio (1 for smooth galaxies)"),
    ("bulge_re", np.float32, "bulge effective radius, reference pixels"),
    ("bulge_n", np.float32, "bulge Sersic index"),
    ("bulge_q", np.float32, "bulge projected axis ratio"),
    ("bulge_red", np.float32, "bulge colour, 0 blue to 1 red"),
    ("disk_h", np.float32, "disk exponential scale length, reference pixels"),
    ("disk_red", np.float32, "disk colour, 0 blue to 1 red (arms are bluer)"),
    ("bar_frac", np.float32, "bar flux as a fraction of the total"),
    ("bar_len", np.float32, "bar half-length, reference pixels"),
    ("bar_q", np.float32, "bar intrinsic axis ratio"),
    ("bar_angle", np.float32, "bar angle in the disk plane, radians"),
    ("n_arms", np.int64, "number of major spiral arms (0 none)"),
    ("pitch", np.float32, "arm pitch angle, degrees (small: tightly wound)"),
    ("arm_strength", np.float32, "fraction of the disk light in the arms"),
    ("arm_sharpness", np.int64, "arm narrowness exponent 1-4"),
    ("minor_arms", np.float32, "relative strength of interleaved minor arms"),
    ("arm_start", np.float32, "radius where the arms start, reference pixels"),
    ("arm_winding", np.float32, "azimuth the arms wind through, radians"),
    ("chirality", np.int64, "winding sense, +1 or -1"),
    ("n_knots", np.int64, "star-forming knots along the arms"),
    ("lopsided", np.float32, "m=1 asymmetry of the disk isophotes"),
    ("lopsided_angle", np.float32, "direction of the asymmetry, radians"),
    ("clumps", np.float32, "flux fraction in clumps (disturbed)"),
    ("n_clumps", np.int64, "number of clumps"),
    ("tidal", np.float32, "flux fraction in tidal tails"),
    ("tidal_pitch", np.float32, "pitch of the tidal tails, degrees"),
    ("tidal_angle", np.float32, "angle where the tails start, radians"),
    ("comp_dx", np.float32, "companion offset to the right, reference pixels"),
    ("comp_dy", np.float32, "companion offset downwards, reference pixels"),
    ("comp_frac", np.float32, "companion flux relative to the galaxy (0 none)"),
    ("comp_re", np.float32, "companion effective radius, reference pixels"),
    ("comp_n", np.float32, "companion Sersic index"),
    ("comp_q", np.float32, "companion axis ratio"),
    ("comp_pa", np.float32, "companion position angle, radians"),
    ("dust", np.float32, "depth of the dust lane 0-1 (inclined disks)"),
    ("psf_sigma", np.float32, "Gaussian PSF sigma, reference pixels"),
    ("sky", np.float32, "sky level after the stretch, in [0, 1]"),
    ("noise", np.float32, "sky noise sigma per reference pixel, flux units"),
    ("n_stars", np.int64, "foreground stars in the frame"),
]

PARAM_FIELDS = tuple((name, desc) for name, _, desc in _FIELDS)
"""``(name, meaning)`` of every structural parameter, in the order of the fields of the
record array that ``make_galaxies(..., return_params=True)`` returns; ``render_galaxy``
accepts a dict of them."""

_DTYPE = np.dtype([(name, dt) for name, dt, _ in _FIELDS])

_DEFAULTS = {
    "bulge_n": 4.0,
    "bulge_q": 1.0,
    "bulge_re": 4.0,
    "bulge_red": 0.85,
    "disk_h": 8.0,
    "disk_red": 0.45,
    "thickness": 0.12,
    "bar_q": 0.3,
    "arm_sharpness": 2,
    "chirality": 1,
    "comp_n": 2.0,
    "comp_q": 1.0,
    "comp_re": 3.0,
    "tidal_pitch": 35.0,
    "pitch": 15.0,
    "psf_sigma": 1.35,
    "sky": 0.12,
    "noise": 0.012,
    "flux": 60.0,
}

# asinh stretch of the DECaLS colour cutouts: value = sky + _GAIN * asinh(flux / _SOFT)
_SOFT = 0.05
_GAIN = 0.17
# channel weights (R, G, B ~ z, r, g) of old red and young blue stellar light
_RED = np.array([1.0, 0.8, 0.5], dtype=np.float32)
_BLUE = np.array([0.5, 0.72, 1.0], dtype=np.float32)
_DUST_K = np.array([0.7, 0.85, 1.0], dtype=np.float32)  # extinction is stronger in blue
_ARM_MEAN = {1: 1 / 2, 2: 3 / 8, 3: 5 / 16, 4: 35 / 128}  # mean of ((1+cos)/2)**k


def _color(red):
    red = min(max(float(red), 0.0), 1.0)
    return (1.0 - red) * _BLUE + red * _RED


def _sersic_b(n):
    return 2.0 * n - 1.0 / 3.0 + 4.0 / (405.0 * n) + 46.0 / (25515.0 * n * n)


def _sersic_norm(n, re, q):
    """Total flux of a Sersic profile with unit surface brightness at ``re``."""
    b = _sersic_b(n)
    return 2.0 * math.pi * q * re * re * n * math.exp(b) * b ** (-2.0 * n) * math.gamma(2.0 * n)


@lru_cache(maxsize=16)
def _grid(size):
    """Pixel-centre coordinates in reference pixels, centre of the frame at 0."""
    c = ((np.arange(size, dtype=np.float32) + 0.5) * np.float32(_FRAME / size)) - np.float32(
        _FRAME / 2
    )
    y, x = np.meshgrid(c, c, indexing="ij")
    return x, y


def _psf_matrix(size, sigma_px):
    """Row-normalised Gaussian blur matrix: ``G @ img @ G.T`` is a separable blur."""
    i = np.arange(size, dtype=np.float32)
    d = i[:, None] - i[None, :]
    g = np.exp(-0.5 * (d / np.float32(max(sigma_px, 0.3))) ** 2)
    g /= g.sum(axis=1, keepdims=True)
    return g


def _sersic(xr, yr, re, n, q):
    r2 = xr * xr + (yr * np.float32(1.0 / q)) ** 2
    # (r/re)**(1/n) == exp(log(r2/re^2) / (2n)); a floor keeps the core finite
    t = np.log(np.maximum(r2, np.float32(0.02)) * np.float32(1.0 / (re * re)))
    t *= np.float32(0.5 / n)
    np.exp(t, out=t)
    b = _sersic_b(n)
    t *= np.float32(-b)
    t += np.float32(b)
    return np.exp(t, out=t)


def _arm_pattern(r, theta, m, pitch_deg, chirality, phase0, r_in, winding, sharpness, minor):
    """Logarithmic spiral: ((1+cos)/2)**k, normalised to mean 1, with radial envelope."""
    tan_p = math.tan(math.radians(max(float(pitch_deg), 2.0)))
    logr = np.log(np.maximum(r, np.float32(1e-3)) * np.float32(1.0 / r_in))
    phase = theta - np.float32(chirality / tan_p) * logr
    phase *= np.float32(m)
    phase -= np.float32(phase0)
    c = np.cos(phase)
    w = 0.5 + 0.5 * c
    k = int(min(max(sharpness, 1), 4))
    out = w.copy()
    for _ in range(k - 1):
        out *= w
    if minor > 0:
        w2 = 0.5 - 0.5 * c  # interleaved arms, half a period away
        o2 = w2.copy()
        for _ in range(k - 1):
            o2 *= w2
        out += np.float32(minor) * o2
    out *= np.float32(1.0 / (_ARM_MEAN[k] * (1.0 + minor)))
    # arms rise from r_in and fade past the radius reached after `winding` radians
    env = np.clip((r - np.float32(0.7 * r_in)) * np.float32(1.0 / (0.5 * r_in)), 0.0, 1.0)
    r_out = r_in * math.exp(max(float(winding), 0.5) * tan_p)
    x2 = (r * np.float32(1.0 / r_out)) ** 2
    env /= 1.0 + x2 * x2
    out *= env
    return out


def _to_sky(u, v, p, q_obs):
    """Disk-plane coordinates to image coordinates."""
    xr, yr = u, v * q_obs
    ca, sa = math.cos(p["pa"]), math.sin(p["pa"])
    return p["x0"] + xr * ca - yr * sa, p["y0"] + xr * sa + yr * ca


def _deposit(F, x, y, fluxes, colors, size):
    """Add point sources (before the PSF blur) as surface brightness in their pixel."""
    scale = size / _FRAME
    ix = np.floor((np.asarray(x) + _FRAME / 2) * scale).astype(np.intp)
    iy = np.floor((np.asarray(y) + _FRAME / 2) * scale).astype(np.intp)
    ok = (ix >= 0) & (ix < size) & (iy >= 0) & (iy < size)
    if not ok.any():
        return
    vals = np.asarray(fluxes, dtype=np.float32)[ok, None] * np.asarray(colors)[ok]
    vals *= np.float32(scale * scale)  # flux per reference pixel^2
    np.add.at(F, (slice(None), iy[ok], ix[ok]), vals.T)


_INF = math.inf
_RENDER_BYTES_PER_PIXEL = 160  # the peak of render_galaxy measured about 130 bytes a pixel
_MAX_COUNT = 1000  # knots, clumps and stars are drawn (and clumps rendered) one by one
# (low, high, closed low, closed high) of each parameter; any finite value where absent
_RANGES = {
    "label": (0, 9, True, True),
    "incl": (0, 90, True, True),
    "thickness": (0, 1, False, True),
    "flux": (0, _INF, True, False),
    "bulge_re": (0, _INF, True, False),
    "bulge_n": (0, _INF, False, False),
    "disk_h": (0, _INF, True, False),
    "bar_len": (0, _INF, True, False),
    "n_arms": (0, 64, True, True),
    "pitch": (0, 90, False, False),
    "arm_sharpness": (1, 4, True, True),
    "minor_arms": (0, _INF, True, False),
    "arm_start": (0, _INF, True, False),
    "arm_winding": (0, _INF, True, False),
    "lopsided": (0, 1, True, False),
    "tidal_pitch": (0, 90, False, False),
    "comp_frac": (0, _INF, True, False),
    "comp_re": (0, _INF, True, False),
    "comp_n": (0, _INF, False, False),
    "psf_sigma": (0, _INF, True, False),
    "sky": (0, 1, True, True),
    "noise": (0, _INF, True, False),
    **{k: (0, 1, True, True) for k in ("bulge_frac", "bar_frac", "clumps", "tidal", "dust")},
    **{k: (0, 1, True, True) for k in ("arm_strength", "bulge_red", "disk_red")},
    **{k: (0, 1, False, True) for k in ("bulge_q", "bar_q", "comp_q")},
    **{k: (0, _MAX_COUNT, True, True) for k in ("n_knots", "n_clumps", "n_stars")},
    # offsets far outside the 64 px frame overflow float32 squares
    **{k: (-1e4, 1e4, True, True) for k in ("x0", "y0", "comp_dx", "comp_dy")},
}


_CHECKS = [
    (
        name,
        bool(np.issubdtype(dt, np.integer)),
        desc,
        _RANGES.get(name, (-_INF, _INF, False, False)),
    )
    for name, dt, desc in _FIELDS
]


def _check_record(rec):
    """Every parameter a finite number in its range (ints whole), or a clear error:
    NaN, inf or values outside the range would render black, grey or garbage frames."""
    bad = []
    out = {}
    for name, is_int, desc, (lo, hi, lo_in, hi_in) in _CHECKS:
        v = rec[name]
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
            bad.append(f"{name}={v!r} (a finite number: {desc})")
        elif is_int and v != int(v):
            bad.append(f"{name}={v!r} (a whole number: {desc})")
        elif name == "chirality" and v not in (1, -1):
            bad.append(f"chirality={v!r} (+1 or -1)")
        elif v < lo or (v == lo and not lo_in) or v > hi or (v == hi and not hi_in):
            span = f"{'[' if lo_in else '('}{lo:g}, {hi:g}{']' if hi_in else ')'}"
            bad.append(f"{name}={v!r} (in {span}: {desc})")
        out[name] = int(v) if is_int and not bad else v
    if bad:
        raise ValueError(
            f"Galaxy parameters out of range: {'; '.join(bad[:5])}"
            f"{'; ...' if len(bad) > 5 else ''}. galaxysim.datasets.PARAM_FIELDS describes "
            "them; make_galaxies(..., return_params=True) gives typical values."
        )
    return out


def _as_record(params):
    if isinstance(params, np.void) and params.dtype == _DTYPE:
        return _check_record({name: params[name].item() for name in _DTYPE.names})
    if isinstance(params, dict) or (isinstance(params, np.void) and params.dtype.names):
        names = params.keys() if isinstance(params, dict) else params.dtype.names
        unknown = set(names) - set(_DTYPE.names)
        if unknown:
            raise ValueError(
                f"Unknown galaxy parameters {sorted(unknown)}; valid names are "
                f"{list(_DTYPE.names)} (galaxysim.datasets.PARAM_FIELDS describes them)."
            )
        rec = {name: 0 for name in _DTYPE.names}
        rec.update(_DEFAULTS)
        rec.update(
            {k: (params[k].item() if hasattr(params[k], "item") else params[k]) for k in names}
        )
        return _check_record(rec)
    raise TypeError(
        "params must be a dict or one record of the array returned by "
        f"make_galaxies(..., return_params=True); got {type(params).__name__}."
    )


def render_galaxy(params, image_size=64, random_state=None):
    """Render one galaxy from its structural parameters, observed like a DECaLS cutout.

    This is the renderer behind :func:`make_galaxies` and the Milky Way model of
    :func:`load_milky_way`. The frame spans 64 reference pixels (the central 64x64 of a
    256 px Galaxy10 DECaLS cutout) whatever ``image_size`` is.

    Parameters
    ----------
    params : dict or record of the array returned by ``make_galaxies(..., return_params=True)``
        Structural parameters; :data:`galaxysim.datasets.PARAM_FIELDS` lists their
        names and meanings.
        Missing keys of a dict take neutral defaults (no bar, no arms, no companion...).
    image_size : int, default=64
        Side of the output image in pixels.
    random_state : int, RandomState instance or None, default=None
        Seed of the knots, clumps, stars and noise. ``None`` uses ``params["seed"]``.

    Returns
    -------
    image : ndarray of shape (image_size, image_size, 3), dtype uint8

    Raises
    ------
    ValueError
        A parameter that is not a finite number in its range (fractions and colours in
        [0, 1], radii and fluxes >= 0, axis ratios in (0, 1], ``incl`` 0-90 degrees,
        whole counts of at most 1,000 knots, clumps or stars, ``chirality`` +1 or -1,
        ...); the message names each one.
    MemoryError
        The image would not fit in memory (checked before anything is allocated).

    Examples
    --------
    >>> from galaxysim.datasets import render_galaxy
    >>> img = render_galaxy({"label": 2, "flux": 40.0, "bulge_frac": 1.0, "bulge_re": 5.0})
    >>> img.shape, img.dtype
    ((64, 64, 3), dtype('uint8'))
    >>> bool(img[32, 32].mean() > img[2, 2].mean())
    True
    """
    p = _as_record(params)
    s = _check_size(image_size)
    # the float32 frame of 3 bands, its blurred copies, the grids and their temporaries
    check_memory(
        s * s * _RENDER_BYTES_PER_PIXEL,
        f"render_galaxy(image_size={s})",
        hint="Render a smaller image_size.",
    )
    return _render(p, s, random_state)


def _render(p, s, random_state):
    """``render_galaxy`` of a checked record ``p`` at size ``s``."""
    if random_state is None:
        rng = np.random.default_rng(int(p["seed"]) & 0xFFFFFFFF)
    elif isinstance(random_state, np.random.Generator):
        rng = random_state
    else:
        rng = np.random.default_rng(check_random_state(random_state).randint(2**31))

    X, Y = _grid(s)
    F = np.zeros((3, s, s), dtype=np.float32)
    dx = X - np.float32(p["x0"])
    dy = Y - np.float32(p["y0"])
    ca, sa = np.float32(math.cos(p["pa"])), np.float32(math.sin(p["pa"]))
    xr = dx * ca + dy * sa
    yr = dy * ca - dx * sa

    flux = float(p["flux"])
    f_bulge = flux * float(p["bulge_frac"])
    f_bar = flux * float(p["bar_frac"])
    f_clumps = flux * float(p["clumps"])
    f_tidal = flux * float(p["tidal"])
    f_disk = max(flux - f_bulge - f_bar - f_clumps - f_tidal, 0.0)

    ci = math.cos(math.radians(p["incl"]))
    q0 = float(p["thickness"])
    q_obs = math.sqrt(ci * ci + q0 * q0 * (1.0 - ci * ci))
    h = max(float(p["disk_h"]), 0.3)
    u = xr
    v = yr * np.float32(1.0 / q_obs)
    need_disk = f_disk > 0 or f_bar > 0 or f_tidal > 0
    if need_disk:
        r = np.sqrt(u * u + v * v)
        theta = None
        if p["n_arms"] > 0 or p["lopsided"] > 0 or f_tidal > 0:
            theta = np.arctan2(v, u)

    if f_disk > 0:
        rd = r
        if p["lopsided"] > 0:
            # m=1 distortion: the isophotes bulge out towards lopsided_angle
            rd = r / (
                1.0 + np.float32(p["lopsided"]) * np.cos(theta - np.float32(p["lopsided_angle"]))
            )
        disk = np.exp(rd * np.float32(-1.0 / h))
        disk *= np.float32(1.0 / (2.0 * math.pi * h * h * q_obs))
        a = float(p["arm_strength"]) if p["n_arms"] > 0 else 0.0
        F += np.multiply.outer(np.float32(f_disk * (1.0 - a)) * _color(p["disk_red"]), disk)
        if a > 0:
            r_in = max(float(p["arm_start"]), 1.0)
            phase0 = p["n_arms"] * float(p["bar_angle"]) if p["bar_frac"] > 0 else 0.0
            arms = _arm_pattern(
                r,
                theta,
                int(p["n_arms"]),
                p["pitch"],
                p["chirality"],
                phase0,
                r_in,
                p["arm_winding"],
                p["arm_sharpness"],
                float(p["minor_arms"]),
            )
            arms *= disk
            F += np.multiply.outer(
                np.float32(f_disk * a) * _color(float(p["disk_red"]) - 0.35), arms
            )
    if f_bulge > 0:
        n, re, qb = float(p["bulge_n"]), max(float(p["bulge_re"]), 0.3), float(p["bulge_q"])
        bulge = _sersic(xr, yr, re, n, qb)
        F += np.multiply.outer(
            np.float32(f_bulge / _sersic_norm(n, re, qb)) * _color(p["bulge_red"]), bulge
        )
    if f_bar > 0:
        cb, sb = np.float32(math.cos(p["bar_angle"])), np.float32(math.sin(p["bar_angle"]))
        ub = u * cb + v * sb
        vb = v * cb - u * sb
        L = max(float(p["bar_len"]), 0.5)
        bq = float(p["bar_q"])
        bar = _sersic(ub, vb, 0.62 * L, 0.35, bq)
        norm = _sersic_norm(0.35, 0.62 * L, bq * q_obs)
        F += np.multiply.outer(
            np.float32(f_bar / norm) * _color(0.5 * (p["bulge_red"] + p["disk_red"]) + 0.1), bar
        )
    if f_tidal > 0:
        ht = 2.5 * max(h, float(p["bulge_re"]))
        tail = _arm_pattern(
            r,
            theta,
            1,
            p["tidal_pitch"],
            -p["chirality"],
            float(p["tidal_angle"]),
            1.2 * max(h, float(p["bulge_re"])),
            3.0,
            3,
            0.6,
        )
        tail *= np.exp(r * np.float32(-1.0 / ht))
        tail *= np.float32(1.0 / (2.0 * math.pi * ht * ht * q_obs))
        F += np.multiply.outer(
            np.float32(f_tidal) * _color(0.5 * (p["bulge_red"] + p["disk_red"])), tail
        )
    if p["comp_frac"] > 0:
        cc, sc = math.cos(p["comp_pa"]), math.sin(p["comp_pa"])
        ex = dx - np.float32(p["comp_dx"])
        ey = dy - np.float32(p["comp_dy"])
        n, re, qc = float(p["comp_n"]), max(float(p["comp_re"]), 0.3), float(p["comp_q"])
        comp = _sersic(
            ex * np.float32(cc) + ey * np.float32(sc),
            ey * np.float32(cc) - ex * np.float32(sc),
            re,
            n,
            qc,
        )
        f_comp = flux * float(p["comp_frac"])
        F += np.multiply.outer(
            np.float32(f_comp / _sersic_norm(n, re, qc)) * _color(p["bulge_red"] - 0.05), comp
        )

    # point-like structure: star-forming knots on the arms, clumps of disturbed disks
    n_knots = int(p["n_knots"]) if p["n_arms"] > 0 else 0
    if n_knots > 0:
        m = int(p["n_arms"])
        r_in = max(float(p["arm_start"]), 1.0)
        tan_p = math.tan(math.radians(max(float(p["pitch"]), 2.0)))
        rk = r_in * np.exp(
            rng.uniform(0.1, 0.85, n_knots) * max(float(p["arm_winding"]), 0.5) * tan_p
        )
        phase0 = m * float(p["bar_angle"]) if p["bar_frac"] > 0 else 0.0
        arm = rng.integers(0, m, n_knots)
        th = (phase0 + 2 * np.pi * arm) / m + p["chirality"] * np.log(rk / r_in) / tan_p
        th += rng.normal(0.0, 0.12, n_knots)
        kx, ky = _to_sky(rk * np.cos(th), rk * np.sin(th), p, q_obs)
        kf = rng.lognormal(0.0, 0.6, n_knots)
        kf *= 0.03 * f_disk * float(p["arm_strength"]) / kf.sum()
        _deposit(F, kx, ky, kf, np.tile(_color(0.1), (n_knots, 1)), s)
    if p["n_clumps"] > 0 and f_clumps > 0:
        nc = int(p["n_clumps"])
        rc = rng.gamma(2.0, 0.6 * h, nc)
        th = rng.uniform(0, 2 * np.pi, nc)
        kx, ky = _to_sky(rc * np.cos(th), rc * np.sin(th), p, q_obs)
        kf = rng.lognormal(0.0, 0.7, nc)
        kf *= f_clumps / kf.sum()
        # resolved star-forming clumps: separable Gaussians, one outer product each
        X1 = X[0]
        col = _color(0.15)
        for cx, cy, cf, cs in zip(kx, ky, kf, rng.uniform(0.7, 1.6, nc), strict=True):
            gx = np.exp(-0.5 * ((X1 - np.float32(cx)) * np.float32(1.0 / cs)) ** 2)
            gy = np.exp(-0.5 * ((X1 - np.float32(cy)) * np.float32(1.0 / cs)) ** 2)
            blob = np.multiply.outer(gy, gx)
            F += np.multiply.outer(np.float32(cf / (2 * math.pi * cs * cs)) * col, blob)

    if p["dust"] > 0:
        # lane along the major axis, slightly in front of the midplane when not edge-on
        w = max(0.3 * q_obs * h, 1.0)
        off = 0.3 * ci * h
        lane = np.exp(-0.5 * ((yr - np.float32(off)) * np.float32(1.0 / w)) ** 2)
        lane *= np.exp(-((xr * np.float32(1.0 / (3.0 * h))) ** 2))
        lane *= np.float32(-3.0 * min(float(p["dust"]), 1.0))  # optical depth
        F *= np.exp(_DUST_K[:, None, None] * lane)

    if p["n_stars"] > 0:
        ns = int(p["n_stars"])
        sx, sy = rng.uniform(-_FRAME / 2, _FRAME / 2, (2, ns))
        sf = np.exp(rng.uniform(math.log(0.3), math.log(60.0), ns))
        sc = np.stack([_color(t) for t in rng.uniform(0.0, 1.0, ns)])
        _deposit(F, sx, sy, sf, sc, s)

    G = _psf_matrix(s, float(p["psf_sigma"]) * s / _FRAME)
    F = np.matmul(np.matmul(G, F), G.T)
    # noise per output pixel: averaging when the frame is sampled coarser than 64 px
    sigma = float(p["noise"]) * min(1.0, s / _FRAME)
    F += rng.standard_normal((3, s, s), dtype=np.float32) * np.float32(sigma)

    # colour-preserving asinh stretch (Lupton et al. 2004) on the mean of the bands;
    # bright cores still clip per channel to yellow-white, as in DECaLS colour images
    t = F.mean(axis=0)
    t *= np.float32(1.0 / _SOFT)
    t = np.where(np.abs(t) < 1e-4, np.float32(1.0), np.arcsinh(t) / np.where(t == 0, 1, t))
    F *= t * np.float32(_GAIN * 255.0 / _SOFT)
    F += np.float32(float(p["sky"]) * 255.0 + 0.5)
    np.clip(F, 0.0, 255.0, out=F)
    return F.astype(np.uint8).transpose(1, 2, 0)


def _check_size(image_size):
    if not isinstance(image_size, numbers.Integral) or isinstance(image_size, bool):
        raise TypeError(f"image_size must be an int; got {image_size!r}.")
    if image_size < 8:
        raise ValueError(f"image_size must be at least 8 pixels; got {image_size}.")
    return int(image_size)


def _lognormal(rng, median, sigma, k):
    return median * np.exp(rng.normal(0.0, sigma, k))


def _sample_params(labels, rng):
    """Draw the structural parameters of every image, class by class (vectorised)."""
    n = len(labels)
    P = np.zeros(n, dtype=_DTYPE)
    for name, value in _DEFAULTS.items():
        P[name] = value
    P["label"] = labels
    P["seed"] = rng.randint(0, 2**31 - 1, n)
    P["x0"], P["y0"] = rng.normal(0.0, 0.7, (2, n))
    P["pa"] = rng.uniform(0.0, np.pi, n)
    P["psf_sigma"] = rng.uniform(1.0, 1.7, n)
    P["sky"] = rng.uniform(0.105, 0.135, n)
    P["noise"] = 0.013 * np.exp(rng.normal(0.0, 0.25, n))
    P["n_stars"] = rng.poisson(0.45, n)
    P["chirality"] = rng.choice([-1, 1], n)
    P["bar_angle"] = rng.uniform(0.0, np.pi, n)
    P["tidal_angle"] = rng.uniform(0.0, 2 * np.pi, n)
    P["lopsided_angle"] = rng.uniform(0.0, 2 * np.pi, n)
    for code in range(10):
        idx = np.flatnonzero(labels == code)
        if len(idx):
            _CLASS_SAMPLERS[code](P, idx, rng)
    return P


def _smooth(P, idx, rng, q_range, n_range, re_median):
    k = len(idx)
    re = _lognormal(rng, re_median, 0.35, k)
    P["bulge_frac"][idx] = 1.0
    P["bulge_re"][idx] = re
    P["bulge_n"][idx] = rng.uniform(*n_range, k)
    P["bulge_q"][idx] = rng.uniform(*q_range, k)
    P["bulge_red"][idx] = rng.uniform(0.75, 1.0, k)
    # surface brightness at re varies less than size: flux grows as re**2
    P["flux"][idx] = _lognormal(rng, 0.5, 0.4, k) * 2 * np.pi * re**2 * 3.5


def _disk(P, idx, rng, h_median, cosi_range, bt_range, sb_median=0.9):
    k = len(idx)
    h = _lognormal(rng, h_median, 0.3, k)
    P["disk_h"][idx] = h
    P["incl"][idx] = np.degrees(np.arccos(rng.uniform(*cosi_range, k)))
    P["thickness"][idx] = rng.uniform(0.08, 0.16, k)
    P["bulge_frac"][idx] = rng.uniform(*bt_range, k)
    P["bulge_re"][idx] = h * rng.uniform(0.15, 0.3, k)
    P["bulge_n"][idx] = rng.uniform(1.5, 3.5, k)
    P["bulge_q"][idx] = rng.uniform(0.75, 1.0, k)
    P["bulge_red"][idx] = rng.uniform(0.75, 1.0, k)
    P["disk_red"][idx] = rng.uniform(0.3, 0.6, k)
    P["flux"][idx] = _lognormal(rng, sb_median, 0.35, k) * 2 * np.pi * h**2
    return h


def _spiral(P, idx, rng, pitch_range, arm_probs, strength_range):
    k = len(idx)
    P["n_arms"][idx] = rng.choice([2, 3, 4], k, p=arm_probs)
    P["pitch"][idx] = rng.uniform(*pitch_range, k)
    P["arm_strength"][idx] = rng.uniform(*strength_range, k)
    P["arm_sharpness"][idx] = rng.randint(2, 5, k)
    P["minor_arms"][idx] = np.where(rng.random(k) < 0.3, rng.uniform(0.2, 0.6, k), 0.0)
    P["arm_winding"][idx] = rng.uniform(1.2 * np.pi, 2.5 * np.pi, k)
    P["n_knots"][idx] = rng.poisson(6, k)
    P["arm_start"][idx] = np.maximum(2.5 * P["bulge_re"][idx], 0.5 * P["disk_h"][idx])


def _class0(P, idx, rng):  # Disturbed
    k = len(idx)
    _disk(P, idx, rng, 10.0, (0.3, 1.0), (0.0, 0.1), sb_median=0.45)
    P["disk_red"][idx] = rng.uniform(0.15, 0.45, k)
    P["lopsided"][idx] = rng.uniform(0.15, 0.45, k)
    P["clumps"][idx] = rng.uniform(0.1, 0.25, k)
    P["n_clumps"][idx] = rng.randint(3, 12, k)
    P["tidal"][idx] = np.where(rng.random(k) < 0.6, rng.uniform(0.1, 0.3, k), 0.0)
    P["tidal_pitch"][idx] = rng.uniform(25.0, 50.0, k)


def _class1(P, idx, rng):  # Merging
    k = len(idx)
    re = _lognormal(rng, 5.5, 0.3, k)
    P["bulge_frac"][idx] = 1.0
    P["bulge_re"][idx] = re
    P["bulge_n"][idx] = rng.uniform(1.5, 4.0, k)
    P["bulge_q"][idx] = rng.uniform(0.55, 1.0, k)
    P["bulge_red"][idx] = rng.uniform(0.6, 0.95, k)
    P["flux"][idx] = _lognormal(rng, 0.5, 0.35, k) * 2 * np.pi * re**2 * 3.5
    sep = rng.uniform(5.0, 16.0, k) + 0.8 * re
    ang = rng.uniform(0.0, 2 * np.pi, k)
    P["comp_dx"][idx], P["comp_dy"][idx] = sep * np.cos(ang), sep * np.sin(ang)
    # the pair, not the primary, sits near the centre of the cutout
    frac = rng.uniform(0.3, 1.0, k)
    P["x0"][idx] -= 0.5 * frac * P["comp_dx"][idx]
    P["y0"][idx] -= 0.5 * frac * P["comp_dy"][idx]
    P["comp_frac"][idx] = frac
    P["comp_re"][idx] = re * rng.uniform(0.5, 1.0, k)
    P["comp_n"][idx] = rng.uniform(1.0, 4.0, k)
    P["comp_q"][idx] = rng.uniform(0.5, 1.0, k)
    P["comp_pa"][idx] = rng.uniform(0.0, np.pi, k)
    P["tidal"][idx] = rng.uniform(0.15, 0.45, k)
    P["tidal_pitch"][idx] = rng.uniform(25.0, 50.0, k)
    P["tidal_angle"][idx] = ang
    P["disk_h"][idx] = re * 1.5


def _class2(P, idx, rng):  # Round Smooth
    _smooth(P, idx, rng, (0.8, 1.0), (2.5, 4.5), 6.5)


def _class3(P, idx, rng):  # In-between Round Smooth
    _smooth(P, idx, rng, (0.48, 0.78), (2.0, 4.0), 6.0)


def _class4(P, idx, rng):  # Cigar Shaped Smooth
    _smooth(P, idx, rng, (0.18, 0.42), (1.0, 2.5), 5.5)


def _class5(P, idx, rng):  # Barred Spiral
    k = len(idx)
    h = _disk(P, idx, rng, 12.0, (0.45, 1.0), (0.08, 0.3))
    P["bar_frac"][idx] = rng.uniform(0.12, 0.28, k)
    P["bar_len"][idx] = h * rng.uniform(1.0, 2.0, k)
    P["bar_q"][idx] = rng.uniform(0.22, 0.35, k)
    _spiral(P, idx, rng, (12.0, 25.0), [0.75, 0.15, 0.1], (0.4, 0.7))
    P["arm_start"][idx] = P["bar_len"][idx]


def _class6(P, idx, rng):  # Unbarred Tight Spiral
    _disk(P, idx, rng, 12.0, (0.45, 1.0), (0.15, 0.4))
    _spiral(P, idx, rng, (7.0, 14.0), [0.5, 0.3, 0.2], (0.5, 0.75))


def _class7(P, idx, rng):  # Unbarred Loose Spiral
    k = len(idx)
    _disk(P, idx, rng, 11.0, (0.45, 1.0), (0.03, 0.15), sb_median=0.7)
    P["disk_red"][idx] = rng.uniform(0.2, 0.45, k)
    _spiral(P, idx, rng, (20.0, 35.0), [0.6, 0.25, 0.15], (0.5, 0.8))
    P["n_knots"][idx] = rng.poisson(10, k)


def _edge_on(P, idx, rng, bt_range, thick_range):
    k = len(idx)
    h = _disk(P, idx, rng, 14.0, (0.0, 0.1), bt_range, sb_median=0.6)
    P["disk_red"][idx] = rng.uniform(0.5, 0.8, k)
    P["thickness"][idx] = rng.uniform(*thick_range, k)
    return h


def _class8(P, idx, rng):  # Edge-on without Bulge
    k = len(idx)
    _edge_on(P, idx, rng, (0.0, 0.04), (0.06, 0.12))
    P["dust"][idx] = np.where(rng.random(k) < 0.3, rng.uniform(0.2, 0.5, k), 0.0)


def _class9(P, idx, rng):  # Edge-on with Bulge
    k = len(idx)
    h = _edge_on(P, idx, rng, (0.25, 0.55), (0.12, 0.25))
    P["bulge_re"][idx] = h * rng.uniform(0.25, 0.5, k)
    P["bulge_q"][idx] = rng.uniform(0.55, 0.85, k)
    P["bulge_n"][idx] = rng.uniform(1.5, 4.0, k)
    P["dust"][idx] = np.where(rng.random(k) < 0.8, rng.uniform(0.5, 0.95, k), 0.0)


_CLASS_SAMPLERS = (
    _class0,
    _class1,
    _class2,
    _class3,
    _class4,
    _class5,
    _class6,
    _class7,
    _class8,
    _class9,
)


def _check_classes(classes):
    if classes is None:
        return np.arange(len(GALAXY10_CLASSES))
    if isinstance(classes, numbers.Integral):
        classes = [classes]
    arr = np.asarray(classes)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(
            f"classes must be a non-empty list of Galaxy10 codes 0-9; got {classes!r}."
        )
    if not np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.floating) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise ValueError(f"classes must be integer Galaxy10 codes 0-9; got {classes!r}.")
    bad = sorted({int(c) for c in arr if not 0 <= c <= 9})
    if bad:
        raise ValueError(
            f"classes contains codes {bad} outside the Galaxy10 codes 0-9 "
            f"({', '.join(f'{i} {name}' for i, name in enumerate(GALAXY10_CLASSES))})."
        )
    return np.unique(arr.astype(np.int64))


def make_galaxies(
    n_samples=1000, *, image_size=64, classes=None, random_state=None, return_params=False
):
    """Generate survey-like colour images of galaxies in the ten Galaxy10 DECaLS classes.

    The galaxies are procedural but physical: Sersic bulges and exponential disks,
    logarithmic spiral arms (2-4 arms, varied pitch angle and winding, star-forming
    knots), bars, inclination and position angle, thin edge-on disks with and without a
    bulge (dust lanes), smooth galaxies from round to cigar-shaped, disturbed disks
    (lopsided, clumpy, tidal tails) and merging pairs. Bulges are redder than arms. Each
    image is observed like a DECaLS g/r/z colour cutout: Gaussian PSF, foreground stars
    in some frames, per-band sky noise and an asinh stretch onto a grey sky.

    Framing: ``image_size=64`` shows galaxies as the central 64x64 pixels of a 256 px
    Galaxy10 DECaLS cutout show real ones (the reference framing of
    :func:`load_galaxy10`), with galaxy sizes drawn from log-normal distributions per
    class. Other sizes render the same field of view at another sampling.

    Parameters
    ----------
    n_samples : int, default=1000
        Number of images.
    image_size : int, default=64
        Side of the square images in pixels (at least 8).
    classes : sequence of int or None, default=None
        Galaxy10 codes to generate (see ``galaxysim.GALAXY10_CLASSES``); ``None`` means
        all ten. Classes are balanced: labels cycle through ``classes`` and are then
        shuffled.
    random_state : int, RandomState instance or None, default=None
        Seed; the same seed gives identical images.
    return_params : bool, default=False
        Also return the structural parameters of every image.

    Returns
    -------
    X : ndarray of shape (n_samples, image_size, image_size, 3), dtype uint8
        RGB images.
    y : ndarray of shape (n_samples,), dtype int64
        Galaxy10 class codes.
    params : structured ndarray of shape (n_samples,)
        Only with ``return_params=True``. One record per image; the fields (lengths in
        reference pixels of the central 64 px frame, angles as stated) are:

        - ``label``, ``seed``: class code and seed of the per-image randomness;
        - ``x0``, ``y0``, ``pa``, ``incl``, ``thickness``: centre offset, position angle
          (radians), inclination (degrees) and intrinsic disk axis ratio;
        - ``flux``, ``bulge_frac``, ``bar_frac``, ``clumps``, ``tidal``: total flux and
          the fractions of it in the bulge, bar, clumps and tidal tails (the rest is the
          disk);
        - ``bulge_re``, ``bulge_n``, ``bulge_q``, ``bulge_red``: Sersic bulge (radius,
          index, axis ratio, colour 0 blue to 1 red); ``disk_h``, ``disk_red``:
          exponential disk;
        - ``bar_len``, ``bar_q``, ``bar_angle``: bar half-length, axis ratio, angle;
        - ``n_arms``, ``pitch`` (degrees), ``arm_strength``, ``arm_sharpness``,
          ``minor_arms``, ``arm_start``, ``arm_winding`` (radians), ``chirality``,
          ``n_knots``: logarithmic spiral arms;
        - ``lopsided``, ``lopsided_angle``, ``n_clumps``, ``tidal_pitch``,
          ``tidal_angle``: disturbance;
        - ``comp_dx``, ``comp_dy``, ``comp_frac``, ``comp_re``, ``comp_n``, ``comp_q``,
          ``comp_pa``: merging companion (``comp_frac`` 0 when none);
        - ``dust``: dust lane depth; ``psf_sigma``, ``sky``, ``noise``, ``n_stars``:
          observing conditions.

        :data:`galaxysim.datasets.PARAM_FIELDS` lists them with descriptions; a
        record can be passed back to :func:`galaxysim.datasets.render_galaxy`.

    Raises
    ------
    ValueError
        ``n_samples`` below 1, empty ``classes`` or codes outside 0-9, ``image_size``
        below 8.
    MemoryError
        The images would not fit in the memory available (checked before anything is
        allocated; the message says how much they would take). It is also a
        ``ValueError``.

    See Also
    --------
    load_milky_way : The Milky Way rendered by the same renderer and framing.
    load_galaxy10 : The real Galaxy10 DECaLS catalogue.

    Examples
    --------
    >>> from galaxysim.datasets import make_galaxies
    >>> X, y = make_galaxies(20, random_state=0)
    >>> X.shape, X.dtype, sorted(set(y.tolist()))
    ((20, 64, 64, 3), dtype('uint8'), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    >>> X, y, params = make_galaxies(4, classes=[5], image_size=32, random_state=0,
    ...                              return_params=True)
    >>> X.shape, y.tolist(), params["n_arms"].shape
    ((4, 32, 32, 3), [5, 5, 5, 5], (4,))
    """
    if not isinstance(n_samples, numbers.Integral) or isinstance(n_samples, bool) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive integer; got {n_samples!r}.")
    if not isinstance(return_params, (bool, np.bool_)):
        raise TypeError(f"return_params must be True or False; got {return_params!r}.")
    s = _check_size(image_size)
    codes = _check_classes(classes)
    # the images, their parameter records and a few int64 label arrays, checked before
    # any of them is allocated (np.resize below is the first)
    per_image = s * s * 3 + _DTYPE.itemsize + 4 * 8
    check_memory(
        int(n_samples) * per_image,
        f"make_galaxies(n_samples={n_samples}, image_size={s})",
        per_item=(per_image, "images"),
        hint="Generate fewer or smaller images per call (different random_state values "
        "give different galaxies).",
    )
    rng = check_random_state(random_state)
    labels = np.resize(codes, int(n_samples))
    labels = labels[rng.permutation(len(labels))]
    params = _sample_params(labels, rng)
    X = np.empty((len(labels), s, s, 3), dtype=np.uint8)
    for i in range(len(labels)):
        # the sampled records are in range and the memory was checked above
        X[i] = _render({name: params[i][name].item() for name in _DTYPE.names}, s, None)
    y = labels.astype(np.int64)
    if return_params:
        return X, y, params
    return X, y
