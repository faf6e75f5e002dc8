"""Quality of the deep methods (issue 3), printed side by side with pixel MSE.

Parts (``--parts``, comma list; default all):

``gz1``       ``../shared/data/gz1-dev`` (real SDSS cutouts, 128 px crop resized to 64), four
              classes: elliptical, spiral (both spin directions), edge-on, merger ("don't
              know" dropped). Stratified k-fold CV (``--folds``, default 5) x seeds
              (``--seeds``, default 0,1,2), by ``galaxysim.model_selection.
              cross_validate_search``: per fold the test fold queries a catalogue made
              of the training folds (the CNN and AE are trained there, once per fold).
              Reports CNN balanced accuracy and per-class recall, balanced precision@10
              (mean over classes of the mean share of a query's 10 nearest catalogue
              images with its class, scored per fold and averaged over folds, as
              ``galaxysim evaluate`` does) for pixel MSE, CNN score space and AE latent
              space, and the AE's held-out reconstruction error against the mean-image
              baseline; ``--gz1-max-images`` takes a stratified subsample (smoke runs). The AE latent space is searched five ways
              (``AE_SEARCHES``): plain codes; codes standardised per dimension
              (StandardScaler fitted on the catalogue); orientation-invariant codes
              (``orientation_invariant=True``) standardised, compared by Euclidean
              distance or by cosine; invariant codes reduced to 16 whitened principal
              components, by cosine. Two further pixel references: each query compared
              in its best of 8 orientations, and pixels standardised and compared by
              cosine. Targets: CNN balanced accuracy >= 0.65 (mean of seeds); CNN p@10
              >= MSE p@10 + 0.05; AE p@10 >= MSE p@10; AE error < mean image.
``g10``       ``make_galaxies`` 5,000 train / 1,000 test, 10 classes, 64x64: CNN test
              accuracy after ``--g10-epochs`` (default 15) epochs, for each of
              ``--g10-seeds`` (default 0), with ``--g10-lr``, ``--g10-dropout``
              (defaults those of CNNScorer) and ``--g10-precision``; the weights of
              the best validated epoch are kept (CNNScorer's default;
              ``--g10-last-epoch``: the last epoch's). Target >= 0.90.
``milkyway``  built-in catalogue (``--catalogue-size`` make_galaxies images, seed 0): a CNN
              trained on it, the Milky Way model's 10 nearest neighbours in CNN score space
              (target >= 8 spirals, classes 5-7), and the share of
              ``VAEEncoder.generate_like(milky_way, 100)`` classified as spirals by that CNN
              (target >= 80%).

Run the whole thing (about an hour on an idle 2-core CPU; the AE, 25 epochs by default,
is fitted for the first ``--ae-seeds`` seeds only, default 1)::

    python benchmarks/eval_deep.py
    python benchmarks/eval_deep.py --parts g10 --g10-seeds 0,1,2 --g10-dropout 0.1
    python benchmarks/eval_deep.py --parts gz1 --folds 5 --seeds 0 --epochs 10   # one seed
"""

import argparse
import os
import time
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.decomposition import PCA
from sklearn.frozen import FrozenEstimator
from sklearn.metrics import recall_score
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from galaxysim import GALAXY10_CLASSES
from galaxysim.datasets import load_image_folder, load_milky_way, make_galaxies
from galaxysim.model_selection import cross_validate_search
from galaxysim.neighbors import NearestGalaxy, pairwise_distances
from galaxysim.nn import AEEncoder, CNNScorer, VAEEncoder
from galaxysim.pipeline import make_search_pipeline
from galaxysim.preprocessing import PixelFlatten

ROOT = Path(__file__).resolve().parents[1]
GZ1 = ROOT.parent / "shared" / "data" / "gz1-dev"
GZ1_CLASSES = {0: "elliptical", 1: "spiral", 2: "spiral", 3: "edge-on", 5: "merger"}
SPIRALS = (5, 6, 7)
THREADS = int(os.environ.get("GALAXYSIM_THREADS", "2"))


def knn_indices(Q, C, k=10, metric="mse"):
    """Indices of the k nearest catalogue rows (exact, ties by index)."""
    search = NearestGalaxy(n_neighbors=k, metric=metric).fit(C.reshape(len(C), -1))
    return search.kneighbors(Q.reshape(len(Q), -1), return_distance=False)


def dihedral_views(X):
    """The 8 flips and 90-degree rotations of square images ``(n, H, W, C)``."""
    views = [np.rot90(X, k, axes=(1, 2)) for k in range(4)]
    return [np.ascontiguousarray(v) for v in views + [v[:, :, ::-1] for v in views]]


class BestOrientationMSE(BaseEstimator):
    """Pixel-MSE search with each query in its best of 8 orientations (a reference)."""

    def fit(self, X, y=None):
        self.catalogue_ = X.reshape(len(X), -1)
        return self

    def kneighbors(self, X, n_neighbors=10, return_distance=True):
        flat = self.catalogue_
        D = np.min([pairwise_distances(v.reshape(len(X), -1), flat) for v in dihedral_views(X)], 0)
        ind = np.argsort(D, axis=1, kind="stable")[:, :n_neighbors]
        return (np.take_along_axis(D, ind, 1), ind) if return_distance else ind


def to_float32(X):
    return X.astype(np.float32)


class PerFold:
    """``fit(X_train, y_train)`` once per fold, shared by the searches of that fold
    (cross_validate_search hands every builder of a fold the same ``X_train``); every
    fold's model is kept, in fold order."""

    def __init__(self, fit):
        self.fit, self.models, self._fold = fit, [], None

    def __call__(self, X_train, y_train):
        if self._fold is not X_train:
            self.models.append(self.fit(X_train, y_train))
            self._fold = X_train
        return self.models[-1]


# AE latent searches: (name, orientation-invariant codes, scaling fitted on the
# catalogue's codes, metric); the scaling is StandardScaler or 16 whitened principal
# components
AE_SEARCHES = [
    ("ae", False, None, "mse"),
    ("ae_std", False, "std", "mse"),
    ("ae_inv_std", True, "std", "mse"),
    ("ae_inv_std_cos", True, "std", "cosine"),
    ("ae_inv_pca16_cos", True, "pca16", "cosine"),
]


def ae_search(aes, invariant, scaling, metric):
    """Builder of one AE latent search, on the fold's AE (trained once per fold)."""

    def build(X_train, y_train):
        ae = aes(X_train, y_train)
        ae.set_params(orientation_invariant=invariant)  # searches of a fold run in turn
        steps = [FrozenEstimator(ae)]
        if scaling is not None:
            steps.append(
                StandardScaler() if scaling == "std" else PCA(16, whiten=True, random_state=0)
            )
        return make_search_pipeline(*steps, NearestGalaxy(metric=metric))

    return build


def fmt(values):
    v = np.asarray(values, dtype=float)
    return f"{v.mean():.3f} +- {v.std():.3f}" if len(v) > 1 else f"{v.mean():.3f}"


# ---------------------------------------------------------------------------------------


def part_gz1(args):
    bunch = load_image_folder(GZ1, label_column="gz1_class", crop=128, image_size=64, verbose=0)
    X, raw = bunch.images, np.asarray(bunch.target)
    keep = np.isin(raw, list(GZ1_CLASSES))
    X = X[keep]
    names = np.array([GZ1_CLASSES[v] for v in raw[keep]])
    classes, y = np.unique(names, return_inverse=True)
    if args.gz1_max_images and args.gz1_max_images < len(X):
        sub, _ = train_test_split(
            np.arange(len(X)), train_size=args.gz1_max_images, stratify=y, random_state=0
        )
        X, y = X[np.sort(sub)], y[np.sort(sub)]
    print(
        f"gz1-dev: {len(X)} images, classes "
        + ", ".join(f"{c} {n}" for c, n in zip(classes, np.bincount(y), strict=True))
    )
    keys = ("bacc", "mse", "mse_rot", "pix_std_cos", "cnn", *(a[0] for a in AE_SEARCHES))
    keys += ("ae_err", "mean_err")
    res = {k: [] for k in keys + ("recall",)}
    for seed in args.seeds:
        splits = list(StratifiedKFold(args.folds, shuffle=True, random_state=seed).split(X, y))
        cnns = PerFold(
            lambda Xt, yt, seed=seed: CNNScorer(
                max_epochs=args.epochs, random_state=seed, n_jobs=THREADS
            ).fit(Xt, yt)
        )
        searches = {
            "mse": make_search_pipeline(PixelFlatten(), NearestGalaxy(metric="mse")),
            "mse_rot": BestOrientationMSE(),
            "pix_std_cos": make_search_pipeline(
                PixelFlatten(),
                FunctionTransformer(to_float32),
                StandardScaler(),
                NearestGalaxy(metric="cosine"),
            ),
            "cnn": lambda Xt, yt, cnns=cnns: make_search_pipeline(
                FrozenEstimator(cnns(Xt, yt)), NearestGalaxy(metric="mse")
            ),
        }
        with_ae = not args.no_ae and seed in args.seeds[: args.ae_seeds]
        if with_ae:
            aes = PerFold(
                lambda Xt, yt, seed=seed: AEEncoder(
                    max_epochs=args.ae_epochs, random_state=seed, n_jobs=THREADS
                ).fit(Xt)
            )
            for name, invariant, scaling, metric in AE_SEARCHES:
                searches[name] = ae_search(aes, invariant, scaling, metric)
        cv = cross_validate_search(searches, X, y, cv=splits, k=10, verbose=args.verbose)
        for name in searches:
            res[name].append(cv[name].mean("precision_balanced"))
        res["bacc"].append(cv["cnn"].mean("balanced_accuracy"))
        res["recall"].append(cv["cnn"].mean("recall_per_class"))
        ae_err, mean_err = [], []
        for f, (tr, te) in enumerate(splits):
            if with_ae:
                ae = aes.models[f].set_params(orientation_invariant=False)
                ae_err.append(ae.reconstruction_error(X[te]).mean())
                mean_img = X[tr].mean(0, dtype=np.float64) / 255
                mean_err.append(((X[te] / 255.0 - mean_img) ** 2).mean())
            seconds = sum(r.fit_time[f] + r.query_time[f] for r in cv.values())
            print(
                f"  seed {seed} fold {f}: CNN bacc "
                f"{cv['cnn'].fold_scores['balanced_accuracy'][f]:.3f}, p@10 "
                + " ".join(
                    f"{name} {cv[name].fold_scores['precision_balanced'][f]:.3f}"
                    for name in ("mse", "cnn", *(a[0] for a in AE_SEARCHES))
                    if name in cv
                )
                + f"  ({seconds:.0f} s)",
                flush=True,
            )
        if with_ae:
            res["ae_err"].append(np.mean(ae_err))
            res["mean_err"].append(np.mean(mean_err))
    print(f"\ngz1-dev, {args.folds}-fold CV, seeds {args.seeds} (mean +- sd over seeds)")
    print(f"  CNN balanced accuracy          {fmt(res['bacc'])}   (target >= 0.65)")
    rec = np.mean(res["recall"], axis=0)
    print(
        "  CNN per-class recall           "
        + ", ".join(f"{c} {r:.2f}" for c, r in zip(classes, rec, strict=True))
    )
    rows = [
        ("pixel MSE", "mse", ""),
        ("pixel MSE, query in its best of 8 orientations", "mse_rot", ""),
        ("pixels standardised, cosine", "pix_std_cos", ""),
        ("CNN score space", "cnn", "(target >= MSE + 0.05)"),
        ("AE latent space", "ae", "(target >= MSE)"),
        ("AE latents standardised", "ae_std", "(target >= MSE)"),
        ("AE invariant latents standardised", "ae_inv_std", "(target >= MSE)"),
        ("AE invariant latents standardised, cosine", "ae_inv_std_cos", "(target >= MSE)"),
        ("AE invariant latents, 16 whitened PCs, cosine", "ae_inv_pca16_cos", "(target >= MSE)"),
    ]
    print("  balanced precision@10 (mean over folds):")
    for label, key, target in rows:
        if res[key]:
            print(f"    {label:48} {fmt(res[key])}   {target}")
    if res["ae"]:
        print(f"  AE held-out MSE {fmt(res['ae_err'])} vs mean image {fmt(res['mean_err'])}")


def part_g10(args):
    X, y = make_galaxies(6000, image_size=64, random_state=0)
    accs = []
    for seed in args.g10_seeds:
        t0 = time.perf_counter()
        cnn = CNNScorer(
            max_epochs=args.g10_epochs,
            lr=args.g10_lr,
            dropout=args.g10_dropout,
            restore_best=not args.g10_last_epoch,
            precision=args.g10_precision,
            random_state=seed,
            n_jobs=THREADS,
            verbose=args.verbose,
        ).fit(X[:5000], y[:5000])
        accs.append(cnn.score(X[5000:], y[5000:]))
        print(
            f"\nmake_galaxies 5000/1000, 10 classes, {args.g10_epochs} epochs, lr {cnn.lr} "
            f"({cnn.lr_schedule}), {cnn.precision}, "
            f"dropout {cnn.dropout}, seed {seed}: CNN test accuracy {accs[-1]:.3f} "
            f"(target >= 0.90); training {time.perf_counter() - t0:.0f} s"
        )
        pred = cnn.predict(X[5000:])
        rec = recall_score(y[5000:], pred, average=None, labels=range(10))
        print("  per-class recall: " + ", ".join(f"{i} {r:.2f}" for i, r in enumerate(rec)))
        print(
            "  validation balanced accuracy by epoch: "
            + " ".join(f"{h['valid_bacc']:.2f}" for h in cnn.history_)
            + f"; weights of epoch {cnn.best_epoch_} kept"
        )
    if len(accs) > 1:
        print(f"  mean over seeds {args.g10_seeds}: {fmt(accs)}")


def part_milkyway(args):
    X, y = make_galaxies(args.catalogue_size, image_size=64, random_state=0)
    mw = load_milky_way(kind="model", image_size=64)
    cnn = CNNScorer(max_epochs=args.g10_epochs, random_state=0, n_jobs=THREADS).fit(X, y)
    nn = knn_indices(cnn.transform(mw), cnn.transform(X), k=10)[0]
    n_spiral = int(np.isin(y[nn], SPIRALS).sum())
    print(
        f"\nbuilt-in catalogue ({len(X)} images): Milky Way model predicted as "
        f"{GALAXY10_CLASSES[cnn.predict(mw)[0]]!r}"
    )
    print(
        f"  10 nearest in CNN score space: {n_spiral}/10 spirals (target >= 8): "
        + ", ".join(GALAXY10_CLASSES[v] for v in y[nn])
    )
    vae = VAEEncoder(max_epochs=args.vae_epochs, random_state=0, n_jobs=THREADS).fit(X)
    gen = vae.generate_like(mw, 100, random_state=0)
    frac = float(np.isin(cnn.predict(gen), SPIRALS).mean())
    print(f"  generate_like(milky_way, 100): {frac:.0%} classified as spirals (target >= 80%)")
    if args.out:
        from galaxysim.plotting import plot_generated

        args.out.mkdir(parents=True, exist_ok=True)
        plot_generated(gen[:32], title="VAE: galaxies like the Milky Way").savefig(
            args.out / "mw_like.png", dpi=100
        )


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--parts", default="gz1,g10,milkyway")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--epochs", type=int, default=15, help="CNN epochs on gz1-dev")
    p.add_argument("--ae-epochs", type=int, default=25)
    p.add_argument("--no-ae", action="store_true")
    p.add_argument(
        "--gz1-max-images", type=int, default=None, help="stratified subsample of gz1-dev"
    )
    p.add_argument(
        "--ae-seeds", type=int, default=1, help="seeds (the first N) that also fit the AE"
    )
    p.add_argument("--g10-epochs", type=int, default=15)
    p.add_argument("--g10-seeds", default="0", help="comma list of CNN seeds")
    p.add_argument("--g10-lr", type=float, default=CNNScorer().lr)
    p.add_argument("--g10-dropout", type=float, default=CNNScorer().dropout)
    p.add_argument(
        "--g10-last-epoch", action="store_true", help="keep the last epoch (restore_best=False)"
    )
    p.add_argument("--g10-precision", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--vae-epochs", type=int, default=15)
    p.add_argument("--catalogue-size", type=int, default=3000)
    p.add_argument("--out", type=Path, default=None, help="folder for figures")
    p.add_argument("--verbose", type=int, default=0)
    args = p.parse_args(argv)
    args.seeds = [int(s) for s in args.seeds.split(",")]
    args.g10_seeds = [int(s) for s in args.g10_seeds.split(",")]
    for part in args.parts.split(","):
        {"gz1": part_gz1, "g10": part_g10, "milkyway": part_milkyway}[part](args)


if __name__ == "__main__":
    main()
