"""``python -m gateway.demo`` (what ``make demo`` runs)."""

import sys

from gateway.demo.launch import main

sys.exit(main())
