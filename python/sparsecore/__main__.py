"""python -m sparsecore [info|selftest|bench ...]: see sparsecore.cli."""

from .cli import main

raise SystemExit(main())
