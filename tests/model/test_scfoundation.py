"""Released scFoundation checkpoints: parity with the reference code's outputs, and refusals.

The fixture (``../shared/data/scfoundation_parity``) holds a tiny checkpoint in the released
``models.ckpt`` layout and the outputs the reference implementation computed from it, one cell at
a time; see its PROVENANCE.md.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp
import torch

import xtrimogene_sc as xtg
from xtrimogene_sc.data._tokenize import DepthSpec, tokenize_counts
from xtrimogene_sc.model._scfoundation import CheckpointError

PARITY = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "scfoundation_parity"
CKPT = PARITY / "tiny_models.ckpt"
pytestmark = pytest.mark.skipif(
    not CKPT.exists(), reason=f"scFoundation parity fixture not found at {PARITY}"
)
ENCODER_ATOL, DECODER_ATOL = 1e-5, 1e-4
T4 = {"t_mode": "absolute", "t_value": 4.0}  # reference --tgthighres t4
F1 = {"t_mode": "fold", "t_value": 1.0}  # reference --tgthighres f1 (T = S)


@pytest.fixture(scope="module")
def ref():
    return dict(np.load(PARITY / "reference_outputs.npz"))


@pytest.fixture(scope="module")
def cells_adata(ref):
    names = list(xtg.GeneVocab.default().names)
    adata = ad.AnnData(sp.csr_matrix(ref["counts"].astype(np.float32)))
    adata.var_names = names
    adata.obs_names = [str(c) for c in ref["cell_ids"]]
    return adata


@pytest.fixture(scope="module")
def cell_model():
    return xtg.XTrimoGene.from_scfoundation(CKPT, key="cell")


@pytest.fixture(scope="module")
def gene_model():
    return xtg.XTrimoGene.from_scfoundation(CKPT, key="gene")


def _tokens(ref, rows=slice(None), depth=T4):
    counts = sp.csr_matrix(ref["counts"][rows])
    return tokenize_counts(counts, np.arange(counts.shape[1]), depth=DepthSpec(**{
        "mode": depth["t_mode"], "value": depth["t_value"]}))  # fmt: skip


# ---------------------------------------------------------------- parity
@pytest.mark.parametrize(("depth", "input_key"), [(T4, "model_input"), (F1, "model_input_2")])
def test_tokenisation_reproduces_the_reference_model_input(ref, depth, input_key):
    cells = _tokens(ref, depth=depth)
    dense = np.zeros((8, 19266), dtype=np.float32)
    rows = np.repeat(np.arange(8), np.diff(cells.crow.numpy()))
    dense[rows, cells.pos.numpy()] = cells.value.numpy()
    dense[:, 19264], dense[:, 19265] = cells.depth_t.numpy(), cells.depth_s.numpy()
    np.testing.assert_allclose(dense, ref[input_key], atol=2e-6, rtol=0)


def test_add_log10_target_depth_is_the_reference_a_mode(ref):
    """``a5``: T = log10(N) + 5 (no reference array; checked against the recorded S)."""
    cells = _tokens(ref, depth={"t_mode": "add_log10", "t_value": 5.0})
    np.testing.assert_allclose(cells.depth_t.numpy(), ref["model_input"][:, 19265] + 5, atol=1e-5)


@pytest.mark.parametrize("batch_size", [1, 8])
@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({**T4, "pooling": "concat"}, "cell_embedding"),
        ({**F1, "pooling": "concat"}, "cell_embedding_2"),
        ({**T4, "pooling": "max_all_tokens"}, "cell_embedding_max"),
    ],
)
def test_cell_embeddings_match_the_reference(
    cell_model, cells_adata, ref, batch_size, kwargs, expected
):
    emb = cell_model.get_latent_representation(
        cells_adata, batch_size=batch_size, progress=False, **kwargs
    )
    np.testing.assert_allclose(emb, ref[expected], atol=ENCODER_ATOL, rtol=0)


def test_rde_is_served_and_cell_embeddings_do_not_depend_on_batch_neighbours(
    cell_model, cells_adata, ref
):
    rde = xtg.XTrimoGene.from_scfoundation(CKPT, key="rde")  # an alias of 'cell' in the fixture
    shuffled = cells_adata[[5, 0, 7, 2, 6, 1, 4, 3]].copy()
    emb = rde.get_latent_representation(shuffled, batch_size=3, progress=False, **T4)
    np.testing.assert_allclose(emb, ref["cell_embedding"][[5, 0, 7, 2, 6, 1, 4, 3]], atol=1e-5)


@pytest.mark.parametrize("batch", [1, 8])
def test_full_expression_output_matches_the_reference(gene_model, ref, batch):
    out = []
    with torch.no_grad():
        for start in range(0, 8, batch):
            out.append(gene_model.module.reconstruct(_tokens(ref, slice(start, start + batch))))
    pred = torch.cat(out)[:, :19264].numpy()
    np.testing.assert_allclose(pred, ref["gene_expression"], atol=DECODER_ATOL, rtol=0)


def test_masked_decoder_output_matches_the_reference(gene_model, ref):
    cell = int(ref["masked_cell"])
    positions = torch.from_numpy(np.flatnonzero(ref["mask"]))
    with torch.no_grad():
        alone = gene_model.module.reconstruct(
            _tokens(ref, slice(cell, cell + 1)), torch.zeros_like(positions), positions
        )
        # the same masked cell next to seven unmasked ones: its output must not change
        batched = gene_model.module.reconstruct(
            _tokens(ref), torch.full_like(positions, cell), positions
        )
    np.testing.assert_allclose(alone[0].numpy(), ref["masked_decoder_output"], atol=DECODER_ATOL)
    np.testing.assert_allclose(batched[cell].numpy(), alone[0].numpy(), atol=1e-5)


@pytest.mark.parametrize("batch_size", [1, 8])
def test_gene_embeddings_match_the_reference(gene_model, cells_adata, ref, batch_size):
    genes = [xtg.GeneVocab.default().names[i] for i in ref["gene_context_genes"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        per_cell = gene_model.get_gene_embeddings(
            cells_adata, genes=genes, reduce=None, batch_size=batch_size, progress=False, **T4
        )
    assert per_cell.shape == ref["gene_context_emb"].shape
    np.testing.assert_allclose(per_cell, ref["gene_context_emb"], atol=DECODER_ATOL, rtol=0)


# ---------------------------------------------------------------- user path
def test_round_trip_through_save_and_load_keeps_embeddings(cell_model, cells_adata, tmp_path):
    before = cell_model.get_latent_representation(cells_adata, progress=False, **T4)
    cell_model.save(tmp_path / "scf_cell")
    loaded = xtg.XTrimoGene.load(tmp_path / "scf_cell")
    assert loaded.source_ == {"scfoundation_checkpoint": str(CKPT), "key": "cell"}
    after = loaded.get_latent_representation(cells_adata, progress=False, **T4)
    np.testing.assert_array_equal(after, before)


def test_load_and_from_pretrained_accept_a_checkpoint_file(cells_adata, ref):
    for loader in (xtg.XTrimoGene.load, xtg.XTrimoGene.from_pretrained):
        model = loader(CKPT, key="cell")
        assert model.config.decoder_mode == "full"
        emb = model.get_latent_representation(cells_adata[:2].copy(), progress=False, **T4)
        np.testing.assert_allclose(emb, ref["cell_embedding"][:2], atol=ENCODER_ATOL)


def test_config_is_read_from_the_checkpoint(cell_model):
    c = cell_model.config
    assert (c.encoder_dim, c.encoder_depth, c.encoder_heads) == (64, 2, 4)
    assert (c.decoder_dim, c.decoder_depth, c.decoder_heads) == (32, 2, 4)
    assert (c.ff_mult, c.decoder_nb_features, c.bin_num, c.bin_alpha) == (4, 16, 100, 1.0)
    stored = torch.load(CKPT, weights_only=True)["cell"]["state_dict"]
    name = "model.decoder.performer.net.layers.1.0.fn.fast_attention.projection_matrix"
    # random features are copied, never redrawn
    assert torch.equal(cell_model.module.decoder_blocks[1].attn.kernel.projection, stored[name])


# ---------------------------------------------------------------- bad input
def _released() -> dict:
    return torch.load(CKPT, weights_only=True)


def _write(tmp_path: Path, checkpoint, name="bad.ckpt") -> Path:
    path = tmp_path / name
    torch.save(checkpoint, path)
    return path


def _edit_state(edit) -> dict:
    ckpt = _released()
    state = dict(ckpt["cell"]["state_dict"])
    edit(state)
    ckpt["cell"] = {"config": ckpt["cell"]["config"], "state_dict": state}
    return ckpt


def _drop_encoder_norm(state):
    del state["model.encoder.norm.weight"]


def _add_extra(state):
    state["model.token_emb.emb_cls.weight"] = torch.zeros(1, 64)


def _wrong_pos_emb(state):
    state["model.pos_emb.weight"] = torch.zeros(19266, 64)


def _wrong_qkv(state):
    state["model.decoder.performer.net.layers.0.0.fn.to_k.weight"] = torch.zeros(32, 16)


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (_drop_encoder_norm, r"1 missing: \['encoder.norm.weight'\]"),
        (_add_extra, r"1 unexpected: \['token_emb.emb_cls.weight'\]"),
        (_wrong_pos_emb, r"pos_emb.weight \(19266, 64\) \(expected \(19267, 64\)\)"),
        (_wrong_qkv, r"to_k.weight \(32, 16\) \(expected \(32, 32\)\)"),
    ],
)
def test_state_dicts_that_do_not_fit_are_refused_by_name(tmp_path, edit, fragment):
    path = _write(tmp_path, _edit_state(edit))
    with pytest.raises(CheckpointError, match=fragment):
        xtg.XTrimoGene.from_scfoundation(path)


def test_config_with_inconsistent_dim_head_is_refused(tmp_path):
    ckpt = _released()
    config = ckpt["cell"]["config"]
    config["model_config"]["mae_autobin"]["encoder"]["dim_head"] = 32  # 32 x 4 heads != 64
    with pytest.raises(CheckpointError, match=r"encoder dim_head=32 x heads=4 != hidden_dim=64"):
        xtg.XTrimoGene.from_scfoundation(_write(tmp_path, ckpt))


def test_rnaseq_block_overrides_model_config_as_in_the_reference(tmp_path):
    ckpt = _released()
    ckpt["cell"]["config"]["dataset_config"]["rnaseq"]["bin_num"] = 50  # rnaseq wins
    with pytest.raises(
        CheckpointError, match=r"token_emb.mlp.weight \(100, 1\) \(expected \(50, 1\)"
    ):
        xtg.XTrimoGene.from_scfoundation(_write(tmp_path, ckpt))


def test_truncated_file_is_refused(tmp_path):
    path = tmp_path / "truncated.ckpt"
    path.write_bytes(CKPT.read_bytes()[: CKPT.stat().st_size // 2])
    with pytest.raises(
        CheckpointError, match=r"truncated\.ckpt is not a readable PyTorch checkpoint"
    ):
        xtg.XTrimoGene.from_scfoundation(path)


def test_a_file_that_needs_pickle_is_refused_unless_allowed(tmp_path):
    import argparse

    ckpt = _released()
    ckpt["hyper_parameters"] = argparse.Namespace(lr=1e-4)  # as Lightning files often hold
    path = _write(tmp_path, ckpt)
    with pytest.raises(CheckpointError, match=r"needs full pickle.*allow_pickle=True"):
        xtg.XTrimoGene.from_scfoundation(path)
    model = xtg.XTrimoGene.from_scfoundation(path, allow_pickle=True)
    assert model.config.encoder_dim == 64


def test_missing_variant_other_layout_and_missing_file_are_explained(tmp_path):
    with pytest.raises(
        CheckpointError, match=r"no 'ce' weights; it holds \['cell', 'gene', 'rde'\]"
    ):
        xtg.XTrimoGene.from_scfoundation(CKPT, key="ce")
    other = _write(tmp_path, {"state_dict": {"w": torch.zeros(2)}})
    with pytest.raises(CheckpointError, match="not in the scFoundation layout"):
        xtg.XTrimoGene.from_scfoundation(other)
    with pytest.raises(FileNotFoundError, match="no such checkpoint file"):
        xtg.XTrimoGene.from_scfoundation(tmp_path / "models.ckpt")


# ---------------------------------------------------------------- layout round trip and memory
def _to_released_layout(module) -> dict[str, torch.Tensor]:
    """This package's weights under the released names (the inverse of the loader's key map)."""
    from xtrimogene_sc.model import _scfoundation as scf

    top = {v: k for k, v in scf._TOP_LEVEL.items()}
    enc = {v: k for k, v in scf._ENCODER_LAYER.items()}
    dec = {v: k for k, v in scf._DECODER_LAYER.items()}
    out = {}
    for name, tensor in module.state_dict().items():
        kind, _, rest = name.partition(".")
        layer, _, leaf = rest.partition(".")
        if name in top:
            out[top[name]] = tensor
        elif name == "value_embedding.mask_embedding":
            out[scf._MASK] = tensor[None]
        elif kind == "encoder_blocks":
            out[f"encoder.transformer_encoder.{layer}.{enc[leaf]}"] = tensor
        elif leaf == "attn.kernel.calls":
            out[scf._REDRAW] = tensor
        elif leaf.startswith("attn.qkv."):
            for p, part in zip("qkv", tensor.chunk(3), strict=True):
                out[f"decoder.performer.net.layers.{layer}.0.fn.to_{p}.{leaf[9:]}"] = part.clone()
        else:
            out[f"decoder.performer.net.layers.{layer}.{dec[leaf]}"] = tensor
    return {f"model.{k}": v for k, v in out.items()}


def _released_checkpoint(module) -> dict:
    c = module.config
    config = _released()["cell"]["config"]
    block = config["model_config"]["mae_autobin"]
    block["encoder"].update(
        hidden_dim=c.encoder_dim,
        depth=c.encoder_depth,
        heads=c.encoder_heads,
        dim_head=c.encoder_dim // c.encoder_heads,
    )
    block["decoder"].update(
        hidden_dim=c.decoder_dim,
        depth=c.decoder_depth,
        heads=c.decoder_heads,
        dim_head=c.decoder_dim // c.decoder_heads,
    )
    config["dataset_config"]["rnaseq"]["bin_num"] = c.bin_num  # fmt: skip
    return {"cell": {"config": config, "state_dict": _to_released_layout(module)}}


def test_every_weight_survives_the_key_map(tmp_path):
    from xtrimogene_sc.module import XTrimoGeneConfig, XTrimoGeneModule

    module = XTrimoGeneModule(XTrimoGeneConfig.preset("tiny", decoder_depth=3, seed=5))
    path = _write(tmp_path, _released_checkpoint(module))
    loaded = xtg.XTrimoGene.from_scfoundation(path).module.state_dict()
    original = module.state_dict()
    assert loaded.keys() == original.keys()
    for name, tensor in original.items():
        assert torch.equal(loaded[name], tensor), name


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_non_finite_weight_is_refused_by_name(tmp_path, value):
    from xtrimogene_sc.module import XTrimoGeneConfig, XTrimoGeneModule

    checkpoint = _released_checkpoint(XTrimoGeneModule(XTrimoGeneConfig.preset("tiny")))
    state = checkpoint["cell"]["state_dict"]
    name = next(k for k in state if k.endswith("pos_emb.weight"))
    state[name][3, 1] = value
    with pytest.raises(
        CheckpointError, match=rf"weight '{name.removeprefix('model.')}' holds 1 NaN or infinite"
    ):
        xtg.XTrimoGene.from_scfoundation(_write(tmp_path, checkpoint))


_RSS_SCRIPT = """
import sys, torch
from xtrimogene_sc import XTrimoGene  # imported before measuring: the libraries are not weights
def anon_mb():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon"):
            return int(line.split()[1]) / 1024
before = anon_mb()
model = XTrimoGene.from_scfoundation(sys.argv[1])
print(anon_mb() - before)
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_loading_holds_one_copy_of_the_weights_in_memory(tmp_path):
    """The file is memory-mapped: process memory grows by the model, not by model + file."""
    import os
    import subprocess
    import sys

    from xtrimogene_sc.module import XTrimoGeneConfig, XTrimoGeneModule

    module = XTrimoGeneModule(XTrimoGeneConfig.preset("large"))
    weights_mb = sum(t.numel() * t.element_size() for t in module.state_dict().values()) / 2**20
    path = _write(tmp_path, _released_checkpoint(module), "large.ckpt")
    del module
    script = tmp_path / "rss.py"
    script.write_text(_RSS_SCRIPT)
    grown = float(subprocess.run(
        [sys.executable, str(script), str(path)], capture_output=True, text=True, check=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    ).stdout.split()[-1])  # fmt: skip
    # measured: 1.00x with mmap, 1.96x when the file is read into memory first
    assert grown < 1.4 * weights_mb, f"grew {grown:.0f} MB for {weights_mb:.0f} MB of weights"
