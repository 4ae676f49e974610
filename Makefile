# The one entry point for developers and CI. Needs only python3 (with venv and pip) on the machine.
UV := ./scripts/uv.sh
SRC := packages/mesh-model/src packages/mesh-config/src packages/mesh-xds/src packages/mesh-ca/src
PYTEST_ARGS ?=

.PHONY: help sync lint typecheck imports test unit bench conformance demo run fmt clean

help:
	@echo "make test         everything CI checks: lint, types, import contracts, all tests"
	@echo "make lint         the fast subset: ruff check and ruff format --check"
	@echo "make fmt          rewrite the code with ruff's fixes and formatting"
	@echo "make bench        benchmarks (results go to docs/performance.md)"
	@echo "make conformance  validation against Istio's own data in ../shared/corpus"
	@echo "make demo         the bookinfo demo on real Envoy sidecars (checks every step, under two minutes)"
	@echo "make run          the same mesh, left running until Ctrl-C, with the URLs to try"

sync:
	$(UV) sync --locked --all-packages

lint: sync
	$(UV) run --locked ruff check .
	$(UV) run --locked ruff format --check .

fmt: sync
	$(UV) run --locked ruff check --fix .
	$(UV) run --locked ruff format .

typecheck: sync
	$(UV) run --locked mypy $(SRC) examples

imports: sync
	$(UV) run --locked lint-imports

unit: sync
	./scripts/pytest.sh $(PYTEST_ARGS)

test: lint typecheck imports unit

bench: sync
	$(UV) run --locked python benchmarks/xds_convergence.py
	$(UV) run --locked python benchmarks/ca_issuance.py
	$(UV) run --locked python benchmarks/xds_generation.py

conformance: sync
	$(UV) run --locked python scripts/conformance.py --corpus ../shared/corpus

demo: sync
	$(UV) run --locked python -m mesh_demo

run: sync
	$(UV) run --locked python -m mesh_demo run

clean:
	rm -rf .venv .tools .mypy_cache .ruff_cache .pytest_cache .hypothesis
