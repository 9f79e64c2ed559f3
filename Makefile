# lambdaface: `make demo` runs the seed example on the local stack, `make test` runs every test.
SHELL := /bin/bash
PY312 ?= $(shell PYENV_VERSION=3.12.1 pyenv which python3.12 2>/dev/null || command -v python3.12)
VENV := .venv
PY := $(VENV)/bin/python
FACES ?= $(abspath ../shared/faces)
export LAMBDAFACE_FACES := $(FACES)
# $(call new_venv,DIR): a python3.12 venv with a current pip (each tool that pins boto3 gets its own).
new_venv = $(PY312) -m venv $(1) && $(1)/bin/pip install -q --upgrade pip

.PHONY: install test demo bench bench-engine bench-video bench-long-video bench-gallery bench-unknowns bench-people-index bench-sync-api clean sam-install sam-validate sam-build checkov-install checkov
SAM_VENV := .venv-sam
SAM := SAM_CLI_TELEMETRY=0 $(SAM_VENV)/bin/sam

install: $(VENV)/.installed

# The venv, then dlib's two networks converted to ONNX and its HOG detector saved, into
# .venv/share/lambdaface/models (shared/engine/models.py looks there; nothing is downloaded).
CONVERTED := $(VENV)/share/lambdaface/models
DAT_DIR = $$($(abspath $(PY)) -c 'import importlib.util as u; print(next(iter(u.find_spec("face_recognition_models").submodule_search_locations)))')/models

$(VENV)/.installed: pyproject.toml src/shared/engine/onnx_convert.py src/shared/engine/dlib_format.py src/shared/engine/model_files.py
	@test -n "$(PY312)" || { echo "python3.12 not found (try: pyenv install 3.12.1)"; exit 1; }
	test -x $(PY) || $(call new_venv,$(VENV))
	$(PY) -m pip install -q -e '.[dev]'
	cd src && $(abspath $(PY)) -m shared.engine.onnx_convert --hog --models-dir "$(DAT_DIR)" --out $(abspath $(CONVERTED))
	touch $@

# aws-sam-cli pins boto3 differently from moto: it gets its own venv.
sam-install: $(SAM_VENV)/.installed

$(SAM_VENV)/.installed:
	$(call new_venv,$(SAM_VENV))
	$(SAM_VENV)/bin/pip install -q 'aws-sam-cli>=1.120'
	touch $@

# checkov (security checks of template.yaml, run by tests/test_hardening_security.py) pins its
# own boto3 too: its own venv.
CHECKOV_VENV := .venv-checkov
checkov-install: $(CHECKOV_VENV)/.installed

$(CHECKOV_VENV)/.installed:
	$(call new_venv,$(CHECKOV_VENV))
	$(CHECKOV_VENV)/bin/pip install -q 'checkov>=3.2,<4'
	touch $@

checkov: checkov-install
	$(CHECKOV_VENV)/bin/checkov -f template.yaml --framework cloudformation --skip-download --compact --quiet

sam-validate: sam-install
	$(SAM) validate --lint

# The Lambda package (src/Makefile) into .aws-sam/build, without Docker: python3.12 on PATH,
# the 3 model files copied from the project venv.
sam-build: sam-install install
	PATH="$(dir $(PY312)):$$PATH" LAMBDAFACE_MODELS_DIR="$(DAT_DIR)" LAMBDAFACE_CONVERTER_PYTHON="$(abspath $(PY))" \
		$(SAM) build

# Debian's chromium, for the report's browser test (tests/test_report.py): installed when missing
# and the machine has apt (as root); otherwise this says so, and that test is skipped.
.PHONY: chromium
chromium:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || { \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    echo "make: installing Debian's chromium for the report's browser test"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
	      || echo "make: could not install chromium: tests/test_report.py's browser test will be skipped"; \
	  else \
	    echo "make: chromium is missing and cannot be installed here (no apt-get, or not root): tests/test_report.py's browser test will be skipped"; \
	  fi; }

test: install sam-install checkov-install chromium
	$(PY) -m pytest

# The seed example on the local stack: enroll john0, recognize john1, john2, jim-carrey.
demo: install
	$(PY) scripts/demo.py --faces $(FACES)

bench-engine: install
	$(PY) benchmarks/bench_engine.py --faces $(FACES)

# The 9 s clip on the local stack with 1 and 2 video workers: wall s per video s, speedup (~5 min).
bench-video: install
	$(PY) benchmarks/bench_video.py --faces $(FACES) --json benchmarks/video_results.json

# The gallery at 10^4, 10^5, 10^6 synthetic faces on the local stack (GALLERY_SIZES=... to choose);
# today's scan design measured up to 10^5 for comparison. Table, then one JSON line per size.
bench-gallery: install
	$(PY) benchmarks/bench_gallery.py --json benchmarks/gallery_results.json

# Grouping unknown faces at 10^4 and 10^5 remembered faces on moto (UNKNOWN_SIZES=... to choose):
# assign, remember, catch-up and the sweep's re-grouping (~2 min). Table, then one JSON line per size.
bench-unknowns: install
	$(PY) benchmarks/bench_unknowns.py --json benchmarks/unknowns_results.json

# The person index on moto: `find` for a person with 10^4 appearances in an index of 10^5 and 10^6
# entries (INDEX_TOTALS=... to choose; the 10^6 load and moto's table-scanning Query take ~15 min),
# p50/p95, and write units per result. Table, then one JSON line per size.
bench-people-index: install
	$(PY) benchmarks/bench_people_index.py --json benchmarks/people_index_results.json

# The synchronous API on the local stack (one warm API worker): latency beside the engine's own
# time and upload-to-result through S3, the overhead (target < 30 ms at p50), throughput with 1 and
# 2 API workers (~2 minutes); RESULTS.md re-rendered.
bench-sync-api: install
	$(PY) benchmarks/bench_sync_api.py --faces $(FACES) --json benchmarks/sync_api_results.json
	$(PY) benchmarks/report.py

# A composed 5-minute 640x360 video with 1 and 2 video workers: wall s per video s, S3 bytes per
# segment, USD per video hour beside Rekognition Video (~3 min).
bench-long-video: install
	$(PY) benchmarks/bench_long_video.py --faces $(FACES) --json benchmarks/long_video_results.json

# The face_recognition library to compare with (its dlib from dlib-bin), and matplotlib for the plot.
BENCH_VENV := .venv-bench
$(BENCH_VENV)/.installed:
	$(call new_venv,$(BENCH_VENV))
	$(BENCH_VENV)/bin/pip install -q dlib-bin face_recognition_models numpy pillow click 'setuptools<81' matplotlib
	$(BENCH_VENV)/bin/pip install -q --no-deps face_recognition
	touch $@

# All benchmarks (about 10 minutes on 2 cores): benchmarks/RESULTS.md, results.png, results.json.
bench: install $(BENCH_VENV)/.installed
	$(PY) benchmarks/run_all.py --faces $(FACES) --bench-venv $(BENCH_VENV)

clean:
	rm -rf $(VENV) .aws-sam .pytest_cache
