"""Read checkpoints in the released scFoundation layout (``models.ckpt``) into this package's module.

The released file is a ``torch.save`` of ``{'gene' | 'cell' | 'rde': {'config', 'state_dict'}}``
(spec §10.2). Each variant's config is merged as the reference ``load.convertconfig`` does
(``model_config[model]`` updated by ``dataset_config['rnaseq']``) and its weights are renamed onto
:class:`~xtrimogene_sc.module.XTrimoGeneModule`:

* the decoder's separate ``to_q``/``to_k``/``to_v`` become one ``qkv`` projection;
* ``token_emb.emb_mask`` ``(1, D)`` becomes the mask embedding ``(D,)``;
* the Performer ``projection_matrix`` buffers are copied as stored, never redrawn;
* ``token_emb.emb_pad`` has no counterpart (padding is an explicit mask here) and is dropped.

Anything else in the state dict is refused by name, as is any shape that does not fit.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from xtrimogene_sc._constants import TOKENS
from xtrimogene_sc.base._errors import CheckpointError
from xtrimogene_sc.base._integrity import check_finite
from xtrimogene_sc.module._config import XTrimoGeneConfig
from xtrimogene_sc.module._objective_config import PretrainingObjective

VARIANTS = ("gene", "cell", "rde")
DROPPED = ("token_emb.emb_pad.weight",)  # the pad row: padding is an explicit mask here

# reference name (after the Lightning "model." prefix) -> this package's name; {i} = layer index
_ENCODER_LAYER = {
    "self_attn.in_proj_weight": "attn.qkv.weight",
    "self_attn.in_proj_bias": "attn.qkv.bias",
    "self_attn.out_proj.weight": "attn.out.weight",
    "self_attn.out_proj.bias": "attn.out.bias",
    "linear1.weight": "ff.0.weight",
    "linear1.bias": "ff.0.bias",
    "linear2.weight": "ff.3.weight",
    "linear2.bias": "ff.3.bias",
    "norm1.weight": "norm1.weight",
    "norm1.bias": "norm1.bias",
    "norm2.weight": "norm2.weight",
    "norm2.bias": "norm2.bias",
}
_DECODER_LAYER = {
    "0.norm.weight": "norm1.weight",
    "0.norm.bias": "norm1.bias",
    "0.fn.to_out.weight": "attn.out.weight",
    "0.fn.to_out.bias": "attn.out.bias",
    "0.fn.fast_attention.projection_matrix": "attn.kernel.projection",
    "1.norm.weight": "norm2.weight",
    "1.norm.bias": "norm2.bias",
    "1.fn.fn.w1.weight": "ff.0.weight",
    "1.fn.fn.w1.bias": "ff.0.bias",
    "1.fn.fn.w2.weight": "ff.3.weight",
    "1.fn.fn.w2.bias": "ff.3.bias",
}
_TOP_LEVEL = {
    "token_emb.mlp.weight": "value_embedding.to_bins.weight",
    "token_emb.mlp.bias": "value_embedding.to_bins.bias",
    "token_emb.mlp2.weight": "value_embedding.bin_mix.weight",
    "token_emb.mlp2.bias": "value_embedding.bin_mix.bias",
    "token_emb.emb.weight": "value_embedding.bin_table.weight",
    "pos_emb.weight": "gene_embedding.weight",
    "encoder.norm.weight": "encoder_norm.weight",
    "encoder.norm.bias": "encoder_norm.bias",
    "decoder_embed.weight": "decoder_embed.weight",
    "decoder_embed.bias": "decoder_embed.bias",
    "decoder.norm.weight": "decoder_norm.weight",
    "decoder.norm.bias": "decoder_norm.bias",
    "norm.weight": "head_norm.weight",
    "norm.bias": "head_norm.bias",
    "to_final.weight": "head.weight",
    "to_final.bias": "head.bias",
}
_ENC_RE = re.compile(r"^encoder\.transformer_encoder\.(\d+)\.(.+)$")
_DEC_RE = re.compile(r"^decoder\.performer\.net\.layers\.(\d+)\.(.+)$")
_QKV_RE = re.compile(r"^0\.fn\.to_([qkv])\.(weight|bias)$")
_MASK = "token_emb.emb_mask.weight"
_REDRAW = "decoder.performer.calls_since_last_redraw"


def read_checkpoint(
    path: str | Path, key: str = "cell", *, allow_pickle: bool = False
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Open a released-layout checkpoint and return the merged config and state dict of ``key``.

    The file is memory-mapped (``mmap=True``), so tensors are read from disk on demand instead of
    being copied into memory first. Only ``weights_only`` unpickling is used unless
    ``allow_pickle=True``.
    """
    path = Path(path)
    if path.is_dir():
        saved = (path / "config.json").is_file()
        what = "holds a model saved by xtrimogene_sc" if saved else "is a directory"
        msg = (
            f"{path} {what}; from_scfoundation reads a released scFoundation .ckpt file. Load a "
            "directory written by save() with xtrimogene_sc.XTrimoGene.load"
        )
        raise IsADirectoryError(msg)
    if not path.is_file():
        msg = f"{path}: no such checkpoint file"
        raise FileNotFoundError(msg)
    checkpoint = _torch_load(path, allow_pickle=allow_pickle)
    if not isinstance(checkpoint, dict) or not any(v in checkpoint for v in VARIANTS):
        found = sorted(checkpoint)[:8] if isinstance(checkpoint, dict) else type(checkpoint)
        msg = (
            f"{path} is not in the scFoundation layout: expected a dict with keys among "
            f"{list(VARIANTS)}, found {found}"
        )
        raise CheckpointError(msg)
    if key not in checkpoint:
        msg = (
            f"{path} has no {key!r} weights; it holds {sorted(checkpoint)}: pass key= one of them"
        )
        raise CheckpointError(msg)
    entry = checkpoint[key]
    if not isinstance(entry, dict) or not {"config", "state_dict"} <= set(entry):
        msg = f"{path}[{key!r}] must hold 'config' and 'state_dict'"
        raise CheckpointError(msg)
    state = {_strip(name): tensor for name, tensor in entry["state_dict"].items()}
    return merge_config(entry["config"], source=f"{path}[{key!r}]"), state


def _torch_load(path: Path, *, allow_pickle: bool) -> Any:
    with path.open("rb") as fh:
        magic = fh.read(4)
    if not (magic.startswith(b"PK") or magic[:1] == b"\x80"):  # torch.save: zip, or pickle
        msg = (
            f"{path} is not a readable PyTorch checkpoint: it is neither a zip archive nor a "
            f"pickle (it starts with {magic!r}); pass the models.ckpt file or a model directory"
        )
        raise CheckpointError(msg)
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=not allow_pickle, mmap=True)
        except RuntimeError as err:
            if "mmap" not in str(err):
                raise
            # legacy (non-zip) serialisation cannot be memory-mapped
            return torch.load(path, map_location="cpu", weights_only=not allow_pickle)
    except pickle.UnpicklingError as err:
        msg = (
            f"{path} needs full pickle to load, which can run arbitrary code: refused. If you "
            "trust the file's origin, pass allow_pickle=True (unsafe for untrusted files). "
            f"Detail: {str(err).splitlines()[0]}"
        )
        raise CheckpointError(msg) from err
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, KeyError, ValueError) as err:
        # a file that is no checkpoint at all fails inside the unpickler (e.g. KeyError: 101)
        detail = (str(err).splitlines() or [""])[0]
        msg = (
            f"{path} is not a readable PyTorch checkpoint (truncated, corrupt, or another kind "
            f"of file?): {type(err).__name__}: {detail}"
        )
        raise CheckpointError(msg) from err


def _strip(name: str) -> str:
    return name.removeprefix("model.")


def merge_config(config: dict[str, Any], *, source: str) -> dict[str, Any]:
    """The reference ``convertconfig`` merge: ``model_config[model]`` updated by the rnaseq block."""
    try:
        model_name = config["model"]
        merged = dict(config["model_config"][model_name])
    except (KeyError, TypeError) as err:
        msg = f"{source}: config lacks model / model_config[model] ({err!r})"
        raise CheckpointError(msg) from err
    merged.update(config.get("dataset_config", {}).get("rnaseq", {}))
    merged["model"] = model_name
    return merged


def to_config(
    merged: dict[str, Any], state: dict[str, torch.Tensor], *, source: str
) -> XTrimoGeneConfig:
    """Build an :class:`XTrimoGeneConfig` from a merged reference config, checking every field used."""
    checks = {
        "model": (merged.get("model"), "mae_autobin"),
        "encoder.module_type": (merged.get("encoder", {}).get("module_type"), "transformer"),
        "decoder.module_type": (merged.get("decoder", {}).get("module_type"), "performer"),
        "encoder.norm_first": (bool(merged.get("encoder", {}).get("norm_first", False)), False),
        "rawcount (read-depth tokens T and S)": (bool(merged.get("rawcount", True)), True),
        "seq_len": (merged.get("seq_len", TOKENS.SEQ_LEN), TOKENS.SEQ_LEN),
    }
    for name, (found, expected) in checks.items():
        if found != expected:
            msg = f"{source}: unsupported {name}={found!r} (this package implements {expected!r})"
            raise CheckpointError(msg)
    sides = {}
    for side in ("encoder", "decoder"):
        block = merged[side]
        dim, heads = int(block["hidden_dim"]), int(block["heads"])
        dim_head = int(block.get("dim_head", dim // heads))
        if heads <= 0 or dim_head * heads != dim:
            msg = (
                f"{source}: {side} dim_head={dim_head} x heads={heads} != hidden_dim={dim}; this "
                "package needs dim_head == hidden_dim / heads"
            )
            raise CheckpointError(msg)
        sides[side] = (dim, int(block["depth"]), heads)
    ff_mult, nb_features = _shape_derived(state, sides, source=source)
    return XTrimoGeneConfig(
        encoder_dim=sides["encoder"][0], encoder_depth=sides["encoder"][1],
        encoder_heads=sides["encoder"][2], decoder_dim=sides["decoder"][0],
        decoder_depth=sides["decoder"][1], decoder_heads=sides["decoder"][2],
        ff_mult=ff_mult, decoder_nb_features=nb_features,
        bin_num=int(merged.get("bin_num", 100)), bin_alpha=float(merged.get("bin_alpha", 1.0)),
        use_depth_tokens=True, decoder_mode="full",
        objective=PretrainingObjective(
            mask_ratio_nonzero=float(merged.get("value_mask_prob", merged.get("mask_prob", 0.3))),
            mask_ratio_zero=float(merged.get("zero_mask_prob", 0.03)),
        ),
    )  # fmt: skip


def _shape_derived(
    state: dict[str, torch.Tensor], sides: dict[str, tuple[int, int, int]], *, source: str
) -> tuple[int, int]:
    """Feed-forward expansion and random-feature count, read off the stored weights."""
    try:
        enc_ff = state["encoder.transformer_encoder.0.linear1.weight"].shape[0]
        dec_ff = state["decoder.performer.net.layers.0.1.fn.fn.w1.weight"].shape[0]
        nb_features = state[
            "decoder.performer.net.layers.0.0.fn.fast_attention.projection_matrix"
        ].shape[0]
    except KeyError as err:
        msg = f"{source}: state dict lacks {err.args[0]!r}, needed to size the model"
        raise CheckpointError(msg) from err
    enc_mult, dec_mult = enc_ff / sides["encoder"][0], dec_ff / sides["decoder"][0]
    if enc_mult != dec_mult or enc_mult != int(enc_mult):
        msg = (
            f"{source}: feed-forward widths {enc_ff} (encoder) and {dec_ff} (decoder) are not the "
            "same integer multiple of the layer widths; this package uses one ff_mult"
        )
        raise CheckpointError(msg)
    return int(enc_mult), int(nb_features)


def reference_shapes(config: XTrimoGeneConfig) -> dict[str, tuple[int, ...]]:
    """Every weight a released-layout state dict of ``config`` holds, with its shape."""
    de, dd, b = config.encoder_dim, config.decoder_dim, config.bin_num
    fe, fd = config.ff_mult * de, config.ff_mult * dd
    m = config.decoder_nb_features or 0
    shapes: dict[str, tuple[int, ...]] = {
        "token_emb.mlp.weight": (b, 1), "token_emb.mlp.bias": (b,),
        "token_emb.mlp2.weight": (b, b), "token_emb.mlp2.bias": (b,),
        "token_emb.emb.weight": (b, de), _MASK: (1, de),
        "pos_emb.weight": (TOKENS.N_POSITIONS, de),
        "encoder.norm.weight": (de,), "encoder.norm.bias": (de,),
        "decoder_embed.weight": (dd, de), "decoder_embed.bias": (dd,),
        "decoder.norm.weight": (dd,), "decoder.norm.bias": (dd,),
        "norm.weight": (dd,), "norm.bias": (dd,),
        "to_final.weight": (1, dd), "to_final.bias": (1,),
    }  # fmt: skip
    encoder_layer = {
        "self_attn.in_proj_weight": (3 * de, de), "self_attn.in_proj_bias": (3 * de,),
        "self_attn.out_proj.weight": (de, de), "self_attn.out_proj.bias": (de,),
        "linear1.weight": (fe, de), "linear1.bias": (fe,),
        "linear2.weight": (de, fe), "linear2.bias": (de,),
        "norm1.weight": (de,), "norm1.bias": (de,), "norm2.weight": (de,), "norm2.bias": (de,),
    }  # fmt: skip
    decoder_layer = {
        "0.norm.weight": (dd,), "0.norm.bias": (dd,),
        **{f"0.fn.to_{p}.weight": (dd, dd) for p in ("q", "k", "v", "out")},
        **{f"0.fn.to_{p}.bias": (dd,) for p in ("q", "k", "v", "out")},
        "0.fn.fast_attention.projection_matrix": (m, dd // config.decoder_heads),
        "1.norm.weight": (dd,), "1.norm.bias": (dd,),
        "1.fn.fn.w1.weight": (fd, dd), "1.fn.fn.w1.bias": (fd,),
        "1.fn.fn.w2.weight": (dd, fd), "1.fn.fn.w2.bias": (dd,),
    }  # fmt: skip
    for i in range(config.encoder_depth):
        shapes.update(
            {f"encoder.transformer_encoder.{i}.{k}": v for k, v in encoder_layer.items()}
        )
    for i in range(config.decoder_depth):
        shapes.update(
            {f"decoder.performer.net.layers.{i}.{k}": v for k, v in decoder_layer.items()}
        )
    return shapes


def check_reference_shapes(
    state: dict[str, torch.Tensor], config: XTrimoGeneConfig, *, source: str
) -> None:
    """Refuse missing, unexpected or wrongly shaped weights, named as in the file."""
    expected = reference_shapes(config)
    optional = {*DROPPED, _REDRAW}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected) - optional)
    wrong = [
        f"{k} {tuple(state[k].shape)} (expected {v})"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != v
    ]
    if missing or unexpected or wrong:
        problems = [
            f"{len(items)} {kind}: {items[:4]}"
            for kind, items in (("missing", missing), ("unexpected", unexpected),
                                ("wrongly shaped", wrong))
            if items
        ]  # fmt: skip
        msg = (
            f"{source}: weights do not fit the model its config describes "
            f"(encoder {config.encoder_depth}x{config.encoder_dim}, decoder "
            f"{config.decoder_depth}x{config.decoder_dim}): {'; '.join(problems)}"
        )
        raise CheckpointError(msg)


def convert_state_dict(
    state: dict[str, torch.Tensor], config: XTrimoGeneConfig, *, source: str
) -> dict[str, torch.Tensor]:
    """Rename and reshape reference weights onto this package's module; refuse leftovers by name."""
    out: dict[str, torch.Tensor] = {}
    qkv: dict[int, dict[str, dict[str, torch.Tensor]]] = {}
    unknown: list[str] = []
    for name, tensor in state.items():
        if name in DROPPED:
            continue
        if name in _TOP_LEVEL:
            out[_TOP_LEVEL[name]] = tensor
        elif name == _MASK:
            out["value_embedding.mask_embedding"] = tensor.reshape(-1)
        elif name == _REDRAW:
            for i in range(config.decoder_depth):
                out[f"decoder_blocks.{i}.attn.kernel.calls"] = tensor.reshape(()).to(torch.long)
        elif (m := _ENC_RE.match(name)) and m[2] in _ENCODER_LAYER:
            out[f"encoder_blocks.{m[1]}.{_ENCODER_LAYER[m[2]]}"] = tensor
        elif (m := _DEC_RE.match(name)) and m[2] in _DECODER_LAYER:
            out[f"decoder_blocks.{m[1]}.{_DECODER_LAYER[m[2]]}"] = tensor
        elif (m := _DEC_RE.match(name)) and (q := _QKV_RE.match(m[2])):
            qkv.setdefault(int(m[1]), {}).setdefault(q[2], {})[q[1]] = tensor
        else:
            unknown.append(name)
    if unknown:
        msg = (
            f"{source}: {len(unknown)} weights have no counterpart in this package's model and "
            f"would be silently ignored: {unknown[:5]}; refusing to load"
        )
        raise CheckpointError(msg)
    for layer, parts in qkv.items():
        for kind, qkv_parts in parts.items():
            missing = [p for p in "qkv" if p not in qkv_parts]
            if missing:
                msg = f"{source}: decoder layer {layer} lacks to_{'/to_'.join(missing)}.{kind}"
                raise CheckpointError(msg)
            fused = torch.cat([qkv_parts[p] for p in "qkv"], dim=0)
            out[f"decoder_blocks.{layer}.attn.qkv.{kind}"] = fused
    return out


def load_scfoundation(
    path: str | Path, key: str = "cell", *, allow_pickle: bool = False
) -> tuple[XTrimoGeneConfig, dict[str, torch.Tensor]]:
    """Config and converted weights of one variant of a released-layout checkpoint.

    Parameters
    ----------
    path
        The ``models.ckpt`` file (or any file in its layout).
    key
        ``"cell"`` (cell embeddings), ``"gene"`` (gene embeddings and expression) or ``"rde"``
        (read-depth enhancement), as in the reference ``--version``/``--output_type`` choice.
    allow_pickle
        Allow full unpickling. Unsafe for files you do not trust: a pickle can run any code.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    IsADirectoryError
        ``path`` is a directory (a model saved by this package is read with ``XTrimoGene.load``).
    CheckpointError
        Unreadable or truncated file, a file that needs pickle without ``allow_pickle``, NaN or
        infinite weights, another layout, a config this package does not implement, or weights that do not fit.
    """
    merged, state = read_checkpoint(path, key, allow_pickle=allow_pickle)
    source = f"{path}[{key!r}]"
    check_finite(state, source=source)
    config = to_config(merged, state, source=source)
    check_reference_shapes(state, config, source=source)
    converted = convert_state_dict(state, config, source=source)
    for i in range(config.decoder_depth):  # older files may lack the redraw counter
        converted.setdefault(
            f"decoder_blocks.{i}.attn.kernel.calls", torch.zeros((), dtype=torch.long)
        )
    return config, converted
