"""Writes tests/golden/minilm_golden.json with the reference implementation (Hugging Face transformers).

Not a test dependency: it needs torch and transformers, which Lamina does not install. Run it
once, by hand, in a separate environment, and commit the JSON it writes:

    python3.11 -m venv /tmp/ref && /tmp/ref/bin/pip install torch transformers safetensors numpy
    make minilm   # unpacks all-MiniLM-L6-v2 into the shared model cache
    /tmp/ref/bin/python tests/golden/make_minilm_golden.py ~/.cache/lamina/models/all-MiniLM-L6-v2

The file holds, for each sentence, the token ids of HF's tokenizer (with [CLS] and [SEP]), the
final hidden state of the [CLS] token, the mean-pooled final hidden states (the
sentence-transformers embedding, before normalisation) and the first 16 dimensions of every
token's final hidden state.
"""

import json
import os
import sys

import numpy as np
import torch
import transformers

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Lamina turns a YAML spec into a production TFX pipeline!",
    "Café crème brûlée, naïve résumé — déjà vu.",
    "東京は今日は晴れです。",
    "Emoji 🙂 and symbols: 3.14 ≤ π, 100% (ok?)",
    "",
    "UNAFFECTED lowercase MiXeD CaSe tokenization of unbelievably long words like "
    "antidisestablishmentarianism",
]
MAX_LENGTH = 32
DIMS = 16


def main(model_dir: str, out: str) -> None:
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    model = transformers.AutoModel.from_pretrained(model_dir).eval()
    batch = tokenizer(SENTENCES, padding="max_length", truncation=True, max_length=MAX_LENGTH,
                      return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state.numpy().astype(np.float64)
    mask = batch["attention_mask"].numpy().astype(np.float64)
    mean = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    rows = []
    for i, sentence in enumerate(SENTENCES):
        n = int(mask[i].sum())
        rows.append({
            "text": sentence,
            "token_ids": batch["input_ids"][i, :n].tolist(),
            "cls": np.round(hidden[i, 0], 7).tolist(),
            "mean_pooled": np.round(mean[i], 7).tolist(),
            "tokens_first_dims": np.round(hidden[i, :n, :DIMS], 7).tolist(),
        })
    golden = {
        "model": os.path.basename(os.path.normpath(model_dir)),
        "reference": f"transformers {transformers.__version__}, torch {torch.__version__}, float32, CPU",
        "max_length": MAX_LENGTH,
        "sentences": rows,
    }
    with open(out, "w", encoding="utf-8") as f:
        json.dump(golden, f, ensure_ascii=False, indent=1)
    print(f"wrote {out}: {len(rows)} sentences")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(__file__),
                                                                         "minilm_golden.json"))
