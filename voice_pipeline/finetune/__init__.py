"""Fine-tuning the small LLM for voice: data, LoRA training, GGUF export and evaluation.

Only `train` and `export` need the optional `train` extra (torch, transformers, peft, gguf);
the data rules, the evaluation and `ask` run on the pipeline's own dependencies.
"""
