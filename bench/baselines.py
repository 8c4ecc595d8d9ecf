"""Teacher-less baselines the benchmarks train beside edgeopt's students, in the same run on the same split."""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def p50_ms(func: Callable[[Any], object], items: Sequence[Any], warmup: int = 10) -> float:
    for item in items[:warmup]:
        func(item)
    times = []
    for item in items:
        start = time.perf_counter()
        func(item)
        times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times))


def tfidf_baseline(data: Any, latency_texts: Sequence[str] = ()) -> dict[str, Any]:
    """TF-IDF (word 1-2 grams, sublinear tf) + logistic regression, C chosen by 3-fold CV on train only.

    A fair baseline is a tuned one. Returns accuracy on ``data.test``, the pickled size, the chosen C, fit time,
    the fitted model (key ``model``, dropped before writing results) and, when ``latency_texts`` are given, the
    end-to-end p50 of one text.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline

    folds = min(3, min(np.bincount(np.asarray(data.train.labels))))
    search = GridSearchCV(
        make_pipeline(
            TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1),
            LogisticRegression(max_iter=3000),
        ),
        {"logisticregression__C": [1.0, 10.0, 100.0]},
        cv=max(2, folds),
    )
    start = time.perf_counter()
    search.fit(list(data.train.texts), list(data.train.labels))
    fit_s = time.perf_counter() - start
    model = search.best_estimator_
    accuracy = float(np.mean(model.predict(list(data.test.texts)) == np.asarray(data.test.labels)))
    result: dict[str, Any] = {
        "accuracy": accuracy,
        "bytes": len(pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)),
        "fit_s": fit_s,
        "C": search.best_params_["logisticregression__C"],
        "model": model,
    }
    if latency_texts:
        result["p50_ms_end_to_end"] = p50_ms(lambda t: model.predict([t]), list(latency_texts))
    return result
