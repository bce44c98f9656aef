#!/bin/sh
# Set up and serve the example shop from a fresh clone: one command, safe to run again.
#
#   sh example_project/run.sh            # serves http://127.0.0.1:8000/
#   SHOP_PORT=8080 sh example_project/run.sh
#
# Creates ../.venv (python3 -m venv) when missing, installs django-etpay from this checkout,
# migrates the SQLite database, loads the demo products, creates the local demo superuser
# admin/admin when absent, and runs the development server. Payments go to the local ETpay
# sandbox that the shop mounts at /sandbox/: no account or network needed.
set -eu

SHOP_DIR=$(cd "$(dirname "$0")" && pwd)
REPO_DIR=$(dirname "$SHOP_DIR")
VENV="${VENV:-$REPO_DIR/.venv}"
PYTHON="${PYTHON:-python3}"
SHOP_PORT="${SHOP_PORT:-8000}"
export SHOP_PORT

if [ ! -x "$VENV/bin/python" ]; then
    echo "Creating a virtual environment in $VENV"
    "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"

if ! "$PY" -c "import django, jwt, requests, rest_framework, django_etpay" 2>/dev/null; then
    echo "Installing django-etpay and its dependencies (pip install -e .)"
    "$PY" -m pip install --quiet --upgrade pip
    # setuptools prints a banner on every editable install (folders named like the package
    # may shadow it); the checkout's django_etpay/ is the package itself, so it is noise.
    PYTHONWARNINGS="ignore:Editable installation" "$PY" -m pip install --quiet -e "$REPO_DIR"
fi

cd "$SHOP_DIR"
"$PY" manage.py migrate --noinput
"$PY" manage.py load_demo_products

if "$PY" manage.py shell -c "
import sys
from django.contrib.auth import get_user_model
sys.exit(0 if get_user_model().objects.filter(username='admin').exists() else 1)
" >/dev/null 2>&1; then
    echo "Superuser admin already exists."
else
    DJANGO_SUPERUSER_PASSWORD=admin "$PY" manage.py createsuperuser \
        --noinput --username admin --email admin@example.com
    echo "Created the superuser admin / admin (local demo credentials only)."
fi

cat <<INFO

  Example shop:  http://127.0.0.1:$SHOP_PORT/
  Admin:         http://127.0.0.1:$SHOP_PORT/admin/   (admin / admin, local demo only)
  Payments go to the local ETpay sandbox mounted at /sandbox/ (no real money).

  Buy something, click "Pay with ETpay", pick a bank and approve. Ctrl-C stops the server.

INFO
exec "$PY" manage.py runserver "127.0.0.1:$SHOP_PORT"
