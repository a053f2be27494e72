from __future__ import annotations

import json
import warnings

import anndata as ad
import h5py
import numpy as np
import pytest
import scipy.sparse as sp

import xtrimogene_sc as xtg


@pytest.fixture
def model(trained_tiny_model):
    return trained_tiny_model


def _quiet_setup(adata, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        xtg.XTrimoGene.setup_anndata(adata, **kwargs)


def test_train_records_history_and_lowers_the_loss(model):
    history = model.history
    assert "train_loss" in history
    assert "validation_loss" in history
    assert model.is_trained


def test_latent_shape_and_tl_embed_writes_obsm(model):
    adata = model.adata
    latent = model.get_latent_representation(progress=False)
    assert latent.shape == (adata.n_obs, 4 * model.config.encoder_dim)
    assert np.isfinite(latent).all()
    out = xtg.tl.embed(adata, model, copy=True, progress=False)
    np.testing.assert_allclose(out.obsm["X_xtg"], latent, rtol=1e-5, atol=1e-6)
    assert out.uns["X_xtg"]["params"]["pooling"] == "concat"
    assert "X_xtg" not in adata.obsm  # copy=True leaves the input untouched


def test_embedding_independent_of_batch_size(model):
    a = model.get_latent_representation(batch_size=7, progress=False)
    b = model.get_latent_representation(batch_size=64, progress=False)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_embeds_an_unregistered_anndata_with_other_columns(model):
    adata = model.adata
    # reorder and drop columns: embeddings must follow genes, not column order
    perm = np.random.default_rng(0).permutation(adata.n_vars)
    other = ad.AnnData(
        adata.X[:, perm].copy(), obs=adata.obs[[]].copy(), var=adata.var.iloc[perm][[]]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        np.testing.assert_allclose(
            model.get_latent_representation(other, progress=False),
            model.get_latent_representation(progress=False),
            rtol=1e-4, atol=1e-5,
        )  # fmt: skip


def test_backed_h5ad_gives_the_same_embedding(model, tmp_path):
    path = tmp_path / "cells.h5ad"
    ad.AnnData(sp.csr_matrix(model.adata.X), var=model.adata.var[[]]).write_h5ad(path)
    backed = ad.read_h5ad(path, backed="r")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        latent = model.get_latent_representation(backed, progress=False)
    np.testing.assert_allclose(
        latent, model.get_latent_representation(progress=False), rtol=1e-5, atol=1e-6
    )
    backed.file.close()


def test_save_load_round_trip_is_identical(model, tmp_path):
    model.save(tmp_path / "m")
    with pytest.raises(FileExistsError, match="overwrite"):
        model.save(tmp_path / "m")
    loaded = xtg.XTrimoGene.load(tmp_path / "m")
    assert loaded.adata is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        again = loaded.get_latent_representation(model.adata, progress=False)
    np.testing.assert_array_equal(again, model.get_latent_representation(progress=False))
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "config.json",
        "model.safetensors",
        "vocab.tsv",
    ]


def test_load_refuses_a_checkpoint_of_another_shape(model, tmp_path):
    from safetensors.torch import load_file, save_file

    model.save(tmp_path / "m")
    weights = load_file(tmp_path / "m" / "model.safetensors")
    weights["gene_embedding.weight"] = weights["gene_embedding.weight"][:, :8].contiguous()
    save_file(weights, tmp_path / "m" / "model.safetensors")
    with pytest.raises(xtg.model.CheckpointError, match="model.safetensors is corrupted or was"):
        xtg.XTrimoGene.load(tmp_path / "m")  # the checksum recorded at save time catches it
    # a directory of the checksum-free format 1 still gets the shape diagnosis
    config = tmp_path / "m" / "config.json"
    meta = json.loads(config.read_text())
    config.write_text(json.dumps({**meta, "format_version": 1, "integrity": None}))
    with (
        pytest.raises(ValueError, match="another preset"),
        pytest.warns(UserWarning, match="unverified"),
    ):
        xtg.XTrimoGene.load(tmp_path / "m")


def test_load_refuses_another_vocabulary(model, tmp_path):
    model.save(tmp_path / "m")
    vocab = tmp_path / "m" / "vocab.tsv"
    lines = vocab.read_text().splitlines()
    lines[1], lines[2] = lines[2].split("\t")[0] + "\t0", lines[1].split("\t")[0] + "\t1"
    vocab.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match="vocabulary"):
        xtg.XTrimoGene.load(tmp_path / "m")


def test_gene_embeddings_mean_and_streamed_to_hdf5(model, tmp_path):
    cells = model.adata[:24].copy()  # the decoder runs all 19,266 positions per cell
    genes = list(cells.var_names[:5])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        mean = model.get_gene_embeddings(cells, genes=genes, progress=False)
        out = model.get_gene_embeddings(
            cells, genes=genes, reduce=None, out_file=tmp_path / "g.h5", progress=False
        )
        with pytest.raises(ValueError, match="not in the vocabulary"):
            model.get_gene_embeddings(cells, genes=["NOT_A_GENE"], progress=False)
    assert mean.shape == (5, model.config.decoder_dim)
    assert list(mean.index) == genes
    with h5py.File(out) as f:
        per_cell = f["gene_embeddings"][...]
        assert f["obs_names"].shape == (24,)
    assert per_cell.shape == (24, 5, model.config.decoder_dim)
    np.testing.assert_allclose(per_cell.mean(0), mean.to_numpy(), rtol=1e-4, atol=1e-5)


def test_setup_refuses_log_normalised_values_naming_the_layer():
    adata = xtg.datasets.synthetic_counts(n_obs=50, n_vars=200)
    adata.X = adata.X.copy()
    adata.X.data = np.log1p(adata.X.data) + 0.01
    with pytest.raises(ValueError, match=r"layer"):
        _quiet_setup(adata)


def test_setup_records_vocabulary_overlap():
    adata = xtg.datasets.synthetic_counts(n_obs=50, n_vars=200)
    _quiet_setup(adata)
    assert adata.uns["xtg"]["alignment"]["n_matched_vars"] == 200


def test_train_after_inference_trains_in_train_mode(tiny_adata):
    _quiet_setup(tiny_adata)
    m = xtg.XTrimoGene(
        tiny_adata, preset="tiny", decoder_mode="masked", encoder_dim=32, encoder_heads=2
    )
    before = m.get_reconstruction_error()
    m.module.eval()  # as after any inference call
    m.train(max_epochs=1, enable_progress_bar=False)
    assert m.module.training is False  # eval again after training ...
    assert m.get_reconstruction_error() < before  # ... but the epoch really trained


def _bulk_profiles(model, scale: float) -> ad.AnnData:
    """The registered cells as non-integer bulk-like profiles (counts times ``scale``)."""
    adata = model.adata
    X = sp.csr_matrix(adata.X, dtype=np.float64) * scale
    return ad.AnnData(X.astype(np.float32), var=adata.var[[]].copy())


def test_bulk_input_accepts_tpm_like_values_with_t_equal_s(model):
    counts = model.get_latent_representation(progress=False)  # default T = S
    same = model.get_latent_representation(
        _bulk_profiles(model, 1.0), input_type="bulk", progress=False
    )
    np.testing.assert_allclose(same, counts, atol=1e-5)
    # TPM-like: the same profiles on a non-integer scale. ln(1 + 1e4 x / N) is scale-free, so
    # only S (and T = S) move, by log10(scale): the embedding changes, but only through them.
    tpm = model.get_latent_representation(
        _bulk_profiles(model, 0.37), input_type="bulk", progress=False
    )
    assert tpm.shape == counts.shape
    assert np.isfinite(tpm).all()
    assert not np.allclose(tpm, counts, atol=1e-3)


def test_bulk_input_refuses_counts_checks_it_does_not_relax(model):
    tpm = _bulk_profiles(model, 0.37)
    with pytest.raises(ValueError, match="non-integer values"):
        model.get_latent_representation(tpm, progress=False)  # counts mode still strict
    tpm.X.data[0] = -1.0
    with pytest.raises(ValueError, match="negative values"):
        model.get_latent_representation(tpm, input_type="bulk", progress=False)
    with pytest.raises(ValueError, match="T = S"):
        model.get_latent_representation(
            tpm, input_type="bulk", t_mode="absolute", t_value=4.0, progress=False
        )
    with pytest.raises(ValueError, match="input_type must be"):
        model.get_latent_representation(input_type="tpm", progress=False)


def test_pretraining_uses_the_fused_adamw_on_cpu() -> None:
    """One pass over each tensor instead of a dozen: a tenth of a small model's CPU step."""
    from xtrimogene_sc.module import XTrimoGeneConfig, XTrimoGeneModule
    from xtrimogene_sc.train._plan import XTrimoGeneTrainingPlan

    module = XTrimoGeneModule(XTrimoGeneConfig.preset("tiny"))
    optimizer = XTrimoGeneTrainingPlan(module).configure_optimizers()["optimizer"]
    assert all(group["fused"] for group in optimizer.param_groups)


def test_default_pooling_is_the_reference_concat_and_refuses_unknown_names(model, tmp_path):
    assert model.default_pooling == "concat"
    with pytest.raises(ValueError, match="default_pooling must be one of"):
        model.default_pooling = "average"
    # a directory saved before the field existed holds no default: it loads as concat
    from xtrimogene_sc.model._io import save_directory

    save_directory(
        tmp_path / "old", config=model.config, state_dict=model.module.state_dict(),
        vocab=model.vocab, extra={"is_trained": True},
    )  # fmt: skip
    assert "default_pooling" not in json.loads((tmp_path / "old" / "config.json").read_text())
    assert xtg.XTrimoGene.load(tmp_path / "old").default_pooling == "concat"
