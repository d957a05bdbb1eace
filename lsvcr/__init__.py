"""LSVCR, the joint video and comment recommender (torch), and the control, SASRec.

config.py        the model's configs (LSVCRConfig, SASRecConfig, TextConfig, FinetuneConfig): what a
                 model directory's config.json records; JSON in and out
errors.py        InputError, the one exception for bad user input (the CLI maps it to exit code 2)
data/            the dataset: the official LSVCR layout, building one from a run, RecBole import, batches
layers.py        transformer blocks shared by the LSVCR backbone and SASRec (right-padded sequences)
sr.py            the LSVCR sequential-recommendation backbone (the part kept in deployment)
recommender.py   stage 2's LSVCR recommender: the backbone on frozen item texts (through the text MLP)
sasrec.py        the control: SASRec over video ids only
text.py          frozen item-text embeddings (MiniLM, or the aligned LLM) and their safetensors cache
llm.py           the supplemental LLM under LoRA and its text encoder (the only importer of
                 transformers and peft, lazily)
prompts.py       stage 1's prompts and their tokenisation
align_data.py    stage 1's mixed-task samples (the LLM view and the SR view)
contrastive.py   stage 1's losses and the view augmentations they train on
align.py         stage 1: preference alignment of the SR model with the LLM; the aligned directory
align_main.py    stage 1's entry point for launchers (torchrun, accelerate)
distributed.py   data-parallel helpers; no-ops in one process
losses.py        training losses, pure functions of scores and embeddings
finetune.py      stage 2: fine-tuning LSVCR, training SASRec
metrics.py       Recall / NDCG / MRR@k
evaluate.py      evaluation on both tasks, sampled-100 or full ranking (EvalConfig)
determinism.py   same seed and thread count, same bytes
checkpoint.py    model directories: write (atomically) and load, no pickle
train.py         what `lsvcr train` and `lsvcr evaluate` do, end to end
policy.py        a model directory served as a simulator policy (sasrec:DIR, lsvcr:DIR)

Configs, one rule for every package: a package's config.py holds the configs of what the package
stores — here the model (config.json of a model directory), in simulator/ the simulation (its TOML
file, manifest.json) — and the options of a single step sit beside that step's code (here
AlignConfig in align.py, LLMConfig in llm.py, EvalConfig in evaluate.py, BuildConfig in data/build.py).

Files are published with the top-level ``atomic`` module (a temporary sibling renamed into place).
"""
