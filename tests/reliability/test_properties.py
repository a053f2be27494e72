"""Property-based tests (hypothesis): alignment by name, batch/row-order independence, save/load.

Small ``max_examples`` and tiny models keep the whole file to a few seconds on 2 cores.
"""

from __future__ import annotations

import functools
import struct
import tempfile
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp
from reliability_support import cells, quiet, tiny_model

import xtrimogene_sc as xtg
from xtrimogene_sc.model import CheckpointError

hypothesis = pytest.importorskip("hypothesis")
st = pytest.importorskip("hypothesis.strategies")
given, settings = hypothesis.given, hypothesis.settings

VOCAB = xtg.GeneVocab.default()
PLAIN = np.array([n for n in VOCAB.names if not n.endswith("__chrM")], dtype=object)
FAST = settings(max_examples=30, deadline=None, derandomize=True)


@functools.cache
def _model() -> xtg.XTrimoGene:
    return tiny_model()


@functools.cache
def _cells() -> ad.AnnData:
    return cells(n_obs=12, n_vars=150, seed=5)


@functools.cache
def _reference() -> np.ndarray:
    return _embed(_cells(), batch_size=64, max_tokens=None)


def _embed(adata: ad.AnnData, **kwargs: object) -> np.ndarray:
    return quiet(_model().get_latent_representation, adata, progress=False, **kwargs)


# ------------------------------------------------------------------------ alignment by name
_CASE = {"same": str, "lower": str.lower, "upper": str.upper}


@st.composite
def _columns(draw: st.DrawFn) -> tuple[list[str], list[int]]:
    """Gene columns: vocabulary symbols in any single case, shuffled with unknown names."""
    picked = draw(st.lists(st.integers(0, len(PLAIN) - 1), min_size=1, max_size=60, unique=True))
    cases = draw(
        st.lists(st.sampled_from(list(_CASE)), min_size=len(picked), max_size=len(picked))
    )
    names = [_CASE[c](PLAIN[i]) for i, c in zip(picked, cases, strict=True)]
    truth = [int(VOCAB.positions([PLAIN[i]])[0]) for i in picked]
    unknown = draw(st.lists(st.from_regex(r"NOTAGENE[0-9]{1,4}", fullmatch=True), max_size=10,
                            unique=True))  # fmt: skip
    columns = list(zip(names + unknown, truth + [-1] * len(unknown), strict=True))
    order = draw(st.permutations(range(len(columns))))
    return [columns[i][0] for i in order], [columns[i][1] for i in order]


@FAST
@given(_columns())
def test_every_column_maps_to_its_own_gene_whatever_the_order_and_case(columns) -> None:
    names, truth = columns
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        alignment = VOCAB.align(names, min_overlap=0.0, min_genes=0)
    assert alignment.var_to_position.tolist() == truth


@settings(max_examples=10, deadline=None, derandomize=True)
@given(st.randoms(use_true_random=False), st.integers(0, 20))
def test_embedding_follows_gene_names_not_columns(rng, n_extra: int) -> None:
    """Shuffled columns, some symbols in another case, extra unknown genes: same embedding."""
    adata = _cells()
    order = list(range(adata.n_vars))
    rng.shuffle(order)
    names = [
        str(n).lower() if rng.random() < 0.3 else str(n) for n in adata.var_names[order]
    ]  # fmt: skip
    extra = sp.random(adata.n_obs, n_extra, density=0.3, random_state=rng.randint(0, 999),
                      data_rvs=lambda k: np.ones(k)) * 5  # fmt: skip
    X = sp.hstack([adata.X[:, order], extra], format="csr").astype(np.float32)
    other = ad.AnnData(X)
    other.var_names = names + [f"NOTAGENE{i}" for i in range(n_extra)]
    np.testing.assert_allclose(_embed(other), _reference(), rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------- batch size and row order
@settings(max_examples=15, deadline=None, derandomize=True)
@given(
    st.integers(1, 16),
    st.one_of(st.none(), st.integers(60, 3000)),
    st.permutations(range(12)),
)
def test_embedding_is_independent_of_batch_size_and_row_order(
    batch_size: int, max_tokens: int | None, order: list[int]
) -> None:
    shuffled = _cells()[list(order)].copy()
    got = _embed(shuffled, batch_size=batch_size, max_tokens=max_tokens)
    np.testing.assert_allclose(got, _reference()[list(order)], rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------- save/load round trip
_SIZES = st.sampled_from([(16, 2), (16, 4), (32, 2)])


@settings(max_examples=6, deadline=None, derandomize=True)
@given(_SIZES, _SIZES, st.sampled_from(["masked", "full"]), st.integers(1, 2),
       st.lists(st.from_regex(r"[a-z]{1,8}\.(txt|h5ad|csv)", fullmatch=True), max_size=3,
                unique=True), st.integers(0, 10**6))  # fmt: skip
def test_save_load_round_trip_keeps_weights_and_user_files(
    encoder, decoder, decoder_mode: str, depth: int, user_files: list[str], flip_at: int
) -> None:
    first = tiny_model(encoder_dim=encoder[0], encoder_heads=encoder[1], encoder_depth=depth,
                       decoder_dim=decoder[0], decoder_heads=decoder[1], decoder_mode=decoder_mode)  # fmt: skip
    second = tiny_model(encoder_dim=encoder[0] * 2, encoder_heads=encoder[1])
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "m"
        first.save(folder)
        for name in user_files:
            (folder / name).write_text(name)
        loaded = xtg.XTrimoGene.load(folder)
        assert loaded.config == first.config
        for key, value in first.module.state_dict().items():
            assert loaded.module.state_dict()[key].equal(value), key
        second.save(folder, overwrite=True)
        assert xtg.XTrimoGene.load(folder).config == second.config
        assert all((folder / name).read_text() == name for name in user_files)
        assert not list(Path(tmp).rglob(".*"))  # nothing hidden left behind
        weights = folder / "model.safetensors"
        data = bytearray(weights.read_bytes())
        start = 8 + struct.unpack("<Q", data[:8])[0]  # tensor bytes begin after the header
        data[start + flip_at % (len(data) - start)] ^= 0x01  # one bit
        weights.write_bytes(bytes(data))
        with pytest.raises(CheckpointError, match="corrupted or was modified"):
            xtg.XTrimoGene.load(folder)
