# Developer and CI entry points for lnn_nav. `make` alone lists the targets.

PY ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
# What `make lint` checks with ruff (settings in pyproject.toml); mypy checks lnn_nav (its `files`).
LINT_PATHS := lnn_nav tests benchmarks launch scripts setup.py

# DDS discovery must stay on loopback on build machines: tests and demos
# start real ROS 2 participants, which must neither reach nor hear the LAN.
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
# ros2 launch/run find lnn_nav (and the generated messages) in the venv through the ament index.
export AMENT_PREFIX_PATH := $(abspath $(VENV))$(if $(AMENT_PREFIX_PATH),:$(AMENT_PREFIX_PATH))

.DEFAULT_GOAL := help
.PHONY: help install lint test demo bench reproduce clean distclean

help:
	@echo "lnn_nav targets:"
	@echo "  make install    create $(VENV) with the pinned requirements and lnn_nav (editable)"
	@echo "  make lint       ruff check, ruff format --check and mypy (settings in pyproject.toml)"
	@echo "  make test       lint, then run the test suite (creates $(VENV) if needed)"
	@echo "  make demo       run 'lnn-nav demo', outputs in reports/demo"
	@echo "  make bench      the quick benchmark set -> reports/bench.md (benchmarks/quick.py)"
	@echo "  make reproduce  regenerate the shipped controllers from scratch (scripts/reproduce.sh)"
	@echo "  make clean      remove build artefacts and caches (keeps $(VENV))"
	@echo "  make distclean  clean, and remove $(VENV) too"
	@echo "Variables: PY=$(PY) (interpreter used to create $(VENV))"

# torch goes first and alone, as exactly torch==2.13.0: that resolves to the
# local CPU wheel, and later installs (ncps, ...) then see it satisfied
# instead of pulling a multi-GB CUDA build.
$(STAMP): requirements/base.txt requirements/test.txt requirements/ros-extras.txt setup.py scripts/ros_extras.sh scripts/ament_layout.py
	test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --upgrade pip
	$(VENV)/bin/python -m pip install torch==2.13.0
	$(VENV)/bin/python -m pip install -r requirements/test.txt
	$(VENV)/bin/python -m pip install --no-deps -e .
	# ros2 launch/run and the generated messages (composition_interfaces, tf2_msgs, px4_msgs) from
	# ../shared/ros-extras where it exists (a ROS install has them): the launch and PX4 tests need them.
	bash scripts/ros_extras.sh $(VENV)
	# The layout ROS tools look for (lib/lnn_nav/<node>, the ament index, share/lnn_nav), which pip does not make.
	$(VENV)/bin/python scripts/ament_layout.py $(VENV)
	# Fused CfC kernels, built once into ~/.cache/lnn_nav (a failure only means the reference path).
	-$(VENV)/bin/python -m lnn_nav.kernels.build
	# The simulator's C++ ray caster, likewise (a failure only means Warp renders).
	-$(VENV)/bin/python -c "from lnn_nav.sim import raycast; print('ray caster:', 'built' if raycast.load() else 'Warp')"
	# The torch-free policy runtime (lnn-nav export --format native), likewise.
	-$(VENV)/bin/python -c "from lnn_nav.kernels import native; native.load(); print('native policy runtime: built')"
	touch $@

install: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)
	$(VENV)/bin/mypy

test: $(STAMP) lint
	ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST $(VENV)/bin/python -m pytest -q tests

demo: $(STAMP)
	$(VENV)/bin/lnn-nav demo --out reports/demo

bench: $(STAMP)
	ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST $(VENV)/bin/python benchmarks/quick.py --out reports/bench.md

reproduce: $(STAMP)
	bash scripts/reproduce.sh

clean:
	rm -rf build/ install/ log/ dist/ .pytest_cache/ .hypothesis/ .mypy_cache/ .ruff_cache/ *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
