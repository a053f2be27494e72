"""Drug features from SMILES: Morgan (ECFP-like) bit fingerprints via RDKit (optional extra)."""

from __future__ import annotations

from collections.abc import Mapping
from types import ModuleType

import numpy as np
import pandas as pd

_EXTRA_HINT = "pip install 'xtrimogene-sc[drug]' (or pip install rdkit)"


def require_rdkit() -> ModuleType:
    """Import RDKit's ``Chem`` module, or explain which extra provides it."""
    try:
        from rdkit import Chem
    except ImportError as err:
        msg = f"featurising drugs from SMILES needs RDKit: {_EXTRA_HINT}"
        raise ImportError(msg) from err
    return Chem


def morgan_fingerprints(
    smiles: Mapping[str, str] | pd.Series,
    *,
    radius: int = 2,
    n_bits: int = 1024,
) -> pd.DataFrame:
    """Morgan bit fingerprints of named molecules (ECFP4 for ``radius=2``).

    Parameters
    ----------
    smiles
        Drug name -> SMILES string (a dict, or a Series indexed by drug name).
    radius
        Morgan radius (bonds from each atom); 2 is ECFP4, 3 is ECFP6.
    n_bits
        Length of the folded bit vector.

    Returns
    -------
    drugs x ``n_bits`` DataFrame of 0/1 ``uint8`` values, indexed by drug name, in input order.

    Raises
    ------
    ImportError
        RDKit is not installed (it comes with the ``drug`` extra).
    ValueError
        A SMILES that RDKit cannot parse or sanitise; the message names the drug and the SMILES.
    """
    if radius < 0 or n_bits < 1:
        msg = f"radius must be >= 0 and n_bits >= 1, got {radius} and {n_bits}"
        raise ValueError(msg)
    items = list(smiles.items())
    names = [str(name) for name, _ in items]
    if len(set(names)) != len(names):
        dups = sorted({n for n in names if names.count(n) > 1})
        msg = f"drug names must be unique; repeated: {dups[:5]}"
        raise ValueError(msg)
    Chem = require_rdkit()
    from rdkit.Chem import rdFingerprintGenerator

    generator = rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=n_bits)
    rows = [generator.GetFingerprintAsNumPy(parse_smiles(n, s, Chem)) for n, s in items]
    table = np.vstack(rows).astype(np.uint8) if rows else np.zeros((0, n_bits), np.uint8)
    columns = [f"morgan{radius}_{i}" for i in range(n_bits)]
    return pd.DataFrame(table, index=pd.Index(names, name="drug"), columns=columns)


def parse_smiles(name: str, smiles: object, Chem: ModuleType | None = None):
    """RDKit molecule of one drug; errors name the drug, the SMILES and what is wrong with it."""
    Chem = Chem or require_rdkit()
    from rdkit import RDLogger
    from rdkit.Chem.rdchem import MolSanitizeException

    if not isinstance(smiles, str) or not smiles.strip():
        msg = f"drug {name!r} has no SMILES (got {smiles!r}); give a SMILES string for every drug"
        raise ValueError(msg)
    RDLogger.DisableLog("rdApp.*")  # the error below says it all; no parser noise on stderr
    try:
        mol = Chem.MolFromSmiles(smiles, sanitize=False)
        if mol is None:
            msg = f"drug {name!r}: RDKit cannot parse the SMILES {smiles!r} (syntax error)"
            raise ValueError(msg)
        try:
            Chem.SanitizeMol(mol)
        except MolSanitizeException as err:
            msg = f"drug {name!r}: the SMILES {smiles!r} is not a valid molecule ({err})"
            raise ValueError(msg) from err
    finally:
        RDLogger.EnableLog("rdApp.*")
    return mol
