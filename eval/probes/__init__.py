"""`hear-maeast probe`: the probes the field reports, on the embeddings `hear-maeast eval` writes.

    linear  EVAR's linear probe on standardised features (eval/probes/linear.py)
    knn     X-ARES's cosine kNN, k = 10, T = 0.07 (eval/probes/knn.py); single-label clip tasks, else `n/a`
    mlp     heareval 2021's MLP protocol in plain PyTorch: no TensorFlow, no Lightning, CPU or CUDA
            (eval/probes/mlp.py)

Every probe reads heareval's embeddings folder (eval/probes/data.py), scores with heareval.score's functions
(eval/probes/scoring.py) and writes heareval's result layout, `test.predicted-scores.json` and
`<split>.predictions.pkl`, so `hear-maeast table` reads it and `table --against` pairs it (eval/probes/run.py).
"""

PROBES = ("linear", "knn", "mlp")
