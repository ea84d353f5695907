# ruff: the linter (pyflakes, pycodestyle, import order, bugbear, complexity) and
# the formatter, configured in pyproject.toml. `make test` runs `make lint` first.
lint: bootstrap  ## ruff check and ruff format --check over the whole tree
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: bootstrap  ## sort imports and format the code in place
	$(VENV)/bin/ruff check --fix --select I .
	$(VENV)/bin/ruff format .
