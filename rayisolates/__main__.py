"""``python -m rayisolates``: the same commands as the ``rayisolates`` script."""

from ._cli import main

raise SystemExit(main())
