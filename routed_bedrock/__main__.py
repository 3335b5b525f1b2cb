"""``python -m routed_bedrock``: the same as the ``routed-bedrock`` command."""

from __future__ import annotations

from routed_bedrock.cli import main

raise SystemExit(main())
