"""Annotate another study's cells from a labelled reference: xTrimoGene beside CellTypist-style
logistic regression and scANVI.

The reference is the sorted PBMCs (Zheng 2017, labels from the sort); the queries are the Kang
controls and the bundled 700 PBMCs, all on the genes the three studies share and with the
coarse labels of ``benchmarks/_studies.py``. The reference has no dendritic cells, so a query's
dendritic cells have no right answer but ``Unknown``: their unknown rate is reported apart.

Methods, each predicting ``Unknown`` below a confidence of 0.5:

* ``logreg counts``: CellTypist's recipe, a logistic regression on log1p counts per 10⁴
  (scaled), fitted on the reference;
* ``scanvi``: scVI then scANVI on the reference, and the query mapped scArches-style
  (``SCANVI.load_query_data``, then training on the query's unlabelled cells);
* ``knn <embedding>``: :func:`xtrimogene_sc.tl.annotate` (kNN label transfer) on an embedding
  of all three studies from ``bench_integration.py``'s cache (``X_xtg``, PCA, Harmony, scVI);
* ``xtg classifier``: :class:`~xtrimogene_sc.model.XTrimoGeneClassifier` fine-tuned on the
  reference from the recipe's backbone trained (unlabelled) on all three studies.

Scores per query study over the cells whose type the reference has: accuracy (``Unknown``
counts as wrong), macro-F1 and the unknown rate; then the unknown rate of the dendritic cells.

    python benchmarks/bench_integration.py --settings three_studies --seeds 0   # the embeddings
    python benchmarks/bench_query_annotation.py --seed 0 --write
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import mean_sd, record
from _studies import three_studies
from bench_integration import train_recipe

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "INTEGRATION_RESULTS.md"
DOCS_PAGE = ROOT / "docs" / "integration.md"
REFERENCE, QUERIES, NOVEL = "zheng", ("kang", "pbmc68k"), "Dendritic"
THRESHOLD = 0.5
EMBEDDINGS = ("xtg", "xtg_harmony", "pca", "harmony", "scvi")
FAMILIES = ("logreg", "scanvi", "xtg", "knn")


def logreg_counts(reference: Any, query: Any, seed: int, quick: bool) -> tuple:
    """CellTypist's model: logistic regression on scaled log1p counts per 10⁴."""
    import scanpy as sc
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    def features(adata):
        data = adata.copy()
        sc.pp.normalize_total(data, target_sum=1e4)
        sc.pp.log1p(data)
        return data.X

    scaler = StandardScaler(with_mean=False).fit(features(reference))
    fit = LogisticRegression(C=1.0, max_iter=200 if quick else 1000, random_state=seed)
    fit.fit(scaler.transform(features(reference)), reference.obs["coarse_type"].astype(str))
    return fit.classes_, fit.predict_proba(scaler.transform(features(query)))


def scanvi_reference(reference: Any, seed: int, quick: bool) -> Any:
    """scVI then scANVI trained on the reference.

    The scVI network is the one scvi-tools' scArches tutorial recommends for mapping queries
    (layer norm instead of batch norm, the batch fed to the encoder too, two layers, dropout
    0.2): with scvi-tools' plain defaults the mapped queries scored far lower (see the results).
    """
    import scvi

    scvi.settings.seed = seed
    ref = reference.copy()
    scvi.model.SCVI.setup_anndata(ref, batch_key="study", labels_key="coarse_type")
    base = scvi.model.SCVI(
        ref, use_layer_norm="both", use_batch_norm="none", encode_covariates=True,
        dropout_rate=0.2, n_layers=2,
    )  # fmt: skip
    base.train(max_epochs=2 if quick else None, enable_progress_bar=False)
    model = scvi.model.SCANVI.from_scvi_model(
        base, unlabeled_category="Unknown", labels_key="coarse_type"
    )
    model.train(max_epochs=2 if quick else 20, enable_progress_bar=False)
    return model


def scanvi_map(model: Any, query: Any, quick: bool) -> tuple:
    """The query mapped onto the reference's scANVI scArches-style (``load_query_data``, then
    training on the query's unlabelled cells), and its predicted label probabilities."""
    import scvi

    q = query.copy()
    q.obs["coarse_type"] = "Unknown"
    mapped = scvi.model.SCANVI.load_query_data(q, model)
    mapped.train(
        max_epochs=2 if quick else 100, plan_kwargs={"weight_decay": 0.0},
        enable_progress_bar=False,
    )  # fmt: skip
    proba = mapped.predict(soft=True)
    return np.asarray(proba.columns), proba.to_numpy()


def xtg_classifier(backbone: Any, reference: Any, query: Any, seed: int, quick: bool) -> tuple:
    """The recipe's backbone (trained without labels on all three studies), fine-tuned on the
    reference."""
    import xtrimogene_sc as xtg

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        classifier = xtg.model.XTrimoGeneClassifier.from_xtrimogene(backbone)
        classifier.train(reference, labels_key="coarse_type", max_epochs=2 if quick else 20,
                         seed=seed)  # fmt: skip
        return classifier.classes_, classifier.predict_proba(query)


def knn_on(embedding: np.ndarray, union: Any, query_study: str) -> tuple:
    """:func:`xtrimogene_sc.tl.annotate`'s kNN transfer from the reference's cells."""
    import xtrimogene_sc as xtg

    study = union.obs["study"].astype(str).to_numpy()
    ref, query = union[study == REFERENCE].copy(), union[study == query_study].copy()
    ref.obsm["rep"] = embedding[study == REFERENCE]
    query.obsm["rep"] = embedding[study == query_study]
    xtg.tl.annotate(query, reference=ref, labels_key="coarse_type", use_rep="rep",
                    unknown_threshold=0.0, key_added="transfer")  # fmt: skip
    proba = query.obsm["transfer_probabilities"]
    return np.asarray(query.uns["transfer"]["params"]["classes"]), np.asarray(proba)


def scores(classes: np.ndarray, proba: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Accuracy, macro-F1 and unknown rate on known types; unknown rate of the novel type."""
    from sklearn.metrics import f1_score

    called = np.where(proba.max(axis=1) >= THRESHOLD, np.asarray(classes)[proba.argmax(1)],
                      "Unknown")  # fmt: skip
    known = truth != NOVEL
    return {
        "accuracy": float((called[known] == truth[known]).mean()),
        "macro_f1": float(
            f1_score(truth[known], called[known], average="macro", labels=np.unique(truth[known]))
        ),  # fmt: skip
        "unknown": float((called[known] == "Unknown").mean()),
        "novel_unknown": float((called[~known] == "Unknown").mean()) if (~known).any() else np.nan,
    }


def run(args: argparse.Namespace) -> pd.DataFrame:
    """Every method on every query study for one seed."""
    union = three_studies()
    if args.quick:
        union = union[np.random.default_rng(0).permutation(union.n_obs)[:300]].copy()
    study = union.obs["study"].astype(str).to_numpy()
    reference = union[study == REFERENCE].copy()
    rows = []
    cache = Path(args.integration_cache)
    backbone = train_recipe(union, args.seed, args.quick) if "xtg" in args.methods else None
    scanvi_model = (
        scanvi_reference(reference, args.seed, args.quick) if "scanvi" in args.methods else None
    )
    for name in QUERIES:
        query = union[study == name].copy()
        truth = query.obs["coarse_type"].astype(str).to_numpy()
        methods = {
            "logreg counts": lambda q=query: logreg_counts(reference, q, args.seed, args.quick),
            "scanvi": lambda q=query: scanvi_map(scanvi_model, q, args.quick),
            "xtg classifier": lambda q=query: xtg_classifier(
                backbone, reference, q, args.seed, args.quick),
        }  # fmt: skip
        for rep in EMBEDDINGS:
            path = cache / f"three_studies_{rep}_seed{args.seed}.npy"
            if path.exists() and not args.quick:
                methods[f"knn {rep}"] = lambda p=path, n=name: knn_on(np.load(p), union, n)
        methods = {k: v for k, v in methods.items() if k.split()[0] in args.methods}
        for method, predict in methods.items():
            print(f"  {name}: {method}")
            classes, proba = predict()
            rows.append({"query": name, "method": method, "seed": args.seed,
                         **scores(classes, proba, truth)})  # fmt: skip
    return pd.DataFrame(rows)


def report(frame: pd.DataFrame) -> str:
    """One table: mean ± sd over the seeds (counted) per query study and method."""
    columns = ("accuracy", "macro_f1", "unknown", "novel_unknown")
    lines = [
        "| query | method | seeds | " + " | ".join(columns) + " |",
        "|---|---|---:|" + "---:|" * 4,
    ]
    for (query, method), rows in frame.sort_values("query", kind="stable").groupby(
        ["query", "method"], sort=False
    ):
        lines.append(f"| {query} | {method} | {rows['seed'].nunique()} | "
                     + " | ".join(mean_sd(rows[c]) for c in columns) + " |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="300 cells, few epochs")
    parser.add_argument("--methods", nargs="+", default=list(FAMILIES), choices=FAMILIES,
                        help="knn: every cached embedding of bench_integration.py")  # fmt: skip
    parser.add_argument("--integration-cache", default="benchmarks/.integration")
    parser.add_argument("--csv", help="append the rows to this CSV")
    parser.add_argument("--from-csv", nargs="+", help="only summarise saved rows")
    parser.add_argument(
        "--write",
        action="store_true",
        help="record the table in INTEGRATION_RESULTS.md and docs/integration.md",
    )
    args = parser.parse_args(argv)
    if args.from_csv:
        frame = pd.concat([pd.read_csv(path) for path in args.from_csv], ignore_index=True)
    else:
        frame = run(args)
        if args.csv:
            frame.to_csv(args.csv, mode="a", header=not Path(args.csv).exists(), index=False)
    record(report(frame), [RESULTS, DOCS_PAGE] if args.write else None, "query-annotation")
    return frame


if __name__ == "__main__":
    main()
