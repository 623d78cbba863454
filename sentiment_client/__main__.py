"""``python -m sentiment_client FILE ...``: score a file (sentiment_client.cli); ``python -m sentiment_client
jobs ...``: files too big for one request, as jobs on the service (sentiment_client.jobs_cli)."""

import sys

if sys.argv[1:2] == ["jobs"]:
    from sentiment_client.jobs_cli import main as jobs_main

    raise SystemExit(jobs_main(sys.argv[2:]))

from sentiment_client.cli import main

raise SystemExit(main())
