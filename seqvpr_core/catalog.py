"""Names the command line offers in its help and choices, importable without torch,
numpy or FAISS: ``seqvpr --help`` builds every subcommand's parser and must answer
at once, while importing the model registries costs seconds (torch, torchvision).

Runtimes, index kinds and metrics are defined here and imported by the modules that
implement them. Encoder and aggregator names mirror the registries, which remain
the truth (they build the models); ``test_cli_checks.py`` fails when the two
differ.
"""

from __future__ import annotations

ENCODERS = (
    "cct224", "cct384", "dinov2_vitb14", "dinov2_vits14", "efficientnet_lite0",
    "efficientnet_lite2", "pixels", "resnet18", "resnet50", "rgb", "vgg16", "vit",
)
AGGREGATORS = (
    "adapt_stformer", "avg", "cat", "delta", "fc", "max", "mixer", "none", "r2plus1d",
    "seqgem", "seqnet", "seqvlad", "stformer", "timesformer",
)

RUNTIMES = ("auto", "torch", "onnxruntime")  # where a frame encoder runs: models/runtime.py
INDEX_KINDS = ("auto", "flat", "hnsw", "ivf-flat", "ivf-pq")  # maps/indexes.py
GROWING_INDEX_KINDS = ("flat", "hnsw")  # grow one entry at a time without training: slam
METRICS = ("ip", "l2")  # inner product (cosine on unit descriptors) or squared L2

# seqvpr eval: the ground-truth rules (eval/ground_truth.py RULES) and the learning-free
# baselines run beside the model (eval/baselines.py BASELINES), each with its --NAME help
GT_RULES = ("current", "seq2seq")
EVAL_BASELINES = {
    "seqslam": "add SeqSLAM sequence matching (Milford & Wyeth 2012) on the same frame "
               "features",
    "delta": "add delta descriptors (Garg et al., RA-L 2020): the change of the same frame "
             "features over each window, learning-free",
}
