"""`python -m inferecon`: the same command as `inferecon` (torchrun and srun start modules)."""

from inferecon.cli import main

raise SystemExit(main())
