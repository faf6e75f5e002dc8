"""How the estimators run torch: n_jobs sets torch's threads per call and restores them."""

import numpy as np
import pytest
import torch

from galaxysim.nn import AEEncoder, CNNScorer
from galaxysim.nn._runtime import torch_threads

FAST = {"max_epochs": 1, "batch_size": 16, "random_state": 0}


def test_torch_threads_sets_and_restores(monkeypatch):
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), torch_threads(1):
        raise RuntimeError  # restored on errors too
    assert torch.get_num_threads() == before


def test_torch_threads_joblib_meaning(monkeypatch):
    monkeypatch.setattr("galaxysim.utils._threads._n_cores", lambda: 4)
    seen = []
    monkeypatch.setattr(torch, "set_num_threads", seen.append)
    for n_jobs in (-1, -2, 3):
        with torch_threads(n_jobs):
            pass
    before = torch.get_num_threads()
    assert seen == [4, before, 3, before, 3, before]


def test_n_jobs_is_set_during_fit_and_inference_and_restored(blobs, monkeypatch):
    X, y = blobs
    before = torch.get_num_threads()
    seen = []
    forward = torch.nn.Module.__call__

    def recording_call(self, *args, **kwargs):
        seen.append(torch.get_num_threads())
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Module, "__call__", recording_call)
    target = 1 if before != 1 else 2
    cnn = CNNScorer(n_jobs=target, **FAST).fit(X, y)
    assert seen and set(seen) == {target}
    assert torch.get_num_threads() == before
    seen.clear()
    cnn.predict_proba(X[:4])
    assert seen and set(seen) == {target}
    assert torch.get_num_threads() == before


def test_n_jobs_none_leaves_torch_alone(blobs):
    before = torch.get_num_threads()
    ae = AEEncoder(latent_dim=4, n_jobs=None, **FAST).fit(blobs[0])
    assert torch.get_num_threads() == before
    assert np.all(np.isfinite(ae.transform(blobs[0][:2])))


@pytest.mark.parametrize("bad", [0, 1.5, "2"])
def test_bad_n_jobs_refused(blobs, bad):
    with pytest.raises(ValueError, match="n_jobs"):
        CNNScorer(n_jobs=bad, **FAST).fit(*blobs)
