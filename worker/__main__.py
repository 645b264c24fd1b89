"""`python -m worker` runs the command line."""

import gc

# Start-up allocates thousands of long-lived objects (modules, classes, pydantic schemas): collecting
# them while they are being made is wasted work (~15% of start-up CPU, which is most of a restarted
# worker's stall). ``run`` collects and freezes them once before its loop; other commands re-enable
# the collector right after the imports.
gc.disable()
from worker.cli import main  # noqa: E402 - after the collector is paused

gc.enable()
raise SystemExit(main())
