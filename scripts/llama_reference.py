"""llama.cpp's own answers for the in-process model's tests and benchmark, through
llama-cpp-python (scripts/install-llama-server.sh installs it into TOOLS_DIR/venv-llama).

    tokenize MODEL CORPUS.json   -> JSON list of token-id lists, one per string, as llama.cpp
                                    tokenizes plain text (no BOS, control tokens not parsed)
    greedy MODEL PROMPTS.json N  -> JSON list of the first N greedy token ids after each prompt
                                    (a prompt is a list of token ids)
    bench MODEL PROMPTS.json N THREADS
                                 -> JSON: prompt and generation tokens per second over the
                                    prompts (each prompt's ids, then N greedy tokens)
"""
import json
import sys
import time

import llama_cpp
from llama_cpp import Llama


def rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def last_logits(llm):
    # Without logits_all, Llama.eval keeps no scores: read the context's last row directly.
    import numpy as np
    pointer = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
    return np.ctypeslib.as_array(pointer, shape=(llm.n_vocab(),))


def main():
    mode, model = sys.argv[1], sys.argv[2]
    if mode == "tokenize":
        llm = Llama(model_path=model, vocab_only=True, verbose=False)
        with open(sys.argv[3], encoding="utf-8") as f:
            corpus = json.load(f)
        out = [llm.tokenize(s.encode("utf-8"), add_bos=False, special=False) for s in corpus]
        json.dump(out, sys.stdout)
        return
    with open(sys.argv[3], encoding="utf-8") as f:
        prompts = json.load(f)
    n = int(sys.argv[4])
    threads = int(sys.argv[5]) if len(sys.argv) > 5 else 2
    rss_before = rss_mib()
    started = time.perf_counter()
    llm = Llama(model_path=model, n_ctx=2048, n_threads=threads, n_threads_batch=threads,
                n_batch=512, verbose=False)
    load_s = time.perf_counter() - started
    model_rss = rss_mib() - rss_before
    results, prompt_tokens, prompt_secs, gen_tokens, gen_secs = [], 0, 0.0, 0, 0.0
    for ids in prompts:
        llm.reset()
        started = time.perf_counter()
        llm.eval(ids)
        prompt_secs += time.perf_counter() - started
        prompt_tokens += len(ids)
        out = []
        started = time.perf_counter()
        for _ in range(n):
            token = int(last_logits(llm).argmax())
            out.append(token)
            llm.eval([token])
        gen_secs += time.perf_counter() - started
        gen_tokens += n
        results.append(out)
    if mode == "greedy":
        json.dump(results, sys.stdout)
    else:
        json.dump({"prompt_tokens": prompt_tokens, "prompt_secs": prompt_secs,
                   "generated_tokens": gen_tokens, "generation_secs": gen_secs,
                   "model_rss_mib": model_rss, "load_s": load_s,
                   "version": "llama-cpp-python " + llama_cpp.__version__}, sys.stdout)


if __name__ == "__main__":
    main()
