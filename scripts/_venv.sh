# Sourced by the scripts: make .venv with the package (and ST_EXTRAS, default "test").
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
ST_EXTRAS="${ST_EXTRAS-test}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
fi
# Re-install only when the project's metadata changed since the last install of these extras.
stamp="$VENV/.st-installed-${ST_EXTRAS:-base}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  target="."
  [ -n "$ST_EXTRAS" ] && target=".[$ST_EXTRAS]"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$target"
  touch "$stamp"
fi
