"""``python -m sentiment_client FILE ...``: score a file (see sentiment_client.cli)."""

from sentiment_client.cli import main

raise SystemExit(main())
