"""Out-of-distribution flag of the parasite classifier: k-NN score, threshold rule, shipped
reference (checked, bound to its classifier), exclusion from the parasite counts."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from scopeflow.parasites.ood import (
    fit_ood_reference,
    knn_scores,
    load_ood_reference,
    ood_path,
    score_spots,
    stratified_folds,
)


def test_knn_score_is_one_minus_cosine_to_kth_neighbour():
    ref = np.eye(4, dtype=np.float32)  # 4 orthogonal unit vectors
    f = np.array([[1, 0, 0, 0], [np.sqrt(0.5), np.sqrt(0.5), 0, 0]], np.float32)
    np.testing.assert_allclose(knn_scores(f, ref, 1), [0.0, 1 - np.sqrt(0.5)], atol=1e-6)
    np.testing.assert_allclose(knn_scores(f, ref, 2), [1.0, 1 - np.sqrt(0.5)], atol=1e-6)
    np.testing.assert_allclose(knn_scores(f, ref, 3), [1.0, 1.0], atol=1e-6)
    with pytest.raises(ValueError, match="fewer than k"):
        knn_scores(f, ref, 5)


def test_stratified_folds_is_the_training_split(shared, torch_one_thread):
    from scopeflow.parasites.train import cross_validate, load_spots

    d = load_spots(shared)
    idx = np.r_[np.arange(0, 12), np.arange(400, 412)]
    cv = cross_validate(d["x"][idx], d["y"][idx], folds=3, n_members=1, epochs=1, seed=7)
    np.testing.assert_array_equal(cv["fold"], stratified_folds(d["y"][idx], 3, 7))


def test_fit_threshold_is_the_heldout_quantile(shared, torch_one_thread):
    from scopeflow.parasites.classifier import load_parasite_model
    from scopeflow.parasites.train import load_spots

    model, meta = load_parasite_model()
    d = load_spots(shared)
    fold = stratified_folds(d["y"], int(meta["train"]["folds"]), int(meta["train"]["seed"]))
    sub = np.arange(0, 800, 8)
    ref, met = fit_ood_reference(model, meta, d["x"][sub], d["y"][sub], d["ood"][:20],
                                 fold=fold[sub], k=3, quantile=0.9)
    held = np.asarray(met["heldout_scores"])
    assert met["threshold"] == pytest.approx(np.quantile(held, 0.9))
    assert met["heldout_flagged_fraction"] <= 0.1 + 1e-9
    # member m's reference holds exactly the crops of the folds it was trained on
    for m in range(len(model.members)):
        assert ref["counts"][m] == np.sum(fold[sub] != m)
    assert ref["features"].dtype == np.float16
    assert 0 <= met["ood_flagged_fraction"] <= 1 and met["n_ood"] == 20


def test_shipped_reference_flags_ood_crops_and_keeps_classifier_calls(shared, torch_one_thread):
    from scopeflow.parasites.classifier import score_crops

    d = shared / "octopi_malaria_spots"
    ood = np.load(d / "ood_images.npy")
    lab = np.concatenate([np.load(d / "conformal_set_pos.npy")[::5],
                          np.load(d / "conformal_set_neg.npy")[::5]])
    r_ood, r_lab = score_spots(ood), score_spots(lab)
    ref = score_crops(lab)
    np.testing.assert_allclose(r_lab["logit"], ref["logit"], atol=1e-5)
    np.testing.assert_array_equal(r_lab["is_parasite"], ref["is_parasite"])
    # the shipped bag (cross-validated figures in the model card): the unlabelled OOD crops
    # are flagged several times more often than labelled training crops
    f_ood, f_lab = r_ood["ood"].mean(), r_lab["ood"].mean()
    assert f_ood >= 0.05 and f_lab <= 0.02 and f_ood > 4 * max(f_lab, 1 / len(lab))
    assert r_ood["ood_score"].mean() > r_lab["ood_score"].mean()


def test_reference_is_checked_and_bound_to_its_classifier(tmp_path):
    from scopeflow.parasites.classifier import DEFAULT_WEIGHTS
    from scopeflow.models.weights import WeightsError

    w = tmp_path / "parasites.pt"
    for src in (DEFAULT_WEIGHTS, DEFAULT_WEIGHTS.with_suffix(".md"), ood_path()):
        shutil.copy(src, tmp_path / src.name)
    assert float(load_ood_reference(w)["threshold"]) > 0
    with open(ood_path(w), "ab") as fh:  # a changed reference: its digest is not the card's
        fh.write(b"0")
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        load_ood_reference(w)
    shutil.copy(ood_path(), ood_path(w))
    with open(w, "ab") as fh:  # another classifier beside the same reference
        fh.write(b"0")
    with pytest.raises(WeightsError, match="another classifier"):
        load_ood_reference(w)
    ood_path(w).unlink()
    with pytest.raises(WeightsError, match="fit-parasite-ood"):
        load_ood_reference(w)


def test_ood_calls_are_not_counted():
    from scopeflow.parasites.parasitemia import parasitemia_row

    spots = pd.DataFrame({"fov": "a", "cell_id": [1, 2, 3, 0],
                          "is_parasite": [True, True, True, True],
                          "ood": [False, True, False, True]})
    cells = pd.DataFrame({"fov": "a", "cell_id": [1, 2, 3], "qc_pass": True})
    r = parasitemia_row(spots, cells)
    assert r["n_parasites"] == 2 and r["n_infected_rbc"] == 2
    assert r["n_parasites_ood"] == 2 and r["n_parasites_all"] == 4
    r0 = parasitemia_row(spots.drop(columns="ood"), cells)  # tables without the flag
    assert r0["n_parasites"] == 3 and r0["n_parasites_ood"] == 0
